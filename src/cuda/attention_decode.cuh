// The attention block of one decode token (n_tokens == 1) in ONE launch: RoPE of q and k, the
// K/V append to the fp16 cache and the attention over positions 0..p, bit-identical to
// rope_kv_write followed by attention() (docs/numerics.md "RoPE", "KV cache", "Attention"); the
// four launches it replaces cost ~3-5 us of latency each. Design: attention_decode.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/attention.cuh"
#include "numerics/canonical.h"

namespace resident::cuda {

struct AttentionDecodeArgs {
  // The token's projections, NOT rotated (read only: unlike rope_kv_write, q and k are left as
  // they are; the rotated values exist only inside the kernel and, for k, in the cache).
  const float* q = nullptr;  // (n_heads * head_dim)
  const float* k = nullptr;  // (n_kv_heads * head_dim)
  const float* v = nullptr;  // (n_kv_heads * head_dim)
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, kv_stride = 0;
  bool neox = true;                   // pairs (i, i + head_dim/2); else (2i, 2i+1)
  const float* rope_table = nullptr;  // cpu::rope_table layout, n_ctx positions, on the device
  const int* pos = nullptr;           // device: the token's position p; it sees p + 1 positions
  uint16_t* k_cache = nullptr;        // (n_ctx, kv_stride) fp16 bits; row p is written
  uint16_t* v_cache = nullptr;
  int n_ctx = 0;  // rows of the cache and the rope table
  float kq_scale = 0.0f;
  int max_positions = 0;                // host-side upper bound of p + 1 (sizes the grid), <= n_ctx
  float* out = nullptr;                 // (n_heads * head_dim)
  numerics::ActBlock* out_q = nullptr;  // optional: out quantized for the output projection
};

// Shapes the kernel takes (head_dim 64 or 128, 8-element aligned cache rows); others keep the
// rope_kv_write + attention path.
bool attention_decode_supported(int n_heads, int n_kv_heads, int head_dim, int kv_stride);

// Entries of the `counters` buffer: allocate this many unsigned ints, zero them ONCE at
// allocation; every launch leaves them zero again (so graph replays need no reset node). One
// buffer may serve every layer (the launches of one stream never overlap on it).
int attention_decode_counters(int n_heads);

// Uses chunk_max, chunk_den and chunk_val of `scratch` (token 0's slice; scores is not used).
void attention_decode(const AttentionDecodeArgs& args, const AttentionScratch& scratch,
                      unsigned* counters, cudaStream_t stream);

}  // namespace resident::cuda
