#include "contract/nvml_probe.h"

#include <dlfcn.h>
#include <unistd.h>

#include <vector>

namespace resident::contract {
namespace {

// The few NVML declarations we use (stable C ABI, nvml.h is not needed to build).
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
struct nvmlMemory_t {
  unsigned long long total, free, used;
};
struct nvmlProcessInfo_t {  // nvmlProcessInfo_v2_t, taken by the _v3 query
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlInsufficientSize = 7;
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;

}  // namespace

struct NvmlProbe::Api {
  void* lib = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*by_pci)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*processes)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*) = nullptr;
  nvmlReturn_t (*driver)(char*, unsigned int) = nullptr;
  ~Api() {
    if (shutdown) shutdown();
    if (lib) dlclose(lib);
  }
};

std::unique_ptr<NvmlProbe> NvmlProbe::open(const std::string& pci_bus_id, std::string* why_not) {
  auto api = std::make_unique<Api>();
  api->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!api->lib) {
    if (why_not) *why_not = std::string("NVML not loadable: ") + dlerror();
    return nullptr;
  }
  auto load = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api->lib, name));
    return fn != nullptr;
  };
  decltype(api->init) init = nullptr;
  if (!load(init, "nvmlInit_v2") || !load(api->by_pci, "nvmlDeviceGetHandleByPciBusId_v2") ||
      !load(api->memory, "nvmlDeviceGetMemoryInfo") ||
      !load(api->processes, "nvmlDeviceGetComputeRunningProcesses_v3") ||
      !load(api->driver, "nvmlSystemGetDriverVersion")) {
    if (why_not) *why_not = "NVML lacks a required entry point (driver too old?)";
    return nullptr;
  }
  if (init() != kNvmlSuccess) {
    if (why_not) *why_not = "nvmlInit_v2 failed";
    return nullptr;
  }
  load(api->shutdown, "nvmlShutdown");
  std::unique_ptr<NvmlProbe> probe(new NvmlProbe());
  if (api->by_pci(pci_bus_id.c_str(), &probe->device_) != kNvmlSuccess) {
    if (why_not) *why_not = "NVML has no device with PCI bus id " + pci_bus_id;
    return nullptr;
  }
  probe->api_ = std::move(api);
  return probe;
}

NvmlProbe::~NvmlProbe() = default;

std::string nvml_driver_version() {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return "";
  std::string version;
  auto init = reinterpret_cast<nvmlReturn_t (*)()>(dlsym(lib, "nvmlInit_v2"));
  auto shutdown = reinterpret_cast<nvmlReturn_t (*)()>(dlsym(lib, "nvmlShutdown"));
  auto driver = reinterpret_cast<nvmlReturn_t (*)(char*, unsigned int)>(
      dlsym(lib, "nvmlSystemGetDriverVersion"));
  if (init && driver && init() == kNvmlSuccess) {
    char buf[96] = {};
    if (driver(buf, sizeof buf) == kNvmlSuccess) version = buf;
    if (shutdown) shutdown();
  }
  dlclose(lib);
  return version;
}

NvmlSample NvmlProbe::sample() const {
  NvmlSample s;
  nvmlMemory_t mem{};
  if (api_->memory(device_, &mem) == kNvmlSuccess) {
    s.device_used = mem.used;
    s.device_total = mem.total;
  }
  std::vector<nvmlProcessInfo_t> infos(64);
  unsigned int count = static_cast<unsigned int>(infos.size());
  nvmlReturn_t rc = api_->processes(device_, &count, infos.data());
  if (rc == kNvmlInsufficientSize) {
    infos.resize(count + 16);
    count = static_cast<unsigned int>(infos.size());
    rc = api_->processes(device_, &count, infos.data());
  }
  if (rc == kNvmlSuccess) {
    const unsigned int self = static_cast<unsigned int>(getpid());
    for (unsigned int i = 0; i < count; ++i) {
      if (infos[i].pid == self && infos[i].usedGpuMemory != kNvmlValueNotAvailable) {
        s.process_found = true;
        s.process_used = infos[i].usedGpuMemory;
      }
    }
  }
  return s;
}

std::string NvmlProbe::driver_version() const {
  char buf[96] = {};
  if (api_->driver(buf, sizeof buf) != kNvmlSuccess) return "";
  return buf;
}

}  // namespace resident::contract
