// The reading as the device handles it, and the two conversions the device
// needs: a line from the Mega -> Reading (validated like the hub would), and
// Reading + device + seq -> the line sent to the hub.
//
// The value is stored as JSON text ("42", "3.75", "true") rather than a
// double: the Mega already chose its precision, the ESP8266 forwards it
// unchanged, and a float round trip cannot invent digits.
#ifndef TANTRA_READING_H
#define TANTRA_READING_H

#include <stddef.h>
#include <stdint.h>

#include "tantra_limits.h"

namespace tantra {

struct Reading {
  char sensor[kNameMax + 1];
  char value[kValueTextMax + 1];  // a JSON number, "true" or "false"
  char unit[kUnitBytesMax + 1];
  bool has_unit;
};

// Why a line was refused; the text is for logs.
enum ParseError {
  kParseOk = 0,
  kParseEmpty,          // blank line: keep-alive, not an error
  kParseNotObject,      // junk, truncated JSON, trailing garbage
  kParseBadSensor,
  kParseMissingSensor,
  kParseBadValue,       // not a finite number / boolean, or too long
  kParseMissingValue,
  kParseBadUnit,
  kParseUnknownField,   // the hub rejects unknown fields, so do we
  kParseDuplicateField,
};
const char* parse_error_text(ParseError e);

// [A-Za-z0-9_-]{1,64}
bool valid_name(const char* s);
bool valid_name(const char* s, size_t len);

// Parses one line from the Mega: {"sensor":..,"value":..[,"unit":..]}.
// `device`, `seq` and `ts` are refused: the ESP8266 owns those.
ParseError parse_reading(const char* line, size_t len, Reading* out);

// Fills a Reading from parts (used by the Mega and by tests). Returns false
// (and leaves a usable but invalid reading) if any part breaks the rules.
bool make_reading(Reading* out, const char* sensor, double value, uint8_t decimals,
                  const char* unit);

// Writes {"sensor":..,"value":..,"unit":..,"device":..,"seq":N}\n into
// buf[cap]. Returns the line length, or 0 if it did not fit (never a
// truncated line).
size_t format_reading_line(const Reading& r, const char* device, uint64_t seq, char* buf,
                           size_t cap);

}  // namespace tantra

#endif
