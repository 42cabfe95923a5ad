// Scalar reference of the canonical weight-row dot products (docs/numerics.md), written as
// literally as the spec reads. The AVX2 kernels in matmul_avx2.cpp must match it bit for bit;
// tests compare them on random data. Internal to src/quant and its tests.
#pragma once

#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::quant {

// Partial p_j of 32-element block j (for k-quants: sub-block j of the row, counting across
// super-blocks) of a weight row against activation block a (quantized types) or the 32 floats
// x (float types, x = xf + 32 j).
float block_partial_reference(Type type, const void* row, int64_t j, const numerics::ActBlock* a,
                              const float* x);

// ((0 + p_0) + p_1) + ... : the canonical dot product.
float dot_row_reference(Type type, const void* row, const numerics::ActBlock* xq, const float* xf,
                        int64_t n);

}  // namespace resident::quant
