// Decode matvec (one token, int8-activation weight types) as a weight stream: one launch can
// cover several matrices that read the same activations (q/k/v, gate/up), each warp owns a
// contiguous run of rows and keeps the next rows' bytes in flight (cp.async into its own shared
// memory) while it computes the current one. Every (row) dot is computed exactly as the spec's
// sequential sum (docs/numerics.md), so the bits equal matvec()'s and the CPU's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::cuda {

// One matrix of a streamed launch: out[r] = W[r] . x (+ bias[r]) or out[r] += W[r] . x.
struct StreamSegment {
  const void* w = nullptr;  // (rows, n) in the launch's block type, on the device
  int64_t rows = 0;
  float* out = nullptr;
  const float* bias = nullptr;  // optional
  bool accumulate = false;      // out = out + dot (the residual add, fused)
};

constexpr int kMaxStreamSegments = 3;

struct MatvecStreamArgs {
  quant::Type type = quant::Type::Q8_0;    // shared by every segment
  int64_t n = 0;                           // row length, shared; n % 256 == 0 for k-quants
  const numerics::ActBlock* xq = nullptr;  // (n / 32) blocks of the one token
  StreamSegment seg[kMaxStreamSegments];
  int n_segments = 0;
};

// Whether matvec_stream handles this weight type and row length (int8 types whose row fits the
// per-warp staging buffer).
bool matvec_stream_supported(quant::Type type, int64_t n);

// Checks the preconditions (throws resident::Error) and launches on `stream` (with PDL).
void matvec_stream(const MatvecStreamArgs& args, cudaStream_t stream);

}  // namespace resident::cuda
