// Round-to-nearest quantizers for every supported type (used by `resident synth` to build
// random-weight models, and by tests), and activation quantization.
//
// These are deliberately simple (no iterative scale search like llama.cpp's make_qkx2): one
// pass for the block statistics, scales rounded *up* so that the quantization grid always covers
// the block's range, then one rounding per element. Worst-case error is half a grid step (a full
// step for the clipped extreme of Q4_0/Q5_0, whose grids are asymmetric as in ggml), and the
// synth helper can push ~1e9 weights through in seconds.
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "quant/block_formats.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::quant {

namespace {

// Nearest, ties to even (MXCSR default): one cvtss2si, no libm call.
inline int round_nearest(float x) {
  return _mm_cvt_ss2si(_mm_set_ss(x));
}

inline int clamp_int(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Smallest fp16 >= d for d >= 0 (saturating at the largest finite fp16, 65504): a scale rounded
// up keeps every |x| / scale within the quantizer's integer range.
inline uint16_t fp16_round_up(float d) {
  const uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  return (h & 0x7fff) >= 0x7c00 ? uint16_t{0x7bff} : h;
}

// Same, away from zero, keeping the sign of d.
inline uint16_t fp16_round_away(float d) {
  return static_cast<uint16_t>(fp16_round_up(std::fabs(d)) | (d < 0.0f ? 0x8000 : 0));
}

void check_finite(float amax, const char* type) {
  if (!(amax <= FLT_MAX)) {
    throw Error(std::string("quantize_row(") + type + "): input contains inf or NaN");
  }
}

float abs_max(const float* x, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// The value of largest magnitude, with its sign (ggml's Q4_0/Q5_0 convention: that value maps
// exactly onto the grid end -8 (-16), the opposite end is one step short).
float signed_max(const float* x, int n, const char* type) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      max = x[i];
    }
  }
  bool bad = false;
  for (int i = 0; i < n; ++i) bad |= !(std::fabs(x[i]) <= FLT_MAX);
  if (bad) check_finite(NAN, type);
  return max;
}

void quantize_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float amax = abs_max(x, kQK);
    check_finite(amax, "Q8_0");
    b[i].d = fp16_round_up(amax / 127.0f);
    const float d = fp16_to_float(b[i].d);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int l = 0; l < kQK; ++l)
      b[i].qs[l] = static_cast<int8_t>(clamp_int(round_nearest(x[l] * id), -127, 127));
  }
}

// Q4_0 (offset 8, 4 bits) and Q5_0 (offset 16, 5 bits): q = trunc(x / d + offset + 0.5).
template <int kOffset>
void quantize_q_0(const float* x, uint16_t* d_out, uint8_t* q, const char* type) {
  const float max = signed_max(x, kQK, type);
  *d_out = fp16_round_away(max / -static_cast<float>(kOffset));
  const float d = fp16_to_float(*d_out);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int l = 0; l < kQK; ++l) {
    const float v = x[l] * id + (static_cast<float>(kOffset) + 0.5f);
    q[l] = static_cast<uint8_t>(clamp_int(static_cast<int>(v), 0, 2 * kOffset - 1));
  }
}

void quantize_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    uint8_t q[kQK];
    quantize_q_0<8>(x, &b[i].d, q, "Q4_0");
    for (int l = 0; l < 16; ++l) b[i].qs[l] = static_cast<uint8_t>(q[l] | (q[l + 16] << 4));
  }
}

void quantize_q5_0(const float* x, BlockQ5_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    uint8_t q[kQK];
    quantize_q_0<16>(x, &b[i].d, q, "Q5_0");
    uint32_t qh = 0;
    for (int l = 0; l < kQK; ++l) qh |= static_cast<uint32_t>(q[l] >> 4) << l;
    std::memcpy(b[i].qh, &qh, 4);
    for (int l = 0; l < 16; ++l)
      b[i].qs[l] = static_cast<uint8_t>((q[l] & 0xF) | ((q[l + 16] & 0xF) << 4));
  }
}

// Q4_K / Q5_K: value = (d * sc_j) * q - (dmin * m_j), q in [0, kQMax]. Per sub-block the grid
// [-dm_j, -dm_j + kQMax * ds_j] is made to cover [min(x, 0), max(x)]: the mins are rounded up
// first, then each step is chosen for the range that remains.
template <int kQMax>
void quantize_k_super(const float* x, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales,
                      uint8_t q[kQKK], const char* type) {
  float lo[8], hi[8];
  float max_neg = 0.0f;
  for (int j = 0; j < 8; ++j) {
    float mn = 0.0f, mx = -FLT_MAX;
    for (int l = 0; l < kQK; ++l) {
      mn = std::min(mn, x[kQK * j + l]);
      mx = std::max(mx, x[kQK * j + l]);
    }
    lo[j] = mn;
    hi[j] = mx;
    max_neg = std::max(max_neg, -mn);
  }
  float amax = 0.0f;
  for (int j = 0; j < 8; ++j) amax = std::max(amax, std::max(-lo[j], std::fabs(hi[j])));
  if (!(amax <= FLT_MAX)) check_finite(NAN, type);
  for (int i = 0; i < kQKK; ++i) {
    if (x[i] != x[i]) check_finite(NAN, type);
  }

  *dmin_out = fp16_round_up(max_neg / 63.0f);
  const float dmin = fp16_to_float(*dmin_out);
  uint8_t sc[8], m[8];
  float dm[8], step[8];
  float max_step = 0.0f;
  for (int j = 0; j < 8; ++j) {
    m[j] = dmin > 0.0f ? static_cast<uint8_t>(std::min(63.0f, std::ceil(-lo[j] / dmin))) : 0;
    dm[j] = dmin * static_cast<float>(m[j]);
    step[j] = (hi[j] + dm[j]) / static_cast<float>(kQMax);
    max_step = std::max(max_step, step[j]);
  }
  *d_out = fp16_round_up(max_step / 63.0f);
  const float d = fp16_to_float(*d_out);
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0.0f ? static_cast<uint8_t>(std::min(63.0f, std::ceil(step[j] / d))) : 0;
    const float ds = d * static_cast<float>(sc[j]);
    const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
    for (int l = 0; l < kQK; ++l) {
      q[kQK * j + l] =
          static_cast<uint8_t>(clamp_int(round_nearest((x[kQK * j + l] + dm[j]) * ids), 0, kQMax));
    }
  }
  // Inverse of get_scale_min_k4.
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    uint8_t q[kQKK];
    quantize_k_super<15>(x, &b[i].d, &b[i].dmin, b[i].scales, q, "Q4_K");
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < kQK; ++l) {
        b[i].qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
      }
    }
  }
}

void quantize_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    uint8_t q[kQKK];
    quantize_k_super<31>(x, &b[i].d, &b[i].dmin, b[i].scales, q, "Q5_K");
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < kQK; ++l) {
        b[i].qs[32 * c + l] =
            static_cast<uint8_t>((q[64 * c + l] & 0xF) | ((q[64 * c + 32 + l] & 0xF) << 4));
      }
    }
    for (int l = 0; l < kQK; ++l) {
      uint8_t h = 0;
      for (int j = 0; j < 8; ++j) h |= static_cast<uint8_t>((q[kQK * j + l] >> 4) << j);
      b[i].qh[l] = h;
    }
  }
}

// Q6_K: value = (d * sc_k) * (q - 32) over 16-element sub-blocks k; symmetric grid
// [-31, 31] * ds_k (q = 0 unused, as a symmetric round-to-nearest quantizer has no use for it).
void quantize_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float step[16];
    float max_step = 0.0f;
    for (int k = 0; k < 16; ++k) {
      step[k] = abs_max(x + 16 * k, 16) / 31.0f;
      max_step = std::max(max_step, step[k]);
    }
    check_finite(max_step, "Q6_K");
    b[i].d = fp16_round_up(max_step / 127.0f);
    const float d = fp16_to_float(b[i].d);
    uint8_t q[kQKK];
    for (int k = 0; k < 16; ++k) {
      const int sc = d > 0.0f ? static_cast<int>(std::min(127.0f, std::ceil(step[k] / d))) : 0;
      b[i].scales[k] = static_cast<int8_t>(sc);
      const float ds = d * static_cast<float>(sc);
      const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
      for (int l = 0; l < 16; ++l) {
        q[16 * k + l] =
            static_cast<uint8_t>(clamp_int(round_nearest(x[16 * k + l] * ids), -32, 31) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* qq = q + 128 * h;
      for (int l = 0; l < kQK; ++l) {
        b[i].ql[64 * h + l] = static_cast<uint8_t>((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
        b[i].ql[64 * h + 32 + l] =
            static_cast<uint8_t>((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
        b[i].qh[32 * h + l] =
            static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                 ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_row(Type type, const float* src, void* dst, int64_t n) {
  const int64_t nb = whole_blocks(type, n, "quantize_row");
  switch (type) {
    case Type::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case Type::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_fp16(src[i]);
      return;
    }
    case Type::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(src[i]);
      return;
    }
    case Type::Q8_0:
      return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case Type::Q4_0:
      return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case Type::Q5_0:
      return quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), nb);
    case Type::Q4_K:
      return quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case Type::Q5_K:
      return quantize_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
    case Type::Q6_K:
      return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
  }
}

namespace {

// numerics::quantize_act_block with 8 lanes (1.5% of the pp512 profile as scalar code), the
// same values exactly: the max of |x| is order-free (vmaxps(a, m) = a > m ? a : m skips NaN
// like the scalar comparison), d and id are the scalar expressions, x * id is rounded to
// nearest-even by vcvtps2dq (NaN and out-of-range give INT_MIN, as the scalar conversion does
// on x86) and clamped, and the sum is exact.
void quantize_act_block_avx2(const float* x, numerics::ActBlock* out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    m = _mm256_max_ps(_mm256_and_ps(v[k], abs_mask), m);
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float amax = _mm_cvtss_f32(m4);
  const float d = amax / 127.0f;
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  const __m256 idv = _mm256_set1_ps(id);
  const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
  __m256i q[4];
  __m256i sum = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], idv));
    q[k] = _mm256_max_epi32(_mm256_min_epi32(q[k], hi), lo);
    sum = _mm256_add_epi32(sum, q[k]);
  }
  // int32 -> int8 (no saturation happens: |q| <= 127); the packs interleave 128-bit lanes,
  // which the final permute undoes.
  const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
  const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
  const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                                 _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->q), p8);
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
  out->d = d;
  out->sum = _mm_cvtsi128_si32(s4);
}

}  // namespace

void quantize_activations(const float* x, numerics::ActBlock* out, int64_t n) {
  if (n % numerics::kActBlock != 0) {
    throw Error("quantize_activations: length " + std::to_string(n) + " is not a multiple of 32");
  }
  for (int64_t j = 0; j < n / numerics::kActBlock; ++j) {
    quantize_act_block_avx2(x + j * numerics::kActBlock, out + j);
  }
}

}  // namespace resident::quant
