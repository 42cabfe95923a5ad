#include "cuda/cuda_check.h"
#include "cuda/elementwise.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quantize_warp.cuh"
#include "numerics/canonical.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__global__ void swiglu_kernel(const float* g, const float* u, float* h, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) h[i] = numerics::silu_canonical(g[i]) * u[i];
}

// One thread per element; warp w of a block quantizes its own 32 elements, one activation block
// (quantize_warp.cuh), so no shared memory and no serial per-block loop (that loop, one thread
// per block of 32, made the 512-token prefill's swiglu 46 us per layer).
__global__ void __launch_bounds__(kThreads)
    swiglu_quant_kernel(const float* g, const float* u, float* h, numerics::ActBlock* hq,
                        int64_t n) {
  pdl_trigger();
  pdl_wait();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i - threadIdx.x % 32 >= n) return;  // whole warps: n % 32 == 0
  const float v = numerics::silu_canonical(g[i]) * u[i];
  h[i] = v;
  quantize_act_block_warp(v, threadIdx.x % 32, hq + i / numerics::kActBlock);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = x[i] + y[i];
}

__global__ void add_bias_kernel(float* y, const float* __restrict__ b, int n, int64_t total) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) y[i] = y[i] + b[i % n];
}

}  // namespace

void swiglu(const float* g, const float* u, float* h, int64_t n, cudaStream_t stream) {
  if (!g || !u || !h || n < 1) throw Error("cuda swiglu: null pointer or empty");
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, u, h, n);
  CUDA_CHECK_LAUNCH();
}

void swiglu_quant(const float* g, const float* u, float* h, numerics::ActBlock* hq, int64_t n,
                  cudaStream_t stream) {
  if (!g || !u || !h || !hq || n < 1 || n % numerics::kActBlock != 0)
    throw Error("cuda swiglu_quant: null pointer or n not a positive multiple of 32");
  launch_pdl(swiglu_quant_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, g, u, h, hq, n);
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (!x || !y || n < 1) throw Error("cuda add_inplace: null pointer or empty");
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  CUDA_CHECK_LAUNCH();
}

void add_bias(float* y, const float* b, int n, int n_tokens, cudaStream_t stream) {
  if (!y || !b || n < 1 || n_tokens < 1) throw Error("cuda add_bias: null pointer or empty");
  const int64_t total = static_cast<int64_t>(n) * n_tokens;
  add_bias_kernel<<<grid_for(total), kThreads, 0, stream>>>(y, b, n, total);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
