#include "tantra_backoff.h"

namespace tantra {

Backoff::Backoff(uint32_t base_ms, uint32_t max_ms, Rng& rng)
    : base_ms_(base_ms ? base_ms : 1),
      max_ms_(max_ms < base_ms ? base_ms : max_ms),
      rng_(rng),
      attempts_(0) {
  if (max_ms_ == 0) max_ms_ = base_ms_;
}

uint32_t Backoff::current_cap() const {
  uint32_t cap = base_ms_;
  // Double without overflowing: stop as soon as the next doubling would
  // pass max (or 2^32).
  for (uint16_t i = 0; i < attempts_ && cap < max_ms_; ++i) {
    if (cap > max_ms_ / 2) {
      cap = max_ms_;
    } else {
      cap *= 2;
    }
  }
  return cap > max_ms_ ? max_ms_ : cap;
}

uint32_t Backoff::next_delay() {
  uint32_t cap = current_cap();
  if (attempts_ < 0xFFFFu) ++attempts_;
  uint32_t half = cap / 2;
  uint32_t span = cap - half;  // jitter in [0, span]
  uint32_t jitter = span == 0xFFFFFFFFu ? rng_.next() : rng_.next() % (span + 1);
  return half + jitter;
}

}  // namespace tantra
