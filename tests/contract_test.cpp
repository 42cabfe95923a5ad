// Tests of the gpu-weight-residency-v1 verdict functions (src/contract/gwr.h): every boundary of
// every gate, and the fault each runtime probe must catch, fed as numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "contract/gwr.h"

namespace resident::contract {
namespace {

constexpr Verdict kPass = Verdict::Pass;
constexpr Verdict kFail = Verdict::Fail;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// The real Qwen2.5-Coder-1.5B Q4_K_M file size: a realistic model_bytes.
constexpr uint64_t kModelBytes = 1'117'320'768ull;

TEST(ContractConstants, PinnedNamesAndValues) {
  static_assert(AC_GWR_MIN_TPS_RTX4090 == 180.0);
  static_assert(AC_GWR_RESIDENCY_TOLERANCE_PCT == 10.0);
  static_assert(AC_GWR_MAX_HTOD_PER_INFERENCE == 0);
  EXPECT_EQ(AC_GWR_GRACE_ALLOC_FLAG, "CU_MEM_ATTACH_GLOBAL");
  EXPECT_EQ(verdict_name(Verdict::Pass), "PASS");
  EXPECT_EQ(verdict_name(Verdict::Fail), "FAIL");
  EXPECT_EQ(verdict_name(Verdict::NotApplicable), "N/A");
}

// ---- GWR-001 residency -----------------------------------------------------------------------

TEST(Residency, BandSweep) {
  const uint64_t m = kModelBytes;
  const uint64_t upper = m * 110 / 100;  // 1'229'052'844 (exact: no overflow at this size)
  EXPECT_EQ(residency_upper_bound(m), upper);
  EXPECT_EQ(residency(m, 0), kFail) << "lazy load: nothing resident";
  EXPECT_EQ(residency(m, m / 2), kFail) << "half the weights";
  EXPECT_EQ(residency(m, m - 1), kFail) << "one byte short";
  EXPECT_EQ(residency(m, m), kPass) << "lower end inclusive";
  EXPECT_EQ(residency(m, m + 1), kPass);
  EXPECT_EQ(residency(m, m + m / 20), kPass) << "+5%";
  EXPECT_EQ(residency(m, upper), kPass) << "+10% inclusive";
  EXPECT_EQ(residency(m, upper + 1), kFail) << "+10% + 1 byte";
  EXPECT_EQ(residency(m, m + m / 5), kFail) << "+20%";
  EXPECT_EQ(residency(m, 2 * m), kFail) << "double load (e.g. an fp16 shadow copy)";
  EXPECT_EQ(residency(m, kU64Max), kFail);
}

TEST(Residency, ZeroModelBytesAlwaysFails) {
  EXPECT_EQ(residency(0, 0), kFail);
  EXPECT_EQ(residency(0, 1), kFail);
  EXPECT_EQ(residency(0, kU64Max), kFail);
}

TEST(Residency, IntegerBoundaryTruncatesDown) {
  // 110/100 of 15 is 16.5: the integer bound is 16, so 16 passes and 17 fails.
  EXPECT_EQ(residency(15, 16), kPass);
  EXPECT_EQ(residency(15, 17), kFail);
  // Tiny models: 1 byte has band [1, 1].
  EXPECT_EQ(residency(1, 1), kPass);
  EXPECT_EQ(residency(1, 2), kFail);
  EXPECT_EQ(residency(10, 11), kPass);
  EXPECT_EQ(residency(10, 12), kFail);
}

TEST(Residency, NoOverflowNearU64Max) {
  // model_bytes * 110 would wrap in 64 bits; in 128 bits the bound exceeds UINT64_MAX, so any
  // observed >= model_bytes passes and anything below fails.
  const uint64_t big = kU64Max - 5;
  EXPECT_EQ(residency_upper_bound(big), kU64Max);
  EXPECT_EQ(residency(big, big), kPass);
  EXPECT_EQ(residency(big, kU64Max), kPass);
  EXPECT_EQ(residency(big, big - 1), kFail);
  EXPECT_EQ(residency(kU64Max, kU64Max), kPass);
  // The largest model whose band still fits: 110/100 * m just below 2^64.
  const uint64_t m = kU64Max / 110 * 100;  // m * 110 / 100 = kU64Max / 110 * 110 <= kU64Max
  const uint64_t up = kU64Max / 110 * 110;
  EXPECT_EQ(residency_upper_bound(m), up);
  EXPECT_EQ(residency(m, up), kPass);
  EXPECT_EQ(residency(m, up + 1), kFail);
  // A 64-bit wraparound of m * 110 would give a small bound and fail this in-band value.
  const uint64_t wrap_m = kU64Max / 100;  // m * 110 overflows 64 bits
  EXPECT_EQ(residency(wrap_m, wrap_m + wrap_m / 20), kPass);
}

TEST(Residency, RandomSizesAgreeWithExactReference) {
  // Fresh random sizes (all magnitudes) every run, against an independently written reference:
  // the upper end as m * 11 / 10 in 128-bit arithmetic (the same rational as 110 / 100).
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t m = rng() >> (rng() % 64);
    if (m == 0) continue;
    const unsigned __int128 hi = static_cast<unsigned __int128>(m) * 11 / 10;
    const uint64_t hi64 = hi > kU64Max ? kU64Max : static_cast<uint64_t>(hi);
    EXPECT_EQ(residency(m, m), kPass);
    EXPECT_EQ(residency(m, hi64), kPass);
    if (hi < kU64Max) {
      EXPECT_EQ(residency(m, hi64 + 1), kFail) << m;
    }
    EXPECT_EQ(residency(m, m - 1), kFail) << m;
  }
}

// ---- GWR-002 throughput ----------------------------------------------------------------------

TEST(Throughput, SweepAroundFloor) {
  EXPECT_EQ(throughput(179.999), kFail);
  EXPECT_EQ(throughput(std::nextafter(180.0, 0.0)), kFail);
  EXPECT_EQ(throughput(180.0), kPass) << "floor inclusive";
  EXPECT_EQ(throughput(180.001), kPass);
  EXPECT_EQ(throughput(250.0), kPass);
  EXPECT_EQ(throughput(50.0), kFail) << "throttled decode";
}

TEST(Throughput, NonFiniteAndNonPositiveFail) {
  EXPECT_EQ(throughput(std::numeric_limits<double>::quiet_NaN()), kFail);
  EXPECT_EQ(throughput(std::numeric_limits<double>::infinity()), kFail);
  EXPECT_EQ(throughput(-std::numeric_limits<double>::infinity()), kFail);
  EXPECT_EQ(throughput(-200.0), kFail);
  EXPECT_EQ(throughput(0.0), kFail);
  EXPECT_EQ(throughput(-0.0), kFail);
  // Even with a floor that a bad value would satisfy, the measurement must be positive/finite.
  EXPECT_EQ(throughput(0.0, 0.0), kFail);
  EXPECT_EQ(throughput(-1.0, -10.0), kFail);
  EXPECT_EQ(throughput(std::numeric_limits<double>::infinity(), 1.0), kFail);
  EXPECT_EQ(throughput(1.0, 1.0), kPass);
  EXPECT_EQ(throughput(1.0, std::numeric_limits<double>::quiet_NaN()), kFail);
}

// ---- GWR-003 HtoD ----------------------------------------------------------------------------

TEST(Htod, OnlyZeroPasses) {
  EXPECT_EQ(htod(0), kPass);
  EXPECT_EQ(htod(1), kFail) << "one per-token copy";
  EXPECT_EQ(htod(64), kFail) << "one copy per token over 64 tokens";
  EXPECT_EQ(htod(kU64Max), kFail);
}

// ---- GWR-004 parity --------------------------------------------------------------------------

TEST(Parity, EmptyAndLengthCases) {
  const std::vector<int32_t> none;
  const std::vector<int32_t> some = {1, 2, 3};
  EXPECT_EQ(parity(none, none), kFail) << "nothing compared proves nothing";
  EXPECT_EQ(parity(none, some), kFail);
  EXPECT_EQ(parity(some, none), kFail);
  EXPECT_EQ(first_divergence(none, none), std::nullopt);
  EXPECT_EQ(first_divergence(none, some), std::optional<size_t>(0));
  const std::vector<int32_t> longer = {1, 2, 3, 4};
  EXPECT_EQ(parity(some, longer), kFail) << "GPU stopped early";
  EXPECT_EQ(parity(longer, some), kFail);
  EXPECT_EQ(first_divergence(some, longer), std::optional<size_t>(3));
}

TEST(Parity, OneDifferingElementIsFoundAtItsIndex) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, 151935);
  std::vector<int32_t> cpu(256);
  for (int32_t& t : cpu) t = id(rng);
  const std::vector<int32_t> gpu_equal = cpu;
  EXPECT_EQ(parity(gpu_equal, cpu), kPass);
  EXPECT_EQ(first_divergence(gpu_equal, cpu), std::nullopt);
  for (size_t at : {size_t{0}, size_t{1}, size_t{137}, size_t{255}}) {
    std::vector<int32_t> gpu = cpu;
    gpu[at] = (gpu[at] + 1) % 151936;  // one sampler drift
    EXPECT_EQ(parity(gpu, cpu), kFail) << at;
    EXPECT_EQ(first_divergence(gpu, cpu), std::optional<size_t>(at));
  }
}

// ---- GWR-005 flag ----------------------------------------------------------------------------

TEST(GraceFlag, ExactSpellingOnly) {
  EXPECT_EQ(grace_flag("CU_MEM_ATTACH_GLOBAL"), kPass);
  EXPECT_EQ(grace_flag("cu_mem_attach_global"), kFail);
  EXPECT_EQ(grace_flag("Cu_Mem_Attach_Global"), kFail);
  EXPECT_EQ(grace_flag("CU_MEM_ATTACH_HOST"), kFail);
  EXPECT_EQ(grace_flag("CU_MEM_ATTACH_SINGLE"), kFail);
  EXPECT_EQ(grace_flag("CU_MEM_ATTACH_GLOBAL "), kFail);
  EXPECT_EQ(grace_flag(" CU_MEM_ATTACH_GLOBAL"), kFail);
  EXPECT_EQ(grace_flag("cudaMemAttachGlobal"), kFail);
  EXPECT_EQ(grace_flag(""), kFail);
  EXPECT_EQ(grace_flag(std::string_view("CU_MEM_ATTACH_GLOBAL\0", 21)), kFail);
}

// ---- evaluate_all ----------------------------------------------------------------------------

Observations healthy() {
  Observations o;
  o.model_bytes = kModelBytes;
  o.observed_bytes = kModelBytes + 2 * 1024 * 1024;  // arena alignment padding
  o.memory_grew = false;
  o.tps = 231.4;
  o.htod_count = 0;
  o.cpu_ids = {785, 374, 264, 1273, 13, 151643};
  o.gpu_ids = o.cpu_ids;
  o.unified_memory = false;
  return o;
}

const GateResult& gate(const Report& r, const std::string& id) {
  for (const GateResult& g : r.gates)
    if (g.id == id) return g;
  throw std::runtime_error("no gate " + id);
}

TEST(EvaluateAll, HealthyDiscreteGpuPassesWithGraceNotApplicable) {
  const Report r = evaluate_all(healthy());
  ASSERT_EQ(r.gates.size(), 5u);
  const char* ids[] = {"GWR-001", "GWR-002", "GWR-003", "GWR-004", "GWR-005"};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r.gates[i].id, ids[i]);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.gates[i].verdict, kPass) << ids[i];
  EXPECT_EQ(r.gates[4].verdict, Verdict::NotApplicable);
  EXPECT_EQ(r.overall, kPass);
  EXPECT_EQ(std::get<double>(gate(r, "GWR-002").measured), 231.4);
}

TEST(EvaluateAll, HealthyGracePasses) {
  Observations o = healthy();
  o.unified_memory = true;
  o.alloc_flag_recorded = true;
  o.alloc_flag = "CU_MEM_ATTACH_GLOBAL";
  const Report r = evaluate_all(o);
  for (const GateResult& g : r.gates) EXPECT_EQ(g.verdict, kPass) << g.id;
  EXPECT_EQ(r.overall, kPass);
  EXPECT_EQ(std::get<std::string>(gate(r, "GWR-005").measured), "CU_MEM_ATTACH_GLOBAL");
}

TEST(EvaluateAll, FiveRegressionsFailEveryGate) {
  Observations o = healthy();
  o.observed_bytes = 0;             // lazy load: nothing resident
  o.tps = 50.0;                     // throttled decode
  o.htod_count = 64;                // one copy per token
  o.gpu_ids[3] = o.gpu_ids[3] + 1;  // sampler drift at token 3
  o.unified_memory = true;          // Grace
  o.alloc_flag_recorded = true;
  o.alloc_flag = "CU_MEM_ATTACH_HOST";  // wrong flag
  const Report r = evaluate_all(o);
  ASSERT_EQ(r.gates.size(), 5u);
  for (const GateResult& g : r.gates) EXPECT_EQ(g.verdict, kFail) << g.id;
  EXPECT_EQ(r.overall, kFail);
  EXPECT_EQ(gate(r, "GWR-004").detail["first_divergence"], 3);
  EXPECT_EQ(std::get<std::string>(gate(r, "GWR-004").measured), "diverges at token 3");
}

// Each fault alone turns exactly its gate (and the overall verdict) to FAIL.
TEST(EvaluateAll, EachFaultAloneFailsOnlyItsGate) {
  struct Fault {
    const char* gate;
    void (*inject)(Observations&);
  };
  const Fault faults[] = {
      {"GWR-001", [](Observations& o) { o.observed_bytes = 2 * o.model_bytes; }},
      {"GWR-001", [](Observations& o) { o.memory_grew = true; }},
      {"GWR-001", [](Observations& o) { o.model_bytes = 0; }},
      {"GWR-002", [](Observations& o) { o.tps = 179.999; }},
      {"GWR-002", [](Observations& o) { o.tps = std::numeric_limits<double>::quiet_NaN(); }},
      {"GWR-003", [](Observations& o) { o.htod_count = 1; }},
      {"GWR-004", [](Observations& o) { o.gpu_ids.pop_back(); }},
      {"GWR-004", [](Observations& o) { o.gpu_ids.clear(), o.cpu_ids.clear(); }},
      {"GWR-005",
       [](Observations& o) {
         o.unified_memory = true;
         o.alloc_flag_recorded = true;
         o.alloc_flag = "cu_mem_attach_global";
       }},
      {"GWR-005",
       [](Observations& o) {
         o.unified_memory = true;  // unified, but the allocator recorded nothing
         o.alloc_flag_recorded = false;
       }},
  };
  for (const Fault& f : faults) {
    Observations o = healthy();
    f.inject(o);
    const Report r = evaluate_all(o);
    EXPECT_EQ(r.overall, kFail) << f.gate;
    for (const GateResult& g : r.gates) {
      if (g.id == f.gate) {
        EXPECT_EQ(g.verdict, kFail) << g.id;
      } else {
        EXPECT_NE(g.verdict, kFail) << g.id << " failed for a fault in " << f.gate;
      }
    }
  }
}

TEST(EvaluateAll, DiscreteGpuIgnoresAFlagButUnifiedChecksIt) {
  Observations o = healthy();
  o.alloc_flag_recorded = true;
  o.alloc_flag = "garbage";
  EXPECT_EQ(gate(evaluate_all(o), "GWR-005").verdict, Verdict::NotApplicable);
  o.unified_memory = true;
  EXPECT_EQ(gate(evaluate_all(o), "GWR-005").verdict, kFail);
}

TEST(EvaluateAll, JsonReport) {
  Observations o = healthy();
  o.tps = std::numeric_limits<double>::quiet_NaN();
  const nlohmann::json j = to_json(evaluate_all(o));
  EXPECT_EQ(j["contract"], "gpu-weight-residency-v1");
  EXPECT_EQ(j["verdict"], "FAIL");
  ASSERT_EQ(j["gates"].size(), 5u);
  EXPECT_EQ(j["gates"][0]["id"], "GWR-001");
  EXPECT_EQ(j["gates"][0]["verdict"], "PASS");
  EXPECT_EQ(j["gates"][0]["detail"]["upper_bytes"], kModelBytes * 110 / 100);
  EXPECT_EQ(j["gates"][1]["verdict"], "FAIL");
  EXPECT_EQ(j["gates"][1]["measured"], "nan");  // not silently null
  EXPECT_EQ(j["gates"][3]["measured"], "6 tokens equal");
  EXPECT_EQ(j["gates"][4]["verdict"], "N/A");
  // Round-trips through text.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), j);
}

}  // namespace
}  // namespace resident::contract
