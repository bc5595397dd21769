// Parses the hub's reply lines (raw TCP) and datagrams (UDP):
//   {"ack":17}   {"ack":[17,18]}
//   {"error":"invalid_reading","detail":"...","index":0}   (maybe "seq":17)
//   {"ok":"auth","device":"farm-1"}   ("device":null for an admin token)
// Anything else (junk, truncated lines, other JSON) is reported as
// kReplyInvalid and changes nothing: a corrupt reply must never drop a
// reading. The line is validated completely before the handler hears of
// any ack, so a truncated "{"ack":[1,2" acks nothing.
#ifndef TANTRA_REPLY_H
#define TANTRA_REPLY_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

class ReplyHandler {
 public:
  // Seqs above 2^53-1 cannot be ours; they are skipped before this call.
  virtual void on_ack(uint64_t seq) = 0;
  // `code`/`detail` are truncated copies for logging. has_seq says whether
  // the hub named the reading; otherwise it is the oldest one in flight.
  virtual void on_error(const char* code, const char* detail, bool has_seq, uint64_t seq) = 0;
  // {"ok":WHAT,...}: `what` and the "device" named ("" when null or absent),
  // both truncated copies. Only the TCP auth exchange uses it.
  virtual void on_ok(const char* what, const char* device) {
    (void)what;
    (void)device;
  }

 protected:
  ~ReplyHandler() {}
};

enum ReplyKind { kReplyInvalid = 0, kReplyAck, kReplyError, kReplyEmpty, kReplyOk };

ReplyKind parse_reply(const char* line, size_t len, ReplyHandler* handler);

}  // namespace tantra

#endif
