#include <string>

#include "cuda/cuda_check.h"
#include "cuda/rmsnorm.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

// 256 threads = the 256 partials of sum256: thread k sums x_k^2, x_{k+256}^2, ... from 0.0f,
// then the tree s = 128 .. 1 in shared memory.
__global__ void __launch_bounds__(256)
    rmsnorm_kernel(const float* x, const float* __restrict__ w, float eps, int n, float* y) {
  __shared__ float partial[256];
  const int k = threadIdx.x;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  float p = 0.0f;
  for (int i = k; i < n; i += 256) p = p + xr[i] * xr[i];
  partial[k] = p;
  __syncthreads();
  for (int s = 128; s >= 1; s /= 2) {
    if (k < s) partial[k] = partial[k] + partial[k + s];
    __syncthreads();
  }
  const float r = 1.0f / sqrtf(partial[0] / static_cast<float>(n) + eps);
  for (int i = k; i < n; i += 256) yr[i] = (xr[i] * r) * w[i];
}

}  // namespace

void rmsnorm(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
             cudaStream_t stream) {
  if (!x || !w || !y) throw Error("cuda rmsnorm: null pointer");
  if (n < 1 || n_tokens < 1)
    throw Error("cuda rmsnorm: n = " + std::to_string(n) +
                ", n_tokens = " + std::to_string(n_tokens));
  rmsnorm_kernel<<<n_tokens, 256, 0, stream>>>(x, w, eps, n, y);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
