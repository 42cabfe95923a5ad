// Token sampler: repetition penalty, top-k, temperature, min-p, top-p, then one seeded draw.
//
// The CPU implementation here is the executable spec of the CUDA sampler, which must pick the
// same token bit for bit (GWR-004 parity also holds for seeded sampling). So every float
// operation is written in a fixed order and uses only +, *, / and numerics::exp_canonical, and
// the random number is a pure function of (seed, step) (Philox4x32-10, numerics/philox.h): the
// sampler keeps no state between calls. docs/sampler.md describes the algorithm; the comment
// block in sampler.cpp is the normative step-by-step definition.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace resident {

struct SamplerParams {
  float temperature = 0.8f;     // 0 => greedy (argmax, ties to the lowest id); must be >= 0
  int top_k = 40;               // keep the k largest logits; 0 => the whole vocabulary
  float top_p = 0.95f;          // nucleus: shortest prefix with cumulative mass >= top_p; 1 => off
  float min_p = 0.05f;          // drop tokens with p < min_p * p_max; 0 => off
  float repeat_penalty = 1.0f;  // llama.cpp rule on recently seen ids; 1 => off
  int repeat_last_n = 64;       // how many trailing history tokens are penalized; 0 off, -1 all
  uint64_t seed = 0;            // Philox key
};

// One candidate after filtering: exposed so tests (and the CUDA twin's tests) can compare the
// kept set and its unnormalized probabilities exactly.
struct SamplerCandidate {
  int32_t id;
  float logit;  // after penalty and temperature scaling
  float p;      // exp_canonical(logit - max logit), unnormalized
};

class Sampler {
 public:
  // Throws resident::Error if a parameter is out of range or vocab <= 0.
  Sampler(SamplerParams params, int vocab);

  // Picks the next token for decode step `step` from `logits` (size vocab). `history` is the
  // prompt plus the tokens generated so far (only the last repeat_last_n are used). The result
  // depends only on (params, logits, history, step): calling with the same arguments again, in
  // any order, gives the same id. Throws resident::Error on a wrong logits size, a NaN or +inf
  // logit, every logit -inf, or a history id outside [0, vocab).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history, uint64_t step);

  // The candidate list that the draw of sample() chooses from, in its canonical order (logit
  // descending, ties by id ascending). Empty when the params are greedy.
  std::vector<SamplerCandidate> candidates(std::span<const float> logits,
                                           std::span<const int32_t> history);

  const SamplerParams& params() const { return params_; }
  int vocab() const { return vocab_; }
  bool greedy() const { return params_.temperature == 0.0f; }

 private:
  void prepare(std::span<const float> logits, std::span<const int32_t> history);
  void filter();

  SamplerParams params_;
  int vocab_;
  // Scratch reused across calls (no state carried: every call overwrites it fully).
  std::vector<float> penalized_;
  std::vector<SamplerCandidate> cand_;
  std::vector<int32_t> recent_;  // distinct ids of the penalty window
  std::vector<int32_t> order_;   // ids being partially sorted (top_k < vocab)
  std::vector<uint64_t> keys_;   // sort keys (whole-vocabulary sort, see sort_key in sampler.cpp)
};

// The uniform u in [0, 1) of decode step `step` for this seed (24-bit, exact in float).
float sampler_uniform(uint64_t seed, uint64_t step);

}  // namespace resident
