// Three passes, each parallel over (chunk of 256 positions, head, query token):
//   1. scores: one warp per position computes dot128 exactly as specified (lane l sums elements
//      l, l+32, ..., then the shuffle tree 16..1), scales it, and each chunk records its max;
//   2. chunk sums: m = max of the chunk maxima (exact, order-free), e_t = exp_canonical(s_t - m),
//      and the possum chunk results (32 lane partials over t = 256c + l + 32i, tree) for the
//      denominator and for every output dimension d;
//   3. combine: chunk results added in chunk order from 0.0f, then one division.
// Chunks beyond the live positions exit at once, so a grid sized for n_ctx costs little.
#include <cuda_fp16.h>

#include <string>

#include "cuda/attention.cuh"
#include "cuda/cuda_check.h"
#include "numerics/canonical.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float half_bits(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ float lane_tree(float v) {
  for (int s = 16; s >= 1; s /= 2) v = v + __shfl_down_sync(kFull, v, s);
  return v;  // lane 0 holds lane[0] of the spec's tree
}

struct Dims {
  int n_heads, group, head_dim, kv_stride, n_ctx, n_chunks;
  float kq_scale;
};

__global__ void __launch_bounds__(256)
    scores_kernel(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
                  const int* __restrict__ pos, Dims d, float* scores, float* chunk_max) {
  const int c = blockIdx.x, h = blockIdx.y, tok = blockIdx.z;
  const int n_pos = *pos + tok + 1;
  if (c * kAttnChunk >= n_pos) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* qh = q + (static_cast<int64_t>(tok) * d.n_heads + h) * d.head_dim;
  const uint16_t* kh = k_cache + (h / d.group) * d.head_dim;
  float qr[kAttnMaxHeadDim / 32];
#pragma unroll
  for (int e = 0; e < kAttnMaxHeadDim / 32; ++e)
    if (lane + 32 * e < d.head_dim) qr[e] = qh[lane + 32 * e];
  float* srow = scores + (static_cast<int64_t>(tok) * d.n_heads + h) * d.n_ctx;

  float wmax = -INFINITY;
  for (int i = 0; i < 32; ++i) {
    const int t = c * kAttnChunk + warp * 32 + i;
    if (t >= n_pos) break;  // uniform across the warp
    const uint16_t* kt = kh + static_cast<int64_t>(t) * d.kv_stride;
    float acc = qr[0] * half_bits(kt[lane]);
#pragma unroll
    for (int e = 1; e < kAttnMaxHeadDim / 32; ++e)
      if (lane + 32 * e < d.head_dim) acc = acc + qr[e] * half_bits(kt[lane + 32 * e]);
    acc = lane_tree(acc);
    const float s = acc * d.kq_scale;
    if (lane == 0) srow[t] = s;
    wmax = s > wmax ? s : wmax;  // meaningful in lane 0 only (the tree's result lane)
  }
  __shared__ float warp_max[8];
  if (lane == 0) warp_max[warp] = wmax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = warp_max[0];
    for (int w = 1; w < 8; ++w) m = warp_max[w] > m ? warp_max[w] : m;
    chunk_max[(static_cast<int64_t>(tok) * d.n_heads + h) * d.n_chunks + c] = m;
  }
}

__global__ void __launch_bounds__(256)
    chunk_sums_kernel(const uint16_t* __restrict__ v_cache, const int* __restrict__ pos, Dims d,
                      const float* __restrict__ scores, const float* __restrict__ chunk_max,
                      float* chunk_den, float* chunk_val) {
  const int c = blockIdx.x, h = blockIdx.y, tok = blockIdx.z;
  const int n_pos = *pos + tok + 1;
  if (c * kAttnChunk >= n_pos) return;
  const int live_chunks = (n_pos + kAttnChunk - 1) / kAttnChunk;
  const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;

  __shared__ float e[kAttnChunk];
  __shared__ float part[32][kAttnMaxHeadDim + 1];
  __shared__ float m_shared;
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int i = 0; i < live_chunks; ++i) {
      const float x = chunk_max[th * d.n_chunks + i];
      m = x > m ? x : m;
    }
    m_shared = m;
  }
  __syncthreads();
  const float m = m_shared;
  const float* srow = scores + th * d.n_ctx;
  for (int i = threadIdx.x; i < kAttnChunk; i += blockDim.x) {
    const int t = c * kAttnChunk + i;
    e[i] = t < n_pos ? numerics::exp_canonical(srow[t] - m) : 0.0f;
  }
  __syncthreads();

  // Denominator: warp 0, lane l sums t = 256c + l + 32i in i order.
  if (threadIdx.x < 32) {
    const int l = threadIdx.x;
    float acc = 0.0f;
    for (int i = 0; i < 8; ++i)
      if (c * kAttnChunk + l + 32 * i < n_pos) acc = acc + e[l + 32 * i];
    acc = lane_tree(acc);
    if (l == 0) chunk_den[th * d.n_chunks + c] = acc;
  }
  // Values: the lane partial (l, dim) for every l < 32 and dim < head_dim, consecutive threads
  // on consecutive dims so that each position's V row is read coalesced.
  const uint16_t* vh = v_cache + (h / d.group) * d.head_dim;
  for (int idx = threadIdx.x; idx < 32 * d.head_dim; idx += blockDim.x) {
    const int l = idx / d.head_dim, dim = idx % d.head_dim;
    float acc = 0.0f;
    for (int i = 0; i < 8; ++i) {
      const int t = c * kAttnChunk + l + 32 * i;
      if (t < n_pos)
        acc = acc + e[l + 32 * i] * half_bits(vh[static_cast<int64_t>(t) * d.kv_stride + dim]);
    }
    part[l][dim] = acc;
  }
  __syncthreads();
  for (int s = 16; s >= 1; s /= 2) {
    for (int idx = threadIdx.x; idx < s * d.head_dim; idx += blockDim.x) {
      const int l = idx / d.head_dim, dim = idx % d.head_dim;
      part[l][dim] = part[l][dim] + part[l + s][dim];
    }
    __syncthreads();
  }
  for (int dim = threadIdx.x; dim < d.head_dim; dim += blockDim.x)
    chunk_val[(th * d.n_chunks + c) * d.head_dim + dim] = part[0][dim];
}

__global__ void combine_kernel(const int* __restrict__ pos, Dims d,
                               const float* __restrict__ chunk_den,
                               const float* __restrict__ chunk_val, float* out) {
  const int h = blockIdx.x, tok = blockIdx.y;
  const int n_pos = *pos + tok + 1;
  const int live_chunks = (n_pos + kAttnChunk - 1) / kAttnChunk;
  const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;
  for (int dim = threadIdx.x; dim < d.head_dim; dim += blockDim.x) {
    float den = 0.0f, val = 0.0f;
    for (int c = 0; c < live_chunks; ++c) {
      den = den + chunk_den[th * d.n_chunks + c];
      val = val + chunk_val[(th * d.n_chunks + c) * d.head_dim + dim];
    }
    out[th * d.head_dim + dim] = val / den;
  }
}

}  // namespace

AttentionScratchSizes attention_scratch_sizes(int max_tokens, int n_heads, int n_ctx,
                                              int head_dim) {
  const int64_t th = static_cast<int64_t>(max_tokens) * n_heads;
  const int64_t chunks = attention_chunks(n_ctx);
  return {th * n_ctx, th * chunks, th * chunks, th * chunks * head_dim};
}

void attention(const AttentionArgs& a, const AttentionScratch& s, cudaStream_t stream) {
  const std::string what = "cuda attention: ";
  if (!a.q || !a.k_cache || !a.v_cache || !a.pos || !a.out) throw Error(what + "null pointer");
  if (!s.scores || !s.chunk_max || !s.chunk_den || !s.chunk_val) throw Error(what + "no scratch");
  if (a.head_dim < 32 || a.head_dim % 32 != 0 || a.head_dim > kAttnMaxHeadDim)
    throw Error(what + "head_dim " + std::to_string(a.head_dim) +
                " must be a multiple of 32 up to 256");
  if (a.n_heads < 1 || a.n_kv_heads < 1 || a.n_heads % a.n_kv_heads != 0)
    throw Error(what + "n_heads must be a multiple of n_kv_heads");
  if (a.kv_stride < a.n_kv_heads * a.head_dim) throw Error(what + "kv_stride too small");
  if (a.n_tokens < 1 || a.n_tokens > s.max_tokens || a.n_heads != s.n_heads ||
      a.head_dim != s.head_dim)
    throw Error(what + "scratch does not fit this call");
  if (a.max_positions < a.n_tokens || a.max_positions > s.n_ctx)
    throw Error(what + "max_positions " + std::to_string(a.max_positions) +
                " outside [n_tokens, n_ctx]");
  Dims d{a.n_heads, a.n_heads / a.n_kv_heads,  a.head_dim, a.kv_stride,
         s.n_ctx,   attention_chunks(s.n_ctx), a.kq_scale};
  const dim3 grid(attention_chunks(a.max_positions), a.n_heads, a.n_tokens);
  scores_kernel<<<grid, 256, 0, stream>>>(a.q, a.k_cache, a.pos, d, s.scores, s.chunk_max);
  CUDA_CHECK_LAUNCH();
  chunk_sums_kernel<<<grid, 256, 0, stream>>>(a.v_cache, a.pos, d, s.scores, s.chunk_max,
                                              s.chunk_den, s.chunk_val);
  CUDA_CHECK_LAUNCH();
  combine_kernel<<<dim3(a.n_heads, a.n_tokens), a.head_dim, 0, stream>>>(a.pos, d, s.chunk_den,
                                                                         s.chunk_val, a.out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
