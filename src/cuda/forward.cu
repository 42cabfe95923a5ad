#include <cmath>

#include "cuda/argmax.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/embed.cuh"
#include "cuda/forward.cuh"
#include "cuda/legacy_switch.h"
#include "cuda/matvec.cuh"
#include "cuda/quantize_act.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope_kv.cuh"
#include "quant/quant.h"

namespace resident::cuda {
namespace {

// out[t * W.rows + r] = W[r] . x_t (+ bias[r]) or out += W x_t. `xq` must hold x quantized
// (the caller quantizes once per activation and shares it between matmuls).
void matmul(const DeviceTensor& w, const float* x, const numerics::ActBlock* xq, int n_tokens,
            float* out, cudaStream_t stream, const float* bias = nullptr, bool accumulate = false) {
  MatvecArgs a;
  a.type = w.type;
  a.w = w.data;
  a.rows = w.rows;
  a.n = w.row_length;
  a.xq = xq;
  a.xf = x;
  a.n_tokens = n_tokens;
  a.out = out;
  a.out_stride = w.rows;
  a.bias = bias;
  a.accumulate = accumulate;
  matvec(a, stream);
}

// Normed activations h and their quantized blocks xq, in one kernel where it fits.
void norm_and_quantize(const float* x, const float* w, float eps, int n, int n_tokens, float* h,
                       numerics::ActBlock* xq, bool fuse, cudaStream_t s) {
  if (fuse && rmsnorm_quant_fits(n)) return rmsnorm_quant(x, w, eps, n, n_tokens, h, xq, s);
  rmsnorm(x, w, eps, n, n_tokens, h, s);
  quantize_activations(h, xq, n, n_tokens, s);
}

}  // namespace

void forward_layers(const DeviceModel& m, const KvCache& kv, const Workspace& ws,
                    const int32_t* ids, const int* pos, int n_tokens, int max_positions,
                    cudaStream_t s) {
  const ModelConfig& c = m.cfg;
  const int n = n_tokens, d = c.d_model, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.d_ff;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  // Activation quantization fused into its producer (rmsnorm, attention combine, swiglu):
  // the same quantize_act_block on the same floats, 4 launches fewer per layer.
  static const bool fuse = !use_legacy("fuse");

  embed(m.token_embd.type, m.token_embd.data, d, c.vocab_size, ids, n, ws.x, s);

  for (int il = 0; il < c.n_layers; ++il) {
    const DeviceLayer& L = m.layers[il];
    uint16_t* k_cache = kv.k + static_cast<int64_t>(il) * kv.n_ctx * kvd;
    uint16_t* v_cache = kv.v + static_cast<int64_t>(il) * kv.n_ctx * kvd;

    // Attention block: h = norm(x); q, k, v = W h + b; rope; cache; attention; x += Wo attn.
    norm_and_quantize(ws.x, L.attn_norm.f32(), c.rms_eps, d, n, ws.h, ws.xq, fuse,
                      s);  // xq shared by q, k and v
    matmul(L.wq, ws.h, ws.xq, n, ws.q, s, L.bq.f32());
    matmul(L.wk, ws.h, ws.xq, n, ws.k, s, L.bk.f32());
    matmul(L.wv, ws.h, ws.xq, n, ws.v, s, L.bv.f32());

    RopeKvArgs r;
    r.q = ws.q, r.k = ws.k, r.v = ws.v;
    r.n_heads = c.n_heads, r.n_kv_heads = c.n_kv_heads, r.head_dim = c.head_dim;
    r.neox = c.rope_style == RopeStyle::neox;
    r.table = m.rope_table, r.pos = pos, r.n_tokens = n;
    r.k_cache = k_cache, r.v_cache = v_cache, r.n_ctx = kv.n_ctx;
    rope_kv_write(r, s);

    AttentionArgs at;
    at.q = ws.q, at.k_cache = k_cache, at.v_cache = v_cache;
    at.n_heads = c.n_heads, at.n_kv_heads = c.n_kv_heads, at.head_dim = c.head_dim,
    at.kv_stride = kvd;
    at.kq_scale = kq_scale, at.pos = pos, at.n_tokens = n, at.max_positions = max_positions;
    at.out = ws.attn;
    at.out_q = fuse ? ws.xq : nullptr;
    attention(at, ws.attn_scratch, s);

    if (!fuse) quantize_activations(ws.attn, ws.xq, qd, n, s);
    matmul(L.wo, ws.attn, ws.xq, n, ws.x, s, nullptr, /*accumulate=*/true);

    // Feed-forward block: h = norm(x); x += W_down (silu(W_gate h) * (W_up h)).
    norm_and_quantize(ws.x, L.ffn_norm.f32(), c.rms_eps, d, n, ws.h, ws.xq, fuse,
                      s);  // xq shared by gate and up
    matmul(L.w_gate, ws.h, ws.xq, n, ws.gate, s);
    matmul(L.w_up, ws.h, ws.xq, n, ws.up, s);
    if (fuse) {
      swiglu_quant(ws.gate, ws.up, ws.gate, ws.xq, static_cast<int64_t>(n) * ff, s);
    } else {
      swiglu(ws.gate, ws.up, ws.gate, static_cast<int64_t>(n) * ff, s);
      quantize_activations(ws.gate, ws.xq, ff, n, s);
    }
    matmul(L.w_down, ws.gate, ws.xq, n, ws.x, s, nullptr, /*accumulate=*/true);
  }
}

void forward_head(const DeviceModel& m, const Workspace& ws, int first, int n_out, cudaStream_t s) {
  const ModelConfig& c = m.cfg;
  const int d = c.d_model;
  static const bool fuse = !use_legacy("fuse");
  norm_and_quantize(ws.x + static_cast<int64_t>(first) * d, m.output_norm.f32(), c.rms_eps, d,
                    n_out, ws.h, ws.xq, fuse, s);
  matmul(m.output, ws.h, ws.xq, n_out, ws.logits, s);
}

}  // namespace resident::cuda
