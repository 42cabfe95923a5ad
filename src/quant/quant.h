// Quantized weight formats: reference dequantization, quantizers (for `resident synth`), and
// the CPU matmul kernels that follow docs/numerics.md.
//
// A weight matrix is stored as GGUF stores it: `rows` rows of `n` elements each, every row a
// whole number of blocks of its type. Activations meet quantized weights as int8 blocks of 32
// (numerics::ActBlock); float weight types (F32, F16, BF16) meet float activations.
#pragma once

#include <cstddef>
#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::quant {

// dst[0..n) = the exact float values the block format encodes (bit-identical to the `gguf`
// Python package's NumPy dequantizers).
void dequantize_row(Type type, const void* src, float* dst, int64_t n);

// Encode n floats (n a multiple of the block size). Used by `resident synth` and tests.
void quantize_row(Type type, const float* src, void* dst, int64_t n);

// x (n floats, n % 32 == 0) -> n/32 activation blocks.
void quantize_activations(const float* x, numerics::ActBlock* out, int64_t n);

// True if this weight type is multiplied against int8 activation blocks (all block-quantized
// types); false for F32/F16/BF16, which use the float activations.
bool uses_int8_activations(Type type);

// Canonical dot product of one weight row with one activation vector: the sum, in order
// j = 0, 1, ..., of the per-32-element-block partials defined in docs/numerics.md.
// `xq` is used by quantized types, `xf` by float types; the other may be null.
float dot_row(Type type, const void* row, const numerics::ActBlock* xq, const float* xf, int64_t n);

// out[t * out_stride + r] = dot_row(W row r, activation t) for r in [row_begin, row_end) and
// t in [0, n_tokens). Activation t is xq + t * (n / 32) or xf + t * n. Bit-identical to calling
// dot_row for each pair: batching changes speed, never results.
void matmul_rows(Type type, const void* w, int64_t n, const numerics::ActBlock* xq, const float* xf,
                 int n_tokens, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end);

}  // namespace resident::quant
