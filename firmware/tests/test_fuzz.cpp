// Deterministic fuzzing and round-trip properties: the parsers meet bytes
// from a serial line and a network, so mutated input must never crash them
// (ASan/UBSan watch every run) and what the writer emits must parse back.
#include <doctest/doctest.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "tantra_json_writer.h"
#include "tantra_reading.h"
#include "tantra_reply.h"
#include "tantra_rng.h"

using namespace tantra;

namespace {

struct CountingHandler : ReplyHandler {
  int acks = 0, errors = 0;
  void on_ack(uint64_t) { ++acks; }
  void on_error(const char* code, const char* detail, bool, uint64_t) {
    CHECK(strlen(code) < 33);
    CHECK(strlen(detail) < 97);
    ++errors;
  }
};

std::string mutate(const std::string& seed, XorShift32& rng) {
  std::string s = seed;
  static const char alphabet[] = "{}[]\":,\\ \t\r0123456789.eE+-tfnu\x01\x7f\xc3\xa9\xff";
  unsigned edits = 1 + rng.next() % 4;
  for (unsigned k = 0; k < edits; ++k) {
    size_t pos = s.empty() ? 0 : rng.next() % (s.size() + 1);
    char c = alphabet[rng.next() % (sizeof alphabet - 1)];
    switch (rng.next() % 3) {
      case 0: s.insert(pos, 1, c); break;
      case 1: if (pos < s.size()) s.erase(pos, 1); break;
      default: if (pos < s.size()) s[pos] = c; break;
    }
  }
  if (rng.next() % 8 == 0) s = s.substr(0, rng.next() % (s.size() + 1));  // truncation
  return s;
}

}  // namespace

TEST_CASE("fuzz: mutated Mega lines never crash; whatever parses re-formats and re-parses") {
  const std::string seeds[] = {
      "{\"sensor\":\"soilMoisture\",\"value\":42.5,\"unit\":\"%\"}",
      "{\"sensor\":\"turbineRpm\",\"value\":-1.5e3}",
      "{\"sensor\":\"flag\",\"value\":true,\"unit\":\"\\u00b0C\"}",
  };
  XorShift32 rng(12345);
  int parsed = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string line = mutate(seeds[i % 3], rng);
    Reading r;
    ParseError e = parse_reading(line.data(), line.size(), &r);
    if (e != kParseOk) continue;
    ++parsed;
    char out[kLineMax];
    size_t n = format_reading_line(r, "farm-1", static_cast<uint32_t>(i), out, sizeof out);
    REQUIRE(n > 0);
    // The hub line minus device/seq must parse back to the same reading.
    Reading again;
    std::string back(out, n - 1);
    size_t cut = back.find(",\"device\"");
    REQUIRE(cut != std::string::npos);
    back = back.substr(0, cut) + "}";
    CAPTURE(line);
    CAPTURE(back);
    REQUIRE(parse_reading(back.data(), back.size(), &again) == kParseOk);
    CHECK(std::string(again.sensor) == r.sensor);
    CHECK(std::string(again.value) == r.value);
    CHECK(std::string(again.unit) == r.unit);
  }
  CHECK(parsed > 100);  // the mutations keep some lines valid
}

TEST_CASE("fuzz: mutated replies never crash and never ack from an invalid line") {
  const std::string seeds[] = {
      "{\"ack\":17}",
      "{\"ack\":[17,18,4294967295]}",
      "{\"error\":\"invalid_reading\",\"detail\":\"value must be a finite number\",\"index\":0}",
  };
  XorShift32 rng(777);
  for (int i = 0; i < 30000; ++i) {
    std::string line = mutate(seeds[i % 3], rng);
    CountingHandler h;
    ReplyKind kind = parse_reply(line.data(), line.size(), &h);
    if (kind == kReplyInvalid || kind == kReplyEmpty) {
      CHECK(h.acks == 0);
      CHECK(h.errors == 0);
    }
    if (kind == kReplyError) CHECK(h.errors == 1);
  }
}

TEST_CASE("writer numbers parse back (strtod) within half a unit of the last decimal") {
  XorShift32 rng(99);
  for (int i = 0; i < 20000; ++i) {
    // Magnitudes from 1e-6 to 1e14, both signs, 0..6 decimals.
    double mant = static_cast<double>(rng.next()) / 4294967295.0;
    int exp10 = static_cast<int>(rng.next() % 21) - 6;
    double v = mant * pow(10.0, exp10) * ((rng.next() & 1) ? -1 : 1);
    uint8_t decimals = static_cast<uint8_t>(rng.next() % 7);
    char buf[64];
    JsonWriter w(buf, sizeof buf);
    w.number(v, decimals);
    REQUIRE(w.ok());
    CAPTURE(v);
    CAPTURE(buf);
    char* end = 0;
    double back = strtod(buf, &end);
    CHECK(*end == '\0');
    double tolerance = 0.5 * pow(10.0, -decimals) * (1 + 1e-9) + fabs(v) * 1e-15;
    CHECK(fabs(back - v) <= tolerance);
    // And the text is a number the device's own reader accepts.
    std::string line = std::string("{\"sensor\":\"s\",\"value\":") + buf + "}";
    Reading r;
    CHECK(parse_reading(line.data(), line.size(), &r) == kParseOk);
  }
}
