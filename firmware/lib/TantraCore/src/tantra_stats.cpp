#include "tantra_log.h"
#include "tantra_stats.h"

#include <string.h>

#include "tantra_json_writer.h"

namespace tantra {

size_t format_stats(const Stats& s, uint32_t queue_size, char* buf, size_t cap) {
  JsonWriter w(buf, cap);
  w.begin_object();
  w.key("lines"); w.uinteger(s.lines);
  w.key("bad_lines"); w.uinteger(s.bad_lines);
  w.key("long_lines"); w.uinteger(s.long_lines);
  w.key("queued"); w.uinteger(s.queued);
  w.key("dropped"); w.uinteger(s.dropped);
  w.key("sent"); w.uinteger(s.sent);
  w.key("resent"); w.uinteger(s.resent);
  w.key("acked"); w.uinteger(s.acked);
  w.key("rejected"); w.uinteger(s.rejected);
  w.key("expired"); w.uinteger(s.expired);
  w.key("duplicate_acks"); w.uinteger(s.duplicate_acks);
  w.key("bad_replies"); w.uinteger(s.bad_replies);
  w.key("connects"); w.uinteger(s.connects);
  w.key("connect_failures"); w.uinteger(s.connect_failures);
  w.key("disconnects"); w.uinteger(s.disconnects);
  w.key("deferred"); w.uinteger(s.deferred);
  w.key("auth_failures"); w.uinteger(s.auth_failures);
  w.key("new_epochs"); w.uinteger(s.new_epochs);
  w.key("in_queue"); w.uinteger(queue_size);
  w.end_object();
  return w.ok() ? w.length() : 0;
}

void log_event(Log* log, const char* event, const char* key, int64_t n, const char* detail) {
  if (!log) return;
  char buf[160];
  // Second pass without the detail if escaping made it too long.
  for (int pass = 0; pass < 2; ++pass) {
    JsonWriter w(buf, sizeof buf);
    w.begin_object();
    w.key("event");
    w.string(event);
    if (key && n >= 0) {
      w.key(key);
      w.uinteger64(static_cast<uint64_t>(n));
    }
    if (detail && pass == 0) {
      // Cut long details, keeping room for the closing '"}'.
      size_t used = w.length() + 16;
      size_t room = used < sizeof buf ? sizeof buf - used : 0;
      size_t n = strlen(detail);
      while (n > room) --n;
      // Do not cut a UTF-8 sequence in half.
      while (n > 0 && n < strlen(detail) && (static_cast<unsigned char>(detail[n]) & 0xC0) == 0x80) --n;
      w.key("detail");
      w.string(detail, n);
    }
    w.end_object();
    if (w.ok()) {
      log->write(buf);
      return;
    }
  }
}

}  // namespace tantra
