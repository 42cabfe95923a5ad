// CPU operations of the forward pass, each the executable spec (docs/numerics.md) of its CUDA
// twin in src/cuda/. Exposed for tests: the CUDA tests compare each kernel with these.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace resident::cpu {

// Canonical long reduction sum256 (docs/numerics.md).
float sum256(std::span<const float> v);

// y = (x * (1 / sqrt(mean(x^2) + eps))) * w, over n = x.size() elements.
void rmsnorm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> y);

// Rope table: cos/sin for positions [0, n_ctx) and pair index i < head_dim / 2, computed in
// double and rounded once. Layout: table[(pos * half + i) * 2 + {0: cos, 1: sin}].
std::vector<float> rope_table(int n_ctx, int head_dim, float theta,
                              std::span<const float> freq_factors);

// Rotates every head of x (n_heads * head_dim floats) in place for position pos.
void rope_apply(float* x, int n_heads, int head_dim, bool neox, const float* table, int pos);

// fp16 <-> float, round-to-nearest-even (what __float2half_rn does).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// Canonical dot of two head_dim = 32*m vectors, q float, k fp16 (dot128 in the spec).
// AVX2; dot_head_reference is the scalar statement of the spec it must equal bit for bit.
float dot_head(const float* q, const uint16_t* k, int head_dim);
float dot_head_reference(const float* q, const uint16_t* k, int head_dim);

// Attention of one query head over positions [0, n_pos): k and v rows of head_dim fp16 with
// a stride of `row_stride` halves between positions. `scratch` holds n_pos floats.
// head_dim must be a multiple of 32 and at most 256. attention_head_reference: scalar spec.
void attention_head(const float* q, const uint16_t* k, const uint16_t* v, int n_pos, int head_dim,
                    int row_stride, float kq_scale, float* scratch, float* out);
void attention_head_reference(const float* q, const uint16_t* k, const uint16_t* v, int n_pos,
                              int head_dim, int row_stride, float kq_scale, float* scratch,
                              float* out);

// h[i] = silu(g[i]) * u[i] (h may alias g). AVX2; swiglu_reference is the scalar spec it
// must equal bit for bit.
void swiglu(const float* g, const float* u, float* h, int64_t n);
void swiglu_reference(const float* g, const float* u, float* h, int64_t n);

// y[i] = numerics::exp_canonical(x[i]), 8 lanes at a time (bit-identical; y may alias x).
void exp_canonical_n(const float* x, float* y, int64_t n);

// x[i] += y[i].
void add_inplace(float* x, const float* y, int64_t n);

// Greedy pick: argmax, ties to the lowest id.
int32_t argmax(std::span<const float> logits);

}  // namespace resident::cpu
