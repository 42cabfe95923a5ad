// `resident verify`: measures the gpu-weight-residency-v1 gates live (src/contract/cuda/verify.h),
// prints the table, optionally writes the JSON report; exit 0 only if every applicable gate passes.
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "build_info.h"
#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "util/error.h"
#include "util/files.h"

#if defined(RESIDENT_HAVE_CUDA)
#include "contract/cuda/verify.h"
#endif

namespace resident::cli {
namespace {

struct VerifyFlags {
  std::string model, json_path, device = "cuda", memory = "device";
  double min_tps = 180.0;
  int tokens = 32;
  int threads = 0;
};

int verify(const VerifyFlags& f) {
  if (f.device != "cuda")
    throw Error("verify: --device must be cuda (the contract is about the GPU)");
#if defined(RESIDENT_HAVE_CUDA)
  contract::VerifyOptions o;
  o.model_path = resolve_model_path(f.model);
  o.min_tps = f.min_tps;
  o.parity_tokens = f.tokens;
  o.unified_memory = f.memory == "unified";
  o.cpu_threads = f.threads;
  if (const char* fault = std::getenv("RESIDENT_FAULT")) o.fault = fault;
  const contract::VerifyResult r = contract::run_verify(o, RESIDENT_COMMIT);
  std::fputs(contract::format_table(r.report).c_str(), stdout);
  if (!f.json_path.empty()) {
    write_file_atomically(f.json_path, r.json.dump(2) + "\n");
  }
  return r.report.overall == contract::Verdict::Pass ? 0 : 2;
#else
  throw Error(
      "verify: this build has no CUDA backend (built without nvcc or with -DRESIDENT_CUDA=OFF)");
#endif
}

CommandRegistration registration{Command{
    "verify", "measure the gpu-weight-residency-v1 contract gates on the GPU",
    [](CLI::App& sub) -> std::function<int()> {
      auto f = std::make_shared<VerifyFlags>();
      sub.add_option("-m,--model", f->model, "GGUF model file (default: the cached default model)");
      sub.add_option("--device", f->device, "must be cuda")->check(CLI::IsMember({"cuda"}));
      sub.add_option("--json", f->json_path, "write the JSON report here");
      sub.add_option("--min-tps", f->min_tps, "throughput floor (default: the pinned 180)")
          ->check(CLI::PositiveNumber);
      sub.add_option("--tokens", f->tokens, "greedy tokens per parity prompt")
          ->check(CLI::Range(1, 4096));
      sub.add_option("--memory", f->memory, "device or unified (forces the managed-memory path)")
          ->check(CLI::IsMember({"device", "unified"}));
      sub.add_option("-t,--threads", f->threads, "CPU threads for the parity run (0 = all)");
      return [f] { return verify(*f); };
    }}};

}  // namespace
}  // namespace resident::cli
