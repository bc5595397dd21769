// Sizes shared by every part of the core. They mirror the hub's contract
// (SPEC.md, "The reading") so a reading the device accepts is one the hub
// accepts; storage is fixed so nothing on the device path allocates.
#ifndef TANTRA_LIMITS_H
#define TANTRA_LIMITS_H

#include <stddef.h>
#include <stdint.h>

namespace tantra {

// `sensor` and `device`: 1-64 chars of [A-Za-z0-9_-].
const size_t kNameMax = 64;
// `unit`: at most 16 characters; stored as UTF-8, so bound the bytes too.
const size_t kUnitCharsMax = 16;
const size_t kUnitBytesMax = 32;
// A number is kept as its JSON text; 24 chars is plenty for a sensor value
// and keeps a queued reading small.
const size_t kValueTextMax = 24;
// Longest line the device formats: every field at its maximum, the unit
// fully \u-escaped (16 * 6), seq at 16 digits (2^53-1), plus "}\n" and NUL.
const size_t kLineMax = 320;
// Longest reply line the device bothers to parse. The hub's errors carry a
// human-readable detail; longer replies are counted and skipped.
const size_t kReplyMax = 512;

}  // namespace tantra

#endif
