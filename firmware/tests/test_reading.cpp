#include <doctest/doctest.h>

#include <math.h>
#include <string.h>

#include <string>

#include "tantra_json_reader.h"
#include "tantra_reading.h"

using namespace tantra;

namespace {
ParseError parse(const std::string& line, Reading* r) {
  return parse_reading(line.data(), line.size(), r);
}
std::string line_for(const Reading& r, const char* device, uint64_t seq) {
  char buf[kLineMax];
  size_t n = format_reading_line(r, device, seq, buf, sizeof buf);
  return std::string(buf, n);
}
}  // namespace

TEST_CASE("a Mega line becomes a hub line with device and seq") {
  Reading r;
  REQUIRE(parse("{\"sensor\":\"soilMoisture\",\"value\":42,\"unit\":\"%\"}", &r) == kParseOk);
  CHECK(std::string(r.sensor) == "soilMoisture");
  CHECK(std::string(r.value) == "42");
  CHECK(r.has_unit);
  CHECK(line_for(r, "farm-1", 17) ==
        "{\"sensor\":\"soilMoisture\",\"value\":42,\"unit\":\"%\",\"device\":\"farm-1\",\"seq\":17}\n");
}

TEST_CASE("value forms are kept as written") {
  Reading r;
  const char* ok[] = {"0", "-0", "3.75", "-1.5e3", "1E+2", "2e-7", "true", "false",
                      "123456789012345678901234", "1.7e307", "0.0e999"};
  for (const char* v : ok) {
    std::string line = std::string("{\"sensor\":\"s\",\"value\":") + v + "}";
    CAPTURE(line);
    REQUIRE(parse(line, &r) == kParseOk);
    CHECK(std::string(r.value) == v);
    CHECK_FALSE(r.has_unit);
  }
}

TEST_CASE("bad values are refused") {
  Reading r;
  const char* bad[] = {"NaN", "Infinity", "-Infinity", "nan", "1e999", "-1e308", "12e400",
                       "\"42\"", "null", "[1]", "{}", "01", "1.", ".5", "+1", "1e", "--1",
                       "0x10", "truex", "1234567890123456789012345"};
  for (const char* v : bad) {
    std::string line = std::string("{\"sensor\":\"s\",\"value\":") + v + "}";
    CAPTURE(line);
    CHECK(parse(line, &r) != kParseOk);
  }
}

TEST_CASE("names: charset and length") {
  Reading r;
  std::string name64(64, 'a');
  CHECK(parse("{\"sensor\":\"" + name64 + "\",\"value\":1}", &r) == kParseOk);
  CHECK(parse("{\"sensor\":\"" + name64 + "a\",\"value\":1}", &r) == kParseBadSensor);
  CHECK(parse("{\"sensor\":\"\",\"value\":1}", &r) == kParseBadSensor);
  CHECK(parse("{\"sensor\":\"a b\",\"value\":1}", &r) == kParseBadSensor);
  CHECK(parse("{\"sensor\":\"a.b\",\"value\":1}", &r) == kParseBadSensor);
  CHECK(parse("{\"sensor\":\"A-z_09\",\"value\":1}", &r) == kParseOk);
  CHECK(parse("{\"sensor\":42,\"value\":1}", &r) == kParseBadSensor);
  CHECK(valid_name("farm-1"));
  CHECK_FALSE(valid_name("farm 1"));
  CHECK_FALSE(valid_name(""));
  CHECK_FALSE(valid_name(static_cast<const char*>(0)));
}

TEST_CASE("unit: 16 characters, counted as characters not bytes") {
  Reading r;
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"°C\"}", &r) == kParseOk);
  CHECK(std::string(r.unit) == "°C");
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"\\u00b0C\"}", &r) == kParseOk);
  CHECK(std::string(r.unit) == "°C");
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"" + std::string(16, 'u') + "\"}", &r) ==
        kParseOk);
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"" + std::string(17, 'u') + "\"}", &r) ==
        kParseBadUnit);
  std::string sixteen_degrees;
  for (int i = 0; i < 16; ++i) sixteen_degrees += "°";  // 32 bytes
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"" + sixteen_degrees + "\"}", &r) == kParseOk);
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"\"}", &r) == kParseOk);
  CHECK(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":5}", &r) == kParseBadUnit);
  // Escaped quote and control characters survive and are re-escaped.
  REQUIRE(parse("{\"sensor\":\"t\",\"value\":1,\"unit\":\"a\\\"\\n\"}", &r) == kParseOk);
  CHECK(line_for(r, "d", 1) ==
        "{\"sensor\":\"t\",\"value\":1,\"unit\":\"a\\\"\\n\",\"device\":\"d\",\"seq\":1}\n");
}

TEST_CASE("the device owns device, seq and ts; other fields are unknown") {
  Reading r;
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"device\":\"x\"}", &r) == kParseUnknownField);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"seq\":1}", &r) == kParseUnknownField);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"ts\":1}", &r) == kParseUnknownField);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"rssi\":-60}", &r) == kParseUnknownField);
  CHECK(parse("{\"sensor\":\"s\",\"sensor\":\"t\",\"value\":1}", &r) == kParseDuplicateField);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"value\":2}", &r) == kParseDuplicateField);
  CHECK(parse("{\"value\":1}", &r) == kParseMissingSensor);
  CHECK(parse("{\"sensor\":\"s\"}", &r) == kParseMissingValue);
  CHECK(parse("{}", &r) == kParseMissingSensor);
}

TEST_CASE("junk, truncation and trailing garbage") {
  Reading r;
  const char* junk[] = {"x", "{", "{\"sensor\"", "{\"sensor\":\"s\",\"value\":1",
                        "{\"sensor\":\"s\",\"value\":1}}", "{\"sensor\":\"s\",\"value\":1} x",
                        "[{\"sensor\":\"s\",\"value\":1}]", "\xff\xfe", "{\"sensor\":\"s\",,\"value\":1}",
                        "{\"sensor\":\"s\" \"value\":1}", "{'sensor':'s','value':1}",
                        "{\"sensor\":\"s\",\"value\":1,}"};
  for (const char* j : junk) {
    CAPTURE(j);
    CHECK(parse(j, &r) != kParseOk);
  }
  CHECK(parse("", &r) == kParseEmpty);
  CHECK(parse("  \t\r", &r) == kParseEmpty);
  CHECK(parse("  {\"sensor\" : \"s\" , \"value\" : 1 }  ", &r) == kParseOk);
  // Embedded NUL: the line length is what counts, not strlen.
  std::string with_nul("{\"sensor\":\"s\",\"value\":1}\0junk", 30);
  CHECK(parse(with_nul, &r) == kParseNotObject);
}

TEST_CASE("strings: invalid UTF-8, surrogates and NUL escapes are refused") {
  Reading r;
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\xc3\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\xc0\xaf\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\xed\xa0\x80\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\\ud800\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\\udc00\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\\u0000\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\\x\"}", &r) == kParseBadUnit);
  CHECK(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"a\tb\"}", &r) == kParseBadUnit);
  REQUIRE(parse("{\"sensor\":\"s\",\"value\":1,\"unit\":\"\\ud83d\\ude00\"}", &r) == kParseOk);
  CHECK(std::string(r.unit) == "\xf0\x9f\x98\x80");
}

TEST_CASE("make_reading from a double") {
  Reading r;
  CHECK(make_reading(&r, "turbineVoltage", 12.3456, 2, "V"));
  CHECK(line_for(r, "farm-1", 0) ==
        "{\"sensor\":\"turbineVoltage\",\"value\":12.35,\"unit\":\"V\",\"device\":\"farm-1\",\"seq\":0}\n");
  CHECK_FALSE(make_reading(&r, "turbineVoltage", NAN, 2, "V"));
  CHECK_FALSE(make_reading(&r, "turbineVoltage", INFINITY, 2, "V"));
  CHECK_FALSE(make_reading(&r, "bad name", 1, 2, "V"));
  CHECK_FALSE(make_reading(&r, "s", 1, 2, "seventeen chars!!"));
  CHECK(make_reading(&r, "s", 1, 2, 0));
  CHECK_FALSE(r.has_unit);
}

TEST_CASE("format: the longest possible reading fits kLineMax; a tiny buffer gives 0") {
  Reading r;
  memset(&r, 0, sizeof r);
  memset(r.sensor, 'S', kNameMax);
  strcpy(r.value, "-1.23456789012345678e-10");
  REQUIRE(strlen(r.value) == kValueTextMax);
  memset(r.unit, '\x01', kUnitCharsMax);  // worst case: every char \u-escaped
  r.has_unit = true;
  std::string device(kNameMax, 'D');
  char buf[kLineMax];
  size_t n = format_reading_line(r, device.c_str(), UINT32_MAX, buf, sizeof buf);
  CHECK(n > 0);
  CHECK(n < kLineMax);
  char small[40];
  CHECK(format_reading_line(r, device.c_str(), 1, small, sizeof small) == 0);
  CHECK(small[0] == '\0');
}

TEST_CASE("reader: skip_value bounds nesting and handles all JSON kinds") {
  const char* ok = "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\\"y\",\"d\":true,\"e\":-1.5e2}";
  JsonReader rd(ok, strlen(ok));
  CHECK(rd.skip_value());
  CHECK(rd.at_end());
  std::string deep(20, '[');
  deep += std::string(20, ']');
  JsonReader rd2(deep.data(), deep.size());
  CHECK_FALSE(rd2.skip_value(8));
  uint64_t v;
  JsonReader rd3("18446744073709551615", 20);
  CHECK(rd3.read_uint(&v));
  CHECK(v == UINT64_MAX);
  JsonReader rd4("18446744073709551616", 20);
  CHECK_FALSE(rd4.read_uint(&v));
  JsonReader rd5("017", 3);
  CHECK_FALSE(rd5.read_uint(&v));
  JsonReader rd6("1.0", 3);
  CHECK_FALSE(rd6.read_uint(&v));
}
