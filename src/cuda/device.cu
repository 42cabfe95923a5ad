#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "util/error.h"

namespace resident::cuda {

bool gpu_available(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (reason) *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "cudaGetDeviceCount: 0 devices";
    return false;
  }
  return true;
}

void require_gpu() {
  std::string reason;
  if (!gpu_available(&reason)) throw Error("--device cuda: no usable CUDA GPU (" + reason + ")");
}

DeviceInfo device_info(int device) {
  require_gpu();
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.name = prop.name;
  int driver = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  info.driver = std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10);
  info.sm_count = prop.multiProcessorCount;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.integrated = prop.integrated != 0;
  info.total_memory = prop.totalGlobalMem;
  return info;
}

int current_sm_count() {
  static const int n = [] {
    int dev = 0, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
    return count;
  }();
  return n;
}

}  // namespace resident::cuda
