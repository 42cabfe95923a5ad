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
    scales(b->d, b->dmin, b->scales, w.dsc, w.dmm);
  }
  static void scales(uint16_t d16, uint16_t dmin16, const uint8_t* packed, __m256& dsc,
                     __m256& dmm) {
    // unpack_scales_k4 in registers (a 16-byte reload of four 4-byte stores would stall on
    // store forwarding).
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t u0, u1, u2;
    std::memcpy(&u0, packed, 4);
    std::memcpy(&u1, packed + 4, 4);
    std::memcpy(&u2, packed + 8, 4);
    const uint32_t m_hi = ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4);
    const uint32_t m_lo = u1 & kmask1;
    const uint32_t sc_hi = (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4);
    const uint32_t sc_lo = u0 & kmask1;
    const __m128i v = _mm_set_epi32(static_cast<int>(m_hi), static_cast<int>(m_lo),
                                    static_cast<int>(sc_hi), static_cast<int>(sc_lo));
    const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
    const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
    dsc = _mm256_mul_ps(_mm256_set1_ps(fp16_to_float(d16)), sc);
    dmm = _mm256_mul_ps(_mm256_set1_ps(fp16_to_float(dmin16)), m);
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
    FormatQ4K::scales(b->d, b->dmin, b->scales, w.dsc, w.dmm);
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

inline void transpose8(const __m256* in, __m256* out) {
  const __m256 t0 = _mm256_unpacklo_ps(in[0], in[1]);
  const __m256 t1 = _mm256_unpackhi_ps(in[0], in[1]);
  const __m256 t2 = _mm256_unpacklo_ps(in[2], in[3]);
  const __m256 t3 = _mm256_unpackhi_ps(in[2], in[3]);
  const __m256 t4 = _mm256_unpacklo_ps(in[4], in[5]);
  const __m256 t5 = _mm256_unpackhi_ps(in[4], in[5]);
  const __m256 t6 = _mm256_unpacklo_ps(in[6], in[7]);
  const __m256 t7 = _mm256_unpackhi_ps(in[6], in[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  out[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  out[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  out[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  out[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  out[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  out[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  out[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  out[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <class F>
void run(Type type, const uint8_t* w, size_t row_bytes, const ActPack& act, float* out,
         int64_t out_stride, int64_t row_begin, int64_t row_end) {
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
          // The next row group's same step, one group (8 rows) ahead: rows are short (864 B for
          // n = 1536) and read 8 at a time, interleaved, which the hardware prefetchers do not
          // follow. Prefetching past the matrix end is harmless (prefetches do not fault).
          for (size_t off = 0; off < F::kStepBytes; off += 64) {
            _mm_prefetch(reinterpret_cast<const char*>(p + kRows * row_bytes + off), _MM_HINT_T0);
          }
          _mm_prefetch(reinterpret_cast<const char*>(p + kRows * row_bytes + F::kStepBytes - 1),
                       _MM_HINT_T0);
          typename F::Row row;
          F::decode(p, row);
          for (int t = 0; t < nt; ++t) {
            const int64_t tok = t0 + t;
            const StepAct a{act.q + tok * act.n + 256 * s, act.d + tok * act.nb + 8 * s,
                            act.sumf + tok * act.nb + 8 * s, act.sumi + tok * act.nb + 8 * s,
                            act.half_sums ? act.half_sums + tok * 2 * act.nb + 16 * s : nullptr};
            part[t][r] = F::partials(row, a);
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

}  // namespace

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
