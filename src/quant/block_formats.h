// Byte layouts of the ggml block formats (as ggml-common.h and the `gguf` Python package define
// them) and the small scalar helpers every quant source file needs. Internal to src/quant and
// its tests.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace resident::quant {

inline constexpr int kQK = 32;    // elements per block of the 32-wide formats
inline constexpr int kQKK = 256;  // elements per k-quant super-block

struct BlockQ8_0 {
  uint16_t d;     // fp16 scale
  int8_t qs[32];  // value = d * qs[i]
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;      // fp16 scale
  uint8_t qs[16];  // element i < 16: low nibble of qs[i]; i >= 16: high nibble of qs[i - 16]
};                 // value = d * (q - 8)
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ5_0 {
  uint16_t d;      // fp16 scale
  uint8_t qh[4];   // little-endian uint32: bit i is bit 4 of element i
  uint8_t qs[16];  // low 4 bits, nibble order as Q4_0
};                 // value = d * (q - 16)
static_assert(sizeof(BlockQ5_0) == 22);

// Q4_K / Q5_K: eight 32-element sub-blocks with 6-bit scale sc_j and 6-bit min m_j packed in
// `scales` (get_scale_min_k4); value = (d * sc_j) * q - (dmin * m_j).
// qs: for chunk c = 0..3, sub-block 2c is the low nibbles of qs[32c .. 32c+31], 2c+1 the high.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: as Q4_K plus bit 4 of element l of sub-block j in bit j of qh[l].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: sixteen 16-element sub-blocks with int8 scales; value = (d * sc_k) * (q - 32).
// For half h = 0, 1 (elements 128h ..): element 128h + 32s + l (s = 0..3, l < 32) has
// low 4 bits from ql[64h + l + 32 (s & 1)] (low nibble for s < 2, high nibble for s >= 2)
// and high 2 bits from (qh[32h + l] >> 2s) & 3.
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

inline float fp16_to_float(uint16_t h) {
  return _cvtsh_ss(h);
}

// Round to nearest even (F16C), as numpy's astype(float16) and ggml do.
inline uint16_t float_to_fp16(float f) {
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Same as ggml_compute_fp32_to_bf16 and gguf's BF16.quantize_blocks: NaN forced quiet,
// otherwise round to nearest even.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);
  return static_cast<uint16_t>((static_cast<uint64_t>(u) + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (llama.cpp
// get_scale_min_k4).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// All eight scales and mins at once: out[0..7] = sc_j, out[8..15] = m_j (the uint32 form
// llama.cpp's SIMD kernels use; tested against get_scale_min_k4).
inline void unpack_scales_k4(const uint8_t* scales, uint8_t out[16]) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t u[4];
  std::memcpy(u, scales, 12);
  u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
  const uint32_t mins_lo = u[1] & kmask1;
  u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
  u[2] = mins_lo;
  u[0] &= kmask1;
  std::memcpy(out, u, 16);
}

}  // namespace resident::quant
