// Internal interface between the public matmul entry points (matmul.cpp) and the AVX2 kernels
// (matmul_int8.cpp for block-quantized weights, matmul_float.cpp for F32/F16/BF16).
//
// Every kernel computes, for each (row, token), exactly the canonical dot product of
// docs/numerics.md: per 32-block an exact integer (or fmaf-chained float) partial turned into
// a float by the type's formula, then the sequential sum over blocks. The vectorization keeps
// that order: partials of 8 blocks are computed in the 8 lanes of a vector, then transposed so
// that a lane holds one *row*, and the per-row sums advance one block at a time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::quant::detail {

// Activations of n_tokens tokens repacked for the int8 kernels: contiguous int8 values and
// per-block scale/sum arrays, so 8 consecutive blocks' scales load as one vector.
struct ActPack {
  int64_t n = 0;   // elements per token
  int64_t nb = 0;  // 32-blocks per token
  int n_tokens = 0;
  const numerics::ActBlock* src = nullptr;  // the original blocks (scalar tail path)
  const int8_t* q = nullptr;                // [n_tokens][n]
  const float* d = nullptr;                 // [n_tokens][nb]  a.d
  const float* sumf = nullptr;              // [n_tokens][nb]  (float)a.sum
  const int32_t* sumi = nullptr;            // [n_tokens][nb]  a.sum
  const int16_t* half_sums = nullptr;       // [n_tokens][2 nb] sums of each 16-half (Q6_K only)
};

// Packs into per-thread storage that stays valid until the calling thread packs again.
const ActPack& pack_activations(const numerics::ActBlock* xq, int64_t n, int n_tokens,
                                bool with_half_sums);

// out[t * out_stride + r] for rows [row_begin, row_end), tokens [0, act.n_tokens); `w` points
// at row 0, rows are `row_bytes` apart.
void matmul_int8(Type type, const uint8_t* w, size_t row_bytes, const ActPack& act, float* out,
                 int64_t out_stride, int64_t row_begin, int64_t row_end);

// Activations of ceil(n_tokens / 8) groups of 8 tokens for the batched kernels (lane = token);
// missing tokens of the last group are zero (their lanes are computed and never stored).
struct TokAct {
  int64_t nb = 0;  // 32-blocks per token
  int n_tokens = 0;
  int n_groups = 0;
  const int8_t* q = nullptr;      // [g][j][k][t][4]: elements 4k..4k+3 of block j, token t
  const float* d = nullptr;       // [g][j][t] a.d
  const float* sumf = nullptr;    // [g][j][t] (float)a.sum
  const int32_t* sumi = nullptr;  // [g][j][t] a.sum
  // Q6_K offsets: [g][j][h][t][2] int16, 32 * the sum of a over the 8 elements of half h
  // (elements 16h .. 16h + 15) that land in int16 lane 2t + e of a vpmaddubsw output: elements
  // 4k + 2e and 4k + 2e + 1 for the 4 quads k of the half (|value| <= 32 * 8 * 127 = 32512).
  const int16_t* p32 = nullptr;
};
// Bytes of storage for tok_act_layout (including alignment slack).
size_t tok_act_bytes(int64_t nb, int n_tokens);
// The layout over `storage` (tok_act_bytes long); nothing is packed yet.
TokAct tok_act_layout(uint8_t* storage, int64_t nb, int n_tokens);
// Packs groups [g_begin, g_end) of xq into `pack`'s storage (disjoint ranges may be packed by
// different threads at once).
void pack_tok_act_groups(const numerics::ActBlock* xq, const TokAct& pack, int g_begin, int g_end);

// Batched path for n_tokens >= kBatchedMinTokens (Q4_K, Q5_K, Q6_K, Q4_0, Q5_0), lane = token
// layout: uses `packed` when given (it must hold xq), else packs the activations itself.
// Returns false, doing nothing, when it does not apply (other types, fewer tokens); the
// caller then uses matmul_int8.
inline constexpr int kBatchedMinTokens = 4;
bool batched_applies(Type type, int n_tokens);
bool matmul_int8_batched(Type type, const uint8_t* w, size_t row_bytes,
                         const numerics::ActBlock* xq, int64_t n, int n_tokens, float* out,
                         int64_t out_stride, int64_t row_begin, int64_t row_end,
                         const TokAct* packed = nullptr);

void matmul_float(Type type, const uint8_t* w, size_t row_bytes, int64_t n, const float* xf,
                  int n_tokens, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end);

}  // namespace resident::quant::detail
