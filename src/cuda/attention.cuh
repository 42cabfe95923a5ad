// Attention of each query head over the cached positions 0..p (docs/numerics.md "Attention"):
// scores by dot128, exact max, exp_canonical, then the chunked possum for the denominator and
// for every output dimension. The number of positions is read from device memory, so the decode
// graph replays it unchanged as the sequence grows. CPU twin: cpu::attention_head.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"

namespace resident::cuda {

inline constexpr int kAttnChunk = 256;  // positions per possum chunk (the spec's chunk)
inline constexpr int kAttnMaxHeadDim = 256;

// Scratch for up to `max_tokens` query tokens and `n_ctx` positions (bytes:
// attention_scratch_bytes).
struct AttentionScratch {
  float* scores = nullptr;     // (max_tokens, n_heads, n_ctx)
  float* chunk_max = nullptr;  // (max_tokens, n_heads, max(n_chunks, n_ctx / 64 rounded up))
  float* chunk_den = nullptr;  // (max_tokens, n_heads, n_chunks)
  float* chunk_val = nullptr;  // (max_tokens, n_heads, n_chunks, head_dim)
  int max_tokens = 0, n_heads = 0, n_ctx = 0, head_dim = 0;
};

inline int attention_chunks(int n_ctx) {
  return (n_ctx + kAttnChunk - 1) / kAttnChunk;
}

// Element counts of each scratch array, for allocation.
struct AttentionScratchSizes {
  int64_t scores, chunk_max, chunk_den, chunk_val;
};
AttentionScratchSizes attention_scratch_sizes(int max_tokens, int n_heads, int n_ctx, int head_dim);

struct AttentionArgs {
  const float* q = nullptr;           // (n_tokens, n_heads * head_dim)
  const uint16_t* k_cache = nullptr;  // (n_ctx, kv_stride) fp16 bits; head g at column g * head_dim
  const uint16_t* v_cache = nullptr;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, kv_stride = 0;
  float kq_scale = 0.0f;
  const int* pos =
      nullptr;  // device: query token t sits at *pos + t and sees *pos + t + 1 positions
  int n_tokens = 1;
  int max_positions = 0;  // host-side upper bound of *pos + n_tokens (sizes the grid), <= n_ctx
  float* out = nullptr;   // (n_tokens, n_heads * head_dim)
  // Optional: out quantized for the next matmul, (n_tokens, n_heads * head_dim / 32) blocks,
  // bit-identical to quantize_activations(out) (fused into the combine pass).
  numerics::ActBlock* out_q = nullptr;
  // Which prefill passes (attention.cu; same bits on every path; tests run each): -1 auto (the
  // register-tiled products of attention_prefill.cu where supported), 0 untiled, 1 tiled over
  // query tokens, 2 register-tiled products.
  int tile = -1;
};

void attention(const AttentionArgs& args, const AttentionScratch& scratch, cudaStream_t stream);

}  // namespace resident::cuda
