#include "tantra_seq.h"

namespace tantra {

SeqSource::Result SeqSource::enter(uint32_t epoch) {
  Result result = kOk;
  if (epoch > kEpochMax) {
    epoch = kEpochMax;
    result = kExhausted;
  }
  epoch_ = epoch;
  counter_ = 0;
  if (!store_.save(epoch_) && result == kOk) result = kNotSaved;
  return result;
}

SeqSource::Result SeqSource::begin(uint32_t first_epoch) {
  uint32_t stored = 0;
  if (!store_.load(&stored)) return enter(first_epoch > kEpochMax ? first_epoch & 0xFFFF : first_epoch);
  // stored + 1 without overflowing: a stored value at or past the maximum
  // stays at the maximum (and says so).
  return enter(stored >= kEpochMax ? kEpochMax + 1 : stored + 1);
}

uint64_t SeqSource::next() {
  uint64_t seq = make_seq(epoch_, counter_);
  if (counter_ == 0xFFFFFFFFu) {
    // 2^32 readings in one epoch: move on rather than wrap (wrap only when
    // the epochs ran out too).
    if (advance() == kExhausted) counter_ = 0;
  } else {
    ++counter_;
  }
  return seq;
}

SeqSource::Result SeqSource::advance() {
  if (epoch_ >= kEpochMax) return kExhausted;
  return enter(epoch_ + 1);
}

}  // namespace tantra
