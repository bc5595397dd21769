#include "tantra_json_writer.h"

#include <string.h>

namespace tantra {

JsonWriter::JsonWriter(char* buf, size_t capacity)
    : buf_(buf), cap_(capacity), len_(0), error_(kOk), need_comma_(false) {
  if (cap_ == 0) {
    error_ = kOverflow;  // not even room for the NUL
  } else {
    buf_[0] = '\0';
  }
}

void JsonWriter::fail(Error e) {
  if (error_ == kOk) error_ = e;
}

void JsonWriter::put(char c) {
  if (error_ != kOk) return;
  if (len_ + 1 >= cap_) {  // keep one byte for the NUL
    fail(kOverflow);
    return;
  }
  buf_[len_++] = c;
  buf_[len_] = '\0';
}

void JsonWriter::put(const char* s, size_t n) {
  for (size_t i = 0; i < n && error_ == kOk; ++i) put(s[i]);
}

void JsonWriter::put_str(const char* s) { put(s, strlen(s)); }

void JsonWriter::put_u64(uint64_t v) {
  char digits[21];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) put(digits[--n]);
}

void JsonWriter::begin_object() {
  put('{');
  need_comma_ = false;
}

void JsonWriter::end_object() {
  put('}');
  need_comma_ = true;
}

void JsonWriter::key(const char* name) {
  if (need_comma_) put(',');
  string(name);
  put(':');
  need_comma_ = false;
}

void JsonWriter::before_value() {
  // A value directly after another value (no key) would be invalid JSON
  // inside an object; we only build flat objects, so just guard the comma.
  need_comma_ = true;
}

void JsonWriter::string(const char* s) { string(s, strlen(s)); }

void JsonWriter::string(const char* s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  put('"');
  for (size_t i = 0; i < len && error_ == kOk; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': put_str("\\\""); break;
      case '\\': put_str("\\\\"); break;
      case '\n': put_str("\\n"); break;
      case '\r': put_str("\\r"); break;
      case '\t': put_str("\\t"); break;
      case '\b': put_str("\\b"); break;
      case '\f': put_str("\\f"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          put_str("\\u00");
          put(hex[c >> 4]);
          put(hex[c & 0xf]);
        } else {
          put(static_cast<char>(c));
        }
    }
  }
  put('"');
  before_value();
}

void JsonWriter::number(double v, uint8_t decimals) {
  if (!is_finite(v)) {
    fail(kNotFinite);
    return;
  }
  if (decimals > 9) decimals = 9;
  bool negative = v < 0;
  if (negative) v = -v;

  if (v < 1e15) {
    // Fixed point through a scaled integer: exact digits, no libm. Lower
    // the precision if the scaled value would not fit in 63 bits.
    uint64_t scale = 1;
    for (uint8_t i = 0; i < decimals; ++i) scale *= 10;
    while (decimals > 0 && v * static_cast<double>(scale) >= 9.0e18) {
      --decimals;
      scale /= 10;
    }
    uint64_t scaled = static_cast<uint64_t>(v * static_cast<double>(scale) + 0.5);
    uint64_t ipart = scaled / scale;
    uint64_t frac = scaled % scale;
    // Never "-0": a value that rounds to zero is plain 0.
    if (negative && scaled != 0) put('-');
    put_u64(ipart);
    if (frac != 0) {
      char digits[10];
      uint8_t n = decimals;
      for (uint8_t i = 0; i < n; ++i) {
        digits[n - 1 - i] = static_cast<char>('0' + frac % 10);
        frac /= 10;
      }
      while (n > 0 && digits[n - 1] == '0') --n;  // trim trailing zeros
      put('.');
      put(digits, n);
    }
  } else {
    // Exponent form: normalise to [1, 10) by repeated division. Each step
    // costs a little precision; 6 significant digits stay exact enough for
    // any sensor, and this branch only exists so that no finite value is
    // ever refused.
    int exponent = 0;
    while (v >= 10.0) {
      v /= 10.0;
      ++exponent;
    }
    uint64_t scaled = static_cast<uint64_t>(v * 100000.0 + 0.5);  // 6 digits
    if (scaled >= 1000000) {  // rounding carried into a new digit
      scaled /= 10;
      ++exponent;
    }
    if (negative) put('-');
    put_u64(scaled / 100000);
    uint64_t frac = scaled % 100000;
    if (frac != 0) {
      char digits[5];
      for (int i = 4; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + frac % 10);
        frac /= 10;
      }
      uint8_t n = 5;
      while (n > 0 && digits[n - 1] == '0') --n;
      put('.');
      put(digits, n);
    }
    put('e');
    put_u64(static_cast<uint64_t>(exponent));
  }
  before_value();
}

void JsonWriter::integer(int32_t v) {
  if (v < 0) {
    put('-');
    // -(INT32_MIN) overflows int32; widen first.
    put_u64(static_cast<uint64_t>(-static_cast<int64_t>(v)));
  } else {
    put_u64(static_cast<uint64_t>(v));
  }
  before_value();
}

void JsonWriter::uinteger(uint32_t v) {
  put_u64(v);
  before_value();
}

void JsonWriter::uinteger64(uint64_t v) {
  put_u64(v);
  before_value();
}

void JsonWriter::boolean(bool v) {
  put_str(v ? "true" : "false");
  before_value();
}

void JsonWriter::raw(const char* text) {
  put_str(text);
  before_value();
}

void JsonWriter::newline() { put('\n'); }

}  // namespace tantra
