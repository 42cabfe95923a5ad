#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "cpu/ops.h"
#include "quant/packed_activations.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cpu {
namespace {

std::span<const float> f32_span(const Tensor& t) {
  return {reinterpret_cast<const float*>(t.data), static_cast<size_t>(t.row_length * t.rows)};
}

void check_cpu_features() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
      !__builtin_cpu_supports("f16c"))
    throw Error("cpu backend: this CPU lacks AVX2/FMA/F16C, which the CPU kernels require");
}

}  // namespace

CpuBackend::CpuBackend(const Model& model, int n_ctx, int n_threads)
    : model_(model),
      cfg_(model.config),
      n_ctx_(n_ctx),
      pool_(n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency())) {
  check_cpu_features();
  if (n_ctx <= 0) throw Error("--ctx: must be positive");
  std::span<const float> freq_factors;
  if (model.weights.rope_freqs.present()) freq_factors = f32_span(model.weights.rope_freqs);
  rope_table_ = rope_table(n_ctx, cfg_.head_dim, cfg_.rope_theta, freq_factors);
  const size_t kv_elems = static_cast<size_t>(cfg_.n_layers) * n_ctx * cfg_.kv_dim();
  k_cache_.assign(kv_elems, 0);
  v_cache_.assign(kv_elems, 0);
  reset(SamplerParams{});
}

BackendInfo CpuBackend::info() const {
  BackendInfo info;
  info.device = "cpu";
  info.device_name = "cpu";
  info.threads = pool_.size();
  return info;
}

uint64_t CpuBackend::kv_cache_bytes() const {
  return (k_cache_.size() + v_cache_.size()) * sizeof(uint16_t);
}

MemoryReport CpuBackend::memory_report() const {
  MemoryReport r;
  r.weight_memory = "mmap";
  r.weights = model_.file.total_tensor_bytes();
  r.kv_cache = kv_cache_bytes();
  size_t floats = rope_table_.size() + x_.size() + h_.size() + q_.size() + k_.size() + v_.size() +
                  attn_.size() + proj_.size() + gate_.size() + up_.size() + logits_.size();
  r.workspace = floats * sizeof(float) + xq_.size() * sizeof(numerics::ActBlock);
  return r;
}

void CpuBackend::reset(const SamplerParams& params) {
  pos_ = 0;
  sampler_params_ = params;
  sampler_ = std::make_unique<Sampler>(params, cfg_.vocab_size);
  history_.clear();
  last_token_ = -1;
}

int32_t CpuBackend::prefill(std::span<const int32_t> tokens) {
  if (tokens.empty()) throw Error("prefill: empty prompt");
  forward(tokens, /*all_logits=*/false);
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  return sample_next();
}

int32_t CpuBackend::decode() {
  if (last_token_ < 0) throw Error("decode: no token sampled yet (call prefill first)");
  const int32_t token = last_token_;
  forward(std::span<const int32_t>(&token, 1), /*all_logits=*/false);
  return sample_next();
}

int32_t CpuBackend::sample_next() {
  std::span<const float> last(logits_.data(), static_cast<size_t>(cfg_.vocab_size));
  const int32_t next = sampler_->sample(last, history_, static_cast<uint64_t>(pos_));
  history_.push_back(next);
  last_token_ = next;
  return next;
}

std::vector<float> CpuBackend::logits(std::span<const int32_t> tokens) {
  reset(sampler_params_);
  forward(tokens, /*all_logits=*/true);
  return std::vector<float>(
      logits_.begin(), logits_.begin() + static_cast<int64_t>(tokens.size()) * cfg_.vocab_size);
}

void CpuBackend::hook(const char* name, int layer, const float* v, size_t n) const {
  if (hook_) hook_(name, layer, std::span<const float>(v, n));
}

void CpuBackend::embed(int32_t token, float* out) const {
  if (token < 0 || token >= cfg_.vocab_size)
    throw Error("token id " + std::to_string(token) + " out of range (vocab " +
                std::to_string(cfg_.vocab_size) + ")");
  const Tensor& e = model_.weights.token_embd;
  const auto& info = quant::type_info(e.type);
  const uint8_t* row = e.data + quant::row_bytes(info, e.row_length) * static_cast<size_t>(token);
  quant::dequantize_row(e.type, row, out, e.row_length);
}

void CpuBackend::matmul(const Tensor& w, const float* x, int n_tokens, float* out,
                        bool same_input) {
  const int64_t n = w.row_length;
  const bool int8 = quant::uses_int8_activations(w.type);
  if (!same_input) xq_ready_ = false;
  if (int8 && !xq_ready_) {
    const int64_t blocks = n / numerics::kActBlock;
    xq_.resize(static_cast<size_t>(blocks) * n_tokens);
    pool_.parallel_for(n_tokens, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        quant::quantize_activations(x + t * n, xq_.data() + t * blocks, n);
    });
    xq_ready_ = true;
    packed_ready_ = false;
  }
  if (int8 && quant::packed_matmul_applies(w.type, n_tokens)) {
    // Prefill: the activations are packed once for the batched kernels (shared by q/k/v and
    // gate/up, and by both threads), then rows go out in chunks to whichever thread is free:
    // on this shared VM one core is often slowed by other jobs, and a static half/half split
    // left the other core idle (~20% of the pp512 wall time).
    if (!packed_ready_) {
      packed_.prepare(xq_.data(), n, n_tokens);
      pool_.parallel_for(packed_.n_groups(), [&](int64_t g0, int64_t g1) {
        packed_.pack_groups(static_cast<int>(g0), static_cast<int>(g1));
      });
      packed_ready_ = true;
    }
    const int64_t per_chunk = w.rows / (8 * static_cast<int64_t>(pool_.size()));
    const int64_t chunk = std::max<int64_t>(16, (per_chunk + 15) / 16 * 16);
    pool_.parallel_for_dynamic(
        w.rows,
        [&](int64_t r0, int64_t r1) {
          quant::matmul_rows_packed(w.type, w.data, packed_, out, w.rows, r0, r1);
        },
        chunk);
    return;
  }
  pool_.parallel_for(
      w.rows,
      [&](int64_t r0, int64_t r1) {
        quant::matmul_rows(w.type, w.data, n, int8 ? xq_.data() : nullptr, int8 ? nullptr : x,
                           n_tokens, out, w.rows, r0, r1);
      },
      /*grain=*/16);
}

// The forward pass for a batch of tokens at consecutive positions.
void CpuBackend::forward(std::span<const int32_t> tokens, bool all_logits) {
  const int n = static_cast<int>(tokens.size());
  if (pos_ + n > n_ctx_)
    throw Error("context full: " + std::to_string(pos_) + " + " + std::to_string(n) +
                " tokens exceed the context length " + std::to_string(n_ctx_) + " (use --ctx)");
  const int d = cfg_.d_model, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), ff = cfg_.d_ff;
  const int hd = cfg_.head_dim, vocab = cfg_.vocab_size;
  const int group = cfg_.n_heads / cfg_.n_kv_heads;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const bool neox = cfg_.rope_style == RopeStyle::neox;
  auto resize = [n](std::vector<float>& v, int width) { v.resize(static_cast<size_t>(n) * width); };
  resize(x_, d), resize(h_, d), resize(q_, qd), resize(k_, kvd), resize(v_, kvd);
  resize(attn_, qd), resize(proj_, d), resize(gate_, ff), resize(up_, ff);

  for (int t = 0; t < n; ++t) embed(tokens[t], &x_[static_cast<size_t>(t) * d]);
  hook("embed", -1, x_.data(), x_.size());

  for (int il = 0; il < cfg_.n_layers; ++il) {
    const LayerWeights& L = model_.weights.layers[il];
    uint16_t* k_cache = &k_cache_[static_cast<size_t>(il) * n_ctx_ * kvd];
    uint16_t* v_cache = &v_cache_[static_cast<size_t>(il) * n_ctx_ * kvd];

    // Attention block.
    for (int t = 0; t < n; ++t)
      rmsnorm({&x_[t * d], size_t(d)}, f32_span(L.attn_norm), cfg_.rms_eps,
              {&h_[t * d], size_t(d)});
    hook("attn_norm", il, h_.data(), h_.size());
    matmul(L.wq, h_.data(), n, q_.data());
    matmul(L.wk, h_.data(), n, k_.data(), /*same_input=*/true);
    matmul(L.wv, h_.data(), n, v_.data(), /*same_input=*/true);
    for (int t = 0; t < n; ++t) {
      if (L.bq.present()) add_inplace(&q_[t * qd], f32_span(L.bq).data(), qd);
      if (L.bk.present()) add_inplace(&k_[t * kvd], f32_span(L.bk).data(), kvd);
      if (L.bv.present()) add_inplace(&v_[t * kvd], f32_span(L.bv).data(), kvd);
      rope_apply(&q_[t * qd], cfg_.n_heads, hd, neox, rope_table_.data(), pos_ + t);
      rope_apply(&k_[t * kvd], cfg_.n_kv_heads, hd, neox, rope_table_.data(), pos_ + t);
      for (int i = 0; i < kvd; ++i) {
        k_cache[static_cast<size_t>(pos_ + t) * kvd + i] = float_to_half(k_[t * kvd + i]);
        v_cache[static_cast<size_t>(pos_ + t) * kvd + i] = float_to_half(v_[t * kvd + i]);
      }
    }
    hook("q_rope", il, q_.data(), q_.size());
    hook("k_rope", il, k_.data(), k_.size());
    // Token t attends over pos_ + t + 1 positions, so the work grows along the batch: jobs go
    // out one token (all heads) at a time, the last token first, to whichever thread is free
    // (a static split gave the thread with the later tokens 3/4 of the prefill attention).
    pool_.parallel_for_dynamic(
        static_cast<int64_t>(n) * cfg_.n_heads,
        [&](int64_t b, int64_t e) {
          thread_local std::vector<float> scores;
          scores.resize(static_cast<size_t>(pos_ + n));
          for (int64_t job = b; job < e; ++job) {
            const int t = n - 1 - static_cast<int>(job / cfg_.n_heads),
                      head = static_cast<int>(job % cfg_.n_heads);
            const int kv_head = head / group;
            attention_head(&q_[static_cast<size_t>(t) * qd + head * hd], k_cache + kv_head * hd,
                           v_cache + kv_head * hd, pos_ + t + 1, hd, kvd, kq_scale, scores.data(),
                           &attn_[static_cast<size_t>(t) * qd + head * hd]);
          }
        },
        /*chunk=*/n > 1 ? cfg_.n_heads : 1);  // decode: one head per chunk
    hook("attn", il, attn_.data(), attn_.size());
    matmul(L.wo, attn_.data(), n, proj_.data());
    add_inplace(x_.data(), proj_.data(), static_cast<int64_t>(n) * d);
    hook("attn_residual", il, x_.data(), x_.size());

    // Feed-forward block.
    for (int t = 0; t < n; ++t)
      rmsnorm({&x_[t * d], size_t(d)}, f32_span(L.ffn_norm), cfg_.rms_eps, {&h_[t * d], size_t(d)});
    matmul(L.w_gate, h_.data(), n, gate_.data());
    matmul(L.w_up, h_.data(), n, up_.data(), /*same_input=*/true);
    pool_.parallel_for(
        static_cast<int64_t>(n) * ff,
        [&](int64_t b, int64_t e) {
          swiglu(gate_.data() + b, up_.data() + b, gate_.data() + b, e - b);
        },
        /*grain=*/256);
    matmul(L.w_down, gate_.data(), n, proj_.data());
    add_inplace(x_.data(), proj_.data(), static_cast<int64_t>(n) * d);
    hook("ffn_residual", il, x_.data(), x_.size());
  }

  // Output head: only the positions whose logits are wanted.
  const int first = all_logits ? 0 : n - 1;
  const int n_out = n - first;
  for (int t = first; t < n; ++t)
    rmsnorm({&x_[t * d], size_t(d)}, f32_span(model_.weights.output_norm), cfg_.rms_eps,
            {&h_[(t - first) * d], size_t(d)});
  logits_.resize(static_cast<size_t>(n_out) * vocab);
  matmul(model_.weights.output, h_.data(), n_out, logits_.data());
  hook("logits", -1, logits_.data(), logits_.size());
  pos_ += n;
}

}  // namespace resident::cpu
