// Activation quantization before a quantized matmul (docs/numerics.md "Activations at a quantized
// matmul"): every 32 floats become one numerics::ActBlock. CPU twin: quant::quantize_activations.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"

namespace resident::cuda {

// x: (n_tokens, n) floats, n % 32 == 0; out: (n_tokens, n / 32) blocks.
void quantize_activations(const float* x, numerics::ActBlock* out, int64_t n, int n_tokens,
                          cudaStream_t stream);

}  // namespace resident::cuda
