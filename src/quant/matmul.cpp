// Public matmul entry points: argument checks, activation packing, dispatch to the AVX2
// kernels. dot_row is matmul_rows for one row and one token, so the two agree by construction
// (and tests/quant_test.cpp checks both against the scalar reference, dot_reference.cpp).
#include <cstring>
#include <string>
#include <vector>

#include "quant/matmul_kernels.h"
#include "quant/packed_activations.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::quant {

bool uses_int8_activations(Type type) {
  return type != Type::F32 && type != Type::F16 && type != Type::BF16;
}

namespace detail {

const ActPack& pack_activations(const numerics::ActBlock* xq, int64_t n, int n_tokens,
                                bool with_half_sums) {
  // Per-thread so the lead's worker threads can pack concurrently; grows to the largest use.
  thread_local std::vector<uint8_t> storage;
  thread_local ActPack pack;
  const int64_t nb = n / numerics::kActBlock;
  const size_t tokens = static_cast<size_t>(n_tokens);
  const size_t q_bytes = (tokens * static_cast<size_t>(n) + 31) & ~size_t{31};
  const size_t f_bytes = (tokens * static_cast<size_t>(nb) * 4 + 31) & ~size_t{31};
  const size_t h_bytes = with_half_sums ? tokens * static_cast<size_t>(nb) * 4 : 0;
  const size_t total = q_bytes + 3 * f_bytes + h_bytes + 64;
  if (storage.size() < total) storage.resize(total);
  uint8_t* base = storage.data();
  base += (32 - reinterpret_cast<uintptr_t>(base) % 32) % 32;
  auto* q = reinterpret_cast<int8_t*>(base);
  auto* d = reinterpret_cast<float*>(base + q_bytes);
  auto* sumf = reinterpret_cast<float*>(base + q_bytes + f_bytes);
  auto* sumi = reinterpret_cast<int32_t*>(base + q_bytes + 2 * f_bytes);
  auto* half = with_half_sums ? reinterpret_cast<int16_t*>(base + q_bytes + 3 * f_bytes) : nullptr;
  const size_t blocks = tokens * static_cast<size_t>(nb);
  for (size_t b = 0; b < blocks; ++b) {
    const numerics::ActBlock& a = xq[b];
    std::memcpy(q + b * numerics::kActBlock, a.q, numerics::kActBlock);
    d[b] = a.d;
    sumf[b] = static_cast<float>(a.sum);
    sumi[b] = a.sum;
    if (half) {
      int lo = 0, hi = 0;
      for (int i = 0; i < 16; ++i) {
        lo += a.q[i];
        hi += a.q[i + 16];
      }
      half[2 * b] = static_cast<int16_t>(lo);
      half[2 * b + 1] = static_cast<int16_t>(hi);
    }
  }
  pack = ActPack{n, nb, n_tokens, xq, q, d, sumf, sumi, half};
  return pack;
}

}  // namespace detail

void matmul_rows(Type type, const void* w, int64_t n, const numerics::ActBlock* xq, const float* xf,
                 int n_tokens, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end) {
  const TypeInfo& info = type_info(type);
  if (n < 0 || n % numerics::kActBlock != 0 || n % info.block_elems != 0) {
    throw Error("matmul: row length " + std::to_string(n) + " is not a whole number of " +
                std::string(info.name) + " blocks and 32-element activation blocks");
  }
  if (row_begin < 0 || row_end < row_begin || n_tokens < 0) {
    throw Error("matmul: bad row range [" + std::to_string(row_begin) + ", " +
                std::to_string(row_end) + ") or token count " + std::to_string(n_tokens));
  }
  if (row_begin == row_end || n_tokens == 0) return;
  const bool int8 = uses_int8_activations(type);
  if (int8 ? xq == nullptr : xf == nullptr) {
    throw Error(std::string("matmul: missing ") + (int8 ? "quantized" : "float") +
                " activations for " + std::string(info.name) + " weights");
  }
  const auto* bytes = static_cast<const uint8_t*>(w);
  const size_t rb = row_bytes(info, n);
  if (int8) {
    if (detail::matmul_int8_batched(type, bytes, rb, xq, n, n_tokens, out, out_stride, row_begin,
                                    row_end)) {
      return;
    }
    const detail::ActPack& act = detail::pack_activations(xq, n, n_tokens, type == Type::Q6_K);
    detail::matmul_int8(type, bytes, rb, act, out, out_stride, row_begin, row_end);
  } else {
    detail::matmul_float(type, bytes, rb, n, xf, n_tokens, out, out_stride, row_begin, row_end);
  }
}

PackedActivations::PackedActivations() : layout_(std::make_unique<detail::TokAct>()) {}
PackedActivations::~PackedActivations() = default;

void PackedActivations::prepare(const numerics::ActBlock* xq, int64_t n, int n_tokens) {
  if (n <= 0 || n % numerics::kActBlock != 0 || n_tokens < 0) {
    throw Error("PackedActivations: bad shape n=" + std::to_string(n) +
                " tokens=" + std::to_string(n_tokens));
  }
  xq_ = xq;
  n_ = n;
  n_tokens_ = n_tokens;
  const int64_t nb = n / numerics::kActBlock;
  const size_t bytes = detail::tok_act_bytes(nb, n_tokens);
  if (storage_.size() < bytes) storage_.resize(bytes);
  *layout_ = detail::tok_act_layout(storage_.data(), nb, n_tokens);
}

int PackedActivations::n_groups() const {
  return layout_->n_groups;
}

void PackedActivations::pack_groups(int g_begin, int g_end) {
  detail::pack_tok_act_groups(xq_, *layout_, g_begin, g_end);
}

bool packed_matmul_applies(Type type, int n_tokens) {
  return detail::batched_applies(type, n_tokens);
}

void matmul_rows_packed(Type type, const void* w, const PackedActivations& act, float* out,
                        int64_t out_stride, int64_t row_begin, int64_t row_end) {
  if (!uses_int8_activations(type)) {
    throw Error("matmul_rows_packed: " + std::string(type_info(type).name) +
                " weights take float activations");
  }
  const TypeInfo& info = type_info(type);
  const int64_t n = act.n();
  if (n % info.block_elems != 0 || row_begin < 0 || row_end < row_begin) {
    throw Error("matmul_rows_packed: bad row length or row range");
  }
  if (row_begin == row_end || act.n_tokens() == 0) return;
  if (!detail::matmul_int8_batched(type, static_cast<const uint8_t*>(w), row_bytes(info, n),
                                   act.xq(), n, act.n_tokens(), out, out_stride, row_begin, row_end,
                                   &act.layout())) {
    matmul_rows(type, w, n, act.xq(), nullptr, act.n_tokens(), out, out_stride, row_begin, row_end);
  }
}

float dot_row(Type type, const void* row, const numerics::ActBlock* xq, const float* xf,
              int64_t n) {
  float out = 0.0f;
  matmul_rows(type, row, n, xq, xf, 1, &out, 1, 0, 1);
  return out;
}

}  // namespace resident::quant
