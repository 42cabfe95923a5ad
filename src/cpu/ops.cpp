#include "cpu/ops.h"

#include <immintrin.h>

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

float dot_head(const float* q, const uint16_t* k, int head_dim) {
  // The 32 lane partials of the spec live in four 8-wide vectors (lanes 8j..8j+7 in acc[j]);
  // element d = 32c + l goes to lane l. Products are rounded, then added (no fused multiply-add).
  __m256 acc[4];
  for (int j = 0; j < 4; ++j) {
    const __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 8 * j)));
    acc[j] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * j), kv);
  }
  for (int c = 32; c < head_dim; c += 32) {
    for (int j = 0; j < 4; ++j) {
      const __m256 kv =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + c + 8 * j)));
      acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(_mm256_loadu_ps(q + c + 8 * j), kv));
    }
  }
  // Tree s = 16, 8 (whole vectors), then 4, 2, 1 inside the vector.
  const __m256 s16a = _mm256_add_ps(acc[0], acc[2]);
  const __m256 s16b = _mm256_add_ps(acc[1], acc[3]);
  const __m256 s8 = _mm256_add_ps(s16a, s16b);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
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
  float m = -INFINITY;
  for (int t = 0; t < n_pos; ++t) {
    scratch[t] = dot_head(q, k + static_cast<size_t>(t) * row_stride, head_dim) * kq_scale;
    m = scratch[t] > m ? scratch[t] : m;
  }
  for (int t = 0; t < n_pos; ++t) scratch[t] = numerics::exp_canonical(scratch[t] - m);
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
      float* acc = lanes[l];
      for (int d = 0; d < head_dim; d += 8) _mm256_store_ps(acc + d, _mm256_setzero_ps());
      for (int i = 0; i < 8; ++i) {
        const int t = c * 256 + l + 32 * i;
        if (t >= n_pos) break;
        const __m256 e = _mm256_set1_ps(scratch[t]);
        const uint16_t* vt = v + static_cast<size_t>(t) * row_stride;
        for (int d = 0; d < head_dim; d += 8) {
          const __m256 vv =
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(vt + d)));
          _mm256_store_ps(acc + d, _mm256_add_ps(_mm256_load_ps(acc + d), _mm256_mul_ps(e, vv)));
        }
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

void swiglu(const float* g, const float* u, float* h, int64_t n) {
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
