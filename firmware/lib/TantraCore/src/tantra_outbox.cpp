#include "tantra_outbox.h"

#include "tantra_clock.h"

namespace tantra {

bool Outbox::add(const Reading& r, uint64_t seq) {
  Pending p;
  p.reading = r;
  p.seq = seq;
  p.due_ms = 0;
  p.tries = 0;
  p.in_flight = false;
  p.deferred = false;
  p.deferrals = 0;
  bool dropped = ring_.push(p);
  ++stats_.queued;
  if (dropped) ++stats_.dropped;
  return !dropped;
}

long Outbox::index_of(uint64_t seq) const {
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (ring_.at(i).seq == seq) return static_cast<long>(i);
  }
  return -1;
}

Pending* Outbox::find(uint64_t seq) {
  long i = index_of(seq);
  return i < 0 ? 0 : &ring_.at(static_cast<size_t>(i));
}

bool Outbox::ack(uint64_t seq) {
  long i = index_of(seq);
  if (i < 0) {
    ++stats_.duplicate_acks;
    return false;
  }
  ring_.remove_at(static_cast<size_t>(i));
  ++stats_.acked;
  return true;
}

long Outbox::named_or_oldest_in_flight(bool has_seq, uint64_t seq) const {
  if (has_seq) return index_of(seq);
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (ring_.at(i).in_flight) return static_cast<long>(i);
  }
  return -1;
}

int64_t Outbox::reject(bool has_seq, uint64_t seq) {
  long idx = named_or_oldest_in_flight(has_seq, seq);
  if (idx < 0) return -1;
  uint64_t removed = ring_.at(static_cast<size_t>(idx)).seq;
  ring_.remove_at(static_cast<size_t>(idx));
  ++stats_.rejected;
  return static_cast<int64_t>(removed);
}

int64_t Outbox::defer(bool has_seq, uint64_t seq, uint32_t until_ms) {
  long idx = named_or_oldest_in_flight(has_seq, seq);
  if (idx < 0) return -1;
  Pending& p = ring_.at(static_cast<size_t>(idx));
  p.in_flight = false;
  p.deferred = true;
  // It was answered, so that try was not lost (UDP's max_tries).
  if (p.deferrals < 255) ++p.deferrals;
  p.due_ms = until_ms;
  ++stats_.deferred;
  return static_cast<int64_t>(p.seq);
}

void Outbox::release_due(uint32_t now_ms) {
  for (size_t i = 0; i < ring_.size(); ++i) {
    Pending& p = ring_.at(i);
    if (p.deferred && time_reached(now_ms, p.due_ms)) p.deferred = false;
  }
}

void Outbox::renumber(SeqSource& seqs) {
  for (size_t i = 0; i < ring_.size(); ++i) {
    Pending& p = ring_.at(i);
    p.seq = seqs.next();
    p.tries = 0;
    p.deferrals = 0;
    p.in_flight = false;
    p.deferred = false;
    p.due_ms = 0;
  }
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
    if (!ring_.at(i).in_flight && !ring_.at(i).deferred) return &ring_.at(i);
  }
  return 0;
}

}  // namespace tantra
