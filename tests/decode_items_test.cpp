// The decode matvec's work items (src/cuda/decode_items.cuh), compiled for the host: each item's
// partials must equal the per-32-block partial of quant_blocks.h bit for bit, and the partials
// summed in j order from 0.0f must equal quant::dot_row (the CPU spec). Runs in CPU CI, so the
// integer unpacking of the items (scale bits, nibble planes, half sums) is checked without a GPU;
// the CUDA kernel tests then check the device build of the same code.
#include "cuda/decode_items.cuh"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "cuda/quant_blocks.h"
#include "quant/quant.h"

namespace resident {
namespace {

using numerics::ActBlock;
using quant::Type;

// Random bytes (every scale and quant bit pattern), with each block's fp16 factors set to finite
// values so the partials are finite.
std::vector<uint8_t> random_row(std::mt19937_64& rng, Type type, int64_t n) {
  const auto& info = quant::type_info(type);
  std::vector<uint8_t> row(quant::row_bytes(info, n));
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  auto put = [&](uint8_t* p) {
    const uint16_t h = cpu::float_to_half(scale(rng));
    std::memcpy(p, &h, 2);
  };
  for (int64_t b = 0; b < n / info.block_elems; ++b) {
    uint8_t* blk = row.data() + b * info.block_bytes;
    if (type == Type::Q6_K) {
      put(blk + 208);
    } else {
      put(blk);
      if (type == Type::Q4_K || type == Type::Q5_K) put(blk + 2);
    }
  }
  return row;
}

template <typename Item, typename Block>
void check_type(std::mt19937_64& rng, Type type, int64_t n) {
  SCOPED_TRACE(std::string(quant::type_info(type).name) + " n=" + std::to_string(n));
  const int nb = static_cast<int>(n / 32);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = unit(rng);
  x[5] = 40.0f;  // an outlier channel, as real activations have
  std::vector<ActBlock> xq(nb);
  quant::quantize_activations(x.data(), xq.data(), n);

  std::vector<uint32_t> q(8 * nb);
  std::vector<float> d(nb);
  std::vector<int> sum(nb), half(2 * nb);
  for (int j = 0; j < nb; ++j)
    cuda::items::stage_act_block(xq[j], j, q.data(), d.data(), sum.data(), half.data());
  const cuda::items::ActView act{q.data(), d.data(), sum.data(), half.data()};

  for (int r = 0; r < 4; ++r) {
    // Two spare bytes after the row: the device loader may read them (they never enter a result).
    std::vector<uint8_t> row = random_row(rng, type, n);
    row.resize(row.size() + 4, 0xee);
    float acc = 0.0f;
    for (int it = 0; it < nb / Item::kSub; ++it) {
      float p[Item::kSub];
      Item::partials(row.data(), it, act, p);
      for (int k = 0; k < Item::kSub; ++k) {
        const int j = Item::kSub * it + k;
        const float want = Block::partial(Block::load(row.data(), j), xq[j]);
        ASSERT_EQ(numerics::float_to_bits(p[k]), numerics::float_to_bits(want))
            << "row " << r << " block " << j << ": " << p[k] << " vs " << want;
        acc = acc + p[k];
      }
    }
    const float spec = quant::dot_row(type, row.data(), xq.data(), nullptr, n);
    EXPECT_EQ(numerics::float_to_bits(acc), numerics::float_to_bits(spec)) << "row " << r;
  }
}

TEST(DecodeItems, PartialsEqualPerBlockSpecAndDotRow) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int64_t n : {256, 1536, 8960}) {
    check_type<cuda::items::Q4_K, cuda::blocks::Q4_K>(rng, Type::Q4_K, n);
    check_type<cuda::items::Q5_K, cuda::blocks::Q5_K>(rng, Type::Q5_K, n);
    check_type<cuda::items::Q6_K, cuda::blocks::Q6_K>(rng, Type::Q6_K, n);
    check_type<cuda::items::Q8_0, cuda::blocks::Q8_0>(rng, Type::Q8_0, n);
    check_type<cuda::items::Q4_0, cuda::blocks::Q4_0>(rng, Type::Q4_0, n);
    check_type<cuda::items::Q5_0, cuda::blocks::Q5_0>(rng, Type::Q5_0, n);
  }
}

// The staged half sums are the exact sums of each half's quants.
TEST(DecodeItems, StagedHalfSums) {
  ActBlock a{};
  for (int i = 0; i < 32; ++i) a.q[i] = static_cast<int8_t>(i < 16 ? -127 + i : 100 - i);
  a.d = 0.5f;
  a.sum = 0;
  for (int i = 0; i < 32; ++i) a.sum += a.q[i];
  uint32_t q[16];
  float d[2];
  int sum[2], half[4];
  cuda::items::stage_act_block(a, 1, q, d, sum, half);
  int lo = 0, hi = 0;
  for (int i = 0; i < 16; ++i) lo += a.q[i], hi += a.q[16 + i];
  EXPECT_EQ(half[2], lo);
  EXPECT_EQ(half[3], hi);
  EXPECT_EQ(sum[1], a.sum);
  EXPECT_EQ(d[1], 0.5f);
  EXPECT_EQ(std::memcmp(q + 8, a.q, 32), 0);
}

}  // namespace
}  // namespace resident
