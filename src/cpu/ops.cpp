#include "cpu/ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "numerics/canonical.h"
#include "util/error.h"

namespace resident::cpu {

float sum256(std::span<const float> v) {
  float partial[256];
  for (int k = 0; k < 256; ++k) partial[k] = 0.0f;
  for (size_t i = 0; i < v.size(); ++i) partial[i % 256] = partial[i % 256] + v[i];
  for (int s = 128; s >= 1; s /= 2)
    for (int k = 0; k < s; ++k) partial[k] = partial[k] + partial[k + s];
  return partial[0];
}

void rmsnorm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> y) {
  const size_t n = x.size();
  std::vector<float> sq(n);
  for (size_t i = 0; i < n; ++i) sq[i] = x[i] * x[i];
  const float ss = sum256(sq);
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (size_t i = 0; i < n; ++i) y[i] = (x[i] * r) * w[i];
}

std::vector<float> rope_table(int n_ctx, int head_dim, float theta,
                              std::span<const float> freq_factors) {
  const int half = head_dim / 2;
  std::vector<float> table(static_cast<size_t>(n_ctx) * half * 2);
  for (int i = 0; i < half; ++i) {
    double inv_freq = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
    if (!freq_factors.empty()) inv_freq /= freq_factors[i];
    for (int pos = 0; pos < n_ctx; ++pos) {
      const double angle = pos * inv_freq;
      table[(static_cast<size_t>(pos) * half + i) * 2 + 0] = static_cast<float>(std::cos(angle));
      table[(static_cast<size_t>(pos) * half + i) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

// GCC 12 turns the interleaved branch into vfmaddsub (a fused multiply-add) when the SLP
// vectorizers pair it up, even under -ffp-contract=off; the spec forbids that fusion, so the
// vectorizers are switched off here (tests/cpu_ops_test.cpp checks the bits).
__attribute__((optimize("no-tree-vectorize", "no-tree-slp-vectorize"))) void rope_apply(
    float* x, int n_heads, int head_dim, bool neox, const float* table, int pos) {
  const int half = head_dim / 2;
  const float* row = table + static_cast<size_t>(pos) * half * 2;
  for (int h = 0; h < n_heads; ++h) {
    float* head = x + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float c = row[2 * i], s = row[2 * i + 1];
      const int i0 = neox ? i : 2 * i;
      const int i1 = neox ? i + half : 2 * i + 1;
      const float x0 = head[i0], x1 = head[i1];
      head[i0] = x0 * c - x1 * s;
      head[i1] = x0 * s + x1 * c;
    }
  }
}

uint16_t float_to_half(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

float half_to_float(uint16_t h) {
  return _cvtsh_ss(h);
}

namespace {

// 8 fp16 K/V elements as floats.
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// dot128 of the spec up to the tree step s = 8: lane l (< 8) of the result is lane[l] after
// the steps s = 16 and 8.
inline __m256 dot_head_s8(const float* q, const uint16_t* k, int head_dim) {
  // The 32 lane partials of the spec live in four 8-wide vectors (lanes 8j..8j+7 in acc[j]);
  // element d = 32c + l goes to lane l. Products are rounded, then added (no fused multiply-add).
  __m256 acc[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * j), load8(k + 8 * j));
  for (int c = 32; c < head_dim; c += 32) {
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm256_add_ps(acc[j],
                             _mm256_mul_ps(_mm256_loadu_ps(q + c + 8 * j), load8(k + c + 8 * j)));
    }
  }
  // Tree s = 16, 8 (whole vectors).
  const __m256 s16a = _mm256_add_ps(acc[0], acc[2]);
  const __m256 s16b = _mm256_add_ps(acc[1], acc[3]);
  return _mm256_add_ps(s16a, s16b);
}

// The tree steps s = 4, 2, 1 for 8 positions at once (s8[p]: dot_head_s8 of position p): lane
// p of the result is position p's dot. Each lane sees the scalar's adds (lane[l] + lane[l + s]),
// only the data movement differs: 7 adds and 15 shuffles per 8 positions instead of 6
// operations per position (extract/movehl/shuffle chain). Measured gain small (within the
// noise, docs/perf.md "Session 2, part 2"): the tail was not what bounds attention.
inline __m256 dot_tree_tail8(const __m256* s8) {
  __m256 s4[4];  // s4[i]: low 128 bits position 2i, high 128 bits position 2i + 1 (4 lanes each)
  for (int i = 0; i < 4; ++i) {
    s4[i] = _mm256_add_ps(_mm256_permute2f128_ps(s8[2 * i], s8[2 * i + 1], 0x20),
                          _mm256_permute2f128_ps(s8[2 * i], s8[2 * i + 1], 0x31));
  }
  // s2[i] 128-bit halves: low [4i: lanes 0, 1 | 4i+2: lanes 0, 1], high [4i+1 | 4i+3].
  __m256 s2[2];
  for (int i = 0; i < 2; ++i) {
    s2[i] = _mm256_add_ps(_mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Lanes [p0, p2, p4, p6, p1, p3, p5, p7], then into position order.
  const __m256 s1 = _mm256_add_ps(_mm256_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm256_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm256_permutevar8x32_ps(s1, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float dot_head_inline(const float* q, const uint16_t* k, int head_dim) {
  const __m256 s8 = dot_head_s8(q, k, head_dim);
  // Tree s = 4, 2, 1 inside the vector.
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

}  // namespace

float dot_head(const float* q, const uint16_t* k, int head_dim) {
  return dot_head_inline(q, k, head_dim);
}

float dot_head_reference(const float* q, const uint16_t* k, int head_dim) {
  float lane[32];
  for (int l = 0; l < 32; ++l) {
    float acc = q[l] * half_to_float(k[l]);
    for (int d = l + 32; d < head_dim; d += 32) acc = acc + q[d] * half_to_float(k[d]);
    lane[l] = acc;
  }
  for (int s = 16; s >= 1; s /= 2)
    for (int l = 0; l < s; ++l) lane[l] = lane[l] + lane[l + s];
  return lane[0];
}

namespace {

// numerics::exp_canonical on 8 lanes: the same float operations in the same order (range
// reduction, Horner polynomial, exponent assembly), so every lane has the scalar's bits. The
// scalar's branches become lane masks: the special inputs (NaN, > 88.7, < -103) are computed
// like any lane and replaced at the end, and the two 2^n scalings (n < -126: two factors;
// n > 127: one factor 2 taken out first) are selected per lane.
inline __m256 exp_canonical8(__m256 x) {
  const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
  // n = (int)(t + (t >= 0 ? 0.5 : -0.5)): the int conversion truncates, like the scalar cast.
  const __m256 half = _mm256_blendv_ps(_mm256_set1_ps(-0.5f), _mm256_set1_ps(0.5f),
                                       _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GE_OQ));
  __m256i n = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
  const __m256 fn = _mm256_cvtepi32_ps(n);
  const __m256 r =
      _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(fn, _mm256_set1_ps(0.693145751953125f))),
                    _mm256_mul_ps(fn, _mm256_set1_ps(1.42860682030941723212e-6f)));
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  // n > 127: p = p * 2, n = n - 1.
  const __m256i big = _mm256_cmpgt_epi32(n, _mm256_set1_epi32(127));
  p = _mm256_blendv_ps(p, _mm256_mul_ps(p, _mm256_set1_ps(2.0f)), _mm256_castsi256_ps(big));
  n = _mm256_add_epi32(n, big);  // big lanes are -1
  // n < -126: p * 2^(n + 126), then * 2^-126; otherwise p * 2^n.
  const __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), n);
  const __m256i e = _mm256_add_epi32(n, _mm256_and_si256(small, _mm256_set1_epi32(126)));
  const __m256 scale =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(p, scale);
  y = _mm256_blendv_ps(y,
                       _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(1 << 23))),  // 2^-126
                       _mm256_castsi256_ps(small));
  // Special inputs, as the scalar's early returns: x < -103 -> 0, x > 88.7 -> +inf, NaN -> x.
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-103.0f), _CMP_LT_OQ), y);
  y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)),
                       _mm256_cmp_ps(x, _mm256_set1_ps(88.7f), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// possum of the spec: chunks of 256 positions, 32 lanes per chunk, tree, chunks in order.
// value(t) gives the t-th term.
template <typename Term>
float possum(int n_pos, Term value) {
  float total = 0.0f;
  for (int c = 0; c * 256 < n_pos; ++c) {
    float lane[32];
    for (int l = 0; l < 32; ++l) {
      float acc = 0.0f;
      for (int i = 0; i < 8; ++i) {
        const int t = c * 256 + l + 32 * i;
        if (t < n_pos) acc = acc + value(t);
      }
      lane[l] = acc;
    }
    for (int s = 16; s >= 1; s /= 2)
      for (int l = 0; l < s; ++l) lane[l] = lane[l] + lane[l + s];
    total = total + lane[0];
  }
  return total;
}

}  // namespace

void attention_head(const float* q, const uint16_t* k, const uint16_t* v, int n_pos, int head_dim,
                    int row_stride, float kq_scale, float* scratch, float* out) {
  // Scores 8 positions at a time (dot_tree_tail8), the rest one by one.
  int t = 0;
  for (; t + 8 <= n_pos; t += 8) {
    __m256 s8[8];
    for (int p = 0; p < 8; ++p)
      s8[p] = dot_head_s8(q, k + static_cast<size_t>(t + p) * row_stride, head_dim);
    _mm256_storeu_ps(scratch + t, _mm256_mul_ps(dot_tree_tail8(s8), _mm256_set1_ps(kq_scale)));
  }
  for (; t < n_pos; ++t)
    scratch[t] = dot_head_inline(q, k + static_cast<size_t>(t) * row_stride, head_dim) * kq_scale;
  // The max in position order, as the scalar spec (a max is exact; the order only matters for
  // the sign of a zero maximum, and kept as is it cannot differ).
  float m = -INFINITY;
  for (t = 0; t < n_pos; ++t) m = scratch[t] > m ? scratch[t] : m;
  for (t = 0; t < n_pos; ++t) scratch[t] = scratch[t] - m;
  exp_canonical_n(scratch, scratch, n_pos);
  const float denom = possum(n_pos, [&](int t) { return scratch[t]; });

  // possum of e_t * v_{t,d} for every d at once: the spec's per-d order (lane l of chunk c sums
  // t = 256c + l + 32i in i order from 0.0f, tree over lanes, chunks in order) with d across
  // the vector lanes. head_dim <= 256 (checked at model load).
  constexpr int kMaxHeadDim = 256;
  alignas(32) float lanes[32][kMaxHeadDim];
  alignas(32) float total[kMaxHeadDim];
  for (int d = 0; d < head_dim; ++d) total[d] = 0.0f;
  for (int c = 0; c * 256 < n_pos; ++c) {
    for (int l = 0; l < 32; ++l) {
      // Lane l's positions t = 256c + l + 32i (i < 8, t < n_pos), 32 dims at a time with the 4
      // accumulators in registers (the first version loaded and stored lanes[l] for every
      // position: 70% of attention_head in the pp512 profile).
      const int n_i = std::min(8, (n_pos - c * 256 - l + 31) / 32);
      for (int d0 = 0; d0 < head_dim; d0 += 32) {
        __m256 acc[4];
        for (auto& a : acc) a = _mm256_setzero_ps();
        for (int i = 0; i < n_i; ++i) {
          const int t = c * 256 + l + 32 * i;
          const __m256 e = _mm256_set1_ps(scratch[t]);
          const uint16_t* vt = v + static_cast<size_t>(t) * row_stride + d0;
          for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(e, load8(vt + 8 * k)));
        }
        for (int k = 0; k < 4; ++k) _mm256_store_ps(lanes[l] + d0 + 8 * k, acc[k]);
      }
    }
    for (int s = 16; s >= 1; s /= 2)
      for (int l = 0; l < s; ++l)
        for (int d = 0; d < head_dim; d += 8)
          _mm256_store_ps(lanes[l] + d, _mm256_add_ps(_mm256_load_ps(lanes[l] + d),
                                                      _mm256_load_ps(lanes[l + s] + d)));
    for (int d = 0; d < head_dim; d += 8)
      _mm256_store_ps(total + d,
                      _mm256_add_ps(_mm256_load_ps(total + d), _mm256_load_ps(lanes[0] + d)));
  }
  for (int d = 0; d < head_dim; ++d) out[d] = total[d] / denom;
}

void attention_head_reference(const float* q, const uint16_t* k, const uint16_t* v, int n_pos,
                              int head_dim, int row_stride, float kq_scale, float* scratch,
                              float* out) {
  float m = -INFINITY;
  for (int t = 0; t < n_pos; ++t) {
    scratch[t] =
        dot_head_reference(q, k + static_cast<size_t>(t) * row_stride, head_dim) * kq_scale;
    m = scratch[t] > m ? scratch[t] : m;
  }
  for (int t = 0; t < n_pos; ++t) scratch[t] = numerics::exp_canonical(scratch[t] - m);
  const float denom = possum(n_pos, [&](int t) { return scratch[t]; });
  for (int d = 0; d < head_dim; ++d) {
    const float acc = possum(n_pos, [&](int t) {
      return scratch[t] * half_to_float(v[static_cast<size_t>(t) * row_stride + d]);
    });
    out[d] = acc / denom;
  }
}

void exp_canonical_n(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_canonical8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = numerics::exp_canonical(x[i]);
}

void swiglu(const float* g, const float* u, float* h, int64_t n) {
  // silu(g) * u = (g / (1 + exp_canonical(-g))) * u, 8 lanes at a time (same operations and
  // operand order as numerics::silu_canonical; negation flips the sign bit exactly).
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp_canonical8(_mm256_xor_ps(gv, sign));
    const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) h[i] = numerics::silu_canonical(g[i]) * u[i];
}

void swiglu_reference(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = numerics::silu_canonical(g[i]) * u[i];
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + y[i];
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error("argmax over an empty vector");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

}  // namespace resident::cpu
