// Error checking for every CUDA runtime call. Never compiled out (STYLE.md 9): a failing call
// throws resident::Error naming the call, the file and the line, so the CLI prints one line
// instead of crashing.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "util/error.h"

namespace resident::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  throw Error(std::string("cuda: ") + call + " failed: " + cudaGetErrorName(err) + " (" +
              cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace resident::cuda

#define CUDA_CHECK(call)                                                                 \
  do {                                                                                   \
    const cudaError_t resident_cuda_err_ = (call);                                       \
    if (resident_cuda_err_ != cudaSuccess)                                               \
      ::resident::cuda::throw_cuda_error(resident_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface
// at the next synchronizing call, which is checked too).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
