// CPU twins of the CUDA ops (src/cpu/ops.h) against straightforward re-statements of
// docs/numerics.md. Each reference below keeps every intermediate in a volatile float, so no
// compiler can fuse or reorder it: equality of bits means the op follows the spec exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "numerics/canonical.h"

namespace resident::cpu {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::vector<float> random_vector(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(CpuOps, RopeMatchesSpecBitForBit) {
  std::mt19937 rng(std::random_device{}());
  const int head_dim = 128, n_heads = 3, n_ctx = 64;
  const std::vector<float> table = rope_table(n_ctx, head_dim, 1e6f, {});
  for (bool neox : {true, false}) {
    for (int pos : {0, 1, 17, 63}) {
      std::vector<float> x = random_vector(rng, static_cast<size_t>(n_heads) * head_dim, 3.0f);
      std::vector<float> expect = x;
      const int half = head_dim / 2;
      for (int h = 0; h < n_heads; ++h) {
        for (int i = 0; i < half; ++i) {
          const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
          const float c = table[(static_cast<size_t>(pos) * half + i) * 2];
          const float s = table[(static_cast<size_t>(pos) * half + i) * 2 + 1];
          volatile float a = x[h * head_dim + i0] * c;
          volatile float b = x[h * head_dim + i1] * s;
          volatile float e = x[h * head_dim + i0] * s;
          volatile float f = x[h * head_dim + i1] * c;
          expect[h * head_dim + i0] = a - b;
          expect[h * head_dim + i1] = e + f;
        }
      }
      rope_apply(x.data(), n_heads, head_dim, neox, table.data(), pos);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(bits(x[i]), bits(expect[i])) << "neox=" << neox << " pos=" << pos << " i=" << i;
    }
  }
}

TEST(CpuOps, RopeTableIsCosSinOfTheAngle) {
  const std::vector<float> table = rope_table(8, 64, 10000.0f, {});
  for (int pos = 0; pos < 8; ++pos)
    for (int i = 0; i < 32; ++i) {
      const double angle = pos * std::pow(10000.0, -2.0 * i / 64);
      EXPECT_EQ(table[(pos * 32 + i) * 2], static_cast<float>(std::cos(angle)));
      EXPECT_EQ(table[(pos * 32 + i) * 2 + 1], static_cast<float>(std::sin(angle)));
    }
}

TEST(CpuOps, Sum256FollowsTheCanonicalTree) {
  std::mt19937 rng(std::random_device{}());
  for (size_t n : {1u, 255u, 256u, 257u, 1536u, 8960u}) {
    const std::vector<float> v = random_vector(rng, n);
    volatile float partial[256];
    for (int k = 0; k < 256; ++k) partial[k] = 0.0f;
    for (size_t i = 0; i < n; ++i) partial[i % 256] = partial[i % 256] + v[i];
    for (int s = 128; s >= 1; s /= 2)
      for (int k = 0; k < s; ++k) partial[k] = partial[k] + partial[k + s];
    EXPECT_EQ(bits(sum256(v)), bits(partial[0])) << "n=" << n;
    // And it is a sum: within n * eps * sum|v| of the float64 one.
    double exact = 0.0, abs_sum = 0.0;
    for (float x : v) exact += x, abs_sum += std::fabs(x);
    EXPECT_NEAR(sum256(v), exact, n * 1.2e-7 * abs_sum);
  }
}

TEST(CpuOps, ExpCanonicalIsAccurate) {
  // exp_canonical replaces libm's expf (which differs between CPU and GPU): within 4 ulp of the
  // float64 exp across the range softmax and SiLU use.
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> dist(-87.0f, 88.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = dist(rng);
    const double ref = std::exp(static_cast<double>(x));
    const float got = numerics::exp_canonical(x);
    EXPECT_LE(std::fabs(got - ref), 4.0 * std::ldexp(1.0, std::ilogb(ref) - 23)) << "x=" << x;
  }
  EXPECT_EQ(numerics::exp_canonical(0.0f), 1.0f);
  EXPECT_EQ(numerics::exp_canonical(-200.0f), 0.0f);
  EXPECT_TRUE(std::isinf(numerics::exp_canonical(100.0f)));
  EXPECT_TRUE(std::isnan(numerics::exp_canonical(NAN)));
}

// The 8-lane exp_canonical (attention softmax) and swiglu equal the scalar spec bit for bit on
// a sweep over the whole float range (every 997th bit pattern: both signs, subnormals, NaN,
// infinities), the special-case edges (x > 88.7 -> inf, x < -103 -> 0, 2^n with n > 127 or
// n < -126), and odd lengths (scalar tail).
TEST(CpuOps, VectorExpAndSwigluEqualScalarSpecBitForBit) {
  std::vector<float> x;
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 997)
    x.push_back(numerics::bits_to_float(static_cast<uint32_t>(u)));
  for (float v = -110.0f; v <= 100.0f; v += 0.0137f) x.push_back(v);
  for (float edge : {88.7f, -103.0f, -87.33654f, -87.33655f, 88.37626f, 88.72284f, -88.0f, -102.9f,
                     0.0f, -0.0f, INFINITY, -INFINITY, NAN}) {
    for (int d = -40; d <= 40; ++d) {
      x.push_back(numerics::bits_to_float(
          static_cast<uint32_t>(static_cast<int64_t>(numerics::float_to_bits(edge)) + d)));
    }
  }
  x.push_back(1.0f);  // odd length: the last elements take the scalar tail
  const size_t n = x.size();
  std::vector<float> got(n), want(n);
  exp_canonical_n(x.data(), got.data(), static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(bits(got[i]), bits(numerics::exp_canonical(x[i])))
        << "x=" << x[i] << " bits " << std::hex << bits(x[i]);
  }
  std::mt19937 rng(7);
  const std::vector<float> u = random_vector(rng, n, 3.0f);
  swiglu(x.data(), u.data(), got.data(), static_cast<int64_t>(n));
  swiglu_reference(x.data(), u.data(), want.data(), static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(bits(got[i]), bits(want[i])) << "g=" << x[i] << " u=" << u[i];
  }
  std::vector<float> in_place(x);  // h aliasing g, as the backend calls it
  swiglu(in_place.data(), u.data(), in_place.data(), static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(bits(in_place[i]), bits(want[i]));
}

TEST(CpuOps, AttentionHeadEqualsSoftmaxWeightedValues) {
  // Against a float64 softmax attention over the same fp16 K/V: the canonical orders change only
  // rounding, bounded by a few float32 ulps of the result scale.
  std::mt19937 rng(std::random_device{}());
  const int head_dim = 128, n_pos = 300;
  const std::vector<float> q = random_vector(rng, head_dim);
  std::vector<uint16_t> k(static_cast<size_t>(n_pos) * head_dim), v(k.size());
  const std::vector<float> kf = random_vector(rng, k.size()), vf = random_vector(rng, v.size());
  for (size_t i = 0; i < k.size(); ++i) k[i] = float_to_half(kf[i]), v[i] = float_to_half(vf[i]);
  std::vector<float> scratch(n_pos), out(head_dim, NAN);
  const float scale = 1.0f / std::sqrt(128.0f);
  attention_head(q.data(), k.data(), v.data(), n_pos, head_dim, head_dim, scale, scratch.data(),
                 out.data());
  std::vector<double> s(n_pos);
  double m = -1e300, den = 0.0;
  for (int t = 0; t < n_pos; ++t) {
    double dot = 0.0;
    for (int d = 0; d < head_dim; ++d) dot += double(q[d]) * half_to_float(k[t * head_dim + d]);
    s[t] = dot * scale;
    m = std::max(m, s[t]);
  }
  for (int t = 0; t < n_pos; ++t) s[t] = std::exp(s[t] - m), den += s[t];
  for (int d = 0; d < head_dim; ++d) {
    double ref = 0.0;
    for (int t = 0; t < n_pos; ++t) ref += s[t] * half_to_float(v[t * head_dim + d]);
    ref /= den;
    EXPECT_NEAR(out[d], ref, 1e-4) << "d=" << d;  // |v| <= ~4, scores O(3): ~1e-5 expected
  }
}

TEST(CpuOps, VectorAttentionEqualsScalarSpecBitForBit) {
  std::mt19937 rng(std::random_device{}());
  for (int head_dim : {64, 128, 256}) {
    for (int n_pos : {1, 7, 31, 32, 33, 255, 256, 257, 600}) {
      const int stride = head_dim * 3;  // K/V rows of several heads, as in the cache
      const std::vector<float> q = random_vector(rng, head_dim, 2.0f);
      std::vector<uint16_t> k(static_cast<size_t>(n_pos) * stride), v(k.size());
      const std::vector<float> kf = random_vector(rng, k.size()), vf = random_vector(rng, v.size());
      for (size_t i = 0; i < k.size(); ++i)
        k[i] = float_to_half(kf[i]), v[i] = float_to_half(vf[i]);
      for (int t = 0; t < n_pos; ++t)
        ASSERT_EQ(bits(dot_head(q.data(), &k[t * stride], head_dim)),
                  bits(dot_head_reference(q.data(), &k[t * stride], head_dim)));
      std::vector<float> scratch(n_pos), got(head_dim, NAN), want(head_dim, NAN);
      attention_head(q.data(), k.data(), v.data(), n_pos, head_dim, stride, 0.09f, scratch.data(),
                     got.data());
      attention_head_reference(q.data(), k.data(), v.data(), n_pos, head_dim, stride, 0.09f,
                               scratch.data(), want.data());
      for (int d = 0; d < head_dim; ++d)
        ASSERT_EQ(bits(got[d]), bits(want[d]))
            << "head_dim " << head_dim << " n_pos " << n_pos << " d " << d;
    }
  }
}

TEST(CpuOps, AttentionScoresOfEightPositionsEqualScalarSpecBitForBit) {
  // attention_head computes the scores of 8 positions at once (the dot tree's last steps across
  // positions) and the rest one by one: every position of the 8-wide blocks must land in its own
  // slot with the scalar's bits, also for all-zero scores (signed zeros), infinite and NaN ones.
  std::mt19937 rng(std::random_device{}());
  const int head_dim = 128, stride = 256;
  for (int n_pos = 8; n_pos <= 25; ++n_pos) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> q = random_vector(rng, head_dim, 2.0f);
      std::vector<float> kf = random_vector(rng, static_cast<size_t>(n_pos) * stride);
      // Position-dependent scales, so a position landing in the wrong slot changes the output.
      for (int t = 0; t < n_pos; ++t)
        for (int d = 0; d < head_dim; ++d) kf[t * stride + d] *= 0.25f * (1 + t % 9);
      if (kind == 1) std::fill(q.begin(), q.end(), 0.0f);  // every score +-0
      if (kind == 2) kf[(n_pos / 2) * stride + 3] = INFINITY;
      if (kind == 3) kf[(n_pos - 1) * stride + 5] = NAN;
      std::vector<uint16_t> k(kf.size()), v(kf.size());
      const std::vector<float> vf = random_vector(rng, v.size());
      for (size_t i = 0; i < k.size(); ++i)
        k[i] = float_to_half(kf[i]), v[i] = float_to_half(vf[i]);
      std::vector<float> s_got(n_pos), s_want(n_pos), got(head_dim), want(head_dim);
      attention_head(q.data(), k.data(), v.data(), n_pos, head_dim, stride, 0.09f, s_got.data(),
                     got.data());
      attention_head_reference(q.data(), k.data(), v.data(), n_pos, head_dim, stride, 0.09f,
                               s_want.data(), want.data());
      for (int t = 0; t < n_pos; ++t)
        ASSERT_EQ(bits(s_got[t]), bits(s_want[t])) << "n_pos " << n_pos << " kind " << kind;
      for (int d = 0; d < head_dim; ++d)
        ASSERT_EQ(bits(got[d]), bits(want[d])) << "n_pos " << n_pos << " kind " << kind;
    }
  }
}

TEST(CpuOps, HalfConversionRoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  // 1 + 2^-11 is exactly between 1 and the next half (1 + 2^-10): ties go to even (1.0).
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(half_to_float(0x3C01), 1.0f + std::ldexp(1.0f, -10));
}

}  // namespace
}  // namespace resident::cpu
