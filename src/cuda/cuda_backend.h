// The CUDA backend: weights resident in one device arena (uploaded once), fp16 KV cache and
// workspace allocated at load, a decode step captured once as a CUDA graph that reads the token
// id and position from device memory and writes the next id and position back there. The host
// only reads the sampled id back (device -> host); nothing is copied host -> device per token.
//
// This header has no CUDA types so that plain C++ (the CLI) can include it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/device.h"
#include "engine/backend.h"
#include "model/model.h"

namespace resident::cuda {

struct CudaOptions {
  int n_ctx = 4096;
  bool unified_memory = false;  // weights in managed memory attached globally (GWR-005)
  // Tokens per prefill pass (sizes the workspace). 512: enough tokens per weight read for the
  // tensor-core matmul to pay; lowered at load when the attention scratch would pass 256 MiB.
  int max_batch = 512;
  // Called with "before_weights" just before the weight arena is allocated and "after_weights"
  // once the upload has finished (before KV cache and workspace), so `verify` can sample GPU
  // memory around the weights alone (GWR-001).
  std::function<void(std::string_view stage)> on_stage;
};

// Memory the backend holds on the device, by purpose (reported separately, CONTRACT.md GWR-001).
struct CudaMemoryReport {
  uint64_t weight_bytes = 0;  // the arena (== GGUF tensor data section)
  uint64_t kv_cache_bytes = 0;
  uint64_t workspace_bytes = 0;  // activations, attention scratch, rope table, ids
  double upload_seconds = 0.0;
  double upload_gb_per_s = 0.0;
  std::string weight_alloc_flag;  // "cudaMalloc" or "CU_MEM_ATTACH_GLOBAL"
};

class CudaBackend : public Backend {
 public:
  // Throws resident::Error: no GPU, out of memory, a shape the kernels cannot take.
  CudaBackend(const Model& model, const CudaOptions& options);
  ~CudaBackend() override;

  BackendInfo info() const override;
  int n_ctx() const override;
  // Every SamplerParams runs on the device and picks the CPU backend's ids bit for bit
  // (cuda/sampler.cuh): plain greedy through cuda::argmax, the rest through the device sampler.
  // The params are written to device memory here (once per request, not per token); the decode
  // graph of their kind is captured on first use. Like CpuBackend, a new backend samples with
  // the default SamplerParams until the first reset().
  void reset(const SamplerParams& params) override;
  int32_t prefill(std::span<const int32_t> tokens) override;
  int32_t decode() override;
  int position() const override;
  std::vector<float> logits(std::span<const int32_t> tokens) override;

  MemoryReport memory_report() const override;
  // The CUDA-specific details behind memory_report() (upload rate, allocation flag).
  CudaMemoryReport cuda_memory_report() const;

  // Times the backend's stream with CUDA events (start/stop enqueue events on it).
  std::unique_ptr<Timer> make_timer() const override;

  // Replays the captured decode graph `steps` times back to back (no host sync in between) and
  // returns the GPU time per step in milliseconds (CUDA events). For benchmarks; advances the
  // sequence like decode(). Throws if the context would overflow.
  double time_decode_steps(int steps);

  // Node counts of the decode graph that decode() replays under the current params (captured
  // here if it was not yet): GWR-003 by construction means no memcpy node.
  struct GraphStats {
    int kernels = 0, memcpys = 0, memsets = 0, other = 0;
  };
  GraphStats decode_graph_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace resident::cuda
