// Debug-only fault injection (RESIDENT_FAULT, unset by default) that proves each gate of the
// gpu-weight-residency-v1 contract can fail (`resident verify` under each fault must turn exactly
// its gate to FAIL):
//   htod_per_token  one 4-byte host-to-device cudaMemcpyAsync per decoded token   -> GWR-003
//   double_upload   the weights uploaded a second time into another arena          -> GWR-001
//   perturb_kernel  the LM head's output perturbed (+100 on one logit per step)    -> GWR-004
//   throttle        a 10 ms busy-wait kernel inside every decode step              -> GWR-002
//   bad_flag        the unified-memory allocation flag recorded in lower case      -> GWR-005
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace resident::cuda {

enum class Fault { none, htod_per_token, double_upload, perturb_kernel, throttle, bad_flag };

// Reads RESIDENT_FAULT; throws resident::Error naming an unknown value.
Fault fault_from_env();
const char* fault_name(Fault fault);

// perturb_kernel: logits[(*pos * 2654435761) % vocab] += 100 (pos read from device memory).
void perturb_logits(float* logits, int vocab, const int* pos, cudaStream_t stream);

// throttle: one thread spins for `microseconds` of GPU time (%globaltimer).
void spin(unsigned microseconds, cudaStream_t stream);

}  // namespace resident::cuda
