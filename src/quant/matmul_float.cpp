// AVX2 kernels for float weights (F32, F16, BF16) against float activations.
//
// Canonical partial of block j (docs/numerics.md): p = w_0 * x_0, then p = fmaf(w_i, x_i, p) for
// i = 1..31; dot = ((0 + p_0) + p_1) + ... Here a lane is a row: 8 rows' weights are transposed
// so that one vector holds element i of 8 rows, and vfmadd231ps advances 8 rows' chains at once.
// Four blocks' chains run interleaved (they are independent until the sequential sum), which
// hides the fma latency even for a single token.
#include <immintrin.h>

#include <algorithm>

#include "quant/avx2_transpose.h"
#include "quant/matmul_kernels.h"

namespace resident::quant::detail {

namespace {

constexpr int kRows = 8;
constexpr int kBlocksInFlight = 4;
constexpr int kTokenTile = 16;

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
            transpose8(v, v);
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
