// Synthetic models: random-weight GGUF files with the exact shapes, per-tensor types and
// metadata layout of real ones (`resident synth`). They stand in for real checkpoints where none
// can be fetched (the GPU machine) and give tests small models of any quant mix.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/types.h"

namespace resident::synth {

// tiny_llama: the tiny shapes with arch llama (interleaved rope, no q/k/v biases, llama-bpe
// pre-tokenizer), so the llama code path has an end-to-end test too.
enum class Preset { qwen25_1_5b, qwen25_0_5b, tiny, tiny_llama };
enum class QuantMix { q4_k_m, q8_0, f16 };

std::optional<Preset> parse_preset(std::string_view name);   // "qwen2.5-1.5b", ...
std::optional<QuantMix> parse_quant(std::string_view name);  // "q4_k_m", "q8_0", "f16"
std::string_view preset_name(Preset preset);
std::string_view quant_name(QuantMix quant);

// Shapes of a preset (arch qwen2, or llama for tiny_llama). ctx_train is the context length written
// to the file.
ModelConfig preset_config(Preset preset);

// What one tensor of the file is: name, ggml type and dims (dims[0] = row length).
struct TensorPlan {
  enum class Kind { matrix, norm, bias };
  std::string name;
  quant::Type type;
  std::vector<uint64_t> dims;
  Kind kind;
};

// Every tensor, in the order the real llama.cpp Qwen2.5 files store them (output, token_embd,
// then the blocks in lexicographic name order "blk.0", "blk.1", "blk.10", ..., output_norm),
// with the per-tensor types of the quant mix.
//
// q4_k_m follows llama.cpp's rule as it shows in the real Qwen2.5-Coder-1.5B Q4_K_M file: the
// LM head (output.weight, or token_embd when tied) is Q6_K, an untied token_embd is Q4_K, and
// attn_v / ffn_down are Q6_K when use_more_bits(k, n_layers) holds, where k counts the
// attn_v (resp. ffn_down) tensors in FILE order (llama.cpp's counter), not the layer number:
// use_more_bits(k, n) = k < n/8 || k >= 7n/8 || (k - n/8) % 3 == 2. Everything else 2-D is
// Q4_K. A row length that is not a multiple of 256 cannot hold k-quants; llama.cpp then falls
// back to Q5_0 (for Q4_K) and Q8_0 (for Q6_K), and so do we. Norms and biases are F32.
std::vector<TensorPlan> plan_tensors(const ModelConfig& config, QuantMix quant);

// llama.cpp's use_more_bits (see plan_tensors).
bool use_more_bits(int k, int n);

// A byte-level BPE vocabulary in the GPT-2 unicode space: the 256 byte symbols, merged tokens
// from a deterministic merge list (letter pieces with an optional leading 'Ġ'), then the special
// tokens <|endoftext|>, <|im_start|>, <|im_end|> (type 3, control). Every merge "a b" joins two
// tokens that precede its result, and token 256 + i is the result of merge i.
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // 1 normal, 3 control
  std::vector<std::string> merges;
  int32_t bos_id = 0;  // <|endoftext|>
  int32_t eos_id = 0;  // <|im_end|>
};
Vocab make_vocab(int vocab_size);

struct SynthOptions {
  Preset preset = Preset::tiny;
  QuantMix quant = QuantMix::q8_0;
  uint64_t seed = 0;
  int n_threads = 0;  // 0: hardware concurrency
};

// Fills a writer with the metadata and random tensors of `options`. Deterministic in the seed
// (independent of the thread count): each tensor row draws from its own counter-based stream.
gguf::Writer build(const SynthOptions& options);

// build() + write; throws resident::Error naming the path on failure.
void write_synthetic(const SynthOptions& options, const std::string& path);

}  // namespace resident::synth
