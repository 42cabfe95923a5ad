#include <cuda_fp16.h>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "cuda/rope_kv.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

__device__ __forceinline__ void rotate(float* head, int i, int half, bool neox, const float* row,
                                       float* y0_out, float* y1_out, int* i0_out, int* i1_out) {
  const float c = row[2 * i], s = row[2 * i + 1];
  const int i0 = neox ? i : 2 * i;
  const int i1 = neox ? i + half : 2 * i + 1;
  const float x0 = head[i0], x1 = head[i1];
  *y0_out = x0 * c - x1 * s;
  *y1_out = x0 * s + x1 * c;
  *i0_out = i0;
  *i1_out = i1;
}

__device__ __forceinline__ uint16_t to_half_bits(float f) {
  return __half_as_ushort(__float2half_rn(f));
}

// One thread block per token; threads stride over (head, pair) for q and k, then over v.
__global__ void rope_kv_kernel(RopeKvArgs a) {
  pdl_trigger();
  pdl_wait();
  const int t = blockIdx.x;
  const int pos = *a.pos + t;
  const int half = a.head_dim / 2;
  const int kv_dim = a.n_kv_heads * a.head_dim;
  const float* row = a.table + static_cast<int64_t>(pos) * half * 2;
  const bool in_cache = pos >= 0 && pos < a.n_ctx;
  if (!in_cache) return;  // host-side checks make this unreachable; never read past the table

  float* q = a.q + static_cast<int64_t>(t) * a.n_heads * a.head_dim;
  for (int idx = threadIdx.x; idx < a.n_heads * half; idx += blockDim.x) {
    float y0, y1;
    int i0, i1;
    float* head = q + (idx / half) * a.head_dim;
    rotate(head, idx % half, half, a.neox, row, &y0, &y1, &i0, &i1);
    head[i0] = y0;
    head[i1] = y1;
  }
  float* k = a.k + static_cast<int64_t>(t) * kv_dim;
  uint16_t* kc = a.k_cache + static_cast<int64_t>(pos) * kv_dim;
  for (int idx = threadIdx.x; idx < a.n_kv_heads * half; idx += blockDim.x) {
    float y0, y1;
    int i0, i1;
    const int h = idx / half;
    float* head = k + h * a.head_dim;
    rotate(head, idx % half, half, a.neox, row, &y0, &y1, &i0, &i1);
    head[i0] = y0;
    head[i1] = y1;
    kc[h * a.head_dim + i0] = to_half_bits(y0);
    kc[h * a.head_dim + i1] = to_half_bits(y1);
  }
  const float* v = a.v + static_cast<int64_t>(t) * kv_dim;
  uint16_t* vc = a.v_cache + static_cast<int64_t>(pos) * kv_dim;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) vc[i] = to_half_bits(v[i]);
}

}  // namespace

void rope_kv_write(const RopeKvArgs& a, cudaStream_t stream) {
  if (!a.q || !a.k || !a.v || !a.table || !a.pos || !a.k_cache || !a.v_cache)
    throw Error("cuda rope_kv_write: null pointer");
  if (a.head_dim < 2 || a.head_dim % 2 != 0 || a.n_heads < 1 || a.n_kv_heads < 1 ||
      a.n_tokens < 1 || a.n_ctx < 1)
    throw Error("cuda rope_kv_write: bad shape");
  launch_pdl(rope_kv_kernel, dim3(a.n_tokens), dim3(256), 0, stream, a);
}

}  // namespace resident::cuda
