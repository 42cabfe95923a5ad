// The CPU backend: the executable spec of the model. Its forward pass (cpu_backend.cpp,
// `forward`) reads top to bottom; every op follows docs/numerics.md so the CUDA backend can
// match it bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cpu/thread_pool.h"
#include "engine/backend.h"
#include "model/model.h"
#include "numerics/canonical.h"
#include "quant/packed_activations.h"

namespace resident::cpu {

// Called with (name, layer, values) after each named step when set: lets CPU and CUDA be diffed
// layer by layer when parity breaks (STYLE.md 7). Layer is -1 outside the layer loop.
using ActivationHook = std::function<void(const char* name, int layer, std::span<const float>)>;

class CpuBackend : public Backend {
 public:
  CpuBackend(const Model& model, int n_ctx, int n_threads);

  BackendInfo info() const override;
  int n_ctx() const override { return n_ctx_; }
  void reset(const SamplerParams& params) override;
  int32_t prefill(std::span<const int32_t> tokens) override;
  int32_t decode() override;
  int position() const override { return pos_; }
  std::vector<float> logits(std::span<const int32_t> tokens) override;

  MemoryReport memory_report() const override;

  void set_activation_hook(ActivationHook hook) { hook_ = std::move(hook); }

  // Bytes of KV cache (fp16 K and V for every layer and position).
  uint64_t kv_cache_bytes() const;

 private:
  // Evaluates tokens at positions [pos_, pos_ + n), appends their K/V, and writes the logits of
  // the last position (or of every position when all_logits) to logits_.
  void forward(std::span<const int32_t> tokens, bool all_logits);

  // out[t * rows + r] = W[r] . x_t for the n_tokens activations in x (row-major, n x W.row_length).
  // same_input: x is the input of the previous matmul, unchanged, so its int8 blocks (if that
  // call made them) are reused instead of quantized again (q/k/v share h, so do gate/up).
  void matmul(const Tensor& w, const float* x, int n_tokens, float* out, bool same_input = false);
  void embed(int32_t token, float* out) const;
  void hook(const char* name, int layer, const float* v, size_t n) const;
  int32_t sample_next();

  const Model& model_;
  const ModelConfig& cfg_;
  int n_ctx_;
  ThreadPool pool_;
  std::vector<float> rope_table_;
  std::vector<uint16_t> k_cache_;  // (n_layers, n_ctx, kv_dim) fp16
  std::vector<uint16_t> v_cache_;  // (n_layers, n_ctx, kv_dim) fp16
  int pos_ = 0;

  // Workspace, sized for the largest batch seen so far.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_, logits_;
  std::vector<numerics::ActBlock> xq_;
  bool xq_ready_ = false;            // xq_ holds the blocks of the last matmul's input
  quant::PackedActivations packed_;  // xq_ packed for the batched (prefill) kernels
  bool packed_ready_ = false;        // packed_ holds xq_
  std::vector<float> scores_;

  SamplerParams sampler_params_;
  std::unique_ptr<Sampler> sampler_;
  std::vector<int32_t> history_;
  int32_t last_token_ = -1;
  ActivationHook hook_;
};

}  // namespace resident::cpu
