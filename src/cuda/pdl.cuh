// Programmatic dependent launch (Hopper), on by default (RESIDENT_CUDA_PDL=0 turns it off): the
// decode-path kernels are launched with cudaLaunchAttributeProgrammaticStreamSerialization, so
// kernel N+1 is launched while kernel N still runs, and its launch latency hides behind N. Every
// kernel launched this way starts with pdl_trigger() (lets its own successor launch) and calls
// pdl_wait() before it touches any memory an earlier kernel writes or reads (the wait returns once
// every earlier grid has completed and its writes are visible; without the attribute it returns at
// once). The only work before the wait is reading weights, which nothing writes. Bits are
// unchanged: every read and write still happens after the predecessor has finished.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "cuda/cuda_check.h"

namespace resident::cuda {

inline bool pdl_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("RESIDENT_CUDA_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), with the PDL attribute when enabled.
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace resident::cuda
