// The seam between the engine (sessions, CLI, server) and a compute backend (CPU or CUDA).
//
// A Backend owns the weights' placement, one or more sequences' KV caches and the sampler state.
// Generation is token-in/token-out so that a GPU backend can keep the whole decode step on the
// device (id, position and RNG state in device memory; the host only reads ids back).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace resident {

struct BackendInfo {
  std::string device;       // "cpu" or "cuda"
  std::string device_name;  // CPU model or GPU name
  std::string driver;       // GPU driver version ("" on CPU)
  int threads = 0;          // CPU threads (0 on GPU)
};

// Measures elapsed time of a backend's work between start() and stop_ms(). The default uses the
// host clock (valid because prefill()/decode() return only when their result is on the host);
// the CUDA backend overrides it with CUDA events.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void start() { begin_ = std::chrono::steady_clock::now(); }
  virtual double stop_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point begin_;
};

// Where a backend's memory goes (`resident run --verbose`, `inspect --memory`, `verify`).
struct MemoryReport {
  std::string weight_memory;  // "mmap" (CPU), "device" (cudaMalloc), "managed" (unified)
  uint64_t weights = 0;       // bytes holding the model's tensors
  uint64_t kv_cache = 0;
  uint64_t workspace = 0;  // activations, logits, tables
  uint64_t context = 0;    // runtime/context overhead measured by the backend (0 if unknown)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;

  // Context length this backend's KV cache was sized for.
  virtual int n_ctx() const = 0;

  // Starts a new sequence (position 0) with these sampling settings.
  virtual void reset(const SamplerParams& params) = 0;

  // Appends tokens to the sequence in one batched pass (prefill) and samples the next token.
  // Throws resident::Error if the sequence would exceed n_ctx().
  virtual int32_t prefill(std::span<const int32_t> tokens) = 0;

  // Feeds the most recently sampled token back in and samples the next one.
  virtual int32_t decode() = 0;

  // Current sequence length (tokens whose K/V are cached).
  virtual int position() const = 0;

  // For tests and `verify`: resets, evaluates `tokens` from position 0 and returns the logits
  // of every position (tokens.size() x vocab, row-major). No sampling.
  virtual std::vector<float> logits(std::span<const int32_t> tokens) = 0;

  virtual std::unique_ptr<Timer> make_timer() const { return std::make_unique<Timer>(); }

  virtual MemoryReport memory_report() const = 0;
};

}  // namespace resident
