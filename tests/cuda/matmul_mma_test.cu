// The tensor-core prefill matmul (cuda/matmul_mma.cuh) against the spec run on the host with the
// same quant_blocks.h functions (mma_reference.h): every format, ragged row / token tiles, the
// bias and accumulate epilogues, a padded output stride; outputs poisoned with NaN, bits compared.
// Larger shapes and timings: scripts/mma-check.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/matmul_mma.cuh"
#include "cuda_test_util.h"
#include "mma_reference.h"

namespace resident::cuda::test {
namespace {

using numerics::ActBlock;
using quant::Type;

struct MmaCase {
  Type type;
  int64_t rows, n;
  int n_tokens;
  bool bias = false, accumulate = false;
  int64_t stride_pad = 0;
};

void check_mma(std::mt19937_64& rng, const MmaCase& c) {
  SCOPED_TRACE(std::string(mma_ref::name(c.type)) + " rows=" + std::to_string(c.rows) +
               " n=" + std::to_string(c.n) + " tokens=" + std::to_string(c.n_tokens) +
               (c.bias ? " +bias" : "") + (c.accumulate ? " +=" : "") +
               (c.stride_pad ? " +stride" : ""));
  const int64_t stride = c.rows + c.stride_pad;
  const std::vector<uint8_t> w = mma_ref::random_weights(rng, c.type, c.rows, c.n, 512);
  const std::vector<ActBlock> xq = mma_ref::random_activations(rng, c.n, c.n_tokens);
  const std::vector<float> bias = random_floats(rng, c.rows);
  std::vector<float> prior = random_floats(rng, stride * c.n_tokens);
  if (!c.accumulate) prior.assign(prior.size(), numerics::bits_to_float(0xffffffffu));  // poison

  std::vector<float> cpu = prior;
  mma_ref::reference(c.type, w.data(), c.rows, c.n, xq.data(), c.n_tokens, cpu.data(), stride,
                     c.bias ? bias.data() : nullptr, c.accumulate);

  auto dw = upload(w);
  auto dxq = upload(xq);
  auto db = upload(bias);
  auto dout = upload(prior);
  MatvecArgs a;
  a.type = c.type;
  a.w = dw.get();
  a.rows = c.rows;
  a.n = c.n;
  a.xq = dxq.get();
  a.n_tokens = c.n_tokens;
  a.out = dout.get();
  a.out_stride = stride;
  a.bias = c.bias ? db.get() : nullptr;
  a.accumulate = c.accumulate;
  ASSERT_TRUE(matmul_mma(a, mma_ref::row_bytes(c.type, c.n), nullptr));
  EXPECT_TRUE(same_bits(download(dout), cpu, "matmul_mma"));
}

TEST(CudaMatmulMma, MatchesSpecForEveryInt8Format) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (Type type : {Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::Q4_0, Type::Q5_0, Type::Q5_K}) {
    check_mma(rng, {type, 256, 1536, 64});  // whole tiles
    check_mma(rng, {type, 37, 1536, 19});   // one partial tile: idle warps, clamped loads
    check_mma(rng, {type, 130, 256, 70});   // ragged in rows and tokens, one super-block
    check_mma(rng, {type, 100, 1536, 33, true, false});     // bias
    check_mma(rng, {type, 100, 1536, 40, false, true, 5});  // residual, padded stride
    check_mma(rng, {type, 64, 8960, 16, true, true});       // long rows, both epilogues
  }
}

// The cases above are small, so they take 32-row tiles (launch: fewer than 2 x SMs tiles of 64
// rows); this one has enough tiles for 64-row tiles, with a ragged last row tile and token tile.
TEST(CudaMatmulMma, MatchesSpecWith64RowTiles) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t rows = 64 * static_cast<int64_t>(current_sm_count()) + 37;
  for (Type type : {Type::Q4_K, Type::Q6_K, Type::Q8_0})
    check_mma(rng, {type, rows, 256, 130, true, true});
}

// Several matrices with one input in one launch (gate/up, q/k/v): each equals its own spec
// result, with its own rows, stride, bias and epilogue; both tile heights.
TEST(CudaMatmulMma, MultiMatchesSpecPerMatrix) {
  REQUIRE_GPU_OR_SKIP();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("RESIDENT_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Seg {
    int64_t rows;
    bool bias, accumulate;
    int64_t pad;
  };
  const int64_t big = 64 * static_cast<int64_t>(current_sm_count());  // 64-row tiles
  for (Type type : {Type::Q4_K, Type::Q6_K, Type::Q8_0}) {
    for (const std::vector<Seg>& segs :
         {std::vector<Seg>{{100, true, false, 0}, {37, false, true, 3}, {64, true, true, 0}},
          std::vector<Seg>{{big + 5, false, false, 0}, {big, false, false, 1}}}) {
      const int64_t n = 512;
      const int n_tokens = 70;
      SCOPED_TRACE(std::string(mma_ref::name(type)) + " segments " + std::to_string(segs.size()) +
                   " first rows " + std::to_string(segs[0].rows));
      const std::vector<ActBlock> xq = mma_ref::random_activations(rng, n, n_tokens);
      auto dxq = upload(xq);
      std::vector<MatvecArgs> args;
      std::vector<DeviceBuffer<uint8_t>> dw;
      std::vector<DeviceBuffer<float>> db, dout;
      std::vector<std::vector<float>> want;
      for (const Seg& g : segs) {
        const int64_t stride = g.rows + g.pad;
        const std::vector<uint8_t> w = mma_ref::random_weights(rng, type, g.rows, n, 512);
        const std::vector<float> bias = random_floats(rng, g.rows);
        std::vector<float> prior = random_floats(rng, stride * n_tokens);
        if (!g.accumulate) prior.assign(prior.size(), numerics::bits_to_float(0xffffffffu));
        std::vector<float> cpu = prior;
        mma_ref::reference(type, w.data(), g.rows, n, xq.data(), n_tokens, cpu.data(), stride,
                           g.bias ? bias.data() : nullptr, g.accumulate);
        want.push_back(cpu);
        dw.push_back(upload(w));
        db.push_back(upload(bias));
        dout.push_back(upload(prior));
        MatvecArgs a;
        a.type = type;
        a.w = dw.back().get();
        a.rows = g.rows;
        a.n = n;
        a.xq = dxq.get();
        a.n_tokens = n_tokens;
        a.out = dout.back().get();
        a.out_stride = stride;
        a.bias = g.bias ? db.back().get() : nullptr;
        a.accumulate = g.accumulate;
        args.push_back(a);
      }
      ASSERT_TRUE(matmul_mma_multi(args.data(), static_cast<int>(args.size()),
                                   mma_ref::row_bytes(type, n), nullptr));
      for (size_t i = 0; i < segs.size(); ++i)
        EXPECT_TRUE(same_bits(download(dout[i]), want[i], "matrix " + std::to_string(i)));
    }
  }
  // Matrices that do not share their input are declined.
  auto dxq = poisoned<ActBlock>(16 * 64);
  auto dxq2 = poisoned<ActBlock>(16 * 64);
  auto dw = poisoned<uint8_t>(64 * 2048);
  auto dout = poisoned<float>(64 * 64);
  MatvecArgs a;
  a.type = Type::Q4_K;
  a.w = dw.get();
  a.rows = 64;
  a.n = 512;
  a.xq = dxq.get();
  a.n_tokens = 64;
  a.out = dout.get();
  a.out_stride = 64;
  MatvecArgs b = a;
  b.xq = dxq2.get();
  const MatvecArgs pair[] = {a, b};
  EXPECT_FALSE(matmul_mma_multi(pair, 2, mma_ref::row_bytes(Type::Q4_K, 512), nullptr));
  b = a;
  b.type = Type::Q6_K;
  const MatvecArgs mixed[] = {a, b};
  EXPECT_FALSE(matmul_mma_multi(mixed, 2, mma_ref::row_bytes(Type::Q4_K, 512), nullptr));
}

TEST(CudaMatmulMma, DeclinesWhatItDoesNotHandle) {
  REQUIRE_GPU_OR_SKIP();
  auto dxq = poisoned<ActBlock>(48 * 64 + 1);
  auto dout = poisoned<float>(64 * 64);
  auto dw = poisoned<uint8_t>(64 * 3072);
  MatvecArgs a;
  a.type = Type::Q4_K;
  a.w = dw.get();
  a.rows = 64;
  a.n = 1536;
  a.xq = dxq.get();
  a.n_tokens = 15;  // too few tokens for a tile
  a.out = dout.get();
  a.out_stride = 64;
  EXPECT_FALSE(matmul_mma(a, 864, nullptr));
  a.n_tokens = 64;
  a.type = Type::F16;  // float weights
  EXPECT_FALSE(matmul_mma(a, 3072, nullptr));
  a.type = Type::Q8_0;
  a.n = 96;  // not whole stages of 4 blocks
  EXPECT_FALSE(matmul_mma(a, 102, nullptr));
  a.n = 1536;
  a.xq = dxq.get() + 1;  // 40 bytes in: not 16-byte aligned
  EXPECT_FALSE(matmul_mma(a, 1632, nullptr));
}

}  // namespace
}  // namespace resident::cuda::test
