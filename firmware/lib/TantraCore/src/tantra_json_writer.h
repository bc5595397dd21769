// Writes one flat JSON object into a fixed buffer. The Mega formats its
// readings with it and the ESP8266 formats what it sends to the hub.
//
// Why not printf: avr-libc's printf has no %f unless a bigger libc is
// linked, and the hub rejects NaN/Infinity, which printf would happily
// print. Errors are sticky: after an overflow or a non-finite number every
// further call is a no-op and ok() stays false, so callers check once at the
// end and never send half a line.
#ifndef TANTRA_JSON_WRITER_H
#define TANTRA_JSON_WRITER_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

class JsonWriter {
 public:
  enum Error { kOk = 0, kOverflow, kNotFinite, kBadUsage };

  // `capacity` counts the terminating NUL, which is always written.
  JsonWriter(char* buf, size_t capacity);

  void begin_object();
  void end_object();
  // Key of the next member; writes the separating comma itself.
  void key(const char* name);
  // A string value, escaped: quote, backslash and control characters.
  // Bytes >= 0x80 pass through (the caller supplies UTF-8).
  void string(const char* s);
  void string(const char* s, size_t len);
  // A finite number with at most `decimals` (0..9) digits after the point,
  // trailing zeros trimmed ("42", "3.5"). Magnitudes >= 1e15 use exponent
  // form with 6 significant digits. NaN and +-Inf set kNotFinite.
  void number(double v, uint8_t decimals);
  void integer(int32_t v);
  void uinteger(uint32_t v);
  void uinteger64(uint64_t v);
  void boolean(bool v);
  // Pre-validated JSON literal (a number text checked by the parser).
  void raw(const char* text);
  // "\n" after the object: turns it into a line for the hub.
  void newline();

  bool ok() const { return error_ == kOk; }
  Error error() const { return error_; }
  size_t length() const { return len_; }
  const char* c_str() const { return buf_; }

 private:
  void put(char c);
  void put(const char* s, size_t n);
  void put_str(const char* s);
  void put_u64(uint64_t v);
  void before_value();
  void fail(Error e);

  char* buf_;
  size_t cap_;
  size_t len_;
  Error error_;
  bool need_comma_;
};

// True for a finite double, written so that it works the same on avr-libc
// (where double is a 32-bit float) and glibc, without <cmath>.
inline bool is_finite(double v) {
  double d = v - v;  // 0 for finite; NaN for NaN and +-Inf
  return d == d;
}

}  // namespace tantra

#endif
