#include <doctest/doctest.h>

#include <string.h>

#include <string>
#include <vector>

#include "tantra_reply.h"

using namespace tantra;

namespace {
struct Recorder : ReplyHandler {
  std::vector<uint64_t> acks;
  std::vector<std::string> oks;
  std::vector<std::string> errors;
  std::vector<long long> error_seqs;
  void on_ack(uint64_t seq) { acks.push_back(seq); }
  void on_ok(const char* what, const char* device) { oks.push_back(std::string(what) + "|" + device); }
  void on_error(const char* code, const char* detail, bool has_seq, uint64_t seq) {
    errors.push_back(std::string(code) + "|" + detail);
    error_seqs.push_back(has_seq ? static_cast<long long>(seq) : -1);
  }
};
ReplyKind parse(const std::string& s, Recorder* r) { return parse_reply(s.data(), s.size(), r); }
}  // namespace

TEST_CASE("single and batch acks") {
  Recorder r;
  CHECK(parse("{\"ack\":17}", &r) == kReplyAck);
  CHECK(parse("{\"ack\":[18,19,20]}", &r) == kReplyAck);
  CHECK(parse(" { \"ack\" : [ ] } ", &r) == kReplyAck);
  CHECK(parse("{\"ack\":4294967295}", &r) == kReplyAck);
  CHECK(r.acks == std::vector<uint64_t>{17, 18, 19, 20, 4294967295u});
}

TEST_CASE("64-bit seqs up to 2^53-1 are acked; beyond cannot be ours and are skipped") {
  Recorder r;
  CHECK(parse("{\"ack\":[4294967296,5,9007199254740991,9007199254740992,18446744073709551615]}", &r) ==
        kReplyAck);
  CHECK(r.acks == std::vector<uint64_t>{4294967296ull, 5, 9007199254740991ull});
  CHECK(parse("{\"error\":\"replayed\",\"seq\":9007199254740992}", &r) == kReplyError);
  CHECK(parse("{\"error\":\"replayed\",\"seq\":9007199254740991}", &r) == kReplyError);
  CHECK(r.error_seqs == std::vector<long long>{-1, 9007199254740991ll});
}

TEST_CASE("ok replies: the auth answer, with a device or null") {
  Recorder r;
  CHECK(parse("{\"ok\":\"auth\",\"device\":\"pump-1\"}", &r) == kReplyOk);
  CHECK(parse("{\"device\":null,\"ok\":\"auth\"}", &r) == kReplyOk);
  CHECK(parse("{\"ok\":\"auth\"}", &r) == kReplyOk);
  CHECK(parse("{\"ok\":true}", &r) == kReplyOk);
  CHECK(r.oks == std::vector<std::string>{"auth|pump-1", "auth|", "auth|", "?|"});
  // Broken or doubled: nothing heard.
  CHECK(parse("{\"ok\":\"auth\",\"device\":\"pump-1\"", &r) == kReplyInvalid);
  CHECK(parse("{\"ok\":\"auth\",\"ok\":\"auth\"}", &r) == kReplyInvalid);
  CHECK(parse("{\"device\":\"pump-1\"}", &r) == kReplyInvalid);
  CHECK(r.oks.size() == 4);
  // An error wins over an ok in the same object; an ack too.
  CHECK(parse("{\"ok\":\"auth\",\"error\":\"unauthorized\"}", &r) == kReplyError);
  CHECK(parse("{\"ok\":\"auth\",\"ack\":3}", &r) == kReplyAck);
  CHECK(r.oks.size() == 4);
}

TEST_CASE("errors, with and without seq, unknown members skipped") {
  Recorder r;
  CHECK(parse("{\"error\":\"invalid_reading\",\"detail\":\"value must be a finite number or boolean\",\"index\":0}",
              &r) == kReplyError);
  CHECK(parse("{\"error\":\"invalid_json\",\"seq\":7,\"extra\":{\"a\":[1,2]}}", &r) == kReplyError);
  CHECK(parse("{\"index\":0,\"error\":\"line_too_long\"}", &r) == kReplyError);
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0] == "invalid_reading|value must be a finite number or boolean");
  CHECK(r.error_seqs == std::vector<long long>{-1, 7, -1});
  CHECK(r.acks.empty());
}

TEST_CASE("an error whose detail is too long for the log copy still counts") {
  Recorder r;
  std::string detail(600, 'd');
  CHECK(parse("{\"error\":\"invalid_reading\",\"detail\":\"" + detail + "\",\"index\":0}", &r) ==
        kReplyError);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "invalid_reading|?");
}

TEST_CASE("junk and truncated replies ack nothing") {
  const char* junk[] = {"ack", "{\"ack\":", "{\"ack\":[1,2", "{\"ack\":[1,2,]}", "{\"ack\":-1}",
                        "{\"ack\":1.5}", "{\"ack\":\"1\"}", "{\"ack\":1,\"ack\":2}", "{\"ack\":1}x",
                        "{}", "{\"foo\":1}", "[1]", "\x01\x02", "{\"ack\":01}", "{\"ack\":1e3}",
                        "{\"ack\":[1,\"x\"]}", "{\"ack\":true}", "{\"ack\":null}", "{\"ack\":[[1]]}"};
  for (const char* j : junk) {
    CAPTURE(j);
    Recorder r;
    CHECK(parse(j, &r) == kReplyInvalid);
    CHECK(r.acks.empty());
    CHECK(r.errors.empty());
  }
  Recorder r;
  CHECK(parse("", &r) == kReplyEmpty);
  CHECK(parse("   ", &r) == kReplyEmpty);
}

TEST_CASE("a long unknown key is skipped, not confused with ack") {
  Recorder r;
  std::string key(100, 'k');
  CHECK(parse("{\"" + key + "\":1,\"ack\":3}", &r) == kReplyAck);
  CHECK(r.acks == std::vector<uint64_t>{3});
}

TEST_CASE("no handler: validation only") {
  CHECK(parse_reply("{\"ack\":1}", 9, 0) == kReplyAck);
}
