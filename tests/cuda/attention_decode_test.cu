// attention_decode (one launch) against the path it replaces, rope_kv_write + attention (four
// launches), on identical inputs with poisoned outputs: out, out_q and the whole K/V caches must
// match bit for bit, and only the rows of the steps' positions may change. Each case runs two
// steps in a row (p, p + 1) on the same counters, which every launch must leave zero.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "cuda/attention.cuh"
#include "cuda/attention_decode.cuh"
#include "cuda/rope_kv.cuh"
#include "cuda_test_util.h"
#include "util/error.h"

namespace resident::cuda::test {
namespace {

using numerics::ActBlock;

struct DecodeCase {
  int n_heads, n_kv_heads, head_dim;
  bool neox;
  int n_ctx;
  int first_pos;          // the steps run at first_pos and first_pos + 1
  int max_positions = 0;  // 0: n_ctx, as in the decode graph
  float q_scale = 1.0f;   // larger: a peaked softmax, most e_t underflow
};

struct Scratch {
  DeviceBuffer<float> scores, chunk_max, chunk_den, chunk_val;
  AttentionScratch view;
};

Scratch poisoned_scratch(int n_heads, int n_ctx, int head_dim) {
  const AttentionScratchSizes sz = attention_scratch_sizes(1, n_heads, n_ctx, head_dim);
  Scratch s{poisoned<float>(sz.scores),
            poisoned<float>(sz.chunk_max),
            poisoned<float>(sz.chunk_den),
            poisoned<float>(sz.chunk_val),
            {}};
  s.view = {s.scores.get(), s.chunk_max.get(), s.chunk_den.get(), s.chunk_val.get(), 1, n_heads,
            n_ctx,          head_dim};
  return s;
}

void check_decode(std::mt19937_64& rng, const DecodeCase& c) {
  SCOPED_TRACE("heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + " hd " +
               std::to_string(c.head_dim) + (c.neox ? " neox" : " interleaved") + " n_ctx " +
               std::to_string(c.n_ctx) + " first pos " + std::to_string(c.first_pos) +
               " max_positions " + std::to_string(c.max_positions));
  const int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  const int max_positions = c.max_positions > 0 ? c.max_positions : c.n_ctx;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const std::vector<float> table = cpu::rope_table(c.n_ctx, c.head_dim, 1e6f, {});
  ASSERT_TRUE(attention_decode_supported(c.n_heads, c.n_kv_heads, c.head_dim, kvd));

  // Rows before the first step: fp16 of random floats. The rest: NaN bits, so a row read before
  // it is written can never give a matching result.
  const size_t cache_elems = static_cast<size_t>(c.n_ctx) * kvd;
  std::vector<uint16_t> k0(cache_elems, 0xffff), v0(cache_elems, 0xffff);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  for (size_t i = 0; i < static_cast<size_t>(c.first_pos) * kvd; ++i) {
    k0[i] = cpu::float_to_half(unit(rng));
    v0[i] = cpu::float_to_half(unit(rng));
  }
  auto kc_ref = upload(k0), vc_ref = upload(v0), kc_new = upload(k0), vc_new = upload(v0);
  auto dtable = upload(table);
  auto dpos = upload(std::vector<int>{c.first_pos});
  Scratch s_ref = poisoned_scratch(c.n_heads, c.n_ctx, c.head_dim);
  Scratch s_new = poisoned_scratch(c.n_heads, c.n_ctx, c.head_dim);
  const std::vector<unsigned> zeros(attention_decode_counters(c.n_heads), 0u);
  auto counters = upload(zeros);
  std::vector<uint16_t> k_expect = k0, v_expect = v0;

  for (int step = 0; step < 2; ++step) {
    const int p = c.first_pos + step;
    SCOPED_TRACE("step at position " + std::to_string(p));
    const std::vector<float> q = random_floats(rng, qd, c.q_scale);
    const std::vector<float> k = random_floats(rng, kvd), v = random_floats(rng, kvd);
    CUDA_CHECK(cudaMemcpy(dpos.get(), &p, sizeof p, cudaMemcpyHostToDevice));

    // (A) the existing path: RoPE in place + cache append, then the three attention passes.
    auto q_a = upload(q), k_a = upload(k), v_a = upload(v);
    auto out_a = poisoned<float>(qd);
    auto out_q_a = poisoned<ActBlock>(qd / 32);
    RopeKvArgs r;
    r.q = q_a.get(), r.k = k_a.get(), r.v = v_a.get();
    r.n_heads = c.n_heads, r.n_kv_heads = c.n_kv_heads, r.head_dim = c.head_dim, r.neox = c.neox;
    r.table = dtable.get(), r.pos = dpos.get(), r.n_tokens = 1;
    r.k_cache = kc_ref.get(), r.v_cache = vc_ref.get(), r.n_ctx = c.n_ctx;
    rope_kv_write(r, nullptr);
    AttentionArgs at;
    at.q = q_a.get(), at.k_cache = kc_ref.get(), at.v_cache = vc_ref.get();
    at.n_heads = c.n_heads, at.n_kv_heads = c.n_kv_heads, at.head_dim = c.head_dim;
    at.kv_stride = kvd, at.kq_scale = kq_scale, at.pos = dpos.get(), at.n_tokens = 1;
    at.max_positions = max_positions;
    at.out = out_a.get(), at.out_q = out_q_a.get();
    attention(at, s_ref.view, nullptr);

    // (B) the one-launch kernel on copies of the same inputs.
    auto q_b = upload(q), k_b = upload(k), v_b = upload(v);
    auto out_b = poisoned<float>(qd);
    auto out_q_b = poisoned<ActBlock>(qd / 32);
    AttentionDecodeArgs d;
    d.q = q_b.get(), d.k = k_b.get(), d.v = v_b.get();
    d.n_heads = c.n_heads, d.n_kv_heads = c.n_kv_heads, d.head_dim = c.head_dim;
    d.kv_stride = kvd, d.neox = c.neox, d.rope_table = dtable.get(), d.pos = dpos.get();
    d.k_cache = kc_new.get(), d.v_cache = vc_new.get(), d.n_ctx = c.n_ctx;
    d.kq_scale = kq_scale, d.max_positions = max_positions;
    d.out = out_b.get(), d.out_q = out_q_b.get();
    attention_decode(d, s_new.view, counters.get(), nullptr);

    EXPECT_TRUE(same_bits(download(out_b), download(out_a), "attention out"));
    // ActBlock has no padding (static_assert 40 bytes), so its bytes are its value.
    EXPECT_TRUE(same_bits(download(out_q_b), download(out_q_a), "attention out blocks"));
    // Row p as the reference wrote it; every other row as before.
    const std::vector<uint16_t> kr = download(kc_ref), vr = download(vc_ref);
    const size_t row = static_cast<size_t>(p) * kvd;
    std::copy(kr.begin() + row, kr.begin() + row + kvd, k_expect.begin() + row);
    std::copy(vr.begin() + row, vr.begin() + row + kvd, v_expect.begin() + row);
    EXPECT_TRUE(same_bits(kr, k_expect, "reference k cache (only row p may change)"));
    EXPECT_TRUE(same_bits(download(kc_new), k_expect, "k cache (row p, other rows untouched)"));
    EXPECT_TRUE(same_bits(download(vc_new), v_expect, "v cache (row p, other rows untouched)"));
    EXPECT_TRUE(same_bits(download(q_b), q, "q is read only"));
    EXPECT_TRUE(same_bits(download(k_b), k, "k is read only"));
    EXPECT_TRUE(same_bits(download(counters), zeros, "counters left zero for the next launch"));
  }
}

TEST(CudaAttentionDecode, MatchesRopeKvWritePlusAttention) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Shape {
    int n_heads, n_kv_heads, head_dim;
    bool neox;
  };
  // GQA groups 6 (Qwen2.5-1.5B: 12/2, hd 128), 2 and 1; head_dim 128 and 64; both RoPE styles.
  const Shape shapes[] = {
      {12, 2, 128, true}, {8, 4, 64, false}, {4, 4, 128, false}, {6, 1, 64, true}};
  const int n_ctx = 4096;
  // Around the chunk edges (256), several chunks, the last position of the cache (4094, 4095).
  for (const Shape& sh : shapes)
    for (int pos : {0, 1, 255, 256, 257, 1000, 4095})
      check_decode(
          rng, {sh.n_heads, sh.n_kv_heads, sh.head_dim, sh.neox, n_ctx, std::min(pos, n_ctx - 2)});
  // 32 heads at 16 chunks (512 items): more than an H200 holds at once (264), so the max and
  // full items of two kinds; the cases above take one kind from 2 chunks on.
  check_decode(rng, {32, 8, 64, true, 4096, 4093});
  // Small contexts (grid of 1 and 2 chunks), a grid tighter than the cache, a peaked softmax.
  check_decode(rng, {12, 2, 128, true, 40, 38});
  check_decode(rng, {8, 4, 64, false, 300, 298});
  check_decode(rng, {12, 2, 128, true, 4096, 510, 512});
  check_decode(rng, {12, 2, 128, true, 2048, 1500, 0, 6.0f});
}

TEST(CudaAttentionDecode, RejectsUnsupportedShapes) {
  EXPECT_TRUE(attention_decode_supported(12, 2, 128, 256));
  EXPECT_TRUE(attention_decode_supported(8, 8, 64, 512));
  EXPECT_FALSE(attention_decode_supported(8, 2, 96, 192));    // head_dim not 64 or 128
  EXPECT_FALSE(attention_decode_supported(8, 2, 256, 512));   // (the 3-pass path takes it)
  EXPECT_FALSE(attention_decode_supported(12, 5, 128, 640));  // heads not a multiple
  EXPECT_FALSE(attention_decode_supported(12, 2, 128, 260));  // row not 8-element aligned
  AttentionDecodeArgs d;  // preconditions are checked on the host, before any device work
  float f = 0.0f;
  int i = 0;
  uint16_t h = 0;
  d.q = d.k = d.v = d.rope_table = &f;
  d.out = &f;
  d.pos = &i;
  d.k_cache = d.v_cache = &h;
  d.n_heads = 8, d.n_kv_heads = 2, d.head_dim = 96, d.kv_stride = 192;
  d.n_ctx = d.max_positions = 16;
  AttentionScratch s{&f, &f, &f, &f, 1, 8, 16, 96};
  unsigned counters = 0;
  EXPECT_THROW(attention_decode(d, s, &counters, nullptr), resident::Error);
}

}  // namespace
}  // namespace resident::cuda::test
