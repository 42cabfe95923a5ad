#include "contract/gwr.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace resident::contract {

namespace {

__extension__ typedef unsigned __int128 u128;

// The band is model_bytes * (100 + tolerance) / 100 in integers: the tolerance is a whole
// number of percent, so this is exact.
constexpr uint64_t kUpperPercent = 100 + static_cast<uint64_t>(AC_GWR_RESIDENCY_TOLERANCE_PCT);
static_assert(static_cast<double>(kUpperPercent - 100) == AC_GWR_RESIDENCY_TOLERANCE_PCT,
              "the residency tolerance must be a whole number of percent");

u128 upper_bound_wide(uint64_t model_bytes) {
  return static_cast<u128>(model_bytes) * kUpperPercent / 100;
}

std::string format_double(double v, const char* fmt) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

nlohmann::json id_or_null(std::span<const int32_t> ids, size_t i) {
  return i < ids.size() ? nlohmann::json(ids[i]) : nlohmann::json(nullptr);
}

}  // namespace

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Pass:
      return "PASS";
    case Verdict::Fail:
      return "FAIL";
    case Verdict::NotApplicable:
      return "N/A";
  }
  return "FAIL";  // unreachable for valid enum values; never report an unknown as a pass
}

uint64_t residency_upper_bound(uint64_t model_bytes) {
  const u128 upper = upper_bound_wide(model_bytes);
  const u128 max = std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(upper > max ? max : upper);
}

Verdict residency(uint64_t model_bytes, uint64_t observed) {
  if (model_bytes == 0) return Verdict::Fail;
  const bool inside =
      observed >= model_bytes && static_cast<u128>(observed) <= upper_bound_wide(model_bytes);
  return inside ? Verdict::Pass : Verdict::Fail;
}

Verdict throughput(double tps, double floor) {
  // Written so that NaN (every comparison false) falls through to Fail.
  return (std::isfinite(tps) && tps > 0.0 && tps >= floor) ? Verdict::Pass : Verdict::Fail;
}

Verdict htod(uint64_t n) {
  return n == AC_GWR_MAX_HTOD_PER_INFERENCE ? Verdict::Pass : Verdict::Fail;
}

std::optional<size_t> first_divergence(std::span<const int32_t> gpu, std::span<const int32_t> cpu) {
  const size_t common = gpu.size() < cpu.size() ? gpu.size() : cpu.size();
  for (size_t i = 0; i < common; ++i)
    if (gpu[i] != cpu[i]) return i;
  if (gpu.size() != cpu.size()) return common;
  return std::nullopt;
}

Verdict parity(std::span<const int32_t> gpu, std::span<const int32_t> cpu) {
  if (gpu.empty() || cpu.empty()) return Verdict::Fail;  // nothing compared proves nothing
  return first_divergence(gpu, cpu) ? Verdict::Fail : Verdict::Pass;
}

Verdict grace_flag(std::string_view s) {
  return s == AC_GWR_GRACE_ALLOC_FLAG ? Verdict::Pass : Verdict::Fail;
}

Report evaluate_all(const Observations& obs) {
  Report r;

  {  // GWR-001
    GateResult g;
    g.id = "GWR-001";
    g.name = "weights resident";
    const Verdict band = residency(obs.model_bytes, obs.observed_bytes);
    g.verdict = (band == Verdict::Pass && !obs.memory_grew) ? Verdict::Pass : Verdict::Fail;
    g.measured = static_cast<double>(obs.observed_bytes);
    const uint64_t upper = residency_upper_bound(obs.model_bytes);
    g.bound = std::to_string(obs.model_bytes) + " <= observed <= " + std::to_string(upper) +
              " (model_bytes * " + std::to_string(kUpperPercent) +
              " / 100), and no growth after load";
    g.method =
        "NVML per-process used memory after minus before the weight upload (context measured "
        "and subtracted), cross-checked with cudaMemGetInfo; re-read after inference";
    g.detail = {{"model_bytes", obs.model_bytes},   {"observed_bytes", obs.observed_bytes},
                {"lower_bytes", obs.model_bytes},   {"upper_bytes", upper},
                {"in_band", band == Verdict::Pass}, {"memory_grew_after_load", obs.memory_grew}};
    r.gates.push_back(std::move(g));
  }

  {  // GWR-002
    GateResult g;
    g.id = "GWR-002";
    g.name = "decode throughput";
    g.verdict = throughput(obs.tps, obs.tps_floor);
    g.measured = obs.tps;
    g.bound = "tok/s >= " + format_double(obs.tps_floor, "%.1f");
    g.method = "steady-state decode tokens per second, median of repetitions, CUDA events";
    g.detail = {{"tps", std::isfinite(obs.tps) ? nlohmann::json(obs.tps) : nlohmann::json(nullptr)},
                {"floor", obs.tps_floor}};
    r.gates.push_back(std::move(g));
  }

  {  // GWR-003
    GateResult g;
    g.id = "GWR-003";
    g.name = "no host-to-device copies in steady state";
    g.verdict = htod(obs.htod_count);
    g.measured = static_cast<double>(obs.htod_count);
    g.bound = "HtoD memcpy count == " + std::to_string(AC_GWR_MAX_HTOD_PER_INFERENCE);
    g.method = "CUPTI activity records of kind memcpy HtoD during the measured decode steps";
    g.detail = {{"htod_count", obs.htod_count}};
    r.gates.push_back(std::move(g));
  }

  {  // GWR-004
    GateResult g;
    g.id = "GWR-004";
    g.name = "GPU tokens == CPU tokens";
    g.verdict = parity(obs.gpu_ids, obs.cpu_ids);
    const std::optional<size_t> d = first_divergence(obs.gpu_ids, obs.cpu_ids);
    g.measured = d ? "diverges at token " + std::to_string(*d)
                   : std::to_string(obs.gpu_ids.size()) + " tokens equal";
    g.bound = "non-empty, same length, element-wise equal";
    g.method = "greedy generation from the same prompts on both backends, ids compared";
    g.detail = {{"gpu_tokens", obs.gpu_ids.size()},
                {"cpu_tokens", obs.cpu_ids.size()},
                {"first_divergence", d ? nlohmann::json(*d) : nlohmann::json(nullptr)}};
    if (d) {
      g.detail["gpu_id"] = id_or_null(obs.gpu_ids, *d);
      g.detail["cpu_id"] = id_or_null(obs.cpu_ids, *d);
    }
    r.gates.push_back(std::move(g));
  }

  {  // GWR-005
    GateResult g;
    g.id = "GWR-005";
    g.name = "unified memory allocated attached globally";
    g.bound = "flag == \"" + std::string(AC_GWR_GRACE_ALLOC_FLAG) + "\" (case-sensitive)";
    g.method = "the weight allocator records the exact flag name it passed";
    if (!obs.unified_memory) {
      g.verdict = Verdict::NotApplicable;
      g.measured = std::string("discrete GPU memory (no managed allocation)");
    } else if (!obs.alloc_flag_recorded) {
      g.verdict = Verdict::Fail;  // unified memory without a record cannot be shown correct
      g.measured = std::string("(no flag recorded)");
    } else {
      g.verdict = grace_flag(obs.alloc_flag);
      g.measured = obs.alloc_flag;
    }
    g.detail = {{"unified_memory", obs.unified_memory},
                {"flag_recorded", obs.alloc_flag_recorded},
                {"flag", obs.alloc_flag_recorded ? nlohmann::json(obs.alloc_flag)
                                                 : nlohmann::json(nullptr)}};
    r.gates.push_back(std::move(g));
  }

  bool all_pass = true;
  for (const GateResult& g : r.gates) all_pass = all_pass && g.verdict != Verdict::Fail;
  r.overall = all_pass ? Verdict::Pass : Verdict::Fail;
  return r;
}

nlohmann::json to_json(const GateResult& g) {
  nlohmann::json j;
  j["id"] = g.id;
  j["name"] = g.name;
  j["verdict"] = std::string(verdict_name(g.verdict));
  if (const double* v = std::get_if<double>(&g.measured))
    j["measured"] =
        std::isfinite(*v) ? nlohmann::json(*v) : nlohmann::json(format_double(*v, "%g"));
  else
    j["measured"] = std::get<std::string>(g.measured);
  j["bound"] = g.bound;
  j["method"] = g.method;
  j["detail"] = g.detail;
  return j;
}

nlohmann::json to_json(const Report& r) {
  nlohmann::json j;
  j["contract"] = "gpu-weight-residency-v1";
  j["verdict"] = std::string(verdict_name(r.overall));
  j["gates"] = nlohmann::json::array();
  for (const GateResult& g : r.gates) j["gates"].push_back(to_json(g));
  return j;
}

}  // namespace resident::contract
