// AVX2 kernels for block-quantized weights against int8 activation blocks (docs/numerics.md).
//
// Work unit: a "step" of 8 consecutive 32-blocks of a row (one k-quant super-block, or 8
// blocks of Q4_0/Q5_0/Q8_0). For one row and one token a step gives 8 exact int32 block dots
// (vpmaddubsw + vpmaddwd, then a horizontal-add tree whose lane j is block j), then the 8 float
// partials p_j by the type's formula, all 8 lanes at once with the operations in the spec's
// order. Partials of 8 rows are transposed so each lane is a row, and each row's running sum
// takes p_j one block at a time: exactly ((0 + p_0) + p_1) + ... per (row, token).
//
// Loop order: 8 rows x a tile of tokens x steps. A row's step is decoded once into registers
// and reused for every token of the tile (prefill reuses each weight load across tokens);
// the 8 interleaved rows and the tokens keep several independent add chains in flight.
//
// vpmaddubsw multiplies unsigned bytes by signed bytes and adds adjacent pairs into int16 with
// saturation, so the operands are kept where no pair can saturate:
//   Q4_0, Q4_K: q in [0, 15]  x a in [-127, 127]: |pair| <= 3810
//   Q5_0, Q5_K: q in [0, 31]: |pair| <= 7874
//   Q6_K:       q in [0, 63]: |pair| <= 16002
//   Q8_0:       |w| in [0, 128] x sign(w)*a in [-127, 127]: |pair| <= 32512 < 32767
// The unsigned offsets (q - 8, q - 16, q - 32) are removed exactly in integer arithmetic with
// the activation block sums.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quant/avx2_transpose.h"
#include "quant/block_formats.h"
#include "quant/dot_reference.h"
#include "quant/matmul_kernels.h"

namespace resident::quant::detail {

namespace {

constexpr int kRows = 8;        // rows interleaved (one per lane after the transpose)
constexpr int kTokenTile = 16;  // tokens sharing one decode of a row step

// Activations of one token for one step of 8 blocks.
struct StepAct {
  const int8_t* q;           // 256 values
  const float* d;            // 8 scales
  const float* sumf;         // 8 block sums as float
  const int32_t* sumi;       // 8 block sums
  const int16_t* half_sums;  // 16 half-block sums (Q6_K)
};

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// The horizontal sums below use unpack/add trees: vphaddd is 3-4 uops on Zen and was the
// bottleneck of the first version.

// Last level: c0 = [s0..s3 | s0'..s3'], c1 = [s4..s7 | s4'..s7'] -> [s0+s0', ..., s7+s7'].
inline __m256i combine_halves(__m256i c0, __m256i c1) {
  return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x21),
                          _mm256_blend_epi32(c0, c1, 0xF0));
}

// Lane k = sum of the 8 int32 lanes of v[k].
inline __m256i reduce8_i32(const __m256i* v) {
  __m256i a[4];
  for (int p = 0; p < 4; ++p) {  // [v_{2p} even/odd partials, v_{2p+1} ...] per 128 bits
    a[p] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * p], v[2 * p + 1]),
                            _mm256_unpackhi_epi32(v[2 * p], v[2 * p + 1]));
  }
  const __m256i c0 =
      _mm256_add_epi32(_mm256_unpacklo_epi64(a[0], a[1]), _mm256_unpackhi_epi64(a[0], a[1]));
  const __m256i c1 =
      _mm256_add_epi32(_mm256_unpacklo_epi64(a[2], a[3]), _mm256_unpackhi_epi64(a[2], a[3]));
  return combine_halves(c0, c1);
}

// Lane k = sum of the 16 int16 lanes of m[k], for vpmaddubsw outputs with |lane| <= 8191: the
// first two tree levels add int16 lanes (4 lanes per sum: <= 32764, no overflow), keeping each
// vector's lanes apart, and one vpmaddwd per 4 blocks widens to int32.
inline __m256i reduce8_i16(const __m256i* m) {
  __m256i a[4];
  for (int p = 0; p < 4; ++p) {
    a[p] = _mm256_add_epi16(_mm256_unpacklo_epi32(m[2 * p], m[2 * p + 1]),
                            _mm256_unpackhi_epi32(m[2 * p], m[2 * p + 1]));
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i b0 =
      _mm256_add_epi16(_mm256_unpacklo_epi64(a[0], a[1]), _mm256_unpackhi_epi64(a[0], a[1]));
  const __m256i b1 =
      _mm256_add_epi16(_mm256_unpacklo_epi64(a[2], a[3]), _mm256_unpackhi_epi64(a[2], a[3]));
  return combine_halves(_mm256_madd_epi16(b0, ones), _mm256_madd_epi16(b1, ones));
}

// Block dots of 8 unsigned-weight blocks (q <= 31, so |maddubs lane| <= 7874) against the
// step's activations.
inline __m256i block_dots_small(const __m256i* q, const int8_t* a) {
  __m256i m[8];
  for (int j = 0; j < 8; ++j) m[j] = _mm256_maddubs_epi16(q[j], load256(a + 32 * j));
  return reduce8_i16(m);
}

inline __m256 load_fp16x8(const uint8_t* base, size_t stride) {
  uint16_t h[8];
  for (int j = 0; j < 8; ++j) std::memcpy(&h[j], base + j * stride, 2);
  return _mm256_cvtph_ps(_mm_setr_epi16(static_cast<short>(h[0]), static_cast<short>(h[1]),
                                        static_cast<short>(h[2]), static_cast<short>(h[3]),
                                        static_cast<short>(h[4]), static_cast<short>(h[5]),
                                        static_cast<short>(h[6]), static_cast<short>(h[7])));
}

// 32 bits -> 32 bytes, 0x10 where the bit is set (bit i -> byte i).
inline __m256i bits_to_bytes_0x10(uint32_t bits) {
  const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                          0x0202020202020202, 0x0303030303030303);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

// ---------------------------------------------------------------------------------------------
// Formats. Each provides kStepBytes, a Row (one decoded step of one row), decode(), and
// partials() = the 8 float partials p_j of the step for one token, in the spec's operation order.

struct FormatQ4K {
  static constexpr size_t kStepBytes = sizeof(BlockQ4_K);
  struct Row {
    __m256i q[8];
    __m256 dsc;  // d * (float)sc_j
    __m256 dmm;  // dmin * (float)m_j
  };
  static void decode(const uint8_t* p, Row& w) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(p);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load256(b->qs + 32 * c);
      w.q[2 * c] = _mm256_and_si256(v, lo4);
      w.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
    }
    scales(p, w.dsc, w.dmm);
  }
  // d, dmin and the 12 packed scale bytes are the block's first 16 bytes (same in Q5_K):
  // get_scale_min_k4 for all 8 sub-blocks with two byte shuffles and masks (the scalar uint32
  // form plus _mm_set_epi32 cost a third of the per-row-step work of the matvec).
  static void scales(const uint8_t* block, __m256& dsc, __m256& dmm) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
    // s_i = v[4 + i]. Output bytes: [sc_0..3, sc_4..7, m_0..3, m_4..7] with
    //   sc_j = s_j & 63, m_j = s_j+4 & 63 (j < 4);
    //   sc_j = (s_j+4 & 15) | (s_j-4 >> 6) << 4, m_j = (s_j+4 >> 4) | (s_j >> 6) << 4 (j >= 4).
    const __m128i a = _mm_shuffle_epi8(
        v, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m128i b = _mm_shuffle_epi8(
        v, _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    const __m128i m1 = _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
    const __m128i m2 = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
    const __m128i r =
        _mm_or_si128(_mm_or_si128(_mm_and_si128(a, m1), _mm_and_si128(_mm_srli_epi16(a, 4), m2)),
                     _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30)));
    const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(r));
    const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(r, 8)));
    const __m128 dd = _mm_cvtph_ps(v);  // lane 0 = d, lane 1 = dmin
    dsc = _mm256_mul_ps(_mm256_broadcastss_ps(dd), sc);
    dmm = _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)), m);
  }
  // a.d * ((d * sc) * isum - (dmin * m) * a.sum)
  static __m256 partials(const Row& w, const StepAct& a) {
    const __m256i isum = block_dots_small(w.q, a.q);
    const __m256 t1 = _mm256_mul_ps(w.dsc, _mm256_cvtepi32_ps(isum));
    const __m256 t2 = _mm256_mul_ps(w.dmm, _mm256_loadu_ps(a.sumf));
    return _mm256_mul_ps(_mm256_loadu_ps(a.d), _mm256_sub_ps(t1, t2));
  }
};

struct FormatQ5K {
  static constexpr size_t kStepBytes = sizeof(BlockQ5_K);
  using Row = FormatQ4K::Row;
  static void decode(const uint8_t* p, Row& w) {
    const auto* b = reinterpret_cast<const BlockQ5_K*>(p);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    const __m256i qh = load256(b->qh);
    // Bit j of qh[l] moved to bit 4 (16-bit shifts: the mask drops bits crossing bytes).
    const __m256i h[8] = {_mm256_slli_epi16(qh, 4),
                          _mm256_slli_epi16(qh, 3),
                          _mm256_slli_epi16(qh, 2),
                          _mm256_slli_epi16(qh, 1),
                          qh,
                          _mm256_srli_epi16(qh, 1),
                          _mm256_srli_epi16(qh, 2),
                          _mm256_srli_epi16(qh, 3)};
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load256(b->qs + 32 * c);
      w.q[2 * c] = _mm256_or_si256(_mm256_and_si256(v, lo4), _mm256_and_si256(h[2 * c], bit4));
      w.q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), lo4),
                                       _mm256_and_si256(h[2 * c + 1], bit4));
    }
    FormatQ4K::scales(p, w.dsc, w.dmm);
  }
  static __m256 partials(const Row& w, const StepAct& a) { return FormatQ4K::partials(w, a); }
};

struct FormatQ6K {
  static constexpr size_t kStepBytes = sizeof(BlockQ6_K);
  struct Row {
    __m256i q[8];    // q in [0, 63] (the stored value, before - 32)
    __m256i scv[8];  // int16: sc_{2j} in the low 128 bits, sc_{2j+1} in the high 128 bits
    __m256i sc16;    // int16 sc_0 .. sc_15
    __m256 d;
  };
  static void decode(const uint8_t* p, Row& w) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(p);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    const __m256i hi2 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(b->ql + 64 * h);
      const __m256i ql1 = load256(b->ql + 64 * h + 32);
      const __m256i qh = load256(b->qh + 32 * h);
      __m256i* q = w.q + 4 * h;
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, lo4),
                             _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, lo4),
                             _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4),
                             _mm256_and_si256(qh, hi2));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
    }
    w.sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
    const __m256i lo_dup = _mm256_permute2x128_si256(w.sc16, w.sc16, 0x00);  // sc_0..7 twice
    const __m256i hi_dup = _mm256_permute2x128_si256(w.sc16, w.sc16, 0x11);  // sc_8..15 twice
    for (int j = 0; j < 4; ++j) {
      // Low 128 bits: int16 element 2j broadcast; high 128 bits: element 2j + 1.
      const char a0 = static_cast<char>(4 * j), a1 = static_cast<char>(4 * j + 1);
      const char b0 = static_cast<char>(4 * j + 2), b1 = static_cast<char>(4 * j + 3);
      const __m256i sel =
          _mm256_setr_epi8(a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, b0, b1,
                           b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1, b0, b1);
      w.scv[j] = _mm256_shuffle_epi8(lo_dup, sel);
      w.scv[j + 4] = _mm256_shuffle_epi8(hi_dup, sel);
    }
    w.d = _mm256_set1_ps(fp16_to_float(b->d));
  }
  // a.d * (d * (float)(sc_lo * isum_lo + sc_hi * isum_hi)), isum over (q - 32) * a:
  // the integer part is sum sc_h * (sum q * a) - 32 * sum sc_h * (half sum of a).
  static __m256 partials(const Row& w, const StepAct& a) {
    __m256i m[8];
    for (int j = 0; j < 8; ++j) {
      m[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(w.q[j], load256(a.q + 32 * j)), w.scv[j]);
    }
    const __m256i raw = reduce8_i32(m);
    const __m256i offset = _mm256_madd_epi16(w.sc16, load256(a.half_sums));
    const __m256i isum = _mm256_sub_epi32(raw, _mm256_slli_epi32(offset, 5));
    const __m256 t = _mm256_mul_ps(w.d, _mm256_cvtepi32_ps(isum));
    return _mm256_mul_ps(_mm256_loadu_ps(a.d), t);
  }
};

// Q4_0 / Q5_0 / Q8_0: 8 blocks of 32 per step; p_j = (d_w * a.d) * (float)isum.
template <class Block>
struct FormatLegacyBase {
  static constexpr size_t kStepBytes = 8 * sizeof(Block);
  static __m256 finish(__m256 dw, __m256i isum, const StepAct& a) {
    return _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_loadu_ps(a.d)), _mm256_cvtepi32_ps(isum));
  }
};

template <int kOffset>  // 8: Q4_0, 16: Q5_0
struct FormatQx0 : FormatLegacyBase<std::conditional_t<kOffset == 8, BlockQ4_0, BlockQ5_0>> {
  using Block = std::conditional_t<kOffset == 8, BlockQ4_0, BlockQ5_0>;
  struct Row {
    __m256i q[8];  // unsigned q (before - kOffset)
    __m256 dw;
  };
  static void decode(const uint8_t* p, Row& w) {
    const auto* b = reinterpret_cast<const Block*>(p);
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int j = 0; j < 8; ++j) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[j].qs));
      __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), _mm_and_si128(v, lo4));
      if constexpr (kOffset == 16) {
        uint32_t qh;
        std::memcpy(&qh, b[j].qh, 4);
        q = _mm256_or_si256(q, bits_to_bytes_0x10(qh));
      }
      w.q[j] = q;
    }
    w.dw = load_fp16x8(p, sizeof(Block));
  }
  static __m256 partials(const Row& w, const StepAct& a) {
    const __m256i raw = block_dots_small(w.q, a.q);
    const __m256i isum = _mm256_sub_epi32(
        raw, _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sumi)),
                                _mm256_set1_epi32(kOffset)));
    return FormatQx0::finish(w.dw, isum, a);
  }
};

struct FormatQ8_0 : FormatLegacyBase<BlockQ8_0> {
  struct Row {
    __m256i w[8];   // signed weights
    __m256i aw[8];  // |w| as unsigned bytes (128 for -128)
    __m256 dw;
  };
  static void decode(const uint8_t* p, Row& w) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    for (int j = 0; j < 8; ++j) {
      w.w[j] = load256(b[j].qs);
      w.aw[j] = _mm256_abs_epi8(w.w[j]);
    }
    w.dw = load_fp16x8(p, sizeof(BlockQ8_0));
  }
  static __m256 partials(const Row& w, const StepAct& a) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i m[8];
    for (int j = 0; j < 8; ++j) {
      const __m256i sa = _mm256_sign_epi8(load256(a.q + 32 * j), w.w[j]);
      m[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(w.aw[j], sa), ones);
    }
    const __m256i isum = reduce8_i32(m);
    return finish(w.dw, isum, a);
  }
};

// ---------------------------------------------------------------------------------------------

// Every cache line of [p, p + bytes) into L1. Rows are short (864 B for n = 1536) and read 8 at
// a time, interleaved, which the hardware prefetchers do not follow, so the kernels prefetch
// the rows ahead themselves. Prefetching past the matrix end is harmless (prefetches do not
// fault).
inline void prefetch_range(const uint8_t* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + bytes - 1), _MM_HINT_T0);
}

// Each cache line that starts in [begin, end) into L1: consecutive ranges prefetch every line
// of their union once.
inline void prefetch_lines(const uint8_t* begin, const uint8_t* end) {
  for (uintptr_t a = (reinterpret_cast<uintptr_t>(begin) + 63) & ~uintptr_t{63};
       a < reinterpret_cast<uintptr_t>(end); a += 64)
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
}

// The same step of the row one group (8 rows) further down (the several-token kernel).
template <class F>
inline void prefetch_step(const uint8_t* p) {
  prefetch_range(p, F::kStepBytes);
}

// Token `tok`'s activations for step s (8 blocks of 32).
inline StepAct step_act(const ActPack& act, int64_t tok, int64_t s) {
  return {act.q + tok * act.n + 256 * s, act.d + tok * act.nb + 8 * s,
          act.sumf + tok * act.nb + 8 * s, act.sumi + tok * act.nb + 8 * s,
          act.half_sums ? act.half_sums + tok * 2 * act.nb + 16 * s : nullptr};
}

// Decode (kNT = 1..3 tokens): the same operations as run() below with a compile-time token
// count, so the partial vectors and running sums stay in registers and no per-group scratch is
// cleared (about 10% of the single-token matvec). Rows missing from the last group repeat the
// last real row: their lanes are computed and never stored.
template <class F, int kNT>
void run_few_tokens(Type type, const uint8_t* w, size_t row_bytes, const ActPack& act, float* out,
                    int64_t out_stride, int64_t row_begin, int64_t row_end) {
  const int64_t n_steps = act.nb / 8;
  // The next group's 8 rows are one contiguous range of memory: each (step, row) of this group
  // prefetches its share of it into L1, in address order, so the memory system sees one
  // sequential stream per thread. (Prefetching the same step of the row 8 rows down, and into L2
  // 16 rows down, as before, read the rows as 8 interleaved streams: 2-thread decode 10.4-11.3
  // tok/s against 14.0-16.2 now; docs/perf.md, CPU round 8.)
  // (Rows of fewer than 8 blocks have no step: nothing to prefetch.)
  const size_t shares = static_cast<size_t>(std::max<int64_t>(n_steps, 1)) * kRows;
  const size_t share = (kRows * row_bytes + shares - 1) / shares;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRows) {
    const uint8_t* next_group = w + static_cast<size_t>(r0 + kRows) * row_bytes;
    const int nr = static_cast<int>(std::min<int64_t>(kRows, row_end - r0));
    const uint8_t* rows[kRows];
    for (int r = 0; r < kRows; ++r)
      rows[r] = w + static_cast<size_t>(r0 + std::min(r, nr - 1)) * row_bytes;
    __m256 sum[kNT];  // lane r: running sum of row r0 + r
    for (auto& v : sum) v = _mm256_setzero_ps();
    for (int64_t s = 0; s < n_steps; ++s) {
      __m256 part[kNT][kRows];  // lane j = p_j of row r
      for (int r = 0; r < kRows; ++r) {
        const uint8_t* p = rows[r] + s * F::kStepBytes;
        const uint8_t* mine = next_group + (s * kRows + r) * share;
        prefetch_lines(mine, mine + share);
        typename F::Row row;
        F::decode(p, row);
        for (int t = 0; t < kNT; ++t) part[t][r] = F::partials(row, step_act(act, t, s));
      }
      for (int t = 0; t < kNT; ++t) {
        __m256 pt[8];
        transpose8(part[t], pt);
        for (int j = 0; j < 8; ++j) sum[t] = _mm256_add_ps(sum[t], pt[j]);
      }
    }
    for (int t = 0; t < kNT; ++t) {
      alignas(32) float acc[kRows];
      _mm256_store_ps(acc, sum[t]);
      for (int64_t j = n_steps * 8; j < act.nb; ++j) {
        for (int r = 0; r < nr; ++r) {
          acc[r] =
              acc[r] + block_partial_reference(type, rows[r], j, act.src + t * act.nb + j, nullptr);
        }
      }
      for (int r = 0; r < nr; ++r) out[t * out_stride + r0 + r] = acc[r];
    }
  }
}

template <class F>
void run(Type type, const uint8_t* w, size_t row_bytes, const ActPack& act, float* out,
         int64_t out_stride, int64_t row_begin, int64_t row_end) {
  switch (act.n_tokens) {
    case 1:
      return run_few_tokens<F, 1>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case 2:
      return run_few_tokens<F, 2>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case 3:
      return run_few_tokens<F, 3>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    default:
      break;
  }
  const int64_t n_steps = act.nb / 8;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, row_end - r0));
    const uint8_t* rows[kRows];
    for (int r = 0; r < nr; ++r) rows[r] = w + static_cast<size_t>(r0 + r) * row_bytes;
    for (int t0 = 0; t0 < act.n_tokens; t0 += kTokenTile) {
      const int nt = std::min(kTokenTile, act.n_tokens - t0);
      alignas(32) float acc[kTokenTile][kRows];  // lane r: running sum of row r0 + r
      std::fill(&acc[0][0], &acc[0][0] + kTokenTile * kRows, 0.0f);
      alignas(32) __m256 part[kTokenTile][kRows];  // part[t][r]: lane j = p_j
      if (nr < kRows) {
        for (int t = 0; t < nt; ++t) {
          for (int r = nr; r < kRows; ++r) part[t][r] = _mm256_setzero_ps();
        }
      }
      for (int64_t s = 0; s < n_steps; ++s) {
        for (int r = 0; r < nr; ++r) {
          const uint8_t* p = rows[r] + s * F::kStepBytes;
          prefetch_step<F>(p + kRows * row_bytes);
          typename F::Row row;
          F::decode(p, row);
          for (int t = 0; t < nt; ++t) {
            part[t][r] = F::partials(row, step_act(act, t0 + t, s));
          }
        }
        for (int t = 0; t < nt; ++t) {
          __m256 p[8];
          transpose8(part[t], p);
          __m256 sum = _mm256_load_ps(acc[t]);
          for (int j = 0; j < 8; ++j) sum = _mm256_add_ps(sum, p[j]);
          _mm256_store_ps(acc[t], sum);
        }
      }
      // Blocks past the last whole step (only Q4_0/Q5_0/Q8_0 rows of n/32 % 8 != 0 blocks).
      for (int64_t j = n_steps * 8; j < act.nb; ++j) {
        for (int t = 0; t < nt; ++t) {
          for (int r = 0; r < nr; ++r) {
            acc[t][r] = acc[t][r] + block_partial_reference(
                                        type, rows[r], j, act.src + (t0 + t) * act.nb + j, nullptr);
          }
        }
      }
      for (int t = 0; t < nt; ++t) {
        for (int r = 0; r < nr; ++r) out[(t0 + t) * out_stride + r0 + r] = acc[t][r];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Batched kernel (n_tokens >= kBatchedMinTokens): lane = token.
//
// The per-row kernel above spends most of its time on horizontal sums (8 block sums per row
// step, 16 int16 lanes each). Here the activations of 8 tokens are transposed once per call so
// that one vector holds 4 consecutive elements of each of 8 tokens (TokAct below), and a row's
// 4 weight bytes are broadcast: vpmaddubsw then yields, per token, pair sums of one block only,
// and the block sum is plain vertical int16 adds over the 8 element quads of the block plus one
// vpmaddwd. No shuffles in the inner loop; the float partial formula runs with lane = token
// (operations in the spec's order), and each (row, token) running sum takes p_0, p_1, ... in
// order. The weights of a few rows are decoded (nibbles -> bytes, scales -> floats) into a
// per-thread scratch once per token tile.
//
// int16 headroom of the vertical adds (per lane: one token, two products):
//   Q4_K, Q4_0: 8 quads summed: 8 * 3810 = 30480;  Q5_K, Q5_0: 4 quads: 4 * 7874 = 31496;
//   Q6_K: a whole 16-half (4 quads, up to 4 * 16002 = 64008) summed with wraparound, then the
//   precomputed 32 * (sum of a) subtracted: the exact sum of (q - 32) * a, |.| <= 32512, which
//   vpmaddwd widens with the half's scale (per block 10 multiplies instead of 13; see
//   TokAct::p32).

constexpr int kTokLanes = 8;  // tokens per vector

}  // namespace

size_t tok_act_bytes(int64_t nb, int n_tokens) {
  const int ng = (n_tokens + kTokLanes - 1) / kTokLanes;
  const size_t blocks = static_cast<size_t>(ng) * static_cast<size_t>(nb);
  return blocks * 256 + 3 * blocks * 32 + blocks * 64 + 64;
}

TokAct tok_act_layout(uint8_t* storage, int64_t nb, int n_tokens) {
  const int ng = (n_tokens + kTokLanes - 1) / kTokLanes;
  const size_t blocks = static_cast<size_t>(ng) * static_cast<size_t>(nb);
  const size_t q_bytes = blocks * 256, p_bytes = blocks * 32;
  uint8_t* base = storage + (32 - reinterpret_cast<uintptr_t>(storage) % 32) % 32;
  return TokAct{nb,
                n_tokens,
                ng,
                reinterpret_cast<int8_t*>(base),
                reinterpret_cast<float*>(base + q_bytes),
                reinterpret_cast<float*>(base + q_bytes + p_bytes),
                reinterpret_cast<int32_t*>(base + q_bytes + 2 * p_bytes),
                reinterpret_cast<int16_t*>(base + q_bytes + 3 * p_bytes)};
}

void pack_tok_act_groups(const numerics::ActBlock* xq, const TokAct& pack, int g_begin, int g_end) {
  const int64_t nb = pack.nb;
  auto* q = const_cast<int8_t*>(pack.q);
  auto* d = const_cast<float*>(pack.d);
  auto* sumf = const_cast<float*>(pack.sumf);
  auto* sumi = const_cast<int32_t*>(pack.sumi);
  auto* p32 = const_cast<int16_t*>(pack.p32);
  for (int g = g_begin; g < g_end; ++g) {
    const int nt = std::min(kTokLanes, pack.n_tokens - g * kTokLanes);
    for (int64_t j = 0; j < nb; ++j) {
      const size_t gj = static_cast<size_t>(g) * nb + j;
      __m256 v[8];
      for (int t = 0; t < kTokLanes; ++t) {
        if (t < nt) {
          const numerics::ActBlock& a = xq[(static_cast<int64_t>(g) * kTokLanes + t) * nb + j];
          v[t] = _mm256_castsi256_ps(load256(a.q));
          d[gj * 8 + t] = a.d;
          sumf[gj * 8 + t] = static_cast<float>(a.sum);
          sumi[gj * 8 + t] = a.sum;
        } else {
          v[t] = _mm256_setzero_ps();
          d[gj * 8 + t] = 0.0f;
          sumf[gj * 8 + t] = 0.0f;
          sumi[gj * 8 + t] = 0;
        }
      }
      __m256 o[8];
      transpose8(v, o);  // o[k] lane t = 32-bit word k of token t
      for (int k = 0; k < 8; ++k)
        _mm256_store_ps(reinterpret_cast<float*>(q + gj * 256 + 32 * k), o[k]);
      // Q6_K offsets (TokAct::p32): vpmaddubsw with all-one bytes adds the element pairs of a
      // quad, lane 2t + e = a[4k + 2e] + a[4k + 2e + 1] of token t (the kernel's lane layout);
      // 4 quads per half, |sum| <= 8 * 127, times 32 <= 32512. Missing tokens give 0.
      const __m256i ones8 = _mm256_set1_epi8(1);
      for (int h = 0; h < 2; ++h) {
        __m256i sum = _mm256_setzero_si256();
        for (int k = 4 * h; k < 4 * h + 4; ++k)
          sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(ones8, _mm256_castps_si256(o[k])));
        _mm256_store_si256(reinterpret_cast<__m256i*>(p32 + gj * 32 + 16 * h),
                           _mm256_slli_epi16(sum, 5));
      }
    }
  }
}

namespace {

// Decoded rows: q[j][32] unsigned weight bytes of block j in element order, plus per-block
// parameters whose meaning depends on the format (see BatchedKind).
struct DecodedRows {
  int64_t nb = 0;
  uint8_t* q = nullptr;   // [row][nb][32]
  float* fa = nullptr;    // [row][nb]
  float* fb = nullptr;    // [row][nb]
  int32_t* ia = nullptr;  // [row][nb]
  int32_t* ib = nullptr;  // [row][nb]
};

enum class BatchedKind { K4, K5, Q6K, Q40, Q50 };

// Decode one row (all steps) into slot `slot` of the scratch.
//   K4/K5: fa = d * sc_j, fb = dmin * m_j
//   Q6K:   fa = d; ia = sc_2j in both int16 halves, ib = sc_2j+1 in both
//   Q40/Q50: fa = d_w
template <BatchedKind K>
void decode_row(const uint8_t* row, DecodedRows& s, int slot) {
  const int64_t nb = s.nb;
  uint8_t* q = s.q + static_cast<size_t>(slot) * nb * 32;
  float* fa = s.fa + slot * nb;
  float* fb = s.fb + slot * nb;
  for (int64_t st = 0; st < nb / 8; ++st) {
    if constexpr (K == BatchedKind::K4 || K == BatchedKind::K5) {
      using F = std::conditional_t<K == BatchedKind::K4, FormatQ4K, FormatQ5K>;
      typename F::Row w;
      F::decode(row + st * F::kStepBytes, w);
      for (int j = 0; j < 8; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 256 * st + 32 * j), w.q[j]);
      _mm256_storeu_ps(fa + 8 * st, w.dsc);
      _mm256_storeu_ps(fb + 8 * st, w.dmm);
    } else if constexpr (K == BatchedKind::Q6K) {
      FormatQ6K::Row w;
      FormatQ6K::decode(row + st * FormatQ6K::kStepBytes, w);
      for (int j = 0; j < 8; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 256 * st + 32 * j), w.q[j]);
      _mm256_storeu_ps(fa + 8 * st, w.d);
      const auto* b = reinterpret_cast<const BlockQ6_K*>(row + st * FormatQ6K::kStepBytes);
      for (int j = 0; j < 8; ++j) {
        const uint32_t lo = static_cast<uint16_t>(static_cast<int16_t>(b->scales[2 * j]));
        const uint32_t hi = static_cast<uint16_t>(static_cast<int16_t>(b->scales[2 * j + 1]));
        s.ia[slot * nb + 8 * st + j] = static_cast<int32_t>(lo | lo << 16);
        s.ib[slot * nb + 8 * st + j] = static_cast<int32_t>(hi | hi << 16);
      }
    } else {
      using F = FormatQx0<K == BatchedKind::Q40 ? 8 : 16>;
      typename F::Row w;
      F::decode(row + st * F::kStepBytes, w);
      for (int j = 0; j < 8; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 256 * st + 32 * j), w.q[j]);
      _mm256_storeu_ps(fa + 8 * st, w.dw);
    }
  }
  if constexpr (K == BatchedKind::Q40 || K == BatchedKind::Q50) {
    // Blocks past the last whole step: decode the block alone (through a one-block copy so the
    // 8-block decoder never reads past the row).
    using Block = std::conditional_t<K == BatchedKind::Q40, BlockQ4_0, BlockQ5_0>;
    using F = FormatQx0<K == BatchedKind::Q40 ? 8 : 16>;
    for (int64_t j = nb / 8 * 8; j < nb; ++j) {
      Block tmp[8] = {};
      std::memcpy(&tmp[0], row + j * sizeof(Block), sizeof(Block));
      typename F::Row w;
      F::decode(reinterpret_cast<const uint8_t*>(tmp), w);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * j), w.q[0]);
      fa[j] = _mm256_cvtss_f32(w.dw);
    }
  }
}

inline __m256i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Register tile of the batched kernel: kR rows x kG token groups (8 tokens each) per block.
// Each activation vector (4 elements of 8 tokens) is loaded once and multiplied by the
// broadcast weights of kR rows; each weight broadcast is used by kG groups; 4 x 2 keeps the 8
// int16 accumulators, 2 activation vectors and a broadcast in the 16 ymm registers. The first
// version was 1 row x 4 groups with the activations as memory operands (one 32-byte load per
// vpmaddubsw). Measured (docs/perf.md, "CPU prefill, session 2"): 4 x 2 is 5-30% faster for
// Q4_K; the kernel is bound by vector ALU operations, not loads (per 256 multiply-adds: 8
// vpmaddubsw, 7 vpaddw, 1 vpmaddwd and the 6 float operations of the spec's partial).
// Q5_K/Q5_0 (two int16 spans per block, each widened) need an int32 sum per (row, group)
// beside the int16 span accumulators, so they use fewer (row, group) pairs to stay clear of
// spills. Q6_K sums each 16-half in int16 (two spans per block, see the headroom notes above
// the batched kernel) and runs 4 x 2: measured 25-40% faster than its earlier 1 x 4 kernel
// (four 2-quad spans and the offset removed per block, 13 multiplies per 256 multiply-adds;
// 4 x 1, 2 x 2 and 4 x 2 were no faster for that one). The new span in 1 x 4 was ~8% slower
// than the old kernel, so the gain comes from the tile: 8 independent accumulator chains.
template <BatchedKind K>
struct BatchedTile;
template <>
struct BatchedTile<BatchedKind::K4> {
  static constexpr int kR = 4, kG = 2;
};
template <>
struct BatchedTile<BatchedKind::Q40> {
  static constexpr int kR = 4, kG = 2;
};
template <>
struct BatchedTile<BatchedKind::K5> {
  static constexpr int kR = 2, kG = 2;
};
template <>
struct BatchedTile<BatchedKind::Q50> {
  static constexpr int kR = 2, kG = 2;
};
template <>
struct BatchedTile<BatchedKind::Q6K> {
  static constexpr int kR = 4, kG = 2;
};

// Activations are prefetched this many blocks ahead (each group's stream is 256 bytes per
// block; measured ~5% faster than hardware prefetch alone, 4 and 8 blocks no better).
constexpr int kPrefetchBlocks = 2;

// GCC turns each unrolled chain of vpaddw into a tree and hoists all 64 vpmaddubsw of a block
// ahead of the adds, which keeps their results live at once and spills them (measured: slower
// than the 1 x 4 kernel). An empty asm on each accumulator pins the chain as written.
inline void keep_in_register(__m256i& v) {
  asm("" : "+x"(v));
}

// Exact integer block dot (lane = token) of block j for kR rows x kG groups, then the float
// partial by the type's formula (operations in the spec's order), added to sum[r][g].
template <BatchedKind K, int kR, int kG>
inline void batched_block(const DecodedRows& s, int slot0, const TokAct& act, int g0, int64_t j,
                          __m256 (&sum)[kR][kG]) {
  const int64_t nb = s.nb;
  const uint8_t* wq[kR];
  for (int r = 0; r < kR; ++r) wq[r] = s.q + (static_cast<size_t>(slot0 + r) * nb + j) * 32;
  const int8_t* aq[kG];
  for (int g = 0; g < kG; ++g) aq[g] = act.q + (static_cast<size_t>(g0 + g) * nb + j) * 256;
  const __m256i ones = _mm256_set1_epi16(1);
  // Quads summed in int16 before widening (see the headroom table above).
  constexpr int kSpan = K == BatchedKind::K4 || K == BatchedKind::Q40 ? 8 : 4;
  // Everything below is fully unrolled (pragmas), so the accumulator arrays live in registers.
  if constexpr (kPrefetchBlocks > 0) {
    for (int g = 0; g < kG; ++g)
      for (int l = 0; l < 4; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(aq[g] + 256 * kPrefetchBlocks + 64 * l),
                     _MM_HINT_T0);
  }
  __m256i isum[kR][kG];
#pragma GCC unroll 8
  for (int k0 = 0; k0 < 8; k0 += kSpan) {
    __m256i acc[kR][kG];
#pragma GCC unroll 8
    for (int k = k0; k < k0 + kSpan; ++k) {
      __m256i a[kG];
#pragma GCC unroll 8
      for (int g = 0; g < kG; ++g) a[g] = load256(aq[g] + 32 * k);
#pragma GCC unroll 8
      for (int r = 0; r < kR; ++r) {
        const __m256i wv = bcast32(wq[r] + 4 * k);
#pragma GCC unroll 8
        for (int g = 0; g < kG; ++g) {
          const __m256i m = _mm256_maddubs_epi16(wv, a[g]);
          acc[r][g] = k == k0 ? m : _mm256_add_epi16(acc[r][g], m);
          if constexpr (kSpan == 8 || K == BatchedKind::Q6K) keep_in_register(acc[r][g]);
        }
      }
    }
    if constexpr (K == BatchedKind::Q6K) {
      // acc lane 2t + e: sum of q * a over the half's 8 elements of that lane, up to 64008:
      // wrapped mod 2^16 by vpaddw. Minus 32 * (sum of a) over the same elements it becomes the
      // exact sum of (q - 32) * a, |.| <= 32512: the wrap cancels, the value fits.
#pragma GCC unroll 8
      for (int g = 0; g < kG; ++g) {
        const __m256i off = _mm256_load_si256(reinterpret_cast<const __m256i*>(
            act.p32 + ((static_cast<size_t>(g0 + g) * nb + j) * 2 + k0 / 4) * 16));
#pragma GCC unroll 8
        for (int r = 0; r < kR; ++r) acc[r][g] = _mm256_sub_epi16(acc[r][g], off);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) {
      __m256i mul = ones;
      if constexpr (K == BatchedKind::Q6K) {
        // Quads 0..3 are the first 16-half (scale sc_2j), 4..7 the second (sc_2j+1).
        mul = _mm256_set1_epi32(k0 < 4 ? s.ia[(slot0 + r) * nb + j] : s.ib[(slot0 + r) * nb + j]);
      }
#pragma GCC unroll 8
      for (int g = 0; g < kG; ++g) {
        const __m256i wide = _mm256_madd_epi16(acc[r][g], mul);
        isum[r][g] = k0 == 0 ? wide : _mm256_add_epi32(isum[r][g], wide);
      }
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < kG; ++g) {
    const size_t pj = (static_cast<size_t>(g0 + g) * nb + j) * 8;
    const __m256 ad = _mm256_load_ps(act.d + pj);
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) {
      const int64_t rj = (slot0 + r) * nb + j;
      __m256 p;
      if constexpr (K == BatchedKind::K4 || K == BatchedKind::K5) {
        // a.d * ((d * sc) * isum - (dmin * m) * a.sum)
        const __m256 t1 = _mm256_mul_ps(_mm256_set1_ps(s.fa[rj]), _mm256_cvtepi32_ps(isum[r][g]));
        const __m256 t2 = _mm256_mul_ps(_mm256_set1_ps(s.fb[rj]), _mm256_load_ps(act.sumf + pj));
        p = _mm256_mul_ps(ad, _mm256_sub_ps(t1, t2));
      } else if constexpr (K == BatchedKind::Q6K) {
        // isum = sum_h sc_h * sum_(half h) (q - 32) a (offsets removed per half above);
        // a.d * (d * (float)isum)
        p = _mm256_mul_ps(ad,
                          _mm256_mul_ps(_mm256_set1_ps(s.fa[rj]), _mm256_cvtepi32_ps(isum[r][g])));
      } else {
        // (d_w * a.d) * (float)(isum - offset * a.sum)
        constexpr int kShift = K == BatchedKind::Q40 ? 3 : 4;
        const __m256i is = _mm256_sub_epi32(
            isum[r][g],
            _mm256_slli_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(act.sumi + pj)),
                              kShift));
        p = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(s.fa[rj]), ad), _mm256_cvtepi32_ps(is));
      }
      sum[r][g] = _mm256_add_ps(sum[r][g], p);
    }
  }
}

// Token tile of run_batched: each decoded row chunk runs over kTileGroups groups (128 tokens)
// before the next rows are decoded. A tile sized to keep its activations in half of L2 (the
// first version) left only 2 groups per tile at n = 8960: each row was decoded again for every
// 16 tokens, and the Q4_K down projection ran ~25% slower than n = 1536. With 16 groups the
// activations of a long row come from L3 (1.4 MiB at n = 8960), which measured faster than
// both that and an L2-sized tile over block chunks (sums kept in memory between chunks).
constexpr int kTileGroups = 16;

// Rows [0, nr_pad) of the decoded chunk (nr_pad a multiple of kR) x groups [g0, g0 + kG):
// every (row, token) sum over all blocks in order, then the stores of the real rows and tokens.
template <BatchedKind K, int kR, int kG>
void batched_groups(const DecodedRows& s, const TokAct& act, int g0, int nr, int nr_pad, int64_t r0,
                    int n_tokens, float* out, int64_t out_stride) {
  for (int rr = 0; rr < nr_pad; rr += kR) {
    __m256 sum[kR][kG];
    for (auto& row : sum)
      for (auto& v : row) v = _mm256_setzero_ps();
    for (int64_t j = 0; j < s.nb; ++j) batched_block<K, kR, kG>(s, rr, act, g0, j, sum);
    for (int g = 0; g < kG; ++g) {
      const int grp = g0 + g;
      const int nt = std::min(kTokLanes, n_tokens - grp * kTokLanes);
      for (int r = 0; r < kR && rr + r < nr; ++r) {
        alignas(32) float v[8];
        _mm256_store_ps(v, sum[r][g]);
        for (int t = 0; t < nt; ++t) {
          out[static_cast<int64_t>(grp * kTokLanes + t) * out_stride + r0 + rr + r] = v[t];
        }
      }
    }
  }
}

template <BatchedKind K>
void run_batched(const uint8_t* w, size_t row_bytes, const TokAct& act, float* out,
                 int64_t out_stride, int64_t row_begin, int64_t row_end) {
  constexpr int kR = BatchedTile<K>::kR, kG = BatchedTile<K>::kG;
  static_assert(kTileGroups % kG == 0);
  const int64_t nb = act.nb;
  const int n_tokens = act.n_tokens;
  // Rows decoded at once: a multiple of kR (missing rows of the range repeat the last one,
  // computed and not stored).
  constexpr int kChunkRows = (8 + kR - 1) / kR * kR;
  static_assert(kChunkRows % kR == 0);
  thread_local std::vector<uint8_t> storage;
  const size_t q_bytes = static_cast<size_t>(kChunkRows) * nb * 32;
  const size_t p_bytes = static_cast<size_t>(kChunkRows) * nb * 4;
  if (storage.size() < q_bytes + 4 * p_bytes + 64) storage.resize(q_bytes + 4 * p_bytes + 64);
  uint8_t* base = storage.data();
  base += (32 - reinterpret_cast<uintptr_t>(base) % 32) % 32;
  DecodedRows s{nb,
                base,
                reinterpret_cast<float*>(base + q_bytes),
                reinterpret_cast<float*>(base + q_bytes + p_bytes),
                reinterpret_cast<int32_t*>(base + q_bytes + 2 * p_bytes),
                reinterpret_cast<int32_t*>(base + q_bytes + 3 * p_bytes)};
  const int ng = act.n_groups;
  for (int gt = 0; gt < ng; gt += kTileGroups) {
    const int gt_end = std::min(ng, gt + kTileGroups);
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kChunkRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kChunkRows, row_end - r0));
      const int nr_pad = (nr + kR - 1) / kR * kR;
      for (int r = 0; r < nr_pad; ++r) {
        decode_row<K>(w + static_cast<size_t>(r0 + std::min(r, nr - 1)) * row_bytes, s, r);
      }
      // Groups kG at a time, the rest of the tile one at a time.
      int g0 = gt;
      for (; g0 + kG <= gt_end; g0 += kG) {
        batched_groups<K, kR, kG>(s, act, g0, nr, nr_pad, r0, n_tokens, out, out_stride);
      }
      for (; g0 < gt_end; ++g0) {
        batched_groups<K, kR, 1>(s, act, g0, nr, nr_pad, r0, n_tokens, out, out_stride);
      }
    }
  }
}

}  // namespace

bool batched_applies(Type type, int n_tokens) {
  if (n_tokens < kBatchedMinTokens) return false;
  switch (type) {
    case Type::Q4_K:
    case Type::Q5_K:
    case Type::Q6_K:
    case Type::Q4_0:
    case Type::Q5_0:
      return true;
    default:
      return false;
  }
}

bool matmul_int8_batched(Type type, const uint8_t* w, size_t row_bytes,
                         const numerics::ActBlock* xq, int64_t n, int n_tokens, float* out,
                         int64_t out_stride, int64_t row_begin, int64_t row_end,
                         const TokAct* packed) {
  if (!batched_applies(type, n_tokens)) return false;
  if (packed == nullptr) {
    // Per-thread packing, valid until this thread's next unpacked call.
    thread_local std::vector<uint8_t> storage;
    const int64_t nb = n / 32;
    const size_t bytes = tok_act_bytes(nb, n_tokens);
    if (storage.size() < bytes) storage.resize(bytes);
    thread_local TokAct pack;
    pack = tok_act_layout(storage.data(), nb, n_tokens);
    pack_tok_act_groups(xq, pack, 0, pack.n_groups);
    packed = &pack;
  }
  switch (type) {
    case Type::Q4_K:
      run_batched<BatchedKind::K4>(w, row_bytes, *packed, out, out_stride, row_begin, row_end);
      break;
    case Type::Q5_K:
      run_batched<BatchedKind::K5>(w, row_bytes, *packed, out, out_stride, row_begin, row_end);
      break;
    case Type::Q6_K:
      run_batched<BatchedKind::Q6K>(w, row_bytes, *packed, out, out_stride, row_begin, row_end);
      break;
    case Type::Q4_0:
      run_batched<BatchedKind::Q40>(w, row_bytes, *packed, out, out_stride, row_begin, row_end);
      break;
    case Type::Q5_0:
      run_batched<BatchedKind::Q50>(w, row_bytes, *packed, out, out_stride, row_begin, row_end);
      break;
    default:
      return false;
  }
  return true;
}

void matmul_int8(Type type, const uint8_t* w, size_t row_bytes, const ActPack& act, float* out,
                 int64_t out_stride, int64_t row_begin, int64_t row_end) {
  switch (type) {
    case Type::Q4_K:
      return run<FormatQ4K>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case Type::Q5_K:
      return run<FormatQ5K>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case Type::Q6_K:
      return run<FormatQ6K>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case Type::Q4_0:
      return run<FormatQx0<8>>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case Type::Q5_0:
      return run<FormatQx0<16>>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    case Type::Q8_0:
      return run<FormatQ8_0>(type, w, row_bytes, act, out, out_stride, row_begin, row_end);
    default:
      return;  // float types go to matmul_float (checked by the caller)
  }
}

}  // namespace resident::quant::detail
