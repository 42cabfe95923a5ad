// Device check and timing of the tensor-core matmul (src/cuda/matmul_mma.cu), built by
// scripts/mma-check with one nvcc line (no CMake): every case's output must equal, bit for bit,
// the spec computed on the host with the same quant_blocks.h functions
// (tests/cuda/mma_reference.h), starting from a NaN-poisoned output. Timed cases then report the
// median of 20 launches (CUDA events): "cold" with the L2 cache flushed before each launch by
// reading a 256 MB buffer (clean lines, so no write-back is timed; weights come from DRAM as in a
// forward pass), and "hot" back to back.
//
// Usage: mma_harness [--no-check] [seed]. Exit status 0 iff every case matched.
#include <cuda_runtime.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/matmul_mma.cuh"
#include "mma_reference.h"

namespace {

using namespace resident;
using namespace resident::cuda;
using numerics::ActBlock;
using quant::Type;

// Multiply-accumulates per token of Qwen2.5-1.5B (28 layers of q, k, v, o, gate, up, down, plus
// the LM head): converts a measured rate into "the whole model's matmuls at this rate".
constexpr double kModelMacsPerToken =
    28.0 * (1536.0 * 1536 * 2 + 256.0 * 1536 * 2 + 8960.0 * 1536 * 3) + 151936.0 * 1536;

struct Case {
  Type type;
  int64_t rows, n;
  int tokens;
  bool bias = false, accumulate = false;
  bool timed = false;
  int64_t stride_pad = 0;               // out_stride = rows + stride_pad
  int64_t distinct = int64_t{1} << 40;  // distinct weight rows (generation time)
};

struct Timing {
  std::string what;
  double us, hot_us, tops, tok_s, model_tok_s;
};

// Reads n 16-byte words: evicts everything else from L2 without leaving dirty lines.
__global__ void read_flush(const uint4* p, size_t n, uint4* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc.x ^= v.x;
    acc.y ^= v.y;
    acc.z ^= v.z;
    acc.w ^= v.w;
  }
  if (acc.x == 0x12345678u && acc.y == 0x9abcdef0u) *sink = acc;  // keeps the loads alive
}

// Median of 20 timed launches of `launch`, each after `before` (not timed).
template <typename Launch, typename Before>
double median_us(Launch launch, Before before) {
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    before();
    CUDA_CHECK(cudaEventRecord(e0));
    launch();
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return 0.5 * (ms[9] + ms[10]) * 1e3;
}

template <typename T>
T* upload(const std::vector<T>& h) {
  T* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

std::string describe(const Case& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %" PRId64 "x%" PRId64 "x%d%s%s%s", mma_ref::name(c.type),
                c.rows, c.n, c.tokens, c.bias ? " +bias" : "", c.accumulate ? " +acc" : "",
                c.stride_pad ? " +stride" : "");
  return buf;
}

// Counts differing elements; prints the first few and which row % 16 / token % 8 positions
// (mma fragment coordinates) they fall on, so one failed device run says what is wrong.
bool compare(const std::vector<float>& gpu, const std::vector<float>& cpu, const Case& c,
             int64_t stride) {
  int64_t bad = 0;
  uint32_t row_mask = 0, tok_mask = 0;
  for (int t = 0; t < c.tokens; ++t)
    for (int64_t r = 0; r < c.rows; ++r) {
      const size_t i = static_cast<size_t>(t * stride + r);
      if (std::memcmp(&gpu[i], &cpu[i], 4) == 0) continue;
      if (bad < 4)
        std::printf("    row %" PRId64 " token %d: gpu %.9g (0x%08x) cpu %.9g (0x%08x)\n", r, t,
                    gpu[i], numerics::float_to_bits(gpu[i]), cpu[i],
                    numerics::float_to_bits(cpu[i]));
      row_mask |= 1u << (r % 16);
      tok_mask |= 1u << (t % 8);
      ++bad;
    }
  if (bad)
    std::printf("    %" PRId64 " of %" PRId64
                " differ; row%%16 mask 0x%04x, token%%8 mask 0x%02x\n",
                bad, c.rows * c.tokens, row_mask, tok_mask);
  return bad == 0;
}

bool run_case(std::mt19937_64& rng, const Case& c, bool check, std::vector<Timing>* timings,
              void* flush, size_t flush_bytes) {
  const std::string what = describe(c);
  const int64_t rb = mma_ref::row_bytes(c.type, c.n);
  const int64_t stride = c.rows + c.stride_pad;
  const std::vector<uint8_t> w = mma_ref::random_weights(rng, c.type, c.rows, c.n, c.distinct);
  const std::vector<ActBlock> xq = mma_ref::random_activations(rng, c.n, c.tokens);
  std::vector<float> bias(static_cast<size_t>(c.rows)),
      prior(static_cast<size_t>(stride * c.tokens));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : bias) v = normal(rng);
  for (float& v : prior) v = normal(rng);

  uint8_t* dw = upload(w);
  ActBlock* dx = upload(xq);
  float* db = upload(bias);
  float* dout = nullptr;
  CUDA_CHECK(cudaMalloc(&dout, prior.size() * sizeof(float)));
  if (c.accumulate)
    CUDA_CHECK(cudaMemcpy(dout, prior.data(), prior.size() * 4, cudaMemcpyHostToDevice));
  else
    CUDA_CHECK(cudaMemset(dout, 0xff, prior.size() * 4));  // NaN everywhere

  MatvecArgs a;
  a.type = c.type;
  a.w = dw;
  a.rows = c.rows;
  a.n = c.n;
  a.xq = dx;
  a.n_tokens = c.tokens;
  a.out = dout;
  a.out_stride = stride;
  a.bias = c.bias ? db : nullptr;
  a.accumulate = c.accumulate;
  bool ok = matmul_mma(a, rb, nullptr);
  if (!ok) std::printf("  FAIL %s: matmul_mma declined the case\n", what.c_str());
  CUDA_CHECK(cudaDeviceSynchronize());

  if (ok && check) {
    std::vector<float> gpu(prior.size());
    CUDA_CHECK(cudaMemcpy(gpu.data(), dout, gpu.size() * 4, cudaMemcpyDeviceToHost));
    // The reference writes only the (row, token) outputs; padding keeps the device's NaN.
    std::vector<float> cpu = c.accumulate ? prior : gpu;
    mma_ref::reference(c.type, w.data(), c.rows, c.n, xq.data(), c.tokens, cpu.data(), stride,
                       c.bias ? bias.data() : nullptr, c.accumulate);
    ok = compare(gpu, cpu, c, stride);
    std::printf("  %s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  }

  if (ok && c.timed) {
    a.accumulate = false;  // timing runs overwrite the output
    auto launch = [&] { matmul_mma(a, rb, nullptr); };
    for (int i = 0; i < 3; ++i) launch();  // warm-up
    const double cold = median_us(launch, [&] {
      read_flush<<<1024, 256>>>(static_cast<const uint4*>(flush), flush_bytes / 16,
                                static_cast<uint4*>(flush));
    });
    const double hot = median_us(launch, [] {});
    const double macs = static_cast<double>(c.rows) * c.n * c.tokens;
    const double s = cold * 1e-6;
    timings->push_back(
        {what, cold, hot, 2.0 * macs / s * 1e-12, c.tokens / s, macs / s / kModelMacsPerToken});
  }
  CUDA_CHECK(cudaFree(dw));
  CUDA_CHECK(cudaFree(dx));
  CUDA_CHECK(cudaFree(db));
  CUDA_CHECK(cudaFree(dout));
  return ok;
}

// Cases the tensor-core path must decline (the caller then uses matvec).
bool declines() {
  MatvecArgs a;
  a.w = reinterpret_cast<void*>(256);
  a.xq = reinterpret_cast<const ActBlock*>(256);
  a.out = reinterpret_cast<float*>(256);
  a.rows = 64;
  a.n = 1536;
  a.out_stride = 64;
  bool ok = true;
  a.type = Type::Q4_K;
  a.n_tokens = 15;
  ok &= !matmul_mma(a, 864, nullptr);
  a.n_tokens = 64;
  a.type = Type::F16;
  ok &= !matmul_mma(a, 3072, nullptr);
  a.type = Type::Q8_0;
  a.n = 96;  // 3 blocks: not whole stages of 4
  ok &= !matmul_mma(a, 102, nullptr);
  a.n = 1536;
  a.xq = reinterpret_cast<const ActBlock*>(264);  // not 16-byte aligned
  ok &= !matmul_mma(a, 1632, nullptr);
  std::printf("  %s declines: < 16 tokens, F16, n %% 128 != 0, misaligned activations\n",
              ok ? "ok  " : "FAIL");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool check = true;
  uint64_t seed = 0x5eed;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-check") == 0)
      check = false;
    else
      seed = std::strtoull(argv[i], nullptr, 10);
  }
  try {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs; seed %" PRIu64 "\n", prop.name, prop.multiProcessorCount,
                seed);
    std::mt19937_64 rng(seed);

    std::vector<Case> cases;
    const Type all[] = {Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::Q4_0, Type::Q5_0, Type::Q5_K};
    for (Type t : all) {
      cases.push_back({t, 1536, 1536, 512, false, false, true});
      cases.push_back({t, 256, 1536, 37});
      cases.push_back({t, 37, 1536, 19});
      cases.push_back({t, 37, 1536, 19, true});
      cases.push_back({t, 256, 1536, 37, false, true});
      cases.push_back({t, 100, 1536, 70, true, true, false, 3});
      cases.push_back({t, 65, 256, 16});
    }
    cases.push_back({Type::Q4_0, 70, 128, 17});  // a single stage
    for (Type t : {Type::Q4_K, Type::Q6_K}) {
      cases.push_back({t, 8960, 1536, 512, false, false, true});
      cases.push_back({t, 1536, 8960, 512, false, false, true});
      cases.push_back({t, 1536, 8960, 512, false, true, false});
      cases.push_back({t, 151936, 1536, 16, false, false, true, 0, 4096});
      cases.push_back({t, 1536, 1536, 64, false, false, true});  // today's prefill batch
      cases.push_back({t, 256, 1536, 512, true, false, true});
    }
    cases.push_back({Type::Q8_0, 8960, 1536, 512, false, false, true});

    const size_t flush_bytes = size_t{256} << 20;
    void* flush = nullptr;
    CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
    CUDA_CHECK(cudaMemset(flush, 0, flush_bytes));
    std::vector<Timing> timings;
    int failed = declines() ? 0 : 1;
    for (const Case& c : cases)
      failed += run_case(rng, c, check, &timings, flush, flush_bytes) ? 0 : 1;
    CUDA_CHECK(cudaFree(flush));

    std::printf("\n%-32s %8s %8s %8s %12s %12s\n", "shape (rows x n x tokens)", "cold us", "hot us",
                "TOPS", "tok/s", "model tok/s");
    for (const Timing& t : timings)
      std::printf("%-32s %8.1f %8.1f %8.1f %12.0f %12.0f\n", t.what.c_str(), t.us, t.hot_us, t.tops,
                  t.tok_s, t.model_tok_s);
    std::printf(
        "(TOPS, tok/s: cold; model tok/s: all %.3g MACs per token of Qwen2.5-1.5B at "
        "this rate)\n",
        kModelMacsPerToken);
    std::printf("\n%s: %d failed of %zu cases (+ declines)\n", failed ? "FAIL" : "PASS", failed,
                cases.size());
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 2;
  }
}
