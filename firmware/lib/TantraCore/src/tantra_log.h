// Where the core reports events (connected, dropped, rejected, ...). Each
// event is one JSON object text so that logs can be read by people and by
// tests alike. The sketches print them on their serial port, the host
// build on stderr. Passing no Log is fine: events are then only counted.
#ifndef TANTRA_LOG_H
#define TANTRA_LOG_H

#include <stdint.h>

namespace tantra {

class Log {
 public:
  virtual void write(const char* json_line) = 0;

 protected:
  ~Log() {}
};

// Formats {"event":E[,"<key>":N][,"detail":D]} and writes it; N < 0 or a
// null key means no number. Never allocates; details are cut to fit.
void log_event(Log* log, const char* event, const char* key, int64_t n, const char* detail);
// The common case: the number is a reading's seq.
inline void log_event(Log* log, const char* event, int64_t seq, const char* detail) {
  log_event(log, event, "seq", seq, detail);
}

}  // namespace tantra

#endif
