// One thread block of 1024 threads: each thread scans a strided slice keeping its first maximum
// (strictly greater replaces, so its lowest index wins a tie), then a tree over (value, index)
// pairs prefers the larger value and, on equal values, the lower index. The result is the
// sequential scan's answer for any input without NaN.
#include <cfloat>

#include "cuda/argmax.cuh"
#include "cuda/cuda_check.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ logits, int n, int32_t* token, int* pos, int advance) {
  float bv = -INFINITY;
  int bi = n;  // sentinel: loses every tie against a real index
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const float v = logits[i];
    if (better(v, i, bv, bi)) bv = v, bi = i;
  }
  for (int s = 16; s >= 1; s /= 2) {
    const float ov = __shfl_down_sync(0xffffffffu, bv, s);
    const int oi = __shfl_down_sync(0xffffffffu, bi, s);
    if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  __shared__ float wv[kThreads / 32];
  __shared__ int wi[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) wv[warp] = bv, wi[warp] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      if (better(wv[w], wi[w], bv, bi)) bv = wv[w], bi = wi[w];
    // All logits -inf (or n == 0 excluded by the launcher): fall back to id 0 like the CPU scan.
    *token = bi < n ? bi : 0;
    if (pos) *pos += advance;
  }
}

__global__ void advance_kernel(int* pos, int advance) {
  *pos += advance;
}

}  // namespace

void argmax(const float* logits, int n, int32_t* token, int* pos, int advance,
            cudaStream_t stream) {
  if (!logits || !token || n < 1) throw Error("cuda argmax: null pointer or empty vector");
  argmax_kernel<<<1, kThreads, 0, stream>>>(logits, n, token, pos, advance);
  CUDA_CHECK_LAUNCH();
}

void advance_position(int* pos, int advance, cudaStream_t stream) {
  if (!pos) throw Error("cuda advance_position: null pointer");
  advance_kernel<<<1, 1, 0, stream>>>(pos, advance);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
