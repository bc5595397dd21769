// Per-device sequence numbers. The hub de-duplicates on (device, seq), and
// its memory is lost on restart, so a rebooted device must not reuse its
// recent seqs: the shell seeds the start from a hardware RNG. uint32 wraps
// to 0 after 2^32-1, which the hub sees as just another seq (<= 2^53-1).
#ifndef TANTRA_SEQ_H
#define TANTRA_SEQ_H

#include <stdint.h>

namespace tantra {

class SeqCounter {
 public:
  explicit SeqCounter(uint32_t start) : next_(start) {}
  uint32_t next() { return next_++; }  // unsigned: wraps, never UB
  uint32_t peek() const { return next_; }

 private:
  uint32_t next_;
};

}  // namespace tantra

#endif
