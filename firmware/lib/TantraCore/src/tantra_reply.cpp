#include "tantra_reply.h"

#include <string.h>

#include "tantra_json_reader.h"

namespace tantra {

namespace {

const uint64_t kMaxSeq = (static_cast<uint64_t>(1) << 53) - 1;

// One pass over the object. With handler == 0 it only validates.
ReplyKind scan(const char* line, size_t len, ReplyHandler* h) {
  JsonReader rd(line, len);
  if (rd.at_end()) return kReplyEmpty;
  if (!rd.consume('{')) return kReplyInvalid;
  bool has_ack = false, has_error = false, has_seq = false, has_ok = false;
  uint64_t seq = 0;
  char code[33] = "";
  char detail[97] = "";
  char ok[17] = "";
  char device[65] = "";
  if (!rd.consume('}')) {
    do {
      char key[16];
      if (rd.peek() != '"') return kReplyInvalid;
      const char* save = rd.pos();
      if (!rd.read_string(key, sizeof key, 0, 0)) {
        // A key too long to be one of ours: skip it, and its value below.
        rd.seek(save);
        if (!rd.skip_value()) return kReplyInvalid;
        key[0] = '\0';
      }
      if (!rd.consume(':')) return kReplyInvalid;
      if (strcmp(key, "ack") == 0) {
        if (has_ack) return kReplyInvalid;
        has_ack = true;
        uint64_t v;
        if (rd.consume('[')) {
          if (!rd.consume(']')) {
            do {
              if (!rd.read_uint(&v)) return kReplyInvalid;
              if (h && v <= kMaxSeq) h->on_ack(v);
            } while (rd.consume(','));
            if (!rd.consume(']')) return kReplyInvalid;
          }
        } else {
          if (!rd.read_uint(&v)) return kReplyInvalid;
          if (h && v <= kMaxSeq) h->on_ack(v);
        }
      } else if (strcmp(key, "error") == 0 || strcmp(key, "detail") == 0) {
        bool is_code = key[0] == 'e';
        if (is_code) has_error = true;
        char* dst = is_code ? code : detail;
        size_t cap = is_code ? sizeof code : sizeof detail;
        const char* save = rd.pos();
        if (rd.peek() != '"' || !rd.read_string(dst, cap, 0, 0)) {
          // Not a string, or longer than our copy: the reply is still good
          // if it is valid JSON; we only lose words meant for a log.
          rd.seek(save);
          if (!rd.skip_value()) return kReplyInvalid;
          strcpy(dst, "?");
        }
      } else if (strcmp(key, "seq") == 0) {
        if (!rd.read_uint(&seq)) {
          if (!rd.skip_value()) return kReplyInvalid;
        } else {
          has_seq = seq <= kMaxSeq;
        }
      } else if (strcmp(key, "ok") == 0 || strcmp(key, "device") == 0) {
        bool is_ok = key[0] == 'o';
        if (is_ok) {
          if (has_ok) return kReplyInvalid;
          has_ok = true;
        }
        char* dst = is_ok ? ok : device;
        size_t cap = is_ok ? sizeof ok : sizeof device;
        const char* save = rd.pos();
        if (rd.peek() != '"' || !rd.read_string(dst, cap, 0, 0)) {
          // null (an admin token names no device), or not ours to read.
          rd.seek(save);
          if (!rd.skip_value()) return kReplyInvalid;
          dst[0] = '\0';
          if (is_ok) strcpy(dst, "?");
        }
      } else {
        if (!rd.skip_value()) return kReplyInvalid;
      }
    } while (rd.consume(','));
    if (!rd.consume('}')) return kReplyInvalid;
  }
  if (!rd.at_end()) return kReplyInvalid;
  if (has_error) {
    if (h) h->on_error(code, detail, has_seq, seq);
    return kReplyError;
  }
  if (has_ok && !has_ack) {
    if (h) h->on_ok(ok, device);
    return kReplyOk;
  }
  if (has_ack) return kReplyAck;
  return kReplyInvalid;
}

}  // namespace

ReplyKind parse_reply(const char* line, size_t len, ReplyHandler* handler) {
  ReplyKind kind = scan(line, len, 0);
  if (kind == kReplyAck || kind == kReplyError || kind == kReplyOk) {
    if (handler) scan(line, len, handler);
  }
  return kind;
}

}  // namespace tantra
