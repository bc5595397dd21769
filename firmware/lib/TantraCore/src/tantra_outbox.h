// The readings that have a seq but no ack yet, oldest first, in a Ring over
// caller-provided slots. It is the device's only memory of what the hub may
// not have: after a reconnect everything here is sent again, and the hub's
// de-duplication absorbs the ones it had already accepted.
#ifndef TANTRA_OUTBOX_H
#define TANTRA_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "tantra_reading.h"
#include "tantra_ring.h"
#include "tantra_seq.h"
#include "tantra_stats.h"

namespace tantra {

struct Pending {
  Reading reading;
  uint64_t seq;
  uint32_t due_ms;  // UDP: when to try again
  uint8_t tries;    // transmissions so far
  uint8_t deferrals;  // of which answered `retry`/`rate_limited` (not lost)
  bool in_flight;   // sent on this connection (TCP) / awaiting reply (UDP)
  bool deferred;    // TCP: the hub said `retry`/`rate_limited`; not before due_ms
};

class Outbox {
 public:
  Outbox(Pending* slots, size_t capacity, Stats& stats)
      : ring_(slots, capacity), stats_(stats) {}

  // Queues a reading under `seq`. Returns false if the oldest reading had to
  // be dropped to make room (counted in stats.dropped).
  bool add(const Reading& r, uint64_t seq);
  // The hub accepted `seq`: forget it. False if it was not queued (a second
  // ack for the same seq, or one evicted meanwhile).
  bool ack(uint64_t seq);
  // The hub refused a reading. With a seq the hub named it; without one it
  // is the oldest reading in flight (replies come in order on one TCP
  // connection, and UDP keeps one datagram in flight). Returns the seq
  // removed, or -1 if nothing matched.
  int64_t reject(bool has_seq, uint64_t seq);
  // The hub said "not now" (`retry`, `rate_limited`) about a reading (found
  // like reject() finds it): it stays queued, no longer in flight, and the
  // TCP link sends it again once release_due() passes `until_ms`. Returns
  // the seq, or -1 if nothing matched.
  int64_t defer(bool has_seq, uint64_t seq, uint32_t until_ms);
  // Deferred readings whose time has come may be sent again.
  void release_due(uint32_t now_ms);
  // Gives every queued reading, oldest first, a fresh seq from `seqs` (after
  // a new epoch) and marks it unsent with no tries.
  void renumber(SeqSource& seqs);
  // Drops the oldest reading without an answer (UDP: out of tries).
  void expire_front();
  // After a reconnect: every queued reading must be sent again.
  void mark_all_unsent();
  // Oldest reading not yet sent on this connection (and not deferred), or 0.
  Pending* first_unsent();
  Pending* find(uint64_t seq);

  size_t size() const { return ring_.size(); }
  size_t capacity() const { return ring_.capacity(); }
  bool empty() const { return ring_.empty(); }
  Pending& at(size_t i) { return ring_.at(i); }
  Pending& front() { return ring_.front(); }

 private:
  long index_of(uint64_t seq) const;
  long named_or_oldest_in_flight(bool has_seq, uint64_t seq) const;

  Ring<Pending> ring_;
  Stats& stats_;
};

}  // namespace tantra

#endif
