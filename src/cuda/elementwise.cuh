// Elementwise ops of the forward pass. CPU twins: cpu::swiglu, cpu::add_inplace.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "numerics/canonical.h"

namespace resident::cuda {

// h[i] = silu_canonical(g[i]) * u[i]; h may alias g or u.
void swiglu(const float* g, const float* u, float* h, int64_t n, cudaStream_t stream);

// swiglu plus the activation quantization of h (hq: n / 32 blocks; n % 32 == 0, rows of
// consecutive tokens are contiguous), bit-identical to swiglu then quantize_activations.
void swiglu_quant(const float* g, const float* u, float* h, numerics::ActBlock* hq, int64_t n,
                  cudaStream_t stream);

// x[i] = x[i] + y[i] (the residual add).
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);

// y[t * n + i] = y[t * n + i] + b[i] for t < n_tokens (the bias add after a matmul).
void add_bias(float* y, const float* b, int n, int n_tokens, cudaStream_t stream);

}  // namespace resident::cuda
