// The device sampler (sampler.cuh): four stream-ordered steps, each the parallel form of a step
// of sampler.cpp whose result does not depend on the parallel order (integer reductions, stores
// of identical values, a sort of unique keys), and one thread for the float sums whose order is
// fixed (sampler_pick).
#include <cub/device/device_radix_sort.cuh>
#include <string>

#include "cuda/block_argmax.cuh"
#include "cuda/cuda_check.h"
#include "cuda/sampler.cuh"
#include "numerics/philox.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kPrepareThreads = 256;
constexpr int kPenaltyThreads = 256;
constexpr int kFinishThreads = 1024;
constexpr int kFlagBad = 0;     // max over NaN/+inf logits i of (V - i); 0 = none
constexpr int kFlagFinite = 1;  // 1 if any logit != -inf

// sampler.cpp steps 0 (validation, as flags) and the unpenalized part of 1 and 3.
__global__ void prepare_kernel(const float* __restrict__ logits, int vocab, int id_bits,
                               float* __restrict__ pen, uint64_t* __restrict__ keys, int* flags) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= vocab) return;
  const float l = logits[i];
  // atomicMax of V - i keeps the smallest bad index: the one the CPU's in-order scan reports.
  if (l != l || l == INFINITY) atomicMax(&flags[kFlagBad], vocab - i);
  if (l != -INFINITY) flags[kFlagFinite] = 1;  // every writer stores the same value
  pen[i] = l;
  keys[i] = sampler_key(l, i, id_bits);
}

// sampler.cpp step 1. Each window entry recomputes its id's penalized value from the original
// logit, so duplicates store identical values (the id is penalized once, as on the CPU) and the
// result does not depend on which thread writes last.
__global__ void penalty_kernel(const DeviceSamplerParams* __restrict__ params,
                               const float* __restrict__ logits, int vocab, int id_bits,
                               const int32_t* __restrict__ history, const int* history_len,
                               float* __restrict__ pen, uint64_t* __restrict__ keys) {
  const float r = params->repeat_penalty;
  const int n = params->repeat_last_n;
  if (r == 1.0f || n == 0) return;
  const int len = *history_len;
  const int window = (n < 0 || n > len) ? len : n;
  for (int j = len - window + static_cast<int>(threadIdx.x); j < len; j += blockDim.x) {
    const int32_t t = history[j];
    // Ids in the history are prompt ids checked at prefill or ids picked here: always in range.
    if (t < 0 || t >= vocab) continue;
    const float v = sampler_penalize(logits[t], r);
    pen[t] = v;
    keys[t] = sampler_key(v, t, id_bits);
  }
}

// Block argmax, ties to the lowest id (cuda/argmax.cu's algorithm): the sequential scan's answer
// for input without NaN. Every thread of the block must call it; the result is valid in thread 0.
__device__ int block_argmax(const float* __restrict__ v, int n) {
  float bv = -INFINITY;
  int bi = n;  // sentinel: loses every tie against a real index
  for (int i = threadIdx.x; i < n; i += kFinishThreads)
    if (argmax_better(v[i], i, bv, bi)) bv = v[i], bi = i;
  block_best<kFinishThreads>(&bv, &bi);
  return bi < n ? bi : 0;  // all -inf cannot reach here (status check), kept like cuda::argmax
}

// sampler.cpp steps 2 (greedy) or 4 to 8, then the bookkeeping the CPU backend does after a pick
// (history append) and the decode step's position advance. Every branch condition before a
// __syncthreads is block-uniform (kernel arguments, shared values, or x0, which every thread
// computes from the same inputs).
__global__ void __launch_bounds__(kFinishThreads)
    finish_kernel(const DeviceSamplerParams* __restrict__ params, const float* __restrict__ pen,
                  const uint64_t* __restrict__ sorted, float* __restrict__ cand_p, int vocab,
                  int id_bits, bool greedy, int32_t* token, int* pos, int advance, int32_t* history,
                  int* history_len, int* flags, SampleStatus* status) {
  __shared__ int s_code, s_index, s_keep, s_last;
  const int tid = threadIdx.x;
  const DeviceSamplerParams P = *params;
  if (tid == 0) {
    const int bad = flags[kFlagBad], finite = flags[kFlagFinite];
    flags[kFlagBad] = 0;  // ready for the next step's prepare_kernel
    flags[kFlagFinite] = 0;
    s_code = bad > 0 ? kSampleLogitNotFinite : (finite ? kSampleOk : kSampleAllMasked);
    s_index = bad > 0 ? vocab - bad : 0;
    s_keep = P.k;
    s_last = 0;
  }
  __syncthreads();

  int code = s_code;  // block-uniform
  int32_t pick = 0;   // meaningful in thread 0
  if (code == kSampleOk) {
    if (greedy) {
      pick = block_argmax(pen, vocab);
    } else {
      const int k = P.k;
      const float inv_t = P.inv_t;
      // Step 4: x_0 of the first candidate (the largest penalized logit).
      const float x0 = pen[sampler_key_id(sorted[0], id_bits)] * inv_t;
      if (!isfinite(x0)) {
        code = kSampleScaledNotFinite;  // every thread takes this branch (same x0)
      } else {
        // Step 5, in parallel: each p_i depends only on its own candidate.
        for (int i = tid; i < k; i += kFinishThreads)
          cand_p[i] = sampler_candidate_p(pen[sampler_key_id(sorted[i], id_bits)], inv_t, x0);
        __syncthreads();
        // Step 6: the longest prefix with p_i >= threshold ends at the smallest i >= 1 below it.
        // Each thread's strided slice ascends, so its first hit is its smallest; atomicMin over
        // the block gives the global one.
        if (P.min_p > 0.0f) {
          const float threshold = P.min_p * cand_p[0];
          for (int i = 1 + tid; i < k; i += kFinishThreads)
            if (cand_p[i] < threshold) {
              atomicMin(&s_keep, i);
              break;
            }
        }
        __syncthreads();
        const int keep = s_keep;
        // The last non-zero p among the kept candidates bounds the serial loops (sampler_pick).
        int last = 0;
        for (int i = tid; i < keep; i += kFinishThreads)
          if (cand_p[i] != 0.0f) last = i;
        if (last > 0) atomicMax(&s_last, last);
        __syncthreads();
        if (tid == 0) {
          // Steps 7 and 8; the step is the position after this token's forward pass, as the CPU
          // backend passes pos_ (read before this kernel advances it).
          const uint64_t step = static_cast<uint64_t>(*pos + advance);
          const float u = numerics::uniform24(numerics::philox_for_step(P.seed, step).v[0]);
          const int j = sampler_pick(cand_p, keep, s_last, P.top_p, u);
          pick = sampler_key_id(sorted[j], id_bits);
        }
      }
    }
  }
  if (tid == 0) {
    // On an error the id is 0 (a valid embedding row for the next step); the host throws.
    const int32_t id = code == kSampleOk ? pick : 0;
    *token = id;
    status->code = code;
    status->index = s_index;
    const int len = *history_len;
    history[len] = id;  // capacity checked on the host before the step (require_room)
    *history_len = len + 1;
    *pos += advance;
  }
}

__global__ void add_kernel(int* value, int n) {
  *value += n;
}

}  // namespace

DeviceSamplerParams make_device_sampler_params(const SamplerParams& p, int vocab) {
  DeviceSamplerParams d;
  d.k = (p.top_k == 0 || p.top_k >= vocab) ? vocab : p.top_k;
  d.inv_t = p.temperature > 0.0f ? 1.0f / p.temperature : 0.0f;  // the CPU's float division
  d.top_p = p.top_p;
  d.min_p = p.min_p;
  d.repeat_penalty = p.repeat_penalty;
  d.repeat_last_n = p.repeat_last_n;
  d.seed = p.seed;
  return d;
}

DeviceSampler::DeviceSampler(int vocab, int history_capacity, cudaStream_t stream)
    : vocab_(vocab), id_bits_(sampler_id_bits(vocab)), history_capacity_(history_capacity) {
  if (vocab < 1 || history_capacity < 1)
    throw Error("cuda sampler: vocab and history capacity must be positive");
  params_ = DeviceBuffer<DeviceSamplerParams>(1);
  pen_ = DeviceBuffer<float>(vocab);
  keys_ = DeviceBuffer<uint64_t>(vocab);
  sorted_ = DeviceBuffer<uint64_t>(vocab);
  cand_p_ = DeviceBuffer<float>(vocab);
  history_ = DeviceBuffer<int32_t>(history_capacity);
  history_len_dev_ = DeviceBuffer<int>(1);
  flags_ = DeviceBuffer<int>(2);
  status_ = DeviceBuffer<SampleStatus>(1);
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&status_host_), sizeof(SampleStatus),
                           cudaHostAllocDefault));
  *status_host_ = SampleStatus{};

  const int end_bit = 32 + id_bits_;
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, sort_temp_bytes_, keys_.get(), sorted_.get(),
                                            vocab, 0, end_bit, stream));
  sort_temp_ = DeviceBuffer<uint8_t>(sort_temp_bytes_);
  // Defined contents everywhere, then one real sort: CUB initializes lazily on first use (device
  // attributes, kernel loading), which must not happen during a graph capture.
  CUDA_CHECK(cudaMemsetAsync(params_.get(), 0, params_.bytes(), stream));
  CUDA_CHECK(cudaMemsetAsync(keys_.get(), 0, keys_.bytes(), stream));
  CUDA_CHECK(cudaMemsetAsync(status_.get(), 0, status_.bytes(), stream));
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(sort_temp_.get(), sort_temp_bytes_, keys_.get(),
                                            sorted_.get(), vocab, 0, end_bit, stream));
  reset_history(stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

DeviceSampler::~DeviceSampler() {
  if (status_host_) cudaFreeHost(status_host_);
}

void DeviceSampler::set_params(const SamplerParams& params, cudaStream_t stream) {
  // Pageable source: cudaMemcpyAsync returns once the source has been staged, so a local is safe.
  const DeviceSamplerParams d = make_device_sampler_params(params, vocab_);
  inv_t_ = d.inv_t;
  CUDA_CHECK(cudaMemcpyAsync(params_.get(), &d, sizeof d, cudaMemcpyHostToDevice, stream));
  reset_history(stream);
}

void DeviceSampler::reset_history(cudaStream_t stream) {
  history_len_ = 0;
  CUDA_CHECK(cudaMemsetAsync(history_len_dev_.get(), 0, history_len_dev_.bytes(), stream));
  CUDA_CHECK(cudaMemsetAsync(flags_.get(), 0, flags_.bytes(), stream));
}

void DeviceSampler::require_room(int n) const {
  if (n < 0 || static_cast<int64_t>(history_len_) + n > history_capacity_)
    throw Error("cuda sampler: token history full (" + std::to_string(history_len_) + " + " +
                std::to_string(n) + " > " + std::to_string(history_capacity_) + "); reset first");
}

void DeviceSampler::append_prompt(const int32_t* ids, int n, cudaStream_t stream) {
  require_room(n);
  if (n == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(history_.get() + history_len_, ids, n * sizeof(int32_t),
                             cudaMemcpyDeviceToDevice, stream));
  add_kernel<<<1, 1, 0, stream>>>(history_len_dev_.get(), n);
  CUDA_CHECK_LAUNCH();
  history_len_ += n;
}

void DeviceSampler::enqueue(const float* logits, int32_t* token, int* pos, int advance, bool greedy,
                            cudaStream_t stream) {
  if (!logits || !token || !pos || advance < 0)
    throw Error("cuda sampler: null pointer or negative advance");
  const int blocks = (vocab_ + kPrepareThreads - 1) / kPrepareThreads;
  prepare_kernel<<<blocks, kPrepareThreads, 0, stream>>>(logits, vocab_, id_bits_, pen_.get(),
                                                         keys_.get(), flags_.get());
  CUDA_CHECK_LAUNCH();
  penalty_kernel<<<1, kPenaltyThreads, 0, stream>>>(params_.get(), logits, vocab_, id_bits_,
                                                    history_.get(), history_len_dev_.get(),
                                                    pen_.get(), keys_.get());
  CUDA_CHECK_LAUNCH();
  if (!greedy)
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(sort_temp_.get(), sort_temp_bytes_, keys_.get(),
                                              sorted_.get(), vocab_, 0, 32 + id_bits_, stream));
  finish_kernel<<<1, kFinishThreads, 0, stream>>>(
      params_.get(), pen_.get(), sorted_.get(), cand_p_.get(), vocab_, id_bits_, greedy, token, pos,
      advance, history_.get(), history_len_dev_.get(), flags_.get(), status_.get());
  CUDA_CHECK_LAUNCH();
}

void DeviceSampler::enqueue_status_readback(cudaStream_t stream) {
  CUDA_CHECK(cudaMemcpyAsync(status_host_, status_.get(), sizeof(SampleStatus),
                             cudaMemcpyDeviceToHost, stream));
}

// The CPU sampler's messages (sampler.cpp), so both backends report a broken forward pass alike.
void DeviceSampler::check() const {
  const SampleStatus s = *status_host_;
  switch (s.code) {
    case kSampleOk:
      return;
    case kSampleLogitNotFinite:
      throw Error("sampler: logit " + std::to_string(s.index) + " is not finite");
    case kSampleAllMasked:
      throw Error("sampler: every logit is -inf");
    case kSampleScaledNotFinite:
      throw Error("sampler: the largest logit times 1/temperature (" + std::to_string(inv_t_) +
                  ") is not finite; use temperature 0 for greedy");
    default:
      throw Error("cuda sampler: unknown status " + std::to_string(s.code));
  }
}

uint64_t DeviceSampler::bytes() const {
  return params_.bytes() + pen_.bytes() + keys_.bytes() + sorted_.bytes() + cand_p_.bytes() +
         sort_temp_.bytes() + history_.bytes() + history_len_dev_.bytes() + flags_.bytes() +
         status_.bytes();
}

}  // namespace resident::cuda
