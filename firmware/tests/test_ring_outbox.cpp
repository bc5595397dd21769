#include <doctest/doctest.h>

#include <string.h>

#include <vector>

#include "tantra_outbox.h"
#include "tantra_ring.h"

using namespace tantra;

namespace {
std::vector<int> contents(Ring<int>& r) {
  std::vector<int> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(r.at(i));
  return out;
}
Reading reading(const char* sensor) {
  Reading r;
  REQUIRE(make_reading(&r, sensor, 1.0, 1, "%"));
  return r;
}
}  // namespace

TEST_CASE("ring: FIFO order across many wrap-arounds") {
  int store[4];
  Ring<int> r(store, 4);
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 50; ++round) {
    for (int k = 0; k < 3; ++k) CHECK_FALSE(r.push(next_in++));
    for (int k = 0; k < 3; ++k) {
      CHECK(r.front() == next_out++);
      r.pop_front();
    }
    CHECK(r.empty());
  }
}

TEST_CASE("ring: full push drops the oldest and says so") {
  int store[3];
  Ring<int> r(store, 3);
  CHECK_FALSE(r.push(1));
  CHECK_FALSE(r.push(2));
  CHECK_FALSE(r.push(3));
  CHECK(r.full());
  CHECK(r.push(4));
  CHECK(r.push(5));
  CHECK(contents(r) == std::vector<int>{3, 4, 5});
  CHECK(r.size() == 3);
}

TEST_CASE("ring: remove_at keeps order, including across the wrap") {
  int store[4];
  Ring<int> r(store, 4);
  for (int i = 1; i <= 6; ++i) r.push(i);  // head has wrapped: 3 4 5 6
  r.remove_at(2);
  CHECK(contents(r) == std::vector<int>{3, 4, 6});
  r.remove_at(0);
  CHECK(contents(r) == std::vector<int>{4, 6});
  r.remove_at(1);
  CHECK(contents(r) == std::vector<int>{4});
  r.remove_at(5);  // out of range: ignored
  CHECK(contents(r) == std::vector<int>{4});
  r.pop_front();
  r.pop_front();  // on empty: ignored
  CHECK(r.empty());
  r.clear();
  r.push(9);
  CHECK(contents(r) == std::vector<int>{9});
}

TEST_CASE("ring: capacity 0 and 1") {
  Ring<int> none(0, 0);
  CHECK(none.push(1));
  CHECK(none.empty());
  int one;
  Ring<int> r(&one, 1);
  CHECK_FALSE(r.push(1));
  CHECK(r.push(2));
  CHECK(contents(r) == std::vector<int>{2});
}

TEST_CASE("outbox: acks remove by seq, duplicates are counted") {
  Stats stats;
  memset(&stats, 0, sizeof stats);
  Pending slots[4];
  Outbox box(slots, 4, stats);
  for (uint32_t s = 10; s < 13; ++s) CHECK(box.add(reading("a"), s));
  CHECK(box.ack(11));
  CHECK_FALSE(box.ack(11));
  CHECK(stats.acked == 1);
  CHECK(stats.duplicate_acks == 1);
  CHECK(box.size() == 2);
  CHECK(box.at(0).seq == 10);
  CHECK(box.at(1).seq == 12);
}

TEST_CASE("outbox: full drops the oldest and counts it") {
  Stats stats;
  memset(&stats, 0, sizeof stats);
  Pending slots[3];
  Outbox box(slots, 3, stats);
  for (uint32_t s = 0; s < 5; ++s) box.add(reading("a"), s);
  CHECK(stats.queued == 5);
  CHECK(stats.dropped == 2);
  CHECK(box.size() == 3);
  CHECK(box.front().seq == 2);
  CHECK_FALSE(box.ack(0));  // evicted
}

TEST_CASE("outbox: reject names a seq, or the oldest in flight") {
  Stats stats;
  memset(&stats, 0, sizeof stats);
  Pending slots[4];
  Outbox box(slots, 4, stats);
  for (uint32_t s = 1; s <= 4; ++s) box.add(reading("a"), s);
  CHECK(box.reject(false, 0) == -1);  // nothing in flight yet
  box.at(1).in_flight = true;
  box.at(2).in_flight = true;
  CHECK(box.reject(false, 0) == 2);
  CHECK(box.reject(true, 4) == 4);
  CHECK(box.reject(true, 99) == -1);
  CHECK(stats.rejected == 2);
  CHECK(box.first_unsent()->seq == 1);
  box.at(0).in_flight = true;
  box.at(1).in_flight = true;
  CHECK(box.first_unsent() == 0);
  box.mark_all_unsent();
  CHECK(box.first_unsent()->seq == 1);
  box.expire_front();
  CHECK(stats.expired == 1);
  CHECK(box.front().seq == 3);
}

TEST_CASE("outbox: seqs either side of 2^32 are distinct entries") {
  Stats stats;
  memset(&stats, 0, sizeof stats);
  Pending slots[4];
  Outbox box(slots, 4, stats);
  box.add(reading("a"), 0xFFFFFFFEu);
  box.add(reading("a"), 0xFFFFFFFFu);
  box.add(reading("a"), 0x100000000ull);
  CHECK_FALSE(box.ack(0));
  CHECK(box.ack(0x100000000ull));
  CHECK(box.ack(0xFFFFFFFFu));
  CHECK(box.front().seq == 0xFFFFFFFEu);
}
