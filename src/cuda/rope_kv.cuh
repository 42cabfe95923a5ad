// RoPE on q and k, then K and V appended to the fp16 cache (docs/numerics.md "RoPE", "KV cache").
// The position comes from device memory, so the decode graph needs no host input.
// CPU twins: cpu::rope_apply, cpu::float_to_half.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace resident::cuda {

struct RopeKvArgs {
  float* q = nullptr;        // (n_tokens, n_heads * head_dim), rotated in place
  float* k = nullptr;        // (n_tokens, n_kv_heads * head_dim), rotated in place
  const float* v = nullptr;  // (n_tokens, n_kv_heads * head_dim)
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  bool neox = true;              // pairs (i, i + head_dim/2); else (2i, 2i+1)
  const float* table = nullptr;  // cpu::rope_table layout, n_ctx positions, on the device
  const int* pos = nullptr;      // device: position of token 0; token t is at *pos + t
  int n_tokens = 1;
  uint16_t* k_cache = nullptr;  // (n_ctx, n_kv_heads * head_dim) fp16 bits of this layer
  uint16_t* v_cache = nullptr;
  int n_ctx = 0;  // positions >= n_ctx are not written (the host refuses them)
};

void rope_kv_write(const RopeKvArgs& args, cudaStream_t stream);

}  // namespace resident::cuda
