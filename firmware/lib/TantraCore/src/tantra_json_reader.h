// A small pull parser over one line of JSON, enough for the two things the
// device reads: readings from the Mega and replies from the hub. It never
// allocates, never reads past `end`, bounds nesting, and reports failure
// instead of guessing, so junk on a serial line or a socket is rejected.
#ifndef TANTRA_JSON_READER_H
#define TANTRA_JSON_READER_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

class JsonReader {
 public:
  JsonReader(const char* text, size_t len) : p_(text), end_(text + len) {}

  void skip_ws();
  bool at_end() { skip_ws(); return p_ == end_; }
  // Consumes `c` (after whitespace) if it is next.
  bool consume(char c);
  // Next non-space character, or 0 at the end.
  char peek();

  // Reads a string, decoding escapes (\uXXXX, surrogate pairs) to UTF-8
  // into out[cap] (NUL-terminated). Fails on overflow, raw control
  // characters, bad escapes, lone surrogates. `chars` gets the number of
  // Unicode characters, as Python's len() counts them.
  bool read_string(char* out, size_t cap, size_t* len, size_t* chars);
  // Reads a JSON number and copies its text (grammar-checked) into out.
  // Fails for numbers whose magnitude would overflow a double (1e999 parses
  // to Infinity in the hub, which rejects it).
  bool read_number_text(char* out, size_t cap);
  // Reads a non-negative integer without fraction or exponent.
  bool read_uint(uint64_t* out);
  // Consumes the literal `word` ("true", "false", "null").
  bool read_literal(const char* word);
  // Skips any value (object/array nesting at most `depth` levels).
  bool skip_value(int depth = 8);

  // Position save/restore, to retry a failed read as a skip.
  const char* pos() const { return p_; }
  void seek(const char* p) { p_ = p; }

 private:
  bool scan_number(const char** start);

  const char* p_;
  const char* end_;
};

// Valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF); counts chars.
bool utf8_valid(const char* s, size_t len, size_t* chars);

}  // namespace tantra

#endif
