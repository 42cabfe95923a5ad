// Every CUDA kernel against its CPU twin (cpu/ops.h, quant/quant.h) on fresh random inputs, with
// poisoned outputs, compared bit for bit: docs/numerics.md fixes every float operation and its
// order on both backends, so any difference is a bug, not rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "cpu/ops.h"
#include "cuda/argmax.cuh"
#include "cuda/attention.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/embed.cuh"
#include "cuda/matvec.cuh"
#include "cuda/matvec_decode.cuh"
#include "cuda/quantize_act.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope_kv.cuh"
#include "cuda_test_util.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cuda::test {
namespace {

using numerics::ActBlock;
using quant::Type;

const Type kAllTypes[] = {Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::Q5_0, Type::Q4_0,
                          Type::Q5_K, Type::F16,  Type::BF16, Type::F32};

// Activations like Qwen2.5's: mostly O(1) with a few massive channels, plus an all-zero block
// (amax = 0 takes the id = 0 branch of the quantizer).
std::vector<float> activations(std::mt19937_64& rng, int64_t n, int n_tokens) {
  std::vector<float> x = random_floats(rng, static_cast<size_t>(n) * n_tokens);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int t = 0; t < n_tokens; ++t) {
    x[t * n + pick(rng)] = 300.0f;
    x[t * n + pick(rng)] = -1200.5f;
    if (n >= 64) std::fill_n(&x[t * n + 32], 32, 0.0f);
  }
  return x;
}

// `rows` rows of random weights in `type`, each row through quant::quantize_row. Rows beyond
// `distinct` repeat earlier rows in a scrambled order (the vocab-sized LM head would take too
// long to quantize on the CPU), which still catches row indexing errors.
std::vector<uint8_t> random_weights(std::mt19937_64& rng, Type type, int64_t rows, int64_t n,
                                    int64_t distinct = 1 << 30) {
  const size_t rb = quant::row_bytes(quant::type_info(type), n);
  std::vector<uint8_t> w(rb * rows);
  const int64_t unique = std::min(rows, distinct);
  for (int64_t r = 0; r < unique; ++r) {
    const std::vector<float> f = random_floats(rng, n, 0.05f);
    quant::quantize_row(type, f.data(), w.data() + rb * r, n);
  }
  for (int64_t r = unique; r < rows; ++r)
    std::memcpy(w.data() + rb * r, w.data() + rb * ((r * 7919) % unique), rb);
  return w;
}

TEST(CudaKernels, QuantizeActivationsMatchesCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int64_t n : {1536, 8960, 224}) {
    for (int n_tokens : {1, 3}) {
      const std::vector<float> x = activations(rng, n, n_tokens);
      const int64_t nb = n / 32 * n_tokens;
      std::vector<ActBlock> cpu(nb);
      for (int t = 0; t < n_tokens; ++t)
        quant::quantize_activations(&x[t * n], &cpu[t * (n / 32)], n);
      auto dx = upload(x);
      auto dq = poisoned<ActBlock>(nb);
      quantize_activations(dx.get(), dq.get(), n, n_tokens, nullptr);
      const std::vector<ActBlock> gpu = download(dq);
      // ActBlock has no padding (static_assert 40 bytes), so its bytes are its value.
      EXPECT_TRUE(same_bits(gpu, cpu, "quantize n=" + std::to_string(n)));
    }
  }
}

struct MatvecCase {
  Type type;
  int64_t rows, n;
  int n_tokens;
  int64_t distinct_rows = 512;  // quantizing on the CPU dominates the test time: tile beyond this
};

void check_matvec(std::mt19937_64& rng, const MatvecCase& c, bool with_bias, bool accumulate) {
  const auto& info = quant::type_info(c.type);
  SCOPED_TRACE(std::string(info.name) + " rows=" + std::to_string(c.rows) +
               " n=" + std::to_string(c.n) + " tokens=" + std::to_string(c.n_tokens) +
               (with_bias ? " +bias" : "") + (accumulate ? " +=" : ""));
  const std::vector<uint8_t> w = random_weights(rng, c.type, c.rows, c.n, c.distinct_rows);
  const std::vector<float> x = activations(rng, c.n, c.n_tokens);
  const bool int8 = quant::uses_int8_activations(c.type);
  std::vector<ActBlock> xq(c.n / 32 * c.n_tokens);
  for (int t = 0; t < c.n_tokens; ++t)
    quant::quantize_activations(&x[t * c.n], &xq[t * (c.n / 32)], c.n);
  const std::vector<float> bias = random_floats(rng, c.rows);
  const std::vector<float> prior = random_floats(rng, c.rows * c.n_tokens);

  std::vector<float> cpu(c.rows * c.n_tokens);
  quant::matmul_rows(c.type, w.data(), c.n, int8 ? xq.data() : nullptr, int8 ? nullptr : x.data(),
                     c.n_tokens, cpu.data(), c.rows, 0, c.rows);
  for (int t = 0; t < c.n_tokens; ++t)
    for (int64_t r = 0; r < c.rows; ++r) {
      float& y = cpu[t * c.rows + r];
      if (with_bias) y = y + bias[r];                 // the CPU backend's add_inplace(q, bq)
      if (accumulate) y = prior[t * c.rows + r] + y;  // add_inplace(x, proj)
    }

  auto dw = upload(w);
  auto dxq = upload(xq);
  auto dxf = upload(x);
  auto db = upload(bias);
  DeviceBuffer<float> dout = accumulate ? upload(prior) : poisoned<float>(cpu.size());
  MatvecArgs a;
  a.type = c.type;
  a.w = dw.get();
  a.rows = c.rows;
  a.n = c.n;
  a.xq = dxq.get();
  a.xf = dxf.get();
  a.n_tokens = c.n_tokens;
  a.out = dout.get();
  a.out_stride = c.rows;
  a.bias = with_bias ? db.get() : nullptr;
  a.accumulate = accumulate;
  matvec(a, nullptr);
  EXPECT_TRUE(same_bits(download(dout), cpu, "matvec"));
}

TEST(CudaKernels, MatvecMatchesCpuForEveryType) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (Type type : kAllTypes) {
    const int blk = quant::type_info(type).block_elems;
    // Qwen2.5-1.5B shapes: q/o (1536 x 1536), k/v (256 x 1536), gate/up (8960 x 1536),
    // down (1536 x 8960); odd row counts; n not a multiple of 32 * 32 (a partial lane round).
    std::vector<MatvecCase> cases = {
        {type, 256, 1536, 1}, {type, 1536, 1536, 1}, {type, 8960, 1536, 1}, {type, 1536, 8960, 1},
        {type, 37, 1536, 5},  {type, 256, 1536, 8},  {type, 61, 8960, 13},
    };
    if (blk == 32) {
      cases.push_back({type, 33, 96, 3});  // 3 blocks: most lanes idle
      cases.push_back({type, 33, 96, 1});  // decode kernel: last thread block holds one row
    }
    cases.push_back({type, 37, 1536, 1});  // decode kernel: a partial last thread block
    for (const MatvecCase& c : cases) check_matvec(rng, c, false, false);
  }
}

TEST(CudaKernels, MatvecBiasAndResidualEpilogues) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  check_matvec(rng, {Type::Q4_K, 1536, 1536, 1}, true, false);
  check_matvec(rng, {Type::Q6_K, 256, 1536, 9}, true, false);
  check_matvec(rng, {Type::Q4_K, 1536, 8960, 1}, false, true);
  check_matvec(rng, {Type::F16, 1536, 1536, 11}, false, true);
}

// One matvec_decode launch over several matrices that share the input
// (q/k/v, gate/up), each with its own rows, output, bias and epilogue: every segment equals its own
// CPU matmul.
TEST(CudaKernels, MatvecDecodeSegmentsMatchCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Seg {
    int64_t rows;
    bool bias, accumulate;
  };
  for (Type type : {Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::Q5_0}) {
    for (int64_t n : {1536, 8960}) {
      const std::vector<Seg> segs = {{1536, true, false}, {256, false, true}, {37, true, true}};
      SCOPED_TRACE(std::string(quant::type_info(type).name) + " n=" + std::to_string(n));
      const std::vector<float> x = activations(rng, n, 1);
      std::vector<ActBlock> xq(n / 32);
      quant::quantize_activations(x.data(), xq.data(), n);
      auto dxq = upload(xq);
      MatvecDecodeArgs a;
      a.type = type;
      a.n = n;
      a.xq = dxq.get();
      std::vector<DeviceBuffer<uint8_t>> dw;
      std::vector<DeviceBuffer<float>> dout, dbias;
      std::vector<std::vector<float>> want, prior;
      for (const Seg& g : segs) {
        const std::vector<uint8_t> w = random_weights(rng, type, g.rows, n, 256);
        const std::vector<float> bias = random_floats(rng, g.rows);
        prior.push_back(random_floats(rng, g.rows));
        std::vector<float> cpu(g.rows);
        quant::matmul_rows(type, w.data(), n, xq.data(), nullptr, 1, cpu.data(), g.rows, 0, g.rows);
        for (int64_t r = 0; r < g.rows; ++r) {
          if (g.bias) cpu[r] = cpu[r] + bias[r];
          if (g.accumulate) cpu[r] = prior.back()[r] + cpu[r];
        }
        want.push_back(cpu);
        dw.push_back(upload(w));
        dbias.push_back(upload(bias));
        dout.push_back(poisoned<float>(g.rows));
        a.seg[a.n_segments++] = {dw.back().get(), g.rows, dout.back().get(),
                                 g.bias ? dbias.back().get() : nullptr, g.accumulate};
      }
      // Outputs: NaN, or the prior values the accumulating segments add to.
      for (size_t i = 0; i < segs.size(); ++i) {
        if (segs[i].accumulate)
          CUDA_CHECK(cudaMemcpy(dout[i].get(), prior[i].data(), segs[i].rows * sizeof(float),
                                cudaMemcpyHostToDevice));
      }
      matvec_decode(a, nullptr);
      for (size_t i = 0; i < segs.size(); ++i)
        EXPECT_TRUE(same_bits(download(dout[i]), want[i], "segment " + std::to_string(i)));
    }
  }
}

// q/k in Q4_K and v in Q6_K (as Q4_K_M files keep v in some layers) in one launch: each segment
// equals its own CPU matmul, whichever format it is in and wherever it sits in the launch.
TEST(CudaKernels, MatvecDecodeMixedFormatsMatchCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(matvec_decode_pair_supported(Type::Q4_K, Type::Q6_K, 1536));
  EXPECT_FALSE(matvec_decode_pair_supported(Type::Q6_K, Type::Q4_K, 1536));
  EXPECT_FALSE(matvec_decode_pair_supported(Type::Q4_K, Type::Q8_0, 1536));
  struct Seg {
    Type type;
    int64_t rows;
    bool bias, accumulate;
  };
  for (int64_t n : {1536, 8960}) {
    for (const std::vector<Seg>& segs :
         {std::vector<Seg>{{Type::Q4_K, 1536, true, false},
                           {Type::Q4_K, 256, true, false},
                           {Type::Q6_K, 256, true, false}},
          std::vector<Seg>{{Type::Q4_K, 37, false, true}, {Type::Q6_K, 300, true, true}}}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " segments " + std::to_string(segs.size()));
      const std::vector<float> x = activations(rng, n, 1);
      std::vector<ActBlock> xq(n / 32);
      quant::quantize_activations(x.data(), xq.data(), n);
      auto dxq = upload(xq);
      MatvecDecodeArgs a;
      a.type = Type::Q4_K;
      a.alt_type = Type::Q6_K;
      a.n = n;
      a.xq = dxq.get();
      std::vector<DeviceBuffer<uint8_t>> dw;
      std::vector<DeviceBuffer<float>> dout, dbias;
      std::vector<std::vector<float>> want;
      for (const Seg& g : segs) {
        const std::vector<uint8_t> w = random_weights(rng, g.type, g.rows, n, 256);
        const std::vector<float> bias = random_floats(rng, g.rows);
        const std::vector<float> prior = random_floats(rng, g.rows);
        std::vector<float> cpu(g.rows);
        quant::matmul_rows(g.type, w.data(), n, xq.data(), nullptr, 1, cpu.data(), g.rows, 0,
                           g.rows);
        for (int64_t r = 0; r < g.rows; ++r) {
          if (g.bias) cpu[r] = cpu[r] + bias[r];
          if (g.accumulate) cpu[r] = prior[r] + cpu[r];
        }
        want.push_back(cpu);
        dw.push_back(upload(w));
        dbias.push_back(upload(bias));
        dout.push_back(g.accumulate ? upload(prior) : poisoned<float>(g.rows));
        a.seg[a.n_segments++] = {dw.back().get(),   g.rows,
                                 dout.back().get(), g.bias ? dbias.back().get() : nullptr,
                                 g.accumulate,      g.type == Type::Q6_K};
      }
      matvec_decode(a, nullptr);
      for (size_t i = 0; i < segs.size(); ++i)
        EXPECT_TRUE(same_bits(download(dout[i]), want[i], "segment " + std::to_string(i)));
    }
  }
}

// Q4_K rows that start 4- but not 16-byte aligned take matvec_decode's 4-byte loads (the
// 16-byte path needs aligned rows): same bits either way.
TEST(CudaKernels, MatvecDecodeQ4KRowsNot16ByteAligned) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // 300 x 1536: one group per thread block; 1536 x 8960: 768 groups of 2 rows, more than one
  // wave of 4 blocks per SM on GPUs with fewer than 192 SMs (blocks take a second group).
  const std::tuple<int64_t, int64_t, int64_t> cases[] = {{0, 300, 1536},  {4, 300, 1536},
                                                         {8, 300, 1536},  {12, 300, 1536},
                                                         {0, 1536, 8960}, {4, 1536, 8960}};
  for (const auto& [offset, rows, n] : cases) {
    SCOPED_TRACE("weights at +" + std::to_string(offset) + " bytes, " + std::to_string(rows) +
                 " x " + std::to_string(n));
    const std::vector<float> x = activations(rng, n, 1);
    std::vector<ActBlock> xq(n / 32);
    quant::quantize_activations(x.data(), xq.data(), n);
    const std::vector<uint8_t> w = random_weights(rng, Type::Q4_K, rows, n);
    std::vector<float> cpu(rows);
    quant::matmul_rows(Type::Q4_K, w.data(), n, xq.data(), nullptr, 1, cpu.data(), rows, 0, rows);
    std::vector<uint8_t> shifted(offset, 0xee);
    shifted.insert(shifted.end(), w.begin(), w.end());
    auto dw = upload(shifted);
    auto dxq = upload(xq);
    auto dout = poisoned<float>(rows);
    MatvecDecodeArgs a;
    a.type = Type::Q4_K;
    a.n = n;
    a.xq = dxq.get();
    a.seg[0] = {dw.get() + offset, rows, dout.get(), nullptr, false};
    a.n_segments = 1;
    matvec_decode(a, nullptr);
    EXPECT_TRUE(same_bits(download(dout), cpu, "matvec_decode"));
  }
}

TEST(CudaKernels, MatvecLmHeadShape) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Qwen2.5's vocab-sized LM head (Q6_K in Q4_K_M files), 4096 distinct rows tiled.
  check_matvec(rng, {Type::Q6_K, 151936, 1536, 1, 4096}, false, false);
  check_matvec(rng, {Type::Q6_K, 151936, 1536, 3, 4096}, false, false);
}

TEST(CudaKernels, RmsnormMatchesCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int n : {1536, 8960, 256, 100, 7}) {
    for (int n_tokens : {1, 4}) {
      const std::vector<float> x = activations(rng, std::max(n, 32), n_tokens);
      std::vector<float> xs(x.begin(), x.begin() + static_cast<size_t>(n) * n_tokens);
      const std::vector<float> w = random_floats(rng, n);
      std::vector<float> cpu(xs.size());
      for (int t = 0; t < n_tokens; ++t)
        cpu::rmsnorm({&xs[t * n], size_t(n)}, w, 1e-6f, {&cpu[t * n], size_t(n)});
      auto dx = upload(xs);
      auto dw = upload(w);
      auto dy = poisoned<float>(xs.size());
      rmsnorm(dx.get(), dw.get(), 1e-6f, n, n_tokens, dy.get(), nullptr);
      EXPECT_TRUE(same_bits(download(dy), cpu, "rmsnorm n=" + std::to_string(n)));
    }
  }
}

// rmsnorm with the activation quantization fused in: y and its blocks, each bitwise equal to
// cpu::rmsnorm then quant::quantize_activations.
TEST(CudaKernels, RmsnormQuantMatchesCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int n : {1536, 8960, 4096, 4128, 896, 256, 96}) {
    for (int n_tokens : {1, 4}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " tokens=" + std::to_string(n_tokens));
      const std::vector<float> x = activations(rng, n, n_tokens);
      const std::vector<float> w = random_floats(rng, n);
      std::vector<float> cpu(x.size());
      std::vector<ActBlock> cpu_q(x.size() / 32);
      for (int t = 0; t < n_tokens; ++t) {
        cpu::rmsnorm({&x[t * n], size_t(n)}, w, 1e-6f, {&cpu[t * n], size_t(n)});
        quant::quantize_activations(&cpu[t * n], &cpu_q[t * (n / 32)], n);
      }
      ASSERT_TRUE(rmsnorm_quant_fits(n));
      auto dx = upload(x);
      auto dw = upload(w);
      // 1 block per row, and rows shared by 2, 6 (1536: one block of 32 per warp) and 16 blocks.
      for (int parts : {1, 2, 6, 16}) {
        SCOPED_TRACE("parts=" + std::to_string(parts));
        auto dy = poisoned<float>(x.size());
        auto dq = poisoned<ActBlock>(cpu_q.size());
        rmsnorm_quant(dx.get(), dw.get(), 1e-6f, n, n_tokens, dy.get(), dq.get(), nullptr, parts);
        EXPECT_TRUE(same_bits(download(dy), cpu, "rmsnorm_quant y"));
        EXPECT_TRUE(same_bits(download(dq), cpu_q, "rmsnorm_quant blocks"));
      }
    }
  }
  EXPECT_FALSE(rmsnorm_quant_fits(100));
}

void check_rope_kv(std::mt19937_64& rng, int n_heads, int n_kv_heads, int head_dim, bool neox,
                   int pos0, int n_tokens) {
  SCOPED_TRACE("heads " + std::to_string(n_heads) + "/" + std::to_string(n_kv_heads) + " hd " +
               std::to_string(head_dim) + (neox ? " neox" : " interleaved") + " pos " +
               std::to_string(pos0));
  const int n_ctx = 64, qd = n_heads * head_dim, kvd = n_kv_heads * head_dim;
  const std::vector<float> table = cpu::rope_table(n_ctx, head_dim, 1e6f, {});
  std::vector<float> q = random_floats(rng, static_cast<size_t>(qd) * n_tokens);
  std::vector<float> k = random_floats(rng, static_cast<size_t>(kvd) * n_tokens);
  const std::vector<float> v = random_floats(rng, static_cast<size_t>(kvd) * n_tokens);

  auto dq = upload(q), dk = upload(k), dv = upload(v), dtable = upload(table);
  auto dpos = upload(std::vector<int>{pos0});
  auto kc = poisoned<uint16_t>(static_cast<size_t>(n_ctx) * kvd);
  auto vc = poisoned<uint16_t>(static_cast<size_t>(n_ctx) * kvd);
  RopeKvArgs a;
  a.q = dq.get(), a.k = dk.get(), a.v = dv.get();
  a.n_heads = n_heads, a.n_kv_heads = n_kv_heads, a.head_dim = head_dim, a.neox = neox;
  a.table = dtable.get(), a.pos = dpos.get(), a.n_tokens = n_tokens;
  a.k_cache = kc.get(), a.v_cache = vc.get(), a.n_ctx = n_ctx;
  rope_kv_write(a, nullptr);

  std::vector<uint16_t> kc_cpu(static_cast<size_t>(n_ctx) * kvd, 0xffff), vc_cpu = kc_cpu;
  for (int t = 0; t < n_tokens; ++t) {
    cpu::rope_apply(&q[t * qd], n_heads, head_dim, neox, table.data(), pos0 + t);
    cpu::rope_apply(&k[t * kvd], n_kv_heads, head_dim, neox, table.data(), pos0 + t);
    for (int i = 0; i < kvd; ++i) {
      kc_cpu[static_cast<size_t>(pos0 + t) * kvd + i] = cpu::float_to_half(k[t * kvd + i]);
      vc_cpu[static_cast<size_t>(pos0 + t) * kvd + i] = cpu::float_to_half(v[t * kvd + i]);
    }
  }
  EXPECT_TRUE(same_bits(download(dq), q, "rope q"));
  EXPECT_TRUE(same_bits(download(dk), k, "rope k"));
  EXPECT_TRUE(same_bits(download(kc), kc_cpu, "k cache (other rows must stay untouched)"));
  EXPECT_TRUE(same_bits(download(vc), vc_cpu, "v cache (other rows must stay untouched)"));
}

TEST(CudaKernels, RopeAndKvWriteMatchCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  check_rope_kv(rng, 12, 2, 128, true, 0, 1);
  check_rope_kv(rng, 12, 2, 128, true, 37, 1);
  check_rope_kv(rng, 12, 2, 128, true, 50, 5);
  check_rope_kv(rng, 8, 8, 64, false, 13, 3);
}

void check_attention(std::mt19937_64& rng, int n_heads, int n_kv_heads, int head_dim, int n_ctx,
                     int pos0, int n_tokens, bool inf_in_pass = false) {
  SCOPED_TRACE("heads " + std::to_string(n_heads) + "/" + std::to_string(n_kv_heads) + " hd " +
               std::to_string(head_dim) + " pos " + std::to_string(pos0) + " tokens " +
               std::to_string(n_tokens));
  const int qd = n_heads * head_dim, kvd = n_kv_heads * head_dim, group = n_heads / n_kv_heads;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::vector<float> q = random_floats(rng, static_cast<size_t>(qd) * n_tokens);
  std::vector<uint16_t> kc(static_cast<size_t>(n_ctx) * kvd), vc(kc.size());
  // Scores of a few units (q, k ~ N(0, 1), scaled by 1/sqrt(hd)): a softmax far from uniform.
  for (auto& h : kc) h = cpu::float_to_half(std::normal_distribution<float>(0.0f, 1.0f)(rng));
  for (auto& h : vc) h = cpu::float_to_half(std::normal_distribution<float>(0.0f, 1.0f)(rng));
  // A V value of +inf at a position of this pass: the tokens before it must skip it exactly
  // (the prefill kernels add masked positions as e = 0 unless a V value there is not finite).
  if (inf_in_pass) vc[static_cast<size_t>(pos0 + n_tokens / 2) * kvd + 5] = 0x7c00;

  std::vector<float> cpu(static_cast<size_t>(qd) * n_tokens);
  std::vector<float> scratch(n_ctx);
  for (int t = 0; t < n_tokens; ++t)
    for (int h = 0; h < n_heads; ++h)
      cpu::attention_head(&q[t * qd + h * head_dim], kc.data() + (h / group) * head_dim,
                          vc.data() + (h / group) * head_dim, pos0 + t + 1, head_dim, kvd, kq_scale,
                          scratch.data(), &cpu[t * qd + h * head_dim]);

  auto dq = upload(q);
  auto dk = upload(kc), dv = upload(vc);
  auto dpos = upload(std::vector<int>{pos0});
  std::vector<ActBlock> cpu_q(cpu.size() / 32);
  quant::quantize_activations(cpu.data(), cpu_q.data(), static_cast<int64_t>(cpu.size()));
  // Prefill: the untiled, the token-tiled and the register-tiled passes, each against the CPU.
  for (int tile : n_tokens > 1 ? std::vector<int>{0, 1, 2} : std::vector<int>{-1}) {
    SCOPED_TRACE("tile " + std::to_string(tile));
    // Fresh poisoned scratch: nothing one variant wrote can stand in for the other's.
    const AttentionScratchSizes sz = attention_scratch_sizes(n_tokens, n_heads, n_ctx, head_dim);
    auto s_scores = poisoned<float>(sz.scores), s_max = poisoned<float>(sz.chunk_max);
    auto s_den = poisoned<float>(sz.chunk_den), s_val = poisoned<float>(sz.chunk_val);
    AttentionScratch scratch_d{s_scores.get(), s_max.get(), s_den.get(), s_val.get(),
                               n_tokens,       n_heads,     n_ctx,       head_dim};
    auto dout = poisoned<float>(cpu.size());
    auto dout_q = poisoned<ActBlock>(cpu.size() / 32);
    AttentionArgs a;
    a.q = dq.get(), a.k_cache = dk.get(), a.v_cache = dv.get();
    a.n_heads = n_heads, a.n_kv_heads = n_kv_heads, a.head_dim = head_dim, a.kv_stride = kvd;
    a.kq_scale = kq_scale, a.pos = dpos.get(), a.n_tokens = n_tokens;
    a.max_positions = n_ctx;  // as in the decode graph: grid for the whole context
    a.out = dout.get();
    a.out_q = dout_q.get();  // the fused quantization for the output projection
    a.tile = tile;
    attention(a, scratch_d, nullptr);
    EXPECT_TRUE(same_bits(download(dout), cpu, "attention"));
    // (An infinite output quantizes through NaN, whose int conversion the CPU leaves undefined.)
    if (!inf_in_pass) EXPECT_TRUE(same_bits(download(dout_q), cpu_q, "attention output blocks"));
  }
}

TEST(CudaKernels, AttentionMatchesCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // n_pos = pos + 1 around the chunk edges (256) and a long context (several chunks).
  for (int pos : {0, 6, 254, 255, 256, 700, 2047}) check_attention(rng, 12, 2, 128, 2048, pos, 1);
  check_attention(rng, 12, 2, 128, 4608, 4200, 1);   // decode at depth > 4096 (17 chunks)
  check_attention(rng, 12, 2, 128, 1024, 250, 9);    // prefill: tokens straddle a chunk edge
  check_attention(rng, 4, 4, 64, 512, 300, 2);       // no grouping, head_dim 64
  check_attention(rng, 8, 2, 256, 600, 599 - 3, 4);  // head_dim 256, up to the last position
  // Prefill passes tiled over query tokens (tiles of 8): a long pass from position 0, and the
  // 0.5B's shape (groups of 7 q heads, head_dim 64) at depth with a ragged last tile.
  check_attention(rng, 12, 2, 128, 1024, 0, 100);
  check_attention(rng, 14, 2, 64, 1024, 500, 37);
  // Register-tiled passes: 64-row tiles with ragged ends (9 x 6, 130 x 6 rows; 65 x 1), a pass
  // straddling chunk and slot edges at depth, and a non-finite V value that earlier rows skip.
  check_attention(rng, 12, 2, 128, 2048, 1000, 130);
  check_attention(rng, 4, 4, 64, 512, 63, 65);
  check_attention(rng, 12, 2, 128, 1024, 200, 9, /*inf_in_pass=*/true);
  check_attention(rng, 12, 2, 128, 1024, 0, 70, /*inf_in_pass=*/true);
}

TEST(CudaKernels, SwigluAndAddsMatchCpu) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 8960 * 3 + 5;
  std::vector<float> g = random_floats(rng, n, 4.0f);
  const std::vector<float> u = random_floats(rng, n);
  g[0] = -120.0f, g[1] = 95.0f, g[2] = 0.0f, g[3] = -0.0f;  // exp under/overflow branches
  std::vector<float> cpu(n);
  cpu::swiglu(g.data(), u.data(), cpu.data(), n);
  auto dg = upload(g);
  auto du = upload(u);
  auto dh = poisoned<float>(n);
  swiglu(dg.get(), du.get(), dh.get(), n, nullptr);
  EXPECT_TRUE(same_bits(download(dh), cpu, "swiglu"));

  // swiglu with the activation quantization fused in (n a multiple of 32, not of 256: a partial
  // last thread block).
  {
    const int64_t nq = 8960 * 3 + 96;
    std::vector<float> gq = random_floats(rng, nq, 4.0f);
    const std::vector<float> uq = random_floats(rng, nq);
    gq[5] = -120.0f, gq[6] = 95.0f;
    std::fill_n(&gq[64], 32, 0.0f);  // a block of zeros: amax = 0
    std::vector<float> hq_cpu(nq);
    cpu::swiglu(gq.data(), uq.data(), hq_cpu.data(), nq);
    std::vector<ActBlock> bq_cpu(nq / 32);
    quant::quantize_activations(hq_cpu.data(), bq_cpu.data(), nq);
    auto dgq = upload(gq);
    auto duq = upload(uq);
    auto dbq = poisoned<ActBlock>(bq_cpu.size());
    swiglu_quant(dgq.get(), duq.get(), dgq.get(), dbq.get(), nq, nullptr);  // h aliases g
    EXPECT_TRUE(same_bits(download(dgq), hq_cpu, "swiglu_quant h"));
    EXPECT_TRUE(same_bits(download(dbq), bq_cpu, "swiglu_quant blocks"));
  }

  std::vector<float> x = random_floats(rng, n);
  auto dx = upload(x);
  add_inplace(dx.get(), du.get(), n, nullptr);
  cpu::add_inplace(x.data(), u.data(), n);
  EXPECT_TRUE(same_bits(download(dx), x, "add_inplace"));

  const int rows = 1536, n_tokens = 3;
  std::vector<float> y = random_floats(rng, rows * n_tokens);
  const std::vector<float> b = random_floats(rng, rows);
  auto dy = upload(y);
  auto dbias = upload(b);
  add_bias(dy.get(), dbias.get(), rows, n_tokens, nullptr);
  for (int t = 0; t < n_tokens; ++t) cpu::add_inplace(&y[t * rows], b.data(), rows);
  EXPECT_TRUE(same_bits(download(dy), y, "add_bias"));
}

TEST(CudaKernels, EmbedMatchesDequantizeRow) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t vocab = 1000, n = 1536;
  for (Type type : kAllTypes) {
    SCOPED_TRACE(std::string(quant::type_info(type).name));
    const std::vector<uint8_t> table = random_weights(rng, type, vocab, n);
    const std::vector<int32_t> ids = {0, 999, 17, 17, 512};
    const size_t rb = quant::row_bytes(quant::type_info(type), n);
    std::vector<float> cpu(ids.size() * n);
    for (size_t t = 0; t < ids.size(); ++t)
      quant::dequantize_row(type, table.data() + rb * ids[t], &cpu[t * n], n);
    auto dt = upload(table);
    auto di = upload(ids);
    auto dout = poisoned<float>(cpu.size());
    embed(type, dt.get(), n, vocab, di.get(), static_cast<int>(ids.size()), dout.get(), nullptr);
    EXPECT_TRUE(same_bits(download(dout), cpu, "embed"));
  }
  // An id outside the vocabulary gives a NaN row, never a read outside the table.
  const std::vector<uint8_t> table = random_weights(rng, Type::Q8_0, vocab, n);
  auto dt = upload(table);
  auto di = upload(std::vector<int32_t>{static_cast<int32_t>(vocab)});
  auto dout = poisoned<float>(n);
  CUDA_CHECK(cudaMemset(dout.get(), 0, dout.bytes()));
  embed(Type::Q8_0, dt.get(), n, vocab, di.get(), 1, dout.get(), nullptr);
  for (float v : download(dout)) ASSERT_TRUE(std::isnan(v));
}

TEST(CudaKernels, ArgmaxTiesToLowestIdAndAdvancesPosition) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int n = 151936;
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<float> logits = random_floats(rng, n, 3.0f);
    if (trial >= 1) {  // planted ties: the lowest id must win
      std::uniform_int_distribution<int> pick(0, n - 1);
      const int a = pick(rng), b = pick(rng), c = pick(rng);
      logits[a] = logits[b] = logits[c] = 100.0f;
    }
    if (trial == 3) std::fill(logits.begin(), logits.end(), -2.5f);  // all equal: id 0
    const int32_t expect = cpu::argmax(logits);
    auto dl = upload(logits);
    // One block, then the multi-block kernel at several grid sizes (1 and 7: uneven slices;
    // 128: the most), reusing one scratch buffer that each launch must leave zero.
    const std::vector<unsigned> zeros(argmax_scratch_words(), 0u);
    auto scratch = upload(zeros);
    for (int blocks : {0, 2, 7, 64, 128}) {
      SCOPED_TRACE("blocks " + std::to_string(blocks));
      auto dtok = poisoned<int32_t>(1);
      auto dpos = upload(std::vector<int>{41});
      argmax(dl.get(), n, dtok.get(), dpos.get(), 1, nullptr, scratch.get(), blocks);
      EXPECT_EQ(download(dtok)[0], expect) << "trial " << trial;
      EXPECT_EQ(download(dpos)[0], 42);
      EXPECT_EQ(download(scratch), zeros);
    }
  }
  auto dpos = upload(std::vector<int>{5});
  advance_position(dpos.get(), 7, nullptr);
  EXPECT_EQ(download(dpos)[0], 12);
}

TEST(CudaKernels, LaunchersRejectBadShapes) {
  MatvecArgs a;  // preconditions are checked on the host, before any device work
  a.type = Type::Q4_K;
  a.rows = 4;
  a.n = 100;  // not a multiple of 256
  float dummy = 0.0f;
  a.w = &dummy;
  a.out = &dummy;
  a.out_stride = 4;
  EXPECT_THROW(matvec(a, nullptr), resident::Error);
  EXPECT_THROW(quantize_activations(&dummy, nullptr, 33, 1, nullptr), resident::Error);
}

}  // namespace
}  // namespace resident::cuda::test
