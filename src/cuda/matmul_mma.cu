// Tensor-core prefill matmul. Same bits as matvec_kernel (docs/numerics.md, "Weight-row dot
// products"): for every (row r, token t), acc = 0.0f, then acc = acc + p_j for j = 0 .. n/32-1
// in order, where p_j is the format's float formula (blocks::X::partial) of an exact integer dot.
//
// Work split. A thread block of 4 warps owns a tile of 64 rows x 64 tokens; warp (wm, wn) owns
// rows 32 wm .. 32 wm + 31 and tokens 32 wn .. 32 wn + 31 as 2 x 4 mma tiles (16 rows x 8 tokens).
// The row is walked in stages of 4 blocks of 32 elements. Per stage, in shared memory:
//   * weights: the raw bytes of each row's window (the stage's 4 blocks, or for k-quants the
//     whole super-block holding them) arrive by cp.async, issued one stage ahead; then each
//     thread decodes two (row, block) pairs from there with the format's own `load` (the spec
//     decoder, so the scale floats are the same bits) and stores the 32 quants as signed int8
//     plus the scale floats (double-buffered);
//   * activations: the tile's ActBlocks, copied raw with cp.async (double-buffered).
// Per block, mma.sync m16n8k32 (s8 x s8 -> s32) gives each thread the exact dots of its 4
// (row, token) accumulator elements per tile; the thread applies the float partial to each and
// adds it into that element's running sum. Integer sums are exact, so the tensor core's internal
// order does not matter; the float work is the spec's, operation for operation, in j order.
//
// Exact int -> float without the slow I2F unit: the mma accumulates onto C = 0x4B400000 (the
// bits of 1.5 * 2^23), so a dot |d| < 2^22 comes out as the bits of the float 12582912 + d,
// whose unit is 1; subtracting 12582912.0f gives (float)d exactly. Every dot here is below
// 2^22 (largest: Q8_0, 32 * 128 * 127 = 520192).
//
// Speed (H200, scripts/mma-check, 2026-11-29): 60-110 TOPS on 512 tokens (Q4_K 8960x1536: 141
// us; 1536x1536: 39 us). Same time with the L2 flushed or hot, and a lone thread block per SM
// takes ~2.4 us per stage whatever the copies do, so the bound is the issue rate of the ~6 float
// operations per (row, token, block) plus the mma, not memory.
//
// Float operations are written as __fmul_rn / __fadd_rn / __fsub_rn (never contracted into an
// FMA, whatever --fmad says); the one __fmaf_rn (Q6_K) is exact (see FmtQ6_K).
#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/legacy_switch.h"
#include "cuda/matmul_mma.cuh"
#include "cuda/quant_blocks.h"

namespace resident::cuda {
namespace {

using numerics::ActBlock;

constexpr int kRows = 64;  // weight rows per thread block (or kRowsSmall, see launch)
constexpr int kRowsSmall = 32;
constexpr int kToks = 64;        // tokens per thread block
constexpr int kThreads = 128;    // 4 warps, 2 (rows) x 2 (tokens)
constexpr int kStageBlocks = 4;  // 32-blocks per pipeline stage
constexpr int kLine = 160;       // shared-memory bytes per row / token per stage
constexpr int kActChunks = kToks * kStageBlocks * 40 / 16;  // 16-byte chunks of ActBlocks
static_assert(kStageBlocks * 40 == kLine, "a token's stage of ActBlocks is one line");
// Weight lines are 4 x 32 quant bytes + 32 bytes of padding: a line stride of 8 banks keeps the
// 8-byte fragment loads of 4 rows x 4 threads (a half warp) on 32 different banks.
static_assert(kStageBlocks * 32 + 32 == kLine, "weight line = quants + one bank-shift pad");

// Thread blocks per SM the registers are budgeted for (3: up to 168 registers; only Q6_K spills,
// 24 bytes. 4 measured slower on the H200: 128 registers, spills in every format).
#ifndef RESIDENT_MMA_MIN_BLOCKS
#define RESIDENT_MMA_MIN_BLOCKS 3
#endif
// Unrolling of the per-block loop inside a stage (1: one block's loads, mmas and partials at a
// time: fewer registers; 4: the compiler may overlap blocks).
#ifndef RESIDENT_MMA_JJ_UNROLL
#define RESIDENT_MMA_JJ_UNROLL 4
#endif
constexpr int kJjUnroll = RESIDENT_MMA_JJ_UNROLL;

constexpr int kMagic = 0x4B400000;
constexpr float kMagicF = 12582912.0f;

// (float)d for the mma result d = kMagic + dot (see the file comment).
__device__ __forceinline__ float dot_to_float(int d) {
  return __fsub_rn(__int_as_float(d), kMagicF);
}

// ------------------------------------------------------------------------------ formats
// Each format says how a decoded block enters shared memory (signed int8 quants whose plain dot
// with the activation quants is the spec's isum, and kFields scale floats) and how the float
// partial is formed from the exact dot, as written in blocks::X::partial.
//   f: the row's scale floats; ad, sum: the token's a.d and (float)a.sum; dot (, hi): exact dots.

struct FmtQ8_0 {
  using B = blocks::Q8_0;
  static constexpr bool kSuper = false;  // blocks of 32 (k-quants: super-blocks of 256)
  static constexpr int kFields = 1;
  static constexpr bool kUsesSum = false, kHalves = false;
  __device__ static void stage(const B::Block& b, uint32_t (&q)[8], float (&f)[kFields]) {
#pragma unroll
    for (int k = 0; k < 8; ++k) q[k] = static_cast<uint32_t>(b.w[k]);
    f[0] = b.d;
  }
  // (d_w * a.d) * (float)isum
  __device__ static float partial(const float (&f)[kFields], float ad, float, float dot, float) {
    return __fmul_rn(__fmul_rn(f[0], ad), dot);
  }
};

// Q4_0 / Q5_0: quants q - 8 / q - 16 stored signed, so the dot is isum directly (the spec's
// dot8 - 8 * a.sum is the same integer).
template <typename Blocks, uint32_t kBias4>
struct FmtLegacy {
  using B = Blocks;
  static constexpr bool kSuper = false;
  static constexpr int kFields = 1;
  static constexpr bool kUsesSum = false, kHalves = false;
  __device__ static void stage(const typename B::Block& b, uint32_t (&q)[8], float (&f)[kFields]) {
#pragma unroll
    for (int k = 0; k < 8; ++k) q[k] = __vsub4(static_cast<uint32_t>(b.w[k]), kBias4);
    f[0] = b.d;
  }
  __device__ static float partial(const float (&f)[kFields], float ad, float, float dot, float) {
    return __fmul_rn(__fmul_rn(f[0], ad), dot);
  }
};
using FmtQ4_0 = FmtLegacy<blocks::Q4_0, 0x08080808u>;
using FmtQ5_0 = FmtLegacy<blocks::Q5_0, 0x10101010u>;

// Q4_K / Q5_K: unsigned quants 0..15 / 0..31 (fit s8); fields dsc = d * sc_j, dm = dmin * m_j.
template <typename Blocks>
struct FmtK4 {
  using B = Blocks;
  static constexpr bool kSuper = true;
  static constexpr int kFields = 2;
  static constexpr bool kUsesSum = true, kHalves = false;
  __device__ static void stage(const typename B::Block& b, uint32_t (&q)[8], float (&f)[kFields]) {
#pragma unroll
    for (int k = 0; k < 8; ++k) q[k] = static_cast<uint32_t>(b.w[k]);
    f[0] = b.dsc;
    f[1] = b.dm;
  }
  // a.d * (dsc * (float)dot - dm * (float)a.sum)
  __device__ static float partial(const float (&f)[kFields], float ad, float sum, float dot,
                                  float) {
    return __fmul_rn(ad, __fsub_rn(__fmul_rn(f[0], dot), __fmul_rn(f[1], sum)));
  }
};
using FmtQ4_K = FmtK4<blocks::Q4_K>;
using FmtQ5_K = FmtK4<blocks::Q5_K>;

// Q6_K: quants q - 32 stored signed; two dots per block (elements 0..15 and 16..31, one scale
// each); fields d, (float)sc_lo, (float)sc_hi. The spec's integer combination
// v = sc_lo * isum_lo + sc_hi * isum_hi is formed in float: |sc| <= 128 and |isum| <= 16 * 32 *
// 127, so sc_lo * isum_lo (< 2^23) is exact, and fmaf's one rounding of the exact |v| < 2^24 is
// no rounding at all: the result is (float)v, bit for bit.
struct FmtQ6_K {
  using B = blocks::Q6_K;
  static constexpr bool kSuper = true;
  static constexpr int kFields = 3;
  static constexpr bool kUsesSum = false, kHalves = true;
  __device__ static void stage(const B::Block& b, uint32_t (&q)[8], float (&f)[kFields]) {
#pragma unroll
    for (int k = 0; k < 8; ++k) q[k] = __vsub4(static_cast<uint32_t>(b.w[k]), 0x20202020u);
    f[0] = b.d;
    f[1] = static_cast<float>(b.sc_lo);
    f[2] = static_cast<float>(b.sc_hi);
  }
  // a.d * (d * (float)(sc_lo * isum_lo + sc_hi * isum_hi))
  __device__ static float partial(const float (&f)[kFields], float ad, float, float lo, float hi) {
    return __fmul_rn(ad, __fmul_rn(f[0], __fmaf_rn(f[2], hi, __fmul_rn(f[1], lo))));
  }
};

// ------------------------------------------------------------------------------ primitives

// d = a * b + kMagic over one 32-deep block: A 16 rows x 32 (row-major), B 32 x 8 tokens.
__device__ __forceinline__ void mma_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%10,%10,%10};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(kMagic));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
// Copies the first `bytes` (1..16) of the 16 at gmem, zero-fills the rest: never reads past.
__device__ __forceinline__ void cp_async16_part(void* smem, const void* gmem, int bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Raw weight window of one stage in a row: its byte offset in the row and its length.
template <typename F>
struct Window {
  static constexpr int kBytes = F::kSuper ? F::B::kBlockBytes : kStageBlocks * F::B::kBlockBytes;
  // 16-byte chunks covering kBytes from any start address (aligned down to 16).
  static constexpr int kChunks = (kBytes + 30) / 16;
  __device__ static int64_t start(int s) {
    return F::kSuper ? static_cast<int64_t>(s * kStageBlocks / 8) * F::B::kBlockBytes
                     : static_cast<int64_t>(s) * kStageBlocks * F::B::kBlockBytes;
  }
};

// Shared memory (dynamic: more than the 48 KB static limit for Q6_K).
template <typename F, int R>
struct Smem {
  uint8_t x[2][kToks][kLine];  // token's ActBlocks (raw): block jj at bytes 40 jj .. 40 jj + 39
  uint8_t w[2][R][kLine];      // row's signed int8 quants: block jj at bytes 32 jj .. 32 jj + 31
  float scale[2][kStageBlocks][F::kFields][R];
  uint8_t raw[R][16 * Window<F>::kChunks];  // raw window, at its global address mod 16
};

// ------------------------------------------------------------------------------ kernel

// Fragment k-order: the mma's k slots 4 t4 + i (registers a0/a1, b0) and 16 + 4 t4 + i (a2/a3,
// b1) of thread t4 hold block elements 8 t4 + i and 8 t4 + 4 + i, for weights and activations
// alike: one 8-byte load per row or token. The dot is the same sum in another order (exact).
// Up to kMaxMmaSegments matrices with one input: row tiles [tile_end[s - 1], tile_end[s]) of
// the grid's y belong to matrix s.
struct MmaParams {
  const uint8_t* w[kMaxMmaSegments];
  float* out[kMaxMmaSegments];
  const float* bias[kMaxMmaSegments];
  int64_t rows[kMaxMmaSegments];
  int64_t out_stride[kMaxMmaSegments];
  int tile_end[kMaxMmaSegments];
  unsigned acc_mask;  // bit s: matrix s accumulates into out
  int n_segments;
  int64_t row_bytes;
  int n_blocks;
  const ActBlock* xq;
  int n_tokens;
};

// R: rows per tile, 64 or 32 (each warp then owns R / 2 rows as R / 32 mma tiles of 16 rows).
template <typename F, int R>
__global__ void __launch_bounds__(kThreads, RESIDENT_MMA_MIN_BLOCKS)
    matmul_mma_kernel(const MmaParams P) {
  int seg = 0;
  while (seg + 1 < P.n_segments && static_cast<int>(blockIdx.y) >= P.tile_end[seg]) ++seg;
  const int row_tile = static_cast<int>(blockIdx.y) - (seg == 0 ? 0 : P.tile_end[seg - 1]);
  const uint8_t* __restrict__ w = P.w[seg];
  const int64_t rows = P.rows[seg], row_bytes = P.row_bytes, out_stride = P.out_stride[seg];
  const int n_blocks = P.n_blocks, n_tokens = P.n_tokens;
  const ActBlock* __restrict__ xq = P.xq;
  float* out = P.out[seg];
  const float* __restrict__ bias = P.bias[seg];
  const bool accumulate = (P.acc_mask >> seg) & 1u;
  using B = typename F::B;
  using Win = Window<F>;
  constexpr int kF = F::kFields;
  constexpr int kMi = R / 32;                          // mma row tiles per warp
  constexpr int kPairs = R * kStageBlocks / kThreads;  // (row, block) pairs decoded per thread
  constexpr int kWarpRows = R / 2;
  extern __shared__ uint4 smem_words[];
  Smem<F, R>& sm = *reinterpret_cast<Smem<F, R>*>(smem_words);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;  // mma fragment coordinates
  const int wm = warp & 1, wn = warp >> 1;
  const int64_t r0 = static_cast<int64_t>(row_tile) * R;
  const int t0 = blockIdx.x * kToks;
  const int n_stages = n_blocks / kStageBlocks;
  // A warp whose rows or tokens all lie past the end only helps to stage.
  const bool active = r0 + kWarpRows * wm < rows && t0 + 32 * wn < n_tokens;

  // Global address of row r's (tile-relative) window of stage s. Rows past the end read the
  // last row; their results are never stored.
  auto window = [&](int r, int s) {
    const int64_t rr = r0 + r < rows ? r0 + r : rows - 1;
    return w + rr * row_bytes + Win::start(s);
  };
  // Weights of stage s, raw: the 16-byte-aligned chunks that cover each row's window. A chunk
  // holding a byte of the window cannot cross a page; the last one copies only up to the end.
  auto copy_w = [&](int s) {
#pragma unroll
    for (int i = 0; i < (R * Win::kChunks + kThreads - 1) / kThreads; ++i) {
      const int c = tid + kThreads * i;
      if (c >= R * Win::kChunks) break;
      const int r = c / Win::kChunks, k = c % Win::kChunks;
      const uintptr_t start = reinterpret_cast<uintptr_t>(window(r, s));
      const uintptr_t chunk = (start & ~uintptr_t{15}) + 16 * k;
      const int64_t left = static_cast<int64_t>(start + Win::kBytes - chunk);
      if (left > 0)
        cp_async16_part(&sm.raw[r][16 * k], reinterpret_cast<const void*>(chunk),
                        left < 16 ? static_cast<int>(left) : 16);
    }
  };
  // Activations of stage s: per token 160 contiguous bytes (16-byte aligned: the launcher checks
  // xq and n_blocks % 4). Tokens past the end copy the last token; never stored.
  auto copy_x = [&](int s, int buf) {
#pragma unroll
    for (int i = 0; i < kActChunks / kThreads; ++i) {
      const int c = tid + kThreads * i, tok = c / 10, k = c % 10;
      const int gt = min(t0 + tok, n_tokens - 1);
      const ActBlock* src = xq + static_cast<int64_t>(gt) * n_blocks + s * kStageBlocks;
      cp_async16(&sm.x[buf][tok][16 * k], reinterpret_cast<const uint8_t*>(src) + 16 * k);
    }
  };
  // Decodes stage s from the raw window into tile buffer `buf`: thread takes pairs
  // p = tid + kThreads * i (row p / 4, block p % 4; a warp covers 8 rows x 4 blocks).
  auto decode_w = [&](int s, int buf) {
#pragma unroll
    for (int i = 0; i < kPairs; ++i) {
      const int p = tid + kThreads * i, r = p / kStageBlocks, jj = p % kStageBlocks;
      const int off = static_cast<int>(reinterpret_cast<uintptr_t>(window(r, s)) & 15);
      // `load` addresses blocks from the row start; the window sits at raw[r] + off.
      const uint8_t* row = &sm.raw[r][off] - Win::start(s);
      const typename B::Block blk = B::load(row, s * kStageBlocks + jj);
      uint32_t q[8];
      float f[kF];
      F::stage(blk, q, f);
      uint4* d = reinterpret_cast<uint4*>(&sm.w[buf][r][32 * jj]);
      d[0] = make_uint4(q[0], q[1], q[2], q[3]);
      d[1] = make_uint4(q[4], q[5], q[6], q[7]);
#pragma unroll
      for (int k = 0; k < kF; ++k) sm.scale[buf][jj][k][r] = f[k];
    }
  };

  float acc[kMi][4][4];  // [m tile][n tile][fragment element]: running sums from 0.0f
#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;

  // The 32-blocks of one stage, in j order.
  auto compute = [&](int buf) {
#pragma unroll kJjUnroll
    for (int jj = 0; jj < kStageBlocks; ++jj) {
      uint32_t a[kMi][4];
#pragma unroll
      for (int mi = 0; mi < kMi; ++mi) {
        const uint8_t* p = &sm.w[buf][kWarpRows * wm + 16 * mi + g][32 * jj + 8 * t4];
        const uint2 lo = *reinterpret_cast<const uint2*>(p);              // row g
        const uint2 hi = *reinterpret_cast<const uint2*>(p + 8 * kLine);  // row g + 8
        a[mi][0] = lo.x;
        a[mi][1] = hi.x;
        a[mi][2] = lo.y;
        a[mi][3] = hi.y;
      }
      uint32_t b[4][2];
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const uint2 v =
            *reinterpret_cast<const uint2*>(&sm.x[buf][32 * wn + 8 * ni + g][40 * jj + 8 + 8 * t4]);
        b[ni][0] = v.x;
        b[ni][1] = v.y;
      }
      float rf[kMi][2][kF];  // [m tile][row g / g + 8][field]
#pragma unroll
      for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int k = 0; k < kF; ++k)
            rf[mi][h][k] = sm.scale[buf][jj][k][kWarpRows * wm + 16 * mi + 8 * h + g];
      float ad[4][2], sum[4][2];  // [n tile][token 2 t4 / 2 t4 + 1]
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const uint8_t* hdr = &sm.x[buf][32 * wn + 8 * ni + 2 * t4 + c][40 * jj];  // {d, sum}
          if constexpr (F::kUsesSum) {
            const int2 v = *reinterpret_cast<const int2*>(hdr);
            ad[ni][c] = __int_as_float(v.x);
            sum[ni][c] = dot_to_float(v.y + kMagic);  // |sum| <= 32 * 127: exact
          } else {
            ad[ni][c] = *reinterpret_cast<const float*>(hdr);
            sum[ni][c] = 0.0f;
          }
        }
#pragma unroll
      for (int mi = 0; mi < kMi; ++mi) {
        uint32_t a_lo[4], a_hi[4];
        if constexpr (F::kHalves) {
          // Elements 0..15 sit in threads t4 = 0, 1 (see the k-order note), 16..31 in t4 = 2, 3:
          // each half's dot is a full-depth mma with the other half's weights zeroed.
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            a_lo[k] = t4 < 2 ? a[mi][k] : 0u;
            a_hi[k] = t4 < 2 ? 0u : a[mi][k];
          }
        }
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          int d[4], dh[4];
          if constexpr (F::kHalves) {
            mma_s8(d, a_lo, b[ni][0], b[ni][1]);
            mma_s8(dh, a_hi, b[ni][0], b[ni][1]);
          } else {
            mma_s8(d, a[mi], b[ni][0], b[ni][1]);
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) {  // element e: row g + 8 (e / 2), token 2 t4 + e % 2
            float hi = 0.0f;
            if constexpr (F::kHalves) hi = dot_to_float(dh[e]);
            const float p =
                F::partial(rf[mi][e / 2], ad[ni][e % 2], sum[ni][e % 2], dot_to_float(d[e]), hi);
            acc[mi][ni][e] = __fadd_rn(acc[mi][ni][e], p);
          }
        }
      }
    }
  };

  // Pipeline. While stage s is multiplied, the raw weights and the activations of stage s + 1
  // are in flight; then they are waited for, the weights decoded into the other tile buffer,
  // and the copies of stage s + 2 issued. Barriers: (1) the copies landed and every read of
  // the buffers about to be refilled is done; (2) the raw window is decoded (free to refill) and
  // the decoded tile is visible.
  copy_w(0);
  copy_x(0, 0);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  decode_w(0, 0);
  __syncthreads();
  if (n_stages > 1) {
    copy_w(1);
    copy_x(1, 1);
    cp_async_commit();
  }
  for (int s = 0; s < n_stages; ++s) {
    const int cur = s & 1;
    if (active) compute(cur);
    if (s + 1 < n_stages) {
      cp_async_wait_all();
      __syncthreads();  // (1)
      decode_w(s + 1, cur ^ 1);
      __syncthreads();  // (2)
      if (s + 2 < n_stages) {
        copy_w(s + 2);
        copy_x(s + 2, cur);
        cp_async_commit();
      }
    }
  }

  // Epilogue, as matvec_kernel: y = acc; y = y + bias[r]; y = out + y.
  if (!active) return;
#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = r0 + kWarpRows * wm + 16 * mi + 8 * h + g;
      if (row >= rows) continue;
      const float bv = bias ? bias[row] : 0.0f;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int tok = t0 + 32 * wn + 8 * ni + 2 * t4 + c;
          if (tok >= n_tokens) continue;
          float* o = out + tok * out_stride + row;
          float y = acc[mi][ni][2 * h + c];
          if (bias) y = __fadd_rn(y, bv);
          if (accumulate) y = __fadd_rn(*o, y);
          *o = y;
        }
    }
}

template <typename F, int R>
void launch_tiles(MmaParams p, cudaStream_t stream) {
  // Dynamic shared memory beyond 48 KB, and the largest carveout so that several thread blocks
  // share an SM.
  constexpr size_t kSmem = sizeof(Smem<F, R>);
  static const bool configured = [] {
    CUDA_CHECK(cudaFuncSetAttribute(matmul_mma_kernel<F, R>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    CUDA_CHECK(cudaFuncSetAttribute(matmul_mma_kernel<F, R>,
                                    cudaFuncAttributePreferredSharedMemoryCarveout,
                                    cudaSharedmemCarveoutMaxShared));
    return true;
  }();
  (void)configured;
  int tiles = 0;
  for (int s = 0; s < p.n_segments; ++s) {
    tiles += static_cast<int>((p.rows[s] + R - 1) / R);
    p.tile_end[s] = tiles;
  }
  // Token tiles along x: the thread blocks of one row tile run together and share its weights
  // through L2, so each weight byte comes from DRAM about once.
  const dim3 grid(static_cast<unsigned>((p.n_tokens + kToks - 1) / kToks),
                  static_cast<unsigned>(tiles));
  matmul_mma_kernel<F, R><<<grid, kThreads, kSmem, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// Tiles of 64 rows, or of 32 where 64-row tiles would leave the GPU under-filled: a thread block
// is latency-bound per stage (~2.4 us, file comment), so e.g. the down projection at 512 tokens
// (8 x 24 = 192 tiles for 132 SMs, 1-2 per SM) ran each SM's 1-2 long tiles back to back; 384
// half tiles put ~3 on every SM. RESIDENT_CUDA_LEGACY=mma64 keeps 64-row tiles everywhere.
template <typename F>
void launch(const MmaParams& p, cudaStream_t stream) {
  static const bool only64 = use_legacy("mma64");
  int64_t tiles64 = 0;
  for (int s = 0; s < p.n_segments; ++s) tiles64 += (p.rows[s] + kRows - 1) / kRows;
  tiles64 *= (p.n_tokens + kToks - 1) / kToks;
  if (!only64 && tiles64 < 2 * static_cast<int64_t>(current_sm_count()))
    return launch_tiles<F, kRowsSmall>(p, stream);
  launch_tiles<F, kRows>(p, stream);
}

}  // namespace

bool matmul_mma_multi(const MatvecArgs* segs, int n_segs, int64_t row_bytes, cudaStream_t stream) {
  if (n_segs < 1 || n_segs > kMaxMmaSegments) return false;
  const MatvecArgs& a = segs[0];
  if (a.n_tokens < 16 || !a.xq) return false;
  if (a.n <= 0 || a.n % (32 * kStageBlocks) != 0) return false;   // whole stages only
  if (reinterpret_cast<uintptr_t>(a.xq) % 16 != 0) return false;  // 16-byte cp.async
  if (a.n / 32 > (1 << 30)) return false;
  MmaParams p{};
  int64_t tiles = 0;
  for (int s = 0; s < n_segs; ++s) {
    const MatvecArgs& b = segs[s];
    // One input: the same format, row length, tokens and activation blocks.
    if (b.type != a.type || b.n != a.n || b.n_tokens != a.n_tokens || b.xq != a.xq) return false;
    if (!b.w || !b.out || b.rows < 1) return false;
    tiles += (b.rows + kRowsSmall - 1) / kRowsSmall;
    p.w[s] = static_cast<const uint8_t*>(b.w);
    p.out[s] = b.out;
    p.bias[s] = b.bias;
    p.rows[s] = b.rows;
    p.out_stride[s] = b.out_stride;
    if (b.accumulate) p.acc_mask |= 1u << s;
  }
  if (tiles > 65535) return false;
  p.n_segments = n_segs;
  p.row_bytes = row_bytes;
  p.n_blocks = static_cast<int>(a.n / 32);
  p.xq = a.xq;
  p.n_tokens = a.n_tokens;
  switch (a.type) {
    case quant::Type::Q8_0:
      launch<FmtQ8_0>(p, stream);
      return true;
    case quant::Type::Q4_0:
      launch<FmtQ4_0>(p, stream);
      return true;
    case quant::Type::Q5_0:
      launch<FmtQ5_0>(p, stream);
      return true;
    case quant::Type::Q4_K:
      launch<FmtQ4_K>(p, stream);
      return true;
    case quant::Type::Q5_K:
      launch<FmtQ5_K>(p, stream);
      return true;
    case quant::Type::Q6_K:
      launch<FmtQ6_K>(p, stream);
      return true;
    default:
      return false;  // float weights: matvec's float path
  }
}

bool matmul_mma(const MatvecArgs& a, int64_t row_bytes, cudaStream_t stream) {
  return matmul_mma_multi(&a, 1, row_bytes, stream);
}

}  // namespace resident::cuda
