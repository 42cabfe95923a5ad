// Work items of the decode matvec (matvec_decode.cu): the partials p_j of docs/numerics.md
// ("Weight-row dot products") of SEVERAL consecutive 32-blocks of one weight row at once.
//
// Why: ncu's instruction counts (docs/perf.md, "CUDA round 5") put the decode matvec at ~95
// instructions per 32-block for Q4_K and ~160 for Q6_K, one block per thread: every block
// re-decoded its super-block's scales, loaded its quants in 4-byte (Q4_K) or 2-byte (Q6_K)
// pieces and, for Q6_K, summed the activations' halves with 8 extra dp4a. Here an item takes the
// 32-blocks that share bytes: a Q4_K/Q5_K pair (2p, 2p + 1) uses the same 32 quant bytes (low and
// high nibbles) and the same scale words; a Q6_K half super-block (4 sub-blocks) shares its ql
// bytes (two nibbles), its qh bytes (four 2-bit fields) and its scales. The activation blocks
// come restaged (ActView): 16-byte aligned quants and precomputed half sums.
//
// The float operations of each partial are the spec's, in the spec's order, exactly those of
// quant_blocks.h's per-block partial(); only integer work (unpacking, exact integer sums) is
// shared or moved. Everything is RESIDENT_HD: tests/decode_items_test.cpp checks on the CPU that
// the items' partials, summed in order, equal quant::dot_row bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/quant_blocks.h"
#include "numerics/canonical.h"
#include "numerics/host_device.h"

namespace resident::cuda::items {

using blocks::dp4a;
using blocks::half_to_float;
using blocks::load_u16;
using blocks::load_u32_a4;

// Activation blocks as the decode matvec keeps them in shared memory: block j's 32 quants are
// q[8j .. 8j + 7] (16-byte aligned), its scale d[j], its sum sum[j] (exact, as ActBlock::sum) and
// the sums of its halves (elements 0-15 and 16-31) half[2j], half[2j + 1].
struct ActView {
  const uint32_t* q;
  const float* d;
  const int* sum;
  const int* half;
};

// Fills the view's entries for block j from its scale, sum and 8 quant words (the staging step
// of the kernel, which loads them as 8-byte words: a plain ActBlock copy compiles to 32 byte
// loads).
RESIDENT_HD void stage_act_words(float ad, int sum, const uint32_t (&w)[8], int j, uint32_t* q,
                                 float* d, int* sums, int* half) {
  int lo = 0, hi = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    q[8 * j + k] = w[k];
    if (k < 4)
      lo = dp4a(static_cast<int>(w[k]), 0x01010101, lo);
    else
      hi = dp4a(static_cast<int>(w[k]), 0x01010101, hi);
  }
  d[j] = ad;
  sums[j] = sum;
  half[2 * j] = lo;
  half[2 * j + 1] = hi;
}

// The same from an ActBlock in host memory (the CPU test's staging).
inline void stage_act_block(const numerics::ActBlock& a, int j, uint32_t* q, float* d, int* sums,
                            int* half) {
  uint32_t w[8];
  memcpy(w, a.q, sizeof w);
  stage_act_words(a.d, a.sum, w, j, q, d, sums, half);
}

// The 8 quant words of activation block j.
RESIDENT_HD void act_words(const ActView& a, int j, int (&w)[8]) {
#if defined(__CUDA_ARCH__)
  const uint4* p = reinterpret_cast<const uint4*>(a.q + 8 * j);
  const uint4 x = p[0], y = p[1];
  w[0] = static_cast<int>(x.x), w[1] = static_cast<int>(x.y), w[2] = static_cast<int>(x.z);
  w[3] = static_cast<int>(x.w), w[4] = static_cast<int>(y.x), w[5] = static_cast<int>(y.y);
  w[6] = static_cast<int>(y.z), w[7] = static_cast<int>(y.w);
#else
  for (int k = 0; k < 8; ++k) w[k] = static_cast<int>(a.q[8 * j + k]);
#endif
}

// N little-endian 32-bit words starting at a 2-byte aligned address: N + 1 aligned loads and a
// funnel shift each (instead of two 16-bit loads each). May read up to 2 bytes past the last
// word: callers keep that inside the block.
template <int N>
RESIDENT_HD void load_words_a2(const uint8_t* p, uint32_t (&out)[N]) {
#if defined(__CUDA_ARCH__)
  const uint32_t* base =
      reinterpret_cast<const uint32_t*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{3});
  const unsigned shift = static_cast<unsigned>(reinterpret_cast<uintptr_t>(p) & 3) * 8;
  uint32_t w[N + 1];
#pragma unroll
  for (int i = 0; i <= N; ++i) w[i] = base[i];
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = __funnelshift_r(w[i], w[i + 1], shift);
#else
  for (int i = 0; i < N; ++i) memcpy(&out[i], p + 4 * i, 4);
#endif
}

RESIDENT_HD int dot_words(const uint32_t (&w)[8], const int (&a)[8]) {
  int s = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) s = dp4a(static_cast<int>(w[k]), a[k], s);
  return s;
}

// The 6-bit scale and min of sub-block j (ggml get_scale_min_k4, as blocks::k4_scale_min) from
// the 12 scale bytes held as three words s0, s1, s2 (bytes 0-3, 4-7, 8-11). Byte i of word w is
// (w >> 8i) & 0xff; the words are picked by name, never indexed at run time (that would put them
// in local memory).
RESIDENT_HD void scale_min(uint32_t s0, uint32_t s1, uint32_t s2, int j, int* sc, int* m) {
  const unsigned sh = 8u * static_cast<unsigned>(j & 3);
  const uint32_t b0 = (s0 >> sh) & 0xffu, b1 = (s1 >> sh) & 0xffu;
  if (j < 4) {  // bytes j and j + 4
    *sc = static_cast<int>(b0 & 63);
    *m = static_cast<int>(b1 & 63);
  } else {  // bytes j + 4 (in s2), j - 4 (in s0) and j (in s1)
    const uint32_t b2 = (s2 >> sh) & 0xffu;
    *sc = static_cast<int>((b2 & 0x0f) | ((b0 >> 6) << 4));
    *m = static_cast<int>((b2 >> 4) | ((b1 >> 6) << 4));
  }
}

// Q4_K and Q5_K partial of a sub-block: a.d * (dsc * dot - dm * sum), dsc = d * sc, dm = dmin * m.
RESIDENT_HD float k4_partial(float d, float dmin, int sc, int m, int dot, const ActView& a, int j) {
  const float dsc = d * static_cast<float>(sc);
  const float dm = dmin * static_cast<float>(m);
  return a.d[j] * (dsc * static_cast<float>(dot) - dm * static_cast<float>(a.sum[j]));
}

// ---------------------------------------------------------------- Q4_K: pairs (2p, 2p + 1)
struct Q4_K {
  static constexpr int kSub = 2;  // 32-blocks per item
  // Item `it` of a row: super-block it / 4, pair it % 4, 32-blocks 2 it and 2 it + 1.
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[2]) {
    const uint8_t* b = row + (it / 4) * 144;
    const int pair = it % 4, j0 = 2 * it;
    const uint32_t dd = load_u32_a4(b);
    const float d = half_to_float(static_cast<uint16_t>(dd)), dmin = half_to_float(dd >> 16);
    const uint32_t s0 = load_u32_a4(b + 4), s1 = load_u32_a4(b + 8), s2 = load_u32_a4(b + 12);
    uint32_t lo[8], hi[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t v = load_u32_a4(b + 16 + 32 * pair + 4 * k);
      lo[k] = v & 0x0f0f0f0fu;
      hi[k] = (v >> 4) & 0x0f0f0f0fu;
    }
    int a0[8], a1[8];
    act_words(a, j0, a0);
    act_words(a, j0 + 1, a1);
    int sc, m;
    scale_min(s0, s1, s2, 2 * pair, &sc, &m);
    out[0] = k4_partial(d, dmin, sc, m, dot_words(lo, a0), a, j0);
    scale_min(s0, s1, s2, 2 * pair + 1, &sc, &m);
    out[1] = k4_partial(d, dmin, sc, m, dot_words(hi, a1), a, j0 + 1);
  }
};

// ---------------------------------------------------------------- Q5_K: pairs, plus qh bits
struct Q5_K {
  static constexpr int kSub = 2;
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[2]) {
    const uint8_t* b = row + (it / 4) * 176;
    const int pair = it % 4, j0 = 2 * it;
    const uint32_t dd = load_u32_a4(b);
    const float d = half_to_float(static_cast<uint16_t>(dd)), dmin = half_to_float(dd >> 16);
    const uint32_t s0 = load_u32_a4(b + 4), s1 = load_u32_a4(b + 8), s2 = load_u32_a4(b + 12);
    uint32_t lo[8], hi[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t v = load_u32_a4(b + 48 + 32 * pair + 4 * k);
      const uint32_t h = load_u32_a4(b + 16 + 4 * k) >> (2 * pair);
      lo[k] = (v & 0x0f0f0f0fu) | ((h & 0x01010101u) << 4);
      hi[k] = ((v >> 4) & 0x0f0f0f0fu) | (((h >> 1) & 0x01010101u) << 4);
    }
    int a0[8], a1[8];
    act_words(a, j0, a0);
    act_words(a, j0 + 1, a1);
    int sc, m;
    scale_min(s0, s1, s2, 2 * pair, &sc, &m);
    out[0] = k4_partial(d, dmin, sc, m, dot_words(lo, a0), a, j0);
    scale_min(s0, s1, s2, 2 * pair + 1, &sc, &m);
    out[1] = k4_partial(d, dmin, sc, m, dot_words(hi, a1), a, j0 + 1);
  }
};

// ---------------------------------------------------------------- Q6_K: half super-blocks
// Half h of a super-block holds sub-blocks 4h + k, k < 4: element l of sub-block k has its low
// 4 bits in ql[64h + 32(k & 1) + l] (nibble k / 2) and its high 2 bits in qh[32h + l] >> 2k.
struct Q6_K {
  static constexpr int kSub = 4;
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[4]) {
    const uint8_t* b = row + (it / 2) * 210;
    const int h = it % 2, j0 = 4 * it;
    uint32_t ql[16], qh[8];
    load_words_a2(b + 64 * h, ql);        // the 2 bytes past it are ql/qh bytes of the same block
    load_words_a2(b + 128 + 32 * h, qh);  // past it: the block's scales
    const float d = half_to_float(load_u16(b + 208));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int j = j0 + k;
      uint32_t w[8];
#pragma unroll
      for (int i = 0; i < 8; ++i)
        w[i] = ((ql[8 * (k & 1) + i] >> (4 * (k >> 1))) & 0x0f0f0f0fu) |
               (((qh[i] >> (2 * k)) & 0x03030303u) << 4);
      int aw[8];
      act_words(a, j, aw);
      int dot_lo = 0, dot_hi = 0;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        dot_lo = dp4a(static_cast<int>(w[i]), aw[i], dot_lo);
        dot_hi = dp4a(static_cast<int>(w[i + 4]), aw[i + 4], dot_hi);
      }
      // sum (q - 32) x over each 16-half = dot - 32 * (sum of the half's x): exact integers
      const int isum_lo = dot_lo - 32 * a.half[2 * j], isum_hi = dot_hi - 32 * a.half[2 * j + 1];
      const uint16_t sc = load_u16(b + 192 + 2 * (4 * h + k));
      const int sc_lo = static_cast<int8_t>(sc & 0xff), sc_hi = static_cast<int8_t>(sc >> 8);
      out[k] = a.d[j] * (d * static_cast<float>(sc_lo * isum_lo + sc_hi * isum_hi));
    }
  }
};

// ------------------------------------------------ Q8_0, Q4_0, Q5_0: one 32-block per item
struct Q8_0 {
  static constexpr int kSub = 1;
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[1]) {
    const uint8_t* b = row + it * 34;
    uint32_t w[8];
    load_words_a2(b + 2, w);  // past it: the next block's scale, or the row's padding
    int aw[8];
    act_words(a, it, aw);
    out[0] = (half_to_float(load_u16(b)) * a.d[it]) * static_cast<float>(dot_words(w, aw));
  }
};

struct Q4_0 {
  static constexpr int kSub = 1;
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[1]) {
    const uint8_t* b = row + it * 18;
    uint32_t v[4], w[8];
    load_words_a2(b + 2, v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      w[k] = v[k] & 0x0f0f0f0fu;
      w[k + 4] = (v[k] >> 4) & 0x0f0f0f0fu;
    }
    int aw[8];
    act_words(a, it, aw);
    const int isum = dot_words(w, aw) - 8 * a.sum[it];  // sum (q - 8) x, exact
    out[0] = (half_to_float(load_u16(b)) * a.d[it]) * static_cast<float>(isum);
  }
};

struct Q5_0 {
  static constexpr int kSub = 1;
  static RESIDENT_HD void partials(const uint8_t* row, int it, const ActView& a, float (&out)[1]) {
    const uint8_t* b = row + it * 22;
    uint32_t hq[5], w[8];
    load_words_a2(b + 2, hq);  // qh, then the 16 quant bytes
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t v = hq[k + 1];
      w[k] = (v & 0x0f0f0f0fu) | blocks::spread_bit4((hq[0] >> (4 * k)) & 0xfu);
      w[k + 4] = ((v >> 4) & 0x0f0f0f0fu) | blocks::spread_bit4((hq[0] >> (16 + 4 * k)) & 0xfu);
    }
    int aw[8];
    act_words(a, it, aw);
    const int isum = dot_words(w, aw) - 16 * a.sum[it];
    out[0] = (half_to_float(load_u16(b)) * a.d[it]) * static_cast<float>(isum);
  }
};

}  // namespace resident::cuda::items
