// Microbenchmark of the CPU quant kernels (not built by default). Build by hand, e.g.:
//   cmake --build build --target resident_core
//   g++ -std=c++20 -O2 -ffp-contract=off -mavx2 -mfma -mf16c -Isrc bench/quant_bench.cpp \
//       build/libresident_core.a -pthread -o build/quant_bench
// Reports, for the Qwen2.5-1.5B matrix shapes:
//   matvec (n_tokens = 1): GB/s of weights streamed (speed of light: DRAM bandwidth), with 1 and
//     2 threads on disjoint row ranges (what the engine does), cycling through enough distinct
//     matrices that nothing stays in the 32 MB L3;
//   batched (n_tokens = 64): GOP/s (2 ops per multiply-add);
//   quantize_row throughput (the synth helper's cost).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "quant/quant.h"

using namespace resident;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of the whole process (all threads): on a shared machine, wall time includes time
// other processes held the cores; busy CPU time per call is what the kernel itself costs.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Matrices {
  quant::Type type;
  int64_t rows, n;
  size_t bytes;  // per matrix
  std::vector<std::vector<uint8_t>> mats;
};

Matrices make(quant::Type type, int64_t rows, int64_t n, size_t min_total) {
  Matrices m{type, rows, n, quant::row_bytes(quant::type_info(type), n) * rows, {}};
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::vector<float> row(n);
  const size_t count = std::max<size_t>(2, (min_total + m.bytes - 1) / m.bytes);
  // 64 quantized random rows, tiled over every matrix (setup stays fast; the kernel streams
  // every byte regardless of repetition).
  const size_t rb = m.bytes / rows;
  std::vector<uint8_t> seed(rb * 64);
  for (int r = 0; r < 64; ++r) {
    for (auto& v : row) v = normal(gen);
    quant::quantize_row(type, row.data(), seed.data() + r * rb, n);
  }
  for (size_t k = 0; k < count; ++k) {
    std::vector<uint8_t> w(m.bytes);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(w.data() + r * rb, seed.data() + (r % 64) * rb, rb);
    m.mats.push_back(std::move(w));
  }
  return m;
}

void matmul_threads(const Matrices& m, const uint8_t* w, const numerics::ActBlock* xq, int n_tokens,
                    float* out, int threads) {
  if (threads == 1) {
    quant::matmul_rows(m.type, w, m.n, xq, nullptr, n_tokens, out, m.rows, 0, m.rows);
    return;
  }
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    const int64_t r0 = m.rows * i / threads / 8 * 8;
    const int64_t r1 = i + 1 == threads ? m.rows : m.rows * (i + 1) / threads / 8 * 8;
    pool.emplace_back([&, r0, r1] {
      quant::matmul_rows(m.type, w, m.n, xq, nullptr, n_tokens, out, m.rows, r0, r1);
    });
  }
  for (auto& t : pool) t.join();
}

void bench_matmul(const Matrices& m, int n_tokens, int threads) {
  std::mt19937 gen(2);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(m.n * n_tokens);
  for (auto& v : x) v = normal(gen);
  std::vector<numerics::ActBlock> xq(x.size() / 32);
  quant::quantize_activations(x.data(), xq.data(), x.size());
  std::vector<float> out(m.rows * n_tokens);
  // Warm up, then time whole passes over all matrices for >= 1 s.
  if (!getenv("QB_PASSES")) {
    for (const auto& w : m.mats)
      matmul_threads(m, w.data(), xq.data(), n_tokens, out.data(), threads);
  }
  int64_t calls = 0;
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  double el = 0;
  // QB_PASSES=k: a fixed amount of work (for `perf stat -e cycles:u`, which a shared machine
  // does not disturb); otherwise passes for >= 1 s.
  const int fixed_passes = getenv("QB_PASSES") ? std::atoi(getenv("QB_PASSES")) : -1;
  for (int pass = 0; fixed_passes < 0 ? el < 1.0 : pass < fixed_passes; ++pass) {
    for (const auto& w : m.mats) {
      matmul_threads(m, w.data(), xq.data(), n_tokens, out.data(), threads);
      ++calls;
    }
    el = seconds_since(t0);
  }
  if (calls == 0) return;
  // Per call: wall time, and CPU time divided by the thread count (= wall time on idle cores).
  const double per_call = el / calls;
  const double per_call_cpu = (cpu_seconds() - c0) / calls / threads;
  const auto& info = quant::type_info(m.type);
  std::printf(
      "%-5s %5lld x %5lld  tokens %3d  threads %d: wall %8.3f ms  %6.2f GB/s %7.1f GOP/s"
      " | cpu %8.3f ms  %6.2f GB/s %7.1f GOP/s\n",
      std::string(info.name).c_str(), (long long)m.rows, (long long)m.n, n_tokens, threads,
      per_call * 1e3, m.bytes / per_call / 1e9, 2.0 * m.rows * m.n * n_tokens / per_call / 1e9,
      per_call_cpu * 1e3, m.bytes / per_call_cpu / 1e9,
      2.0 * m.rows * m.n * n_tokens / per_call_cpu / 1e9);
}

void bench_quantize(quant::Type type) {
  const int64_t n = 1536, rows = 2048;
  std::vector<float> x(n * rows);
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.f, 0.02f);
  for (auto& v : x) v = normal(gen);
  std::vector<uint8_t> q(quant::row_bytes(quant::type_info(type), n) * rows);
  const auto t0 = Clock::now();
  for (int64_t r = 0; r < rows; ++r) {
    quant::quantize_row(type, x.data() + r * n, q.data() + r * (q.size() / rows), n);
  }
  const double el = seconds_since(t0);
  std::printf("quantize_row %-5s: %7.1f M elements/s (1 thread)\n",
              std::string(quant::type_info(type).name).c_str(), n * rows / el / 1e6);
}

}  // namespace

// Usage: quant_bench [TYPE [TOKENS [THREADS]]]  (default: Q4_K and Q6_K, 1 and 64 tokens,
// 1 and 2 threads).
int main(int argc, char** argv) {
  const size_t kBeyondL3 = (getenv("QB_MB") ? std::atoi(getenv("QB_MB")) : 96) * (size_t{1} << 20);
  std::vector<quant::Type> types = {quant::Type::Q4_K, quant::Type::Q6_K};
  std::vector<int> token_counts = {1, 64}, thread_counts = {1, 2};
  if (argc > 1) {
    types.clear();
    for (uint32_t id = 0; id < 64; ++id) {
      auto info = quant::type_info(id);
      if (info && info->name == argv[1]) types.push_back(info->type);
    }
  }
  if (argc > 2) token_counts = {std::atoi(argv[2])};
  if (argc > 3) thread_counts = {std::atoi(argv[3])};
  for (auto type : types) {
    // QB_SHAPE=rows,n: one custom shape (e.g. an L2-resident one to time compute alone).
    std::vector<std::pair<int64_t, int64_t>> shapes = {{8960, 1536}, {1536, 8960}};
    if (const char* shape = getenv("QB_SHAPE")) {
      shapes = {{std::atoll(shape), std::atoll(std::strchr(shape, ',') + 1)}};
    }
    for (auto [rows, n] : shapes) {
      const Matrices m = make(type, rows, n, kBeyondL3);
      for (int tokens : token_counts) {
        for (int threads : thread_counts) bench_matmul(m, tokens, threads);
      }
    }
  }
  if (argc > 1) return 0;
  for (auto type : {quant::Type::Q4_K, quant::Type::Q6_K, quant::Type::Q8_0, quant::Type::Q5_K,
                    quant::Type::Q4_0}) {
    bench_quantize(type);
  }
  return 0;
}
