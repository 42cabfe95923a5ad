// Prefill attention passes 1 (scores and per-slot maxima) and 2 (per-chunk sums) as exact
// register-tiled products (attention_prefill.cu); attention() runs them, then its combine pass.
// Same bits as the per-(chunk, head, token) passes of attention.cu and the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/attention.cuh"

namespace resident::cuda {

inline constexpr int kAttnSlot = 64;  // positions per row maximum written by pass 1

inline int attention_slots(int n_ctx) {
  return (n_ctx + kAttnSlot - 1) / kAttnSlot;
}

struct AttentionPrefillArgs {
  const float* q = nullptr;  // (n_tokens, n_heads * head_dim), 16-byte aligned
  const uint16_t* k_cache = nullptr;
  const uint16_t* v_cache = nullptr;
  const int* pos = nullptr;  // device: token t sits at *pos + t
  int n_tokens = 0, max_positions = 0;
  int n_heads = 0, n_kv_heads = 0, group = 0, head_dim = 0, kv_stride = 0;
  float kq_scale = 0.0f;
  // Scratch (AttentionScratch): scores (tokens, heads, n_ctx); slot_max (tokens, heads, n_slots)
  // in the chunk_max array; chunk_den (tokens, heads, n_chunks); chunk_val (.., head_dim).
  int n_ctx = 0, n_slots = 0, n_chunks = 0;
  float* scores = nullptr;
  float* slot_max = nullptr;
  float* chunk_den = nullptr;
  float* chunk_val = nullptr;
};

// head_dim 64 or 128, K/V rows and q 16-byte aligned.
bool attention_prefill_supported(int head_dim, int kv_stride, const void* k_cache,
                                 const void* v_cache, const void* q);

// Launches passes 1 and 2 (with PDL) on `stream`; the caller has checked the shapes.
void attention_prefill_passes(const AttentionPrefillArgs& args, cudaStream_t stream);

}  // namespace resident::cuda
