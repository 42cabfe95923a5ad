// Helpers shared by the CUDA tests: fresh random inputs (seed printed on failure), poisoned device
// outputs, and bitwise comparison. The spec (docs/numerics.md) makes every CUDA op produce the
// same float bits as its CPU twin, so the tests compare bits, never with a tolerance.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/device_buffer.h"

namespace resident::cuda::test {

// Skips (with the runtime's reason) when this machine has no GPU: the CUDA tests are labelled
// `cuda` and run by scripts/gpu-check on a GPU machine.
#define REQUIRE_GPU_OR_SKIP()                                                                   \
  do {                                                                                          \
    std::string reason_;                                                                        \
    if (!::resident::cuda::gpu_available(&reason_)) GTEST_SKIP() << "no CUDA GPU: " << reason_; \
  } while (0)

// A fresh seed per test run (inputs differ between runs), reported so a failure can be replayed
// with RESIDENT_TEST_SEED.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("RESIDENT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& host) {
  DeviceBuffer<T> d(host.size());
  CUDA_CHECK(cudaMemcpy(d.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  std::vector<T> host(d.size());
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(host.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost));
  return host;
}

// Output buffers start as all-ones bytes: NaN for float and fp16, so an element the kernel
// forgot to write can never match the CPU value.
template <typename T>
DeviceBuffer<T> poisoned(size_t n) {
  DeviceBuffer<T> d(n);
  CUDA_CHECK(cudaMemset(d.get(), 0xff, d.bytes()));
  return d;
}

// Counts elements whose bytes differ; reports the first few with both values.
template <typename T>
::testing::AssertionResult same_bits(const std::vector<T>& gpu, const std::vector<T>& cpu,
                                     const std::string& what) {
  if (gpu.size() != cpu.size())
    return ::testing::AssertionFailure() << what << ": size " << gpu.size() << " vs " << cpu.size();
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(T)) != 0) {
      if (bad < 4) {
        if constexpr (std::is_same_v<T, float>)
          first += " [" + std::to_string(i) + "] gpu " + std::to_string(gpu[i]) + " cpu " +
                   std::to_string(cpu[i]);
        else
          first += " [" + std::to_string(i) + "]";
      }
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << gpu.size() << " elements differ in bits:" << first;
}

inline std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace resident::cuda::test
