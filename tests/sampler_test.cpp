// Tests of the Philox generator and the canonical sampler (src/engine/sampler.cpp).
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "numerics/philox.h"
#include "util/error.h"

namespace resident {
namespace {

using numerics::Philox4x32Counter;
using numerics::Philox4x32Key;

// Fresh inputs every run; the seed is printed on failure so a failure can be replayed.
uint32_t fresh_seed() {
  static const uint32_t seed = std::random_device{}();
  return seed;
}

std::vector<float> random_logits(std::mt19937& rng, int n, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(n);
  for (float& x : l) x = dist(rng);
  return l;
}

SamplerParams plain(float temperature) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  return p;
}

// ---- Philox ----------------------------------------------------------------------------------

// Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words),
// expected output (4 words).
TEST(Philox, Random123KnownAnswers) {
  struct Kat {
    Philox4x32Counter ctr;
    Philox4x32Key key;
    uint32_t want[4];
  };
  const Kat kats[] = {
      {{{0u, 0u, 0u, 0u}}, {{0u, 0u}}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {{0xffffffffu, 0xffffffffu}},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {{0xa4093822u, 0x299f31d0u}},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    const Philox4x32Counter got = numerics::philox4x32_10(k.ctr, k.key);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(got.v[w], k.want[w]) << "word " << w;
  }
}

TEST(Philox, StepMappingUsesSeedAsKeyAndStepAsCounter) {
  const uint64_t seed = 0x299f31d0a4093822ull;
  const uint64_t step = 0x85a308d3243f6a88ull;
  const Philox4x32Counter got = numerics::philox_for_step(seed, step);
  const Philox4x32Counter ref =
      numerics::philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0u, 0u}}, {{0xa4093822u, 0x299f31d0u}});
  for (int w = 0; w < 4; ++w) EXPECT_EQ(got.v[w], ref.v[w]);
  // All-zero seed and step is the first KAT line.
  EXPECT_EQ(numerics::philox_for_step(0, 0).v[0], 0x6627e8d5u);
}

TEST(Philox, Uniform24IsExactAndInUnitInterval) {
  EXPECT_EQ(numerics::uniform24(0u), 0.0f);
  EXPECT_EQ(numerics::uniform24(0xffu), 0.0f);  // low 8 bits are discarded
  EXPECT_EQ(numerics::uniform24(0x100u), std::ldexp(1.0f, -24));
  EXPECT_EQ(numerics::uniform24(0xffffffffu), 1.0f - std::ldexp(1.0f, -24));
  EXPECT_EQ(sampler_uniform(0, 0), static_cast<float>(0x6627e8d5u >> 8) / 16777216.0f);
}

// ---- Greedy ----------------------------------------------------------------------------------

TEST(Sampler, GreedyPicksArgmaxOnRandomLogits) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed());
  Sampler s(plain(0.0f), 1000);
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<float> l = random_logits(rng, 1000, 3.0f);
    const auto want = std::max_element(l.begin(), l.end()) - l.begin();  // first of the maxima
    EXPECT_EQ(s.sample(l, {}, trial), want);
  }
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  Sampler s(plain(0.0f), 10);
  std::vector<float> l(10, -1.0f);
  l[7] = 4.0f;
  l[3] = 4.0f;
  l[9] = 4.0f;
  EXPECT_EQ(s.sample(l, {}, 0), 3);
  // +0.0 and -0.0 compare equal: a tie, so the lower id wins.
  std::vector<float> z(10, -1.0f);
  z[2] = -0.0f;
  z[1] = 0.0f;
  EXPECT_EQ(s.sample(z, {}, 0), 1);
  z[1] = -0.0f;
  z[2] = 0.0f;
  EXPECT_EQ(s.sample(z, {}, 0), 1);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed() + 1);
  SamplerParams p;  // defaults, but top_k = 1
  p.top_k = 1;
  p.seed = rng();
  Sampler k1(p, 500);
  Sampler greedy(plain(0.0f), 500);
  for (int step = 0; step < 100; ++step) {
    std::vector<float> l = random_logits(rng, 500, 2.0f);
    if (step % 10 == 0) l[step] = l[step + 1] = 100.0f;  // tied maxima: lowest id on both paths
    EXPECT_EQ(k1.sample(l, {}, step), greedy.sample(l, {}, step)) << "step " << step;
  }
}

// ---- Determinism -----------------------------------------------------------------------------

std::vector<int32_t> draw_sequence(uint64_t seed, const std::vector<float>& l, int n) {
  SamplerParams p = plain(1.0f);
  p.seed = seed;
  Sampler s(p, static_cast<int>(l.size()));
  std::vector<int32_t> out(n);
  for (int i = 0; i < n; ++i) out[i] = s.sample(l, {}, i);
  return out;
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferent) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed() + 2);
  const std::vector<float> l = random_logits(rng, 64, 0.5f);  // fairly flat: draws vary a lot
  const uint64_t seed = (static_cast<uint64_t>(rng()) << 32) | rng();
  const std::vector<int32_t> a = draw_sequence(seed, l, 1000);
  const std::vector<int32_t> b = draw_sequence(seed, l, 1000);
  EXPECT_EQ(a, b);
  const std::vector<int32_t> c = draw_sequence(seed ^ 1, l, 1000);
  EXPECT_NE(a, c);
  // Not degenerate: a flat 64-way distribution cannot put 1000 draws on few ids.
  std::vector<int32_t> distinct = a;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_GT(distinct.size(), 40u);
}

TEST(Sampler, StatelessAcrossCallOrder) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed() + 3);
  const std::vector<float> l = random_logits(rng, 64, 0.5f);
  const std::vector<int32_t> forward = draw_sequence(42, l, 200);
  SamplerParams p = plain(1.0f);
  p.seed = 42;
  Sampler s(p, 64);
  for (int i = 199; i >= 0; --i) EXPECT_EQ(s.sample(l, {}, i), forward[i]) << "step " << i;
}

// ---- Distribution ----------------------------------------------------------------------------

// Softmax in double of logits/temperature over `kept` ids (renormalized over that set).
std::vector<double> reference_probs(const std::vector<float>& l, float temperature,
                                    const std::vector<int>& kept) {
  std::vector<double> p(l.size(), 0.0);
  double mx = -INFINITY;
  for (int i : kept) mx = std::max(mx, static_cast<double>(l[i]) / temperature);
  double total = 0.0;
  for (int i : kept) total += p[i] = std::exp(static_cast<double>(l[i]) / temperature - mx);
  for (double& x : p) x /= total;
  return p;
}

// Empirical frequencies over n draws vs expected probabilities. Each count is binomial
// (n, p_i): its sd is sqrt(n p (1 - p)). A 5-sigma bound fails by chance with probability
// ~6e-7 per id. The sampler's own deviation from the double softmax (exp_canonical ~2 ulp,
// float sums over <= 8 terms, 2^-24 granularity of u) is below 1e-5 in probability, i.e.
// < 0.2 counts at n = 20000: far inside the bound. Ids with p = 0 must never appear.
void expect_frequencies(Sampler& s, const std::vector<float>& l, const std::vector<double>& p,
                        int n) {
  std::vector<int> count(l.size(), 0);
  for (int i = 0; i < n; ++i) ++count[s.sample(l, {}, static_cast<uint64_t>(i))];
  for (size_t i = 0; i < l.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(count[i], 0) << "id " << i << " was filtered out but drawn";
      continue;
    }
    const double mean = n * p[i];
    const double sd = std::sqrt(n * p[i] * (1.0 - p[i]));
    EXPECT_NEAR(count[i], mean, 5.0 * sd) << "id " << i << " p " << p[i];
  }
}

TEST(Sampler, FrequenciesMatchSoftmaxWithoutFilters) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const std::vector<float> l = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f, 1.5f, -0.25f};
  SamplerParams p = plain(0.7f);
  p.seed = fresh_seed();
  Sampler s(p, static_cast<int>(l.size()));
  expect_frequencies(s, l, reference_probs(l, 0.7f, {0, 1, 2, 3, 4, 5, 6, 7}), 20000);
}

TEST(Sampler, FrequenciesMatchFilteredSoftmax) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  // Temperature 1, so p_i / p_max = exp(l_i - 2). Sorted: id0 2.0 (1), id6 1.5 (0.607),
  // id1 1.0 (0.368), id2 0.5 (0.223), id3 0.0 (0.135), id7 -0.25, ...
  // top_k = 5 keeps {0, 6, 1, 2, 3}; min_p = 0.2 drops id3 (0.135 < 0.2);
  // top_p = 0.9 of total 2.198 = 1.978: running sums 1, 1.607, 1.975, 2.198 -> keeps all four
  // (1.975 is below 1.978, well clear of float rounding: margin 3e-3 >> 1e-6).
  const std::vector<float> l = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f, 1.5f, -0.25f};
  SamplerParams p = plain(1.0f);
  p.top_k = 5;
  p.min_p = 0.2f;
  p.top_p = 0.9f;
  p.seed = fresh_seed() + 7;
  Sampler s(p, static_cast<int>(l.size()));
  expect_frequencies(s, l, reference_probs(l, 1.0f, {0, 6, 1, 2}), 20000);
}

// The draw maps u to the inverse CDF: compare each pick with a double-precision inverse CDF,
// except where u is within 1e-5 of a CDF step (float rounding of the sums may move the edge by
// ~1e-7 there; 1e-5 leaves a 100x margin).
TEST(Sampler, DrawIsInverseCdfOfUniform) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const std::vector<float> l = {0.3f, -0.7f, 1.1f, 0.0f, 0.9f};
  SamplerParams p = plain(1.0f);
  p.seed = fresh_seed() + 11;
  Sampler s(p, 5);
  const std::vector<double> prob = reference_probs(l, 1.0f, {0, 1, 2, 3, 4});
  const std::vector<int> order = {2, 4, 0, 3, 1};  // logit descending
  int checked = 0;
  for (uint64_t step = 0; step < 3000; ++step) {
    const double u = sampler_uniform(p.seed, step);
    double cdf = 0.0;
    int want = order.back();
    bool near_edge = false;
    for (int id : order) {
      cdf += prob[id];
      near_edge = near_edge || std::fabs(u - cdf) < 1e-5;
      if (u < cdf) {
        want = id;
        break;
      }
    }
    if (near_edge) continue;
    ++checked;
    ASSERT_EQ(s.sample(l, {}, step), want) << "step " << step << " u " << u;
  }
  EXPECT_GT(checked, 2900);
}

// ---- Filters on constructed examples ---------------------------------------------------------

// Logits ln(q) for q = 1, 0.5, 0.2, 0.04, 0.01, scattered over ids, at temperature 1: the
// unnormalized probabilities are q (up to exp_canonical's ~2 ulp).
std::vector<float> constructed_logits() {
  std::vector<float> l(6, -INFINITY);  // id 5 is masked out
  l[4] = std::log(1.0f);
  l[1] = std::log(0.5f);
  l[3] = std::log(0.2f);
  l[0] = std::log(0.04f);
  l[2] = std::log(0.01f);
  return l;
}

std::vector<int32_t> ids_of(const std::vector<SamplerCandidate>& c) {
  std::vector<int32_t> ids;
  for (const SamplerCandidate& x : c) ids.push_back(x.id);
  return ids;
}

TEST(Sampler, CandidateOrderAndProbabilitiesUnfiltered) {
  Sampler s(plain(1.0f), 6);
  const std::vector<SamplerCandidate> c = s.candidates(constructed_logits(), {});
  EXPECT_EQ(ids_of(c), (std::vector<int32_t>{4, 1, 3, 0, 2, 5}));
  EXPECT_EQ(c[0].p, 1.0f);  // exp_canonical(0) is exactly 1
  const float q[] = {1.0f, 0.5f, 0.2f, 0.04f, 0.01f};
  // Tolerance: ln(q) rounded to float moves p by <= 0.5 ulp of |ln q| <= 2.4e-7 relative, and
  // exp_canonical adds <= 2 ulp (2.4e-7): 6e-7 relative covers both.
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(c[i].p, q[i], 6e-7f * q[i]) << i;
  EXPECT_EQ(c[5].p, 0.0f);  // masked (-inf) token: probability exactly 0
}

TEST(Sampler, MinPDropsBelowThreshold) {
  SamplerParams p = plain(1.0f);
  p.min_p = 0.05f;  // 0.04 and 0.01 fall below 0.05 * 1
  Sampler s(p, 6);
  EXPECT_EQ(ids_of(s.candidates(constructed_logits(), {})), (std::vector<int32_t>{4, 1, 3}));
  p.min_p = 0.3f;  // only 1 and 0.5 remain
  Sampler s2(p, 6);
  EXPECT_EQ(ids_of(s2.candidates(constructed_logits(), {})), (std::vector<int32_t>{4, 1}));
  p.min_p = 1.0f;  // the top candidate is always kept
  Sampler s3(p, 6);
  EXPECT_EQ(ids_of(s3.candidates(constructed_logits(), {})), (std::vector<int32_t>{4}));
}

TEST(Sampler, TopPKeepsShortestPrefixReachingMass) {
  // Total mass 1.75; running sums 1, 1.5, 1.7, 1.74, 1.75.
  SamplerParams p = plain(1.0f);
  p.top_p = 0.8f;  // threshold 1.4: the prefix {4, 1} reaches 1.5
  Sampler s(p, 6);
  EXPECT_EQ(ids_of(s.candidates(constructed_logits(), {})), (std::vector<int32_t>{4, 1}));
  p.top_p = 0.95f;  // threshold 1.6625: needs 1.7
  Sampler s2(p, 6);
  EXPECT_EQ(ids_of(s2.candidates(constructed_logits(), {})), (std::vector<int32_t>{4, 1, 3}));
  p.top_p = 0.5f;  // threshold 0.875: the first alone
  Sampler s3(p, 6);
  EXPECT_EQ(ids_of(s3.candidates(constructed_logits(), {})), (std::vector<int32_t>{4}));
  // min-p applies first, then top-p over what is left: {4, 1, 3} total 1.7, 0.95 -> 1.615.
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  Sampler s4(p, 6);
  EXPECT_EQ(ids_of(s4.candidates(constructed_logits(), {})), (std::vector<int32_t>{4, 1, 3}));
  // And the draw never leaves the kept set.
  for (uint64_t step = 0; step < 2000; ++step) {
    const int32_t id = s.sample(constructed_logits(), {}, step);
    ASSERT_TRUE(id == 4 || id == 1) << "step " << step << " id " << id;
  }
}

TEST(Sampler, TopKKeepsLargestWithIdTieBreak) {
  SamplerParams p = plain(1.0f);
  p.top_k = 3;
  Sampler s(p, 6);
  const std::vector<float> l = {1.0f, 3.0f, 1.0f, 2.0f, 1.0f, 0.0f};
  EXPECT_EQ(ids_of(s.candidates(l, {})), (std::vector<int32_t>{1, 3, 0}));
}

// The sampler sorts with two algorithms (a partial sort for top_k < vocab, integer keys for the
// whole vocabulary); both must produce the canonical order (logit desc, id asc) exactly, also
// with many ties, +0/-0, negative values and -inf.
TEST(Sampler, BothSortPathsGiveTheCanonicalOrder) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed() + 13);
  const int v = 3000;
  std::uniform_int_distribution<int> small(-20, 20);
  std::vector<float> l(v);
  for (float& x : l) x = 0.25f * static_cast<float>(small(rng));  // many exact ties
  for (int i = 0; i < v; i += 7) l[i] = (i % 2) ? -0.0f : 0.0f;
  for (int i = 3; i < v; i += 101) l[i] = -INFINITY;
  std::vector<int32_t> want(v);
  for (int i = 0; i < v; ++i) want[i] = i;
  std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  SamplerParams p = plain(1.0f);
  Sampler all(p, v);
  EXPECT_EQ(ids_of(all.candidates(l, {})), want);
  p.top_k = v - 1;
  Sampler partial(p, v);
  want.pop_back();
  EXPECT_EQ(ids_of(partial.candidates(l, {})), want);
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  std::mt19937 rng(fresh_seed() + 5);
  std::vector<float> l = random_logits(rng, 32, 0.1f);
  for (int i = 0; i < 32; i += 2) l[i] = -INFINITY;
  SamplerParams p = plain(1.5f);
  p.seed = rng();
  Sampler s(p, 32);
  for (uint64_t step = 0; step < 2000; ++step) ASSERT_EQ(s.sample(l, {}, step) % 2, 1);
}

// ---- Repetition penalty ----------------------------------------------------------------------

TEST(Sampler, RepetitionPenaltyChangesGreedyPick) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 1.2f;
  p.repeat_last_n = 64;
  Sampler s(p, 4);
  const std::vector<float> l = {2.0f, 1.9f, -1.0f, -5.0f};
  const std::vector<int32_t> none = {3};
  const std::vector<int32_t> seen0 = {2, 0, 3};
  EXPECT_EQ(s.sample(l, none, 0), 0);
  EXPECT_EQ(s.sample(l, seen0, 0), 1);  // 2.0 / 1.2 = 1.667 < 1.9
  // Off when repeat_penalty = 1.
  Sampler off(plain(0.0f), 4);
  EXPECT_EQ(off.sample(l, seen0, 0), 0);
}

TEST(Sampler, RepetitionPenaltyMultipliesNegativeLogits) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 1.2f;
  Sampler s(p, 3);
  const std::vector<float> l = {-0.5f, -0.55f, -9.0f};
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{2}, 0), 0);
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{0}, 0), 1);  // -0.5 * 1.2 = -0.6 < -0.55
}

TEST(Sampler, RepetitionPenaltyAppliesOncePerDistinctIdInWindow) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 1.2f;
  p.repeat_last_n = 3;
  Sampler s(p, 3);
  const std::vector<float> l = {2.0f, 1.5f, 0.0f};
  // Penalized once: 1.667 > 1.5 keeps id 0 (three times would give 1.157 and pick id 1).
  EXPECT_EQ(s.sample(l, std::vector<int32_t>{0, 0, 0}, 0), 0);
  // Outside the last 3 tokens: not penalized at all, so a stronger penalty still picks id 0.
  SamplerParams q = p;
  q.repeat_penalty = 2.0f;
  Sampler strong(q, 3);
  EXPECT_EQ(strong.sample(l, std::vector<int32_t>{0, 2, 2, 2}, 0), 0);
  EXPECT_EQ(strong.sample(l, std::vector<int32_t>{2, 2, 0}, 0), 1);
  // repeat_last_n = -1 means the whole history.
  q.repeat_last_n = -1;
  Sampler all(q, 3);
  EXPECT_EQ(all.sample(l, std::vector<int32_t>{0, 2, 2, 2, 2, 2, 2}, 0), 1);
}

TEST(Sampler, RepetitionPenaltyShiftsSampledCandidates) {
  SamplerParams p = plain(1.0f);
  p.top_k = 1;
  p.repeat_penalty = 1.5f;
  Sampler s(p, 3);
  const std::vector<float> l = {3.0f, 2.5f, 0.0f};
  const std::vector<int32_t> hist = {0};
  const std::vector<SamplerCandidate> c = s.candidates(l, hist);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id, 1);
  EXPECT_EQ(s.sample(l, hist, 12345), 1);
}

// ---- Invalid input ---------------------------------------------------------------------------

TEST(Sampler, RejectsBadInputWithError) {
  Sampler s(plain(1.0f), 4);
  const std::vector<float> good = {0.0f, 1.0f, 2.0f, 3.0f};
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, 1.0f}, {}, 0), Error);
  std::vector<float> bad = good;
  bad[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(s.sample(bad, {}, 0), Error);
  bad[2] = INFINITY;
  EXPECT_THROW(s.sample(bad, {}, 0), Error);
  EXPECT_THROW(s.sample(std::vector<float>(4, -INFINITY), {}, 0), Error);
  SamplerParams p = plain(1.0f);
  p.repeat_penalty = 1.1f;
  Sampler pen(p, 4);
  EXPECT_THROW(pen.sample(good, std::vector<int32_t>{4}, 0), Error);
  EXPECT_THROW(pen.sample(good, std::vector<int32_t>{-1}, 0), Error);
  // A tiny temperature that overflows the scaled logits is reported, not sampled from.
  Sampler cold(plain(1e-38f), 4);
  EXPECT_THROW(cold.sample(std::vector<float>{0.0f, 1e3f, 2.0f, 3.0f}, {}, 0), Error);
}

TEST(Sampler, RejectsBadParams) {
  const auto with = [](auto edit) {
    SamplerParams p;
    edit(p);
    return p;
  };
  EXPECT_THROW(Sampler(SamplerParams{}, 0), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.temperature = -0.1f; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.temperature = NAN; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.top_k = -1; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.top_p = 1.5f; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.min_p = -0.1f; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.repeat_penalty = 0.0f; }), 4), Error);
  EXPECT_THROW(Sampler(with([](SamplerParams& p) { p.repeat_last_n = -2; }), 4), Error);
  EXPECT_NO_THROW(Sampler(SamplerParams{}, 4));
}

}  // namespace
}  // namespace resident
