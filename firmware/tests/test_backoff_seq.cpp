#include <doctest/doctest.h>

#include <stddef.h>

#include <vector>

#include "tantra_backoff.h"
#include "tantra_clock.h"
#include "tantra_rng.h"
#include "tantra_seq.h"

using namespace tantra;

namespace {
// Returns scripted values, then repeats the last one.
struct ScriptedRng : Rng {
  std::vector<uint32_t> values;
  size_t i = 0;
  uint32_t next() { return values.empty() ? 0 : values[i < values.size() ? i++ : values.size() - 1]; }
};
}  // namespace

TEST_CASE("backoff doubles up to max; jitter stays in [cap/2, cap]") {
  ScriptedRng low, high;
  low.values = {0};
  high.values = {0xFFFFFFFFu};
  Backoff lo(100, 1000, low), hi(100, 1000, high);
  const uint32_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (uint32_t cap : caps) {
    CHECK(lo.current_cap() == cap);
    uint32_t a = lo.next_delay();
    uint32_t b = hi.next_delay();
    CHECK(a >= cap / 2);
    CHECK(b <= cap);
    CHECK(a <= b);
  }
  CHECK(lo.attempts() == 7);
  lo.reset();
  CHECK(lo.current_cap() == 100);
}

TEST_CASE("backoff: exact jitter from an injected rng") {
  ScriptedRng rng;
  rng.values = {7, 7, 7};
  Backoff b(100, 1000, rng);
  CHECK(b.next_delay() == 50 + 7 % 51);
  CHECK(b.next_delay() == 100 + 7 % 101);
  CHECK(b.next_delay() == 200 + 7 % 201);
}

TEST_CASE("backoff: no overflow with huge limits or many attempts") {
  ScriptedRng rng;
  rng.values = {0xFFFFFFFFu};
  Backoff b(1, 0xFFFFFFFFu, rng);
  uint32_t prev = 0;
  for (int i = 0; i < 100; ++i) {
    uint32_t d = b.next_delay();
    CHECK(d >= prev / 2);  // never collapses after overflow
    prev = d;
  }
  CHECK(b.current_cap() == 0xFFFFFFFFu);
  Backoff odd(0, 0, rng);  // nonsense config still gives sane delays
  CHECK(odd.next_delay() <= 1);
  Backoff inverted(500, 100, rng);
  CHECK(inverted.next_delay() <= 500);
}

TEST_CASE("xorshift: non-zero even from a zero seed, and varied") {
  XorShift32 rng(0);
  uint32_t a = rng.next(), b = rng.next();
  CHECK(a != 0);
  CHECK(a != b);
  XorShift32 same1(42), same2(42);
  CHECK(same1.next() == same2.next());
}

TEST_CASE("seq counts up and wraps at 2^32") {
  SeqCounter s(0xFFFFFFFEu);
  CHECK(s.next() == 0xFFFFFFFEu);
  CHECK(s.next() == 0xFFFFFFFFu);
  CHECK(s.next() == 0u);
  CHECK(s.peek() == 1u);
}

TEST_CASE("time_reached across the millis() wrap") {
  CHECK(time_reached(100, 100));
  CHECK(time_reached(101, 100));
  CHECK_FALSE(time_reached(99, 100));
  CHECK(time_reached(5, 0xFFFFFFF0u));        // deadline just before the wrap
  CHECK_FALSE(time_reached(0xFFFFFFF0u, 5));  // deadline just after it
}
