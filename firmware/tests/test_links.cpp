#include <doctest/doctest.h>

#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fakes.h"
#include "tantra_forwarder.h"
#include "tantra_link.h"

using namespace tantra;

namespace {

struct TcpRig {
  Stats stats;
  Pending slots[8];
  Outbox box;
  FakeStream port;
  ConstRng rng;  // 0: every delay is exactly cap/2
  Backoff backoff;
  TcpConfig cfg;
  RecordingLog log;
  TcpLink link;
  TcpRig()
      : stats(), box(slots, 8, stats), backoff(1000, 8000, rng), cfg(config()),
        link(port, box, "farm-1", backoff, cfg, stats, &log) {}
  static TcpConfig config() {
    TcpConfig c = default_tcp_config();
    c.keepalive_ms = 0;
    return c;
  }
  void add(uint64_t seq) {
    Reading r;
    REQUIRE(make_reading(&r, "soilMoisture", 42, 0, "%"));
    box.add(r, seq);
  }
};

struct UdpRig {
  Stats stats;
  Pending slots[8];
  Outbox box;
  FakeDatagrams port;
  ConstRng rng;
  Backoff retry;
  UdpConfig cfg;
  RecordingLog log;
  UdpLink link;
  UdpRig()
      : stats(), box(slots, 8, stats), retry(200, 1000, rng), cfg(config()),
        link(port, box, "farm-1", retry, cfg, stats, &log) {}
  static UdpConfig config() {
    UdpConfig c = default_udp_config();
    c.max_tries = 3;
    return c;
  }
  void add(uint64_t seq) {
    Reading r;
    REQUIRE(make_reading(&r, "turbineRpm", 1200.5, 1, "rpm"));
    box.add(r, seq);
  }
};

}  // namespace

TEST_CASE("tcp: connects, writes each queued line once, acks empty the queue") {
  TcpRig t;
  t.add(1);
  t.add(2);
  t.link.poll(0);
  CHECK(t.link.up());
  CHECK(t.port.lines().size() == 2);
  CHECK(seq_of(t.port.lines()[0]) == 1);
  CHECK(t.port.lines()[0] ==
        "{\"sensor\":\"soilMoisture\",\"value\":42,\"unit\":\"%\",\"device\":\"farm-1\",\"seq\":1}");
  t.link.poll(10);  // nothing new: nothing written again
  CHECK(t.port.lines().size() == 2);
  t.port.incoming = "{\"ack\":1}\r\n{\"ack\":2}\n";
  t.link.poll(20);
  CHECK(t.box.empty());
  CHECK(t.stats.sent == 2);
  CHECK(t.stats.acked == 2);
  CHECK(t.stats.resent == 0);
}

TEST_CASE("tcp: reconnects with backoff and re-sends everything unacked") {
  TcpRig t;
  t.add(1);
  t.add(2);
  t.add(3);
  t.link.poll(0);
  t.port.incoming = "{\"ack\":1}\n";
  t.port.peer_closed = true;  // hub stopped after flushing ack 1
  t.link.poll(5);
  CHECK_FALSE(t.link.up());
  CHECK(t.box.size() == 2);
  CHECK(t.stats.disconnects == 1);
  // First delay: cap 1000, jitter 0 -> 500 ms. Hub still down meanwhile.
  t.port.accept_connect = false;
  t.link.poll(504);
  CHECK(t.port.connects == 1);
  t.link.poll(505);
  CHECK(t.port.connects == 2);
  CHECK(t.stats.connect_failures == 1);
  t.link.poll(505 + 999);  // second delay: cap 2000 -> 1000
  CHECK(t.port.connects == 2);
  t.link.poll(505 + 1000);
  CHECK(t.port.connects == 3);
  t.port.accept_connect = true;
  t.link.poll(1505 + 1999);
  CHECK(t.port.connects == 3);
  t.link.poll(1505 + 2000);  // third: cap 4000 -> 2000
  CHECK(t.link.up());
  std::vector<std::string> lines = t.port.lines();
  REQUIRE(lines.size() == 5);
  CHECK(seq_of(lines[3]) == 2);
  CHECK(seq_of(lines[4]) == 3);
  CHECK(t.stats.resent == 2);
  CHECK(t.stats.sent == 5);
  CHECK(t.log.saw("\"event\":\"connected\""));
  CHECK(t.log.saw("\"event\":\"disconnected\""));
  // A success resets the backoff: the next drop waits the base again.
  t.port.peer_closed = true;
  t.link.poll(4000);
  CHECK(t.link.retry_at() == 4000 + 500);
}

TEST_CASE("tcp: short writes resume mid-line; a reading counts as sent only when whole") {
  TcpRig t;
  t.port.write_budget = 7;  // the socket takes 7 bytes per call, then is full
  t.add(1);
  t.link.poll(0);
  CHECK(t.port.written.size() == 7);
  CHECK(t.stats.sent == 0);
  for (uint32_t now = 1; now < 40 && t.stats.sent == 0; ++now) t.link.poll(now);
  CHECK(t.port.lines().size() == 1);
  CHECK(t.stats.sent == 1);
  CHECK(seq_of(t.port.lines()[0]) == 1);

  TcpRig u;
  u.port.write_budget = 0;  // socket buffer full from the start
  u.add(1);
  u.link.poll(0);
  CHECK(u.port.written.empty());
  CHECK(u.stats.sent == 0);
  CHECK(u.box.first_unsent() != 0);
  CHECK(u.link.up());
  u.port.write_budget = 1000;
  u.link.poll(1);
  CHECK(u.port.lines().size() == 1);
  CHECK(u.stats.sent == 1);
}

TEST_CASE("tcp: a connection dying mid-line re-sends the whole line") {
  struct HalfPort : FakeStream {
    int calls = 0;
    int write(const char* data, size_t len) {
      if (++calls == 2) return -1;  // breaks after the first chunk
      return FakeStream::write(data, len < 10 ? len : len);
    }
  };
  Stats stats = Stats();
  Pending slots[4];
  Outbox box(slots, 4, stats);
  HalfPort port;
  port.write_budget = 10;
  ConstRng rng;
  Backoff backoff(100, 100, rng);
  TcpConfig cfg = default_tcp_config();
  TcpLink link(port, box, "d", backoff, cfg, stats, 0);
  Reading r;
  REQUIRE(make_reading(&r, "s", 1, 0, 0));
  box.add(r, 9);
  link.poll(0);  // 10 bytes out
  CHECK(link.up());
  link.poll(1);  // write fails: dropped, retry at 1 + 50
  CHECK_FALSE(link.up());
  CHECK(stats.sent == 0);
  port.write_budget = 1000;
  link.poll(51);
  CHECK(link.up());
  // The hub got a 10-byte fragment (dropped with the old connection), then
  // the full line on the new one.
  CHECK(port.written.substr(10) == "{\"sensor\":\"s\",\"value\":1,\"device\":\"d\",\"seq\":9}\n");
  CHECK(stats.sent == 1);
  CHECK(stats.resent == 0);
}

TEST_CASE("tcp: error replies reject the oldest reading in flight, in order") {
  TcpRig t;
  t.add(1);
  t.add(2);
  t.add(3);
  t.link.poll(0);
  t.port.incoming =
      "{\"ack\":1}\n{\"error\":\"invalid_reading\",\"detail\":\"value must be a finite number or "
      "boolean\",\"index\":0}\n{\"ack\":3}\n";
  t.link.poll(1);
  CHECK(t.box.empty());
  CHECK(t.stats.rejected == 1);
  CHECK(t.stats.acked == 2);
  CHECK(t.log.saw("\"event\":\"rejected\",\"seq\":2"));
}

TEST_CASE("tcp: junk and over-long reply lines change nothing") {
  TcpRig t;
  t.add(1);
  t.link.poll(0);
  t.port.incoming = "garbage\n{\"ack\":[1,\n" + std::string(2000, 'x') + "\n\n";
  for (uint32_t now = 1; now < 10; ++now) t.link.poll(now);  // reads are bounded per poll
  CHECK(t.port.incoming.empty());
  CHECK(t.box.size() == 1);
  CHECK(t.stats.bad_replies == 3);
  CHECK(t.link.up());
  t.port.incoming = "{\"ack\":1}\n";
  t.link.poll(20);
  CHECK(t.box.empty());
}

TEST_CASE("tcp: keep-alive blank line after silence") {
  TcpRig t;
  t.cfg.keepalive_ms = 1000;
  TcpLink link(t.port, t.box, "farm-1", t.backoff, t.cfg, t.stats, 0);
  link.poll(0);
  link.poll(999);
  CHECK(t.port.written.empty());
  link.poll(1000);
  CHECK(t.port.written == "\n");
  link.poll(1500);
  CHECK(t.port.written == "\n");
  CHECK(t.stats.sent == 0);
}

TEST_CASE("tcp: readings queued while down go out after connect, oldest dropped when full") {
  TcpRig t;
  t.port.accept_connect = false;
  t.link.poll(0);
  for (uint32_t s = 0; s < 10; ++s) t.add(s);  // 8 slots: 0 and 1 dropped
  CHECK(t.stats.dropped == 2);
  t.port.accept_connect = true;
  t.link.poll(600);
  t.link.poll(601);  // max 8 lines per poll
  std::vector<std::string> lines = t.port.lines();
  REQUIRE(lines.size() == 8);
  CHECK(seq_of(lines.front()) == 2);
  CHECK(seq_of(lines.back()) == 9);
}

TEST_CASE("udp: one datagram in flight; ack moves on to the next") {
  UdpRig u;
  u.add(5);
  u.add(6);
  u.link.poll(0);
  REQUIRE(u.port.sent.size() == 1);
  CHECK(u.port.sent[0] ==
        "{\"sensor\":\"turbineRpm\",\"value\":1200.5,\"unit\":\"rpm\",\"device\":\"farm-1\",\"seq\":5}");
  u.link.poll(1);
  CHECK(u.port.sent.size() == 1);  // stop-and-wait
  u.port.replies.push_back("{\"ack\":5}");
  u.link.poll(2);
  REQUIRE(u.port.sent.size() == 2);
  CHECK(seq_of(u.port.sent[1]) == 6);
  u.port.replies.push_back("{\"ack\":6}\n");
  u.link.poll(3);
  CHECK(u.box.empty());
  CHECK(u.stats.acked == 2);
  CHECK(u.stats.resent == 0);
}

TEST_CASE("udp: re-sent with backoff until acked") {
  UdpRig u;
  u.add(1);
  u.link.poll(0);       // try 1, wait 100 (cap 200 / 2)
  u.link.poll(99);
  CHECK(u.port.sent.size() == 1);
  u.link.poll(100);     // try 2, wait 200
  CHECK(u.port.sent.size() == 2);
  u.port.replies.push_back("{\"ack\":1}");
  u.link.poll(150);
  CHECK(u.box.empty());
  CHECK(u.stats.sent == 2);
  CHECK(u.stats.resent == 1);
  CHECK(u.stats.expired == 0);
}

TEST_CASE("udp: bounded tries, then the reading expires and the next one starts fresh") {
  UdpRig u;
  u.add(1);
  u.add(2);
  u.link.poll(0);    // try 1 of seq 1, due 100
  u.link.poll(100);  // try 2, due 300
  u.link.poll(300);  // try 3, due 700
  CHECK(u.port.sent.size() == 3);
  u.link.poll(700);  // out of tries: expire 1, send 2 at once
  CHECK(u.stats.expired == 1);
  REQUIRE(u.port.sent.size() == 4);
  CHECK(seq_of(u.port.sent[3]) == 2);
  CHECK(u.log.saw("\"event\":\"expired\",\"seq\":1"));
  u.link.poll(799);  // fresh backoff for seq 2: due 800
  CHECK(u.port.sent.size() == 4);
  u.link.poll(800);
  CHECK(u.port.sent.size() == 5);
}

TEST_CASE("udp: an error reply rejects the reading in flight; a late duplicate ack is harmless") {
  UdpRig u;
  u.add(1);
  u.add(2);
  u.link.poll(0);
  u.port.replies.push_back("{\"error\":\"invalid_reading\",\"index\":0}");
  u.link.poll(1);
  CHECK(u.stats.rejected == 1);
  CHECK(seq_of(u.port.sent.back()) == 2);
  u.port.replies.push_back("{\"ack\":1}");
  u.port.replies.push_back("not json");
  u.link.poll(2);
  CHECK(u.stats.duplicate_acks == 1);
  CHECK(u.stats.bad_replies == 1);
  CHECK(u.box.size() == 1);
}

TEST_CASE("udp: one reply datagram may hold several lines (ack and errors together)") {
  UdpRig u;
  u.add(1);
  u.link.poll(0);
  u.port.replies.push_back("{\"ack\":[1]}\r\n{\"error\":\"invalid_reading\",\"index\":1}\n");
  u.link.poll(1);
  CHECK(u.box.empty());
  CHECK(u.stats.bad_replies == 0);
  CHECK(u.stats.rejected == 0);
}

TEST_CASE("forwarder: serial bytes in any chunking become queued readings with seqs") {
  Stats stats = Stats();
  Pending slots[8];
  Outbox box(slots, 8, stats);
  FakeStream port;
  ConstRng rng;
  Backoff backoff(100, 1000, rng);
  TcpConfig cfg = default_tcp_config();
  RecordingLog log;
  TcpLink link(port, box, "farm-1", backoff, cfg, stats, &log);
  MemoryEpochStore store;
  store.set(1u << 20);  // the last boot's epoch
  SeqSource seq(store);
  REQUIRE(seq.begin(0) == SeqSource::kOk);
  seq.set_counter_for_test(0xFFFFFFFFu);
  Forwarder fw(seq, box, link, stats, &log);
  std::string serial =
      "\xff\xfe boot noise\r\n"
      "{\"sensor\":\"soilMoisture\",\"value\":42.5,\"unit\":\"%\"}\r\n"
      "\n"
      "{\"sensor\":\"turbineRpm\",\"value\":NaN}\n"
      "{\"sensor\":\"turbineVoltage\",\"value\":12.1,\"unit\":\"V\"}\n" +
      std::string(400, 'z') + "\n{\"sensor\":\"x\",\"value\":tr";
  for (size_t i = 0; i < serial.size(); i += 3) fw.feed(serial.data() + i, std::min<size_t>(3, serial.size() - i));
  CHECK(stats.lines == 4);
  CHECK(stats.bad_lines == 2);
  CHECK(stats.long_lines == 1);
  CHECK(stats.queued == 2);
  fw.poll(0);
  std::vector<std::string> lines = port.lines();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "{\"sensor\":\"soilMoisture\",\"value\":42.5,\"unit\":\"%\",\"device\":\"farm-1\",\"seq\":4503608217305087}");
  CHECK(seq_of(lines[1]) == 4503608217305088ll);  // the next epoch, (2^20 + 2) << 32
  CHECK(log.saw("\"event\":\"bad_line\""));
  fw.feed("ue}\n", 4);  // the split line completes
  CHECK(stats.queued == 3);
  CHECK_FALSE(fw.idle());
}

TEST_CASE("stats format") {
  Stats s = Stats();
  s.sent = 3;
  char buf[512];
  size_t n = format_stats(s, 2, buf, sizeof buf);
  CHECK(n > 0);
  CHECK(std::string(buf).find("\"sent\":3") != std::string::npos);
  CHECK(std::string(buf).find("\"in_queue\":2") != std::string::npos);
  char tiny[10];
  CHECK(format_stats(s, 0, tiny, sizeof tiny) == 0);
}

TEST_CASE("log_event cuts long details and escapes them") {
  RecordingLog log;
  std::string detail(500, 'd');
  log_event(&log, "rejected", 5, detail.c_str());
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].size() < 160);
  CHECK(log.lines[0].find("\"seq\":5") != std::string::npos);
  std::string controls(150, '\x01');
  log_event(&log, "bad_line", -1, controls.c_str());
  REQUIRE(log.lines.size() == 2);  // escaping made it too long: logged without detail
  CHECK(log.lines[1] == "{\"event\":\"bad_line\"}");
  log_event(0, "nothing", -1, 0);  // no log: fine
}
