// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), portable and small, for
// signing UDP datagrams to the hub: datagram = payload "\n" hex(HMAC(token,
// payload)). No heap, no tables beyond the 64 round constants (in flash on
// AVR); written for 16-bit int (AVR) as well as 32-bit targets. Tested
// against the FIPS 180-4 and RFC 4231 vectors in tests/test_sha256.cpp.
//
// Not constant-time in anything but the compare: nothing here branches on
// the key or the data, and the device compares nothing secret (the hub does
// the verifying); constant_time_equal is there for whoever needs it.
#ifndef TANTRA_SHA256_H
#define TANTRA_SHA256_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

const size_t kSha256Size = 32;
const size_t kSha256Block = 64;
// Hex text of a digest, without NUL.
const size_t kSha256HexSize = 64;

class Sha256 {
 public:
  Sha256() { reset(); }
  void reset();
  void update(const void* data, size_t len);
  // Writes the digest; the object must be reset() before reuse.
  void finish(uint8_t out[kSha256Size]);

 private:
  void compress(const uint8_t* block);

  uint32_t h_[8];
  uint8_t buf_[kSha256Block];
  uint32_t buf_len_;
  uint64_t total_;  // bytes hashed so far
};

void sha256(const void* data, size_t len, uint8_t out[kSha256Size]);

// HMAC-SHA256 under one key, with the padded key already absorbed: the key
// is processed once (a device signs every datagram with the same token), and
// each signature costs two short hashes. A key longer than the 64-byte block
// is replaced by its SHA-256, as RFC 2104 says; the hub relies on exactly
// that (HMAC(token, m) == HMAC(sha256(token), m)).
class HmacSha256 {
 public:
  HmacSha256() : keyed_(false) {}
  HmacSha256(const void* key, size_t len) { set_key(key, len); }
  void set_key(const void* key, size_t len);
  bool keyed() const { return keyed_; }
  void sign(const void* msg, size_t len, uint8_t out[kSha256Size]) const;
  // The 64 lowercase hex digits of the signature into out[64] (no NUL).
  void sign_hex(const void* msg, size_t len, char out[kSha256HexSize]) const;

 private:
  Sha256 inner_;  // state after the ipad block
  Sha256 outer_;  // state after the opad block
  bool keyed_;
};

void hmac_sha256(const void* key, size_t key_len, const void* msg, size_t len,
                 uint8_t out[kSha256Size]);

// Lowercase hex of n bytes into out[2n] (no NUL).
void to_hex(const uint8_t* in, size_t n, char* out);

// Equal bytes, in a time that depends on n only (never on where they differ).
bool constant_time_equal(const void* a, const void* b, size_t n);

// Overwrites n bytes with zeros in a way the compiler may not drop.
void wipe(void* p, size_t n);

}  // namespace tantra

#endif
