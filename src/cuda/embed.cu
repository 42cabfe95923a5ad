#include <string>

#include "cuda/cuda_check.h"
#include "cuda/embed.cuh"
#include "cuda/quant_blocks.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

template <typename B>
__global__ void embed_kernel(const uint8_t* __restrict__ table, int64_t row_bytes, int64_t n,
                             int64_t vocab, const int32_t* __restrict__ ids, float* out) {
  const int t = blockIdx.x;
  const int32_t id = ids[t];
  float* o = out + static_cast<int64_t>(t) * n;
  if (id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = __int_as_float(0x7fc00000);
    return;
  }
  const uint8_t* row = table + static_cast<int64_t>(id) * row_bytes;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = B::value(row, i);
}

template <typename B>
void launch(const void* table, int64_t row_bytes, int64_t n, int64_t vocab, const int32_t* ids,
            int n_tokens, float* out, cudaStream_t stream) {
  embed_kernel<B><<<n_tokens, 256, 0, stream>>>(static_cast<const uint8_t*>(table), row_bytes, n,
                                                vocab, ids, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void embed(quant::Type type, const void* table, int64_t row_length, int64_t vocab,
           const int32_t* ids, int n_tokens, float* out, cudaStream_t stream) {
  const auto& info = quant::type_info(type);
  if (!table || !ids || !out) throw Error("cuda embed: null pointer");
  if (row_length < 1 || row_length % info.block_elems != 0 || vocab < 1 || n_tokens < 1)
    throw Error("cuda embed: bad shape for " + std::string(info.name));
  if (reinterpret_cast<uintptr_t>(table) % 4 != 0)
    throw Error("cuda embed: table not 4-byte aligned");
  const int64_t rb = static_cast<int64_t>(quant::row_bytes(info, row_length));
  switch (type) {
    case quant::Type::Q4_0:
      return launch<blocks::Q4_0>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::Q5_0:
      return launch<blocks::Q5_0>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::Q8_0:
      return launch<blocks::Q8_0>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::Q4_K:
      return launch<blocks::Q4_K>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::Q5_K:
      return launch<blocks::Q5_K>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::Q6_K:
      return launch<blocks::Q6_K>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::F32:
      return launch<blocks::F32>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::F16:
      return launch<blocks::F16>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
    case quant::Type::BF16:
      return launch<blocks::BF16>(table, rb, row_length, vocab, ids, n_tokens, out, stream);
  }
  throw Error("cuda embed: unsupported type");
}

}  // namespace resident::cuda
