// GPU memory as nvidia-smi reports it, read through NVML loaded at run time
// (libnvidia-ml.so.1; no link-time dependency, so the binary runs where no driver is installed).
// An instrument the engine does not control: the residency gate (GWR-001) trusts it, not the
// engine's own byte counts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace resident::contract {

struct NvmlSample {
  bool process_found = false;  // this process listed among the device's compute processes
  uint64_t process_used = 0;   // its used memory (bytes), when found and reported
  uint64_t device_used = 0;    // device-wide used memory (bytes)
  uint64_t device_total = 0;
};

// The NVIDIA driver version ("580.159.04") through NVML, or "" when NVML is not available.
std::string nvml_driver_version();

class NvmlProbe {
 public:
  // Loads NVML and finds the device with this PCI bus id ("0000:3B:00.0", from
  // cudaDeviceGetPCIBusId). Returns null and sets *why_not when NVML or the device is missing.
  static std::unique_ptr<NvmlProbe> open(const std::string& pci_bus_id, std::string* why_not);
  ~NvmlProbe();

  NvmlSample sample() const;
  std::string driver_version() const;

 private:
  NvmlProbe() = default;
  struct Api;
  std::unique_ptr<Api> api_;
  void* device_ = nullptr;
};

}  // namespace resident::contract
