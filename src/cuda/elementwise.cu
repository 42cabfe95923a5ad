#include "cuda/cuda_check.h"
#include "cuda/elementwise.cuh"
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
