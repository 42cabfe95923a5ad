#include "cli/backend_factory.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cpu/cpu_backend.h"
#include "util/error.h"

#if defined(RESIDENT_HAVE_CUDA)
#include "cuda/cuda_backend.h"
#endif

namespace resident::cli {

bool cuda_available(std::string* reason) {
#if defined(RESIDENT_HAVE_CUDA)
  return cuda::gpu_available(reason);
#else
  if (reason)
    *reason = "this build has no CUDA backend (built without nvcc or with -DRESIDENT_CUDA=OFF)";
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options) {
  std::string device = options.device;
  if (device == "auto") {
    std::string reason;
    device = cuda_available(&reason) ? "cuda" : "cpu";
    std::fprintf(stderr, "device: %s%s%s\n", device.c_str(), device == "cpu" ? " (" : "",
                 device == "cpu" ? (reason + ")").c_str() : "");
  }
  if (device == "cpu") {
    if (options.memory != "device") throw Error("--memory unified: only with --device cuda");
    return std::make_unique<cpu::CpuBackend>(model, options.n_ctx, options.threads);
  }
  if (device == "cuda") {
#if defined(RESIDENT_HAVE_CUDA)
    cuda::CudaOptions cuda_options;
    cuda_options.n_ctx = options.n_ctx;
    cuda_options.unified_memory = options.memory == "unified";
    return std::make_unique<cuda::CudaBackend>(model, cuda_options);
#else
    throw Error(
        "--device cuda: this build has no CUDA backend (nvcc was not found at configure time)");
#endif
  }
  throw Error("--device: unknown device '" + device + "' (cpu, cuda or auto)");
}

std::string resolve_model_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("RESIDENT_MODEL"); env && *env) return env;
  std::string cache;
  if (const char* c = std::getenv("RESIDENT_CACHE"); c && *c) {
    cache = c;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = std::string(home) + "/.cache/resident";
  } else {
    throw Error("no -m MODEL given and HOME is unset: pass -m");
  }
  const std::string path = cache + "/qwen2.5-coder-1.5b-q4_k_m.gguf";
  if (!std::filesystem::exists(path))
    throw Error("no -m MODEL given and the default model is not at " + path +
                ": run scripts/fetch-model first");
  return path;
}

void add_backend_options(CLI::App& app, BackendOptions& options) {
  app.add_option("--device", options.device, "cpu, cuda or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("--ctx", options.n_ctx, "context length (KV cache size)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("-t,--threads", options.threads, "CPU threads (0 = all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--memory", options.memory, "cuda weight memory: device or unified (managed)")
      ->check(CLI::IsMember({"device", "unified"}));
}

}  // namespace resident::cli
