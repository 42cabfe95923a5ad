#include <cstdlib>
#include <cstring>

#include "cuda/cuda_check.h"
#include "cuda/fault_injection.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

__global__ void perturb_kernel(float* logits, int vocab, const int* pos) {
  const unsigned idx = static_cast<unsigned>(*pos) * 2654435761u % static_cast<unsigned>(vocab);
  logits[idx] = logits[idx] + 100.0f;
}

__global__ void spin_kernel(unsigned long long ns) {
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

}  // namespace

Fault fault_from_env() {
  const char* v = std::getenv("RESIDENT_FAULT");
  if (!v || !*v) return Fault::none;
  for (Fault f : {Fault::htod_per_token, Fault::double_upload, Fault::perturb_kernel,
                  Fault::throttle, Fault::bad_flag})
    if (std::strcmp(v, fault_name(f)) == 0) return f;
  throw Error(std::string("RESIDENT_FAULT: unknown fault '") + v +
              "' (htod_per_token, double_upload, perturb_kernel, throttle, bad_flag)");
}

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::none:
      return "none";
    case Fault::htod_per_token:
      return "htod_per_token";
    case Fault::double_upload:
      return "double_upload";
    case Fault::perturb_kernel:
      return "perturb_kernel";
    case Fault::throttle:
      return "throttle";
    case Fault::bad_flag:
      return "bad_flag";
  }
  return "?";
}

void perturb_logits(float* logits, int vocab, const int* pos, cudaStream_t stream) {
  perturb_kernel<<<1, 1, 0, stream>>>(logits, vocab, pos);
  CUDA_CHECK_LAUNCH();
}

void spin(unsigned microseconds, cudaStream_t stream) {
  spin_kernel<<<1, 1, 0, stream>>>(1000ull * microseconds);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
