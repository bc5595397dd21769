// Millisecond time as the core sees it: a uint32 passed in by the caller
// (Arduino millis(), CLOCK_MONOTONIC on the host, a number in tests). It
// wraps every ~49.7 days, so deadlines are compared by signed difference.
#ifndef TANTRA_CLOCK_H
#define TANTRA_CLOCK_H

#include <stdint.h>

namespace tantra {

// True when `now` has reached `deadline`. Valid while the two are less than
// 2^31 ms (~24 days) apart, which every timer here is by far.
inline bool time_reached(uint32_t now, uint32_t deadline) {
  return static_cast<int32_t>(now - deadline) >= 0;
}

}  // namespace tantra

#endif
