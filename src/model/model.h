// The data model: configuration, weights and their shapes, for every backend.
// Shapes are written as (rows, row_length): GGUF stores a weight as `rows` contiguous rows of
// `row_length` elements, ne[0] = row_length.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "quant/types.h"

namespace resident {

enum class Arch { qwen2, llama };

enum class RopeStyle {
  neox,        // pairs (i, i + head_dim/2): qwen2
  interleaved  // pairs (2i, 2i + 1): llama as converted to GGUF
};

struct ModelConfig {
  Arch arch = Arch::qwen2;
  std::string arch_name;  // "qwen2", "llama"
  int n_layers = 0;
  int d_model = 0;  // embedding length
  int d_ff = 0;     // feed-forward length
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // d_model / n_heads unless the file says otherwise
  int vocab_size = 0;
  int ctx_train = 0;  // context length the model was trained for
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::neox;
  float rms_eps = 1e-6f;
  bool has_qkv_bias = false;
  bool tied_embeddings = false;  // no output.weight: the LM head is token_embd

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// A view of one tensor inside the mapped GGUF file.
struct Tensor {
  std::string name;
  quant::Type type = quant::Type::F32;
  int64_t row_length = 0;  // ne[0]
  int64_t rows = 1;        // product of ne[1..]
  const uint8_t* data = nullptr;
  uint64_t offset = 0;  // within the GGUF data section (device arenas mirror it)
  uint64_t bytes = 0;

  bool present() const { return data != nullptr; }
};

struct LayerWeights {
  Tensor attn_norm;  // (1, d_model) F32
  Tensor wq;         // (q_dim, d_model)
  Tensor wk;         // (kv_dim, d_model)
  Tensor wv;         // (kv_dim, d_model)
  Tensor bq;         // (1, q_dim) F32, qwen2 only
  Tensor bk;         // (1, kv_dim) F32, qwen2 only
  Tensor bv;         // (1, kv_dim) F32, qwen2 only
  Tensor wo;         // (d_model, q_dim)
  Tensor ffn_norm;   // (1, d_model) F32
  Tensor w_gate;     // (d_ff, d_model)
  Tensor w_up;       // (d_ff, d_model)
  Tensor w_down;     // (d_model, d_ff)
};

struct ModelWeights {
  Tensor token_embd;  // (vocab, d_model)
  std::vector<LayerWeights> layers;
  Tensor output_norm;  // (1, d_model) F32
  Tensor output;       // (vocab, d_model); == token_embd when tied
  Tensor rope_freqs;   // (1, head_dim/2) F32, llama 3.x rope scaling; may be absent
};

// A loaded model: the mapped file, its configuration and views of its weights.
class Model {
 public:
  // Reads config from metadata only and checks every tensor's presence, type and shape.
  // Throws resident::Error naming the file and the field.
  static Model load(const std::string& path);

  gguf::File file;
  ModelConfig config;
  ModelWeights weights;
};

}  // namespace resident
