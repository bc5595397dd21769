#include "tantra_outbox.h"

namespace tantra {

bool Outbox::add(const Reading& r, uint32_t seq) {
  Pending p;
  p.reading = r;
  p.seq = seq;
  p.due_ms = 0;
  p.tries = 0;
  p.in_flight = false;
  bool dropped = ring_.push(p);
  ++stats_.queued;
  if (dropped) ++stats_.dropped;
  return !dropped;
}

long Outbox::index_of(uint32_t seq) const {
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (ring_.at(i).seq == seq) return static_cast<long>(i);
  }
  return -1;
}

Pending* Outbox::find(uint32_t seq) {
  long i = index_of(seq);
  return i < 0 ? 0 : &ring_.at(static_cast<size_t>(i));
}

bool Outbox::ack(uint32_t seq) {
  long i = index_of(seq);
  if (i < 0) {
    ++stats_.duplicate_acks;
    return false;
  }
  ring_.remove_at(static_cast<size_t>(i));
  ++stats_.acked;
  return true;
}

int64_t Outbox::reject(bool has_seq, uint32_t seq) {
  long idx = -1;
  if (has_seq) {
    idx = index_of(seq);
  } else {
    for (size_t i = 0; i < ring_.size(); ++i) {
      if (ring_.at(i).in_flight) {
        idx = static_cast<long>(i);
        break;
      }
    }
  }
  if (idx < 0) return -1;
  uint32_t removed = ring_.at(static_cast<size_t>(idx)).seq;
  ring_.remove_at(static_cast<size_t>(idx));
  ++stats_.rejected;
  return removed;
}

void Outbox::expire_front() {
  if (ring_.empty()) return;
  ring_.pop_front();
  ++stats_.expired;
}

void Outbox::mark_all_unsent() {
  for (size_t i = 0; i < ring_.size(); ++i) ring_.at(i).in_flight = false;
}

Pending* Outbox::first_unsent() {
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (!ring_.at(i).in_flight) return &ring_.at(i);
  }
  return 0;
}

}  // namespace tantra
