#include "model/model.h"

#include <string>

#include "util/error.h"

namespace resident {
namespace {

std::string arch_key(const std::string& arch, const char* suffix) {
  return arch + "." + suffix;
}

int get_positive_int(const gguf::File& file, const std::string& key, uint64_t max) {
  const uint64_t v = file.get_uint(key);
  if (v == 0 || v > max)
    throw Error(file.path() + ": " + key + ": value " + std::to_string(v) + " out of range 1.." +
                std::to_string(max));
  return static_cast<int>(v);
}

// Looks a tensor up and checks type support and shape (rows x row_length).
Tensor bind_tensor(const gguf::File& file, const std::string& name, int64_t row_length,
                   int64_t rows, bool required = true) {
  const gguf::TensorInfo* info = file.find_tensor(name);
  Tensor t;
  t.name = name;
  if (!info) {
    if (required) throw Error(file.path() + ": tensor '" + name + "': missing");
    return t;
  }
  const auto type = quant::type_info(info->ggml_type);
  if (!type)
    throw Error(file.path() + ": tensor '" + name + "': unsupported type " +
                std::string(quant::ggml_type_name(info->ggml_type)));
  int64_t actual_rows = 1;
  for (size_t i = 1; i < info->dims.size(); ++i) actual_rows *= static_cast<int64_t>(info->dims[i]);
  const int64_t actual_len = static_cast<int64_t>(info->dims.empty() ? 0 : info->dims[0]);
  if (actual_len != row_length || actual_rows != rows)
    throw Error(file.path() + ": tensor '" + name + "': shape [" + std::to_string(actual_len) +
                ", " + std::to_string(actual_rows) + "], expected [" + std::to_string(row_length) +
                ", " + std::to_string(rows) + "]");
  if (row_length % type->block_elems != 0)
    throw Error(file.path() + ": tensor '" + name + "': row length " + std::to_string(row_length) +
                " is not a multiple of the " + std::string(type->name) + " block size");
  t.type = type->type;
  t.row_length = row_length;
  t.rows = rows;
  t.data = info->data;
  t.offset = info->offset;
  t.bytes = info->n_bytes;
  return t;
}

void require_f32(const gguf::File& file, const Tensor& t) {
  if (t.present() && t.type != quant::Type::F32)
    throw Error(file.path() + ": tensor '" + t.name + "': expected F32");
}

}  // namespace

Model Model::load(const std::string& path) {
  Model model{gguf::File::open(path), {}, {}};
  const gguf::File& f = model.file;
  ModelConfig& c = model.config;

  c.arch_name = f.get_string("general.architecture");
  if (c.arch_name == "qwen2") {
    c.arch = Arch::qwen2;
    c.rope_style = RopeStyle::neox;
    c.has_qkv_bias = true;
  } else if (c.arch_name == "llama") {
    c.arch = Arch::llama;
    c.rope_style = RopeStyle::interleaved;
    c.has_qkv_bias = false;
  } else {
    throw Error(path + ": general.architecture: unsupported architecture '" + c.arch_name +
                "' (supported: qwen2, llama)");
  }
  const std::string& a = c.arch_name;
  c.n_layers = get_positive_int(f, arch_key(a, "block_count"), 1024);
  c.d_model = get_positive_int(f, arch_key(a, "embedding_length"), 1 << 16);
  c.d_ff = get_positive_int(f, arch_key(a, "feed_forward_length"), 1 << 18);
  c.n_heads = get_positive_int(f, arch_key(a, "attention.head_count"), 1024);
  c.n_kv_heads = f.find_uint(arch_key(a, "attention.head_count_kv"))
                     ? get_positive_int(f, arch_key(a, "attention.head_count_kv"), 1024)
                     : c.n_heads;
  c.ctx_train = get_positive_int(f, arch_key(a, "context_length"), 1 << 24);
  if (auto theta = f.find_float(arch_key(a, "rope.freq_base")))
    c.rope_theta = static_cast<float>(*theta);
  c.rms_eps = static_cast<float>(f.get_float(arch_key(a, "attention.layer_norm_rms_epsilon")));
  if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f))
    throw Error(path + ": " + arch_key(a, "attention.layer_norm_rms_epsilon") + ": out of range");
  if (!(c.rope_theta > 0.0f))
    throw Error(path + ": " + arch_key(a, "rope.freq_base") + ": out of range");

  c.head_dim = c.d_model / c.n_heads;
  if (auto kl = f.find_uint(arch_key(a, "attention.key_length")))
    c.head_dim = static_cast<int>(*kl);
  if (c.n_heads % c.n_kv_heads != 0)
    throw Error(path + ": attention.head_count " + std::to_string(c.n_heads) +
                " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
  if (c.head_dim % 32 != 0 || c.head_dim > 256 || c.head_dim <= 0)
    throw Error(path + ": head dimension " + std::to_string(c.head_dim) +
                " unsupported (must be a multiple of 32, at most 256)");
  if (c.d_model % 32 != 0 || c.d_ff % 32 != 0)
    throw Error(path + ": embedding/feed-forward length must be multiples of 32");

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2)
    throw Error(path + ": tensor 'token_embd.weight': missing or not 2-D");
  c.vocab_size = static_cast<int>(embd->dims[1]);
  if (c.vocab_size <= 0) throw Error(path + ": tensor 'token_embd.weight': empty vocabulary");

  ModelWeights& w = model.weights;
  const int64_t d = c.d_model, q = c.q_dim(), kv = c.kv_dim(), ff = c.d_ff;
  w.token_embd = bind_tensor(f, "token_embd.weight", d, c.vocab_size);
  w.output_norm = bind_tensor(f, "output_norm.weight", d, 1);
  require_f32(f, w.output_norm);
  w.output = bind_tensor(f, "output.weight", d, c.vocab_size, /*required=*/false);
  c.tied_embeddings = !w.output.present();
  if (c.tied_embeddings) w.output = w.token_embd;
  w.rope_freqs = bind_tensor(f, "rope_freqs.weight", c.head_dim / 2, 1, /*required=*/false);
  require_f32(f, w.rope_freqs);

  w.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    l.attn_norm = bind_tensor(f, p + "attn_norm.weight", d, 1);
    l.wq = bind_tensor(f, p + "attn_q.weight", d, q);
    l.wk = bind_tensor(f, p + "attn_k.weight", d, kv);
    l.wv = bind_tensor(f, p + "attn_v.weight", d, kv);
    l.wo = bind_tensor(f, p + "attn_output.weight", q, d);
    l.ffn_norm = bind_tensor(f, p + "ffn_norm.weight", d, 1);
    l.w_gate = bind_tensor(f, p + "ffn_gate.weight", d, ff);
    l.w_up = bind_tensor(f, p + "ffn_up.weight", d, ff);
    l.w_down = bind_tensor(f, p + "ffn_down.weight", ff, d);
    l.bq = bind_tensor(f, p + "attn_q.bias", q, 1, c.has_qkv_bias);
    l.bk = bind_tensor(f, p + "attn_k.bias", kv, 1, c.has_qkv_bias);
    l.bv = bind_tensor(f, p + "attn_v.bias", kv, 1, c.has_qkv_bias);
    for (const Tensor* t : {&l.attn_norm, &l.ffn_norm, &l.bq, &l.bk, &l.bv}) require_f32(f, *t);
  }
  return model;
}

}  // namespace resident
