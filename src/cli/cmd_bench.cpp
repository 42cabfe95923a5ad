// `resident bench`: prompt (pp) and decode (tg) throughput in the manner of llama-bench.
// Each test runs once to warm up, then -r repetitions; reported as mean +- sd of tok/s, with the
// achieved memory bandwidth from a bytes-moved count (docs/perf.md explains the count).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "build_info.h"
#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "contract/nvml_probe.h"
#include "util/error.h"
#include "util/files.h"

namespace resident::cli {
namespace {

struct BenchOptions {
  std::string model;
  std::string prompt_sizes = "512";
  std::string gen_sizes = "128";
  std::string depths = "0";
  int reps = 5;
  bool json = false;
  BackendOptions backend;
};

std::vector<int> parse_list(const std::string& text, const char* flag) {
  std::vector<int> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int x = std::stoi(item, &used);
      if (used != item.size() || x < 0) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      throw Error(std::string(flag) + ": '" + item + "' is not a non-negative integer");
    }
  }
  return v;
}

// Bytes a decode step must read at least once: every weight except the embedding table (one row
// of it), plus the K and V cache rows of `depth` positions.
double decode_bytes(const Model& model, int depth) {
  const auto& w = model.weights;
  double bytes = static_cast<double>(model.file.total_tensor_bytes());
  if (!model.config.tied_embeddings)
    bytes -= static_cast<double>(w.token_embd.bytes) * (1.0 - 1.0 / w.token_embd.rows);
  const auto& c = model.config;
  bytes += 2.0 * 2.0 * c.n_layers * static_cast<double>(c.kv_dim()) * depth;  // fp16 K and V
  return bytes;
}

struct Sample {
  double mean = 0, sd = 0;
};

Sample stats(const std::vector<double>& v) {
  Sample s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

int run_bench(const BenchOptions& o) {
  const Model model = Model::load(resolve_model_path(o.model));
  const std::vector<int> pps = parse_list(o.prompt_sizes, "-p");
  const std::vector<int> tgs = parse_list(o.gen_sizes, "-n");
  const std::vector<int> depths = parse_list(o.depths, "-d");
  if (o.reps < 1) throw Error("-r: must be at least 1");
  int need = 1;
  for (int d : depths)
    for (int p : pps) need = std::max(need, d + p), need = std::max(need, d + 1);
  for (int d : depths)
    for (int g : tgs) need = std::max(need, d + g + 1);
  BackendOptions backend_options = o.backend;
  backend_options.n_ctx = std::max(backend_options.n_ctx, need);
  auto backend = make_backend(model, backend_options);
  BackendInfo info = backend->info();
  if (info.device == "cuda") {
    // The NVIDIA driver (what nvidia-smi shows), with the CUDA driver API version beside it.
    const std::string nvidia = contract::nvml_driver_version();
    if (!nvidia.empty()) info.driver = nvidia + " (CUDA " + info.driver + ")";
  }

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> token(0, model.config.vocab_size - 1);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = token(rng);
    return t;
  };
  SamplerParams greedy;
  greedy.temperature = 0.0f;

  nlohmann::json rows = nlohmann::json::array();
  auto emit = [&](const std::string& test, const std::vector<double>& tps, double bytes_per_s) {
    const Sample s = stats(tps);
    nlohmann::json row{{"test", test},
                       {"tok_s", s.mean},
                       {"tok_s_sd", s.sd},
                       {"gb_s", bytes_per_s / 1e9},
                       {"reps", tps.size()},
                       {"device", info.device},
                       {"gpu", info.device == "cuda" ? info.device_name : ""},
                       {"driver", info.driver},
                       {"threads", info.threads},
                       {"commit", RESIDENT_COMMIT},
                       {"model", model.file.path()},
                       {"model_bytes", model.file.file_size()},
                       {"date", utc_date()}};
    rows.push_back(row);
    if (!o.json)
      std::printf("%-14s %10.2f ± %-8.2f tok/s  %8.2f GB/s\n", test.c_str(), s.mean, s.sd,
                  bytes_per_s / 1e9);
    std::fflush(stdout);
  };
  if (!o.json)
    std::printf("model %s (%.2f GiB), device %s %s, threads %d\n", model.file.path().c_str(),
                model.file.file_size() / 1073741824.0, info.device.c_str(),
                info.device_name.c_str(), info.threads);

  for (int depth : depths) {
    const std::string at = depth > 0 ? "@d" + std::to_string(depth) : "";
    for (int pp : pps) {
      if (pp == 0) continue;
      std::vector<double> tps;
      for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 is the warm-up
        backend->reset(greedy);
        if (depth > 0) backend->prefill(random_tokens(depth));
        const auto prompt = random_tokens(pp);
        auto timer = backend->make_timer();
        timer->start();
        backend->prefill(prompt);
        const double ms = timer->stop_ms();
        if (rep > 0) tps.push_back(pp / (ms / 1e3));
      }
      const double mean_tps = stats(tps).mean;
      // A batched pass reads each weight once per pass (plus the KV of the depth once).
      const double bytes_per_s = decode_bytes(model, depth) * (mean_tps / pp);
      emit("pp" + std::to_string(pp) + at, tps, bytes_per_s);
    }
    for (int tg : tgs) {
      if (tg == 0) continue;
      std::vector<double> tps;
      for (int rep = 0; rep <= o.reps; ++rep) {
        backend->reset(greedy);
        backend->prefill(random_tokens(depth + 1));
        auto timer = backend->make_timer();
        timer->start();
        for (int i = 0; i < tg; ++i) backend->decode();
        const double ms = timer->stop_ms();
        if (rep > 0) tps.push_back(tg / (ms / 1e3));
      }
      const double mean_tps = stats(tps).mean;
      emit("tg" + std::to_string(tg) + at, tps, decode_bytes(model, depth + 1 + tg / 2) * mean_tps);
    }
  }
  if (o.json) std::printf("%s\n", rows.dump(2).c_str());
  return 0;
}

CommandRegistration registration{Command{
    "bench", "measure prompt and decode throughput (llama-bench style)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<BenchOptions>();
      o->backend.device = "cpu";
      sub.add_option("-m,--model", o->model, "GGUF model file (default: the cached default model)");
      sub.add_option("-p,--n-prompt", o->prompt_sizes, "prompt sizes, comma-separated (0 = none)");
      sub.add_option("-n,--n-gen", o->gen_sizes, "generated tokens, comma-separated (0 = none)");
      sub.add_option("-d,--depth", o->depths, "KV depths before each test, comma-separated");
      sub.add_option("-r,--repetitions", o->reps, "timed repetitions after one warm-up");
      sub.add_flag("--json", o->json, "print a JSON list of result rows");
      add_backend_options(sub, o->backend);
      return [o] { return run_bench(*o); };
    }}};

}  // namespace
}  // namespace resident::cli
