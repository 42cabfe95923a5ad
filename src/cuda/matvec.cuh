// Weight matrix times activations, for one token (decode) or a batch (prefill): every
// (row, token) dot is computed in the canonical order of docs/numerics.md, so batching never
// changes a bit. CPU twin: quant::matmul_rows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::cuda {

struct MatvecArgs {
  quant::Type type = quant::Type::F32;
  const void* w = nullptr;  // (rows, n) in the type's block format, on the device
  int64_t rows = 0;
  int64_t n = 0;                           // row length; n % 32 == 0
  const numerics::ActBlock* xq = nullptr;  // (n_tokens, n / 32): quantized types
  const float* xf = nullptr;               // (n_tokens, n): float types
  int n_tokens = 1;
  float* out = nullptr;         // out[t * out_stride + r]
  int64_t out_stride = 0;       // >= rows
  const float* bias = nullptr;  // optional (rows): out = dot + bias[r]
  bool accumulate = false;      // out = out + dot (the residual add, fused)
};

// Checks the preconditions (throws resident::Error) and launches on `stream`.
void matvec(const MatvecArgs& args, cudaStream_t stream);

// n matrices that share their input (same format, row length, tokens, activations): one
// tensor-core launch for prefill batches where matmul_mma_multi takes them, else matvec() on
// each. RESIDENT_CUDA_LEGACY=mma_multi: always one launch per matrix.
void matvec_multi(const MatvecArgs* args, int n, cudaStream_t stream);

}  // namespace resident::cuda
