// RMSNorm of docs/numerics.md: ss = sum256(x_i * x_i); r = 1 / sqrtf(ss / n + eps);
// y_i = (x_i * r) * w_i. CPU twin: cpu::rmsnorm.
#pragma once

#include <cuda_runtime.h>

namespace resident::cuda {

// x, y: (n_tokens, n); w: (n). y may alias x.
void rmsnorm(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
             cudaStream_t stream);

}  // namespace resident::cuda
