#include <doctest/doctest.h>

#include <float.h>
#include <math.h>
#include <string.h>

#include <string>

#include "tantra_json_writer.h"

using tantra::JsonWriter;

namespace {
std::string num(double v, uint8_t decimals) {
  char buf[64];
  JsonWriter w(buf, sizeof buf);
  w.number(v, decimals);
  REQUIRE(w.ok());
  return buf;
}
}  // namespace

TEST_CASE("numbers: fixed point, trailing zeros trimmed, no -0") {
  CHECK(num(42, 2) == "42");
  CHECK(num(3.5, 2) == "3.5");
  CHECK(num(3.14159, 3) == "3.142");
  CHECK(num(-3.14159, 3) == "-3.142");
  CHECK(num(0.1 + 0.2, 3) == "0.3");
  CHECK(num(0, 3) == "0");
  CHECK(num(-0.0, 3) == "0");
  CHECK(num(-0.0004, 3) == "0");  // rounds to zero: no "-0"
  CHECK(num(-0.0005, 3) == "-0.001");
  CHECK(num(0.05, 1) == "0.1");
  CHECK(num(9.999, 2) == "10");
  CHECK(num(1.25, 0) == "1");  // half up on the magnitude
  CHECK(num(1.5, 0) == "2");
  CHECK(num(1023, 0) == "1023");
  CHECK(num(0.000123, 6) == "0.000123");
  CHECK(num(123456789012.5, 1) == "123456789012.5");
  CHECK(num(1.0, 12) == "1");  // decimals clamped to 9
  CHECK(num(0.123456789123, 12) == "0.123456789");
}

TEST_CASE("numbers: large magnitudes use exponent form") {
  CHECK(num(1e15, 2) == "1e15");
  CHECK(num(-2.5e20, 2) == "-2.5e20");
  CHECK(num(DBL_MAX, 2).substr(0, 6) == "1.7976");
  CHECK(num(9.9999999e20, 2) == "1e21");  // rounding carries into a digit
  CHECK(num(999999999999999.0, 0) == "999999999999999");
}

TEST_CASE("numbers: NaN and infinities are refused, and stay refused") {
  const double values[] = {NAN, INFINITY, -INFINITY};
  for (double v : values) {
    char buf[32];
    JsonWriter w(buf, sizeof buf);
    w.begin_object();
    w.key("value");
    w.number(v, 2);
    CHECK_FALSE(w.ok());
    CHECK(w.error() == JsonWriter::kNotFinite);
    w.end_object();  // sticky: still an error
    CHECK(w.error() == JsonWriter::kNotFinite);
  }
  CHECK(tantra::is_finite(1.0));
  CHECK(tantra::is_finite(-DBL_MAX));
  CHECK_FALSE(tantra::is_finite(NAN));
  CHECK_FALSE(tantra::is_finite(-INFINITY));
}

TEST_CASE("integers at their limits") {
  char buf[128];
  JsonWriter w(buf, sizeof buf);
  w.begin_object();
  w.key("a"); w.integer(INT32_MIN);
  w.key("b"); w.integer(INT32_MAX);
  w.key("c"); w.uinteger(UINT32_MAX);
  w.key("d"); w.integer(0);
  w.key("e"); w.boolean(true);
  w.key("f"); w.boolean(false);
  w.end_object();
  REQUIRE(w.ok());
  CHECK(std::string(buf) ==
        "{\"a\":-2147483648,\"b\":2147483647,\"c\":4294967295,\"d\":0,\"e\":true,\"f\":false}");
}

TEST_CASE("strings are escaped") {
  char buf[128];
  JsonWriter w(buf, sizeof buf);
  w.string("q\"b\\n\nr\rt\tb\bf\f\x01\x1f\x7f°C");
  REQUIRE(w.ok());
  CHECK(std::string(buf) ==
        "\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\\u0001\\u001f\\u007f°C\"");
}

TEST_CASE("overflow is reported, never a partial line, NUL always written") {
  for (size_t cap = 0; cap < 40; ++cap) {
    char buf[64];
    memset(buf, 'X', sizeof buf);
    JsonWriter w(buf, cap);
    w.begin_object();
    w.key("sensor");
    w.string("soilMoisture");
    w.end_object();
    w.newline();
    const size_t full = strlen("{\"sensor\":\"soilMoisture\"}\n");
    if (cap > full) {
      CHECK(w.ok());
      CHECK(w.length() == full);
    } else {
      CHECK_FALSE(w.ok());
      CHECK(w.error() == JsonWriter::kOverflow);
    }
    if (cap > 0) CHECK(strlen(buf) < cap);  // terminated inside the buffer
    CHECK(buf[cap] == 'X');                  // nothing written past it
  }
}

TEST_CASE("commas between members") {
  char buf[64];
  JsonWriter w(buf, sizeof buf);
  w.begin_object();
  w.key("a");
  w.raw("1");
  w.key("b");
  w.raw("true");
  w.end_object();
  CHECK(std::string(buf) == "{\"a\":1,\"b\":true}");
}
