#include "tantra_link.h"

#include <string.h>

namespace tantra {

// ---- replies ---------------------------------------------------------------

void ReplyApplier::apply(const char* line, size_t len) {
  ReplyKind kind = parse_reply(line, len, this);
  if (kind == kReplyInvalid) {
    ++stats_.bad_replies;
    log_event(log_, "bad_reply", -1, line);
  }
}

void ReplyApplier::on_ack(uint32_t seq) { outbox_.ack(seq); }

void ReplyApplier::on_error(const char* code, const char* detail, bool has_seq, uint32_t seq) {
  int64_t removed = outbox_.reject(has_seq, seq);
  // Both words matter to whoever reads the log; the code alone if no room.
  char text[128];
  size_t n = 0;
  for (const char* s = code; *s && n + 1 < sizeof text; ++s) text[n++] = *s;
  if (detail[0] && n + 3 < sizeof text) {
    text[n++] = ':';
    text[n++] = ' ';
    for (const char* s = detail; *s && n + 1 < sizeof text; ++s) text[n++] = *s;
  }
  text[n] = '\0';
  log_event(log_, "rejected", removed, text);
}

// ---- TCP -------------------------------------------------------------------

TcpConfig default_tcp_config() {
  TcpConfig c;
  c.backoff_base_ms = 500;
  c.backoff_max_ms = 30000;
  c.keepalive_ms = 60000;
  c.max_lines_per_poll = 8;
  return c;
}

TcpLink::TcpLink(StreamPort& port, Outbox& outbox, const char* device, Backoff& backoff,
                 const TcpConfig& config, Stats& stats, Log* log)
    : port_(port),
      outbox_(outbox),
      device_(device),
      backoff_(backoff),
      config_(config),
      stats_(stats),
      log_(log),
      replies_(outbox, stats, log),
      up_(false),
      retry_at_(0),
      last_write_ms_(0),
      tx_len_(0),
      tx_off_(0),
      tx_seq_(0),
      tx_is_reading_(false),
      rx_(rx_store_, sizeof rx_store_) {}

void TcpLink::drop(uint32_t now_ms, const char* why) {
  port_.close();
  up_ = false;
  ++stats_.disconnects;
  tx_len_ = tx_off_ = 0;  // a half-written line died with the connection
  rx_.reset();
  outbox_.mark_all_unsent();
  uint32_t delay = backoff_.next_delay();
  retry_at_ = now_ms + delay;
  log_event(log_, "disconnected", "retry_ms", delay, why);
}

void TcpLink::poll(uint32_t now_ms) {
  if (!up_) {
    if (!time_reached(now_ms, retry_at_)) return;
    if (!port_.connect()) {
      ++stats_.connect_failures;
      uint32_t delay = backoff_.next_delay();
      retry_at_ = now_ms + delay;
      log_event(log_, "connect_failed", "retry_ms", delay, 0);
      return;
    }
    up_ = true;
    ++stats_.connects;
    backoff_.reset();
    outbox_.mark_all_unsent();
    tx_len_ = tx_off_ = 0;
    rx_.reset();
    last_write_ms_ = now_ms;
    log_event(log_, "connected", "queued", static_cast<int64_t>(outbox_.size()), 0);
  }
  // Read first: acks free slots before we write more.
  if (!pump_reads()) {
    drop(now_ms, "closed by peer");
    return;
  }
  if (!pump_writes(now_ms)) {
    drop(now_ms, "write failed");
    return;
  }
}

bool TcpLink::pump_reads() {
  char buf[128];
  // Bounded: a flood of replies cannot starve the serial line.
  for (int round = 0; round < 8; ++round) {
    int n = port_.read(buf, sizeof buf);
    if (n < 0) return false;
    if (n == 0) return true;
    for (int i = 0; i < n; ++i) {
      LineBuffer::Result r = rx_.feed(buf[i]);
      if (r == LineBuffer::kLine) {
        if (rx_.length() > 0) replies_.apply(rx_.line(), rx_.length());
      } else if (r == LineBuffer::kOverflow) {
        ++stats_.bad_replies;
        log_event(log_, "bad_reply", -1, "reply line too long");
      }
    }
  }
  return true;
}

bool TcpLink::pump_writes(uint32_t now_ms) {
  for (uint8_t lines = 0; lines < config_.max_lines_per_poll;) {
    if (tx_off_ == tx_len_) {  // nothing half-written: pick the next line
      Pending* p = outbox_.first_unsent();
      if (p) {
        tx_len_ = format_reading_line(p->reading, device_, p->seq, tx_, sizeof tx_);
        tx_off_ = 0;
        tx_seq_ = p->seq;
        tx_is_reading_ = true;
        if (tx_len_ == 0) {
          // Cannot happen for readings that passed parse_reading; never
          // let it wedge the queue.
          outbox_.reject(true, p->seq);
          log_event(log_, "unformattable", p->seq, 0);
          continue;
        }
      } else if (config_.keepalive_ms && time_reached(now_ms, last_write_ms_ + config_.keepalive_ms)) {
        tx_[0] = '\n';
        tx_len_ = 1;
        tx_off_ = 0;
        tx_is_reading_ = false;
      } else {
        return true;
      }
    }
    int n = port_.write(tx_ + tx_off_, tx_len_ - tx_off_);
    if (n < 0) return false;
    if (n == 0) return true;  // socket buffer full: continue next poll
    tx_off_ += static_cast<size_t>(n);
    last_write_ms_ = now_ms;
    if (tx_off_ < tx_len_) return true;
    // Whole line written: only now is the reading "sent".
    tx_off_ = tx_len_ = 0;
    ++lines;
    if (tx_is_reading_) {
      Pending* p = outbox_.find(tx_seq_);
      if (p) {
        if (p->tries > 0) ++stats_.resent;
        if (p->tries < 255) ++p->tries;
        p->in_flight = true;
        ++stats_.sent;
      }
    }
  }
  return true;
}

// ---- UDP -------------------------------------------------------------------

UdpConfig default_udp_config() {
  UdpConfig c;
  c.retry_base_ms = 500;
  c.retry_max_ms = 5000;
  c.max_tries = 10;
  return c;
}

UdpLink::UdpLink(DatagramPort& port, Outbox& outbox, const char* device, Backoff& retry,
                 const UdpConfig& config, Stats& stats, Log* log)
    : port_(port),
      outbox_(outbox),
      device_(device),
      retry_(retry),
      config_(config),
      stats_(stats),
      log_(log),
      replies_(outbox, stats, log) {}

void UdpLink::transmit(Pending& p, uint32_t now_ms) {
  size_t n = format_reading_line(p.reading, device_, p.seq, buf_, sizeof buf_);
  if (n == 0) {
    log_event(log_, "unformattable", p.seq, 0);
    outbox_.reject(true, p.seq);
    return;
  }
  if (p.tries == 0) retry_.reset();  // a new reading starts at the base delay
  // The trailing newline is harmless for the hub and keeps datagrams and
  // TCP lines byte-identical; drop it to save a byte on air.
  port_.send(buf_, n - 1);
  if (p.tries > 0) ++stats_.resent;
  if (p.tries < 255) ++p.tries;
  ++stats_.sent;
  p.in_flight = true;
  p.due_ms = now_ms + retry_.next_delay();
}

void UdpLink::poll(uint32_t now_ms) {
  // Drain replies (bounded per poll).
  for (int i = 0; i < 16; ++i) {
    int n = port_.recv(buf_, sizeof buf_ - 1);
    if (n <= 0) break;
    buf_[n] = '\0';
    // A reply datagram holds one JSON object per line: the hub joins a
    // batch's ack and its errors into one datagram (never more than one per
    // request), so each line is applied on its own.
    size_t start = 0;
    const size_t end = static_cast<size_t>(n);
    while (start < end) {
      size_t stop = start;
      while (stop < end && buf_[stop] != '\n') ++stop;
      size_t len = stop - start;
      while (len > 0 && buf_[start + len - 1] == '\r') --len;
      if (len > 0) {
        buf_[start + len] = '\0';
        replies_.apply(buf_ + start, len);
      }
      start = stop + 1;
    }
  }
  // Bounded per poll too: an expired reading lets the next one go at once.
  for (int i = 0; i < 4 && !outbox_.empty(); ++i) {
    Pending& p = outbox_.front();
    if (!p.in_flight) {
      transmit(p, now_ms);
      return;
    }
    if (!time_reached(now_ms, p.due_ms)) return;
    if (p.tries >= config_.max_tries) {
      log_event(log_, "expired", p.seq, "no ack");
      outbox_.expire_front();
      continue;
    }
    transmit(p, now_ms);
    return;
  }
}

}  // namespace tantra
