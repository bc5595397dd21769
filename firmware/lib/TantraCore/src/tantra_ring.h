// A fixed-capacity FIFO over caller-provided storage (no heap, the caller
// decides where the bytes live: a static array on the device, a small one
// in tests). When full, push drops the OLDEST element and says so: for
// telemetry the newest reading is the most valuable one.
#ifndef TANTRA_RING_H
#define TANTRA_RING_H

#include <stddef.h>

namespace tantra {

template <typename T>
class Ring {
 public:
  Ring(T* storage, size_t capacity)
      : slots_(storage), cap_(capacity), head_(0), size_(0) {}

  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return size_ == 0; }
  bool full() const { return size_ == cap_; }

  // Appends a copy of `item`. Returns true when the oldest element had to be
  // dropped to make room (the caller counts it). With capacity 0 the item
  // itself is dropped.
  bool push(const T& item) {
    if (cap_ == 0) return true;
    bool dropped = false;
    if (size_ == cap_) {
      head_ = wrap(head_ + 1);
      --size_;
      dropped = true;
    }
    slots_[wrap(head_ + size_)] = item;
    ++size_;
    return dropped;
  }

  // i = 0 is the oldest element. Caller keeps i < size().
  T& at(size_t i) { return slots_[wrap(head_ + i)]; }
  const T& at(size_t i) const { return slots_[wrap(head_ + i)]; }
  T& front() { return at(0); }

  void pop_front() {
    if (size_ == 0) return;
    head_ = wrap(head_ + 1);
    --size_;
  }

  // Removes element i keeping the order of the rest. O(size - i): acks
  // normally hit the front, so this is O(1) in practice.
  void remove_at(size_t i) {
    if (i >= size_) return;
    if (i == 0) {
      pop_front();
      return;
    }
    for (size_t k = i; k + 1 < size_; ++k) at(k) = at(k + 1);
    --size_;
  }

  void clear() {
    head_ = 0;
    size_ = 0;
  }

 private:
  size_t wrap(size_t i) const { return cap_ ? i % cap_ : 0; }

  T* slots_;
  size_t cap_;
  size_t head_;  // index of the oldest element
  size_t size_;
};

}  // namespace tantra

#endif
