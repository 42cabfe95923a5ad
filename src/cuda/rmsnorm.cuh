// RMSNorm of docs/numerics.md: ss = sum256(x_i * x_i); r = 1 / sqrtf(ss / n + eps);
// y_i = (x_i * r) * w_i. CPU twin: cpu::rmsnorm.
#pragma once

#include <cuda_runtime.h>

#include "numerics/canonical.h"

namespace resident::cuda {

// x, y: (n_tokens, n); w: (n). y may alias x.
void rmsnorm(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
             cudaStream_t stream);

// rmsnorm plus the activation quantization of y for the next matmul (yq: (n_tokens, n / 32)
// blocks), bit-identical to rmsnorm then quantize_activations. Needs rmsnorm_quant_fits(n):
// n % 32 == 0 and n <= 12288 (y is staged in shared memory). y may alias x.
// parts: thread blocks per row for n <= 4096 (each computes the row's sum, then writes its
// share of y and yq: the same bits); 0 takes RESIDENT_NORM_PARTS, default 1 (an A/B switch:
// not yet measured on a GPU); 1 when y aliases x.
bool rmsnorm_quant_fits(int n);
void rmsnorm_quant(const float* x, const float* w, float eps, int n, int n_tokens, float* y,
                   numerics::ActBlock* yq, cudaStream_t stream, int parts = 0);

}  // namespace resident::cuda
