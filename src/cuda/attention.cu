// Three passes, each parallel over (chunk of 256 positions, head, query token):
//   1. scores: one warp per position computes dot128 exactly as specified (lane l sums elements
//      l, l+32, ..., then the shuffle tree 16..1), scales it, and each chunk records its max;
//   2. chunk sums: m = max of the chunk maxima (exact, order-free), e_t = exp_canonical(s_t - m),
//      and the possum chunk results (32 lane partials over t = 256c + l + 32i, tree) for the
//      denominator and for every output dimension d;
//   3. combine: chunk results added in chunk order from 0.0f, then one division.
// Chunks beyond the live positions exit at once, so a grid sized for n_ctx costs little.
// Prefill passes (more than one token) run passes 1 and 2 as register-tiled products
// (attention_prefill.cu) where the head shape allows; RESIDENT_CUDA_LEGACY=attn_gemm selects the
// kernels below instead: tiled over query tokens at depth (scores_tiled_kernel,
// chunk_sums_tiled_kernel: K/V read once per tile of tokens and group of q heads), else untiled
// (RESIDENT_CUDA_LEGACY=attn_tile: always untiled). Same bits on every path.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/attention.cuh"
#include "cuda/attention_prefill.cuh"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/legacy_switch.h"
#include "cuda/pdl.cuh"
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
    scores_legacy_kernel(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
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
    chunk_sums_legacy_kernel(const uint16_t* __restrict__ v_cache, const int* __restrict__ pos,
                             Dims d, const float* __restrict__ scores,
                             const float* __restrict__ chunk_max, float* chunk_den,
                             float* chunk_val) {
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

// Fast pass 1: one THREAD per position (256 per block), so a chunk's 256 dot products run in
// parallel instead of 32 after each other per warp. The thread forms the spec's 32 lane partials
// itself (partial l = q_l k_l + q_{l+32} k_{l+32} + ..., products then adds in element order),
// then the same tree s = 16..1 in registers: the same operations in the same order as the
// shuffle version. K rows are read as 16-byte vectors (8 halves), all of a row's loads in flight.
template <int E>  // head_dim = 32 * E
__global__ void __launch_bounds__(256)
    scores_kernel(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
                  const int* __restrict__ pos, Dims d, float* scores, float* chunk_max) {
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x, h = blockIdx.y, tok = blockIdx.z;
  const int n_pos = *pos + tok + 1;
  if (c * kAttnChunk >= n_pos) return;
  __shared__ float qs[32 * E];
  __shared__ float warp_max[kAttnChunk / 32];
  const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;
  for (int i = threadIdx.x; i < 32 * E; i += blockDim.x) qs[i] = q[th * (32 * E) + i];
  __syncthreads();
  const int t = c * kAttnChunk + threadIdx.x;
  float best = -INFINITY;  // NaN scores are left out of the max, as in the CPU scan
  if (t < n_pos) {
    const uint4* kt = reinterpret_cast<const uint4*>(k_cache + (h / d.group) * (32 * E) +
                                                     static_cast<int64_t>(t) * d.kv_stride);
    float p[32];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      uint4 raw[4];  // elements 32e .. 32e + 31
#pragma unroll
      for (int u = 0; u < 4; ++u) raw[u] = kt[4 * e + u];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const __half2* hp = reinterpret_cast<const __half2*>(&raw[u]);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const float2 kf = __half22float2(hp[w]);  // exact
          const int l = 8 * u + 2 * w;
          const float a = qs[32 * e + l] * kf.x, b = qs[32 * e + l + 1] * kf.y;
          p[l] = e == 0 ? a : p[l] + a;
          p[l + 1] = e == 0 ? b : p[l + 1] + b;
        }
      }
    }
#pragma unroll
    for (int lvl = 4; lvl >= 0; --lvl)  // s = 16, 8, 4, 2, 1
#pragma unroll
      for (int l = 0; l < (1 << lvl); ++l) p[l] = p[l] + p[l + (1 << lvl)];
    const float sc = p[0] * d.kq_scale;
    scores[th * d.n_ctx + t] = sc;
    if (sc == sc) best = sc;
  }
  // Max over the block: exact whatever the order (no NaN, -inf for idle threads).
  for (int s = 16; s >= 1; s /= 2) {
    const float o = __shfl_xor_sync(kFull, best, s);
    best = o > best ? o : best;
  }
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = warp_max[0];
    for (int w = 1; w < kAttnChunk / 32; ++w) m = warp_max[w] > m ? warp_max[w] : m;
    chunk_max[th * d.n_chunks + c] = m;
  }
}

// Fast pass 2: thread (l, g) = (tid / 8, tid % 8) owns the lane partials (l, dim) for the 4E
// dims g * 4E .. g * 4E + 4E - 1 and walks its 8 positions t = 256c + l + 32i in i order (the
// spec's order), with every V load of the 8 positions issued before the adds (rows past the last
// position read the last live row and are skipped, never added). The tree over l runs per dim in
// one thread from shared memory.
template <int E>
__global__ void __launch_bounds__(256)
    chunk_sums_kernel(const uint16_t* __restrict__ v_cache, const int* __restrict__ pos, Dims d,
                      const float* __restrict__ scores, const float* __restrict__ chunk_max,
                      float* chunk_den, float* chunk_val) {
  constexpr int kHd = 32 * E, kDims = 4 * E;
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x, h = blockIdx.y, tok = blockIdx.z;
  const int n_pos = *pos + tok + 1;
  if (c * kAttnChunk >= n_pos) return;
  const int live_chunks = (n_pos + kAttnChunk - 1) / kAttnChunk;
  const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;

  __shared__ float e_s[kAttnChunk];
  __shared__ float part[32][kHd + 1];
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
  {
    const int t = c * kAttnChunk + threadIdx.x;
    e_s[threadIdx.x] = t < n_pos ? numerics::exp_canonical(scores[th * d.n_ctx + t] - m) : 0.0f;
  }
  __syncthreads();

  if (threadIdx.x < 32) {  // denominator: lane l sums t = 256c + l + 32i in i order
    const int l = threadIdx.x;
    float acc = 0.0f;
    for (int i = 0; i < 8; ++i)
      if (c * kAttnChunk + l + 32 * i < n_pos) acc = acc + e_s[l + 32 * i];
    acc = lane_tree(acc);
    if (l == 0) chunk_den[th * d.n_chunks + c] = acc;
  }

  const int l = threadIdx.x / 8, g = threadIdx.x % 8;
  const uint16_t* vh = v_cache + (h / d.group) * kHd + g * kDims;
  uint2 raw[8][E];  // 4 halves per uint2
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int t = c * kAttnChunk + l + 32 * i;
    t = t < n_pos ? t : n_pos - 1;
    const uint2* vr = reinterpret_cast<const uint2*>(vh + static_cast<int64_t>(t) * d.kv_stride);
#pragma unroll
    for (int u = 0; u < E; ++u) raw[i][u] = vr[u];
  }
  float acc[kDims];
#pragma unroll
  for (int k = 0; k < kDims; ++k) acc[k] = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (c * kAttnChunk + l + 32 * i < n_pos) {
      const float ei = e_s[l + 32 * i];
#pragma unroll
      for (int u = 0; u < E; ++u) {
        const __half2* hp = reinterpret_cast<const __half2*>(&raw[i][u]);
        const float2 v0 = __half22float2(hp[0]), v1 = __half22float2(hp[1]);
        acc[4 * u + 0] = acc[4 * u + 0] + ei * v0.x;
        acc[4 * u + 1] = acc[4 * u + 1] + ei * v0.y;
        acc[4 * u + 2] = acc[4 * u + 2] + ei * v1.x;
        acc[4 * u + 3] = acc[4 * u + 3] + ei * v1.y;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kDims; ++k) part[l][g * kDims + k] = acc[k];
  __syncthreads();
  // The tree over l for one dim, in place in that dim's column (one thread per column).
  for (int dim = threadIdx.x; dim < kHd; dim += blockDim.x) {
    for (int s = 16; s >= 1; s /= 2)
      for (int i = 0; i < s; ++i) part[i][dim] = part[i][dim] + part[i + s][dim];
    chunk_val[(th * d.n_chunks + c) * kHd + dim] = part[0][dim];
  }
}

// Pass 3, plus (when out_q is set) the activation quantization of the result for the output
// projection: the shared numerics::quantize_act_block on the same floats, one thread per block of
// 32 dims (head_dim % 32 == 0, so a block never straddles two heads).
__global__ void combine_kernel(const int* __restrict__ pos, Dims d,
                               const float* __restrict__ chunk_den,
                               const float* __restrict__ chunk_val, float* out,
                               numerics::ActBlock* out_q) {
  __shared__ float o_s[kAttnMaxHeadDim];
  pdl_trigger();
  pdl_wait();
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
    const float o = val / den;
    out[th * d.head_dim + dim] = o;
    o_s[dim] = o;
  }
  if (out_q) {
    __syncthreads();
    const int nb = d.head_dim / numerics::kActBlock;
    for (int b = threadIdx.x; b < nb; b += blockDim.x)
      numerics::quantize_act_block(o_s + b * numerics::kActBlock, out_q + th * nb + b);
  }
}

// Prefill: passes 1 and 2 tiled over query tokens. The passes above read a chunk's K (or V)
// rows once per (query token, head); with a 512-token prompt that is ~0.8 GB of L2 reads per
// layer and pass. Here a block owns (chunk c, kv head g, a tile of up to 8 query tokens): each
// thread loads its K row (pass 1) or its 8 positions' V slices (pass 2) into registers once and
// walks every query of the tile (the tile's tokens x the group's q heads), doing for each
// exactly the per-(query, position) work of scores_kernel / chunk_sums_kernel: the same floats
// in the same order, so the same bits.
constexpr int kTileTokens = 8;
constexpr int kTileFloats = 8192;  // q vectors of one tile in shared memory (32 KB)
constexpr int kTileMaxQueries = 128;

inline int tile_tokens(int group, int head_dim) {
  return std::clamp(kTileFloats / (group * head_dim), 1, kTileTokens);
}

template <int E>  // head_dim = 32 * E
__global__ void __launch_bounds__(256, 2)
    scores_tiled_kernel(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
                        const int* __restrict__ pos, Dims d, int n_tokens, int tq, float* scores,
                        float* chunk_max) {
  constexpr int kHd = 32 * E;
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x, g = blockIdx.y, tok0 = blockIdx.z * tq;
  const int n_tok = min(tq, n_tokens - tok0);
  const int p0 = *pos;
  const int n_pos_last = p0 + tok0 + n_tok;  // positions the tile's last token sees
  if (c * kAttnChunk >= n_pos_last) return;
  __shared__ float qs[kTileFloats];  // query qi = tok_local * group + head_local
  __shared__ float warp_max[kTileMaxQueries][kAttnChunk / 32];
  const int nq = n_tok * d.group;
  for (int i = threadIdx.x; i < nq * kHd; i += blockDim.x) {
    const int qi = i / kHd, dim = i % kHd;
    const int tok = tok0 + qi / d.group, h = g * d.group + qi % d.group;
    qs[i] = q[(static_cast<int64_t>(tok) * d.n_heads + h) * kHd + dim];
  }
  const int t = c * kAttnChunk + threadIdx.x;
  uint4 kraw[4 * E];  // this thread's K row (position t), read once for every query
  if (t < n_pos_last) {
    const uint4* kt =
        reinterpret_cast<const uint4*>(k_cache + g * kHd + static_cast<int64_t>(t) * d.kv_stride);
#pragma unroll
    for (int u = 0; u < 4 * E; ++u) kraw[u] = kt[u];
  }
  __syncthreads();

  for (int qi = 0; qi < nq; ++qi) {
    const int tok = tok0 + qi / d.group, h = g * d.group + qi % d.group;
    const int n_pos = p0 + tok + 1;
    if (c * kAttnChunk >= n_pos) continue;  // uniform across the block
    const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;
    const float* qv = qs + qi * kHd;
    float best = -INFINITY;  // NaN scores are left out of the max, as in the CPU scan
    if (t < n_pos) {
      float p[32];
#pragma unroll
      for (int e = 0; e < E; ++e) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const __half2* hp = reinterpret_cast<const __half2*>(&kraw[4 * e + u]);
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float2 kf = __half22float2(hp[w]);  // exact
            const int l = 8 * u + 2 * w;
            const float a = qv[32 * e + l] * kf.x, b = qv[32 * e + l + 1] * kf.y;
            p[l] = e == 0 ? a : p[l] + a;
            p[l + 1] = e == 0 ? b : p[l + 1] + b;
          }
        }
      }
#pragma unroll
      for (int lvl = 4; lvl >= 0; --lvl)  // s = 16, 8, 4, 2, 1
#pragma unroll
        for (int l = 0; l < (1 << lvl); ++l) p[l] = p[l] + p[l + (1 << lvl)];
      const float sc = p[0] * d.kq_scale;
      scores[th * d.n_ctx + t] = sc;
      if (sc == sc) best = sc;
    }
    for (int s = 16; s >= 1; s /= 2) {  // max: exact whatever the order
      const float o = __shfl_xor_sync(kFull, best, s);
      best = o > best ? o : best;
    }
    if (threadIdx.x % 32 == 0) warp_max[qi][threadIdx.x / 32] = best;
  }
  __syncthreads();
  for (int qi = threadIdx.x; qi < nq; qi += blockDim.x) {
    const int tok = tok0 + qi / d.group, h = g * d.group + qi % d.group;
    if (c * kAttnChunk >= p0 + tok + 1) continue;
    float m = warp_max[qi][0];
    for (int w = 1; w < kAttnChunk / 32; ++w) m = warp_max[qi][w] > m ? warp_max[qi][w] : m;
    chunk_max[(static_cast<int64_t>(tok) * d.n_heads + h) * d.n_chunks + c] = m;
  }
}

template <int E>
__global__ void __launch_bounds__(256, 2)
    chunk_sums_tiled_kernel(const uint16_t* __restrict__ v_cache, const int* __restrict__ pos,
                            Dims d, int n_tokens, int tq, const float* __restrict__ scores,
                            const float* __restrict__ chunk_max, float* chunk_den,
                            float* chunk_val) {
  constexpr int kHd = 32 * E, kDims = 4 * E;
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x, g = blockIdx.y, tok0 = blockIdx.z * tq;
  const int n_tok = min(tq, n_tokens - tok0);
  const int p0 = *pos;
  const int n_pos_last = p0 + tok0 + n_tok;
  if (c * kAttnChunk >= n_pos_last) return;
  __shared__ float e_s[kAttnChunk];
  __shared__ float part[32][kHd + 1];
  __shared__ float m_shared;

  // Thread (l, gd) owns the lane partials (l, dim) for the 4E dims gd * 4E ..; its 8 positions'
  // V slices are read once (rows past the tile's last position read that row: never added).
  const int l = threadIdx.x / 8, gd = threadIdx.x % 8;
  const uint16_t* vh = v_cache + g * kHd + gd * kDims;
  uint2 raw[8][E];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int t = c * kAttnChunk + l + 32 * i;
    t = t < n_pos_last ? t : n_pos_last - 1;
    const uint2* vr = reinterpret_cast<const uint2*>(vh + static_cast<int64_t>(t) * d.kv_stride);
#pragma unroll
    for (int u = 0; u < E; ++u) raw[i][u] = vr[u];
  }

  const int nq = n_tok * d.group;
  for (int qi = 0; qi < nq; ++qi) {
    const int tok = tok0 + qi / d.group, h = g * d.group + qi % d.group;
    const int n_pos = p0 + tok + 1;
    if (c * kAttnChunk >= n_pos) continue;  // uniform across the block
    const int live_chunks = (n_pos + kAttnChunk - 1) / kAttnChunk;
    const int64_t th = static_cast<int64_t>(tok) * d.n_heads + h;
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
    {
      const int t = c * kAttnChunk + threadIdx.x;
      e_s[threadIdx.x] = t < n_pos ? numerics::exp_canonical(scores[th * d.n_ctx + t] - m) : 0.0f;
    }
    __syncthreads();

    if (threadIdx.x < 32) {  // denominator: lane l sums t = 256c + l + 32i in i order
      float acc = 0.0f;
      for (int i = 0; i < 8; ++i)
        if (c * kAttnChunk + threadIdx.x + 32 * i < n_pos) acc = acc + e_s[threadIdx.x + 32 * i];
      acc = lane_tree(acc);
      if (threadIdx.x == 0) chunk_den[th * d.n_chunks + c] = acc;
    }
    float acc[kDims];
#pragma unroll
    for (int k = 0; k < kDims; ++k) acc[k] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (c * kAttnChunk + l + 32 * i < n_pos) {
        const float ei = e_s[l + 32 * i];
#pragma unroll
        for (int u = 0; u < E; ++u) {
          const __half2* hp = reinterpret_cast<const __half2*>(&raw[i][u]);
          const float2 v0 = __half22float2(hp[0]), v1 = __half22float2(hp[1]);
          acc[4 * u + 0] = acc[4 * u + 0] + ei * v0.x;
          acc[4 * u + 1] = acc[4 * u + 1] + ei * v0.y;
          acc[4 * u + 2] = acc[4 * u + 2] + ei * v1.x;
          acc[4 * u + 3] = acc[4 * u + 3] + ei * v1.y;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kDims; ++k) part[l][gd * kDims + k] = acc[k];
    __syncthreads();
    for (int dim = threadIdx.x; dim < kHd; dim += blockDim.x) {  // the tree over l, per dim
      for (int s = 16; s >= 1; s /= 2)
        for (int i = 0; i < s; ++i) part[i][dim] = part[i][dim] + part[i + s][dim];
      chunk_val[(th * d.n_chunks + c) * kHd + dim] = part[0][dim];
    }
    __syncthreads();  // e_s, part and m_shared are reused by the next query
  }
}

template <int E>
void launch_tiled(const AttentionArgs& a, const AttentionScratch& s, Dims d, cudaStream_t stream) {
  const int tq = tile_tokens(d.group, d.head_dim);
  const dim3 grid(attention_chunks(a.max_positions), a.n_kv_heads, (a.n_tokens + tq - 1) / tq);
  launch_pdl(scores_tiled_kernel<E>, grid, dim3(256), 0, stream, a.q, a.k_cache, a.pos, d,
             a.n_tokens, tq, s.scores, s.chunk_max);
  launch_pdl(chunk_sums_tiled_kernel<E>, grid, dim3(256), 0, stream, a.v_cache, a.pos, d,
             a.n_tokens, tq, s.scores, s.chunk_max, s.chunk_den, s.chunk_val);
}

template <int E>
void launch_fast(const AttentionArgs& a, const AttentionScratch& s, Dims d, dim3 grid,
                 cudaStream_t stream) {
  launch_pdl(scores_kernel<E>, grid, dim3(256), 0, stream, a.q, a.k_cache, a.pos, d, s.scores,
             s.chunk_max);
  launch_pdl(chunk_sums_kernel<E>, grid, dim3(256), 0, stream, a.v_cache, a.pos, d, s.scores,
             s.chunk_max, s.chunk_den, s.chunk_val);
}

}  // namespace

AttentionScratchSizes attention_scratch_sizes(int max_tokens, int n_heads, int n_ctx,
                                              int head_dim) {
  const int64_t th = static_cast<int64_t>(max_tokens) * n_heads;
  const int64_t chunks = attention_chunks(n_ctx);
  // chunk_max also holds the prefill kernels' maxima per 64 positions (attention_prefill.cuh).
  const int64_t maxima = std::max<int64_t>(chunks, attention_slots(n_ctx));
  return {th * n_ctx, th * maxima, th * chunks, th * chunks * head_dim};
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
  // The fast kernels read K / V rows as 16- / 8-byte vectors.
  const bool aligned = a.kv_stride % 8 == 0 && reinterpret_cast<uintptr_t>(a.k_cache) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(a.v_cache) % 16 == 0;
  static const bool legacy = use_legacy("attn");
  static const bool untiled = use_legacy("attn_tile");
  const bool tileable = a.n_tokens > 1 && (a.head_dim == 64 || a.head_dim == 128) &&
                        d.group * a.head_dim <= kTileFloats &&
                        d.group * tile_tokens(d.group, a.head_dim) <= kTileMaxQueries;
  // Measured (H200, synthetic Qwen2.5-1.5B, docs/perf.md): tiled pp512 @ d4096 4,315 vs 3,527
  // tok/s, but pp512 from position 0 16,417 vs 17,631 (256 tiled blocks: too few for 132 SMs).
  const int64_t tiled_blocks =
      static_cast<int64_t>(attention_chunks(a.max_positions)) * a.n_kv_heads *
      ((a.n_tokens + tile_tokens(d.group, a.head_dim) - 1) / tile_tokens(d.group, a.head_dim));
  const bool tiled =
      a.tile == 1 || (a.tile != 0 && tiled_blocks >= 4 * static_cast<int64_t>(current_sm_count()));
  static const bool no_gemm = use_legacy("attn_gemm");
  const bool gemm = a.tile == 2 || (a.tile == -1 && !no_gemm);
  if (!legacy && a.n_tokens > 1 && gemm &&
      attention_prefill_supported(a.head_dim, a.kv_stride, a.k_cache, a.v_cache, a.q)) {
    AttentionPrefillArgs p;
    p.q = a.q, p.k_cache = a.k_cache, p.v_cache = a.v_cache, p.pos = a.pos;
    p.n_tokens = a.n_tokens, p.max_positions = a.max_positions;
    p.n_heads = a.n_heads, p.n_kv_heads = a.n_kv_heads, p.group = d.group;
    p.head_dim = a.head_dim, p.kv_stride = a.kv_stride, p.kq_scale = a.kq_scale;
    p.n_ctx = s.n_ctx, p.n_slots = attention_slots(s.n_ctx), p.n_chunks = d.n_chunks;
    p.scores = s.scores, p.slot_max = s.chunk_max, p.chunk_den = s.chunk_den;
    p.chunk_val = s.chunk_val;
    attention_prefill_passes(p, stream);
  } else if (!legacy && aligned && tileable && tiled && !untiled) {
    if (a.head_dim == 64)
      launch_tiled<2>(a, s, d, stream);
    else
      launch_tiled<4>(a, s, d, stream);
  } else if (legacy || !aligned) {
    scores_legacy_kernel<<<grid, 256, 0, stream>>>(a.q, a.k_cache, a.pos, d, s.scores, s.chunk_max);
    CUDA_CHECK_LAUNCH();
    chunk_sums_legacy_kernel<<<grid, 256, 0, stream>>>(a.v_cache, a.pos, d, s.scores, s.chunk_max,
                                                       s.chunk_den, s.chunk_val);
    CUDA_CHECK_LAUNCH();
  } else {
    switch (a.head_dim / 32) {
      case 1:
        launch_fast<1>(a, s, d, grid, stream);
        break;
      case 2:
        launch_fast<2>(a, s, d, grid, stream);
        break;
      case 3:
        launch_fast<3>(a, s, d, grid, stream);
        break;
      case 4:
        launch_fast<4>(a, s, d, grid, stream);
        break;
      case 5:
        launch_fast<5>(a, s, d, grid, stream);
        break;
      case 6:
        launch_fast<6>(a, s, d, grid, stream);
        break;
      case 7:
        launch_fast<7>(a, s, d, grid, stream);
        break;
      default:
        launch_fast<8>(a, s, d, grid, stream);
        break;
    }
  }
  launch_pdl(combine_kernel, dim3(a.n_heads, a.n_tokens), dim3(a.head_dim), 0, stream, a.pos, d,
             s.chunk_den, s.chunk_val, a.out, a.out_q);
}

}  // namespace resident::cuda
