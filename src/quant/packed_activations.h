// Int8 activations packed once for the batched (prefill) matmul kernels, shared by several
// matmuls with the same input (q/k/v, gate/up) and by every thread of one matmul. matmul_rows
// packs its activations itself on each call and in each thread; with this, a multi-threaded
// caller packs once and can hand out row ranges in any number of pieces. Same bits as
// matmul_rows (the packing is a pure relayout).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "numerics/canonical.h"
#include "quant/types.h"

namespace resident::quant {

namespace detail {
struct TokAct;
}

class PackedActivations {
 public:
  PackedActivations();
  ~PackedActivations();
  PackedActivations(const PackedActivations&) = delete;
  PackedActivations& operator=(const PackedActivations&) = delete;

  // Lays out storage for n_tokens activations of n elements at xq (n_tokens * n / 32 blocks,
  // read by pointer: they must stay unchanged while this pack is used). Packs nothing yet.
  void prepare(const numerics::ActBlock* xq, int64_t n, int n_tokens);
  // Units of pack_groups (8 tokens each).
  int n_groups() const;
  // Packs groups [g_begin, g_end); different threads may pack disjoint ranges at once. Every
  // group must be packed before a matmul reads the pack.
  void pack_groups(int g_begin, int g_end);

  const numerics::ActBlock* xq() const { return xq_; }
  int64_t n() const { return n_; }
  int n_tokens() const { return n_tokens_; }
  const detail::TokAct& layout() const { return *layout_; }

 private:
  const numerics::ActBlock* xq_ = nullptr;
  int64_t n_ = 0;
  int n_tokens_ = 0;
  std::vector<uint8_t> storage_;
  std::unique_ptr<detail::TokAct> layout_;
};

// True when matmul_rows_packed runs the batched kernels for this type and token count (the
// pack is useful); otherwise it falls back to matmul_rows.
bool packed_matmul_applies(Type type, int n_tokens);

// matmul_rows (quant.h) for a block-quantized weight type against packed activations:
// out[t * out_stride + r] for r in [row_begin, row_end), every token of the pack. Types and
// token counts that the batched kernels do not take run matmul_rows on act.xq().
void matmul_rows_packed(Type type, const void* w, const PackedActivations& act, float* out,
                        int64_t out_stride, int64_t row_begin, int64_t row_end);

}  // namespace resident::quant
