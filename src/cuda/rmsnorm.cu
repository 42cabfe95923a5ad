#include <string>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "cuda/quantize_warp.cuh"
#include "cuda/rmsnorm.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kMaxFusedN = 12288;  // 48 KB of floats: the default dynamic shared memory limit

// 256 threads = the 256 partials of sum256: thread k sums x_k^2, x_{k+256}^2, ... from 0.0f,
// then the tree s = 128 .. 1 in shared memory.
// With yq set, y is also kept in (dynamic) shared memory and, after a barrier, thread b quantizes
// block b of 32 with the shared numerics::quantize_act_block: the same floats as a separate
// quantize_activations pass, one launch fewer.
__global__ void __launch_bounds__(256)
    rmsnorm_kernel(const float* x, const float* __restrict__ w, float eps, int n, float* y,
                   numerics::ActBlock* yq) {
  __shared__ float partial[256];
  extern __shared__ float y_s[];  // n floats when yq is set
  pdl_trigger();
  pdl_wait();
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
  if (!yq) {
    for (int i = k; i < n; i += 256) yr[i] = (xr[i] * r) * w[i];
    return;
  }
  for (int i = k; i < n; i += 256) {
    const float v = (xr[i] * r) * w[i];
    yr[i] = v;
    y_s[i] = v;
  }
  __syncthreads();
  const int nb = n / numerics::kActBlock;
  for (int b = k; b < nb; b += 256)
    numerics::quantize_act_block(y_s + b * numerics::kActBlock,
                                 yq + static_cast<int64_t>(blockIdx.x) * nb + b);
}

// The same bits as rmsnorm_kernel with yq set, for n <= 256 * kPerThread, with fewer serial
// steps (the decode step runs it twice per layer; timing probes gave 3.9 us per launch):
//  * x and w are read once, into registers: thread k holds elements k + 256 e;
//  * the sum256 tree keeps its pairs: levels 128, 64, 32 in shared memory, then 16 .. 1 as
//    shuffles inside warp 0 (lane k adds lane k + s, exactly partial[k] + partial[k + s]);
//  * block b of 32 is element k + 256 e of the lanes of warp b % 8 with e = b / 8, so each warp
//    quantizes its blocks with one lane per element (quantize_warp.cuh).
constexpr int kPerThread = 16;
constexpr unsigned kFull = 0xffffffffu;  // the sum tree's shuffles

__global__ void __launch_bounds__(256)
    rmsnorm_quant_regs_kernel(const float* x, const float* __restrict__ w, float eps, int n,
                              float* y, numerics::ActBlock* yq) {
  __shared__ float partial[128];
  __shared__ float scale;
  pdl_trigger();
  pdl_wait();
  const int k = threadIdx.x, lane = k % 32, warp = k / 32;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float xv[kPerThread], wv[kPerThread];
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    const int i = k + 256 * e;
    xv[e] = i < n ? xr[i] : 0.0f;
    wv[e] = i < n ? w[i] : 0.0f;
  }
  float p = 0.0f;
#pragma unroll
  for (int e = 0; e < kPerThread; ++e)
    if (k + 256 * e < n) p = p + xv[e] * xv[e];
  if (k >= 128) partial[k - 128] = p;
  __syncthreads();
  if (k < 128) partial[k] = p + partial[k];  // level 128
  __syncthreads();
  if (k < 64) partial[k] = partial[k] + partial[k + 64];
  __syncthreads();
  if (k < 32) {
    float v = partial[k] + partial[k + 32];
    for (int s = 16; s >= 1; s /= 2) v = v + __shfl_down_sync(kFull, v, s);
    if (k == 0) scale = 1.0f / sqrtf(v / static_cast<float>(n) + eps);
  }
  __syncthreads();
  const float r = scale;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  numerics::ActBlock* qr = yq + static_cast<int64_t>(blockIdx.x) * (n / numerics::kActBlock);
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    if (256 * e + 32 * warp >= n) break;  // uniform across the warp: n % 32 == 0
    const float v = (xv[e] * r) * wv[e];
    yr[k + 256 * e] = v;
    quantize_act_block_warp(v, lane, qr + 8 * e + warp);
  }
}

}  // namespace

void rmsnorm(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
             cudaStream_t stream) {
  if (!x || !w || !y) throw Error("cuda rmsnorm: null pointer");
  if (n < 1 || n_tokens < 1)
    throw Error("cuda rmsnorm: n = " + std::to_string(n) +
                ", n_tokens = " + std::to_string(n_tokens));
  rmsnorm_kernel<<<n_tokens, 256, 0, stream>>>(x, w, eps, n, y, nullptr);
  CUDA_CHECK_LAUNCH();
}

bool rmsnorm_quant_fits(int n) {
  return n >= numerics::kActBlock && n % numerics::kActBlock == 0 && n <= kMaxFusedN;
}

void rmsnorm_quant(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
                   numerics::ActBlock* yq, cudaStream_t stream) {
  if (!x || !w || !y || !yq) throw Error("cuda rmsnorm_quant: null pointer");
  if (n_tokens < 1 || !rmsnorm_quant_fits(n))
    throw Error("cuda rmsnorm_quant: n = " + std::to_string(n) +
                " must be a multiple of 32 up to " + std::to_string(kMaxFusedN) +
                ", n_tokens = " + std::to_string(n_tokens));
  if (n <= 256 * kPerThread)
    return launch_pdl(rmsnorm_quant_regs_kernel, dim3(n_tokens), dim3(256), 0, stream, x, w, eps, n,
                      y, yq);
  launch_pdl(rmsnorm_kernel, dim3(n_tokens), dim3(256), n * sizeof(float), stream, x, w, eps, n, y,
             yq);
}

}  // namespace resident::cuda
