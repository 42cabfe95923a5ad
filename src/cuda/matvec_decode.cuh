// Decode matvec (one token, int8-activation weight types): each row's 32-blocks split over a
// thread block (matvec_decode.cu). One launch covers up to three matrices with the same input
// (q/k/v, gate/up). Bits equal matvec()'s and the CPU's (docs/numerics.md: per-row sequential
// sum of the per-block partials).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::cuda {

// One matrix of a decode launch: out[r] = W[r] . x (+ bias[r]) or out[r] += W[r] . x.
struct DecodeSegment {
  const void* w = nullptr;  // (rows, n) in the launch's block type, on the device
  int64_t rows = 0;
  float* out = nullptr;
  const float* bias = nullptr;  // optional
  bool accumulate = false;      // out = out + dot (the residual add, fused)
  bool alt = false;             // the weights are in the launch's alt_type, not its type
};

inline constexpr int kMaxDecodeSegments = 3;

struct MatvecDecodeArgs {
  quant::Type type = quant::Type::Q8_0;      // of every segment but those marked alt
  quant::Type alt_type = quant::Type::Q8_0;  // of the alt segments (matvec_decode_pair_supported)
  int64_t n = 0;                             // row length, shared; n % 256 == 0 for k-quants
  const numerics::ActBlock* xq = nullptr;    // (n / 32) blocks of the one token
  DecodeSegment seg[kMaxDecodeSegments];
  int n_segments = 0;
};

inline constexpr int kMaxDecodeSmem = 48 * 1024;  // per thread block: no opt-in needed

// Whether matvec_decode handles this weight type and row length (int8 types whose activation
// blocks, two row groups and partials fit kMaxDecodeSmem).
bool matvec_decode_supported(quant::Type type, int64_t n);

// Whether one launch takes segments of both formats (only Q4_K with Q6_K: the q/k/v of Q4_K_M
// files, where some layers keep v in Q6_K).
bool matvec_decode_pair_supported(quant::Type type, quant::Type alt_type, int64_t n);

// Checks the preconditions (throws resident::Error) and launches on `stream` (with PDL).
void matvec_decode(const MatvecDecodeArgs& args, cudaStream_t stream);

}  // namespace resident::cuda
