#include "tantra_sha256.h"

#include <string.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define TANTRA_K_ATTR PROGMEM
#define TANTRA_K(i) pgm_read_dword(&kK[i])
#else
#define TANTRA_K_ATTR
#define TANTRA_K(i) kK[i]
#endif

namespace tantra {

namespace {

const uint32_t kK[64] TANTRA_K_ATTR = {
    0x428a2f98ul, 0x71374491ul, 0xb5c0fbcful, 0xe9b5dba5ul, 0x3956c25bul, 0x59f111f1ul,
    0x923f82a4ul, 0xab1c5ed5ul, 0xd807aa98ul, 0x12835b01ul, 0x243185beul, 0x550c7dc3ul,
    0x72be5d74ul, 0x80deb1feul, 0x9bdc06a7ul, 0xc19bf174ul, 0xe49b69c1ul, 0xefbe4786ul,
    0x0fc19dc6ul, 0x240ca1ccul, 0x2de92c6ful, 0x4a7484aaul, 0x5cb0a9dcul, 0x76f988daul,
    0x983e5152ul, 0xa831c66dul, 0xb00327c8ul, 0xbf597fc7ul, 0xc6e00bf3ul, 0xd5a79147ul,
    0x06ca6351ul, 0x14292967ul, 0x27b70a85ul, 0x2e1b2138ul, 0x4d2c6dfcul, 0x53380d13ul,
    0x650a7354ul, 0x766a0abbul, 0x81c2c92eul, 0x92722c85ul, 0xa2bfe8a1ul, 0xa81a664bul,
    0xc24b8b70ul, 0xc76c51a3ul, 0xd192e819ul, 0xd6990624ul, 0xf40e3585ul, 0x106aa070ul,
    0x19a4c116ul, 0x1e376c08ul, 0x2748774cul, 0x34b0bcb5ul, 0x391c0cb3ul, 0x4ed8aa4aul,
    0x5b9cca4ful, 0x682e6ff3ul, 0x748f82eeul, 0x78a5636ful, 0x84c87814ul, 0x8cc70208ul,
    0x90befffaul, 0xa4506cebul, 0xbef9a3f7ul, 0xc67178f2ul};

inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

// Casts before shifting: on AVR an int is 16 bits, and uint8_t << 24 would
// overflow it.
inline uint32_t load_be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

}  // namespace

void Sha256::reset() {
  h_[0] = 0x6a09e667ul;
  h_[1] = 0xbb67ae85ul;
  h_[2] = 0x3c6ef372ul;
  h_[3] = 0xa54ff53aul;
  h_[4] = 0x510e527ful;
  h_[5] = 0x9b05688cul;
  h_[6] = 0x1f83d9abul;
  h_[7] = 0x5be0cd19ul;
  buf_len_ = 0;
  total_ = 0;
}

void Sha256::compress(const uint8_t* block) {
  // A 16-word rolling schedule instead of 64 words: 192 bytes less stack,
  // which matters on the Mega.
  uint32_t w[16];
  for (unsigned i = 0; i < 16; ++i) w[i] = load_be32(block + 4 * i);
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
  uint32_t e = h_[4], f = h_[5], g = h_[6], h = h_[7];
  for (unsigned i = 0; i < 64; ++i) {
    uint32_t wi;
    if (i < 16) {
      wi = w[i];
    } else {
      uint32_t w15 = w[(i + 1) & 15], w2 = w[(i + 14) & 15];
      uint32_t s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
      uint32_t s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
      wi = w[i & 15] = w[i & 15] + s0 + w[(i + 9) & 15] + s1;
    }
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                  TANTRA_K(i) + wi;
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  h_[5] += f;
  h_[6] += g;
  h_[7] += h;
  wipe(w, sizeof w);
}

void Sha256::update(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_ += len;
  while (len > 0) {
    if (buf_len_ == 0 && len >= kSha256Block) {
      compress(p);
      p += kSha256Block;
      len -= kSha256Block;
      continue;
    }
    size_t take = kSha256Block - buf_len_;
    if (take > len) take = len;
    memcpy(buf_ + buf_len_, p, take);
    buf_len_ += static_cast<uint32_t>(take);
    p += take;
    len -= take;
    if (buf_len_ == kSha256Block) {
      compress(buf_);
      buf_len_ = 0;
    }
  }
}

void Sha256::finish(uint8_t out[kSha256Size]) {
  uint64_t bits = total_ * 8u;
  uint8_t pad = 0x80;
  update(&pad, 1);
  uint8_t zero = 0;
  while (buf_len_ != kSha256Block - 8) update(&zero, 1);
  uint8_t len_be[8];
  for (unsigned i = 0; i < 8; ++i) len_be[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  update(len_be, 8);
  for (unsigned i = 0; i < 8; ++i) store_be32(out + 4 * i, h_[i]);
  wipe(h_, sizeof h_);
  wipe(buf_, sizeof buf_);
}

void sha256(const void* data, size_t len, uint8_t out[kSha256Size]) {
  Sha256 s;
  s.update(data, len);
  s.finish(out);
}

void HmacSha256::set_key(const void* key, size_t len) {
  uint8_t block[kSha256Block];
  memset(block, 0, sizeof block);
  if (len > kSha256Block) {
    sha256(key, len, block);
  } else if (len > 0) {
    memcpy(block, key, len);
  }
  for (unsigned i = 0; i < kSha256Block; ++i) block[i] ^= 0x36;
  inner_.reset();
  inner_.update(block, sizeof block);
  for (unsigned i = 0; i < kSha256Block; ++i) block[i] ^= 0x36 ^ 0x5c;
  outer_.reset();
  outer_.update(block, sizeof block);
  wipe(block, sizeof block);
  keyed_ = true;
}

void HmacSha256::sign(const void* msg, size_t len, uint8_t out[kSha256Size]) const {
  Sha256 inner = inner_;
  inner.update(msg, len);
  uint8_t digest[kSha256Size];
  inner.finish(digest);
  Sha256 outer = outer_;
  outer.update(digest, sizeof digest);
  outer.finish(out);
  wipe(digest, sizeof digest);
}

void HmacSha256::sign_hex(const void* msg, size_t len, char out[kSha256HexSize]) const {
  uint8_t mac[kSha256Size];
  sign(msg, len, mac);
  to_hex(mac, sizeof mac, out);
}

void hmac_sha256(const void* key, size_t key_len, const void* msg, size_t len,
                 uint8_t out[kSha256Size]) {
  HmacSha256 h(key, key_len);
  h.sign(msg, len, out);
}

void to_hex(const uint8_t* in, size_t n, char* out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
}

bool constant_time_equal(const void* a, const void* b, size_t n) {
  const volatile uint8_t* x = static_cast<const volatile uint8_t*>(a);
  const volatile uint8_t* y = static_cast<const volatile uint8_t*>(b);
  uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff = static_cast<uint8_t>(diff | (x[i] ^ y[i]));
  return diff == 0;
}

void wipe(void* p, size_t n) {
  volatile uint8_t* q = static_cast<volatile uint8_t*>(p);
  while (n--) *q++ = 0;
}

}  // namespace tantra
