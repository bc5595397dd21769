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

TEST_CASE("seq = epoch << 32 | counter; the epoch moves up at every boot, saved first") {
  MemoryEpochStore store;
  {
    SeqSource s(store);  // first boot: nothing stored, the shell's first epoch
    CHECK(s.begin(7) == SeqSource::kOk);
    CHECK(store.value() == 7);
    CHECK(s.next() == (7ull << 32));
    CHECK(s.next() == (7ull << 32 | 1));
    CHECK(s.peek() == (7ull << 32 | 2));
  }
  {
    SeqSource s(store);  // reboot: stored + 1, whatever first_epoch says
    CHECK(s.begin(3) == SeqSource::kOk);
    CHECK(s.epoch() == 8);
    CHECK(store.value() == 8);
    uint64_t first = s.next();
    CHECK(first == (8ull << 32));
    CHECK(first > (7ull << 32 | 0xFFFFFFFFu));  // above anything the last boot used
    CHECK(s.advance() == SeqSource::kOk);        // a `replayed`: next epoch
    CHECK(store.value() == 9);
    CHECK(s.next() == (9ull << 32));
    CHECK(epoch_of(s.peek()) == 9);
  }
  CHECK(store.saves() == 3);
}

TEST_CASE("seq: a failing store still gives seqs, and says so") {
  MemoryEpochStore store;
  store.fail_saves(true);
  SeqSource s(store);
  CHECK(s.begin(5) == SeqSource::kNotSaved);
  CHECK(s.next() == (5ull << 32));
  CHECK(s.advance() == SeqSource::kNotSaved);
  CHECK(s.next() == (6ull << 32));
  // A first epoch beyond the maximum is cut to 16 bits, never used as is.
  MemoryEpochStore other;
  SeqSource t(other);
  CHECK(t.begin(0xFFFFFFFFu) == SeqSource::kOk);
  CHECK(t.epoch() == 0xFFFFu);
}

TEST_CASE("seq: 2^32 readings move on to the next epoch instead of wrapping") {
  MemoryEpochStore store;
  store.set(41);
  SeqSource s(store);
  s.begin(0);
  CHECK(s.epoch() == 42);
  s.set_counter_for_test(0xFFFFFFFEu);
  CHECK(s.next() == (42ull << 32 | 0xFFFFFFFEu));
  CHECK(s.next() == (42ull << 32 | 0xFFFFFFFFu));
  CHECK(store.value() == 43);  // saved before its first seq goes out
  CHECK(s.next() == (43ull << 32));
  // At the last epoch there is nowhere to go: the counter wraps.
  MemoryEpochStore last;
  last.set(kEpochMax);
  SeqSource t(last);
  t.begin(0);
  t.set_counter_for_test(0xFFFFFFFFu);
  CHECK(t.next() == kSeqMax);
  CHECK(t.next() == (static_cast<uint64_t>(kEpochMax) << 32));
}

TEST_CASE("seq: epochs stop at 2^21-1 so a seq never passes 2^53-1") {
  MemoryEpochStore store;
  store.set(kEpochMax - 1);
  SeqSource s(store);
  CHECK(s.begin(0) == SeqSource::kOk);
  CHECK(s.epoch() == kEpochMax);
  CHECK(s.next() == (static_cast<uint64_t>(kEpochMax) << 32));
  CHECK(s.advance() == SeqSource::kExhausted);
  CHECK(s.epoch() == kEpochMax);
  CHECK(s.next() == (static_cast<uint64_t>(kEpochMax) << 32 | 1));
  CHECK(s.peek() <= kSeqMax);
  CHECK((static_cast<uint64_t>(kEpochMax) << 32 | 0xFFFFFFFFu) == kSeqMax);
  MemoryEpochStore full;
  full.set(0xFFFFFFFFu);  // a garbage store: clamps, never overflows
  SeqSource t(full);
  CHECK(t.begin(0) == SeqSource::kExhausted);
  CHECK(t.epoch() == kEpochMax);
}

TEST_CASE("time_reached across the millis() wrap") {
  CHECK(time_reached(100, 100));
  CHECK(time_reached(101, 100));
  CHECK_FALSE(time_reached(99, 100));
  CHECK(time_reached(5, 0xFFFFFFF0u));        // deadline just before the wrap
  CHECK_FALSE(time_reached(0xFFFFFFF0u, 5));  // deadline just after it
}
