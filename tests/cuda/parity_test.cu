// GWR-004 at the backend level: the CUDA backend against the CPU backend (the executable spec)
// on synthetic models. Logits are compared bit for bit (docs/numerics.md makes them identical),
// and greedy generation must give the same ids.
//
// The Qwen2.5-1.5B-shaped test also prints measurements (upload rate, decode time per token),
// as lines starting with "BENCH", for scripts/gpu-check and docs/cuda.md.
#include <cuda_profiler_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"
#include "model/model.h"
#include "model/synth.h"

namespace resident::cuda::test {
namespace {

std::string synth_model(synth::Preset preset, synth::QuantMix quant, uint64_t seed) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path =
      (dir / ("resident-cuda-test-" + std::string(synth::preset_name(preset)) + "-" +
              std::string(synth::quant_name(quant)) + "-" + std::to_string(seed) + ".gguf"))
          .string();
  if (!std::filesystem::exists(path)) {
    synth::SynthOptions o;
    o.preset = preset;
    o.quant = quant;
    o.seed = seed;
    synth::write_synthetic(o, path);
  }
  return path;
}

std::vector<int32_t> random_prompt(std::mt19937_64& rng, int n, int vocab) {
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::vector<int32_t> p(n);
  for (auto& t : p) t = id(rng);
  return p;
}

SamplerParams greedy() {
  SamplerParams p;
  p.temperature = 0.0f;
  return p;
}

void check_parity(const Model& model, int max_batch, std::mt19937_64& rng, int prompt_len,
                  int n_generate) {
  const int n_ctx = 256;
  cpu::CpuBackend cpu(model, n_ctx, 0);
  CudaOptions o;
  o.n_ctx = n_ctx;
  o.max_batch = max_batch;
  CudaBackend gpu(model, o);

  const std::vector<int32_t> prompt = random_prompt(rng, prompt_len, model.config.vocab_size);
  const std::vector<float> lc = cpu.logits(prompt);
  const std::vector<float> lg = gpu.logits(prompt);
  EXPECT_TRUE(same_bits(lg, lc, "logits of every prompt position"));

  cpu.reset(greedy());
  gpu.reset(greedy());
  std::vector<int32_t> ids_cpu{cpu.prefill(prompt)}, ids_gpu{gpu.prefill(prompt)};
  for (int i = 0; i < n_generate; ++i) {
    ids_cpu.push_back(cpu.decode());
    ids_gpu.push_back(gpu.decode());
  }
  EXPECT_EQ(ids_gpu, ids_cpu);
  EXPECT_EQ(gpu.position(), cpu.position());

  // A continued sequence: a second prefill after decoding appends at the current position.
  const std::vector<int32_t> more = random_prompt(rng, 5, model.config.vocab_size);
  EXPECT_EQ(gpu.prefill(more), cpu.prefill(more));
  EXPECT_EQ(gpu.decode(), cpu.decode());
}

TEST(CudaParity, TinyModelsMatchCpuBitForBit) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (synth::QuantMix mix :
       {synth::QuantMix::q8_0, synth::QuantMix::q4_k_m, synth::QuantMix::f16}) {
    SCOPED_TRACE(std::string(synth::quant_name(mix)));
    const Model model = Model::load(synth_model(synth::Preset::tiny, mix, seed % 1000));
    check_parity(model, 64, rng, 19, 32);
    check_parity(model, 4, rng, 23, 8);  // prefill split into passes of 4 tokens
    // One 150-token pass: the tensor-core matmuls, the LM head in passes of 64 positions.
    check_parity(model, 512, rng, 150, 8);
  }
}

TEST(CudaParity, DecodeGraphHasNoCopies) {
  REQUIRE_GPU_OR_SKIP();
  const Model model = Model::load(synth_model(synth::Preset::tiny, synth::QuantMix::q8_0, 1));
  CudaOptions o;
  o.n_ctx = 64;
  CudaBackend gpu(model, o);
  gpu.reset(greedy());  // the greedy (argmax) graph; sampler_test.cu checks the sampling graphs
  const CudaBackend::GraphStats g = gpu.decode_graph_stats();
  EXPECT_GT(g.kernels, 10);
  EXPECT_EQ(g.memcpys, 0);
  EXPECT_EQ(g.other, 0);
}

TEST(CudaBackendErrors, RejectsBadUse) {
  REQUIRE_GPU_OR_SKIP();
  const Model model = Model::load(synth_model(synth::Preset::tiny, synth::QuantMix::q8_0, 1));
  CudaOptions o;
  o.n_ctx = 8;
  CudaBackend gpu(model, o);
  gpu.reset(greedy());
  EXPECT_THROW(gpu.decode(), resident::Error);                               // nothing sampled yet
  EXPECT_THROW(gpu.prefill(std::vector<int32_t>{}), resident::Error);        // empty prompt
  EXPECT_THROW(gpu.prefill(std::vector<int32_t>{1, 512}), resident::Error);  // id >= vocab
  EXPECT_THROW(gpu.prefill(std::vector<int32_t>(9, 1)), resident::Error);    // > n_ctx
  gpu.prefill(std::vector<int32_t>(7, 1));
  gpu.decode();                                 // position 8 == n_ctx now
  EXPECT_THROW(gpu.decode(), resident::Error);  // context full
  SamplerParams hot;
  hot.temperature = 0.7f;
  gpu.reset(hot);
  EXPECT_NO_THROW(gpu.prefill(std::vector<int32_t>{1, 2}));  // seeded sampling runs on the device
}

// Qwen2.5-1.5B shapes with the Q4_K_M type layout: parity on a short sequence plus the numbers
// docs/cuda.md reports. Set RESIDENT_SKIP_BIG=1 to skip (it writes a 1.1 GB file).
TEST(CudaParity, Qwen15BShapesMatchCpuAndTiming) {
  REQUIRE_GPU_OR_SKIP();
  if (std::getenv("RESIDENT_SKIP_BIG")) GTEST_SKIP() << "RESIDENT_SKIP_BIG is set";
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string path = synth_model(synth::Preset::qwen25_1_5b, synth::QuantMix::q4_k_m, 7);
  const auto t1 = std::chrono::steady_clock::now();
  const Model model = Model::load(path);
  std::printf("BENCH synth_seconds %.2f file_bytes %llu\n",
              std::chrono::duration<double>(t1 - t0).count(),
              static_cast<unsigned long long>(model.file.file_size()));
  std::fflush(stdout);  // BENCH lines survive a later crash

  CudaOptions o;
  o.n_ctx = 1024;
  CudaBackend gpu(model, o);
  const CudaMemoryReport mem = gpu.cuda_memory_report();
  std::printf("BENCH upload_bytes %llu upload_seconds %.4f upload_GBps %.2f flag %s\n",
              static_cast<unsigned long long>(mem.weight_bytes), mem.upload_seconds,
              mem.upload_gb_per_s, mem.weight_alloc_flag.c_str());
  std::fflush(stdout);  // BENCH lines survive a later crash
  std::printf("BENCH kv_cache_bytes %llu workspace_bytes %llu\n",
              static_cast<unsigned long long>(mem.kv_cache_bytes),
              static_cast<unsigned long long>(mem.workspace_bytes));
  std::fflush(stdout);  // BENCH lines survive a later crash
  EXPECT_EQ(mem.weight_bytes, model.file.data_section_bytes());

  // Parity: logits of an 8-token prompt and 8 greedy ids; logits of a 40-token prompt (the
  // tensor-core prefill matmuls, with the 1.5B's row lengths 1536 and 8960).
  cpu::CpuBackend cpu(model, 64, 0);
  const std::vector<int32_t> prompt = random_prompt(rng, 8, model.config.vocab_size);
  EXPECT_TRUE(same_bits(gpu.logits(prompt), cpu.logits(prompt), "1.5B logits"));
  const std::vector<int32_t> prompt40 = random_prompt(rng, 40, model.config.vocab_size);
  EXPECT_TRUE(same_bits(gpu.logits(prompt40), cpu.logits(prompt40), "1.5B logits, 40 tokens"));
  gpu.reset(greedy());
  cpu.reset(greedy());
  std::vector<int32_t> ids_cpu{cpu.prefill(prompt)}, ids_gpu{gpu.prefill(prompt)};
  for (int i = 0; i < 8; ++i) {
    ids_cpu.push_back(cpu.decode());
    ids_gpu.push_back(gpu.decode());
  }
  EXPECT_EQ(ids_gpu, ids_cpu);

  // Timing: graph replays back to back (GPU time per step, CUDA events), then decode() calls
  // including the id read-back (host wall clock), at positions ~16..500.
  gpu.reset(greedy());
  gpu.prefill(prompt);
  (void)gpu.time_decode_steps(8);  // warm-up
  const double ms_graph = gpu.time_decode_steps(256);
  const auto w0 = std::chrono::steady_clock::now();
  const int n_dec = 128;
  for (int i = 0; i < n_dec; ++i) gpu.decode();
  const double ms_decode =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count() /
      n_dec;
  const double gb = static_cast<double>(mem.weight_bytes) / 1e9;
  std::printf("BENCH decode_graph_ms %.4f tok_s %.1f weight_GBps %.1f\n", ms_graph,
              1000.0 / ms_graph, gb / (ms_graph / 1000.0));
  std::fflush(stdout);  // BENCH lines survive a later crash
  std::printf("BENCH decode_call_ms %.4f tok_s %.1f\n", ms_decode, 1000.0 / ms_decode);
  std::fflush(stdout);  // BENCH lines survive a later crash

  // Prefill throughput of a 512-token prompt (one batched pass).
  const std::vector<int32_t> long_prompt = random_prompt(rng, 512, model.config.vocab_size);
  gpu.reset(greedy());
  gpu.prefill(long_prompt);  // warm-up
  gpu.reset(greedy());
  const auto p0 = std::chrono::steady_clock::now();
  gpu.prefill(long_prompt);
  const double ms_prefill =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p0).count();
  std::printf("BENCH prefill_512_ms %.2f tok_s %.1f\n", ms_prefill, 512 / (ms_prefill / 1000.0));
  std::fflush(stdout);  // BENCH lines survive a later crash
}

// For `ncu --profile-from-start off`: exactly one decode step (one graph replay) between
// cudaProfilerStart and cudaProfilerStop, on the Qwen2.5-1.5B-shaped model at position 64 (or
// RESIDENT_PROFILE_DEPTH).
// Runs only with RESIDENT_PROFILE_DECODE=1 (scripts/gpu-check PROFILE=1).
TEST(CudaProfile, OneDecodeStep) {
  REQUIRE_GPU_OR_SKIP();
  if (!std::getenv("RESIDENT_PROFILE_DECODE")) GTEST_SKIP() << "set RESIDENT_PROFILE_DECODE=1";
  const Model model =
      Model::load(synth_model(synth::Preset::qwen25_1_5b, synth::QuantMix::q4_k_m, 7));
  // RESIDENT_PROFILE_DEPTH: the decode step's position (default 64).
  const char* depth_env = std::getenv("RESIDENT_PROFILE_DEPTH");
  const int depth = depth_env ? std::max(1, std::atoi(depth_env)) : 64;
  CudaOptions o;
  o.n_ctx = depth + 64;
  CudaBackend gpu(model, o);
  gpu.reset(greedy());
  std::mt19937_64 rng(1);
  gpu.prefill(random_prompt(rng, depth, model.config.vocab_size));
  gpu.decode();
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaProfilerStart());
  gpu.decode();
  CUDA_CHECK(cudaProfilerStop());
}

// For `ncu --profile-from-start off`: exactly one 512-token prefill pass from position 0 between
// cudaProfilerStart and cudaProfilerStop, on the Qwen2.5-1.5B-shaped model (after a warm-up).
// Runs only with RESIDENT_PROFILE_PREFILL=1 (scripts/gpu-profile).
TEST(CudaProfile, OnePrefill) {
  REQUIRE_GPU_OR_SKIP();
  if (!std::getenv("RESIDENT_PROFILE_PREFILL")) GTEST_SKIP() << "set RESIDENT_PROFILE_PREFILL=1";
  const Model model =
      Model::load(synth_model(synth::Preset::qwen25_1_5b, synth::QuantMix::q4_k_m, 7));
  CudaOptions o;
  o.n_ctx = 1024;
  CudaBackend gpu(model, o);
  std::mt19937_64 rng(1);
  const std::vector<int32_t> prompt = random_prompt(rng, 512, model.config.vocab_size);
  gpu.reset(greedy());
  gpu.prefill(prompt);  // warm-up
  gpu.reset(greedy());
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaProfilerStart());
  gpu.prefill(prompt);
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaProfilerStop());
}

}  // namespace
}  // namespace resident::cuda::test
