// One launch for the attention block of a decode token: rope_kv_write + attention's three passes
// (attention.cu), the same float operations in the same order, so the same bits.
//
// Work items, one thread block each, 256 threads (one per position of a chunk):
//   * a FULL item (h, c): query head h, chunk c of 256 positions. It rotates q_h (and, when its
//     chunk holds the current position p, the k row of its kv head g = h / group, rounded to fp16
//     as the cache stores it) from the rope table, computes the chunk's scores exactly as
//     attention.cu's pass 1 (the K row of p comes from its own registers, never from the cache
//     that another block is writing), then pass 2 for its chunk (exp, the possum partials of the
//     denominator and of every dim; V rows prefetched into shared memory by cp.async at the
//     start, the row of p converted from v itself). The item (h == first head of g's group,
//     c == chunk of p) also writes K and V of position p into the cache.
//   * a MAX item (h, c): pass 1 only; publishes the chunk's max and counts it in done1[h].
// Pass 2 needs m = the max over ALL chunks of the head (docs/numerics.md), so:
//   * one live chunk (p < 256, the common case): the full item's own chunk max IS m (the spec's
//     `m = -inf; m = x > m ? x : m` over one value gives x), and the item combines alone:
//     no other block, no counter, no global scratch;
//   * L >= 2 live chunks, all H*L items resident at once (the common case up to a few thousand
//     positions): one item kind. Each (h, c) publishes its chunk's max, counts it in done1[h]
//     and waits for the other L - 1, then goes on as a full item (below). Every block it waits
//     for is resident, since all are; the scores are computed once.
//   * else: H*L max items and H*L full items. A full item waits until the L max
//     items of its head are counted, then reads their maxima in chunk order (the combine of
//     pass 2, same bits). It writes its chunk's den/val partials and counts itself in done2[h];
//     the last one (threadFenceReduction pattern) adds the chunks in order from 0.0f, divides and
//     quantizes: attention.cu's pass 3.
// Why the wait cannot deadlock, without co-residency of the grid: items are handed out by a
// ticket counter (atomicAdd), max items first. A block that holds a ticket is running; a full
// item's ticket is above every max item's ticket, so every block it waits for already runs, and
// max items never wait. Blocks beyond the 2*H*L live items take no ticket and exit.
// Counters: [0] ticket, [1 + h] done1, [1 + H + h] done2. The block drawing the last ticket
// resets [0] (every other ticket is drawn by then); the last full item of head h resets done1[h]
// and done2[h] (every block of the head has counted and passed its wait by then). So each launch
// leaves them zero, as a graph replay needs.
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "cuda/attention_decode.cuh"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/legacy_switch.h"
#include "cuda/pdl.cuh"
#include "numerics/canonical.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = kAttnChunk;  // one thread per position of a chunk

struct Params {
  const float* q;
  const float* k;
  const float* v;
  const float* table;
  const int* pos;
  uint16_t* k_cache;
  uint16_t* v_cache;
  float* chunk_max;  // scratch, (n_heads, n_chunks)
  float* chunk_den;  // (n_heads, n_chunks)
  float* chunk_val;  // (n_heads, n_chunks, head_dim)
  unsigned* counters;
  float* out;
  numerics::ActBlock* out_q;
  int n_heads, group, kv_stride, n_ctx, n_chunks;
  bool neox;
  float kq_scale;
  int slots;  // thread blocks of this kernel resident at once (0: always the two item kinds)
};

template <int E>  // head_dim = 32 * E
struct Smem {
  uint4 v[kAttnChunk * 4 * E];         // the chunk's V rows (fp16 bits), row r = position 256c + r
  float part[32][32 * E + 1];          // lane partials (l, dim) of the values
  float q[32 * E];                     // rotated q of the head
  float s[kAttnChunk];                 // scores, then e_t
  float o[32 * E];                     // the head's output, for the quantization
  alignas(16) uint16_t k_now[32 * E];  // fp16 bits of the rotated k at position p
  float warp_max[kThreads / 32];
  float m, den;
  int ticket, last;
};

__device__ __forceinline__ uint16_t to_half_bits(float f) {
  return __half_as_ushort(__float2half_rn(f));
}

__device__ __forceinline__ float lane_tree(float v) {
  for (int s = 16; s >= 1; s /= 2) v = v + __shfl_down_sync(kFull, v, s);
  return v;  // lane 0 holds lane[0] of the spec's tree
}

// The spec's tree over 32 lane partials, s = 16, 8, 4, 2, 1: v[i] = v[i] + v[i + s] for i < s.
// Written level by level with constant bounds so the array stays in registers.
template <int S>
__device__ __forceinline__ void tree_level(float (&v)[32]) {
#pragma unroll
  for (int i = 0; i < S; ++i) v[i] = v[i] + v[i + S];
}
__device__ __forceinline__ float tree32(float (&v)[32]) {
  tree_level<16>(v);
  tree_level<8>(v);
  tree_level<4>(v);
  tree_level<2>(v);
  tree_level<1>(v);
  return v[0];
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// RoPE of pair i of one head (rope_kv.cu's rotate): y0 = x0*c - x1*s, y1 = x0*s + x1*c.
__device__ __forceinline__ void rotate_pair(const float* head, int i, int half, bool neox,
                                            const float* row, int* i0, int* i1, float* y0,
                                            float* y1) {
  const float c = row[2 * i], s = row[2 * i + 1];
  *i0 = neox ? i : 2 * i;
  *i1 = neox ? i + half : 2 * i + 1;
  const float x0 = head[*i0], x1 = head[*i1];
  *y0 = x0 * c - x1 * s;
  *y1 = x0 * s + x1 * c;
}

template <int E>
__global__ void __launch_bounds__(kThreads, 2) attention_decode_kernel(Params a) {
  constexpr int kHd = 32 * E, kRow16 = 4 * E;  // head_dim; 16-byte pieces of a K/V head row
  extern __shared__ uint4 smem_raw[];
  Smem<E>& sm = *reinterpret_cast<Smem<E>*>(smem_raw);
  pdl_trigger();
  pdl_wait();
  const int tid = threadIdx.x;
  const int p = *a.pos, n_pos = p + 1;
  const int live = (n_pos + kAttnChunk - 1) / kAttnChunk;
  const int grid_chunks = static_cast<int>(gridDim.x) / (2 * a.n_heads);
  // Unreachable after the host checks; never wait for an item no block would take.
  if (p < 0 || p >= a.n_ctx || live > grid_chunks) return;

  int h, c;
  bool max_only = false;
  // One item kind: every (h, c) publishes its own chunk maximum and waits for its head's others.
  // Only when all H*L items are resident at once (slots, from the occupancy of this kernel):
  // the items before a waiting one need not have started otherwise.
  const bool one_kind = live > 1 && a.n_heads * live <= a.slots;
  if (live == 1 || one_kind) {
    if (blockIdx.x >= static_cast<unsigned>(a.n_heads * live)) return;
    h = blockIdx.x / live, c = blockIdx.x % live;
  } else {
    const int items = a.n_heads * live;  // of each kind
    if (blockIdx.x >= static_cast<unsigned>(2 * items)) return;
    if (tid == 0) {
      const unsigned t = atomicAdd(&a.counters[0], 1u);
      if (t == static_cast<unsigned>(2 * items - 1)) atomicExch(&a.counters[0], 0u);
      sm.ticket = static_cast<int>(t);
    }
    __syncthreads();
    int t = sm.ticket;
    max_only = t < items;
    if (!max_only) t -= items;
    h = t / live, c = t % live;
  }
  const int g = h / a.group, c0 = c * kAttnChunk;
  const bool holds_p = c == live - 1;
  const bool writer = !max_only && holds_p && h % a.group == 0;
  const int64_t head_col = static_cast<int64_t>(g) * kHd;

  // V rows t < p of the chunk -> shared memory, in flight during the scores.
  if (!max_only) {
    for (int idx = tid; idx < kAttnChunk * kRow16; idx += kThreads) {
      const int r = idx / kRow16, u = idx % kRow16;
      if (c0 + r < p)
        cp_async16(&sm.v[idx],
                   a.v_cache + static_cast<int64_t>(c0 + r) * a.kv_stride + head_col + 8 * u);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }
  // This thread's K row t < p, from the cache (16-byte vectors, all in flight).
  const int t = c0 + tid;
  uint4 kraw[kRow16];
  if (t < p) {
    const uint4* kt = reinterpret_cast<const uint4*>(
        a.k_cache + static_cast<int64_t>(t) * a.kv_stride + head_col);
#pragma unroll
    for (int u = 0; u < kRow16; ++u) kraw[u] = kt[u];
  }

  // RoPE (rope_kv.cu): q of head h; k and v of position p as the cache will hold them.
  const float* row = a.table + static_cast<int64_t>(p) * kHd;  // (head_dim / 2) (cos, sin)
  for (int i = tid; i < kHd / 2; i += kThreads) {
    int i0, i1;
    float y0, y1;
    rotate_pair(a.q + static_cast<int64_t>(h) * kHd, i, kHd / 2, a.neox, row, &i0, &i1, &y0, &y1);
    sm.q[i0] = y0;
    sm.q[i1] = y1;
    if (holds_p) {
      rotate_pair(a.k + head_col, i, kHd / 2, a.neox, row, &i0, &i1, &y0, &y1);
      const uint16_t b0 = to_half_bits(y0), b1 = to_half_bits(y1);
      sm.k_now[i0] = b0;
      sm.k_now[i1] = b1;
      if (writer) {
        uint16_t* kc = a.k_cache + static_cast<int64_t>(p) * a.kv_stride + head_col;
        kc[i0] = b0;
        kc[i1] = b1;
      }
    }
  }
  if (holds_p && !max_only) {
    uint16_t* v_row = reinterpret_cast<uint16_t*>(sm.v) + (p - c0) * kHd;
    for (int i = tid; i < kHd; i += kThreads) {
      const uint16_t b = to_half_bits(a.v[head_col + i]);
      v_row[i] = b;
      if (writer) a.v_cache[static_cast<int64_t>(p) * a.kv_stride + head_col + i] = b;
    }
  }
  __syncthreads();

  // Pass 1 (attention.cu scores_kernel): the spec's 32 lane partials of dot128 in registers,
  // products then adds in element order, the tree s = 16..1, then * kq_scale.
  float best = -INFINITY;  // NaN scores are left out of the max, as in the CPU scan
  if (t < n_pos) {
    if (t == p) {
#pragma unroll
      for (int u = 0; u < kRow16; ++u) kraw[u] = reinterpret_cast<const uint4*>(sm.k_now)[u];
    }
    float part[32];
#pragma unroll
    for (int e = 0; e < E; ++e) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const __half2* hp = reinterpret_cast<const __half2*>(&kraw[4 * e + u]);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const float2 kf = __half22float2(hp[w]);  // exact
          const int l = 8 * u + 2 * w;
          const float x = sm.q[32 * e + l] * kf.x, y = sm.q[32 * e + l + 1] * kf.y;
          part[l] = e == 0 ? x : part[l] + x;
          part[l + 1] = e == 0 ? y : part[l + 1] + y;
        }
      }
    }
    const float sc = tree32(part) * a.kq_scale;
    sm.s[tid] = sc;
    if (sc == sc) best = sc;
  }
  // The chunk max: exact whatever the order (no NaN, -inf for idle threads).
  for (int s = 16; s >= 1; s /= 2) {
    const float o = __shfl_xor_sync(kFull, best, s);
    best = o > best ? o : best;
  }
  if (tid % 32 == 0) sm.warp_max[tid / 32] = best;
  __syncthreads();
  const int64_t hc = static_cast<int64_t>(h) * a.n_chunks;  // this head's chunk entries
  unsigned* done1 = a.counters + 1 + h;
  unsigned* done2 = a.counters + 1 + a.n_heads + h;
  if (tid == 0) {
    float cm = sm.warp_max[0];
    for (int w = 1; w < kThreads / 32; ++w) cm = sm.warp_max[w] > cm ? sm.warp_max[w] : cm;
    if (max_only) {
      a.chunk_max[hc + c] = cm;
      __threadfence();
      atomicAdd(done1, 1u);
    } else {
      // m = max over the live chunks' maxima in chunk order (attention.cu chunk_sums_kernel).
      float m = -INFINITY;
      if (live == 1) {
        m = cm > m ? cm : m;
      } else {
        if (one_kind) {  // publish this chunk's maximum, as a max item would
          a.chunk_max[hc + c] = cm;
          __threadfence();
          atomicAdd(done1, 1u);
        }
        while (load_acquire(done1) < static_cast<unsigned>(live)) __nanosleep(64);
        for (int i = 0; i < live; ++i) {
          const float x = __ldcg(&a.chunk_max[hc + i]);
          m = x > m ? x : m;
        }
      }
      sm.m = m;
    }
  }
  if (max_only) return;
  __syncthreads();
  const float m = sm.m;
  sm.s[tid] = t < n_pos ? numerics::exp_canonical(sm.s[tid] - m) : 0.0f;
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();

  // Pass 2 (chunk_sums_kernel): denominator in warp 0, lane l sums t = 256c + l + 32i in i order.
  float den_chunk = 0.0f;
  if (tid < 32) {
    for (int i = 0; i < 8; ++i)
      if (c0 + tid + 32 * i < n_pos) den_chunk = den_chunk + sm.s[tid + 32 * i];
    den_chunk = lane_tree(den_chunk);
  }
  // Values: thread (l, g8) owns the lane partials (l, dim) for the 8-dim pieces g8, g8 + 8, ...
  // (so a quarter warp reads 128 contiguous bytes of a V row: no bank conflict), adding its 8
  // positions in i order; positions past p are skipped, never added.
  {
    constexpr int kPieces = E / 2;
    const int l = tid / 8, g8 = tid % 8;
    float acc[kPieces][8];
#pragma unroll
    for (int u = 0; u < kPieces; ++u)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[u][j] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (c0 + l + 32 * i < n_pos) {
        const float ei = sm.s[l + 32 * i];
#pragma unroll
        for (int u = 0; u < kPieces; ++u) {
          const uint4 raw = sm.v[(l + 32 * i) * kRow16 + g8 + 8 * u];
          const __half2* hp = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float2 vf = __half22float2(hp[w]);
            acc[u][2 * w] = acc[u][2 * w] + ei * vf.x;
            acc[u][2 * w + 1] = acc[u][2 * w + 1] + ei * vf.y;
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kPieces; ++u)
#pragma unroll
      for (int j = 0; j < 8; ++j) sm.part[l][(g8 + 8 * u) * 8 + j] = acc[u][j];
  }
  if (tid == 0) sm.den = den_chunk;
  __syncthreads();
  // The tree over l for one dim (one thread per dim), s = 16..1.
  float val_chunk = 0.0f;
  if (tid < kHd) {
    float col[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) col[i] = sm.part[i][tid];
    val_chunk = tree32(col);
  }

  if (live > 1) {  // publish this chunk; the last full item of the head combines
    if (tid < kHd) a.chunk_val[(hc + c) * kHd + tid] = val_chunk;
    if (tid == 0) a.chunk_den[hc + c] = sm.den;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      const bool last = atomicAdd(done2, 1u) == static_cast<unsigned>(live - 1);
      if (last) {  // every block of head h has counted both counters: reset for the next launch
        atomicExch(done1, 0u);
        atomicExch(done2, 0u);
      }
      sm.last = last;
    }
    __syncthreads();
    if (!sm.last) return;
    __threadfence();
  }
  // Pass 3 (combine_kernel): chunks added in chunk order from 0.0f, one division.
  if (tid < kHd) {
    float den = 0.0f, val = 0.0f;
    if (live == 1) {
      den = den + sm.den;
      val = val + val_chunk;
    } else {
      for (int i = 0; i < live; ++i) {
        den = den + __ldcg(&a.chunk_den[hc + i]);
        val = val + __ldcg(&a.chunk_val[(hc + i) * kHd + tid]);
      }
    }
    const float o = val / den;
    a.out[static_cast<int64_t>(h) * kHd + tid] = o;
    sm.o[tid] = o;
  }
  if (a.out_q) {
    __syncthreads();
    if (tid < E)  // one 32-dim block per thread, as combine_kernel
      numerics::quantize_act_block(sm.o + tid * numerics::kActBlock,
                                   a.out_q + static_cast<int64_t>(h) * E + tid);
  }
}

// Thread blocks of the kernel resident at once on this GPU (one_kind items need them all; the
// SM count is the device's, so a context limited to fewer SMs, as under MPS with an active
// thread percentage, must set RESIDENT_CUDA_LEGACY=attn2kind). That switch: 0, the max and full
// items at every depth.
template <int E>
int resident_blocks() {
  static const int slots = [] {
    CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<E>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(sizeof(Smem<E>))));
    if (use_legacy("attn2kind")) return 0;
    int per_sm = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attention_decode_kernel<E>,
                                                             kThreads, sizeof(Smem<E>)));
    return per_sm * current_sm_count();
  }();
  return slots;
}

template <int E>
void launch(Params p, int grid, cudaStream_t stream) {
  p.slots = resident_blocks<E>();
  launch_pdl(attention_decode_kernel<E>, dim3(grid), dim3(kThreads), sizeof(Smem<E>), stream, p);
}

}  // namespace

bool attention_decode_supported(int n_heads, int n_kv_heads, int head_dim, int kv_stride) {
  return (head_dim == 64 || head_dim == 128) && n_heads >= 1 && n_kv_heads >= 1 &&
         n_heads % n_kv_heads == 0 && kv_stride % 8 == 0 && kv_stride >= n_kv_heads * head_dim;
}

int attention_decode_counters(int n_heads) {
  return 1 + 2 * n_heads;
}

void attention_decode(const AttentionDecodeArgs& a, const AttentionScratch& s, unsigned* counters,
                      cudaStream_t stream) {
  const std::string what = "cuda attention_decode: ";
  if (!a.q || !a.k || !a.v || !a.rope_table || !a.pos || !a.k_cache || !a.v_cache || !a.out ||
      !counters)
    throw Error(what + "null pointer");
  if (!s.chunk_max || !s.chunk_den || !s.chunk_val) throw Error(what + "no scratch");
  if (!attention_decode_supported(a.n_heads, a.n_kv_heads, a.head_dim, a.kv_stride))
    throw Error(what + "unsupported shape (head_dim " + std::to_string(a.head_dim) + ", heads " +
                std::to_string(a.n_heads) + "/" + std::to_string(a.n_kv_heads) + ", kv_stride " +
                std::to_string(a.kv_stride) + ")");
  if (reinterpret_cast<uintptr_t>(a.k_cache) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(a.v_cache) % 16 != 0)
    throw Error(what + "caches must be 16-byte aligned");
  if (s.max_tokens < 1 || s.n_heads != a.n_heads || s.head_dim != a.head_dim)
    throw Error(what + "scratch does not fit this call");
  if (a.max_positions < 1 || a.max_positions > a.n_ctx || a.max_positions > s.n_ctx)
    throw Error(what + "max_positions " + std::to_string(a.max_positions) + " outside [1, n_ctx]");
  const Params p{a.q,          a.k,         a.v,
                 a.rope_table, a.pos,       a.k_cache,
                 a.v_cache,    s.chunk_max, s.chunk_den,
                 s.chunk_val,  counters,    a.out,
                 a.out_q,      a.n_heads,   a.n_heads / a.n_kv_heads,
                 a.kv_stride,  a.n_ctx,     attention_chunks(s.n_ctx),
                 a.neox,       a.kq_scale,  0};
  // Both kinds of item for every chunk a position below max_positions can reach.
  const int grid = 2 * attention_chunks(a.max_positions) * a.n_heads;
  if (a.head_dim == 64)
    launch<2>(p, grid, stream);
  else
    launch<4>(p, grid, stream);
}

}  // namespace resident::cuda
