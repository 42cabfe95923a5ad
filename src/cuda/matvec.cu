// Work split: one warp per (row, group of kTok tokens). In each round, lane l decodes weight
// block j = 32 * round + l once and forms its float partial p_j against each token's activation
// block (integer dot by dp4a: exact, so any split is fine). The partials go through shared
// memory to lane t, which adds token t's partials in j order: the spec's sequential sum. The
// chain is short (n / 32 adds) and the other warps on the SM hide it.
#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/legacy_switch.h"
#include "cuda/matmul_mma.cuh"
#include "cuda/matvec.cuh"
#include "cuda/matvec_decode.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quant_blocks.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kWarps = 4;  // rows per thread block

template <typename B, int kTok>
__global__ void __launch_bounds__(kWarps * 32)
    matvec_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t row_bytes, int n_blocks,
                  const numerics::ActBlock* __restrict__ xq, const float* __restrict__ xf,
                  int n_tokens, float* out, int64_t out_stride, const float* __restrict__ bias,
                  bool accumulate) {
  __shared__ float part[kWarps][kTok][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= rows) return;  // whole warp leaves together
  const int t0 = blockIdx.y * kTok;
  const int n_tok = min(kTok, n_tokens - t0);
  const uint8_t* wrow = w + row * row_bytes;
  const int64_t n = static_cast<int64_t>(n_blocks) * 32;

  float acc = 0.0f;  // lane t < n_tok: token t0 + t's running sum, from 0.0f as the spec says
  for (int j0 = 0; j0 < n_blocks; j0 += 32) {
    const int j = j0 + lane;
    if (j < n_blocks) {
      const typename B::Block blk = B::load(wrow, j);
#pragma unroll
      for (int t = 0; t < kTok; ++t) {
        if (t < n_tok) {
          if constexpr (B::kInt8)
            part[warp][t][lane] =
                B::partial(blk, xq[(t0 + t) * static_cast<int64_t>(n_blocks) + j]);
          else
            part[warp][t][lane] = B::partial(blk, xf + (t0 + t) * n + 32 * static_cast<int64_t>(j));
        }
      }
    }
    __syncwarp();
    if (lane < n_tok) {
      const int count = min(32, n_blocks - j0);
      for (int i = 0; i < count; ++i) acc = acc + part[warp][lane][i];
    }
    __syncwarp();
  }
  if (lane < n_tok) {
    float* o = out + (t0 + lane) * out_stride + row;
    float y = acc;
    if (bias) y = y + bias[row];
    if (accumulate) y = *o + y;
    *o = y;
  }
}

// Decode (one token, int8 activations): a thread block of R warps takes R consecutive rows,
// which are one contiguous byte range of the weight tensor. All threads first copy that range
// (16-byte loads, coalesced, every load of the block in flight at once) and the token's
// activation blocks into shared memory; after one barrier each warp works on its row exactly as
// matvec_kernel does (lane l: block j = 32 * round + l, partials in j order by lane 0), reading
// shared memory. Same operations, same order, same bits; far more bytes in flight per SM than
// the per-lane 4-byte loads of the general kernel.
constexpr int kStagedMaxWarps = 8;
constexpr int kStagedSmemBudget = 46 * 1024;  // dynamic bytes: under the 48 KB default limit

__host__ __device__ inline int staged_act_bytes(int n_blocks) {
  return (n_blocks * static_cast<int>(sizeof(numerics::ActBlock)) + 15) & ~15;
}

template <typename B>
__global__ void __launch_bounds__(kStagedMaxWarps * 32)
    matvec_staged_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t row_bytes,
                         int n_blocks, int rows_per_block,
                         const numerics::ActBlock* __restrict__ xq, float* out,
                         const float* __restrict__ bias, bool accumulate) {
  extern __shared__ uint4 smem[];
  __shared__ float part[kStagedMaxWarps][32];
  auto* a_s = reinterpret_cast<numerics::ActBlock*>(smem);
  uint8_t* w_s = reinterpret_cast<uint8_t*>(smem) + staged_act_bytes(n_blocks);
  pdl_trigger();
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int nr = static_cast<int>(min(static_cast<int64_t>(rows_per_block), rows - r0));

  // Weights: the 16-byte-aligned chunks that cover [start, end). A chunk holding a byte of the
  // range cannot cross a page, so the aligned load is safe; the last chunk stops at `end`.
  const uint8_t* start = w + r0 * row_bytes;
  const uint8_t* end = start + nr * row_bytes;
  const uint8_t* astart =
      reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(start) & ~uintptr_t{15});
  const int off = static_cast<int>(start - astart);
  const int n_chunks = static_cast<int>((end - astart + 15) / 16);
  uint4* w_s4 = reinterpret_cast<uint4*>(w_s);
  for (int c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    const uint8_t* p = astart + 16 * static_cast<int64_t>(c);
    if (p + 16 <= end) {
      w_s4[c] = __ldg(reinterpret_cast<const uint4*>(p));
    } else {
      uint8_t* dst = w_s + 16 * c;
      for (int i = 0; i < 16; ++i) dst[i] = p + i < end ? p[i] : 0;
    }
  }
  // Weights are never written: their copy above may overlap the previous kernel (pdl.cuh).
  // Everything below reads or writes activations, so it waits for it.
  pdl_wait();
  // Activations: n_blocks * 40 bytes, as 4-byte words (ActBlock is 4-byte aligned).
  const int* xs = reinterpret_cast<const int*>(xq);
  int* as = reinterpret_cast<int*>(a_s);
  const int n_words = n_blocks * static_cast<int>(sizeof(numerics::ActBlock) / 4);
  for (int i = threadIdx.x; i < n_words; i += blockDim.x) as[i] = xs[i];
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp >= nr) return;
  const int64_t row = r0 + warp;
  const uint8_t* wrow = w_s + off + warp * row_bytes;
  float acc = 0.0f;  // lane 0: the running sum, from 0.0f
  for (int j0 = 0; j0 < n_blocks; j0 += 32) {
    const int j = j0 + lane;
    if (j < n_blocks) part[warp][lane] = B::partial(B::load(wrow, j), a_s[j]);
    __syncwarp();
    if (lane == 0) {
      const int count = min(32, n_blocks - j0);
      for (int i = 0; i < count; ++i) acc = acc + part[warp][i];
    }
    __syncwarp();
  }
  if (lane == 0) {
    float y = acc;
    if (bias) y = y + bias[row];
    if (accumulate) y = out[row] + y;
    out[row] = y;
  }
}

// Rows per block for the staged kernel (0: does not fit, use the general kernel).
int staged_rows(int n_blocks, int64_t row_bytes) {
  const int64_t room = kStagedSmemBudget - staged_act_bytes(n_blocks) - 32;
  if (room < row_bytes) return 0;
  return static_cast<int>(std::min<int64_t>(kStagedMaxWarps, room / row_bytes));
}

template <typename B>
void launch(const MatvecArgs& a, int64_t row_bytes, cudaStream_t stream) {
  const int n_blocks = static_cast<int>(a.n / 32);
  const dim3 block(kWarps * 32);
  const auto* w = static_cast<const uint8_t*>(a.w);
  // Decode: matvec_decode, else (legacy or unsupported) the staged kernel where its shared
  // memory fits. Prefill: matmul_mma from 16 tokens, else one token per warp, or batches of 8
  // tokens sharing each decoded weight block.
  static const bool legacy = use_legacy("matvec");
  static const bool legacy_decode = use_legacy("decode");
  if constexpr (B::kInt8) {
    // Decode: matvec_decode.cu unless switched off for an A/B run.
    if (a.n_tokens == 1 && !legacy && !legacy_decode && matvec_decode_supported(a.type, a.n)) {
      MatvecDecodeArgs s;
      s.type = a.type;
      s.n = a.n;
      s.xq = a.xq;
      s.seg[0] = {a.w, a.rows, a.out, a.bias, a.accumulate};
      s.n_segments = 1;
      return matvec_decode(s, stream);
    }
    // Prefill batches: the int8 tensor-core matmul (matmul_mma.cu, same bits) where it takes
    // the case; it declines (returns false) below 16 tokens and for shapes it cannot tile.
    static const bool legacy_mma = use_legacy("mma");
    if (a.n_tokens >= 16 && !legacy_mma && matmul_mma(a, row_bytes, stream)) return;
    const int R = a.n_tokens == 1 && !legacy ? staged_rows(n_blocks, row_bytes) : 0;
    if (R > 0) {
      const int64_t n_chunks = (R * row_bytes + 15) / 16 + 1;
      const size_t smem = staged_act_bytes(n_blocks) + n_chunks * 16;
      const unsigned grid = static_cast<unsigned>((a.rows + R - 1) / R);
      launch_pdl(matvec_staged_kernel<B>, dim3(grid), dim3(R * 32), smem, stream, w, a.rows,
                 row_bytes, n_blocks, R, a.xq, a.out, a.bias, a.accumulate);
      return;
    }
  }
  if (a.n_tokens < 8) {
    const dim3 grid(static_cast<unsigned>((a.rows + kWarps - 1) / kWarps), a.n_tokens);
    matvec_kernel<B, 1><<<grid, block, 0, stream>>>(w, a.rows, row_bytes, n_blocks, a.xq, a.xf,
                                                    a.n_tokens, a.out, a.out_stride, a.bias,
                                                    a.accumulate);
  } else {
    const dim3 grid(static_cast<unsigned>((a.rows + kWarps - 1) / kWarps), (a.n_tokens + 7) / 8);
    matvec_kernel<B, 8><<<grid, block, 0, stream>>>(w, a.rows, row_bytes, n_blocks, a.xq, a.xf,
                                                    a.n_tokens, a.out, a.out_stride, a.bias,
                                                    a.accumulate);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace {

// The preconditions every path relies on (throws resident::Error).
void check_args(const MatvecArgs& a) {
  const auto& info = quant::type_info(a.type);
  const std::string what = "cuda matvec (" + std::string(info.name) + "): ";
  if (!a.w || !a.out) throw Error(what + "null weight or output pointer");
  if (a.rows < 1 || a.rows > (int64_t{1} << 31)) throw Error(what + "rows out of range");
  if (a.n <= 0 || a.n % 32 != 0 || a.n % info.block_elems != 0 || a.n / 32 > (1 << 30))
    throw Error(what + "row length " + std::to_string(a.n) +
                " is not a multiple of 32 and of the block size");
  if (a.n_tokens < 1 || a.n_tokens > 65535 * 8) throw Error(what + "n_tokens out of range");
  if (a.out_stride < a.rows) throw Error(what + "out_stride < rows");
  const bool int8 = quant::uses_int8_activations(a.type);
  if (int8 && !a.xq) throw Error(what + "quantized weights need int8 activation blocks");
  if (!int8 && !a.xf) throw Error(what + "float weights need float activations");
  // Q4_K/Q5_K read 32-bit words, F32 floats: their rows must start 4-byte aligned.
  if (reinterpret_cast<uintptr_t>(a.w) % 4 != 0) throw Error(what + "weights not 4-byte aligned");
}

}  // namespace

void matvec_multi(const MatvecArgs* a, int n, cudaStream_t stream) {
  for (int i = 0; i < n; ++i) check_args(a[i]);
  static const bool legacy = use_legacy("matvec") || use_legacy("mma") || use_legacy("mma_multi");
  if (n > 1 && !legacy && a[0].n_tokens >= 16 &&
      matmul_mma_multi(a, n,
                       static_cast<int64_t>(quant::row_bytes(quant::type_info(a[0].type), a[0].n)),
                       stream))
    return;
  for (int i = 0; i < n; ++i) matvec(a[i], stream);
}

void matvec(const MatvecArgs& a, cudaStream_t stream) {
  check_args(a);
  const auto& info = quant::type_info(a.type);
  const std::string what = "cuda matvec (" + std::string(info.name) + "): ";
  const int64_t row_bytes = static_cast<int64_t>(quant::row_bytes(info, a.n));
  switch (a.type) {
    case quant::Type::Q4_0:
      return launch<blocks::Q4_0>(a, row_bytes, stream);
    case quant::Type::Q5_0:
      return launch<blocks::Q5_0>(a, row_bytes, stream);
    case quant::Type::Q8_0:
      return launch<blocks::Q8_0>(a, row_bytes, stream);
    case quant::Type::Q4_K:
      return launch<blocks::Q4_K>(a, row_bytes, stream);
    case quant::Type::Q5_K:
      return launch<blocks::Q5_K>(a, row_bytes, stream);
    case quant::Type::Q6_K:
      return launch<blocks::Q6_K>(a, row_bytes, stream);
    case quant::Type::F32:
      return launch<blocks::F32>(a, row_bytes, stream);
    case quant::Type::F16:
      return launch<blocks::F16>(a, row_bytes, stream);
    case quant::Type::BF16:
      return launch<blocks::BF16>(a, row_bytes, stream);
  }
  throw Error(what + "unsupported type");
}

}  // namespace resident::cuda
