// The links with the hub's --auth: TCP auth line, signed UDP, and the
// replies that are not about a reading (unauthorized, retry, rate_limited,
// replayed).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fakes.h"
#include "tantra_forwarder.h"
#include "tantra_link.h"
#include "tantra_seq.h"
#include "tantra_sha256.h"

using namespace tantra;

namespace {

const char kToken[] = "tantra_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGhIjKlMnOpQrStUvWx";

struct AuthTcpRig {
  Stats stats;
  Pending slots[8];
  Outbox box;
  FakeStream port;
  ConstRng rng;  // 0: every delay is exactly cap/2
  Backoff backoff;
  TcpConfig cfg;
  RecordingLog log;
  TcpLink link;
  AuthTcpRig()
      : stats(), box(slots, 8, stats), backoff(1000, 8000, rng), cfg(config()),
        link(port, box, "farm-1", backoff, cfg, stats, &log) {}
  static TcpConfig config() {
    TcpConfig c = default_tcp_config();
    c.keepalive_ms = 0;
    c.token = kToken;
    c.auth_timeout_ms = 5000;
    c.auth_retry_ms = 60000;
    c.resend_after_ms = 300;
    return c;
  }
  void add(uint64_t seq) {
    Reading r;
    REQUIRE(make_reading(&r, "soilMoisture", 42, 0, "%"));
    box.add(r, seq);
  }
};

const std::string kAuthLine = std::string("{\"auth\":\"") + kToken + "\"}";

}  // namespace

TEST_CASE("tcp auth: the auth line goes first, readings wait for the ok") {
  AuthTcpRig t;
  t.add(1);
  t.add(2);
  t.link.poll(0);
  CHECK(t.link.authenticating());
  CHECK_FALSE(t.link.up());
  REQUIRE(t.port.lines().size() == 1);
  std::string first = t.port.lines()[0];
  CHECK(first == kAuthLine);
  t.link.poll(10);  // no answer yet: still nothing but the auth line
  CHECK(t.port.lines().size() == 1);
  CHECK(t.stats.sent == 0);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":\"farm-1\"}\n";
  t.link.poll(20);
  CHECK(t.link.up());
  CHECK(t.log.saw("\"event\":\"authenticated\""));
  std::vector<std::string> lines = t.port.lines();
  REQUIRE(lines.size() == 3);
  CHECK(seq_of(lines[1]) == 1);
  CHECK(seq_of(lines[2]) == 2);
  t.port.incoming = "{\"ack\":1}\n{\"ack\":2}\n";
  t.link.poll(30);
  CHECK(t.box.empty());
  CHECK(t.stats.auth_failures == 0);
}

TEST_CASE("tcp auth: an admin token (device null) is fine; a token for another device is not") {
  AuthTcpRig t;
  t.add(1);
  t.link.poll(0);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":null}\n";
  t.link.poll(1);
  CHECK(t.link.up());
  CHECK(t.port.lines().size() == 2);

  AuthTcpRig u;
  u.add(1);
  u.link.poll(0);
  u.port.incoming = "{\"ok\":\"auth\",\"device\":\"pump-9\"}\n";
  u.link.poll(1);
  CHECK_FALSE(u.link.up());
  CHECK_FALSE(u.port.is_open);
  CHECK(u.port.lines().size() == 1);  // no reading went out to be refused as forbidden
  CHECK(u.box.size() == 1);
  CHECK(u.stats.auth_failures == 1);
  CHECK(u.log.saw("token is for device pump-9"));
}

TEST_CASE("tcp auth: unauthorized closes, keeps every reading, and waits auth_retry_ms") {
  AuthTcpRig t;
  t.add(1);
  t.link.poll(0);
  t.port.incoming =
      "{\"error\":\"unauthorized\",\"detail\":\"the first line must be {\\\"auth\\\": TOKEN} with a "
      "device token\"}\n";
  t.port.peer_closed = true;  // the hub closes after saying it
  t.link.poll(5);
  CHECK_FALSE(t.link.up());
  CHECK_FALSE(t.link.authenticating());
  CHECK(t.port.closes == 1);
  CHECK(t.box.size() == 1);
  CHECK(t.stats.rejected == 0);
  CHECK(t.stats.auth_failures == 1);
  CHECK(t.stats.disconnects == 0);
  CHECK(t.log.saw("\"event\":\"auth_refused\",\"retry_ms\":60000,\"detail\":\"unauthorized: the first line"));
  // No spinning: not a single connection attempt before the minute is up.
  for (uint32_t now = 6; now < 60005; now += 1000) t.link.poll(now);
  CHECK(t.port.connects == 1);
  t.link.poll(60005);
  CHECK(t.port.connects == 2);
  CHECK(t.link.authenticating());
  // Refused again: the backoff grows past the minimum once it is larger.
  t.port.incoming = "{\"error\":\"unauthorized\"}\n";
  t.link.poll(60006);
  CHECK(t.link.retry_at() == 60006 + 60000);
  // ... and once the token is good, everything queued goes out.
  t.link.poll(120006);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":\"farm-1\"}\n";
  t.link.poll(120007);
  CHECK(t.link.up());
  CHECK(seq_of(t.port.lines().back()) == 1);
}

TEST_CASE("tcp auth: any other error to the auth line is a refusal, not a rejected reading") {
  AuthTcpRig t;  // e.g. a hub without --auth: the auth line is an invalid reading to it
  t.add(1);
  t.link.poll(0);
  t.port.incoming = "{\"error\":\"invalid_reading\",\"detail\":\"unknown field(s) auth\",\"index\":0}\n";
  t.link.poll(1);
  CHECK_FALSE(t.link.up());
  CHECK(t.box.size() == 1);
  CHECK(t.stats.rejected == 0);
  CHECK(t.stats.auth_failures == 1);
  CHECK(t.log.saw("invalid_reading: unknown field(s) auth"));
}

TEST_CASE("tcp auth: acks before the ok are ignored") {
  AuthTcpRig t;
  t.add(1);
  t.link.poll(0);
  t.port.incoming = "{\"ack\":1}\n";
  t.link.poll(1);
  CHECK(t.box.size() == 1);
  CHECK(t.link.authenticating());
}

TEST_CASE("tcp auth: no answer to the auth line in time is a refusal") {
  AuthTcpRig t;
  t.link.poll(0);
  t.link.poll(4999);
  CHECK(t.link.authenticating());
  t.link.poll(5000);
  CHECK_FALSE(t.link.authenticating());
  CHECK(t.stats.auth_failures == 1);
  CHECK(t.log.saw("no answer to the auth line"));
  CHECK(t.link.retry_at() == 5000 + 60000);
}

TEST_CASE("tcp auth: a close without a word while authenticating is an ordinary drop") {
  AuthTcpRig t;
  t.link.poll(0);
  t.port.peer_closed = true;
  t.link.poll(1);
  CHECK(t.stats.auth_failures == 0);
  CHECK(t.stats.disconnects == 1);
  CHECK(t.link.retry_at() == 1 + 500);
}

TEST_CASE("tcp auth: a revoked token mid-stream keeps the readings in flight") {
  AuthTcpRig t;
  t.add(1);
  t.add(2);
  t.link.poll(0);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":\"farm-1\"}\n";
  t.link.poll(1);
  REQUIRE(t.stats.sent == 2);
  t.port.incoming = "{\"ack\":1}\n{\"error\":\"unauthorized\",\"detail\":\"token revoked\"}\n";
  t.port.peer_closed = true;
  t.link.poll(2);
  CHECK_FALSE(t.link.up());
  CHECK(t.box.size() == 1);
  CHECK(t.box.front().seq == 2);
  CHECK(t.stats.rejected == 0);
  CHECK(t.stats.auth_failures == 1);
  CHECK(t.log.saw("token revoked"));
  // Reconnect: auth line again first, then seq 2 again.
  t.link.poll(2 + 60000);
  std::string last = t.port.lines().back();
  CHECK(last == kAuthLine);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":\"farm-1\"}\n";
  t.link.poll(2 + 60001);
  CHECK(seq_of(t.port.lines().back()) == 2);
}

TEST_CASE("tcp: rate_limited and retry keep the reading and send it again later, in order") {
  AuthTcpRig t;
  t.add(1);
  t.add(2);
  t.add(3);
  t.link.poll(0);
  t.port.incoming = "{\"ok\":\"auth\",\"device\":\"farm-1\"}\n";
  t.link.poll(1);
  REQUIRE(t.port.lines().size() == 4);
  t.port.incoming =
      "{\"ack\":1}\n"
      "{\"error\":\"rate_limited\",\"detail\":\"more than 5 readings per second for farm-1\",\"index\":0}\n"
      "{\"ack\":3}\n";
  t.link.poll(100);
  CHECK(t.box.size() == 1);
  CHECK(t.box.front().seq == 2);
  CHECK(t.stats.rejected == 0);
  CHECK(t.stats.deferred == 1);
  CHECK(t.log.saw("\"event\":\"deferred\",\"seq\":2"));
  t.link.poll(399);  // resend_after_ms = 300
  CHECK(t.port.lines().size() == 4);
  t.link.poll(400);
  REQUIRE(t.port.lines().size() == 5);
  CHECK(seq_of(t.port.lines()[4]) == 2);
  t.port.incoming = "{\"error\":\"retry\",\"detail\":\"seq jumped ahead\",\"index\":0}\n";
  t.link.poll(401);
  t.link.poll(701);
  REQUIRE(t.port.lines().size() == 6);
  t.port.incoming = "{\"ack\":2}\n";
  t.link.poll(702);
  CHECK(t.box.empty());
  CHECK(t.stats.deferred == 2);
  CHECK(t.stats.expired == 0);
}

TEST_CASE("tcp without a token: no auth line, and `unauthorized` still rejects nothing") {
  TcpConfig c = AuthTcpRig::config();
  c.token = "";
  Stats stats = Stats();
  Pending slots[4];
  Outbox box(slots, 4, stats);
  FakeStream port;
  ConstRng rng;
  Backoff backoff(1000, 8000, rng);
  TcpLink link(port, box, "farm-1", backoff, c, stats, 0);
  Reading r;
  REQUIRE(make_reading(&r, "s", 1, 0, 0));
  box.add(r, 5);
  link.poll(0);
  CHECK(link.up());
  REQUIRE(port.lines().size() == 1);
  CHECK(seq_of(port.lines()[0]) == 5);
  port.incoming = "{\"error\":\"unauthorized\"}\n";  // a hub that turned --auth on
  link.poll(1);
  CHECK(box.size() == 1);
  CHECK(stats.auth_failures == 1);
  CHECK_FALSE(link.up());
}

// ---- UDP ---------------------------------------------------------------------

namespace {

struct SignedUdpRig {
  Stats stats;
  Pending slots[8];
  Outbox box;
  FakeDatagrams port;
  ConstRng rng;
  Backoff retry;
  HmacSha256 key;
  MemoryEpochStore store;
  SeqSource seqs;
  UdpConfig cfg;
  RecordingLog log;
  UdpLink link;
  SignedUdpRig()
      : stats(), box(slots, 8, stats), retry(200, 1000, rng), key(kToken, sizeof kToken - 1),
        seqs(store), cfg(config(&key, &seqs)), link(port, box, "farm-1", retry, cfg, stats, &log) {
    store.set(4);
    REQUIRE(seqs.begin(0) == SeqSource::kOk);  // epoch 5
  }
  static UdpConfig config(HmacSha256* k, SeqSource* s) {
    UdpConfig c = default_udp_config();
    c.max_tries = 3;
    c.key = k;
    c.seqs = s;
    c.resend_after_ms = 250;
    c.epoch_min_interval_ms = 10000;
    return c;
  }
  uint64_t add() {
    Reading r;
    REQUIRE(make_reading(&r, "turbineRpm", 1200.5, 1, "rpm"));
    uint64_t seq = seqs.next();
    box.add(r, seq);
    return seq;
  }
};

// payload and signature of a datagram; checks the framing.
std::string payload_of(const std::string& datagram) {
  size_t cut = datagram.rfind('\n');
  REQUIRE(cut != std::string::npos);
  REQUIRE(datagram.size() - cut - 1 == 64);
  return datagram.substr(0, cut);
}

std::string signature_of(const std::string& datagram) {
  return datagram.substr(datagram.rfind('\n') + 1);
}

std::string expected_signature(const std::string& payload) {
  uint8_t mac[kSha256Size];
  hmac_sha256(kToken, sizeof kToken - 1, payload.data(), payload.size(), mac);
  std::string hex(64, '?');
  to_hex(mac, sizeof mac, &hex[0]);
  return hex;
}

}  // namespace

TEST_CASE("udp signed: payload, newline, lowercase hex HMAC-SHA256 under the token") {
  SignedUdpRig u;
  uint64_t seq = u.add();
  CHECK(seq == (5ull << 32));
  u.link.poll(0);
  REQUIRE(u.port.sent.size() == 1);
  const std::string d = u.port.sent[0];
  CHECK(payload_of(d) ==
        "{\"sensor\":\"turbineRpm\",\"value\":1200.5,\"unit\":\"rpm\",\"device\":\"farm-1\",\"seq\":21474836480}");
  CHECK(signature_of(d) == expected_signature(payload_of(d)));
  // Computed independently (Python's hmac, the hub's own code path):
  // hmac.new(TOKEN, payload, sha256).hexdigest()
  CHECK(signature_of(d) == "1308ea0e59a25114209305d1974f01bbf05279c849720b964aa21e17851f2e24");
  // A re-send is byte for byte the same datagram.
  u.link.poll(100);
  REQUIRE(u.port.sent.size() == 2);
  CHECK(u.port.sent[1] == d);
}

TEST_CASE("udp signed: retry (the first seq of a new epoch) is sent again, not counted as a try") {
  SignedUdpRig u;
  u.add();
  u.link.poll(0);
  u.port.replies.push_back(
      "{\"error\":\"retry\",\"detail\":\"seq jumped ahead; send it again in a second\",\"index\":0}");
  u.link.poll(10);
  CHECK(u.stats.deferred == 1);
  CHECK(u.stats.rejected == 0);
  CHECK(u.box.size() == 1);
  u.link.poll(259);  // resend_after_ms = 250 after the reply
  CHECK(u.port.sent.size() == 1);
  u.link.poll(260);
  REQUIRE(u.port.sent.size() == 2);
  CHECK(u.port.sent[1] == u.port.sent[0]);  // the same reading, the same seq
  u.port.replies.push_back("{\"ack\":21474836480}");
  u.link.poll(261);
  CHECK(u.box.empty());
  // The books still balance: sent - resent == acked (+ rejected, dropped ...).
  CHECK(u.stats.sent == 2);
  CHECK(u.stats.resent == 1);
  CHECK(u.stats.acked == 1);
  // rate_limited, many times over, never expires a reading by itself.
  SignedUdpRig v;
  v.add();
  uint32_t now = 0;
  for (int i = 0; i < 10; ++i) {
    v.link.poll(now);
    v.port.replies.push_back("{\"error\":\"rate_limited\",\"index\":0}");
    now += 1;
    v.link.poll(now);
    now += 250;
  }
  CHECK(v.stats.expired == 0);
  CHECK(v.stats.deferred == 10);
  CHECK(v.box.size() == 1);
}

TEST_CASE("udp signed: replayed starts a new epoch (saved first) and renumbers the queue") {
  SignedUdpRig u;
  uint64_t a = u.add(), b = u.add();
  u.link.poll(0);
  REQUIRE(u.port.sent.size() == 1);
  u.port.replies.push_back("{\"error\":\"replayed\",\"detail\":\"seq was used already\",\"index\":0}");
  u.link.poll(5);
  CHECK(u.stats.rejected == 0);
  CHECK(u.stats.new_epochs == 1);
  CHECK(u.store.value() == 6);
  CHECK(u.seqs.epoch() == 6);
  REQUIRE(u.box.size() == 2);
  CHECK(u.box.at(0).seq == (6ull << 32));
  CHECK(u.box.at(1).seq == (6ull << 32 | 1));
  CHECK(u.box.at(0).seq > b);
  CHECK(u.log.saw("\"event\":\"new_epoch\",\"epoch\":6"));
  REQUIRE(u.port.sent.size() == 2);  // the same reading under its new seq, signed anew
  CHECK(seq_of(payload_of(u.port.sent[1])) == static_cast<long long>(6ull << 32));
  CHECK(signature_of(u.port.sent[1]) == expected_signature(payload_of(u.port.sent[1])));
  // A late ack for the old seq changes nothing.
  u.port.replies.push_back("{\"ack\":" + std::to_string(a) + "}");
  u.link.poll(6);
  CHECK(u.box.size() == 2);
  // New readings continue the new epoch.
  CHECK(u.add() == (6ull << 32 | 2));
}

TEST_CASE("udp signed: forged replayed replies cannot burn epochs faster than one per interval") {
  SignedUdpRig u;
  u.add();
  u.link.poll(0);
  for (uint32_t now = 1; now < 9000; now += 10) {
    u.port.replies.push_back("{\"error\":\"replayed\",\"index\":0}");
    u.link.poll(now);
  }
  CHECK(u.stats.new_epochs == 1);
  CHECK(u.store.saves() == 2);  // begin() and one advance
  size_t sent = u.port.sent.size();
  u.port.replies.push_back("{\"error\":\"replayed\",\"index\":0}");
  u.link.poll(9500);
  CHECK(u.port.sent.size() == sent);  // held: nothing goes out under the old epoch
  u.link.poll(10001);
  CHECK(u.stats.new_epochs == 2);
  CHECK(u.port.sent.size() == sent + 1);
}

TEST_CASE("udp without a key or seq source: unsigned, and replayed is a rejection") {
  Stats stats = Stats();
  Pending slots[4];
  Outbox box(slots, 4, stats);
  FakeDatagrams port;
  ConstRng rng;
  Backoff retry(200, 1000, rng);
  UdpConfig cfg = default_udp_config();
  UdpLink link(port, box, "farm-1", retry, cfg, stats, 0);
  Reading r;
  REQUIRE(make_reading(&r, "s", 1, 0, 0));
  box.add(r, 9);
  link.poll(0);
  REQUIRE(port.sent.size() == 1);
  CHECK(port.sent[0] == "{\"sensor\":\"s\",\"value\":1,\"device\":\"farm-1\",\"seq\":9}");
  port.replies.push_back("{\"error\":\"replayed\",\"index\":0}");
  link.poll(1);
  CHECK(stats.rejected == 1);
  CHECK(box.empty());
}

TEST_CASE("udp signed: the longest reading still fits with its signature") {
  SignedUdpRig u;
  Reading r;
  std::string name(kNameMax, 's');
  REQUIRE(make_reading(&r, name.c_str(), -1.23456789e14, 9, "\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5\xc2\xb5"));
  std::string device(kNameMax, 'd');
  UdpLink link(u.port, u.box, device.c_str(), u.retry, u.cfg, u.stats, &u.log);
  u.box.add(r, kSeqMax);
  link.poll(0);
  REQUIRE(u.port.sent.size() == 1);
  CHECK(signature_of(u.port.sent[0]) == expected_signature(payload_of(u.port.sent[0])));
  CHECK(u.stats.rejected == 0);
}
