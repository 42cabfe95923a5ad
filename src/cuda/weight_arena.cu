// Upload path: the mapped file is copied into two pinned 64 MiB staging buffers by several host
// threads (one thread's memcpy from a fresh mapping, page faults included, manages well under
// 20 GB/s), and each filled buffer is sent with cudaMemcpyAsync while the other one is filled.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/weight_arena.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

void parallel_copy(uint8_t* dst, const uint8_t* src, size_t n, int threads) {
  if (threads <= 1 || n < (size_t{4} << 20)) {
    std::memcpy(dst, src, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t slice = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const size_t b = std::min(n, slice * t), e = std::min(n, slice * (t + 1));
    if (b < e) pool.emplace_back([=] { std::memcpy(dst + b, src + b, e - b); });
  }
  for (auto& th : pool) th.join();
}

}  // namespace

WeightArena::WeightArena(const gguf::File& file, const ArenaOptions& options) {
  require_gpu();
  const uint64_t bytes = file.data_section_bytes();
  if (bytes == 0) throw Error(file.path() + ": tensor data section is empty");
  stats_.bytes = bytes;

  if (options.unified) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // Never ask for more managed memory than is free: oversubscription can hang the GPU.
    if (bytes > free_b)
      throw Error("--memory unified: weights need " + std::to_string(bytes) + " bytes, only " +
                  std::to_string(free_b) + " free on the GPU");
    CUDA_CHECK(cudaMallocManaged(reinterpret_cast<void**>(&base_), bytes, cudaMemAttachGlobal));
    stats_.alloc_flag = "CU_MEM_ATTACH_GLOBAL";
  } else {
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&base_), bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw Error(file.path() + ": weights need " + std::to_string(bytes) +
                  " bytes of GPU memory: cudaMalloc failed (out of memory)");
    }
    CUDA_CHECK(err);
    stats_.alloc_flag = "cudaMalloc";
  }

  const uint64_t stage = std::max<uint64_t>(options.staging_bytes, 1 << 20);
  const int threads =
      options.copy_threads > 0
          ? options.copy_threads
          : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  uint8_t* pinned[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  cudaStream_t stream = nullptr;
  try {
    for (int i = 0; i < 2; ++i) {
      CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&pinned[i]), stage, cudaHostAllocDefault));
      CUDA_CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const uint8_t* src = file.data_section();
    const auto t0 = std::chrono::steady_clock::now();
    int i = 0;
    for (uint64_t off = 0; off < bytes; off += stage, i ^= 1) {
      const uint64_t n = std::min(stage, bytes - off);
      CUDA_CHECK(cudaEventSynchronize(done[i]));  // the copy out of this buffer has finished
      parallel_copy(pinned[i], src + off, n, threads);
      CUDA_CHECK(cudaMemcpyAsync(base_ + off, pinned[i], n, cudaMemcpyHostToDevice, stream));
      CUDA_CHECK(cudaEventRecord(done[i], stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto t1 = std::chrono::steady_clock::now();
    stats_.upload_seconds = std::chrono::duration<double>(t1 - t0).count();
    stats_.upload_gb_per_s = stats_.upload_seconds > 0 ? bytes / stats_.upload_seconds / 1e9 : 0.0;
  } catch (...) {
    for (int k = 0; k < 2; ++k) {
      if (pinned[k]) cudaFreeHost(pinned[k]);
      if (done[k]) cudaEventDestroy(done[k]);
    }
    if (stream) cudaStreamDestroy(stream);
    cudaFree(base_);
    throw;
  }
  for (int k = 0; k < 2; ++k) {
    CUDA_CHECK(cudaFreeHost(pinned[k]));
    CUDA_CHECK(cudaEventDestroy(done[k]));
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
}

WeightArena::~WeightArena() {
  if (base_)
    cudaFree(base_);  // no throwing from a destructor; errors here are unrecoverable anyway
}

const void* WeightArena::device_ptr(const Tensor& t) const {
  if (!t.present()) throw Error("weight arena: tensor '" + t.name + "' is absent");
  if (t.offset > stats_.bytes || t.bytes > stats_.bytes - t.offset)
    throw Error("weight arena: tensor '" + t.name + "' lies outside the data section");
  return base_ + t.offset;
}

}  // namespace resident::cuda
