// Scalar reference of docs/numerics.md "Weight-row dot products". Every float operation is
// written in the spec's order (the build has -ffp-contract=off, so nothing is fused unless
// written as fmaf).
#include "quant/dot_reference.h"

#include <cmath>
#include <cstring>

#include "quant/block_formats.h"

namespace resident::quant {

namespace {

// q-side integer dot over one 32-block with weights wq[0..31].
int32_t int_dot(const int* wq, const int8_t* aq) {
  int32_t s = 0;
  for (int i = 0; i < kQK; ++i) s += wq[i] * aq[i];
  return s;
}

float partial_q8_0(const BlockQ8_0& b, const numerics::ActBlock& a) {
  int wq[kQK];
  for (int i = 0; i < kQK; ++i) wq[i] = b.qs[i];
  return (fp16_to_float(b.d) * a.d) * static_cast<float>(int_dot(wq, a.q));
}

float partial_q4_0(const BlockQ4_0& b, const numerics::ActBlock& a) {
  int wq[kQK];
  for (int i = 0; i < 16; ++i) {
    wq[i] = (b.qs[i] & 0xF) - 8;
    wq[i + 16] = (b.qs[i] >> 4) - 8;
  }
  return (fp16_to_float(b.d) * a.d) * static_cast<float>(int_dot(wq, a.q));
}

float partial_q5_0(const BlockQ5_0& b, const numerics::ActBlock& a) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  int wq[kQK];
  for (int i = 0; i < 16; ++i) {
    wq[i] = ((b.qs[i] & 0xF) | (((qh >> i) & 1) << 4)) - 16;
    wq[i + 16] = ((b.qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4)) - 16;
  }
  return (fp16_to_float(b.d) * a.d) * static_cast<float>(int_dot(wq, a.q));
}

// Q4_K / Q5_K sub-block j (0..7) of super-block b.
template <bool kFiveBit, class Block>
float partial_qk(const Block& b, int j, const numerics::ActBlock& a) {
  uint8_t sc, m;
  get_scale_min_k4(j, b.scales, &sc, &m);
  int wq[kQK];
  for (int l = 0; l < kQK; ++l) {
    wq[l] = (b.qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0xF;
    if constexpr (kFiveBit) wq[l] |= ((b.qh[l] >> j) & 1) << 4;
  }
  const int32_t isum = int_dot(wq, a.q);
  const float d = fp16_to_float(b.d);
  const float dmin = fp16_to_float(b.dmin);
  return a.d * ((d * static_cast<float>(sc)) * static_cast<float>(isum) -
                (dmin * static_cast<float>(m)) * static_cast<float>(a.sum));
}

float partial_q6_k(const BlockQ6_K& b, int j, const numerics::ActBlock& a) {
  const int h = j / 4, s = j % 4;
  int wq[kQK];
  for (int l = 0; l < kQK; ++l) {
    const int lo = (b.ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xF;
    const int hi = (b.qh[32 * h + l] >> (2 * s)) & 3;
    wq[l] = (lo | (hi << 4)) - 32;
  }
  int32_t isum_lo = 0, isum_hi = 0;
  for (int l = 0; l < 16; ++l) isum_lo += wq[l] * a.q[l];
  for (int l = 16; l < 32; ++l) isum_hi += wq[l] * a.q[l];
  const int32_t combined = b.scales[2 * j] * isum_lo + b.scales[2 * j + 1] * isum_hi;
  return a.d * (fp16_to_float(b.d) * static_cast<float>(combined));
}

// Float weights: p = fmaf(w_31, x_31, ... fmaf(w_1, x_1, w_0 * x_0)).
template <class Load>
float partial_float(Load w, const float* x) {
  float p = w(0) * x[0];
  for (int i = 1; i < kQK; ++i) p = std::fmaf(w(i), x[i], p);
  return p;
}

}  // namespace

float block_partial_reference(Type type, const void* row, int64_t j, const numerics::ActBlock* a,
                              const float* x) {
  const auto* bytes = static_cast<const uint8_t*>(row);
  switch (type) {
    case Type::F32: {
      const float* w = reinterpret_cast<const float*>(bytes) + kQK * j;
      return partial_float([w](int i) { return w[i]; }, x);
    }
    case Type::F16: {
      const uint16_t* w = reinterpret_cast<const uint16_t*>(bytes) + kQK * j;
      return partial_float([w](int i) { return fp16_to_float(w[i]); }, x);
    }
    case Type::BF16: {
      const uint16_t* w = reinterpret_cast<const uint16_t*>(bytes) + kQK * j;
      return partial_float([w](int i) { return bf16_to_float(w[i]); }, x);
    }
    case Type::Q8_0:
      return partial_q8_0(reinterpret_cast<const BlockQ8_0*>(bytes)[j], *a);
    case Type::Q4_0:
      return partial_q4_0(reinterpret_cast<const BlockQ4_0*>(bytes)[j], *a);
    case Type::Q5_0:
      return partial_q5_0(reinterpret_cast<const BlockQ5_0*>(bytes)[j], *a);
    case Type::Q4_K:
      return partial_qk<false>(reinterpret_cast<const BlockQ4_K*>(bytes)[j / 8], j % 8, *a);
    case Type::Q5_K:
      return partial_qk<true>(reinterpret_cast<const BlockQ5_K*>(bytes)[j / 8], j % 8, *a);
    case Type::Q6_K:
      return partial_q6_k(reinterpret_cast<const BlockQ6_K*>(bytes)[j / 8], j % 8, *a);
  }
  return 0.0f;
}

float dot_row_reference(Type type, const void* row, const numerics::ActBlock* xq, const float* xf,
                        int64_t n) {
  float dot = 0.0f;
  for (int64_t j = 0; j < n / kQK; ++j) {
    dot = dot +
          block_partial_reference(type, row, j, xq ? xq + j : nullptr, xf ? xf + kQK * j : nullptr);
  }
  return dot;
}

}  // namespace resident::quant
