// Sampling flags shared by run and chat.
#pragma once

#include <CLI/CLI.hpp>
#include <random>

#include "engine/sampler.h"

namespace resident::cli {

struct SamplingFlags {
  SamplerParams params;
  int64_t seed = -1;  // -1: draw one at random (printed with --verbose)

  SamplerParams resolve() const {
    SamplerParams p = params;
    p.seed = seed >= 0 ? static_cast<uint64_t>(seed) : std::random_device{}();
    return p;
  }
};

inline void add_sampling_options(CLI::App& app, SamplingFlags& f) {
  app.add_option("--temp", f.params.temperature, "temperature (0 = greedy)")
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-k", f.params.top_k, "top-k (0 = whole vocabulary)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--top-p", f.params.top_p, "top-p (1 = off)")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--min-p", f.params.min_p, "min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repeat-penalty", f.params.repeat_penalty, "repetition penalty (1 = off)")
      ->check(CLI::Range(0.01f, 100.0f));
  app.add_option("--repeat-last-n", f.params.repeat_last_n,
                 "tokens the penalty looks back over (-1 = all)")
      ->check(CLI::Range(-1, 1 << 30));
  app.add_option("--seed", f.seed, "RNG seed (same seed, same text; default random)")
      ->check(CLI::Range(int64_t{-1}, INT64_MAX));
}

}  // namespace resident::cli
