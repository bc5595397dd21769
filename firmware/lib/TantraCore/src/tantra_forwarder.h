// The ESP8266's job, without the ESP8266: bytes from the Mega's serial line
// become validated readings, get this device's name and the next seq, and
// go into the outbox that the link drains. The sketch and the host build
// are thin shells that feed bytes in and call poll(now).
#ifndef TANTRA_FORWARDER_H
#define TANTRA_FORWARDER_H

#include <stddef.h>
#include <stdint.h>

#include "tantra_limits.h"
#include "tantra_line.h"
#include "tantra_link.h"
#include "tantra_log.h"
#include "tantra_outbox.h"
#include "tantra_seq.h"
#include "tantra_stats.h"

namespace tantra {

class Forwarder {
 public:
  Forwarder(SeqSource& seq, Outbox& outbox, Link& link, Stats& stats, Log* log);

  // Bytes as they come off the serial line, any chunking.
  void feed(const char* data, size_t len);
  // One complete line (without newline).
  void on_line(const char* line, size_t len);
  void poll(uint32_t now_ms) { link_.poll(now_ms); }
  // Nothing waits for an ack.
  bool idle() const { return outbox_.empty(); }

 private:
  SeqSource& seq_;
  Outbox& outbox_;
  Link& link_;
  Stats& stats_;
  Log* log_;
  char serial_store_[kLineMax];
  LineBuffer serial_;
};

}  // namespace tantra

#endif
