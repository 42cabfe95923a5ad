// The CUDA forward pass (forward.cu): the same sequence of named ops as the CPU backend's
// `forward` (src/cpu/cpu_backend.cpp), each a kernel from this folder. Device pointers only; the
// caller (cuda_backend.cu) owns the memory and the stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/attention.cuh"
#include "model/model.h"
#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::cuda {

struct DeviceTensor {
  quant::Type type = quant::Type::F32;
  const void* data = nullptr;  // inside the weight arena; null when absent
  int64_t rows = 0, row_length = 0;
  const float* f32() const { return static_cast<const float*>(data); }
};

struct DeviceLayer {
  DeviceTensor attn_norm, wq, wk, wv, bq, bk, bv, wo, ffn_norm, w_gate, w_up, w_down;
};

struct DeviceModel {
  ModelConfig cfg;
  DeviceTensor token_embd;
  std::vector<DeviceLayer> layers;
  DeviceTensor output_norm, output;
  const float* rope_table = nullptr;  // (n_ctx, head_dim / 2, 2), uploaded once at load
};

struct KvCache {
  uint16_t* k = nullptr;  // (n_layers, n_ctx, kv_dim) fp16 bits
  uint16_t* v = nullptr;
  int n_ctx = 0;
};

// Activations for up to max_tokens tokens at once.
struct Workspace {
  int max_tokens = 0;
  float* x = nullptr;                // (max_tokens, d_model) residual stream
  float* h = nullptr;                // (max_tokens, d_model) normed
  float* q = nullptr;                // (max_tokens, q_dim)
  float* k = nullptr;                // (max_tokens, kv_dim)
  float* v = nullptr;                // (max_tokens, kv_dim)
  float* attn = nullptr;             // (max_tokens, q_dim)
  float* gate = nullptr;             // (max_tokens, d_ff), then swiglu in place
  float* up = nullptr;               // (max_tokens, d_ff)
  float* logits = nullptr;           // (rows of one forward_head pass, vocab)
  numerics::ActBlock* xq = nullptr;  // (max_tokens, max(d_model, q_dim, d_ff) / 32)
  AttentionScratch attn_scratch;
  unsigned* attn_counters = nullptr;  // attention_decode_counters(n_heads), zero between launches
  // Prefill only: a second stream and two events, so that the small k and v matmuls run beside
  // the q matmul (each alone fills a fraction of the GPU). Null: everything on one stream.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};

// Runs every layer for the n_tokens ids at `ids` (device), token t at position *pos + t
// (device), appending their K/V. The final residual stream is left in ws.x. `max_positions` is a
// host-side bound on *pos + n_tokens that sizes the attention grid (n_ctx inside the graph).
void forward_layers(const DeviceModel& m, const KvCache& kv, const Workspace& ws,
                    const int32_t* ids, const int* pos, int n_tokens, int max_positions,
                    cudaStream_t stream);

// Output norm and LM head for rows [first, first + n_out) of ws.x: logits in ws.logits (n_out,
// vocab).
void forward_head(const DeviceModel& m, const Workspace& ws, int first, int n_out,
                  cudaStream_t stream);

}  // namespace resident::cuda
