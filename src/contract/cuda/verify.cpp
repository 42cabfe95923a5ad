#include "contract/cuda/verify.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "contract/cuda/htod_counter.h"
#include "contract/nvml_probe.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/files.h"

namespace resident::contract {
namespace {

void cuda_ok(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess)
    throw Error(std::string("verify: ") + call + ": " + cudaGetErrorString(rc));
}

// One memory observation: NVML's view of this process (as nvidia-smi shows it) and the device,
// cross-checked with the CUDA runtime's free/total.
struct MemorySample {
  NvmlSample nvml;
  uint64_t cuda_free = 0, cuda_total = 0;
  uint64_t used() const { return nvml.process_found ? nvml.process_used : nvml.device_used; }
  uint64_t cuda_used() const { return cuda_total - cuda_free; }
  nlohmann::json to_json() const {
    return {{"nvml_process_used",
             nvml.process_found ? nlohmann::json(nvml.process_used) : nlohmann::json()},
            {"nvml_device_used", nvml.device_used},
            {"cuda_used", cuda_used()}};
  }
};

class MemoryProbe {
 public:
  explicit MemoryProbe(const std::string& pci) {
    std::string why;
    nvml_ = NvmlProbe::open(pci, &why);
    if (!nvml_) throw Error("verify: GWR-001 needs NVML: " + why);
  }
  MemorySample sample() const {
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    MemorySample s;
    s.nvml = nvml_->sample();
    size_t free_b = 0, total_b = 0;
    cuda_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    s.cuda_free = free_b;
    s.cuda_total = total_b;
    return s;
  }
  std::string driver() const { return nvml_->driver_version(); }

 private:
  std::unique_ptr<NvmlProbe> nvml_;
};

int64_t delta(uint64_t after, uint64_t before) {
  return static_cast<int64_t>(after) - static_cast<int64_t>(before);
}

// Prompts for the parity gate: code, prose, a chat turn, numbers, non-ASCII.
const char* const kParityPrompts[] = {
    "def fibonacci(n):",
    "The capital of France is",
    "Write a haiku about the sea.",
    "1, 1, 2, 3, 5, 8, 13,",
    "Übersetze ins Englische: Guten Morgen, wie geht es dir?",
    "#include <stdio.h>\nint main(void) {",
    "<|im_start|>user\nExplain recursion in one sentence.<|im_end|>\n<|im_start|>assistant\n",
    "SELECT name, COUNT(*) FROM orders GROUP BY",
};

std::vector<int32_t> greedy_ids(Backend& backend, std::span<const int32_t> prompt, int n) {
  SamplerParams greedy;
  greedy.temperature = 0.0f;
  backend.reset(greedy);
  std::vector<int32_t> ids;
  ids.push_back(backend.prefill(prompt));
  while (static_cast<int>(ids.size()) < n) ids.push_back(backend.decode());
  return ids;
}

bool unified_memory_system(int device) {
  int integrated = 0, pageable_host_tables = 0;
  cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, device);
  cudaDeviceGetAttribute(&pageable_host_tables, cudaDevAttrPageableMemoryAccessUsesHostPageTables,
                         device);
  return integrated != 0 || pageable_host_tables != 0;
}

}  // namespace

VerifyResult run_verify(const VerifyOptions& o, const std::string& commit) {
  cuda::require_gpu();
  const int device = 0;
  cuda_ok(cudaSetDevice(device), "cudaSetDevice");
  char pci[32] = {};
  cuda_ok(cudaDeviceGetPCIBusId(pci, sizeof pci, device), "cudaDeviceGetPCIBusId");
  MemoryProbe memory(pci);
  cuda_ok(cudaFree(nullptr), "cudaFree(0) (context creation)");
  const MemorySample at_context = memory.sample();
  HtodCounter htod_counter;  // CUPTI initialises before any engine allocation

  const Model model = Model::load(o.model_path);
  const tokenizer::Tokenizer tok(model.file);
  const uint64_t model_bytes = model.file.total_tensor_bytes();

  MemorySample before_weights, after_weights, after_load;
  cuda::CudaOptions cuda_options;
  cuda_options.n_ctx = o.n_ctx;
  cuda_options.unified_memory = o.unified_memory;
  cuda_options.on_stage = [&](std::string_view stage) {
    if (stage == "before_weights") before_weights = memory.sample();
    if (stage == "after_weights") after_weights = memory.sample();
  };
  cuda::CudaBackend gpu(model, cuda_options);
  after_load = memory.sample();
  const cuda::CudaMemoryReport gpu_memory = gpu.cuda_memory_report();
  const BackendInfo info = gpu.info();

  Observations obs;
  obs.model_bytes = model_bytes;
  // NVML's per-process figure leaves out managed (unified) memory, so for a managed weight
  // allocation the device-wide NVML figure is the instrument (this process is the only one
  // allocating between the two samples).
  const bool managed = gpu_memory.weight_alloc_flag != "cudaMalloc";
  const auto used = [managed](const MemorySample& m) {
    return managed ? m.nvml.device_used : m.used();
  };
  const int64_t observed = delta(used(after_weights), used(before_weights));
  obs.observed_bytes = observed > 0 ? static_cast<uint64_t>(observed) : 0;

  // GWR-002: steady-state decode throughput, CUDA events around back-to-back graph replays.
  std::vector<int32_t> bench_prompt = tok.encode("def quicksort(items):");
  std::vector<double> tps;
  for (int rep = 0; rep < o.tps_reps + 1; ++rep) {
    SamplerParams greedy;
    greedy.temperature = 0.0f;
    gpu.reset(greedy);
    gpu.prefill(bench_prompt);
    const double ms_per_step = gpu.time_decode_steps(o.tps_tokens);
    if (rep > 0) tps.push_back(1000.0 / ms_per_step);  // rep 0 warms up
  }
  const MemorySample after_throughput = memory.sample();
  std::sort(tps.begin(), tps.end());
  obs.tps = tps[tps.size() / 2];
  obs.tps_floor = o.min_tps;

  // GWR-003: CUPTI memcpy records during steady-state decode steps, and around whole requests.
  SamplerParams greedy;
  greedy.temperature = 0.0f;
  gpu.reset(greedy);
  gpu.prefill(bench_prompt);
  gpu.decode();  // the first step after prefill is part of the request, not the steady state
  htod_counter.start();
  for (int i = 0; i < o.htod_steps; ++i) gpu.decode();
  cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const HtodCount steady = htod_counter.stop();
  htod_counter.start();
  greedy_ids(gpu, bench_prompt, 16);
  cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const HtodCount request = htod_counter.stop();
  obs.htod_count = steady.copies;
  const MemorySample after_htod = memory.sample();

  // GWR-004: greedy ids from the GPU and the CPU backend over several prompts.
  nlohmann::json parity_detail = nlohmann::json::array();
  {
    cpu::CpuBackend cpu(model, o.n_ctx, o.cpu_threads);
    for (const char* text : kParityPrompts) {
      const std::vector<int32_t> prompt = tok.encode(text);
      const auto g = greedy_ids(gpu, prompt, o.parity_tokens);
      const auto c = greedy_ids(cpu, prompt, o.parity_tokens);
      obs.gpu_ids.insert(obs.gpu_ids.end(), g.begin(), g.end());
      obs.cpu_ids.insert(obs.cpu_ids.end(), c.begin(), c.end());
      const auto first = first_divergence(g, c);
      parity_detail.push_back(
          {{"prompt", text},
           {"tokens", g.size()},
           {"first_divergence", first ? nlohmann::json(*first) : nlohmann::json()}});
    }
  }

  const MemorySample at_end = memory.sample();
  obs.memory_grew = used(at_end) > used(after_load);

  // GWR-005: only judged where CPU and GPU share memory, or when forced with --memory unified.
  obs.unified_memory = unified_memory_system(device) || o.unified_memory;
  obs.alloc_flag = gpu_memory.weight_alloc_flag;
  obs.alloc_flag_recorded = !obs.alloc_flag.empty();

  VerifyResult result;
  result.report = evaluate_all(obs);
  const bool nvml_process = before_weights.nvml.process_found && after_weights.nvml.process_found;
  for (GateResult& g : result.report.gates) {
    if (g.id == "GWR-001") {
      g.detail["method_source"] =
          managed ? "NVML device used memory (managed weights: per-process figure excludes them)"
          : nvml_process ? "NVML per-process used memory"
                         : "NVML device used memory (process not listed)";
      g.detail["cuda_mem_get_info_delta"] =
          delta(after_weights.cuda_used(), before_weights.cuda_used());
      g.detail["context_bytes"] = at_context.used();
      g.detail["kv_cache_bytes"] = gpu_memory.kv_cache_bytes;
      g.detail["workspace_bytes"] = gpu_memory.workspace_bytes;
      g.detail["after_load_minus_after_weights"] = delta(after_load.used(), after_weights.used());
      g.detail["used_at_end_minus_after_load"] = delta(used(at_end), used(after_load));
      g.detail["samples"] = {{"context", at_context.to_json()},
                             {"before_weights", before_weights.to_json()},
                             {"after_weights", after_weights.to_json()},
                             {"after_load", after_load.to_json()},
                             {"after_throughput", after_throughput.to_json()},
                             {"after_htod", after_htod.to_json()},
                             {"end", at_end.to_json()}};
      g.detail["upload_gb_per_s"] = gpu_memory.upload_gb_per_s;
    } else if (g.id == "GWR-002") {
      g.detail["reps_tok_s"] = tps;
      g.detail["tokens_per_rep"] = o.tps_tokens;
    } else if (g.id == "GWR-003") {
      g.detail["steady_state_steps"] = o.htod_steps;
      g.detail["steady_state_htod_bytes"] = steady.bytes;
      g.detail["steady_state_memcpy_records_any_direction"] = steady.all_memcpy;
      g.detail["per_request_htod_copies"] = request.copies;
      g.detail["per_request_htod_bytes"] = request.bytes;
    } else if (g.id == "GWR-004") {
      g.detail["prompts"] = parity_detail;
    } else if (g.id == "GWR-005") {
      g.detail["unified_memory_system"] = unified_memory_system(device);
      g.detail["forced"] = o.unified_memory;
    }
  }
  result.json = to_json(result.report);
  result.json["gpu"] = info.device_name;
  result.json["driver"] = memory.driver();
  result.json["commit"] = commit;
  result.json["model"] = o.model_path;
  result.json["model_bytes"] = model_bytes;
  result.json["date"] = utc_date();
  result.json["fault"] = o.fault;
  return result;
}

std::string format_table(const Report& report) {
  std::ostringstream out;
  char line[512];
  std::snprintf(line, sizeof line, "%-8s %-6s %-22s %-34s %s\n", "gate", "verdict", "measured",
                "bound", "method");
  out << line;
  for (const GateResult& g : report.gates) {
    std::string measured;
    if (std::holds_alternative<double>(g.measured)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6g", std::get<double>(g.measured));
      measured = buf;
    } else {
      measured = std::get<std::string>(g.measured);
    }
    std::snprintf(line, sizeof line, "%-8s %-6s %-22s %-34s %s\n", g.id.c_str(),
                  std::string(verdict_name(g.verdict)).c_str(), measured.c_str(), g.bound.c_str(),
                  g.method.c_str());
    out << line;
  }
  out << "overall: " << verdict_name(report.overall) << "\n";
  return out.str();
}

}  // namespace resident::contract
