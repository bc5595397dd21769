#include <doctest/doctest.h>

#include <string.h>

#include <string>

#include "tantra_sha256.h"

using namespace tantra;

namespace {

std::string hex(const uint8_t* d, size_t n) {
  std::string s(2 * n, '?');
  to_hex(d, n, &s[0]);
  return s;
}

std::string sha_hex(const std::string& m) {
  uint8_t out[kSha256Size];
  sha256(m.data(), m.size(), out);
  return hex(out, sizeof out);
}

std::string hmac_hex(const std::string& key, const std::string& m) {
  uint8_t out[kSha256Size];
  hmac_sha256(key.data(), key.size(), m.data(), m.size(), out);
  return hex(out, sizeof out);
}

}  // namespace

// FIPS 180-4 examples (NIST CSRC "SHA256.pdf" / FIPS 180-2 appendix B).
TEST_CASE("sha256: FIPS 180-4 test vectors") {
  CHECK(sha_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklm"
                "nopqrlmnopqrsmnopqrstnopqrstu") ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  // One million 'a', fed in uneven chunks.
  Sha256 s;
  std::string chunk(997, 'a');
  size_t left = 1000000;
  while (left) {
    size_t n = left < chunk.size() ? left : chunk.size();
    s.update(chunk.data(), n);
    left -= n;
  }
  uint8_t out[kSha256Size];
  s.finish(out);
  CHECK(hex(out, sizeof out) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: any chunking of any length gives the one-shot digest") {
  // Lengths around the padding edges (55, 56, 63, 64, 119, 120 ...).
  std::string m;
  for (int i = 0; i < 300; ++i) m.push_back(static_cast<char>(i * 7 + 3));
  for (size_t len = 0; len <= m.size(); ++len) {
    uint8_t whole[kSha256Size];
    sha256(m.data(), len, whole);
    for (size_t step = 1; step <= 70; step += 23) {
      Sha256 s;
      for (size_t i = 0; i < len; i += step) s.update(m.data() + i, len - i < step ? len - i : step);
      uint8_t parts[kSha256Size];
      s.finish(parts);
      REQUIRE(memcmp(whole, parts, sizeof whole) == 0);
    }
  }
}

// RFC 4231, test cases 1-7.
TEST_CASE("hmac-sha256: RFC 4231 test vectors") {
  CHECK(hmac_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hmac_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_hex(std::string(20, '\xaa'), std::string(50, '\xdd')) ==
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4.push_back(static_cast<char>(i));
  CHECK(hmac_hex(key4, std::string(50, '\xcd')) ==
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  // Case 5 specifies the first 128 bits only.
  CHECK(hmac_hex(std::string(20, '\x0c'), "Test With Truncation").substr(0, 32) ==
        "a3b6167473100ee06e0c796c2955552b");
  CHECK(hmac_hex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First") ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(hmac_hex(std::string(131, '\xaa'),
                 "This is a test using a larger than block-size key and a larger than block-size "
                 "data. The key needs to be hashed before being used by the HMAC algorithm.") ==
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("hmac-sha256: a token longer than a block keys like its SHA-256 (what the hub relies on)") {
  // A hub token: "tantra_" + 64 URL-safe characters = 71 bytes.
  std::string token = "tantra_" + std::string(64, 'Z');
  uint8_t hashed[kSha256Size];
  sha256(token.data(), token.size(), hashed);
  std::string payload = "{\"device\":\"pump-1\",\"sensor\":\"flow\",\"value\":3.2,\"seq\":4294967303}";
  CHECK(hmac_hex(token, payload) ==
        hmac_hex(std::string(reinterpret_cast<char*>(hashed), sizeof hashed), payload));
  // A reused keyed object signs like a fresh one, every time.
  HmacSha256 key(token.data(), token.size());
  char a[kSha256HexSize], b[kSha256HexSize];
  key.sign_hex(payload.data(), payload.size(), a);
  key.sign_hex(payload.data(), payload.size(), b);
  CHECK(std::string(a, sizeof a) == hmac_hex(token, payload));
  CHECK(std::string(b, sizeof b) == std::string(a, sizeof a));
  CHECK_FALSE(HmacSha256().keyed());
  CHECK(key.keyed());
}

TEST_CASE("constant_time_equal and wipe") {
  const char x[] = "0123456789abcdef", y[] = "0123456789abcdeF";
  CHECK(constant_time_equal(x, x, 16));
  CHECK_FALSE(constant_time_equal(x, y, 16));
  CHECK(constant_time_equal(x, y, 15));
  CHECK(constant_time_equal(x, y, 0));
  char z[8] = "secret";
  wipe(z, sizeof z);
  CHECK(std::string(z, sizeof z) == std::string(8, '\0'));
}
