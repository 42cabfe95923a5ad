#include <cmath>

#include "cuda/argmax.cuh"
#include "cuda/attention_decode.cuh"
#include "cuda/cuda_check.h"
#include "cuda/elementwise.cuh"
#include "cuda/embed.cuh"
#include "cuda/forward.cuh"
#include "cuda/legacy_switch.h"
#include "cuda/matvec.cuh"
#include "cuda/matvec_decode.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quantize_act.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope_kv.cuh"
#include "quant/quant.h"

namespace resident::cuda {
namespace {

// out[t * W.rows + r] = W[r] . x_t (+ bias[r]) or out += W x_t. `xq` must hold x quantized
// (the caller quantizes once per activation and shares it between matmuls).
MatvecArgs matmul_args(const DeviceTensor& w, const float* x, const numerics::ActBlock* xq,
                       int n_tokens, float* out, const float* bias = nullptr,
                       bool accumulate = false) {
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
  return a;
}
void matmul(const DeviceTensor& w, const float* x, const numerics::ActBlock* xq, int n_tokens,
            float* out, cudaStream_t stream, const float* bias = nullptr, bool accumulate = false) {
  matvec(matmul_args(w, x, xq, n_tokens, out, bias, accumulate), stream);
}

// Decode (one token): matrices that read the same activations go through one matvec_decode
// launch: all of them when they share a weight type or are the Q4_K + Q6_K pair the kernel
// takes together (Q4_K_M's q/k with a Q6_K v), else one launch per run of equal types.
// RESIDENT_CUDA_LEGACY=mixed: one launch per run of equal types always.
struct Projection {
  const DeviceTensor* w;
  float* out;
  const float* bias;
};
template <size_t N>
void matmul_shared_input(const Projection (&ps)[N], const float* x, const numerics::ActBlock* xq,
                         int n_tokens, cudaStream_t s) {
  static const bool legacy = use_legacy("decode");
  static const bool no_mixed = use_legacy("mixed");
  const DeviceTensor& w0 = *ps[0].w;
  bool shared = n_tokens == 1 && !legacy;
  for (const Projection& p : ps)
    shared = shared && p.w->row_length == w0.row_length &&
             matvec_decode_supported(p.w->type, p.w->row_length);
  if (!shared) {
    for (const Projection& p : ps) matmul(*p.w, x, xq, n_tokens, p.out, s, p.bias);
    return;
  }
  // The second type met, if any, and whether one launch takes both.
  quant::Type other = w0.type;
  bool two_types = false;
  for (const Projection& p : ps)
    if (p.w->type != w0.type) other = p.w->type, two_types = true;
  bool one_launch = !two_types;
  if (two_types && !no_mixed) {
    one_launch = true;
    for (const Projection& p : ps)
      one_launch = one_launch && (p.w->type == w0.type || p.w->type == other);
    one_launch = one_launch && matvec_decode_pair_supported(w0.type, other, w0.row_length);
  }
  if (one_launch && N <= kMaxDecodeSegments) {
    MatvecDecodeArgs a;
    a.type = w0.type;
    a.alt_type = other;
    a.n = w0.row_length;
    a.xq = xq;
    for (const Projection& p : ps)
      a.seg[a.n_segments++] = {p.w->data, p.w->rows, p.out, p.bias, false, p.w->type != w0.type};
    return matvec_decode(a, s);
  }
  for (size_t i = 0; i < N;) {
    MatvecDecodeArgs a;
    a.type = ps[i].w->type;
    a.n = w0.row_length;
    a.xq = xq;
    for (; i < N && ps[i].w->type == a.type && a.n_segments < kMaxDecodeSegments; ++i)
      a.seg[a.n_segments++] = {ps[i].w->data, ps[i].w->rows, ps[i].out, ps[i].bias, false};
    matvec_decode(a, s);
  }
}

// Prefill projections that share an input (q/k/v, gate/up). Runs of equal weight type and row
// length go through one matvec_multi launch each (matmul_mma_multi: their tiles share the GPU's
// waves); a second run (Qwen2.5's Q6_K v beside Q4_K q/k in some layers) goes on the side
// stream beside the first, the join event making `s` wait for it. Same kernels, same bits.
// RESIDENT_CUDA_LEGACY=mma_multi: one launch per matrix, the 2nd and later beside the first
// (k and v beside q); RESIDENT_CUDA_LEGACY=fork: everything on `s`.
template <size_t N>
void matmul_prefill(const Projection (&ps)[N], const float* x, const numerics::ActBlock* xq,
                    int n_tokens, const Workspace& ws, cudaStream_t s) {
  static const bool per_matrix = use_legacy("mma_multi");
  static const bool one_stream = use_legacy("fork");
  MatvecArgs args[N];
  for (size_t i = 0; i < N; ++i)
    args[i] = matmul_args(*ps[i].w, x, xq, n_tokens, ps[i].out, ps[i].bias);
  // Runs [run[k], run[k + 1]) of matrices launched together.
  size_t run[N + 1], n_runs = 0;
  run[0] = 0;
  for (size_t i = 1; i <= N; ++i) {
    const bool joins = i < N && !per_matrix && ps[i].w->type == ps[i - 1].w->type &&
                       ps[i].w->row_length == ps[i - 1].w->row_length;
    if (!joins) run[++n_runs] = i;
  }
  auto launch_run = [&](size_t k, cudaStream_t st) {
    matvec_multi(args + run[k], static_cast<int>(run[k + 1] - run[k]), st);
  };
  if (n_runs == 1 || one_stream || !ws.side) {
    for (size_t k = 0; k < n_runs; ++k) launch_run(k, s);
    return;
  }
  CUDA_CHECK(cudaEventRecord(ws.fork, s));
  CUDA_CHECK(cudaStreamWaitEvent(ws.side, ws.fork, 0));
  for (size_t k = 1; k < n_runs; ++k) launch_run(k, ws.side);
  CUDA_CHECK(cudaEventRecord(ws.join, ws.side));
  launch_run(0, s);
  CUDA_CHECK(cudaStreamWaitEvent(s, ws.join, 0));
}

// Normed activations h and their quantized blocks xq, in one kernel where it fits.
void norm_and_quantize(const float* x, const float* w, float eps, int n, int n_tokens, float* h,
                       numerics::ActBlock* xq, bool fuse, cudaStream_t s) {
  if (fuse && rmsnorm_quant_fits(n)) return rmsnorm_quant(x, w, eps, n, n_tokens, h, xq, s);
  rmsnorm(x, w, eps, n, n_tokens, h, s);
  quantize_activations(h, xq, n, n_tokens, s);
}

// Launches f once, or twice under the timing probe for `part` (legacy_switch.h).
template <typename F>
void probed(const char* part, F&& f) {
  for (int i = probe_repeats(part); i > 0; --i) f();
}

// Probe "empty": 4 empty PDL kernels per layer measure what a kernel boundary itself costs.
__global__ void empty_kernel() {
  pdl_trigger();
  pdl_wait();
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
    probed("norm", [&] {  // xq shared by q, k and v
      norm_and_quantize(ws.x, L.attn_norm.f32(), c.rms_eps, d, n, ws.h, ws.xq, fuse, s);
    });
    const Projection qkv[] = {
        {&L.wq, ws.q, L.bq.f32()}, {&L.wk, ws.k, L.bk.f32()}, {&L.wv, ws.v, L.bv.f32()}};
    probed("qkv", [&] {
      if (n > 1)
        matmul_prefill(qkv, ws.h, ws.xq, n, ws, s);
      else
        matmul_shared_input(qkv, ws.h, ws.xq, n, s);
    });

    // Rope, K/V cache write and attention: one launch for a decode token (attention_decode.cu),
    // else rope_kv_write and the three attention passes. Same bits either way.
    static const bool one_launch = !use_legacy("attn1");
    if (n == 1 && one_launch &&
        attention_decode_supported(c.n_heads, c.n_kv_heads, c.head_dim, kvd)) {
      AttentionDecodeArgs ad;
      ad.q = ws.q, ad.k = ws.k, ad.v = ws.v;
      ad.n_heads = c.n_heads, ad.n_kv_heads = c.n_kv_heads, ad.head_dim = c.head_dim;
      ad.kv_stride = kvd;
      ad.neox = c.rope_style == RopeStyle::neox;
      ad.rope_table = m.rope_table, ad.pos = pos;
      ad.k_cache = k_cache, ad.v_cache = v_cache, ad.n_ctx = kv.n_ctx;
      ad.kq_scale = kq_scale, ad.max_positions = max_positions;
      ad.out = ws.attn, ad.out_q = fuse ? ws.xq : nullptr;
      probed("attn", [&] { attention_decode(ad, ws.attn_scratch, ws.attn_counters, s); });
    } else {
      RopeKvArgs r;
      r.q = ws.q, r.k = ws.k, r.v = ws.v;
      r.n_heads = c.n_heads, r.n_kv_heads = c.n_kv_heads, r.head_dim = c.head_dim;
      r.neox = c.rope_style == RopeStyle::neox;
      r.table = m.rope_table, r.pos = pos, r.n_tokens = n;
      r.k_cache = k_cache, r.v_cache = v_cache, r.n_ctx = kv.n_ctx;
      probed("rope", [&] { rope_kv_write(r, s); });

      AttentionArgs at;
      at.q = ws.q, at.k_cache = k_cache, at.v_cache = v_cache;
      at.n_heads = c.n_heads, at.n_kv_heads = c.n_kv_heads, at.head_dim = c.head_dim,
      at.kv_stride = kvd;
      at.kq_scale = kq_scale, at.pos = pos, at.n_tokens = n, at.max_positions = max_positions;
      at.out = ws.attn;
      at.out_q = fuse ? ws.xq : nullptr;
      probed("attn", [&] { attention(at, ws.attn_scratch, s); });
    }

    if (!fuse) quantize_activations(ws.attn, ws.xq, qd, n, s);
    probed("o", [&] { matmul(L.wo, ws.attn, ws.xq, n, ws.x, s, nullptr, /*accumulate=*/true); });

    // Feed-forward block: h = norm(x); x += W_down (silu(W_gate h) * (W_up h)).
    probed("norm", [&] {  // xq shared by gate and up
      norm_and_quantize(ws.x, L.ffn_norm.f32(), c.rms_eps, d, n, ws.h, ws.xq, fuse, s);
    });
    const Projection gate_up[] = {{&L.w_gate, ws.gate, nullptr}, {&L.w_up, ws.up, nullptr}};
    probed("gate_up", [&] {
      if (n > 1)
        matmul_prefill(gate_up, ws.h, ws.xq, n, ws, s);
      else
        matmul_shared_input(gate_up, ws.h, ws.xq, n, s);
    });
    if (fuse) {
      probed("swiglu", [&] {
        swiglu_quant(ws.gate, ws.up, ws.gate, ws.xq, static_cast<int64_t>(n) * ff, s);
      });
    } else {
      swiglu(ws.gate, ws.up, ws.gate, static_cast<int64_t>(n) * ff, s);
      quantize_activations(ws.gate, ws.xq, ff, n, s);
    }
    probed("down",
           [&] { matmul(L.w_down, ws.gate, ws.xq, n, ws.x, s, nullptr, /*accumulate=*/true); });
    if (probe_repeats("empty") > 1)
      for (int i = 0; i < 4; ++i) launch_pdl(empty_kernel, dim3(1), dim3(32), 0, s);
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
