// The two ways a device talks to the hub, as state machines over tiny
// network interfaces. The ESP8266 sketch implements the interfaces with
// WiFiClient/WiFiUDP, the host build with POSIX sockets, the tests with
// scripted fakes; the logic (reconnect, backoff, re-send, acks) lives here
// once. Time comes in as poll(now_ms): no clock is read inside the core.
#ifndef TANTRA_LINK_H
#define TANTRA_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "tantra_backoff.h"
#include "tantra_clock.h"
#include "tantra_limits.h"
#include "tantra_line.h"
#include "tantra_log.h"
#include "tantra_outbox.h"
#include "tantra_reply.h"
#include "tantra_seq.h"
#include "tantra_sha256.h"
#include "tantra_stats.h"

namespace tantra {

// A byte stream to the hub (raw TCP). Calls must not block for long.
class StreamPort {
 public:
  // Opens a connection; true once connected. A failure is retried by
  // TcpLink after a backoff delay.
  virtual bool connect() = 0;
  // Writes up to len bytes; returns how many were taken (0 = try later),
  // or -1 if the connection is broken.
  virtual int write(const char* data, size_t len) = 0;
  // Reads what has arrived: >0 bytes, 0 = nothing yet, -1 = closed/broken.
  virtual int read(char* buf, size_t cap) = 0;
  virtual void close() = 0;

 protected:
  ~StreamPort() {}
};

// Datagrams to and from the hub (UDP), already aimed at host:port.
class DatagramPort {
 public:
  // False if the datagram could not be handed to the network (counted as a
  // try all the same: the retry timer covers it).
  virtual bool send(const char* data, size_t len) = 0;
  // One reply datagram: its length, 0 if none is waiting, -1 on error.
  virtual int recv(char* buf, size_t cap) = 0;

 protected:
  ~DatagramPort() {}
};

class Link {
 public:
  virtual void poll(uint32_t now_ms) = 0;
  virtual bool up() const = 0;

 protected:
  ~Link() {}
};

// Shared reply handling: acks remove readings, errors reject them, except
// the errors that are not about the reading:
//   unauthorized          the token was refused or revoked (the hub closes):
//                         nothing is rejected, the link backs off;
//   retry, rate_limited   "not now": the reading stays queued and is sent
//                         again after resend_after_ms;
//   replayed              (signed UDP) the seq is below the hub's floor: with
//                         a SeqSource the link starts a new epoch and
//                         renumbers the queue; without one it is a rejection.
// While `authing` (a TCP connection before {"ok":"auth"}), acks are ignored
// and any error is an auth refusal.
class ReplyApplier : public ReplyHandler {
 public:
  ReplyApplier(Outbox& outbox, Stats& stats, Log* log)
      : authing(false),
        refused(false),
        accepted(false),
        replayed(false),
        renumbers(false),
        resend_after_ms(1000),
        outbox_(outbox),
        stats_(stats),
        log_(log),
        now_ms_(0) {
    why[0] = '\0';
    device[0] = '\0';
  }
  void apply(const char* line, size_t len, uint32_t now_ms);
  void on_ack(uint64_t seq);
  void on_error(const char* code, const char* detail, bool has_seq, uint64_t seq);
  void on_ok(const char* what, const char* device);

  // Set by the link.
  bool authing;
  // Read and cleared by the link.
  bool refused;      // unauthorized (or any error while authing); `why` says what
  bool accepted;     // {"ok":"auth"}; `device` is the one it named ("" = none)
  bool replayed;     // a `replayed` the link must answer with a new epoch
  bool renumbers;    // set by the link: `replayed` is handled by renumbering
  uint32_t resend_after_ms;
  char why[112];
  char device[65];

 private:
  Outbox& outbox_;
  Stats& stats_;
  Log* log_;
  uint32_t now_ms_;
};

struct TcpConfig {
  uint32_t backoff_base_ms;  // first reconnect delay (cap; jittered down to half)
  uint32_t backoff_max_ms;   // longest reconnect delay
  uint32_t keepalive_ms;     // blank line after this much silence (hub drops idle at 300 s)
  uint8_t max_lines_per_poll;
  // With a token (non-empty; the hub's --auth), {"auth":TOKEN} is the first
  // line of every connection and readings wait for {"ok":"auth"}. The
  // string must outlive the link.
  const char* token;
  uint32_t auth_timeout_ms;  // no answer to the auth line in this time: refused
  uint32_t auth_retry_ms;    // least wait after a refusal (a bad token stays bad)
  uint32_t resend_after_ms;  // `retry` / `rate_limited`: send that reading again after
};
TcpConfig default_tcp_config();

// Persistent connection; every queued reading is written once per
// connection, in order; on a drop the connection is closed, partial lines
// are forgotten, and after a jittered exponential backoff everything still
// queued is written again. With a token: connect, auth line, wait for
// {"ok":"auth"} (naming this device, or none for an admin token), then
// readings; `unauthorized` at any time closes and waits at least
// auth_retry_ms.
class TcpLink : public Link {
 public:
  TcpLink(StreamPort& port, Outbox& outbox, const char* device, Backoff& backoff,
          const TcpConfig& config, Stats& stats, Log* log);
  void poll(uint32_t now_ms);
  bool up() const { return state_ == kUp; }
  bool authenticating() const { return state_ == kAuthing; }
  // When the next connection attempt is due (for tests and logs).
  uint32_t retry_at() const { return retry_at_; }

 private:
  enum State { kDown, kAuthing, kUp };
  void drop(uint32_t now_ms, const char* why);
  void refused(uint32_t now_ms, const char* why);
  bool pump_writes(uint32_t now_ms);
  bool pump_reads(uint32_t now_ms);
  bool has_token() const { return config_.token && config_.token[0]; }

  StreamPort& port_;
  Outbox& outbox_;
  const char* device_;
  Backoff& backoff_;
  TcpConfig config_;
  Stats& stats_;
  Log* log_;
  ReplyApplier replies_;
  State state_;
  uint32_t retry_at_;
  uint32_t last_write_ms_;
  uint32_t auth_deadline_;
  // The line being written; a short write leaves the rest for next poll.
  char tx_[kLineMax];
  size_t tx_len_;
  size_t tx_off_;
  uint64_t tx_seq_;
  bool tx_is_reading_;
  char rx_store_[kReplyMax];
  LineBuffer rx_;
};

struct UdpConfig {
  uint32_t retry_base_ms;  // first wait for an ack
  uint32_t retry_max_ms;   // longest wait between tries
  uint8_t max_tries;       // transmissions before a reading is given up
  // With a key (the hub's --auth), every datagram is payload "\n" hex
  // HMAC-SHA256(payload); the key must outlive the link.
  const HmacSha256* key;
  // Where seqs come from (the Forwarder's): lets the link answer `replayed`
  // with a new epoch. Null: `replayed` rejects the reading.
  SeqSource* seqs;
  uint32_t resend_after_ms;        // `retry` / `rate_limited`: try again after
  uint32_t epoch_min_interval_ms;  // at most one `replayed` epoch per interval
};
UdpConfig default_udp_config();

// Stop-and-wait: one reading in flight at a time, so an error reply (which
// names no seq) can only be about that one, and replies never race each
// other. Re-sent with backoff until acked, at most max_tries times.
class UdpLink : public Link {
 public:
  UdpLink(DatagramPort& port, Outbox& outbox, const char* device, Backoff& retry,
          const UdpConfig& config, Stats& stats, Log* log);
  void poll(uint32_t now_ms);
  bool up() const { return true; }

 private:
  void transmit(Pending& p, uint32_t now_ms);
  bool new_epoch(uint32_t now_ms);

  DatagramPort& port_;
  Outbox& outbox_;
  const char* device_;
  Backoff& retry_;
  UdpConfig config_;
  Stats& stats_;
  Log* log_;
  ReplyApplier replies_;
  bool epoch_due_;        // a `replayed` waits for its new epoch
  bool advanced_once_;
  uint32_t advanced_at_;  // last new epoch (rate limit)
  char buf_[kReplyMax];
};

}  // namespace tantra

#endif
