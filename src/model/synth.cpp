// Random-weight GGUF files with real shapes and quant mixes (see synth.h).
#include "model/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "quant/quant.h"
#include "tokenizer/byte_unicode.h"
#include "util/error.h"

namespace resident::synth {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(std::string_view s) {  // FNV-1a, then mixed
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return mix64(h);
}

// splitmix64 as a stream: one counter add and one mix per 64 random bits. Each row gets its
// own stream (seeded from the tensor and row index), so results do not depend on threading.
struct RowRng {
  uint64_t state;
  uint64_t next() { return mix64(state += kGolden); }
};

// Irwin-Hall(4) from four 16-bit uniforms of one draw: mean 0, variance 1, support +-3.46.
// Bell-shaped enough for weights, and the bounded tails keep quantization scales tame.
void fill_normal(RowRng& rng, float* out, int64_t n, float mean, float std) {
  constexpr float kCenter = 2.0f * 65535.0f;
  const float scale = std / (65536.0f * 0.57735026919f);  // sqrt(4/12) * 65536 = std of the sum
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = rng.next();
    const uint32_t s = static_cast<uint32_t>(r & 0xFFFF) +
                       static_cast<uint32_t>((r >> 16) & 0xFFFF) +
                       static_cast<uint32_t>((r >> 32) & 0xFFFF) + static_cast<uint32_t>(r >> 48);
    out[i] = mean + (static_cast<float>(s) - kCenter) * scale;
  }
}

// The 256 byte symbols in GPT-2's bytes_to_unicode order (printable bytes first, then the
// remapped ones), as in real byte-level vocabularies: id 0 is "!".
std::vector<std::string> byte_symbols() {
  std::vector<std::string> out;
  std::vector<bool> used(256, false);
  auto add_range = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) {
      out.push_back(tokenizer::byte_to_unicode(static_cast<uint8_t>(b)));
      used[b] = true;
    }
  };
  add_range(33, 126);
  add_range(161, 172);
  add_range(174, 255);
  for (int b = 0; b < 256; ++b)
    if (!used[b]) out.push_back(tokenizer::byte_to_unicode(static_cast<uint8_t>(b)));
  return out;
}

quant::Type kquant_fallback(quant::Type t, uint64_t row_length) {
  if (row_length % 256 == 0) return t;
  if (t == quant::Type::Q4_K) return quant::Type::Q5_0;
  if (t == quant::Type::Q6_K) return quant::Type::Q8_0;
  return t;
}

uint32_t file_type(QuantMix q) {  // llama_ftype
  switch (q) {
    case QuantMix::q4_k_m:
      return 15;
    case QuantMix::q8_0:
      return 7;
    case QuantMix::f16:
      return 1;
  }
  return 0;
}

}  // namespace

std::optional<Preset> parse_preset(std::string_view name) {
  if (name == "qwen2.5-1.5b") return Preset::qwen25_1_5b;
  if (name == "qwen2.5-0.5b") return Preset::qwen25_0_5b;
  if (name == "tiny") return Preset::tiny;
  if (name == "tiny-llama") return Preset::tiny_llama;
  return std::nullopt;
}

std::optional<QuantMix> parse_quant(std::string_view name) {
  if (name == "q4_k_m") return QuantMix::q4_k_m;
  if (name == "q8_0") return QuantMix::q8_0;
  if (name == "f16") return QuantMix::f16;
  return std::nullopt;
}

std::string_view preset_name(Preset preset) {
  switch (preset) {
    case Preset::qwen25_1_5b:
      return "qwen2.5-1.5b";
    case Preset::qwen25_0_5b:
      return "qwen2.5-0.5b";
    case Preset::tiny:
      return "tiny";
    case Preset::tiny_llama:
      return "tiny-llama";
  }
  return "?";
}

std::string_view quant_name(QuantMix quant) {
  switch (quant) {
    case QuantMix::q4_k_m:
      return "q4_k_m";
    case QuantMix::q8_0:
      return "q8_0";
    case QuantMix::f16:
      return "f16";
  }
  return "?";
}

ModelConfig preset_config(Preset preset) {
  ModelConfig c;
  c.arch = Arch::qwen2;
  c.arch_name = "qwen2";
  c.rope_style = RopeStyle::neox;
  c.rope_theta = 1e6f;
  c.rms_eps = 1e-6f;
  c.has_qkv_bias = true;
  switch (preset) {
    case Preset::qwen25_1_5b:
      c.n_layers = 28, c.d_model = 1536, c.d_ff = 8960, c.n_heads = 12, c.n_kv_heads = 2;
      c.head_dim = 128, c.vocab_size = 151936, c.ctx_train = 32768, c.tied_embeddings = false;
      break;
    case Preset::qwen25_0_5b:
      c.n_layers = 24, c.d_model = 896, c.d_ff = 4864, c.n_heads = 14, c.n_kv_heads = 2;
      c.head_dim = 64, c.vocab_size = 151936, c.ctx_train = 32768, c.tied_embeddings = true;
      break;
    case Preset::tiny:
      c.n_layers = 2, c.d_model = 256, c.d_ff = 512, c.n_heads = 4, c.n_kv_heads = 2;
      c.head_dim = 64, c.vocab_size = 512, c.ctx_train = 2048, c.tied_embeddings = false;
      break;
    case Preset::tiny_llama:
      c.n_layers = 2, c.d_model = 256, c.d_ff = 512, c.n_heads = 4, c.n_kv_heads = 2;
      c.head_dim = 64, c.vocab_size = 512, c.ctx_train = 2048, c.tied_embeddings = false;
      c.arch = Arch::llama, c.arch_name = "llama", c.rope_style = RopeStyle::interleaved;
      c.rope_theta = 500000.0f, c.rms_eps = 1e-5f, c.has_qkv_bias = false;
      break;
  }
  return c;
}

bool use_more_bits(int k, int n) {
  return k < n / 8 || k >= 7 * n / 8 || (k - n / 8) % 3 == 2;
}

std::vector<TensorPlan> plan_tensors(const ModelConfig& c, QuantMix quant) {
  using quant::Type;
  using Kind = TensorPlan::Kind;
  const auto d = static_cast<uint64_t>(c.d_model), ff = static_cast<uint64_t>(c.d_ff);
  const auto qd = static_cast<uint64_t>(c.q_dim()), kvd = static_cast<uint64_t>(c.kv_dim());
  const auto vocab = static_cast<uint64_t>(c.vocab_size);

  // Type of a 2-D weight; `q4km` is its Q4_K_M type before the k-quant row-length fallback.
  auto matrix_type = [&](Type q4km, uint64_t row_length) {
    switch (quant) {
      case QuantMix::q4_k_m:
        return kquant_fallback(q4km, row_length);
      case QuantMix::q8_0:
        return Type::Q8_0;
      case QuantMix::f16:
        return Type::F16;
    }
    return Type::F16;
  };

  std::vector<TensorPlan> plan;
  auto matrix = [&](std::string name, Type q4km, uint64_t row_length, uint64_t rows) {
    plan.push_back(
        {std::move(name), matrix_type(q4km, row_length), {row_length, rows}, Kind::matrix});
  };
  if (!c.tied_embeddings) matrix("output.weight", Type::Q6_K, d, vocab);
  matrix("token_embd.weight", c.tied_embeddings ? Type::Q6_K : Type::Q4_K, d, vocab);

  std::vector<int> order(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(),
            [](int a, int b) { return std::to_string(a) < std::to_string(b); });
  int k_down = 0, k_v = 0;
  for (int layer : order) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    plan.push_back({p + "attn_norm.weight", Type::F32, {d}, Kind::norm});
    matrix(p + "ffn_down.weight", use_more_bits(k_down++, c.n_layers) ? Type::Q6_K : Type::Q4_K, ff,
           d);
    matrix(p + "ffn_gate.weight", Type::Q4_K, d, ff);
    matrix(p + "ffn_up.weight", Type::Q4_K, d, ff);
    plan.push_back({p + "ffn_norm.weight", Type::F32, {d}, Kind::norm});
    if (c.has_qkv_bias) plan.push_back({p + "attn_k.bias", Type::F32, {kvd}, Kind::bias});
    matrix(p + "attn_k.weight", Type::Q4_K, d, kvd);
    matrix(p + "attn_output.weight", Type::Q4_K, qd, d);
    if (c.has_qkv_bias) plan.push_back({p + "attn_q.bias", Type::F32, {qd}, Kind::bias});
    matrix(p + "attn_q.weight", Type::Q4_K, d, qd);
    if (c.has_qkv_bias) plan.push_back({p + "attn_v.bias", Type::F32, {kvd}, Kind::bias});
    matrix(p + "attn_v.weight", use_more_bits(k_v++, c.n_layers) ? Type::Q6_K : Type::Q4_K, d, kvd);
  }
  plan.push_back({"output_norm.weight", Type::F32, {d}, Kind::norm});
  return plan;
}

Vocab make_vocab(int vocab_size) {
  const std::vector<std::string> specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  const int n_merges = vocab_size - 256 - static_cast<int>(specials.size());
  if (n_merges < 0) throw Error("synth: vocabulary size " + std::to_string(vocab_size) + " < 259");

  Vocab v;
  v.tokens = byte_symbols();
  v.tokens.reserve(static_cast<size_t>(vocab_size));
  v.merges.reserve(static_cast<size_t>(n_merges));

  // Letters roughly by English frequency; a piece may start with 'Ġ' (a leading space), as
  // byte-level pre-tokenizers produce. Level 1 joins a start symbol and a letter; level L+1
  // joins a level-L piece and a letter. Within a level, pairs go in order of rank sum (a cheap
  // stand-in for "frequent pairs first"). All results are distinct (distinct prefix + letter).
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ";
  std::vector<std::string> level = {tokenizer::byte_to_unicode(' ')};
  for (char ch : letters) level.emplace_back(1, ch);
  const int n_letters = static_cast<int>(letters.size());
  while (static_cast<int>(v.merges.size()) < n_merges) {
    std::vector<std::string> next;
    const int n_prefix = static_cast<int>(level.size());
    for (int s = 0;
         s <= n_prefix - 1 + n_letters - 1 && static_cast<int>(v.merges.size()) < n_merges; ++s) {
      for (int a = std::max(0, s - (n_letters - 1)); a <= std::min(s, n_prefix - 1); ++a) {
        if (static_cast<int>(v.merges.size()) >= n_merges) break;
        const std::string b(1, letters[static_cast<size_t>(s - a)]);
        v.merges.push_back(level[static_cast<size_t>(a)] + " " + b);
        v.tokens.push_back(level[static_cast<size_t>(a)] + b);
        next.push_back(v.tokens.back());
      }
    }
    level = std::move(next);
  }
  v.token_types.assign(v.tokens.size(), 1);
  for (const auto& s : specials) {
    v.tokens.push_back(s);
    v.token_types.push_back(3);
  }
  v.bos_id = vocab_size - 3;
  v.eos_id = vocab_size - 1;
  return v;
}

gguf::Writer build(const SynthOptions& options) {
  const ModelConfig c = preset_config(options.preset);
  const std::vector<TensorPlan> plan = plan_tensors(c, options.quant);

  gguf::Writer w;
  const std::string arch = c.arch_name;
  w.add_string("general.architecture", arch);
  w.add_string("general.type", "model");
  w.add_string("general.name", "synthetic " + std::string(preset_name(options.preset)));
  w.add_uint32("general.alignment", 32);
  w.add_uint32(arch + ".block_count", static_cast<uint32_t>(c.n_layers));
  w.add_uint32(arch + ".context_length", static_cast<uint32_t>(c.ctx_train));
  w.add_uint32(arch + ".embedding_length", static_cast<uint32_t>(c.d_model));
  w.add_uint32(arch + ".feed_forward_length", static_cast<uint32_t>(c.d_ff));
  w.add_uint32(arch + ".attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.add_uint32(arch + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.add_float32(arch + ".rope.freq_base", c.rope_theta);
  w.add_float32(arch + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.add_uint32("general.file_type", file_type(options.quant));

  Vocab vocab = make_vocab(c.vocab_size);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", c.arch == Arch::llama ? "llama-bpe" : "qwen2");
  w.add_string_array("tokenizer.ggml.tokens", std::move(vocab.tokens));
  w.add_int32_array("tokenizer.ggml.token_type", std::move(vocab.token_types));
  w.add_string_array("tokenizer.ggml.merges", std::move(vocab.merges));
  w.add_uint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos_id));
  w.add_uint32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(vocab.bos_id));
  w.add_uint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos_id));
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string("tokenizer.chat_template",
               "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
               "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
  w.add_uint32("general.quantization_version", 2);

  // Storage for every tensor, then rows filled in parallel. Work items are row ranges of
  // ~64K elements, so the 151936-row embedding spreads over all threads.
  struct Item {
    size_t tensor;
    int64_t row_begin, row_end;
  };
  std::vector<std::vector<uint8_t>> data(plan.size());
  std::vector<Item> items;
  for (size_t t = 0; t < plan.size(); ++t) {
    const TensorPlan& p = plan[t];
    const int64_t n = static_cast<int64_t>(p.dims[0]);
    const int64_t rows = p.dims.size() > 1 ? static_cast<int64_t>(p.dims[1]) : 1;
    data[t].resize(quant::row_bytes(quant::type_info(p.type), n) * static_cast<size_t>(rows));
    const int64_t step = std::max<int64_t>(1, (int64_t{1} << 16) / n);
    for (int64_t r = 0; r < rows; r += step) items.push_back({t, r, std::min(rows, r + step)});
  }

  const uint64_t seed = mix64(options.seed ^ 0x5EED5EED5EED5EEDull);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string failure;
  auto worker = [&] {
    std::vector<float> row;
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= items.size() || failed.load()) return;
      const Item& item = items[i];
      const TensorPlan& p = plan[item.tensor];
      const int64_t n = static_cast<int64_t>(p.dims[0]);
      const size_t rb = quant::row_bytes(quant::type_info(p.type), n);
      row.resize(static_cast<size_t>(n));
      // Weights: std 1/sqrt(row length) keeps every matmul output O(1) given an O(1) input
      // (and RMSNorm makes the inputs O(1)), so activations and logits neither vanish nor
      // explode through the layers. Norm gains ~1, biases small.
      float mean = 0.0f, std = 0.0f;
      switch (p.kind) {
        case TensorPlan::Kind::matrix:
          std = 1.0f / std::sqrt(static_cast<float>(n));
          break;
        case TensorPlan::Kind::norm:
          mean = 1.0f, std = 0.05f;
          break;
        case TensorPlan::Kind::bias:
          std = 0.05f;
          break;
      }
      const uint64_t tensor_seed = mix64(seed ^ hash_name(p.name));
      try {
        for (int64_t r = item.row_begin; r < item.row_end; ++r) {
          RowRng rng{mix64(tensor_seed + static_cast<uint64_t>(r) * kGolden)};
          fill_normal(rng, row.data(), n, mean, std);
          quant::quantize_row(p.type, row.data(),
                              data[item.tensor].data() + rb * static_cast<size_t>(r), n);
        }
      } catch (const std::exception& e) {
        if (!failed.exchange(true)) failure = e.what();
        return;
      }
    }
  };
  int n_threads = options.n_threads > 0
                      ? options.n_threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(n_threads), items.size()));
  std::vector<std::thread> threads;
  for (int i = 1; i < n_threads; ++i) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (failed) throw Error("synth: " + failure);

  for (size_t t = 0; t < plan.size(); ++t) {
    w.add_tensor(plan[t].name, static_cast<uint32_t>(plan[t].type), plan[t].dims,
                 std::move(data[t]));
  }
  return w;
}

void write_synthetic(const SynthOptions& options, const std::string& path) {
  build(options).write(path);
}

}  // namespace resident::synth
