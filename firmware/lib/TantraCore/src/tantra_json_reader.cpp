#include "tantra_json_reader.h"

#include <string.h>

namespace tantra {

void JsonReader::skip_ws() {
  while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
}

bool JsonReader::consume(char c) {
  skip_ws();
  if (p_ < end_ && *p_ == c) {
    ++p_;
    return true;
  }
  return false;
}

char JsonReader::peek() {
  skip_ws();
  return p_ < end_ ? *p_ : '\0';
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends code point `cp` as UTF-8; false if it does not fit.
static bool put_utf8(uint32_t cp, char* out, size_t cap, size_t* n) {
  char tmp[4];
  size_t k;
  if (cp < 0x80) {
    tmp[0] = static_cast<char>(cp);
    k = 1;
  } else if (cp < 0x800) {
    tmp[0] = static_cast<char>(0xC0 | (cp >> 6));
    tmp[1] = static_cast<char>(0x80 | (cp & 0x3F));
    k = 2;
  } else if (cp < 0x10000) {
    tmp[0] = static_cast<char>(0xE0 | (cp >> 12));
    tmp[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    tmp[2] = static_cast<char>(0x80 | (cp & 0x3F));
    k = 3;
  } else {
    tmp[0] = static_cast<char>(0xF0 | (cp >> 18));
    tmp[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    tmp[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    tmp[3] = static_cast<char>(0x80 | (cp & 0x3F));
    k = 4;
  }
  if (*n + k + 1 > cap) return false;  // + NUL
  memcpy(out + *n, tmp, k);
  *n += k;
  return true;
}

bool JsonReader::read_string(char* out, size_t cap, size_t* len, size_t* chars) {
  if (!consume('"') || cap == 0) return false;
  size_t n = 0;
  while (p_ < end_) {
    unsigned char c = static_cast<unsigned char>(*p_);
    if (c == '"') {
      ++p_;
      out[n] = '\0';
      // Raw (unescaped) bytes were copied as they are; they must be UTF-8.
      size_t count;
      if (!utf8_valid(out, n, &count)) return false;
      if (len) *len = n;
      if (chars) *chars = count;
      return true;
    }
    if (c < 0x20) return false;  // raw control characters are invalid JSON
    if (c != '\\') {
      if (n + 2 > cap) return false;
      out[n++] = static_cast<char>(c);
      ++p_;
      continue;
    }
    ++p_;  // backslash
    if (p_ >= end_) return false;
    char e = *p_++;
    char simple = 0;
    switch (e) {
      case '"': simple = '"'; break;
      case '\\': simple = '\\'; break;
      case '/': simple = '/'; break;
      case 'b': simple = '\b'; break;
      case 'f': simple = '\f'; break;
      case 'n': simple = '\n'; break;
      case 'r': simple = '\r'; break;
      case 't': simple = '\t'; break;
      case 'u': break;
      default: return false;
    }
    if (e != 'u') {
      if (n + 2 > cap) return false;
      out[n++] = simple;
      continue;
    }
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      if (p_ >= end_) return false;
      int h = hex_value(*p_++);
      if (h < 0) return false;
      cp = (cp << 4) | static_cast<uint32_t>(h);
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
      if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;
      p_ += 2;
      uint32_t lo = 0;
      for (int i = 0; i < 4; ++i) {
        int h = hex_value(*p_++);
        if (h < 0) return false;
        lo = (lo << 4) | static_cast<uint32_t>(h);
      }
      if (lo < 0xDC00 || lo > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return false;  // lone low surrogate
    }
    if (cp == 0) return false;  // NUL would truncate our C strings
    if (!put_utf8(cp, out, cap, &n)) return false;
  }
  return false;  // unterminated
}

bool JsonReader::scan_number(const char** start) {
  skip_ws();
  const char* q = p_;
  *start = q;
  if (q < end_ && *q == '-') ++q;
  if (q >= end_) return false;
  if (*q == '0') {
    ++q;
  } else if (*q >= '1' && *q <= '9') {
    while (q < end_ && *q >= '0' && *q <= '9') ++q;
  } else {
    return false;
  }
  if (q < end_ && *q == '.') {
    ++q;
    if (q >= end_ || *q < '0' || *q > '9') return false;
    while (q < end_ && *q >= '0' && *q <= '9') ++q;
  }
  if (q < end_ && (*q == 'e' || *q == 'E')) {
    ++q;
    if (q < end_ && (*q == '+' || *q == '-')) ++q;
    if (q >= end_ || *q < '0' || *q > '9') return false;
    while (q < end_ && *q >= '0' && *q <= '9') ++q;
  }
  p_ = q;
  return true;
}

bool JsonReader::read_number_text(char* out, size_t cap) {
  const char* start;
  const char* save = p_;
  if (!scan_number(&start)) {
    p_ = save;
    return false;
  }
  size_t n = static_cast<size_t>(p_ - start);
  if (n + 1 > cap) {
    p_ = save;
    return false;
  }
  // Decimal magnitude: position of the first significant digit relative to
  // the point, plus the exponent. Above 307 a double may overflow to
  // Infinity on the hub, so refuse (1e308 itself is refused too: harmless).
  long mag = 0;
  bool seen_nonzero = false;
  bool after_point = false;
  long int_digits = 0;
  long lead_frac_zeros = 0;
  long exponent = 0;
  bool exp_negative = false;
  const char* q = start;
  if (*q == '-') ++q;
  for (; q < p_ && *q != 'e' && *q != 'E'; ++q) {
    if (*q == '.') {
      after_point = true;
      continue;
    }
    if (!after_point) {
      if (seen_nonzero || *q != '0') {
        seen_nonzero = true;
        ++int_digits;
      }
    } else if (!seen_nonzero) {
      if (*q == '0') {
        ++lead_frac_zeros;
      } else {
        seen_nonzero = true;
      }
    }
  }
  if (q < p_) {  // exponent part
    ++q;
    if (*q == '+' || *q == '-') exp_negative = (*q++ == '-');
    for (; q < p_; ++q) {
      if (exponent < 100000) exponent = exponent * 10 + (*q - '0');
    }
    if (exp_negative) exponent = -exponent;
  }
  if (seen_nonzero) {
    mag = int_digits > 0 ? int_digits - 1 : -(lead_frac_zeros + 1);
    if (mag + exponent > 307) {
      p_ = save;
      return false;
    }
  }
  memcpy(out, start, n);
  out[n] = '\0';
  return true;
}

bool JsonReader::read_uint(uint64_t* out) {
  skip_ws();
  const char* q = p_;
  if (q >= end_ || *q < '0' || *q > '9') return false;
  if (*q == '0' && q + 1 < end_ && q[1] >= '0' && q[1] <= '9') return false;
  uint64_t v = 0;
  while (q < end_ && *q >= '0' && *q <= '9') {
    uint64_t d = static_cast<uint64_t>(*q - '0');
    if (v > (~static_cast<uint64_t>(0) - d) / 10) return false;  // overflow
    // (no UINT64_MAX: avr-libc hides it from C++ without __STDC_LIMIT_MACROS)
    v = v * 10 + d;
    ++q;
  }
  // A fraction or exponent makes it not an integer: leave it to skip_value.
  if (q < end_ && (*q == '.' || *q == 'e' || *q == 'E')) return false;
  p_ = q;
  *out = v;
  return true;
}

bool JsonReader::read_literal(const char* word) {
  skip_ws();
  size_t n = strlen(word);
  if (static_cast<size_t>(end_ - p_) < n || memcmp(p_, word, n) != 0) return false;
  const char* after = p_ + n;
  // "truex" is not "true".
  if (after < end_ && ((*after >= 'a' && *after <= 'z') || (*after >= '0' && *after <= '9'))) {
    return false;
  }
  p_ = after;
  return true;
}

bool JsonReader::skip_value(int depth) {
  if (depth <= 0) return false;
  char c = peek();
  if (c == '"') {
    // Skip without decoding into a buffer.
    ++p_;
    while (p_ < end_) {
      char d = *p_++;
      if (d == '"') return true;
      if (static_cast<unsigned char>(d) < 0x20) return false;
      if (d == '\\') {
        if (p_ >= end_) return false;
        ++p_;
      }
    }
    return false;
  }
  if (c == '{') {
    ++p_;
    if (consume('}')) return true;
    do {
      if (peek() != '"' || !skip_value(1)) return false;
      if (!consume(':') || !skip_value(depth - 1)) return false;
    } while (consume(','));
    return consume('}');
  }
  if (c == '[') {
    ++p_;
    if (consume(']')) return true;
    do {
      if (!skip_value(depth - 1)) return false;
    } while (consume(','));
    return consume(']');
  }
  if (c == 't') return read_literal("true");
  if (c == 'f') return read_literal("false");
  if (c == 'n') return read_literal("null");
  const char* start;
  return scan_number(&start);
}

bool utf8_valid(const char* s, size_t len, size_t* chars) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
  size_t i = 0;
  size_t count = 0;
  while (i < len) {
    unsigned char c = p[i];
    size_t need;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      ++count;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      need = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      need = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      need = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + need >= len) return false;  // truncated sequence
    for (size_t k = 1; k <= need; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += need + 1;
    ++count;
  }
  if (chars) *chars = count;
  return true;
}

}  // namespace tantra
