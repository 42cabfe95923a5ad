#include <algorithm>
#include <cstdlib>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/legacy_switch.h"
#include "cuda/pdl.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rmsnorm_block.cuh"
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

// The same bits as rmsnorm_kernel with yq set, for n <= kNormMaxN (4096), with fewer serial
// steps (the decode step ran it twice per layer; timing probes gave 3.9 us per launch): x and w
// are read once, into registers, and rmsnorm_block.cuh does the rest (the sum tree's levels
// below 32 as shuffles, each block of 32 quantized by one warp).
// Grid: n_tokens x n_parts blocks; block (row, part) writes its part of the row
// (rmsnorm_quant_block).
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_quant_regs_kernel(const float* x, const float* __restrict__ w, float eps, int n,
                              float* y, numerics::ActBlock* yq, bool early_w, int n_parts) {
  __shared__ NormTree tree;
  pdl_trigger();
  // w is a weight (never written): read before the wait, so that its DRAM latency overlaps the
  // previous kernel instead of following it. RESIDENT_CUDA_LEGACY=normw: after (A/B runs).
  float xv[kNormPerThread], wv[kNormPerThread];
  if (early_w) norm_load(w, n, wv);
  pdl_wait();
  const int64_t row = blockIdx.x / n_parts;
  const int part = static_cast<int>(blockIdx.x % n_parts);
  norm_load(x + row * n, n, xv);
  if (!early_w) norm_load(w, n, wv);
  rmsnorm_quant_block(xv, wv, eps, n, tree, y + row * n, yq + row * (n / numerics::kActBlock), part,
                      n_parts);
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

// Thread blocks per row for rmsnorm_quant's default: RESIDENT_NORM_PARTS (1 to 16), else 1.
int default_norm_parts() {
  static const int parts = [] {
    const char* v = std::getenv("RESIDENT_NORM_PARTS");
    return v && *v ? std::clamp(std::atoi(v), 1, kNormPerThread) : 1;
  }();
  return parts;
}

void rmsnorm_quant(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
                   numerics::ActBlock* yq, cudaStream_t stream, int parts) {
  if (!x || !w || !y || !yq) throw Error("cuda rmsnorm_quant: null pointer");
  if (n_tokens < 1 || !rmsnorm_quant_fits(n))
    throw Error("cuda rmsnorm_quant: n = " + std::to_string(n) +
                " must be a multiple of 32 up to " + std::to_string(kMaxFusedN) +
                ", n_tokens = " + std::to_string(n_tokens));
  static const bool late_w = use_legacy("normw");
  if (parts < 1) parts = default_norm_parts();
  // Several blocks per row read x while others write y: not when they alias.
  if (y == x) parts = 1;
  parts = std::min(parts, kNormPerThread);
  if (n <= kNormMaxN)
    return launch_pdl(rmsnorm_quant_regs_kernel, dim3(n_tokens * parts), dim3(kNormThreads), 0,
                      stream, x, w, eps, n, y, yq, !late_w, parts);
  launch_pdl(rmsnorm_kernel, dim3(n_tokens), dim3(256), n * sizeof(float), stream, x, w, eps, n, y,
             yq);
}

}  // namespace resident::cuda
