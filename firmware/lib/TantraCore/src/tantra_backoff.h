// Exponential backoff with "equal jitter": attempt k waits a random time in
// [cap/2, cap] where cap = min(max, base * 2^k). Never less than half the cap,
// so a fleet rebooting together does not hammer a recovering hub, and the
// random half spreads them out.
#ifndef TANTRA_BACKOFF_H
#define TANTRA_BACKOFF_H

#include <stdint.h>

#include "tantra_rng.h"

namespace tantra {

class Backoff {
 public:
  Backoff(uint32_t base_ms, uint32_t max_ms, Rng& rng);
  // Delay before the next attempt; each call doubles the cap up to max.
  uint32_t next_delay();
  // After a success: the next failure starts again at base.
  void reset() { attempts_ = 0; }
  uint16_t attempts() const { return attempts_; }
  // The cap for the next call (without jitter); exposed for tests/logs.
  uint32_t current_cap() const;

 private:
  uint32_t base_ms_;
  uint32_t max_ms_;
  Rng& rng_;
  uint16_t attempts_;
};

}  // namespace tantra

#endif
