// gpu-weight-residency-v1: the pure verdict functions of the five gates (CONTRACT.md,
// contracts/gpu-weight-residency-v1.yaml).
//
// Pure on purpose: the runtime probes (NVML, CUPTI, CUDA events) only *measure*; every decision
// is made here, from numbers, with no CUDA dependency, so that the rules are unit-tested in CPU CI
// and a probe cannot quietly soften a bound.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace resident::contract {

// Pinned constants: names and values fixed by the contract text.
inline constexpr double AC_GWR_MIN_TPS_RTX4090 = 180.0;
inline constexpr double AC_GWR_RESIDENCY_TOLERANCE_PCT = 10.0;
inline constexpr uint64_t AC_GWR_MAX_HTOD_PER_INFERENCE = 0;
inline constexpr std::string_view AC_GWR_GRACE_ALLOC_FLAG = "CU_MEM_ATTACH_GLOBAL";

enum class Verdict { Pass, Fail, NotApplicable };

// "PASS", "FAIL", "N/A".
std::string_view verdict_name(Verdict v);

// GWR-001. Fail if model_bytes == 0 (nothing to be resident). Pass iff
// model_bytes <= observed <= model_bytes * 110 / 100 (integer arithmetic, in 128 bits so that no
// value overflows), both ends inclusive.
Verdict residency(uint64_t model_bytes, uint64_t observed);

// The upper end of the residency band, model_bytes * 110 / 100, saturated at UINT64_MAX.
uint64_t residency_upper_bound(uint64_t model_bytes);

// GWR-002. Pass iff tps is finite, > 0 and >= floor.
Verdict throughput(double tps, double floor = AC_GWR_MIN_TPS_RTX4090);

// GWR-003. Pass iff no host-to-device copy was recorded.
Verdict htod(uint64_t n);

// GWR-004. Pass iff both sequences are non-empty, of the same length and equal element-wise.
Verdict parity(std::span<const int32_t> gpu, std::span<const int32_t> cpu);

// The first index where the sequences differ; a length mismatch diverges at the shorter length.
// nullopt when they are equal (including both empty).
std::optional<size_t> first_divergence(std::span<const int32_t> gpu, std::span<const int32_t> cpu);

// GWR-005. Pass iff s is exactly "CU_MEM_ATTACH_GLOBAL" (case-sensitive, no whitespace).
Verdict grace_flag(std::string_view s);

// What the runtime probes measured, in one place.
struct Observations {
  // GWR-001: bytes of the GGUF tensor data, and the per-process device memory that the weight
  // upload added (NVML after - before, context subtracted).
  uint64_t model_bytes = 0;
  uint64_t observed_bytes = 0;
  bool memory_grew = false;  // used memory grew after load (during inference): lazy loading
  // GWR-002: steady-state decode tokens per second and the floor it must reach.
  double tps = 0.0;
  double tps_floor = AC_GWR_MIN_TPS_RTX4090;
  // GWR-003: CUPTI memcpy-HtoD records during the measured decode steps.
  uint64_t htod_count = 0;
  // GWR-004: greedy token ids from both backends.
  std::vector<int32_t> gpu_ids;
  std::vector<int32_t> cpu_ids;
  // GWR-005: whether the device shares memory with the host, and the flag the allocator recorded.
  bool unified_memory = false;
  bool alloc_flag_recorded = false;
  std::string alloc_flag;
};

struct GateResult {
  std::string id;    // "GWR-001" .. "GWR-005"
  std::string name;  // short title
  Verdict verdict = Verdict::Fail;
  std::variant<double, std::string> measured;  // the number (or text) the verdict was taken on
  std::string bound;                           // the rule, with the numbers filled in
  std::string method;                          // how the measurement is taken
  nlohmann::json detail;                       // supporting values (null when none)
};

struct Report {
  std::vector<GateResult> gates;  // always the five gates, in id order
  Verdict overall = Verdict::Fail;
};

// All five gates from one set of observations. The overall verdict is Pass only if every
// applicable gate passes (GWR-005 is N/A on a discrete GPU).
Report evaluate_all(const Observations& obs);

nlohmann::json to_json(const GateResult& g);
nlohmann::json to_json(const Report& r);

}  // namespace resident::contract
