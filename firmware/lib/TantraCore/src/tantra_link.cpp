#include "tantra_link.h"

#include <string.h>

#include "tantra_json_writer.h"

namespace tantra {

namespace {

// "code: detail" into out[cap], cut to fit.
void describe(const char* code, const char* detail, char* out, size_t cap) {
  size_t n = 0;
  for (const char* s = code; *s && n + 1 < cap; ++s) out[n++] = *s;
  if (detail[0] && n + 3 < cap) {
    out[n++] = ':';
    out[n++] = ' ';
    for (const char* s = detail; *s && n + 1 < cap; ++s) out[n++] = *s;
  }
  out[n] = '\0';
}

}  // namespace

// ---- replies ---------------------------------------------------------------

void ReplyApplier::apply(const char* line, size_t len, uint32_t now_ms) {
  now_ms_ = now_ms;
  ReplyKind kind = parse_reply(line, len, this);
  if (kind == kReplyInvalid) {
    ++stats_.bad_replies;
    log_event(log_, "bad_reply", -1, line);
  }
}

void ReplyApplier::on_ack(uint64_t seq) {
  if (authing) return;  // nothing is in flight before the hub said ok
  outbox_.ack(seq);
}

void ReplyApplier::on_ok(const char* what, const char* named) {
  if (!authing || strcmp(what, "auth") != 0) return;
  accepted = true;
  strncpy(device, named, sizeof device - 1);
  device[sizeof device - 1] = '\0';
}

void ReplyApplier::on_error(const char* code, const char* detail, bool has_seq, uint64_t seq) {
  // Both words matter to whoever reads the log; the code alone if no room.
  char text[128];
  describe(code, detail, text, sizeof text);
  if (authing || strcmp(code, "unauthorized") == 0) {
    // About the token, not a reading: nothing leaves the queue.
    refused = true;
    describe(code, detail, why, sizeof why);
    return;
  }
  if (strcmp(code, "retry") == 0 || strcmp(code, "rate_limited") == 0) {
    int64_t kept = outbox_.defer(has_seq, seq, now_ms_ + resend_after_ms);
    log_event(log_, "deferred", kept, text);
    return;
  }
  if (renumbers && strcmp(code, "replayed") == 0) {
    replayed = true;
    log_event(log_, "replayed", has_seq ? static_cast<int64_t>(seq) : -1, text);
    return;
  }
  int64_t removed = outbox_.reject(has_seq, seq);
  log_event(log_, "rejected", removed, text);
}

// ---- TCP -------------------------------------------------------------------

TcpConfig default_tcp_config() {
  TcpConfig c;
  c.backoff_base_ms = 500;
  c.backoff_max_ms = 30000;
  c.keepalive_ms = 60000;
  c.max_lines_per_poll = 8;
  c.token = 0;
  c.auth_timeout_ms = 10000;
  c.auth_retry_ms = 60000;
  c.resend_after_ms = 1000;
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
      state_(kDown),
      retry_at_(0),
      last_write_ms_(0),
      auth_deadline_(0),
      tx_len_(0),
      tx_off_(0),
      tx_seq_(0),
      tx_is_reading_(false),
      rx_(rx_store_, sizeof rx_store_) {
  replies_.resend_after_ms = config.resend_after_ms;
}

void TcpLink::drop(uint32_t now_ms, const char* why) {
  port_.close();
  state_ = kDown;
  replies_.authing = false;
  ++stats_.disconnects;
  tx_len_ = tx_off_ = 0;  // a half-written line died with the connection
  rx_.reset();
  outbox_.mark_all_unsent();
  uint32_t delay = backoff_.next_delay();
  retry_at_ = now_ms + delay;
  log_event(log_, "disconnected", "retry_ms", delay, why);
}

void TcpLink::refused(uint32_t now_ms, const char* why) {
  port_.close();
  state_ = kDown;
  replies_.authing = false;
  replies_.refused = replies_.accepted = false;
  ++stats_.auth_failures;
  tx_len_ = tx_off_ = 0;
  rx_.reset();
  outbox_.mark_all_unsent();
  // A refused token stays refused until someone fixes the token file or
  // the device's settings: never spin on it.
  uint32_t delay = backoff_.next_delay();
  if (delay < config_.auth_retry_ms) delay = config_.auth_retry_ms;
  retry_at_ = now_ms + delay;
  log_event(log_, "auth_refused", "retry_ms", delay, why);
}

void TcpLink::poll(uint32_t now_ms) {
  if (state_ == kDown) {
    if (!time_reached(now_ms, retry_at_)) return;
    if (!port_.connect()) {
      ++stats_.connect_failures;
      uint32_t delay = backoff_.next_delay();
      retry_at_ = now_ms + delay;
      log_event(log_, "connect_failed", "retry_ms", delay, 0);
      return;
    }
    ++stats_.connects;
    outbox_.mark_all_unsent();
    tx_len_ = tx_off_ = 0;
    rx_.reset();
    last_write_ms_ = now_ms;
    replies_.refused = replies_.accepted = false;
    if (has_token()) {
      // The auth line goes first; readings wait for the hub's ok.
      JsonWriter w(tx_, sizeof tx_);
      w.begin_object();
      w.key("auth");
      w.string(config_.token);
      w.end_object();
      w.newline();
      if (!w.ok()) {
        tx_len_ = 0;
        refused(now_ms, "token too long");
        return;
      }
      tx_len_ = w.length();
      tx_is_reading_ = false;
      state_ = kAuthing;
      replies_.authing = true;
      auth_deadline_ = now_ms + config_.auth_timeout_ms;
    } else {
      state_ = kUp;
      backoff_.reset();
    }
    log_event(log_, "connected", "queued", static_cast<int64_t>(outbox_.size()), 0);
  }
  outbox_.release_due(now_ms);
  // Read first: acks free slots before we write more.
  bool open = pump_reads(now_ms);
  if (replies_.refused) {
    // The hub said why and is closing; that beats the close itself.
    refused(now_ms, replies_.why);
    return;
  }
  if (state_ == kAuthing && replies_.accepted) {
    replies_.accepted = false;
    if (replies_.device[0] && strcmp(replies_.device, device_) != 0) {
      // The hub would refuse every reading as `forbidden`: better to say
      // so once and keep them queued.
      char why[96] = "token is for device ";
      strncat(why, replies_.device, sizeof why - strlen(why) - 1);
      refused(now_ms, why);
      return;
    }
    state_ = kUp;
    replies_.authing = false;
    backoff_.reset();
    log_event(log_, "authenticated", "queued", static_cast<int64_t>(outbox_.size()),
              replies_.device[0] ? replies_.device : 0);
  }
  if (!open) {
    drop(now_ms, "closed by peer");
    return;
  }
  if (state_ == kAuthing && time_reached(now_ms, auth_deadline_)) {
    refused(now_ms, "no answer to the auth line");
    return;
  }
  if (!pump_writes(now_ms)) {
    drop(now_ms, "write failed");
    return;
  }
}

bool TcpLink::pump_reads(uint32_t now_ms) {
  char buf[128];
  // Bounded: a flood of replies cannot starve the serial line.
  for (int round = 0; round < 8; ++round) {
    int n = port_.read(buf, sizeof buf);
    if (n < 0) return false;
    if (n == 0) return true;
    for (int i = 0; i < n; ++i) {
      LineBuffer::Result r = rx_.feed(buf[i]);
      if (r == LineBuffer::kLine) {
        if (rx_.length() > 0) replies_.apply(rx_.line(), rx_.length(), now_ms);
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
      if (state_ != kUp) return true;  // the auth line is out; wait for the ok
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
          log_event(log_, "unformattable", static_cast<int64_t>(p->seq), 0);
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
  c.key = 0;
  c.seqs = 0;
  c.resend_after_ms = 1000;
  c.epoch_min_interval_ms = 10000;
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
      replies_(outbox, stats, log),
      epoch_due_(false),
      advanced_once_(false),
      advanced_at_(0) {
  replies_.resend_after_ms = config.resend_after_ms;
  replies_.renumbers = config.seqs != 0;
}

void UdpLink::transmit(Pending& p, uint32_t now_ms) {
  size_t n = format_reading_line(p.reading, device_, p.seq, buf_, sizeof buf_);
  if (n == 0) {
    log_event(log_, "unformattable", static_cast<int64_t>(p.seq), 0);
    outbox_.reject(true, p.seq);
    return;
  }
  if (p.tries == 0) retry_.reset();  // a new reading starts at the base delay
  size_t len = n - 1;  // the payload: the line without its newline
  if (config_.key) {
    // payload "\n" signature: the newline is already there.
    if (n + kSha256HexSize > sizeof buf_) {
      log_event(log_, "unformattable", static_cast<int64_t>(p.seq), "no room to sign");
      outbox_.reject(true, p.seq);
      return;
    }
    config_.key->sign_hex(buf_, n - 1, buf_ + n);
    len = n + kSha256HexSize;
  }
  // Unsigned, the trailing newline is harmless for the hub and keeps
  // datagrams and TCP lines byte-identical; dropped to save a byte on air.
  port_.send(buf_, len);
  if (p.tries > 0) ++stats_.resent;
  if (p.tries < 255) ++p.tries;
  ++stats_.sent;
  p.in_flight = true;
  p.deferred = false;
  p.due_ms = now_ms + retry_.next_delay();
}

bool UdpLink::new_epoch(uint32_t now_ms) {
  if (advanced_once_ && !time_reached(now_ms, advanced_at_ + config_.epoch_min_interval_ms)) {
    // A forged `replayed` must not be able to burn epochs (and flash
    // writes) at wire speed: one new epoch per interval at most.
    return false;
  }
  advanced_once_ = true;
  advanced_at_ = now_ms;
  SeqSource::Result result = config_.seqs->advance();
  ++stats_.new_epochs;
  outbox_.renumber(*config_.seqs);
  log_event(log_, result == SeqSource::kExhausted ? "seq_exhausted" : "new_epoch", "epoch",
            config_.seqs->epoch(), result == SeqSource::kNotSaved ? "not saved" : 0);
  return true;
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
        replies_.apply(buf_ + start, len, now_ms);
      }
      start = stop + 1;
    }
  }
  replies_.refused = false;  // UDP has no token refusal: the hub stays silent
  if (replies_.replayed) {
    replies_.replayed = false;
    epoch_due_ = true;
  }
  if (epoch_due_) {
    if (!new_epoch(now_ms)) return;  // nothing goes out under the old epoch
    epoch_due_ = false;
  }
  // Bounded per poll too: an expired reading lets the next one go at once.
  for (int i = 0; i < 4 && !outbox_.empty(); ++i) {
    Pending& p = outbox_.front();
    if (!p.in_flight) {
      if (p.deferred && !time_reached(now_ms, p.due_ms)) return;
      transmit(p, now_ms);
      return;
    }
    if (!time_reached(now_ms, p.due_ms)) return;
    if (static_cast<int>(p.tries) >= static_cast<int>(config_.max_tries) + p.deferrals) {
      log_event(log_, "expired", static_cast<int64_t>(p.seq), "no ack");
      outbox_.expire_front();
      continue;
    }
    transmit(p, now_ms);
    return;
  }
}

}  // namespace tantra
