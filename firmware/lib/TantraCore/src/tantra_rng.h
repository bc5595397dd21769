// Randomness behind an interface so backoff jitter is testable: tests
// inject a scripted Rng; devices seed XorShift32 from their hardware RNG
// (ESP8266) or /dev/urandom (host build).
#ifndef TANTRA_RNG_H
#define TANTRA_RNG_H

#include <stdint.h>

namespace tantra {

class Rng {
 public:
  virtual uint32_t next() = 0;

 protected:
  ~Rng() {}
};

// Marsaglia xorshift32: tiny, no tables, good enough for jitter.
class XorShift32 : public Rng {
 public:
  explicit XorShift32(uint32_t seed) : state_(seed ? seed : 0x9E3779B9u) {}
  uint32_t next() {
    uint32_t x = state_;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    state_ = x;
    return x;
  }

 private:
  uint32_t state_;  // never 0: zero is xorshift's fixed point
};

}  // namespace tantra

#endif
