// Batched matmul for prefill on the int8 tensor cores (mma.sync m16n8k32), bit-identical to
// matvec (docs/numerics.md): the tensor core forms the exact integer dot of each 32-block, and
// each thread turns its dots into the format's float partial p_j and adds them in j order from
// 0.0f, exactly like the CUDA-core kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec.cuh"

namespace resident::cuda {

// Launches the tensor-core matmul on `stream` and returns true, or returns false without
// launching anything when this path does not take the case: float weight types, fewer than 16
// tokens, n / 32 not a multiple of 4, activation blocks not 16-byte aligned, more than
// 65535 * 64 rows. `row_bytes` is quant::row_bytes of one weight row. The caller (matvec) has
// already checked the common preconditions.
bool matmul_mma(const MatvecArgs& a, int64_t row_bytes, cudaStream_t stream);

// The same for up to kMaxMmaSegments matrices that share the weight format, row length, tokens
// and activation blocks (gate and up; q, k and v), in ONE launch: their tiles fill the GPU's
// waves together instead of each launch ending in a partly empty wave. Each matrix keeps its own
// rows, output, stride, bias and epilogue. Returns false (launching nothing) where matmul_mma
// would for any of them, or when they do not share their input.
inline constexpr int kMaxMmaSegments = 3;
bool matmul_mma_multi(const MatvecArgs* segs, int n_segs, int64_t row_bytes, cudaStream_t stream);

}  // namespace resident::cuda
