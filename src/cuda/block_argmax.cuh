// The argmax reduction shared by the greedy pick (argmax.cu) and the device sampler
// (sampler.cu): ties go to the lowest index, as in the CPU's sequential scan.
#pragma once

#include <cuda_runtime.h>

namespace resident::cuda {

// Whether (v, i) beats (bv, bi): the larger value, on equal values the lower index. A total order
// on pairs without NaN, so every reduction order gives the sequential scan's answer; a NaN value
// never beats anything (the scan skips it).
__device__ __forceinline__ bool argmax_better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

// Each thread's best pair in, the block's best out in thread 0. Every one of the kThreads threads
// must call it (it has a barrier); calling it again in the same kernel needs a barrier between the
// calls (the shared arrays are reused).
template <int kThreads>
__device__ __forceinline__ void block_best(float* bv, int* bi) {
  for (int s = 16; s >= 1; s /= 2) {
    const float ov = __shfl_down_sync(0xffffffffu, *bv, s);
    const int oi = __shfl_down_sync(0xffffffffu, *bi, s);
    if (argmax_better(ov, oi, *bv, *bi)) *bv = ov, *bi = oi;
  }
  __shared__ float wv[kThreads / 32];
  __shared__ int wi[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) wv[warp] = *bv, wi[warp] = *bi;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < kThreads / 32; ++w)
      if (argmax_better(wv[w], wi[w], *bv, *bi)) *bv = wv[w], *bi = wi[w];
}

}  // namespace resident::cuda
