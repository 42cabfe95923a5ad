// Finding a usable CUDA GPU. No GPU is a user-facing condition (--device cuda on a machine
// without one), so it is reported as resident::Error with the runtime's own reason.
#pragma once

#include <cstdint>
#include <string>

namespace resident::cuda {

// True if at least one CUDA device can be used; otherwise false and *reason says why.
bool gpu_available(std::string* reason);

// Throws resident::Error("--device cuda: no usable CUDA GPU (cudaGetDeviceCount: ...)").
void require_gpu();

struct DeviceInfo {
  std::string name;    // "NVIDIA H200"
  std::string driver;  // CUDA driver API version, "13.0"
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  bool integrated = false;  // CPU and GPU share physical memory (Grace, Jetson)
  uint64_t total_memory = 0;
};

DeviceInfo device_info(int device = 0);

// Multiprocessors of the current device, asked once per process (kernels size one-wave grids
// and pick variants by it at every launch).
int current_sm_count();

}  // namespace resident::cuda
