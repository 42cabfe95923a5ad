// Elementwise ops of the forward pass. CPU twins: cpu::swiglu, cpu::add_inplace.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace resident::cuda {

// h[i] = silu_canonical(g[i]) * u[i]; h may alias g or u.
void swiglu(const float* g, const float* u, float* h, int64_t n, cudaStream_t stream);

// x[i] = x[i] + y[i] (the residual add).
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);

// y[t * n + i] = y[t * n + i] + b[i] for t < n_tokens (the bias add after a matmul).
void add_bias(float* y, const float* b, int n, int n_tokens, cudaStream_t stream);

}  // namespace resident::cuda
