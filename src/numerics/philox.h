// Philox4x32-10, the counter-based random number generator of Salmon et al., "Parallel Random
// Numbers: As Easy as 1, 2, 3" (SC11), as published in D. E. Shaw Research's Random123.
//
// Why counter-based: the sampler's random number for decode step s is a pure function of
// (seed, s), so the GPU can draw it inside a captured graph from a step counter in device memory,
// with no RNG state carried between steps and nothing uploaded from the host; and the CPU
// backend draws the identical number. Integer-only, so bit-exact on every backend.
//
// Checked against Random123's known-answer vectors (tests/kat_vectors) in tests/sampler_test.cpp.
#pragma once

#include <cstdint>

#include "numerics/host_device.h"

namespace resident::numerics {

struct Philox4x32Counter {
  uint32_t v[4];
};

struct Philox4x32Key {
  uint32_t v[2];
};

// Round multipliers and Weyl key increments from Random123 (philox.h).
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
inline constexpr int kPhiloxRounds = 10;

// High and low 32-bit halves of the 64-bit product a * b.
RESIDENT_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

RESIDENT_HD Philox4x32Counter philox4x32_round(Philox4x32Counter c, Philox4x32Key k) {
  uint32_t hi0, lo0, hi1, lo1;
  philox_mulhilo(kPhiloxM0, c.v[0], &hi0, &lo0);
  philox_mulhilo(kPhiloxM1, c.v[2], &hi1, &lo1);
  Philox4x32Counter out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

// Ten rounds; the key is bumped by the Weyl constants between rounds (not before the first).
RESIDENT_HD Philox4x32Counter philox4x32_10(Philox4x32Counter counter, Philox4x32Key key) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      key.v[0] += kPhiloxW0;
      key.v[1] += kPhiloxW1;
    }
    counter = philox4x32_round(counter, key);
  }
  return counter;
}

// The sampler's mapping from (seed, step) to a block of four random words: key = the 64-bit seed
// (low word first), counter = the 64-bit step (low word first) followed by two zero words.
RESIDENT_HD Philox4x32Counter philox_for_step(uint64_t seed, uint64_t step) {
  Philox4x32Key key;
  key.v[0] = static_cast<uint32_t>(seed);
  key.v[1] = static_cast<uint32_t>(seed >> 32);
  Philox4x32Counter counter;
  counter.v[0] = static_cast<uint32_t>(step);
  counter.v[1] = static_cast<uint32_t>(step >> 32);
  counter.v[2] = 0u;
  counter.v[3] = 0u;
  return philox4x32_10(counter, key);
}

// A uniform float in [0, 1) from the top 24 bits of a word: every value k * 2^-24 is exactly
// representable in float, so the conversion is exact and identical on every backend.
RESIDENT_HD float uniform24(uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

}  // namespace resident::numerics
