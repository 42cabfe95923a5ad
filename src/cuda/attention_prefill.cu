// Prefill attention passes 1 and 2 as register-tiled products over (query row, key) and
// (query row, output dim), with the spec's exact order of float operations (docs/numerics.md
// "Attention"; CPU twin cpu::attention_head).
//
// Why: the per-(chunk, head, token) passes of attention.cu read every K / V row once per query:
// at 512 tokens from position 0 the ncu profile put them at 9.4 ms of a 29.3 ms prefill (L2
// bound: ~1.6 GB of L2 reads per layer and pass). Here a block owns a 64 x 64 tile of outputs,
// stages its operands in shared memory once, and each thread computes a 4 x 4 register tile.
//
// How the order stays the spec's: a score is dot128 = 32 lane partials p_l (p_l = q_l k_l +
// q_{l+32} k_{l+32} + ..., products then adds in element order) reduced by the tree s = 16..1
// (lane l += lane l + s). Taking the lanes in bit-reversed order i -> l = bitrev5(i) turns that
// tree into the plain pairwise sum of the sequence ((v_0 + v_1) + (v_2 + v_3)) + ..., since lanes
// l and l + 16 are neighbours i, i + 1, lanes l and l + 8 are i, i + 2, and so on. A pairwise sum
// can be accumulated leaf by leaf with a stack of 5 partial sums (a binary counter), so a thread
// never holds more than ~6 values per output. The possum of pass 2 (lane l sums positions
// 256c + l + 32i in i order from 0.0f, then the same tree) is evaluated the same way.
//
// Masked positions (t > p for a row's token) contribute e_t = 0 in pass 2; adding e * v = +-0 to
// a partial that started at +0.0f leaves it unchanged bit for bit (a sum that starts at +0 is
// never -0 in round-to-nearest), so they are added instead of skipped, except when a V value
// such a row must skip is not finite (0 * inf = NaN): then the block takes the exact-skip path.
// Maxima go per 64 positions ("slots") in the chunk_max scratch; the row maximum of pass 2 is
// their maximum (exact in any order).
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/attention_prefill.cuh"
#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "numerics/canonical.h"

namespace resident::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileRows = 64;           // query rows (token, q head of the kv group) per block
constexpr int kTileCols = 64;           // keys (pass 1) or output dims (pass 2) per block
constexpr int kStride = kTileRows + 4;  // shared rows: 16-byte aligned, 4 banks apart
constexpr int kLeavesPerStage = 4;      // pass 2 stages V for 4 lanes = 32 positions at a time
constexpr unsigned kFull = 0xffffffffu;

static_assert(kAttnSlot == kTileCols, "one pass-1 block writes one slot maximum per row");

__device__ __forceinline__ constexpr int bitrev5(int i) {
  return ((i & 1) << 4) | ((i & 2) << 2) | (i & 4) | ((i & 8) >> 2) | ((i & 16) >> 4);
}

// Leaf i (in bit-reversed lane order) of a pairwise sum: st[k] holds the pending sum of the
// last 2^k leaves; after leaf 31 st[5] is the root. With i a compile-time constant (unrolled
// loops) every branch folds away and st stays in registers.
__device__ __forceinline__ void tree_push(float (&st)[6], int i, float v) {
  float c = v;
#pragma unroll
  for (int lvl = 0; lvl < 5; ++lvl) {
    if (((i >> lvl) & 1) == 0) {
      st[lvl] = c;
      return;
    }
    c = st[lvl] + c;  // the left (lower-lane) subtree first, as lane l += lane l + s
  }
  st[5] = c;
}

__device__ __forceinline__ void unpack4(const float4 v, float (&out)[4]) {
  out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}

// Query row r of kv head g: token r / group, q head g * group + r % group.
struct Row {
  int tok;
  int64_t th;  // token * n_heads + head: the index of the row's scores and results
};
__device__ __forceinline__ Row query_row(const AttentionPrefillArgs& a, int g, int r) {
  const int tok = r / a.group;
  return {tok, static_cast<int64_t>(tok) * a.n_heads + g * a.group + r % a.group};
}

// Pass 1: scores s_t = dot128(q, k_t) * kq_scale for a 64-row x 64-key tile, and each row's
// maximum over the tile's live keys (slot blockIdx.x).
template <int E>  // head_dim = 32 * E
__global__ void __launch_bounds__(kThreads, 2) scores_tile_kernel(const AttentionPrefillArgs a) {
  constexpr int kHd = 32 * E;
  extern __shared__ float4 smem[];
  float* qs = reinterpret_cast<float*>(smem);  // [kHd][kStride]: q element e of row r
  float* ks = qs + kHd * kStride;              // [kHd][kStride]: k element e of key c
  pdl_trigger();
  pdl_wait();
  const int g = blockIdx.z, rows = a.n_tokens * a.group;
  const int row0 = blockIdx.y * kTileRows, key0 = blockIdx.x * kTileCols;
  const int p0 = *a.pos;
  const int n_pos_last = p0 + (min(row0 + kTileRows, rows) - 1) / a.group + 1;
  if (key0 >= n_pos_last) return;  // every key of the tile is masked for every row

  // Staging: every global load of a thread issued before the first store (unrolled loops).
  constexpr int kQLoads = kTileRows * kHd / 4 / kThreads, kKLoads = kTileCols * kHd / 8 / kThreads;
  float4 qraw[kQLoads];
  uint4 kraw[kKLoads];
#pragma unroll
  for (int u = 0; u < kQLoads; ++u) {
    const int idx = threadIdx.x + u * kThreads, r = idx % kTileRows, e4 = idx / kTileRows;
    qraw[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row0 + r < rows)
      qraw[u] = reinterpret_cast<const float4*>(a.q + query_row(a, g, row0 + r).th * kHd)[e4];
  }
#pragma unroll
  for (int u = 0; u < kKLoads; ++u) {
    const int idx = threadIdx.x + u * kThreads, c = idx % kTileCols, e8 = idx / kTileCols;
    kraw[u] = make_uint4(0, 0, 0, 0);
    if (key0 + c < n_pos_last)
      kraw[u] = reinterpret_cast<const uint4*>(
          a.k_cache + static_cast<int64_t>(key0 + c) * a.kv_stride + g * kHd)[e8];
  }
#pragma unroll
  for (int u = 0; u < kQLoads; ++u) {
    const int idx = threadIdx.x + u * kThreads, r = idx % kTileRows, e4 = idx / kTileRows;
    float f[4];
    unpack4(qraw[u], f);
#pragma unroll
    for (int w = 0; w < 4; ++w) qs[(4 * e4 + w) * kStride + r] = f[w];
  }
#pragma unroll
  for (int u = 0; u < kKLoads; ++u) {
    const int idx = threadIdx.x + u * kThreads, c = idx % kTileCols, e8 = idx / kTileCols;
    const __half2* hp = reinterpret_cast<const __half2*>(&kraw[u]);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float2 kf = __half22float2(hp[w]);  // exact
      ks[(8 * e8 + 2 * w) * kStride + c] = kf.x;
      ks[(8 * e8 + 2 * w + 1) * kStride + c] = kf.y;
    }
  }
  __syncthreads();

  // Thread (ty, tx): rows 4ty .. 4ty + 3, keys 4tx .. 4tx + 3 of the tile.
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  float st[16][6];
  // Two nested loops, not one of 32: nvcc unrolls each fully only while the body is small, and
  // the tree's stack must see constant leaf numbers to stay in registers.
#pragma unroll
  for (int i0 = 0; i0 < 32; i0 += 4)
#pragma unroll
    for (int i = i0; i < i0 + 4; ++i) {
      const int l = bitrev5(i);
      float acc[16];
      {  // element l: the products start the lane partials
        float qv[4], kv[4];
        unpack4(*reinterpret_cast<const float4*>(qs + l * kStride + 4 * ty), qv);
        unpack4(*reinterpret_cast<const float4*>(ks + l * kStride + 4 * tx), kv);
#pragma unroll
        for (int o = 0; o < 16; ++o) acc[o] = qv[o / 4] * kv[o % 4];
      }
      // Elements l + 32, l + 64, ... in order: products, then adds. Not unrolled: with every
      // element's loads hoisted the tree partials no longer fit in the registers.
#pragma unroll 1
      for (int m = 1; m < E; ++m) {
        float qv[4], kv[4];
        unpack4(*reinterpret_cast<const float4*>(qs + (l + 32 * m) * kStride + 4 * ty), qv);
        unpack4(*reinterpret_cast<const float4*>(ks + (l + 32 * m) * kStride + 4 * tx), kv);
#pragma unroll
        for (int o = 0; o < 16; ++o) acc[o] = acc[o] + qv[o / 4] * kv[o % 4];
      }
#pragma unroll
      for (int o = 0; o < 16; ++o) tree_push(st[o], i, acc[o]);
    }

#pragma unroll
  for (int ra = 0; ra < 4; ++ra) {
    const int r = row0 + 4 * ty + ra;
    const Row q = query_row(a, g, r < rows ? r : 0);
    const int n_pos = r < rows ? p0 + q.tok + 1 : 0;
    float best = -INFINITY;  // NaN scores are left out of the max, as in the CPU scan
#pragma unroll
    for (int kb = 0; kb < 4; ++kb) {
      const int t = key0 + 4 * tx + kb;
      if (t < n_pos) {
        const float sc = st[4 * ra + kb][5] * a.kq_scale;
        a.scores[q.th * a.n_ctx + t] = sc;
        if (sc == sc) best = sc > best ? sc : best;
      }
    }
    for (int s = 8; s >= 1; s /= 2) {  // over the 16 threads of this row (a half warp)
      const float o = __shfl_xor_sync(kFull, best, s);
      best = o > best ? o : best;
    }
    if (tx == 0 && key0 < n_pos) a.slot_max[q.th * a.n_slots + blockIdx.x] = best;
  }
}

// Pass 2's shared-memory operands for one thread: e (kAttnChunk x kStride floats), V (kAttnChunk x
// kTileCols halves), the thread's 4 rows (4 ty ..) and 4 dims (4 tx ..), the chunk's first
// position.
struct SumsTile {
  const float* es;
  const __half* vs;
  int ty, tx, t0;
};

// Lane l's partials for the thread's 4 x 4 outputs: positions 256c + l + 32 pi, pi = 0..7 in
// order, from 0.0f. kSkip: positions a row does not see are skipped (else added as e = 0).
template <bool kSkip>
__device__ __forceinline__ void leaf_sums(const SumsTile& t, int l, const int (&n_pos_row)[4],
                                          float (&acc)[16]) {
#pragma unroll
  for (int o = 0; o < 16; ++o) acc[o] = 0.0f;
#pragma unroll 1
  for (int pi = 0; pi < 8; ++pi) {
    const int tl = l + 32 * pi;
    float ev[4], vv[4];
    unpack4(*reinterpret_cast<const float4*>(t.es + tl * kStride + 4 * t.ty), ev);
    const uint2 vraw = *reinterpret_cast<const uint2*>(t.vs + tl * kTileCols + 4 * t.tx);
    const float2 v01 = __half22float2(*reinterpret_cast<const __half2*>(&vraw.x));
    const float2 v23 = __half22float2(*reinterpret_cast<const __half2*>(&vraw.y));
    vv[0] = v01.x, vv[1] = v01.y, vv[2] = v23.x, vv[3] = v23.y;
#pragma unroll
    for (int o = 0; o < 16; ++o)
      if (!kSkip || t.t0 + tl < n_pos_row[o / 4]) acc[o] = acc[o] + ev[o / 4] * vv[o % 4];
  }
}

// Lane l's partial of the denominator for row r of the tile (e >= 0 and masked e = +0: adding
// them is exact).
__device__ __forceinline__ float leaf_den(const SumsTile& t, int l, int r) {
  float d = 0.0f;
#pragma unroll
  for (int pi = 0; pi < 8; ++pi) d = d + t.es[(l + 32 * pi) * kStride + r];
  return d;
}

// Pass 2: for chunk c and a 64-row x 64-dim tile, chunk_val = possum_t(e_t * v_{t,d}) and (dim
// tile 0) chunk_den = possum_t(e_t), e_t = exp_canonical(s_t - m) with m the row maximum. The
// chunk's e (as floats) and V slice (as halves) are staged in shared memory once, every global
// load of a thread issued before its first use (the first version staged V in eight dependent
// steps and loaded one score per loop iteration: 240 us per layer at 512 tokens, latency-bound).
template <int E>
__global__ void __launch_bounds__(kThreads, 2)
    chunk_sums_tile_kernel(const AttentionPrefillArgs a) {
  constexpr int kHd = 32 * E, kDimTiles = kHd / kTileCols;
  constexpr int kScoresPerThread = kAttnChunk * kTileRows / kThreads;  // 64
  constexpr int kScoreBatch = 16;
  constexpr int kVPerThread = kAttnChunk * kTileCols / 8 / kThreads;  // 8 x 16 bytes
  extern __shared__ float4 smem[];
  float* es = reinterpret_cast<float*>(smem);  // [kAttnChunk][kStride]: e of (position, row)
  __half* vs = reinterpret_cast<__half*>(es + kAttnChunk * kStride);  // [kAttnChunk][kTileCols]
  __shared__ float m_s[kTileRows];
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x, g = blockIdx.z / kDimTiles, dim0 = (blockIdx.z % kDimTiles) * kTileCols;
  const int rows = a.n_tokens * a.group, row0 = blockIdx.y * kTileRows;
  const int p0 = *a.pos, t0 = c * kAttnChunk;
  const int n_pos_first = p0 + row0 / a.group + 1;
  const int n_pos_last = p0 + (min(row0 + kTileRows, rows) - 1) / a.group + 1;
  if (t0 >= n_pos_last) return;

  // V slice of the chunk: position t0 + p, dims dim0 .. dim0 + 63, 8 halves per load. Positions
  // past the tile's last live one are zeros (never used: their e is 0 for every row).
  bool bad = false;  // a non-finite V value at a position some rows of the tile must skip
  {
    uint4 raw[kVPerThread];
#pragma unroll
    for (int u = 0; u < kVPerThread; ++u) {
      const int idx = threadIdx.x + u * kThreads, p = idx / 8, d8 = idx % 8;
      raw[u] = make_uint4(0, 0, 0, 0);
      if (t0 + p < n_pos_last)
        raw[u] = reinterpret_cast<const uint4*>(
            a.v_cache + static_cast<int64_t>(t0 + p) * a.kv_stride + g * kHd + dim0)[d8];
    }
#pragma unroll
    for (int u = 0; u < kVPerThread; ++u) {
      const int idx = threadIdx.x + u * kThreads, p = idx / 8, d8 = idx % 8;
      reinterpret_cast<uint4*>(vs + p * kTileCols)[d8] = raw[u];
      if (t0 + p >= n_pos_first) {
        const __half2* hp = reinterpret_cast<const __half2*>(&raw[u]);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const float2 v = __half22float2(hp[w]);
          bad = bad || !(isfinite(v.x) && isfinite(v.y));
        }
      }
    }
  }

  if (threadIdx.x < kTileRows) {  // the row maximum: over the row's live slots
    const int r = row0 + threadIdx.x;
    float m = -INFINITY;
    if (r < rows) {
      const Row q = query_row(a, g, r);
      const int slots = (p0 + q.tok + 1 + kAttnSlot - 1) / kAttnSlot;
      for (int sl = 0; sl < slots; ++sl) {
        const float x = a.slot_max[q.th * a.n_slots + sl];
        m = x > m ? x : m;
      }
    }
    m_s[threadIdx.x] = m;
  }
  __syncthreads();
  // e for every (position, row) of the chunk: positions fastest (coalesced score reads), in
  // batches of 16 loads in flight per thread.
#pragma unroll 1
  for (int u0 = 0; u0 < kScoresPerThread; u0 += kScoreBatch) {
    float sc[kScoreBatch];
#pragma unroll
    for (int u = 0; u < kScoreBatch; ++u) {
      const int idx = threadIdx.x + (u0 + u) * kThreads, tl = idx % kAttnChunk;
      const int r = idx / kAttnChunk;
      sc[u] = 0.0f;
      if (row0 + r < rows) {
        const Row q = query_row(a, g, row0 + r);
        if (t0 + tl < p0 + q.tok + 1) sc[u] = a.scores[q.th * a.n_ctx + t0 + tl];
      }
    }
#pragma unroll
    for (int u = 0; u < kScoreBatch; ++u) {
      const int idx = threadIdx.x + (u0 + u) * kThreads, tl = idx % kAttnChunk;
      const int r = idx / kAttnChunk;
      float e = 0.0f;
      if (row0 + r < rows && t0 + tl < p0 + query_row(a, g, row0 + r).tok + 1)
        e = numerics::exp_canonical(sc[u] - m_s[r]);
      es[tl * kStride + r] = e;
    }
  }
  // Publishes es and vs, and tells every thread whether some row must skip a non-finite V value.
  const bool exact_skip = __syncthreads_or(bad);

  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  int n_pos_row[4];  // positions each of this thread's rows sees (0: no such row)
#pragma unroll
  for (int ra = 0; ra < 4; ++ra) {
    const int r = row0 + 4 * ty + ra;
    n_pos_row[ra] = r < rows ? p0 + query_row(a, g, r).tok + 1 : 0;
  }
  const bool den_thread = dim0 == 0 && threadIdx.x < kTileRows;
  const SumsTile tile{es, vs, ty, tx, t0};
  float st[16][6], den_st[6];
  if (!exact_skip) {
    // Leaves in two nested loops (see scores_tile_kernel): constant leaf numbers keep the
    // stacks in registers. The positions loop stays rolled: unrolled, the kernel's code (470 KB)
    // thrashed the instruction cache (280 us per layer at 512 tokens).
#pragma unroll
    for (int i0 = 0; i0 < 32; i0 += 4)
#pragma unroll
      for (int i = i0; i < i0 + 4; ++i) {
        float acc[16];
        leaf_sums<false>(tile, bitrev5(i), n_pos_row, acc);
#pragma unroll
        for (int o = 0; o < 16; ++o) tree_push(st[o], i, acc[o]);
        if (den_thread) tree_push(den_st, i, leaf_den(tile, bitrev5(i), threadIdx.x));
      }
  } else {
    // Rare (a non-finite V value that some rows must skip): the same sums with the masked
    // positions skipped one by one, leaves in a rolled loop (stacks in local memory).
    float sst[16][6], dst[6];
#pragma unroll 1
    for (int i = 0; i < 32; ++i) {
      float acc[16];
      leaf_sums<true>(tile, bitrev5(i), n_pos_row, acc);
#pragma unroll
      for (int o = 0; o < 16; ++o) tree_push(sst[o], i, acc[o]);
      if (den_thread) tree_push(dst, i, leaf_den(tile, bitrev5(i), threadIdx.x));
    }
#pragma unroll
    for (int o = 0; o < 16; ++o) st[o][5] = sst[o][5];
    den_st[5] = dst[5];
  }

#pragma unroll
  for (int ra = 0; ra < 4; ++ra) {
    if (t0 >= n_pos_row[ra]) continue;  // chunk not live for this row (or no such row)
    const int64_t base =
        (query_row(a, g, row0 + 4 * ty + ra).th * a.n_chunks + c) * kHd + dim0 + 4 * tx;
    *reinterpret_cast<float4*>(a.chunk_val + base) =
        make_float4(st[4 * ra][5], st[4 * ra + 1][5], st[4 * ra + 2][5], st[4 * ra + 3][5]);
  }
  if (den_thread && row0 + static_cast<int>(threadIdx.x) < rows) {
    const Row q = query_row(a, g, row0 + threadIdx.x);
    if (t0 < p0 + q.tok + 1) a.chunk_den[q.th * a.n_chunks + c] = den_st[5];
  }
}

template <int E>
int scores_smem() {
  return 2 * 32 * E * kStride * static_cast<int>(sizeof(float));
}
constexpr int kSumsSmem = kAttnChunk * kStride * 4 + kAttnChunk * kTileCols * 2;

template <int E>
void launch(const AttentionPrefillArgs& a, cudaStream_t stream) {
  static const bool configured = [] {  // above 48 KB of dynamic shared memory needs an opt-in
    CUDA_CHECK(cudaFuncSetAttribute(scores_tile_kernel<E>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, scores_smem<E>()));
    CUDA_CHECK(cudaFuncSetAttribute(chunk_sums_tile_kernel<E>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, kSumsSmem));
    return true;
  }();
  (void)configured;
  const int row_tiles = (a.n_tokens * a.group + kTileRows - 1) / kTileRows;
  launch_pdl(scores_tile_kernel<E>,
             dim3((a.max_positions + kTileCols - 1) / kTileCols, row_tiles, a.n_kv_heads),
             dim3(kThreads), scores_smem<E>(), stream, a);
  launch_pdl(
      chunk_sums_tile_kernel<E>,
      dim3(attention_chunks(a.max_positions), row_tiles, a.n_kv_heads * (32 * E / kTileCols)),
      dim3(kThreads), kSumsSmem, stream, a);
}

}  // namespace

bool attention_prefill_supported(int head_dim, int kv_stride, const void* k_cache,
                                 const void* v_cache, const void* q) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (head_dim == 64 || head_dim == 128) && kv_stride % 8 == 0 && aligned16(k_cache) &&
         aligned16(v_cache) && aligned16(q);
}

void attention_prefill_passes(const AttentionPrefillArgs& a, cudaStream_t stream) {
  if (a.head_dim == 64) return launch<2>(a, stream);
  launch<4>(a, stream);
}

}  // namespace resident::cuda
