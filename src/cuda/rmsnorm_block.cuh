// RMSNorm plus activation quantization of one row of n <= 4096 floats by one 256-thread block,
// from registers (docs/numerics.md: RMSNorm, sum256, activation quantization), as used by
// rmsnorm_quant_regs_kernel (rmsnorm.cu). (A copy of it in matvec_decode's prologue, so that
// each block norms the one decode token itself, measured slower: docs/perf.md, rounds 4 and 7.)
//  * thread k holds elements k + 256 e (e < 16) of x and w in registers;
//  * sum256: thread k sums x_{k+256e}^2 in e order from 0.0f (partial k), then the tree keeps its
//    pairs: levels 128, 64, 32 in shared memory, then 16 .. 1 as shuffles inside warp 0 (lane k
//    adds lane k + s, exactly partial[k] + partial[k + s]);
//  * block b of 32 is element k + 256 e of the lanes of warp b % 8 with e = b / 8, so each warp
//    quantizes its blocks with one lane per element (quantize_warp.cuh).
#pragma once

#include "cuda/quantize_warp.cuh"
#include "numerics/canonical.h"

namespace resident::cuda {

inline constexpr int kNormThreads = 256;   // = the 256 partials of sum256
inline constexpr int kNormPerThread = 16;  // elements per thread
inline constexpr int kNormMaxN = kNormThreads * kNormPerThread;

// The sum tree's shared memory (levels 128, 64, 32) and the scale r.
struct NormTree {
  float partial[128];
  float scale;
};

// v[e] = src[k + 256 e] for thread k (0.0f past n).
__device__ __forceinline__ void norm_load(const float* src, int n, float (&v)[kNormPerThread]) {
  const int k = threadIdx.x;
#pragma unroll
  for (int e = 0; e < kNormPerThread; ++e) {
    const int i = k + kNormThreads * e;
    v[e] = i < n ? src[i] : 0.0f;
  }
}

// Called by all 256 threads of the block (it has barriers), with xv and wv from norm_load of x and
// w; n % 32 == 0, n <= kNormMaxN. Writes y_i = (x_i * r) * w_i to y[i] unless y is null, and
// block b of y quantized to q[b] (global or shared memory). `tree` is free on entry; on return
// every thread has read the scale, and the tree is not touched again.
// With n_parts > 1, several thread blocks share the row: each computes the whole sum (the same
// bits) and writes only the elements k + 256 e with e % n_parts == part (whole blocks of 32).
__device__ __forceinline__ void rmsnorm_quant_block(const float (&xv)[kNormPerThread],
                                                    const float (&wv)[kNormPerThread], float eps,
                                                    int n, NormTree& tree, float* y,
                                                    numerics::ActBlock* q, int part = 0,
                                                    int n_parts = 1) {
  constexpr unsigned kFull = 0xffffffffu;  // the sum tree's shuffles
  const int k = threadIdx.x, lane = k % 32, warp = k / 32;
  float p = 0.0f;
#pragma unroll
  for (int e = 0; e < kNormPerThread; ++e)
    if (k + kNormThreads * e < n) p = p + xv[e] * xv[e];
  if (k >= 128) tree.partial[k - 128] = p;
  __syncthreads();
  if (k < 128) tree.partial[k] = p + tree.partial[k];  // level 128
  __syncthreads();
  if (k < 64) tree.partial[k] = tree.partial[k] + tree.partial[k + 64];
  __syncthreads();
  if (k < 32) {
    float v = tree.partial[k] + tree.partial[k + 32];
    for (int s = 16; s >= 1; s /= 2) v = v + __shfl_down_sync(kFull, v, s);
    if (k == 0) tree.scale = 1.0f / sqrtf(v / static_cast<float>(n) + eps);
  }
  __syncthreads();
  const float r = tree.scale;
#pragma unroll
  for (int e = 0; e < kNormPerThread; ++e) {
    if (kNormThreads * e + 32 * warp >= n) break;  // uniform across the warp: n % 32 == 0
    if (e % n_parts != part) continue;             // uniform across the block
    const float v = (xv[e] * r) * wv[e];
    if (y) y[k + kNormThreads * e] = v;
    quantize_act_block_warp(v, lane, q + 8 * e + warp);
  }
}

}  // namespace resident::cuda
