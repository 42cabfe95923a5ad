// `resident verify`: measures the five gates of gpu-weight-residency-v1 on the real engine with
// instruments it does not control (NVML, cudaMemGetInfo, CUPTI, CUDA events, the CPU backend),
// then judges them with the pure verdict functions of contract/gwr.h.
#pragma once

#include <string>

#include "contract/gwr.h"

namespace resident::contract {

struct VerifyOptions {
  std::string model_path;
  double min_tps = AC_GWR_MIN_TPS_RTX4090;
  int parity_tokens = 32;  // greedy tokens per parity prompt
  int tps_tokens = 128;    // decode steps per throughput repetition
  int tps_reps = 5;
  int htod_steps = 64;  // steady-state decode steps watched by CUPTI
  bool unified_memory = false;
  int n_ctx = 1024;
  int cpu_threads = 0;
  std::string fault;  // fault injection (RESIDENT_FAULT), reported in the JSON
};

struct VerifyResult {
  Report report;
  nlohmann::json json;  // the full report: gates, gpu, driver, commit, model, date, memory
};

// Throws resident::Error when the measurement itself cannot run (no GPU, no NVML, no CUPTI).
VerifyResult run_verify(const VerifyOptions& options, const std::string& commit);

// The table printed to stdout.
std::string format_table(const Report& report);

}  // namespace resident::contract
