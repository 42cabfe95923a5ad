// The canonical scalar operations of docs/numerics.md, compiled identically for host and device.
//
// Every floating-point operation here is written out explicitly (no library exp, no implicit
// fused multiply-add: the CPU build uses -ffp-contract=off and the CUDA build --fmad=false), so
// the same inputs give the same bits on both backends.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "numerics/host_device.h"

namespace resident::numerics {

RESIDENT_HD float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

RESIDENT_HD uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

// exp(x) for float, built from +, *, and exponent-bit assembly only, so CPU and GPU agree
// bit for bit (libm's expf and CUDA's expf differ in the last ulp). Max relative error is
// about 2 ulp over the range used (softmax arguments <= 0, SiLU arguments).
// Method: x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite two-part ln2), exp(r) by a degree-6
// degree-7 Taylor polynomial (Horner), then scale by 2^n through the exponent field.
RESIDENT_HD float exp_canonical(float x) {
  if (x != x) return x;                              // NaN propagates
  if (x > 88.7f) return bits_to_float(0x7f800000u);  // +inf
  if (x < -103.0f) return 0.0f;
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693145751953125f;
  const float ln2_lo = 1.42860682030941723212e-6f;
  // n = round-to-nearest(x * log2e), computed without library calls.
  float t = x * log2e;
  int n = static_cast<int>(t + (t >= 0.0f ? 0.5f : -0.5f));
  float fn = static_cast<float>(n);
  float r = (x - fn * ln2_hi) - fn * ln2_lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n may be subnormal for n < -126: split into two factors so each is a normal number.
  if (n < -126) {
    p = p * bits_to_float(static_cast<uint32_t>(n + 126 + 127) << 23);
    return p * bits_to_float(static_cast<uint32_t>(1) << 23);  // 2^-126
  }
  if (n > 127) {
    p = p * 2.0f;
    n -= 1;
  }
  return p * bits_to_float(static_cast<uint32_t>(n + 127) << 23);
}

// SiLU(g) = g / (1 + exp(-g)).
RESIDENT_HD float silu_canonical(float g) {
  return g / (1.0f + exp_canonical(-g));
}

// Round-to-nearest-even conversion float -> int, identical to CUDA's __float2int_rn for the
// |x| <= 127.5 range used by activation quantization.
RESIDENT_HD int round_to_int_even(float x) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(x);
#else
  return static_cast<int>(std::nearbyint(x));  // default rounding mode: nearest-even
#endif
}

// Activations are quantized to int8 in blocks of 32 before every quantized matmul:
//   amax = max |x_i|; d = amax / 127; q_i = round_even(x_i * (127 / amax)); sum = sum q_i.
// The integer dot products against weight blocks are then exact on every backend.
inline constexpr int kActBlock = 32;

struct ActBlock {
  float d;      // scale: x_i ~= d * q_i
  int32_t sum;  // sum of q_i, used by weight formats with a per-block minimum (Q4_K, Q5_K)
  int8_t q[kActBlock];
};
static_assert(sizeof(ActBlock) == 40, "ActBlock layout is shared with the CUDA kernels");

RESIDENT_HD void quantize_act_block(const float* x, ActBlock* out) {
  float amax = 0.0f;
  for (int i = 0; i < kActBlock; ++i) {
    float a = x[i] < 0.0f ? -x[i] : x[i];
    amax = a > amax ? a : amax;
  }
  const float d = amax / 127.0f;
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  int32_t sum = 0;
  for (int i = 0; i < kActBlock; ++i) {
    int v = round_to_int_even(x[i] * id);
    v = v > 127 ? 127 : (v < -127 ? -127 : v);
    out->q[i] = static_cast<int8_t>(v);
    sum += v;
  }
  out->d = d;
  out->sum = sum;
}

}  // namespace resident::numerics
