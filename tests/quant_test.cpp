// Quant formats, activation quantization and the canonical CPU matmul kernels.
//
// What is checked, and why the tolerances are what they are:
//  - dequantize(quantize(x)) is within the quantizer's own grid step of x (bound derived below
//    from the block statistics, not tuned);
//  - dot_row agrees with an exact (float64) dot product of the values the blocks encode, within
//    the float32 rounding the canonical formula can commit (derived per test);
//  - the AVX2 kernels (matmul_rows, dot_row) equal the scalar reference of docs/numerics.md
//    (dot_row_reference) bit for bit, for every type, row range and token count;
//  - the scale unpacking and type table against their definitions.
// Dequantization against the `gguf` package, bit for bit, is in tests/python/test_quant.py.
#include "quant/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/block_formats.h"
#include "quant/dot_reference.h"
#include "quant/packed_activations.h"
#include "util/error.h"

namespace resident::quant {
namespace {

using numerics::ActBlock;

constexpr Type kAllTypes[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q8_0, Type::Q4_0,
                              Type::Q5_0, Type::Q4_K, Type::Q5_K, Type::Q6_K};
constexpr Type kQuantTypes[] = {Type::Q8_0, Type::Q4_0, Type::Q5_0,
                                Type::Q4_K, Type::Q5_K, Type::Q6_K};

constexpr double kEps32 = 1.0 / (1 << 24);  // unit roundoff of float32 (round to nearest)

std::mt19937_64& rng() {
  static std::mt19937_64 gen(std::random_device{}());
  return gen;
}

uint16_t random_fp16_scale(double lo, double hi) {
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution neg(0.25);
  const float v = static_cast<float>(mag(rng()) * (neg(rng()) ? -1.0 : 1.0));
  return float_to_fp16(v);
}

// Random valid weight rows: random bytes everywhere (every quant value, every packed scale),
// fp16 scale fields replaced by finite values, float types by finite random floats.
std::vector<uint8_t> random_rows(Type type, int64_t rows, int64_t n) {
  const TypeInfo& info = type_info(type);
  const size_t rb = row_bytes(info, n);
  std::vector<uint8_t> data(rb * static_cast<size_t>(rows));
  for (auto& b : data) b = static_cast<uint8_t>(rng()());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t nblocks = data.size() / static_cast<size_t>(info.block_bytes);
  for (size_t i = 0; i < nblocks; ++i) {
    uint8_t* blk = data.data() + i * static_cast<size_t>(info.block_bytes);
    auto put16 = [&](size_t off, uint16_t v) { std::memcpy(blk + off, &v, 2); };
    switch (type) {
      case Type::F32: {
        const float v = normal(rng());
        std::memcpy(blk, &v, 4);
        break;
      }
      case Type::F16:
        put16(0, float_to_fp16(normal(rng())));
        break;
      case Type::BF16:
        put16(0, float_to_bf16(normal(rng())));
        break;
      case Type::Q8_0:
      case Type::Q4_0:
      case Type::Q5_0:
        put16(0, random_fp16_scale(1e-3, 1.0));
        break;
      case Type::Q4_K:
      case Type::Q5_K:
        put16(0, random_fp16_scale(1e-4, 0.1));
        put16(2, random_fp16_scale(1e-4, 0.1));
        break;
      case Type::Q6_K:
        put16(208, random_fp16_scale(1e-4, 0.1));
        break;
    }
  }
  return data;
}

// Activation blocks: mostly quantize_act_block of random floats (with an occasional massive
// channel), some blocks pinned at +-127 (the largest products vpmaddubsw sees), some all zero.
std::vector<ActBlock> random_activations(int64_t n, int n_tokens, std::vector<float>* floats) {
  std::vector<float> x(static_cast<size_t>(n) * n_tokens);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const int kind = pick(rng());
    for (int i = 0; i < 32; ++i) {
      float v = normal(rng());
      if (kind == 0) v = (rng()() & 1) ? 3.0f : -3.0f;  // all +-127 after quantization
      if (kind == 1) v = 0.0f;
      if (kind == 2 && i == 7) v *= 1000.0f;  // massive activation channel
      x[b * 32 + i] = v;
    }
  }
  std::vector<ActBlock> q(x.size() / 32);
  quantize_activations(x.data(), q.data(), static_cast<int64_t>(x.size()));
  if (floats) *floats = x;
  return q;
}

// Exact (float64) values the blocks of a row encode, and for each the sum of the magnitudes of
// the terms that make it up (|d sc q| + |dmin m| for Q4_K/Q5_K), used in rounding bounds.
void exact_row(Type type, const uint8_t* row, int64_t n, std::vector<double>& w,
               std::vector<double>& wmag) {
  w.assign(static_cast<size_t>(n), 0.0);
  wmag.assign(static_cast<size_t>(n), 0.0);
  std::vector<float> f(static_cast<size_t>(n));
  if (type == Type::Q4_K || type == Type::Q5_K) {
    // value = (d * sc) * q - dmin * m: recompute without float rounding.
    const size_t bb = static_cast<size_t>(type_info(type).block_bytes);
    for (int64_t s = 0; s < n / 256; ++s) {
      const uint8_t* blk = row + s * bb;
      uint16_t d16, m16;
      std::memcpy(&d16, blk, 2);
      std::memcpy(&m16, blk + 2, 2);
      const double d = fp16_to_float(d16), dmin = fp16_to_float(m16);
      // q from dequantizing with d = 1, dmin = 0 (exact small integers times sc).
      std::vector<uint8_t> copy(blk, blk + bb);
      const uint16_t one = float_to_fp16(1.0f), zero = 0;
      std::memcpy(copy.data(), &one, 2);
      std::memcpy(copy.data() + 2, &zero, 2);
      float qsc[256];
      dequantize_row(type, copy.data(), qsc, 256);  // = sc_j * q exactly
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, blk + 4, &sc, &m);
        for (int l = 0; l < 32; ++l) {
          const size_t i = static_cast<size_t>(s * 256 + 32 * j + l);
          w[i] = d * qsc[32 * j + l] - dmin * m;
          wmag[i] = std::fabs(d * qsc[32 * j + l]) + std::fabs(dmin * m);
        }
      }
    }
    return;
  }
  // Other formats: the float32 dequantization is a single exact-or-once-rounded product of a
  // float scale and a small integer; recompute it in double from dequant with unit scale.
  dequantize_row(type, row, f.data(), n);
  for (size_t i = 0; i < f.size(); ++i) {
    w[i] = f[i];
    wmag[i] = std::fabs(f[i]);
  }
  if (type == Type::Q6_K) {
    // (d * sc) * q rounds twice in float; redo it exactly: d * (sc * q).
    const size_t bb = sizeof(BlockQ6_K);
    for (int64_t s = 0; s < n / 256; ++s) {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(row + s * bb);
      BlockQ6_K unit = *b;
      unit.d = float_to_fp16(1.0f);
      float q[256];
      dequantize_row(type, &unit, q, 256);  // sc * (q - 32), exact integers
      const double d = fp16_to_float(b->d);
      for (int i = 0; i < 256; ++i) {
        w[s * 256 + i] = d * q[i];
        wmag[s * 256 + i] = std::fabs(d * q[i]);
      }
    }
  }
}

TEST(QuantTypes, TableMatchesGgml) {
  struct Expect {
    uint32_t id;
    const char* name;
    int elems, bytes;
  };
  const Expect expect[] = {{0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},
                           {6, "Q5_0", 32, 22},    {8, "Q8_0", 32, 34},    {12, "Q4_K", 256, 144},
                           {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {30, "BF16", 1, 2}};
  for (const Expect& e : expect) {
    const auto info = type_info(e.id);
    ASSERT_TRUE(info.has_value()) << e.name;
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(info->block_elems, e.elems);
    EXPECT_EQ(info->block_bytes, e.bytes);
    EXPECT_EQ(static_cast<uint32_t>(info->type), e.id);
    EXPECT_EQ(ggml_type_name(e.id), e.name);
  }
  for (uint32_t unsupported : {3u, 7u, 9u, 10u, 11u, 15u, 16u, 23u, 24u, 28u, 29u, 39u, 1000u}) {
    EXPECT_FALSE(type_info(unsupported).has_value()) << unsupported;
  }
  EXPECT_EQ(ggml_type_name(3), "Q4_1");
  EXPECT_EQ(ggml_type_name(11), "Q3_K");
  EXPECT_EQ(ggml_type_name(16), "IQ2_XXS");
  EXPECT_EQ(ggml_type_name(28), "F64");
  EXPECT_EQ(ggml_type_name(24), "I8");
  EXPECT_EQ(ggml_type_name(39), "MXFP4");
  EXPECT_EQ(ggml_type_name(12345), "unknown");
}

TEST(QuantScales, PackedK4UnpackMatchesDefinition) {
  for (int iter = 0; iter < 1000; ++iter) {
    uint8_t packed[12];
    for (auto& b : packed) b = static_cast<uint8_t>(rng()());
    uint8_t all[16];
    unpack_scales_k4(packed, all);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, packed, &sc, &m);
      ASSERT_EQ(all[j], sc) << j;
      ASSERT_EQ(all[8 + j], m) << j;
    }
  }
}

TEST(QuantActivations, MatchCanonicalBlockQuantizer) {
  std::vector<float> x;
  const auto q = random_activations(1024, 1, &x);
  for (size_t b = 0; b < q.size(); ++b) {
    ActBlock ref;
    numerics::quantize_act_block(x.data() + 32 * b, &ref);
    ASSERT_EQ(std::memcmp(&ref, &q[b], sizeof ref), 0) << b;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) sum += q[b].q[i];
    ASSERT_EQ(sum, q[b].sum);
  }
}

// quantize_activations (AVX2) == the canonical scalar block quantizer, byte for byte, on
// blocks built to hit its edges: ties at .5 after scaling, all zeros, one huge channel,
// subnormal maxima (127 / amax overflows to inf), infinities and NaN.
TEST(QuantActivations, VectorMatchesCanonicalOnEdgeBlocks) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<std::vector<float>> blocks;
  for (int b = 0; b < 200; ++b) {
    std::vector<float> v(32);
    for (auto& e : v) e = uni(rng) * std::ldexp(1.0f, b % 40 - 20);
    blocks.push_back(v);
  }
  std::vector<float> ties(32);
  for (int i = 0; i < 32; ++i) ties[i] = (static_cast<float>(i) - 15.5f) * 0.5f;
  ties[0] = 127.0f;  // amax 127: x * id = x, so the halves are exact ties
  blocks.push_back(ties);
  blocks.push_back(std::vector<float>(32, 0.0f));
  std::vector<float> huge(32, 0.25f);
  huge[7] = -3.0e4f;
  blocks.push_back(huge);
  std::vector<float> sub(32);
  for (int i = 0; i < 32; ++i) sub[i] = std::ldexp(static_cast<float>(i % 7) - 3.0f, -140);
  blocks.push_back(sub);
  for (float special : {INFINITY, -INFINITY, NAN}) {
    std::vector<float> v(32);
    for (auto& e : v) e = uni(rng);
    v[13] = special;
    blocks.push_back(v);
  }
  for (const auto& v : blocks) {
    ActBlock got, ref;
    quantize_activations(v.data(), &got, 32);
    numerics::quantize_act_block(v.data(), &ref);
    ASSERT_EQ(std::memcmp(&ref, &got, sizeof ref), 0) << "block starting " << v[0];
  }
}

// Round trip. Bound per element, from the quantizer's construction (quantize.cpp): the grid of
// every block covers the block's values, so the error is at most half a step, where the step is
// what the block stores; a full step for the one clipped extreme of Q4_0/Q5_0 (ggml's
// asymmetric grid). Separately, the stored step must be close to the ideal one (range / levels),
// or a quantizer that stored huge scales would pass the first check. Float rounding of the
// dequantization adds a few ulps of the block's magnitude.
TEST(QuantRoundTrip, WithinHalfStep) {
  const int64_t n = 1024;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (Type type : kAllTypes) {
    SCOPED_TRACE(type_info(type).name);
    std::vector<float> x(n), y(n, NAN);
    for (int64_t i = 0; i < n; ++i) x[i] = normal(rng()) * (i % 97 == 0 ? 20.0f : 1.0f);
    std::vector<uint8_t> q(row_bytes(type_info(type), n));
    quantize_row(type, x.data(), q.data(), n);
    dequantize_row(type, q.data(), y.data(), n);
    for (int64_t blk = 0; blk < n / 32; ++blk) {
      const float* xb = x.data() + 32 * blk;
      const float* yb = y.data() + 32 * blk;
      float amax = 0, mn = 0, mx = -INFINITY;
      for (int i = 0; i < 32; ++i) {
        amax = std::max(amax, std::fabs(xb[i]));
        mn = std::min(mn, xb[i]);
        mx = std::max(mx, xb[i]);
      }
      double bound = 0.0;
      const double slack = 16 * kEps32 * amax;
      switch (type) {
        case Type::F32:
          bound = 0;
          break;
        case Type::F16:
          bound = amax * std::ldexp(1.0, -11);
          break;  // half ulp of fp16
        case Type::BF16:
          bound = amax * std::ldexp(1.0, -8);
          break;  // half ulp of bf16
        case Type::Q8_0: {
          const double d = std::fabs(fp16_to_float(reinterpret_cast<BlockQ8_0*>(q.data())[blk].d));
          EXPECT_LE(d, amax / 127.0 * (1 + std::ldexp(1.0, -10)) + 6e-8);
          bound = 0.5 * d;
          break;
        }
        case Type::Q4_0:
        case Type::Q5_0: {
          const uint16_t d16 = type == Type::Q4_0 ? reinterpret_cast<BlockQ4_0*>(q.data())[blk].d
                                                  : reinterpret_cast<BlockQ5_0*>(q.data())[blk].d;
          const double d = std::fabs(fp16_to_float(d16));
          const double levels = type == Type::Q4_0 ? 8.0 : 16.0;
          EXPECT_LE(d, amax / levels * (1 + std::ldexp(1.0, -10)) + 6e-8);
          bound = d;
          break;
        }
        case Type::Q4_K:
        case Type::Q5_K: {
          // step_j = d * sc_j with sc_j = ceil(need / d), need = (max + dmin*m_j) / levels and
          // dmin*m_j <= -min + dmin: step_j <= (range + dmin) / levels + d.
          const size_t bb = static_cast<size_t>(type_info(type).block_bytes);
          const uint8_t* sb = q.data() + (blk / 8) * bb;
          uint16_t d16, m16;
          std::memcpy(&d16, sb, 2);
          std::memcpy(&m16, sb + 2, 2);
          const double levels = type == Type::Q4_K ? 15.0 : 31.0;
          const double d = fp16_to_float(d16), dmin = fp16_to_float(m16);
          uint8_t sc, m;
          get_scale_min_k4(static_cast<int>(blk % 8), sb + 4, &sc, &m);
          const double step = d * sc;
          EXPECT_LE(step, (mx - mn + dmin) / levels + d + slack);
          bound = 0.5 * step;
          break;
        }
        case Type::Q6_K: {
          const auto* b = reinterpret_cast<BlockQ6_K*>(q.data()) + blk / 8;
          const double d = fp16_to_float(b->d);
          for (int h = 0; h < 2; ++h) {
            float a16 = 0;
            for (int i = 0; i < 16; ++i) a16 = std::max(a16, std::fabs(xb[16 * h + i]));
            const double step = d * b->scales[2 * (blk % 8) + h];
            EXPECT_LE(step, a16 / 31.0 + d + slack);
            for (int i = 0; i < 16; ++i) {
              ASSERT_LE(std::fabs(xb[16 * h + i] - yb[16 * h + i]), 0.5 * step + slack)
                  << "block " << blk << " element " << 16 * h + i;
            }
          }
          continue;
        }
      }
      for (int i = 0; i < 32; ++i) {
        ASSERT_LE(std::fabs(static_cast<double>(xb[i]) - yb[i]), bound + slack)
            << "block " << blk << " element " << i << " x=" << xb[i] << " y=" << yb[i];
      }
    }
  }
}

// dot_row against the exact dot product of the encoded values.
// Per block j the canonical partial rounds a handful of times: quant types at most 4 roundings
// of terms bounded by T_j = sum_i wmag_i * |a_i| (products d*sc, *isum, dmin*m, *a.sum, the
// subtraction, the final *a.d; the int->float conversions are exact below 2^24), so
// |p_j - exact_j| <= 5 u T_j; float types: a chain of 32 fmaf, <= 32 u T_j. The sequential sum
// of m = n/32 partials adds at most (m - 1) u sum_j |p_j|. Hence
//   |dot - exact| <= (m + k) u sum_j T_j (1 + O(u)),  k = 5 (quant) or 32 (float).
TEST(QuantDot, MatchesExactDotWithinRoundingBound) {
  for (Type type : kAllTypes) {
    SCOPED_TRACE(type_info(type).name);
    const int64_t n = 2048, rows = 6;
    const auto w = random_rows(type, rows, n);
    std::vector<float> xf;
    const auto xq = random_activations(n, 1, &xf);
    const bool int8 = uses_int8_activations(type);
    const size_t rb = row_bytes(type_info(type), n);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> wv, wmag;
      exact_row(type, w.data() + r * rb, n, wv, wmag);
      double exact = 0.0, tsum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double a = int8 ? static_cast<double>(xq[i / 32].d) * xq[i / 32].q[i % 32]
                              : static_cast<double>(xf[i]);
        exact += wv[i] * a;
        tsum += wmag[i] * std::fabs(a);
      }
      const double k = int8 ? 5.0 : 32.0;
      const double tol = (n / 32 + k) * kEps32 * tsum * 1.001;
      const float got = dot_row(type, w.data() + r * rb, xq.data(), xf.data(), n);
      EXPECT_LE(std::fabs(got - exact), tol) << "row " << r << " got " << got << " exact " << exact;
      // The check has teeth: the tolerance is a small fraction of the dot's magnitude scale.
      EXPECT_LT(tol, 1e-3 * tsum);
    }
  }
}

// AVX2 kernels == scalar reference, bit for bit: every (row, token) of matmul_rows and every
// dot_row. Covers tails: row ranges not a multiple of 8, token counts 1..9, and rows of Q4_0 /
// Q5_0 / Q8_0 whose block count is not a multiple of 8.
TEST(QuantMatmul, BitIdenticalToScalarReference) {
  for (Type type : kAllTypes) {
    SCOPED_TRACE(type_info(type).name);
    const int be = type_info(type).block_elems;
    std::vector<int64_t> lengths = {256, 1536};
    if (be == 32 || be == 1) {
      lengths.push_back(32 * 13);  // 13 blocks: a partial step
      lengths.push_back(32 * 5);   // 5 blocks: no whole step at all
    }
    for (int64_t n : lengths) {
      const int64_t rows = 21;
      const auto w = random_rows(type, rows, n);
      const size_t rb = row_bytes(type_info(type), n);
      for (int n_tokens = 1; n_tokens <= 9; ++n_tokens) {
        std::vector<float> xf;
        const auto xq = random_activations(n, n_tokens, &xf);
        const int64_t nb = n / 32;
        for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {3, 14}, {5, 6}, {13, 21}}) {
          const int64_t stride = rows + 3;
          std::vector<float> out(static_cast<size_t>(stride * n_tokens), NAN);
          matmul_rows(type, w.data(), n, xq.data(), xf.data(), n_tokens, out.data(), stride, r0,
                      r1);
          for (int t = 0; t < n_tokens; ++t) {
            for (int64_t r = 0; r < stride; ++r) {
              const float got = out[t * stride + r];
              if (r < r0 || r >= r1) {
                ASSERT_TRUE(std::isnan(got)) << "wrote outside the row range: row " << r;
                continue;
              }
              const uint8_t* row = w.data() + r * rb;
              const ActBlock* a = xq.data() + t * nb;
              const float* x = xf.data() + t * n;
              const float ref = dot_row_reference(type, row, a, x, n);
              const float single = dot_row(type, row, a, x, n);
              ASSERT_EQ(numerics::float_to_bits(got), numerics::float_to_bits(ref))
                  << "n=" << n << " tokens=" << n_tokens << " row " << r << " token " << t
                  << " got " << got << " ref " << ref;
              ASSERT_EQ(numerics::float_to_bits(single), numerics::float_to_bits(ref));
            }
          }
        }
      }
    }
  }
}

// The reference itself follows the spec's order: the sum is sequential over blocks (checked
// against an explicit loop over block_partial_reference, which a pairwise or vectorized sum
// would not match on random data), and each Q4_K partial is the written formula.
// The batched path (n_tokens >= detail::kBatchedMinTokens, matmul_int8.cpp "lane = token")
// == scalar reference, bit for bit, where its tiling has edges: token counts that leave a
// partial group of 8 and group counts that are not a multiple of the register tile's (the
// one-group remainder kernel), 136 tokens = 17 groups (two token tiles of 16 groups, the last
// partial), row ranges that do not start at 0 or end on a multiple of the 4-row register tile,
// n = 8960, and Q4_0 / Q5_0 rows with a partial step of blocks.
// Every format the batched path takes (Q4_K, Q5_K, Q6_K, Q4_0, Q5_0) and one it does not (Q8_0,
// per-row kernel).
TEST(QuantMatmul, BatchedBitIdenticalToScalarReference) {
  struct Case {
    Type type;
    int64_t n;
  };
  const Case cases[] = {{Type::Q4_K, 1536},    {Type::Q4_K, 8960}, {Type::Q5_K, 1536},
                        {Type::Q6_K, 1536},    {Type::Q6_K, 8960}, {Type::Q4_0, 32 * 13},
                        {Type::Q5_0, 32 * 13}, {Type::Q4_0, 1536}, {Type::Q8_0, 1536}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(type_info(c.type).name) + " n=" + std::to_string(c.n));
    const int64_t rows = 13, nb = c.n / 32;
    const auto w = random_rows(c.type, rows, c.n);
    const size_t rb = row_bytes(type_info(c.type), c.n);
    for (int n_tokens : {4, 8, 17, 40, 136}) {
      const auto xq = random_activations(c.n, n_tokens, nullptr);
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {3, 12}}) {
        const int64_t stride = rows + 2;
        std::vector<float> out(static_cast<size_t>(stride * n_tokens), NAN);
        matmul_rows(c.type, w.data(), c.n, xq.data(), nullptr, n_tokens, out.data(), stride, r0,
                    r1);
        for (int t = 0; t < n_tokens; ++t) {
          for (int64_t r = 0; r < stride; ++r) {
            const float got = out[t * stride + r];
            if (r < r0 || r >= r1) {
              ASSERT_TRUE(std::isnan(got)) << "wrote outside the row range: row " << r;
              continue;
            }
            const float ref =
                dot_row_reference(c.type, w.data() + r * rb, xq.data() + t * nb, nullptr, c.n);
            ASSERT_EQ(numerics::float_to_bits(got), numerics::float_to_bits(ref))
                << "tokens=" << n_tokens << " row " << r << " token " << t << " got " << got
                << " ref " << ref;
          }
        }
      }
    }
  }
}

// The batched Q6_K kernel sums each 16-half in int16 with wraparound (up to 8 * 63 * 127 = 64008
// per lane) and makes it exact by subtracting 32 * the sum of the activations: weights at the
// ends of the range (every q = 63, every q = 0) against blocks of all +127 or all -127 reach
// both the wrap and the largest exact lane values (|sum of (q - 32) * a| = 32512), with the
// extreme scales -128 and 127. Random data almost never gets there.
TEST(QuantMatmul, BatchedQ6KExtremeValuesBitIdenticalToScalarReference) {
  const int64_t n = 1536, nb = n / 32, rows = 9;
  const int n_tokens = 24;
  const size_t rb = row_bytes(type_info(Type::Q6_K), n);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 gen(7);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t s = 0; s < n / 256; ++s) {
      auto* b = reinterpret_cast<BlockQ6_K*>(w.data() + r * rb) + s;
      const int mode = static_cast<int>((r + s) % 3);  // every q = 63, every q = 0, random
      auto fill = [&](uint8_t& v) {
        v = mode == 0 ? 0xFF : mode == 1 ? 0x00 : static_cast<uint8_t>(gen());
      };
      for (auto& v : b->ql) fill(v);
      for (auto& v : b->qh) fill(v);
      for (int i = 0; i < 16; ++i) b->scales[i] = static_cast<int8_t>((i + r) % 2 ? 127 : -128);
      b->d = float_to_fp16(0.01f * static_cast<float>(r + 1));
    }
  }
  std::vector<ActBlock> xq(static_cast<size_t>(nb) * n_tokens);
  for (int t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < nb; ++j) {
      ActBlock& a = xq[t * nb + j];
      const int mode = static_cast<int>((t + j) % 3);  // all +127, all -127, mixed
      a.sum = 0;
      for (int i = 0; i < 32; ++i) {
        a.q[i] = static_cast<int8_t>(mode == 0 ? 127 : mode == 1 ? -127 : (i % 3 ? 127 : -127));
        a.sum += a.q[i];
      }
      a.d = 0.5f + 0.01f * static_cast<float>(t);
    }
  }
  std::vector<float> out(static_cast<size_t>(rows) * n_tokens, NAN);
  matmul_rows(Type::Q6_K, w.data(), n, xq.data(), nullptr, n_tokens, out.data(), rows, 0, rows);
  for (int t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const float ref =
          dot_row_reference(Type::Q6_K, w.data() + r * rb, xq.data() + t * nb, nullptr, n);
      ASSERT_EQ(numerics::float_to_bits(out[t * rows + r]), numerics::float_to_bits(ref))
          << "row " << r << " token " << t;
    }
  }
}

// matmul_rows_packed (activations packed once, shared by threads): the same bits as the
// reference for every batched type and for the fallback types, with the pack filled in
// several group ranges and the rows computed in uneven pieces, as CpuBackend does.
TEST(QuantMatmul, PackedBitIdenticalToScalarReference) {
  const Type types[] = {Type::Q4_K, Type::Q6_K, Type::Q5_K, Type::Q4_0, Type::Q8_0};
  for (Type type : types) {
    for (int n_tokens : {3, 21, 136}) {
      SCOPED_TRACE(std::string(type_info(type).name) + " tokens=" + std::to_string(n_tokens));
      const int64_t n = 512, rows = 37, nb = n / 32;
      const auto w = random_rows(type, rows, n);
      const size_t rb = row_bytes(type_info(type), n);
      const auto xq = random_activations(n, n_tokens, nullptr);
      PackedActivations pack;
      pack.prepare(xq.data(), n, n_tokens);
      const int ng = pack.n_groups();
      pack.pack_groups(0, ng / 2);
      pack.pack_groups(ng / 2, ng);
      const int64_t stride = rows + 1;
      std::vector<float> out(static_cast<size_t>(stride * n_tokens), NAN);
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 5}, {5, 21}, {21, 37}}) {
        matmul_rows_packed(type, w.data(), pack, out.data(), stride, r0, r1);
      }
      for (int t = 0; t < n_tokens; ++t) {
        ASSERT_TRUE(std::isnan(out[t * stride + rows])) << "wrote past the rows";
        for (int64_t r = 0; r < rows; ++r) {
          const float ref =
              dot_row_reference(type, w.data() + r * rb, xq.data() + t * nb, nullptr, n);
          ASSERT_EQ(numerics::float_to_bits(out[t * stride + r]), numerics::float_to_bits(ref))
              << "row " << r << " token " << t;
        }
      }
    }
  }
  PackedActivations pack;
  const auto xq = random_activations(256, 8, nullptr);
  pack.prepare(xq.data(), 256, 8);
  std::vector<float> w(256 * 4), out(32);
  EXPECT_THROW(matmul_rows_packed(Type::F32, w.data(), pack, out.data(), 4, 0, 4), Error);
}

TEST(QuantReference, SequentialSumOfPartials) {
  for (Type type : kQuantTypes) {
    SCOPED_TRACE(type_info(type).name);
    const int64_t n = 4096;
    const auto w = random_rows(type, 1, n);
    const auto xq = random_activations(n, 1, nullptr);
    float sum = 0.0f;
    for (int64_t j = 0; j < n / 32; ++j) {
      sum = sum + block_partial_reference(type, w.data(), j, &xq[j], nullptr);
    }
    EXPECT_EQ(numerics::float_to_bits(sum),
              numerics::float_to_bits(dot_row_reference(type, w.data(), xq.data(), nullptr, n)));
  }
  // Q4_K sub-block 5 of a hand-built block.
  BlockQ4_K b{};
  b.d = float_to_fp16(0.0123f);
  b.dmin = float_to_fp16(0.0071f);
  for (auto& s : b.scales) s = static_cast<uint8_t>(rng()());
  for (auto& q : b.qs) q = static_cast<uint8_t>(rng()());
  ActBlock a;
  std::vector<float> x(32);
  for (auto& v : x) v = std::normal_distribution<float>(0, 1)(rng());
  numerics::quantize_act_block(x.data(), &a);
  uint8_t sc, m;
  get_scale_min_k4(5, b.scales, &sc, &m);
  int32_t isum = 0;
  for (int l = 0; l < 32; ++l) isum += (b.qs[64 + l] >> 4) * a.q[l];
  const float d = fp16_to_float(b.d), dmin = fp16_to_float(b.dmin);
  const float expect = a.d * ((d * static_cast<float>(sc)) * static_cast<float>(isum) -
                              (dmin * static_cast<float>(m)) * static_cast<float>(a.sum));
  EXPECT_EQ(numerics::float_to_bits(block_partial_reference(Type::Q4_K, &b, 5, &a, nullptr)),
            numerics::float_to_bits(expect));
}

TEST(QuantErrors, BadLengthsThrow) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> f(1024);
  EXPECT_THROW(dequantize_row(Type::Q4_K, buf.data(), f.data(), 100), Error);
  EXPECT_THROW(quantize_row(Type::Q8_0, f.data(), buf.data(), 33), Error);
  std::vector<ActBlock> a(8);
  EXPECT_THROW(matmul_rows(Type::Q4_K, buf.data(), 32, a.data(), nullptr, 1, f.data(), 1, 0, 1),
               Error);
  EXPECT_THROW(matmul_rows(Type::Q4_K, buf.data(), 256, nullptr, nullptr, 1, f.data(), 1, 0, 1),
               Error);
  EXPECT_THROW(matmul_rows(Type::F32, buf.data(), 30, nullptr, f.data(), 1, f.data(), 1, 0, 1),
               Error);
  f[3] = NAN;
  EXPECT_THROW(quantize_row(Type::Q4_K, f.data(), buf.data(), 256), Error);
}

}  // namespace
}  // namespace resident::quant
