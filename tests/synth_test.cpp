// Tests of `resident synth` (src/model/synth.cpp): per-tensor layout against the real Q4_K_M
// file's rule, vocabulary consistency, weight statistics, determinism, and the CLI's errors.
#include "model/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <unordered_map>

#include "model/model.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident {
namespace {

namespace fs = std::filesystem;
using quant::Type;
using synth::Preset;
using synth::QuantMix;

uint64_t fresh_seed() {
  static const uint64_t seed = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  return seed;
}

fs::path temp_path(const std::string& stem) {
  return fs::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + "-" +
                                      std::to_string(fresh_seed() % 100000) + ".gguf");
}

const synth::TensorPlan& find(const std::vector<synth::TensorPlan>& plan, const std::string& name) {
  for (const auto& t : plan)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

// The layers whose attn_v and ffn_down are Q6_K in the real Qwen2.5-Coder-1.5B Q4_K_M file
// (read with gguf.GGUFReader). They are use_more_bits(k, 28) for the k-th tensor in file order
// ("blk.0", "blk.1", "blk.10", ...), not for the layer number: with the layer number the set
// would be {0,1,2,5,8,11,14,17,20,23,24,25,26,27}.
const std::set<int> kRealQ6Layers = {0, 1, 5, 6, 7, 8, 9, 10, 13, 16, 19, 21, 24, 27};

TEST(Synth, Qwen15bQ4KMLayoutMatchesRealFileRule) {
  const auto plan =
      synth::plan_tensors(synth::preset_config(Preset::qwen25_1_5b), QuantMix::q4_k_m);
  EXPECT_EQ(plan.size(), 2u + 28u * 12u + 1u);
  EXPECT_EQ(find(plan, "output.weight").type, Type::Q6_K);
  EXPECT_EQ(find(plan, "token_embd.weight").type, Type::Q4_K);
  EXPECT_EQ(find(plan, "token_embd.weight").dims, (std::vector<uint64_t>{1536, 151936}));
  for (int i = 0; i < 28; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const Type more = kRealQ6Layers.count(i) ? Type::Q6_K : Type::Q4_K;
    EXPECT_EQ(find(plan, p + "attn_v.weight").type, more) << p;
    EXPECT_EQ(find(plan, p + "ffn_down.weight").type, more) << p;
    EXPECT_EQ(find(plan, p + "ffn_down.weight").dims, (std::vector<uint64_t>{8960, 1536}));
    EXPECT_EQ(find(plan, p + "attn_k.weight").dims, (std::vector<uint64_t>{1536, 256}));
    for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight",
                          "ffn_up.weight"})
      EXPECT_EQ(find(plan, p + n).type, Type::Q4_K) << p << n;
    for (const char* n :
         {"attn_norm.weight", "ffn_norm.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias"})
      EXPECT_EQ(find(plan, p + n).type, Type::F32) << p << n;
  }
}

// With the real file present, the plan must reproduce it tensor for tensor: order, name, type
// and dims (and therefore the tensor byte total that GWR-001 measures).
TEST(Synth, Qwen15bPlanEqualsRealFile) {
  const char* env = std::getenv("RESIDENT_MODEL");
  const std::string path = env ? env : "/root/.cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf";
  if (!fs::exists(path))
    GTEST_SKIP() << "real model not found at " << path << " (set RESIDENT_MODEL)";
  const gguf::File file = gguf::File::open(path);
  const auto plan =
      synth::plan_tensors(synth::preset_config(Preset::qwen25_1_5b), QuantMix::q4_k_m);
  ASSERT_EQ(file.tensors().size(), plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(file.tensors()[i].name, plan[i].name) << i;
    EXPECT_EQ(file.tensors()[i].ggml_type, static_cast<uint32_t>(plan[i].type)) << plan[i].name;
    EXPECT_EQ(file.tensors()[i].dims, plan[i].dims) << plan[i].name;
  }
}

TEST(Synth, Qwen05bFallsBackWhereRowsAreNotSuperBlocks) {
  const auto plan =
      synth::plan_tensors(synth::preset_config(Preset::qwen25_0_5b), QuantMix::q4_k_m);
  for (const auto& t : plan) EXPECT_NE(t.name, "output.weight");  // tied
  // Tied head: Q6_K, but 896-wide rows cannot hold 256-element super-blocks -> Q8_0.
  EXPECT_EQ(find(plan, "token_embd.weight").type, Type::Q8_0);
  EXPECT_EQ(find(plan, "blk.0.attn_q.weight").type, Type::Q5_0);
  EXPECT_EQ(find(plan, "blk.0.attn_output.weight").type, Type::Q5_0);  // row = 14 * 64 = 896
  EXPECT_EQ(find(plan, "blk.0.ffn_up.weight").type, Type::Q5_0);
  EXPECT_EQ(find(plan, "blk.0.attn_v.weight").type, Type::Q8_0);    // k = 0: "more bits"
  EXPECT_EQ(find(plan, "blk.0.ffn_down.weight").type, Type::Q6_K);  // rows of 4864 = 19 * 256
  EXPECT_EQ(find(plan, "blk.2.ffn_down.weight").type, Type::Q4_K);  // file position 12
}

TEST(Synth, OtherMixesAreUniform) {
  for (auto [mix, want] :
       {std::pair{QuantMix::q8_0, Type::Q8_0}, std::pair{QuantMix::f16, Type::F16}}) {
    for (const auto& t : synth::plan_tensors(synth::preset_config(Preset::tiny), mix)) {
      EXPECT_EQ(t.type, t.dims.size() == 2 ? want : Type::F32) << t.name;
    }
  }
}

TEST(Synth, VocabularyIsConsistent) {
  for (int size : {512, 151936}) {
    const synth::Vocab v = synth::make_vocab(size);
    ASSERT_EQ(v.tokens.size(), static_cast<size_t>(size));
    ASSERT_EQ(v.token_types.size(), static_cast<size_t>(size));
    ASSERT_EQ(v.merges.size(), static_cast<size_t>(size - 259));
    std::unordered_map<std::string, int> id;
    for (int i = 0; i < size; ++i) {
      EXPECT_TRUE(id.emplace(v.tokens[static_cast<size_t>(i)], i).second)
          << "duplicate token " << i;
    }
    EXPECT_EQ(v.tokens[0], "!");
    EXPECT_EQ(v.tokens[static_cast<size_t>(v.bos_id)], "<|endoftext|>");
    EXPECT_EQ(v.tokens[static_cast<size_t>(v.eos_id)], "<|im_end|>");
    EXPECT_EQ(v.tokens[static_cast<size_t>(size - 2)], "<|im_start|>");
    for (int i = 0; i < size; ++i)
      EXPECT_EQ(v.token_types[static_cast<size_t>(i)], i >= size - 3 ? 3 : 1);
    // Merge i joins two earlier tokens into token 256 + i.
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t sp = m.find(' ');
      ASSERT_NE(sp, std::string::npos);
      ASSERT_EQ(m.find(' ', sp + 1), std::string::npos);
      const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
      const int result = 256 + static_cast<int>(i);
      ASSERT_TRUE(id.count(a) && id.count(b)) << m;
      EXPECT_LT(id[a], result) << m;
      EXPECT_LT(id[b], result) << m;
      ASSERT_EQ(v.tokens[static_cast<size_t>(result)], a + b) << m;
    }
  }
}

std::vector<float> dequantize_tensor(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.rows * t.row_length));
  const size_t rb = quant::row_bytes(quant::type_info(t.type), t.row_length);
  for (int64_t r = 0; r < t.rows; ++r)
    quant::dequantize_row(t.type, t.data + rb * static_cast<size_t>(r),
                          out.data() + r * t.row_length, t.row_length);
  return out;
}

TEST(Synth, TinyLoadsWithPresetShapesAndSaneWeights) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (QuantMix mix : {QuantMix::q4_k_m, QuantMix::q8_0, QuantMix::f16}) {
    const fs::path path = temp_path("synth-tiny");
    synth::write_synthetic({Preset::tiny, mix, seed, 2}, path.string());
    const Model m = Model::load(path.string());
    fs::remove(path);
    const ModelConfig want = synth::preset_config(Preset::tiny);
    EXPECT_EQ(m.config.arch, Arch::qwen2);
    EXPECT_EQ(m.config.n_layers, want.n_layers);
    EXPECT_EQ(m.config.d_model, want.d_model);
    EXPECT_EQ(m.config.d_ff, want.d_ff);
    EXPECT_EQ(m.config.n_heads, want.n_heads);
    EXPECT_EQ(m.config.n_kv_heads, want.n_kv_heads);
    EXPECT_EQ(m.config.head_dim, want.head_dim);
    EXPECT_EQ(m.config.vocab_size, want.vocab_size);
    EXPECT_EQ(m.config.ctx_train, want.ctx_train);
    EXPECT_FLOAT_EQ(m.config.rope_theta, 1e6f);
    EXPECT_FALSE(m.config.tied_embeddings);
    EXPECT_TRUE(m.config.has_qkv_bias);
    EXPECT_EQ(m.file.get_string("general.name"), "synthetic tiny");
    EXPECT_EQ(m.file.get_uint("tokenizer.ggml.eos_token_id"), 511u);
    EXPECT_NE(m.file.get_string("tokenizer.chat_template").find("<|im_start|>"), std::string::npos);

    // Statistics of the dequantized weights. Up: 131072 samples of std s = 1/16; the sample
    // std has relative standard error ~ 1/sqrt(2N) = 0.2%, the quantization adds at most
    // ~ (step/sqrt(12))^2 of variance (Q4_K step ~ 7s/15: +2%), so 5% is far outside noise
    // yet catches a wrong scale (e.g. 1/n instead of 1/sqrt(n), or std 1).
    const auto up = dequantize_tensor(m.weights.layers[1].w_up);
    double sum = 0, sq = 0;
    for (float x : up) sum += x, sq += double(x) * x;
    const double mean = sum / up.size(), sd = std::sqrt(sq / up.size() - mean * mean);
    EXPECT_NEAR(sd, 1.0 / 16.0, 0.05 / 16.0) << synth::quant_name(mix);
    EXPECT_NEAR(mean, 0.0, 5.0 * (1.0 / 16.0) / std::sqrt(double(up.size())) + 2e-3)
        << synth::quant_name(mix);
    const auto norm = dequantize_tensor(m.weights.layers[0].attn_norm);
    double nsum = 0;
    for (float x : norm) nsum += x;
    EXPECT_NEAR(nsum / norm.size(), 1.0, 0.02);  // 256 samples of std 0.05: 5 sigma = 0.016
    // Rows differ (each row has its own stream).
    const auto& wq = m.weights.layers[0].wq;
    const size_t rb = quant::row_bytes(quant::type_info(wq.type), wq.row_length);
    EXPECT_NE(std::memcmp(wq.data, wq.data + rb, rb), 0);
  }
}

TEST(Synth, DeterministicInSeedAndIndependentOfThreads) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const fs::path a = temp_path("synth-a"), b = temp_path("synth-b"), c = temp_path("synth-c");
  synth::write_synthetic({Preset::tiny, QuantMix::q4_k_m, seed, 1}, a.string());
  synth::write_synthetic({Preset::tiny, QuantMix::q4_k_m, seed, 3}, b.string());
  synth::write_synthetic({Preset::tiny, QuantMix::q4_k_m, seed + 1, 2}, c.string());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string sa = slurp(a), sb = slurp(b), sc = slurp(c);
  fs::remove(a), fs::remove(b), fs::remove(c);
  ASSERT_FALSE(sa.empty());
  EXPECT_EQ(sa, sb);
  ASSERT_EQ(sa.size(), sc.size());  // same layout
  EXPECT_NE(sa, sc);                // other weights
}

TEST(Synth, CliUnwritableOutputIsOneLineError) {
  const fs::path err = temp_path("synth-err");
  const std::string cmd = std::string(RESIDENT_BINARY) +
                          " synth --preset tiny --quant q8_0 -o /nonexistent-dir/x.gguf 2> " +
                          err.string();
  const int rc = std::system(cmd.c_str());
  std::ifstream in(err);
  const std::string msg(std::istreambuf_iterator<char>(in), {});
  fs::remove(err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(msg.find("/nonexistent-dir/x.gguf"), std::string::npos) << msg;
  EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 1) << msg;
}

TEST(Synth, CliRejectsUnknownPreset) {
  const std::string cmd =
      std::string(RESIDENT_BINARY) + " synth --preset gpt5 -o /tmp/never.gguf 2>/dev/null";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_FALSE(fs::exists("/tmp/never.gguf"));
}

}  // namespace
}  // namespace resident
