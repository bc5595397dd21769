#include "tantra_reading.h"

#include <string.h>

#include "tantra_json_reader.h"
#include "tantra_json_writer.h"

namespace tantra {

const char* parse_error_text(ParseError e) {
  switch (e) {
    case kParseOk: return "ok";
    case kParseEmpty: return "empty line";
    case kParseNotObject: return "not a JSON object";
    case kParseBadSensor: return "sensor must be 1-64 chars of [A-Za-z0-9_-]";
    case kParseMissingSensor: return "missing sensor";
    case kParseBadValue: return "value must be a finite number or boolean";
    case kParseMissingValue: return "missing value";
    case kParseBadUnit: return "unit must be a string of at most 16 characters";
    case kParseUnknownField: return "unknown field";
    case kParseDuplicateField: return "duplicate field";
  }
  return "?";
}

bool valid_name(const char* s, size_t len) {
  if (len == 0 || len > kNameMax) return false;
  for (size_t i = 0; i < len; ++i) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_name(const char* s) { return s && valid_name(s, strlen(s)); }

ParseError parse_reading(const char* line, size_t len, Reading* out) {
  JsonReader rd(line, len);
  if (rd.at_end()) return kParseEmpty;
  if (!rd.consume('{')) return kParseNotObject;
  bool have_sensor = false, have_value = false, have_unit = false;
  out->sensor[0] = out->value[0] = out->unit[0] = '\0';
  out->has_unit = false;
  if (!rd.consume('}')) {
    do {
      // Our keys are short; a longer (valid) one is unknown, and one longer
      // than this buffer is refused as junk, which is just as safe.
      char key[kNameMax + 8];
      size_t klen, kchars;
      if (!rd.read_string(key, sizeof key, &klen, &kchars)) return kParseNotObject;
      if (!rd.consume(':')) return kParseNotObject;
      if (strcmp(key, "sensor") == 0) {
        if (have_sensor) return kParseDuplicateField;
        size_t n, chars;
        if (rd.peek() != '"') return kParseBadSensor;
        if (!rd.read_string(out->sensor, sizeof out->sensor, &n, &chars)) return kParseBadSensor;
        if (!valid_name(out->sensor, n)) return kParseBadSensor;
        have_sensor = true;
      } else if (strcmp(key, "value") == 0) {
        if (have_value) return kParseDuplicateField;
        char c = rd.peek();
        if (c == 't' && rd.read_literal("true")) {
          strcpy(out->value, "true");
        } else if (c == 'f' && rd.read_literal("false")) {
          strcpy(out->value, "false");
        } else if (!rd.read_number_text(out->value, sizeof out->value)) {
          return kParseBadValue;
        }
        have_value = true;
      } else if (strcmp(key, "unit") == 0) {
        if (have_unit) return kParseDuplicateField;
        size_t n, chars;
        if (rd.peek() != '"') return kParseBadUnit;
        if (!rd.read_string(out->unit, sizeof out->unit, &n, &chars)) return kParseBadUnit;
        if (chars > kUnitCharsMax) return kParseBadUnit;
        out->has_unit = true;
        have_unit = true;
      } else {
        return kParseUnknownField;
      }
    } while (rd.consume(','));
    if (!rd.consume('}')) return kParseNotObject;
  }
  if (!rd.at_end()) return kParseNotObject;  // trailing junk
  if (!have_sensor) return kParseMissingSensor;
  if (!have_value) return kParseMissingValue;
  return kParseOk;
}

bool make_reading(Reading* out, const char* sensor, double value, uint8_t decimals,
                  const char* unit) {
  out->sensor[0] = out->value[0] = out->unit[0] = '\0';
  out->has_unit = false;
  bool ok = true;
  if (valid_name(sensor)) {
    strcpy(out->sensor, sensor);
  } else {
    ok = false;
  }
  JsonWriter w(out->value, sizeof out->value);
  w.number(value, decimals);
  if (!w.ok()) {
    out->value[0] = '\0';
    ok = false;
  }
  if (unit) {
    size_t n = strlen(unit), chars;
    if (n <= kUnitBytesMax && utf8_valid(unit, n, &chars) && chars <= kUnitCharsMax) {
      memcpy(out->unit, unit, n + 1);
      out->has_unit = true;
    } else {
      ok = false;
    }
  }
  return ok;
}

size_t format_reading_line(const Reading& r, const char* device, uint64_t seq, char* buf,
                           size_t cap) {
  JsonWriter w(buf, cap);
  w.begin_object();
  w.key("sensor");
  w.string(r.sensor);
  w.key("value");
  w.raw(r.value);
  if (r.has_unit) {
    w.key("unit");
    w.string(r.unit);
  }
  if (device && device[0]) {
    w.key("device");
    w.string(device);
  }
  w.key("seq");
  w.uinteger64(seq);
  w.end_object();
  w.newline();
  if (!w.ok()) {
    if (cap) buf[0] = '\0';
    return 0;
  }
  return w.length();
}

}  // namespace tantra
