// Reference dequantization. Each formula performs the same float32 operations, in the same
// order, as the `gguf` package's NumPy dequantizer of that type, so the results are
// bit-identical (tests/python/test_quant.py checks this on random blocks).
#include <cstring>
#include <string>

#include "quant/block_formats.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::quant {

namespace {

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    for (int l = 0; l < kQK; ++l) y[l] = static_cast<float>(b[i].qs[l]) * d;
  }
}

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    for (int l = 0; l < 16; ++l) {
      y[l] = d * static_cast<float>((b[i].qs[l] & 0xF) - 8);
      y[l + 16] = d * static_cast<float>((b[i].qs[l] >> 4) - 8);
    }
  }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int l = 0; l < 16; ++l) {
      const int q0 = (b[i].qs[l] & 0xF) | (((qh >> l) & 1) << 4);
      const int q1 = (b[i].qs[l] >> 4) | (((qh >> (l + 16)) & 1) << 4);
      y[l] = d * static_cast<float>(q0 - 16);
      y[l + 16] = d * static_cast<float>(q1 - 16);
    }
  }
}

// Q4_K and Q5_K: gguf computes d*sc and dmin*m once per sub-block, then (d*sc)*q - dm.
template <bool kFiveBit, class Block>
void dequant_qk(const Block* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(b[i].d);
    const float dmin = fp16_to_float(b[i].dmin);
    for (int j = 0; j < 8; ++j, y += kQK) {
      uint8_t sc, m;
      get_scale_min_k4(j, b[i].scales, &sc, &m);
      const float ds = d * static_cast<float>(sc);
      const float dm = dmin * static_cast<float>(m);
      const uint8_t* qs = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j & 1);
      for (int l = 0; l < kQK; ++l) {
        int q = (qs[l] >> shift) & 0xF;
        if constexpr (kFiveBit) q |= ((b[i].qh[l] >> j) & 1) << 4;
        y[l] = ds * static_cast<float>(q) - dm;
      }
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(b[i].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b[i].ql + 64 * h;
      const uint8_t* qh = b[i].qh + 32 * h;
      for (int s = 0; s < 4; ++s, y += kQK) {
        for (int l = 0; l < kQK; ++l) {
          const int lo = (ql[l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xF;
          const int hi = (qh[l] >> (2 * s)) & 3;
          const float ds = d * static_cast<float>(b[i].scales[8 * h + 2 * s + l / 16]);
          y[l] = ds * static_cast<float>((lo | (hi << 4)) - 32);
        }
      }
    }
  }
}

}  // namespace

void dequantize_row(Type type, const void* src, float* dst, int64_t n) {
  const int64_t nb = whole_blocks(type, n, "dequantize_row");
  switch (type) {
    case Type::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case Type::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(h[i]);
      return;
    }
    case Type::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
      return;
    }
    case Type::Q8_0:
      return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case Type::Q4_0:
      return dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case Type::Q5_0:
      return dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case Type::Q4_K:
      return dequant_qk<false>(static_cast<const BlockQ4_K*>(src), dst, nb);
    case Type::Q5_K:
      return dequant_qk<true>(static_cast<const BlockQ5_K*>(src), dst, nb);
    case Type::Q6_K:
      return dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
  }
}

}  // namespace resident::quant
