// The seeded sampler on the device: the exact twin of resident::Sampler (src/engine/sampler.cpp,
// whose comment block is normative), enqueued inside the captured decode graph. It reads the
// logits, the sampling parameters (device memory, written once per request at reset), the token
// history (device memory, appended on the device) and the step = the device position, and writes
// the picked id, the status of the step and the next position back to device memory: no host
// input per token.
//
// Kernels of one pick (docs/cuda.md, "Sampling"):
//   prepare   (grid over V)  validation flags, penalized copy pen = l, keys k_i = key(l_i, i)
//   penalty   (one block)    for each entry t of the history window: pen[t] = penalize(l[t]),
//                            k_t = key(pen[t], t) -- computed from the ORIGINAL logit, so an id
//                            that occurs several times is written several times with the same
//                            value: "once per distinct id" without flags or a race on the value
//   sort      (CUB)          all V keys ascending = (logit desc, id asc); skipped when greedy
//   finish    (one block)    greedy: argmax of pen. Else: p_i = exp_canonical(x_i - x_0) in
//                            parallel, min-p cut (first i >= 1 below the threshold: a min
//                            reduction), then thread 0 runs the sequential sums (sampler_pick)
//
// The per-element bodies and the sequential part are RESIDENT_HD functions below, so the tests
// run them on the host against Sampler too.
#pragma once

#include <cstdint>

#include "numerics/canonical.h"
#include "numerics/host_device.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include <memory>

#include "cuda/device_buffer.h"
#include "engine/sampler.h"
#endif

namespace resident::cuda {

// Fixed for one request; written to device memory by DeviceSampler::set_params at reset.
struct DeviceSamplerParams {
  int k = 1;           // effective top-k: V when top_k is 0 or >= V
  float inv_t = 0.0f;  // 1.0f / temperature, computed on the host (IEEE division, as the CPU)
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repeat_penalty = 1.0f;
  int repeat_last_n = 0;
  uint64_t seed = 0;
};

// Outcome of one pick, written by the finish kernel and read back with the token. The codes map
// to the CPU sampler's errors (same messages, DeviceSampler::check).
enum SampleCode : int32_t {
  kSampleOk = 0,
  kSampleLogitNotFinite = 1,  // index = the smallest id whose logit is NaN or +inf
  kSampleAllMasked = 2,       // every logit is -inf
  kSampleScaledNotFinite = 3  // the largest logit times 1/temperature overflowed
};

struct SampleStatus {
  int32_t code = kSampleOk;
  int32_t index = 0;
};

// Bits needed for an id in [0, vocab): the key packs (logit order, id) into 32 + bits bits, so
// the radix sort skips the always-zero bits in between.
inline int sampler_id_bits(int vocab) {
  int b = 1;
  while (b < 31 && (int64_t{1} << b) < vocab) ++b;
  return b;
}

// Ascending order of these keys is (logit descending, id ascending), the order of sampler.cpp's
// sort_key with the id field narrowed to id_bits: float bits mapped to an unsigned order
// (negatives: all bits flipped; positives: sign bit set), inverted for descending. -0.0 is folded
// into +0.0 so that the two tie (and go by id), as the float comparison does. Never sees NaN in
// a step whose status is ok.
RESIDENT_HD uint64_t sampler_key(float logit, int32_t id, int id_bits) {
  uint32_t bits = numerics::float_to_bits(logit == 0.0f ? 0.0f : logit);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~bits) << id_bits) | static_cast<uint32_t>(id);
}

RESIDENT_HD int32_t sampler_key_id(uint64_t key, int id_bits) {
  return static_cast<int32_t>(key & ((uint64_t{1} << id_bits) - 1));
}

// sampler.cpp step 1, from the original logit.
RESIDENT_HD float sampler_penalize(float l, float r) {
  return l > 0.0f ? l / r : l * r;
}

// sampler.cpp steps 4 and 5 for one candidate: x_i = l_i * inv_t, p_i = exp_canonical(x_i - x_0).
RESIDENT_HD float sampler_candidate_p(float penalized_logit, float inv_t, float x0) {
  const float x = penalized_logit * inv_t;
  return numerics::exp_canonical(x - x0);
}

// sampler.cpp steps 7 (top-p) and 8 (draw) over p[0..keep), the candidates left by min-p, run
// sequentially exactly as the CPU does. Returns the index of the picked candidate.
// `last` is the largest index < keep with p != 0 (p[0] == 1, so last >= 0): every later p is +0,
// and adding +0 to a running sum that is already >= 1 leaves it unchanged, so no later iteration
// can change a sum or satisfy a comparison the earlier ones did not; the loops stop at last + 1
// (same bits, same decisions), which bounds the serial work by the non-zero candidates when
// top_k = 0. The fallbacks (keep unchanged, the last kept candidate) are those of the full loops.
RESIDENT_HD int sampler_pick(const float* p, int keep, int last, float top_p, float u) {
  int lim = keep < last + 1 ? keep : last + 1;
  if (top_p < 1.0f) {
    float total = 0.0f;
    for (int j = 0; j < lim; ++j) total = total + p[j];
    const float threshold = top_p * total;
    float cum = 0.0f;
    int kept = keep;
    for (int j = 0; j < lim; ++j) {
      cum = cum + p[j];
      if (cum >= threshold) {
        kept = j + 1;
        break;
      }
    }
    keep = kept;
    lim = keep < last + 1 ? keep : last + 1;
  }
  float total = 0.0f;
  for (int j = 0; j < lim; ++j) total = total + p[j];
  const float target = u * total;
  float cum = 0.0f;
  for (int j = 0; j < lim; ++j) {
    cum = cum + p[j];
    if (cum > target) return j;
  }
  return keep - 1;
}

#if defined(__CUDACC__)

// Host-side construction of the device params (top_k 0 or >= V -> V; inv_t as the CPU computes
// it). The params must already be valid (the backend validates them with a Sampler first).
DeviceSamplerParams make_device_sampler_params(const SamplerParams& p, int vocab);

// Device memory of the sampler, allocated once at load (no allocation per request or token).
class DeviceSampler {
 public:
  // history_capacity bounds the device history (prompt ids + sampled ids of one request).
  // Runs one radix sort outside any capture (CUB's lazy initialization happens here, not inside
  // the graph capture).
  DeviceSampler(int vocab, int history_capacity, cudaStream_t stream);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // Per request (reset): writes the params (one small host -> device copy, not per token) and
  // empties the history. reset_history alone is for logits(), which keeps the params.
  void set_params(const SamplerParams& params, cudaStream_t stream);
  void reset_history(cudaStream_t stream);

  // Host mirror of the device history length; throws resident::Error when n more ids would not
  // fit (cannot happen within n_ctx: history = position + number of prefills <= 2 n_ctx).
  void require_room(int n) const;
  // Appends n prompt ids already on the device (after the prefill's upload): a device -> device
  // copy plus a device length update, stream-ordered.
  void append_prompt(const int32_t* ids, int n, cudaStream_t stream);
  // Counts ids the finish kernel appended (one per pick) in the host mirror.
  void note_picks(int n) { history_len_ += n; }

  // Enqueues one pick (capturable: kernels and CUB only, fixed launch shapes): reads logits
  // (vocab floats) and step = *pos + advance, writes *token, the status, appends the id to the
  // history, then *pos += advance. greedy: argmax of the penalized logits (temperature 0 with a
  // repetition penalty; plain greedy stays on cuda::argmax).
  void enqueue(const float* logits, int32_t* token, int* pos, int advance, bool greedy,
               cudaStream_t stream);

  // Status read-back: enqueue the device -> host copy (pinned) before the caller's event, then
  // check() after the event: throws resident::Error with the CPU sampler's message.
  void enqueue_status_readback(cudaStream_t stream);
  void check() const;

  uint64_t bytes() const;

 private:
  int vocab_;
  int id_bits_;
  int history_capacity_;
  int history_len_ = 0;
  float inv_t_ = 0.0f;  // for the error message
  DeviceBuffer<DeviceSamplerParams> params_;
  DeviceBuffer<float> pen_;        // penalized logits (vocab)
  DeviceBuffer<uint64_t> keys_;    // unsorted keys (vocab)
  DeviceBuffer<uint64_t> sorted_;  // sorted keys (vocab)
  DeviceBuffer<float> cand_p_;     // candidate probabilities (vocab)
  DeviceBuffer<uint8_t> sort_temp_;
  size_t sort_temp_bytes_ = 0;
  DeviceBuffer<int32_t> history_;
  DeviceBuffer<int> history_len_dev_;
  DeviceBuffer<int> flags_;  // [0] max(V - i) over NaN/+inf logits i (0: none), [1] any
                             // logit != -inf; reset to 0 by the finish kernel
  DeviceBuffer<SampleStatus> status_;
  SampleStatus* status_host_ = nullptr;  // pinned
};

#endif  // __CUDACC__

}  // namespace resident::cuda
