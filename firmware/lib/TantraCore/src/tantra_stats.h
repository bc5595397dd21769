// Counters the device keeps about its own delivery; printed periodically
// by the sketches and at exit by the host build, so a person (or a test)
// can check that sent - resent == acked + rejected + dropped + expired +
// still queued.
#ifndef TANTRA_STATS_H
#define TANTRA_STATS_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

struct Stats {
  uint32_t lines;             // lines read from the Mega
  uint32_t bad_lines;         // refused by parse_reading (logged)
  uint32_t long_lines;        // longer than a line may be
  uint32_t queued;            // readings given a seq and queued
  uint32_t dropped;           // oldest queued reading evicted: queue full
  uint32_t sent;              // transmissions, first tries and re-sends
  uint32_t resent;            // transmissions of a reading sent before
  uint32_t acked;             // readings the hub acknowledged
  uint32_t rejected;          // readings the hub refused with an error
  uint32_t expired;           // UDP: given up after max tries
  uint32_t duplicate_acks;    // ack for a seq no longer queued
  uint32_t bad_replies;       // reply lines that were not ack/error JSON
  uint32_t connects;          // TCP connections established
  uint32_t connect_failures;  // TCP connection attempts that failed
  uint32_t disconnects;       // TCP connections lost
  uint32_t deferred;          // hub said `retry` / `rate_limited`: kept, sent again later
  uint32_t auth_failures;     // TCP auth line refused (or no answer in time)
  uint32_t new_epochs;        // epochs started because the hub said `replayed`
};

// {"lines":..,"bad_lines":..,...} without newline; 0 if it did not fit.
size_t format_stats(const Stats& s, uint32_t queue_size, char* buf, size_t cap);

}  // namespace tantra

#endif
