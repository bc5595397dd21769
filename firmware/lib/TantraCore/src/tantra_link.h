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

// Shared reply handling: acks remove readings, errors reject them.
class ReplyApplier : public ReplyHandler {
 public:
  ReplyApplier(Outbox& outbox, Stats& stats, Log* log)
      : outbox_(outbox), stats_(stats), log_(log) {}
  void apply(const char* line, size_t len);
  void on_ack(uint32_t seq);
  void on_error(const char* code, const char* detail, bool has_seq, uint32_t seq);

 private:
  Outbox& outbox_;
  Stats& stats_;
  Log* log_;
};

struct TcpConfig {
  uint32_t backoff_base_ms;  // first reconnect delay (cap; jittered down to half)
  uint32_t backoff_max_ms;   // longest reconnect delay
  uint32_t keepalive_ms;     // blank line after this much silence (hub drops idle at 300 s)
  uint8_t max_lines_per_poll;
};
TcpConfig default_tcp_config();

// Persistent connection; every queued reading is written once per
// connection, in order; on a drop the connection is closed, partial lines
// are forgotten, and after a jittered exponential backoff everything still
// queued is written again.
class TcpLink : public Link {
 public:
  TcpLink(StreamPort& port, Outbox& outbox, const char* device, Backoff& backoff,
          const TcpConfig& config, Stats& stats, Log* log);
  void poll(uint32_t now_ms);
  bool up() const { return up_; }
  // When the next connection attempt is due (for tests and logs).
  uint32_t retry_at() const { return retry_at_; }

 private:
  void drop(uint32_t now_ms, const char* why);
  bool pump_writes(uint32_t now_ms);
  bool pump_reads();

  StreamPort& port_;
  Outbox& outbox_;
  const char* device_;
  Backoff& backoff_;
  TcpConfig config_;
  Stats& stats_;
  Log* log_;
  ReplyApplier replies_;
  bool up_;
  uint32_t retry_at_;
  uint32_t last_write_ms_;
  // The line being written; a short write leaves the rest for next poll.
  char tx_[kLineMax];
  size_t tx_len_;
  size_t tx_off_;
  uint32_t tx_seq_;
  bool tx_is_reading_;
  char rx_store_[kReplyMax];
  LineBuffer rx_;
};

struct UdpConfig {
  uint32_t retry_base_ms;  // first wait for an ack
  uint32_t retry_max_ms;   // longest wait between tries
  uint8_t max_tries;       // transmissions before a reading is given up
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

  DatagramPort& port_;
  Outbox& outbox_;
  const char* device_;
  Backoff& retry_;
  UdpConfig config_;
  Stats& stats_;
  Log* log_;
  ReplyApplier replies_;
  char buf_[kReplyMax];
};

}  // namespace tantra

#endif
