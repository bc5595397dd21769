#include "tantra_forwarder.h"

namespace tantra {

Forwarder::Forwarder(SeqSource& seq, Outbox& outbox, Link& link, Stats& stats, Log* log)
    : seq_(seq),
      outbox_(outbox),
      link_(link),
      stats_(stats),
      log_(log),
      serial_(serial_store_, sizeof serial_store_) {}

void Forwarder::feed(const char* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    LineBuffer::Result r = serial_.feed(data[i]);
    if (r == LineBuffer::kLine) {
      on_line(serial_.line(), serial_.length());
    } else if (r == LineBuffer::kOverflow) {
      ++stats_.long_lines;
      log_event(log_, "bad_line", -1, "line too long");
    }
  }
}

void Forwarder::on_line(const char* line, size_t len) {
  Reading r;
  ParseError e = parse_reading(line, len, &r);
  if (e == kParseEmpty) return;  // blank lines are keep-alives, not readings
  ++stats_.lines;
  if (e != kParseOk) {
    // Boot noise, a garbled byte at 115200 baud: refuse it here rather than
    // spend air time on something the hub would refuse too.
    ++stats_.bad_lines;
    log_event(log_, "bad_line", -1, parse_error_text(e));
    return;
  }
  uint64_t seq = seq_.next();
  if (!outbox_.add(r, seq)) log_event(log_, "dropped_oldest", -1, "queue full");
}

}  // namespace tantra
