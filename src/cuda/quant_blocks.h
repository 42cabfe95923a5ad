// Device-side readers of the GGUF block formats: the per-32-block partial of docs/numerics.md
// ("Weight-row dot products") for the matvec, and the element values for the embedding lookup.
//
// Everything here is RESIDENT_HD so the same source also compiles on the host: the integer
// unpacking (the error-prone part) can then be checked without a GPU, and the float formulas are
// literally the spec's. Each format is a struct with
//   kInt8          whether it meets int8 activation blocks (else float activations)
//   Block          one 32-element block decoded into registers (loaded once, reused per token)
//   load(row, j)   decodes 32-block j of a weight row (k-quants: sub-block j % 8 of super-block
//                  j / 8, in storage order)
//   partial(b, a)  the float partial p_j of the spec against activation block a
//   value(row, i)  element i of the row, bit-identical to quant::dequantize_row
//
// Alignment: rows of Q4_K/Q5_K start on 4-byte boundaries (block sizes 144/176 and tensor
// offsets checked by the backend); Q8_0/Q4_0/Q5_0/Q6_K blocks are only 2-byte aligned (34, 18,
// 22, 210 bytes), so their words are assembled from 16-bit loads.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

#include "numerics/canonical.h"
#include "numerics/host_device.h"

namespace resident::cuda::blocks {

using numerics::ActBlock;

// Four signed byte products added to c: __dp4a on the device, the same integer sum on the host.
RESIDENT_HD int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int k = 0; k < 4; ++k)
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * k)) *
         static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * k));
  return c;
#endif
}

// Exact fp16 -> float (every half is representable as a float).
RESIDENT_HD float half_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u);  // NaNs come out quiet
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: renormalize
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | ((112u - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return numerics::bits_to_float(bits);
#endif
}

RESIDENT_HD float bf16_to_float(uint16_t h) {
  return numerics::bits_to_float(static_cast<uint32_t>(h) << 16);
}

RESIDENT_HD uint16_t load_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
#endif
}

// 32-bit little-endian word at a 2-byte aligned address.
RESIDENT_HD uint32_t load_u32_a2(const uint8_t* p) {
  return static_cast<uint32_t>(load_u16(p)) | (static_cast<uint32_t>(load_u16(p + 2)) << 16);
}

// 32-bit word at a 4-byte aligned address.
RESIDENT_HD uint32_t load_u32_a4(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
#endif
}

// Word k (bytes 4k..4k+3) of an activation block's quants.
RESIDENT_HD int act_word(const ActBlock& a, int k) {
#if defined(__CUDA_ARCH__)
  return reinterpret_cast<const int*>(a.q)[k];
#else
  int v;
  memcpy(&v, a.q + 4 * k, 4);
  return v;
#endif
}

// Integer dot of 8 packed weight words with the activation quants.
RESIDENT_HD int dot8(const int (&w)[8], const ActBlock& a) {
  int s = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) s = dp4a(w[k], act_word(a, k), s);
  return s;
}

// ---------------------------------------------------------------- Q8_0: {fp16 d; int8 q[32]}
struct Q8_0 {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 1;    // 32-blocks per storage block
  static constexpr int kBlockBytes = 34;  // per 32 elements
  struct Block {
    int w[8];
    float d;
  };
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + j * kBlockBytes;
    Block out;
    out.d = half_to_float(load_u16(b));
#pragma unroll
    for (int k = 0; k < 8; ++k) out.w[k] = static_cast<int>(load_u32_a2(b + 2 + 4 * k));
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    return (b.d * a.d) * static_cast<float>(dot8(b.w, a));
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 32) * kBlockBytes;
    return half_to_float(load_u16(b)) * static_cast<float>(static_cast<int8_t>(b[2 + i % 32]));
  }
};

// ------------------------------------- Q4_0: {fp16 d; u8 qs[16]}, element l: low nibble of
// qs[l] for l < 16, high nibble of qs[l - 16] otherwise; value d * (q - 8)
struct Q4_0 {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 1;  // 32-blocks per storage block
  static constexpr int kBlockBytes = 18;
  struct Block {
    int w[8];  // unsigned quants 0..15, one per byte
    float d;
  };
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + j * kBlockBytes;
    Block out;
    out.d = half_to_float(load_u16(b));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t v = load_u32_a2(b + 2 + 4 * k);
      out.w[k] = static_cast<int>(v & 0x0f0f0f0fu);
      out.w[k + 4] = static_cast<int>((v >> 4) & 0x0f0f0f0fu);
    }
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    // sum (q - 8) * x = sum q * x - 8 * sum x: exact integer identity
    const int isum = dot8(b.w, a) - 8 * a.sum;
    return (b.d * a.d) * static_cast<float>(isum);
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 32) * kBlockBytes;
    const int l = static_cast<int>(i % 32);
    const int q = l < 16 ? (b[2 + l] & 0x0f) : (b[2 + l - 16] >> 4);
    return half_to_float(load_u16(b)) * static_cast<float>(q - 8);
  }
};

// 4 bits (bit k of `bits`, k < 4) -> bit 4 of byte k.
RESIDENT_HD uint32_t spread_bit4(uint32_t bits) {
  return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

// ----------------------------- Q5_0: {fp16 d; u32 qh; u8 qs[16]}, element l gets high bit l of qh
struct Q5_0 {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 1;  // 32-blocks per storage block
  static constexpr int kBlockBytes = 22;
  struct Block {
    int w[8];  // unsigned quants 0..31
    float d;
  };
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + j * kBlockBytes;
    Block out;
    out.d = half_to_float(load_u16(b));
    const uint32_t qh = load_u32_a2(b + 2);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t v = load_u32_a2(b + 6 + 4 * k);
      out.w[k] = static_cast<int>((v & 0x0f0f0f0fu) | spread_bit4((qh >> (4 * k)) & 0xfu));
      out.w[k + 4] =
          static_cast<int>(((v >> 4) & 0x0f0f0f0fu) | spread_bit4((qh >> (16 + 4 * k)) & 0xfu));
    }
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    const int isum = dot8(b.w, a) - 16 * a.sum;
    return (b.d * a.d) * static_cast<float>(isum);
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 32) * kBlockBytes;
    const int l = static_cast<int>(i % 32);
    const uint32_t qh = load_u32_a2(b + 2);
    const int lo = l < 16 ? (b[6 + l] & 0x0f) : (b[6 + l - 16] >> 4);
    const int q = lo | static_cast<int>(((qh >> l) & 1u) << 4);
    return half_to_float(load_u16(b)) * static_cast<float>(q - 16);
  }
};

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (ggml get_scale_min_k4).
RESIDENT_HD void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// ---------- Q4_K: {fp16 d; fp16 dmin; u8 scales[12]; u8 qs[128]} per 256 elements. Sub-block j
// uses qs[32 * (j / 2) + l], low nibble for even j, high nibble for odd j.
struct Q4_K {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 8;     // 32-blocks per storage block
  static constexpr int kBlockBytes = 144;  // per 256 elements
  struct Block {
    int w[8];
    float dsc;  // d * (float)sc_j
    float dm;   // dmin * (float)m_j
  };
  // dsc and dm of sub-block `sub` of the super-block at b (shared with Q5_K, whose first 16
  // bytes have the same layout, and with matvec_decode's 16-byte quant loader).
  static RESIDENT_HD void scale_fields(const uint8_t* b, int sub, float* dsc, float* dm) {
    int sc, m;
    k4_scale_min(b + 4, sub, &sc, &m);
    *dsc = half_to_float(load_u16(b)) * static_cast<float>(sc);
    *dm = half_to_float(load_u16(b + 2)) * static_cast<float>(m);
  }
  // scale_fields from the super-block's first 16 bytes as words: d and dmin, scales 0-3, 4-7,
  // 8-11. k4_scale_min for all four bytes of a word at once, then the sub-block's byte: no
  // branch on sub (a warp's lanes hold different sub-blocks, so that branch diverges). For the
  // decode matvec (load_q4k_a16); the prefill matmul keeps scale_fields (with this one it ran
  // 1.2% slower, bench/results/2026-11-29-h200-c283430).
  static RESIDENT_HD void header_fields(uint32_t dm_bits, uint32_t s0, uint32_t s1, uint32_t s2,
                                        int sub, float* dsc, float* dm) {
    const bool low = sub < 4;
    const uint32_t sc_w =
        low ? (s0 & 0x3f3f3f3fu) : ((s2 & 0x0f0f0f0fu) | ((s0 >> 2) & 0x30303030u));
    const uint32_t m_w =
        low ? (s1 & 0x3f3f3f3fu) : (((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 2) & 0x30303030u));
    const int shift = 8 * (sub & 3);
    const int sc = static_cast<int>((sc_w >> shift) & 0xffu);
    const int m = static_cast<int>((m_w >> shift) & 0xffu);
    *dsc = half_to_float(static_cast<uint16_t>(dm_bits & 0xffffu)) * static_cast<float>(sc);
    *dm = half_to_float(static_cast<uint16_t>(dm_bits >> 16)) * static_cast<float>(m);
  }
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + (j / 8) * kBlockBytes;
    const int sub = static_cast<int>(j % 8);
    Block out;
    scale_fields(b, sub, &out.dsc, &out.dm);
    const uint8_t* qs = b + 16 + 32 * (sub / 2);
    const int shift = 4 * (sub & 1);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      out.w[k] = static_cast<int>((load_u32_a4(qs + 4 * k) >> shift) & 0x0f0f0f0fu);
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    return a.d * (b.dsc * static_cast<float>(dot8(b.w, a)) - b.dm * static_cast<float>(a.sum));
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 256) * kBlockBytes;
    const int sub = static_cast<int>((i % 256) / 32), l = static_cast<int>(i % 32);
    float dsc, dm;
    Q4_K::scale_fields(b, sub, &dsc, &dm);
    const int q = (b[16 + 32 * (sub / 2) + l] >> (4 * (sub & 1))) & 0x0f;
    return dsc * static_cast<float>(q) - dm;
  }
};

// ------- Q5_K: {fp16 d; fp16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K plus bit j of
// qh[l] as bit 4 of element l of sub-block j
struct Q5_K {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 8;  // 32-blocks per storage block
  static constexpr int kBlockBytes = 176;
  using Block = Q4_K::Block;
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + (j / 8) * kBlockBytes;
    const int sub = static_cast<int>(j % 8);
    Block out;
    Q4_K::scale_fields(b, sub, &out.dsc, &out.dm);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48 + 32 * (sub / 2);
    const int shift = 4 * (sub & 1);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t lo = (load_u32_a4(qs + 4 * k) >> shift) & 0x0f0f0f0fu;
      const uint32_t hi = ((load_u32_a4(qh + 4 * k) >> sub) & 0x01010101u) << 4;
      out.w[k] = static_cast<int>(lo | hi);
    }
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    return Q4_K::partial(b, a);
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 256) * kBlockBytes;
    const int sub = static_cast<int>((i % 256) / 32), l = static_cast<int>(i % 32);
    float dsc, dm;
    Q4_K::scale_fields(b, sub, &dsc, &dm);
    const int q =
        ((b[48 + 32 * (sub / 2) + l] >> (4 * (sub & 1))) & 0x0f) | (((b[16 + l] >> sub) & 1) << 4);
    return dsc * static_cast<float>(q) - dm;
  }
};

// ------ Q6_K: {u8 ql[128]; u8 qh[64]; int8 scales[16]; fp16 d} per 256 elements. Sub-block j:
// half h = j / 4, k = j % 4; element l has low 4 bits from ql[64h + 32(k & 1) + l] (nibble k / 2)
// and high 2 bits from qh[32h + l] >> 2k; value d * scales[2j + l / 16] * (q - 32).
struct Q6_K {
  static constexpr bool kInt8 = true;
  static constexpr int kSubBlocks = 8;  // 32-blocks per storage block
  static constexpr int kBlockBytes = 210;
  struct Block {
    int w[8];  // unsigned quants 0..63
    int sc_lo, sc_hi;
    float d;
  };
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    const uint8_t* b = row + (j / 8) * kBlockBytes;
    const int sub = static_cast<int>(j % 8);
    const int h = sub / 4, k = sub % 4;
    const uint8_t* ql = b + 64 * h + 32 * (k & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const int lshift = 4 * (k >> 1), hshift = 2 * k;
    Block out;
#pragma unroll
    for (int w = 0; w < 8; ++w) {
      const uint32_t lo = (load_u32_a2(ql + 4 * w) >> lshift) & 0x0f0f0f0fu;
      const uint32_t hi = ((load_u32_a2(qh + 4 * w) >> hshift) & 0x03030303u) << 4;
      out.w[w] = static_cast<int>(lo | hi);
    }
    out.sc_lo = static_cast<int8_t>(b[192 + 2 * sub]);
    out.sc_hi = static_cast<int8_t>(b[192 + 2 * sub + 1]);
    out.d = half_to_float(load_u16(b + 208));
    return out;
  }
  static RESIDENT_HD float partial(const Block& b, const ActBlock& a) {
    // isum over each 16-half of (q - 32) * x = sum q * x - 32 * sum x (exact integers)
    int dot_lo = 0, dot_hi = 0, sum_lo = 0, sum_hi = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      dot_lo = dp4a(b.w[k], act_word(a, k), dot_lo);
      sum_lo = dp4a(0x01010101, act_word(a, k), sum_lo);
      dot_hi = dp4a(b.w[k + 4], act_word(a, k + 4), dot_hi);
      sum_hi = dp4a(0x01010101, act_word(a, k + 4), sum_hi);
    }
    const int isum_lo = dot_lo - 32 * sum_lo, isum_hi = dot_hi - 32 * sum_hi;
    return a.d * (b.d * static_cast<float>(b.sc_lo * isum_lo + b.sc_hi * isum_hi));
  }
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    const uint8_t* b = row + (i / 256) * kBlockBytes;
    const int sub = static_cast<int>((i % 256) / 32), l = static_cast<int>(i % 32);
    const int h = sub / 4, k = sub % 4;
    const int lo = (b[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0x0f;
    const int hi = (b[128 + 32 * h + l] >> (2 * k)) & 0x03;
    const int q = (lo | (hi << 4)) - 32;
    const float dsc = half_to_float(load_u16(b + 208)) *
                      static_cast<float>(static_cast<int8_t>(b[192 + 2 * sub + l / 16]));
    return dsc * static_cast<float>(q);
  }
};

// ------------------------------------------------------ float types: float activations, and
// p_j = fmaf(w_31, x_31, ... fmaf(w_1, x_1, w_0 * x_0))
template <typename Derived>
struct FloatType {
  static constexpr bool kInt8 = false;
  struct Block {
    float w[32];
  };
  static RESIDENT_HD Block load(const uint8_t* row, int64_t j) {
    Block out;
#pragma unroll
    for (int i = 0; i < 32; ++i) out.w[i] = Derived::value(row, 32 * j + i);
    return out;
  }
  // x: the 32 activations of this block.
  static RESIDENT_HD float partial(const Block& b, const float* x) {
    float acc = b.w[0] * x[0];
#pragma unroll
    for (int i = 1; i < 32; ++i) acc = fmaf(b.w[i], x[i], acc);
    return acc;
  }
};

struct F32 : FloatType<F32> {
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    return numerics::bits_to_float(load_u32_a4(row + 4 * i));
  }
};

struct F16 : FloatType<F16> {
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    return half_to_float(load_u16(row + 2 * i));
  }
};

struct BF16 : FloatType<BF16> {
  static RESIDENT_HD float value(const uint8_t* row, int64_t i) {
    return bf16_to_float(load_u16(row + 2 * i));
  }
};

}  // namespace resident::cuda::blocks
