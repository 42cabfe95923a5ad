// One activation block of 32 quantized by one warp, one lane per element: the same bits as the
// sequential numerics::quantize_act_block. The block maximum is taken by shuffles (a maximum
// does not depend on the order; NaN is mapped to 0 first, as the sequential loop from 0.0f skips
// it), each lane rounds its own element exactly as the loop does, and the integer sum is exact
// in any order.
#pragma once

#include "numerics/canonical.h"

namespace resident::cuda {

// Call with all 32 lanes of a warp: lane l holds element l of the block in `v`.
__device__ __forceinline__ void quantize_act_block_warp(float v, int lane,
                                                        numerics::ActBlock* out) {
  constexpr unsigned kAll = 0xffffffffu;
  float a = v < 0.0f ? -v : v;
  a = a > 0.0f ? a : 0.0f;  // NaN -> 0
  float amax = a;
  for (int s = 16; s >= 1; s /= 2) {
    const float o = __shfl_xor_sync(kAll, amax, s);
    amax = o > amax ? o : amax;
  }
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  int q = numerics::round_to_int_even(v * id);
  q = q > 127 ? 127 : (q < -127 ? -127 : q);
  int sum = q;
  for (int s = 16; s >= 1; s /= 2) sum += __shfl_xor_sync(kAll, sum, s);
  out->q[lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    out->d = amax / 127.0f;
    out->sum = sum;
  }
}

}  // namespace resident::cuda
