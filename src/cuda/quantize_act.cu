#include "cuda/cuda_check.h"
#include "cuda/quantize_act.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

// One thread per block of 32: the shared numerics::quantize_act_block is the whole spec.
__global__ void quantize_act_kernel(const float* __restrict__ x,
                                    numerics::ActBlock* __restrict__ out, int64_t n_blocks) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= n_blocks) return;
  numerics::quantize_act_block(x + b * numerics::kActBlock, out + b);
}

}  // namespace

void quantize_activations(const float* x, numerics::ActBlock* out, int64_t n, int n_tokens,
                          cudaStream_t stream) {
  if (n <= 0 || n % numerics::kActBlock != 0)
    throw Error("cuda quantize_activations: n = " + std::to_string(n) +
                " is not a positive multiple of 32");
  if (n_tokens < 1) throw Error("cuda quantize_activations: n_tokens < 1");
  // Rows are contiguous, so (n_tokens, n) is just n_tokens * n / 32 consecutive blocks.
  const int64_t n_blocks = n / numerics::kActBlock * n_tokens;
  constexpr int kThreads = 128;
  const unsigned grid = static_cast<unsigned>((n_blocks + kThreads - 1) / kThreads);
  quantize_act_kernel<<<grid, kThreads, 0, stream>>>(x, out, n_blocks);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
