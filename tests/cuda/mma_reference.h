// Host-side inputs and reference for the tensor-core matmul checks (tests/cuda/mma_harness.cu,
// tests/cuda/matmul_mma_test.cu). Header-only on purpose: it needs nothing but quant_blocks.h
// and canonical.h, so the harness builds with one nvcc line while the rest of the tree changes.
//
// The reference is the spec itself, run on the host with the same RESIDENT_HD functions the
// CUDA-core kernels use: acc = 0.0f; acc = acc + B::partial(B::load(row, j), xq[t][j]) for j in
// order; then the bias and accumulate epilogues of matvec_kernel. (The host build must not
// contract multiply-adds: x86-64 without -mfma has no FMA instruction, and mma-check passes
// -ffp-contract=off as well.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cuda/quant_blocks.h"
#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::cuda::mma_ref {

using numerics::ActBlock;
using quant::Type;

struct Geometry {
  int block_elems, block_bytes;
};

// The block geometry of the int8-activation formats (== quant::type_info, which lives in a .cpp).
inline Geometry geometry(Type type) {
  switch (type) {
    case Type::Q8_0:
      return {32, blocks::Q8_0::kBlockBytes};
    case Type::Q4_0:
      return {32, blocks::Q4_0::kBlockBytes};
    case Type::Q5_0:
      return {32, blocks::Q5_0::kBlockBytes};
    case Type::Q4_K:
      return {256, blocks::Q4_K::kBlockBytes};
    case Type::Q5_K:
      return {256, blocks::Q5_K::kBlockBytes};
    case Type::Q6_K:
      return {256, blocks::Q6_K::kBlockBytes};
    default:
      throw std::runtime_error("mma_ref: not an int8-activation format");
  }
}

inline const char* name(Type type) {
  switch (type) {
    case Type::Q8_0:
      return "Q8_0";
    case Type::Q4_0:
      return "Q4_0";
    case Type::Q5_0:
      return "Q5_0";
    case Type::Q4_K:
      return "Q4_K";
    case Type::Q5_K:
      return "Q5_K";
    case Type::Q6_K:
      return "Q6_K";
    default:
      return "?";
  }
}

inline int64_t row_bytes(Type type, int64_t n) {
  const Geometry g = geometry(type);
  return n / g.block_elems * g.block_bytes;
}

// fp16 bits of a finite, moderate scale: +-2^e * (1 + m / 1024), e in -10 .. -1.
inline uint16_t random_scale(std::mt19937_64& rng) {
  const uint32_t r = static_cast<uint32_t>(rng());
  const uint32_t sign = (r & 1u) << 15, exp = 5 + (r >> 1) % 10, mant = (r >> 8) & 0x3ffu;
  return static_cast<uint16_t>(sign | (exp << 10) | mant);
}

inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// `rows` rows of random blocks: random quant and integer-scale bytes, finite fp16 scales. Rows
// from `distinct` on repeat earlier rows in a scrambled order (the LM-head shape would take long
// to generate), which still catches row indexing errors.
inline std::vector<uint8_t> random_weights(std::mt19937_64& rng, Type type, int64_t rows, int64_t n,
                                           int64_t distinct = int64_t{1} << 40) {
  const Geometry g = geometry(type);
  const int64_t rb = row_bytes(type, n);
  std::vector<uint8_t> w(static_cast<size_t>(rb * rows));
  const int64_t unique = std::min(rows, distinct);
  for (int64_t i = 0; i < rb * unique; i += 8) {
    const uint64_t r = rng();
    for (int k = 0; k < 8 && i + k < rb * unique; ++k)
      w[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  for (int64_t r = 0; r < unique; ++r) {
    for (int64_t b = 0; b < n / g.block_elems; ++b) {
      uint8_t* blk = w.data() + r * rb + b * g.block_bytes;
      switch (type) {
        case Type::Q8_0:
        case Type::Q4_0:
        case Type::Q5_0:
          put_u16(blk, random_scale(rng));  // d
          break;
        case Type::Q4_K:
        case Type::Q5_K:
          put_u16(blk, random_scale(rng));      // d
          put_u16(blk + 2, random_scale(rng));  // dmin
          break;
        case Type::Q6_K:
          put_u16(blk + 208, random_scale(rng));  // d
          break;
        default:
          break;
      }
    }
  }
  for (int64_t r = unique; r < rows; ++r)
    std::copy_n(w.data() + rb * ((r * 7919) % unique), rb, w.data() + rb * r);
  return w;
}

// Activation blocks of Qwen-like rows (mostly O(1), a few massive channels, one all-zero block),
// quantized by the spec's quantize_act_block.
inline std::vector<ActBlock> random_activations(std::mt19937_64& rng, int64_t n, int n_tokens) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  std::vector<ActBlock> xq(static_cast<size_t>(n / 32 * n_tokens));
  std::vector<float> x(static_cast<size_t>(n));
  for (int t = 0; t < n_tokens; ++t) {
    for (float& v : x) v = normal(rng);
    x[pick(rng)] = 300.0f;
    x[pick(rng)] = -1200.5f;
    if (n >= 64) std::fill_n(&x[32], 32, 0.0f);
    for (int64_t j = 0; j < n / 32; ++j)
      numerics::quantize_act_block(&x[32 * j], &xq[t * (n / 32) + j]);
  }
  return xq;
}

// out[t * out_stride + r] for rows [r_begin, r_end), as matvec_kernel defines it.
template <typename B>
void reference_rows(const uint8_t* w, int64_t rb, int64_t n, const ActBlock* xq, int n_tokens,
                    float* out, int64_t out_stride, const float* bias, bool accumulate,
                    int64_t r_begin, int64_t r_end) {
  const int64_t nb = n / 32;
  std::vector<typename B::Block> blk(static_cast<size_t>(nb));
  for (int64_t r = r_begin; r < r_end; ++r) {
    for (int64_t j = 0; j < nb; ++j) blk[j] = B::load(w + r * rb, j);
    for (int t = 0; t < n_tokens; ++t) {
      float acc = 0.0f;
      for (int64_t j = 0; j < nb; ++j) acc = acc + B::partial(blk[j], xq[t * nb + j]);
      float* o = out + t * out_stride + r;
      float y = acc;
      if (bias) y = y + bias[r];
      if (accumulate) y = *o + y;
      *o = y;
    }
  }
}

// The whole matrix, rows split over the host's threads (each row is independent).
inline void reference(Type type, const uint8_t* w, int64_t rows, int64_t n, const ActBlock* xq,
                      int n_tokens, float* out, int64_t out_stride, const float* bias,
                      bool accumulate) {
  const int64_t rb = row_bytes(type, n);
  const int64_t n_threads =
      std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), rows));
  std::vector<std::thread> pool;
  for (int64_t k = 0; k < n_threads; ++k) {
    const int64_t b = rows * k / n_threads, e = rows * (k + 1) / n_threads;
    pool.emplace_back([=] {
      auto run = [&](auto tag) {
        using B = decltype(tag);
        reference_rows<B>(w, rb, n, xq, n_tokens, out, out_stride, bias, accumulate, b, e);
      };
      switch (type) {
        case Type::Q8_0:
          return run(blocks::Q8_0{});
        case Type::Q4_0:
          return run(blocks::Q4_0{});
        case Type::Q5_0:
          return run(blocks::Q5_0{});
        case Type::Q4_K:
          return run(blocks::Q4_K{});
        case Type::Q5_K:
          return run(blocks::Q5_K{});
        case Type::Q6_K:
          return run(blocks::Q6_K{});
        default:
          return;
      }
    });
  }
  for (auto& th : pool) th.join();
}

}  // namespace resident::cuda::mma_ref
