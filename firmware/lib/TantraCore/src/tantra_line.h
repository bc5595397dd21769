// Splits a byte stream (the Mega's serial line, a TCP socket) into lines in
// a fixed buffer. "\r\n" and "\n" both end a line. A line longer than the
// buffer is dropped whole (not cut into pieces that might parse) and
// reported once when its newline arrives.
#ifndef TANTRA_LINE_H
#define TANTRA_LINE_H

#include <stddef.h>

namespace tantra {

class LineBuffer {
 public:
  enum Result { kNone = 0, kLine, kOverflow };

  // `capacity` includes the NUL; lines may be up to capacity - 1 bytes.
  LineBuffer(char* storage, size_t capacity)
      : buf_(storage), cap_(capacity), len_(0), ready_(false), overflow_(false) {
    if (cap_) buf_[0] = '\0';
  }

  Result feed(char c) {
    if (ready_) {  // the previous line was handed out; start a new one
      ready_ = false;
      len_ = 0;
    }
    if (c == '\n') {
      if (overflow_) {
        overflow_ = false;
        len_ = 0;
        return kOverflow;
      }
      if (len_ > 0 && buf_[len_ - 1] == '\r') --len_;
      buf_[len_] = '\0';
      ready_ = true;
      return kLine;
    }
    if (overflow_) return kNone;
    if (len_ + 1 >= cap_) {
      overflow_ = true;
      len_ = 0;
      return kNone;
    }
    buf_[len_++] = c;
    return kNone;
  }

  // Valid after feed() returned kLine, until the next feed().
  const char* line() const { return buf_; }
  size_t length() const { return len_; }
  // Forget a partial line (e.g. the connection it came from dropped).
  void reset() {
    len_ = 0;
    ready_ = false;
    overflow_ = false;
  }

 private:
  char* buf_;
  size_t cap_;
  size_t len_;
  bool ready_;
  bool overflow_;
};

}  // namespace tantra

#endif
