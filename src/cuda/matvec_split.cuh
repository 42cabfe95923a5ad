// Decode matvec (one token, int8-activation weight types) with each row's 32-blocks split over a
// thread block: the decode path's default (matvec_stream.cu stays behind
// RESIDENT_CUDA_LEGACY=split for A/B runs). Same arguments as matvec_stream: one launch covers
// up to three matrices with the same input (q/k/v, gate/up). Bits equal matvec()'s and the CPU's
// (docs/numerics.md: per-row sequential sum of the per-block partials).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec_stream.cuh"

namespace resident::cuda {

inline constexpr int kMaxSplitSmem = 48 * 1024;  // activation blocks + partials per thread block

// Whether matvec_split handles this weight type and row length (int8 types whose activation
// blocks and partials fit kMaxSplitSmem: rows up to ~36,000 elements).
bool matvec_split_supported(quant::Type type, int64_t n);

// Checks the preconditions (throws resident::Error) and launches on `stream` (with PDL).
void matvec_split(const MatvecStreamArgs& args, cudaStream_t stream);

// The decode path's choice: matvec_split, or matvec_stream under RESIDENT_CUDA_LEGACY=split.
bool matvec_decode_supported(quant::Type type, int64_t n);
void matvec_decode(const MatvecStreamArgs& args, cudaStream_t stream);

}  // namespace resident::cuda
