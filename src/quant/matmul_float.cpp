// AVX2 kernels for float weights (F32, F16, BF16) against float activations.
//
// Canonical partial of block j (docs/numerics.md): p = w_0 * x_0, then p = fmaf(w_i, x_i, p) for
// i = 1..31; dot = ((0 + p_0) + p_1) + ... Here a lane is a row: 8 rows' weights are transposed
// so that one vector holds element i of 8 rows, and vfmadd231ps advances 8 rows' chains at once.
// Four blocks' chains run interleaved (they are independent until the sequential sum), which
// hides the fma latency even for a single token.
#include <immintrin.h>

#include <algorithm>

#include "quant/matmul_kernels.h"

namespace resident::quant::detail {

namespace {

constexpr int kRows = 8;
constexpr int kBlocksInFlight = 4;
constexpr int kTokenTile = 16;

inline void transpose8(__m256* v) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]);
  const __m256 t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]);
  const __m256 t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]);
  const __m256 t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]);
  const __m256 t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// 8 consecutive weights starting at element i of a row, as floats (exact conversions).
struct LoadF32 {
  static __m256 load(const uint8_t* row, int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
};
struct LoadF16 {
  static __m256 load(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
};
struct LoadBF16 {
  static __m256 load(const uint8_t* row, int64_t i) {
    const __m256i h =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
};

template <class L>
void run(const uint8_t* w, size_t row_bytes, int64_t n, const float* xf, int n_tokens, float* out,
         int64_t out_stride, int64_t row_begin, int64_t row_end) {
  const int64_t nb = n / 32;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, row_end - r0));
    const uint8_t* rows[kRows];
    // Missing rows of the last group repeat the last real row (computed, never stored).
    for (int r = 0; r < kRows; ++r) {
      rows[r] = w + static_cast<size_t>(r0 + std::min(r, nr - 1)) * row_bytes;
    }
    for (int t0 = 0; t0 < n_tokens; t0 += kTokenTile) {
      const int nt = std::min(kTokenTile, n_tokens - t0);
      __m256 sum[kTokenTile];  // lane r: running sum of row r0 + r
      for (int t = 0; t < nt; ++t) sum[t] = _mm256_setzero_ps();
      for (int64_t j0 = 0; j0 < nb; j0 += kBlocksInFlight) {
        const int nj = static_cast<int>(std::min<int64_t>(kBlocksInFlight, nb - j0));
        // wt[b][i]: element i of block j0 + b for the 8 rows (lane = row), transposed once and
        // used by every token of the tile.
        __m256 wt[kBlocksInFlight][32];
        for (int b = 0; b < nj; ++b) {
          for (int c = 0; c < 4; ++c) {
            __m256* v = &wt[b][8 * c];
            for (int r = 0; r < kRows; ++r) v[r] = L::load(rows[r], 32 * (j0 + b) + 8 * c);
            transpose8(v);
          }
        }
        for (int t = 0; t < nt; ++t) {
          const float* x = xf + static_cast<int64_t>(t0 + t) * n + 32 * j0;
          __m256 p[kBlocksInFlight];
          for (int b = 0; b < nj; ++b)
            p[b] = _mm256_mul_ps(wt[b][0], _mm256_broadcast_ss(x + 32 * b));
          for (int i = 1; i < 32; ++i) {
            for (int b = 0; b < nj; ++b) {
              p[b] = _mm256_fmadd_ps(wt[b][i], _mm256_broadcast_ss(x + 32 * b + i), p[b]);
            }
          }
          for (int b = 0; b < nj; ++b) sum[t] = _mm256_add_ps(sum[t], p[b]);
        }
      }
      for (int t = 0; t < nt; ++t) {
        alignas(32) float s[kRows];
        _mm256_store_ps(s, sum[t]);
        for (int r = 0; r < nr; ++r) out[(t0 + t) * out_stride + r0 + r] = s[r];
      }
    }
  }
}

}  // namespace

void matmul_float(Type type, const uint8_t* w, size_t row_bytes, int64_t n, const float* xf,
                  int n_tokens, float* out, int64_t out_stride, int64_t row_begin,
                  int64_t row_end) {
  switch (type) {
    case Type::F32:
      return run<LoadF32>(w, row_bytes, n, xf, n_tokens, out, out_stride, row_begin, row_end);
    case Type::F16:
      return run<LoadF16>(w, row_bytes, n, xf, n_tokens, out, out_stride, row_begin, row_end);
    case Type::BF16:
      return run<LoadBF16>(w, row_bytes, n, xf, n_tokens, out, out_stride, row_begin, row_end);
    default:
      return;  // quantized types go to matmul_int8 (checked by the caller)
  }
}

}  // namespace resident::quant::detail
