// Per-device sequence numbers, laid out so that a device never reuses one,
// not even across reboots:
//
//   seq = epoch << 32 | counter          (64-bit; the hub allows up to 2^53-1)
//
// `counter` counts readings from 0 within an epoch. `epoch` is the boot
// counter: it lives in an EpochStore (the ESP8266's flash, a file in the
// host build), and begin() moves it one up at every boot and saves it
// *before* the first seq of the new epoch is handed out. So every seq of
// this boot is above every seq of every earlier boot.
//
// Why it matters: the hub's de-duplication and, with --auth, its UDP replay
// guard remember the highest seq per device, across hub restarts too. A
// device that started again from a low number after a reboot would have its
// new readings dropped as duplicates or refused as `replayed`. The hub's
// replay rule also holds back (`{"error":"retry"}`) the first seq more than
// 2^20 above its mark on disk until that jump is saved; a new epoch is such
// a jump (2^32 up), so the first reading after a boot is answered `retry`
// once and accepted on its re-send (docs/security.md, "UDP replay
// protection").
//
// After a hub crash the hub's floor is its mark on disk + 2^20, which can
// be above the seqs this epoch still has: the hub answers `replayed`, and
// the UDP link calls advance() (a new epoch, saved first) and renumbers what
// is still queued. Epochs run out at 2^21 (seq <= 2^53-1): 2 million boots
// and advances; at the end the epoch stays at the maximum (logged by the
// caller as `seq_exhausted`).
#ifndef TANTRA_SEQ_H
#define TANTRA_SEQ_H

#include <stdint.h>

namespace tantra {

const uint32_t kEpochMax = (static_cast<uint32_t>(1) << 21) - 1;
const uint64_t kSeqMax = (static_cast<uint64_t>(1) << 53) - 1;

inline uint64_t make_seq(uint32_t epoch, uint32_t counter) {
  return static_cast<uint64_t>(epoch) << 32 | counter;
}
inline uint32_t epoch_of(uint64_t seq) { return static_cast<uint32_t>(seq >> 32); }

// Where the last epoch used is kept across reboots. save() must be durable
// when it returns true (EEPROM.commit(), fsync + rename).
class EpochStore {
 public:
  // False when nothing (valid) is stored: a first boot, or a blank chip.
  virtual bool load(uint32_t* epoch) = 0;
  virtual bool save(uint32_t epoch) = 0;

 protected:
  ~EpochStore() {}
};

// An EpochStore in RAM: for tests, and for a build without persistence.
class MemoryEpochStore : public EpochStore {
 public:
  MemoryEpochStore() : has_(false), value_(0), saves_(0), fail_(false) {}
  bool load(uint32_t* epoch) {
    if (has_) *epoch = value_;
    return has_;
  }
  bool save(uint32_t epoch) {
    if (fail_) return false;
    has_ = true;
    value_ = epoch;
    ++saves_;
    return true;
  }
  void set(uint32_t epoch) { has_ = true, value_ = epoch; }
  void fail_saves(bool fail) { fail_ = fail; }
  uint32_t saves() const { return saves_; }
  bool has() const { return has_; }
  uint32_t value() const { return value_; }

 private:
  bool has_;
  uint32_t value_;
  uint32_t saves_;
  bool fail_;
};

class SeqSource {
 public:
  enum Result { kOk = 0, kNotSaved, kExhausted };

  explicit SeqSource(EpochStore& store) : store_(store), epoch_(0), counter_(0) {}
  // At boot, before the first next(): epoch = stored + 1, or `first_epoch`
  // when nothing is stored (the shells pass a random one below 2^16, so a
  // blank or wiped store still starts somewhere new). kNotSaved: the store
  // failed; the epoch is used anyway (the hub's `replayed` gets the link to
  // move on if it collides).
  Result begin(uint32_t first_epoch);
  uint64_t next();
  uint64_t peek() const { return make_seq(epoch_, counter_); }
  // Starts the next epoch (counter 0), saved before it is used.
  Result advance();
  uint32_t epoch() const { return epoch_; }
  // Tests only: 2^32 readings take too long to count.
  void set_counter_for_test(uint32_t counter) { counter_ = counter; }

 private:
  Result enter(uint32_t epoch);

  EpochStore& store_;
  uint32_t epoch_;
  uint32_t counter_;
};

}  // namespace tantra

#endif
