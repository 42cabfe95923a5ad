#include <cuda_runtime.h>

#include <algorithm>
#include <span>

#include "cpu/ops.h"
#include "cuda/argmax.cuh"
#include "cuda/attention.cuh"
#include "cuda/attention_decode.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/fault_injection.cuh"
#include "cuda/forward.cuh"
#include "cuda/sampler.cuh"
#include "cuda/weight_arena.h"
#include "engine/sampler.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

DeviceTensor bind(const WeightArena& arena, const Tensor& t) {
  DeviceTensor d;
  if (!t.present()) return d;
  d.type = t.type;
  d.data = arena.device_ptr(t);
  d.rows = t.rows;
  d.row_length = t.row_length;
  return d;
}

void check_shapes(const Model& model) {
  const ModelConfig& c = model.config;
  const std::string& path = model.file.path();
  auto need32 = [&](int v, const char* what) {
    if (v % 32 != 0)
      throw Error(path + ": " + what + " = " + std::to_string(v) +
                  ": the cuda backend needs multiples of 32 (int8 activation blocks)");
  };
  need32(c.d_model, "embedding_length");
  need32(c.d_ff, "feed_forward_length");
  need32(c.q_dim(), "n_heads * head_dim");
  if (c.head_dim % 32 != 0 || c.head_dim > kAttnMaxHeadDim)
    throw Error(path + ": head_dim = " + std::to_string(c.head_dim) +
                ": the cuda attention kernel takes multiples of 32 up to 256");
  if (c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads != 0)
    throw Error(path + ": head_count must be a multiple of head_count_kv");
}

}  // namespace

struct CudaBackend::Impl {
  const Model& model;
  const ModelConfig& cfg;
  int n_ctx;
  int max_batch;
  // Positions whose logits one head pass computes: prefill needs only the last one's; the
  // all-positions path (logits()) runs the head in passes of this many.
  static constexpr int kLogitRows = 64;
  int logit_rows = 1;
  DeviceInfo device;

  std::unique_ptr<WeightArena> arena;
  Fault fault = Fault::none;                  // RESIDENT_FAULT (debug only)
  std::unique_ptr<WeightArena> second_arena;  // fault double_upload
  DeviceBuffer<int32_t> fault_scratch;        // fault htod_per_token: copy destination
  DeviceModel dm;
  DeviceBuffer<float> rope_table;
  DeviceBuffer<uint16_t> k_cache, v_cache;
  KvCache kv;

  DeviceBuffer<float> x, h, q, k, v, attn, gate, up, logits;
  DeviceBuffer<numerics::ActBlock> xq;
  DeviceBuffer<float> scores, chunk_max, chunk_den, chunk_val;
  DeviceBuffer<unsigned> attn_counters;   // attention_decode's work tickets and per-head counts
  DeviceBuffer<unsigned> argmax_scratch;  // the multi-block argmax's partial results and count
  Workspace ws;

  DeviceBuffer<int32_t> ids;      // prompt ids (n_ctx), uploaded in one copy per prefill
  DeviceBuffer<int32_t> token;    // the last sampled id: the decode step's input and output
  DeviceBuffer<int> pos;          // tokens cached so far: read by the decode step, advanced by it
  int32_t* token_host = nullptr;  // pinned: the id read back after each step

  cudaStream_t stream = nullptr;
  cudaStream_t side_stream = nullptr;  // prefill: k/v matmuls beside q (Workspace::side)
  cudaEvent_t fork = nullptr, join = nullptr;
  cudaEvent_t token_ready = nullptr;
  cudaEvent_t t_begin = nullptr, t_end = nullptr;
  // How prefill/decode pick the next id, fixed at reset: plain greedy stays on cuda::argmax;
  // greedy with a repetition penalty and every temperature > 0 run the device sampler
  // (cuda/sampler.cuh). One decode graph per kind, captured on first use and kept.
  enum Pick { kArgmax = 0, kPenalizedArgmax = 1, kSample = 2, kPickKinds = 3 };
  Pick pick = kArgmax;  // pick_for(params), set in the constructor and by reset()
  std::unique_ptr<DeviceSampler> sampler;
  cudaGraph_t graphs[kPickKinds] = {};
  cudaGraphExec_t graph_execs[kPickKinds] = {};

  int position = 0;  // host mirror of *pos
  bool have_token = false;
  SamplerParams params;

  Impl(const Model& m, const CudaOptions& o)
      : model(m), cfg(m.config), n_ctx(o.n_ctx), max_batch(o.max_batch) {
    if (n_ctx < 1) throw Error("--ctx: must be positive");
    if (max_batch < 1) throw Error("cuda backend: max_batch must be positive");
    // The attention scores of a pass are (tokens, heads, n_ctx) floats: keep them <= 256 MiB
    // (a long context gets shorter prefill passes, never a failed allocation).
    const int64_t per_token = static_cast<int64_t>(cfg.n_heads) * n_ctx * sizeof(float);
    max_batch = static_cast<int>(
        std::clamp<int64_t>((int64_t{256} << 20) / per_token, 1, int64_t{max_batch}));
    logit_rows = std::min(max_batch, kLogitRows);
    device = device_info(0);
    check_shapes(m);
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&token_ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreate(&t_begin));
    CUDA_CHECK(cudaEventCreate(&t_end));
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&token_host), sizeof(int32_t),
                             cudaHostAllocDefault));

    fault = fault_from_env();
    ArenaOptions ao;
    ao.unified = o.unified_memory;
    if (o.on_stage) o.on_stage("before_weights");
    arena = std::make_unique<WeightArena>(m.file, ao);
    if (fault == Fault::double_upload) second_arena = std::make_unique<WeightArena>(m.file, ao);
    if (o.on_stage) o.on_stage("after_weights");
    if (fault == Fault::htod_per_token) fault_scratch = DeviceBuffer<int32_t>(1);
    bind_weights();
    allocate_state();
    // History capacity: one request's prompt ids + picked ids = position + number of prefills
    // (each prefill appends its ids and one pick, each decode one pick), at most 2 n_ctx.
    sampler = std::make_unique<DeviceSampler>(cfg.vocab_size, 2 * n_ctx + 1, stream);
    // Like CpuBackend, a new backend samples with the default SamplerParams until reset(). The
    // greedy graph is captured now; the others when first needed (capture_decode_graph(pick)).
    pick = pick_for(params);
    sampler->set_params(params, stream);
    capture_decode_graph(kArgmax);
    warm_up();
  }

  // Runs every prefill shape and the decode graph once, then rewinds. Part of load because the
  // driver reserves some device memory (e.g. per-thread local memory) at a kernel's first launch:
  // doing it here keeps used memory flat after load (GWR-001, "no growth after load").
  void warm_up() {
    const int room = n_ctx - 1;
    for (int n : {max_batch, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
      n = std::min(n, room);
      if (n < 1) break;
      const std::vector<int32_t> tokens(static_cast<size_t>(n), 0);
      run_tokens(tokens, nullptr);
      argmax(ws.logits, cfg.vocab_size, token.get(), nullptr, 0, stream, argmax_scratch.get());
      CUDA_CHECK(cudaGraphLaunch(graph_execs[kArgmax], stream));
      CUDA_CHECK(cudaStreamSynchronize(stream));
      reset_position();
    }
    // The passes above run the register-tiled prefill attention (attention_prefill.cu). Under
    // RESIDENT_CUDA_LEGACY=attn_gemm, attention.cu tiles over query tokens only at depth, which
    // they never reach: launch those kernels once here (2 tokens at position 0 of layer 0; the
    // output is scratch), so their first real launch does not reserve memory after load either.
    if (std::min(max_batch, n_ctx) >= 2) {
      AttentionArgs at;
      at.q = ws.q, at.k_cache = kv.k, at.v_cache = kv.v;
      at.n_heads = cfg.n_heads, at.n_kv_heads = cfg.n_kv_heads, at.head_dim = cfg.head_dim;
      at.kv_stride = cfg.kv_dim(), at.kq_scale = 1.0f, at.pos = pos.get();
      at.n_tokens = 2, at.max_positions = 2, at.out = ws.attn;
      at.tile = 1;
      attention(at, ws.attn_scratch, stream);
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  ~Impl() {
    // Destructor: release what exists, ignore errors (nothing useful to do with them here).
    for (int p = 0; p < kPickKinds; ++p) {
      if (graph_execs[p]) cudaGraphExecDestroy(graph_execs[p]);
      if (graphs[p]) cudaGraphDestroy(graphs[p]);
    }
    if (token_host) cudaFreeHost(token_host);
    if (t_begin) cudaEventDestroy(t_begin);
    if (t_end) cudaEventDestroy(t_end);
    if (token_ready) cudaEventDestroy(token_ready);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (side_stream) cudaStreamDestroy(side_stream);
    if (stream) cudaStreamDestroy(stream);
  }

  void bind_weights() {
    const ModelWeights& w = model.weights;
    dm.cfg = cfg;
    dm.token_embd = bind(*arena, w.token_embd);
    dm.output_norm = bind(*arena, w.output_norm);
    dm.output = bind(*arena, w.output);
    for (const LayerWeights& L : w.layers) {
      DeviceLayer d;
      d.attn_norm = bind(*arena, L.attn_norm);
      d.wq = bind(*arena, L.wq);
      d.wk = bind(*arena, L.wk);
      d.wv = bind(*arena, L.wv);
      d.bq = bind(*arena, L.bq);
      d.bk = bind(*arena, L.bk);
      d.bv = bind(*arena, L.bv);
      d.wo = bind(*arena, L.wo);
      d.ffn_norm = bind(*arena, L.ffn_norm);
      d.w_gate = bind(*arena, L.w_gate);
      d.w_up = bind(*arena, L.w_up);
      d.w_down = bind(*arena, L.w_down);
      dm.layers.push_back(d);
    }
  }

  void allocate_state() {
    const int d = cfg.d_model, qd = cfg.q_dim(), kvd = cfg.kv_dim(), ff = cfg.d_ff;
    const int B = max_batch;

    // Rope table: computed on the host in double (the CPU backend's own function) and uploaded
    // once, here; both backends read the same floats.
    std::span<const float> freq;
    if (model.weights.rope_freqs.present())
      freq = {reinterpret_cast<const float*>(model.weights.rope_freqs.data),
              static_cast<size_t>(model.weights.rope_freqs.row_length)};
    const std::vector<float> table = cpu::rope_table(n_ctx, cfg.head_dim, cfg.rope_theta, freq);
    rope_table = DeviceBuffer<float>(table.size());
    CUDA_CHECK(cudaMemcpy(rope_table.get(), table.data(), table.size() * sizeof(float),
                          cudaMemcpyHostToDevice));
    dm.rope_table = rope_table.get();

    const size_t kv_elems = static_cast<size_t>(cfg.n_layers) * n_ctx * kvd;
    k_cache = DeviceBuffer<uint16_t>(kv_elems);
    v_cache = DeviceBuffer<uint16_t>(kv_elems);
    CUDA_CHECK(cudaMemset(k_cache.get(), 0, k_cache.bytes()));
    CUDA_CHECK(cudaMemset(v_cache.get(), 0, v_cache.bytes()));
    kv = {k_cache.get(), v_cache.get(), n_ctx};

    auto f = [B](int width) { return DeviceBuffer<float>(static_cast<size_t>(B) * width); };
    x = f(d), h = f(d), q = f(qd), k = f(kvd), v = f(kvd), attn = f(qd), gate = f(ff), up = f(ff);
    logits = DeviceBuffer<float>(static_cast<size_t>(logit_rows) * cfg.vocab_size);
    xq = DeviceBuffer<numerics::ActBlock>(static_cast<size_t>(B) * std::max({d, qd, ff}) / 32);
    const AttentionScratchSizes as = attention_scratch_sizes(B, cfg.n_heads, n_ctx, cfg.head_dim);
    scores = DeviceBuffer<float>(as.scores);
    chunk_max = DeviceBuffer<float>(as.chunk_max);
    chunk_den = DeviceBuffer<float>(as.chunk_den);
    chunk_val = DeviceBuffer<float>(as.chunk_val);
    attn_counters = DeviceBuffer<unsigned>(attention_decode_counters(cfg.n_heads));
    CUDA_CHECK(cudaMemset(attn_counters.get(), 0, attn_counters.bytes()));
    ws.attn_counters = attn_counters.get();
    argmax_scratch = DeviceBuffer<unsigned>(argmax_scratch_words());
    CUDA_CHECK(cudaMemset(argmax_scratch.get(), 0, argmax_scratch.bytes()));
    ws.side = side_stream, ws.fork = fork, ws.join = join;
    ws.max_tokens = B;
    ws.x = x.get(), ws.h = h.get(), ws.q = q.get(), ws.k = k.get(), ws.v = v.get();
    ws.attn = attn.get(), ws.gate = gate.get(), ws.up = up.get(), ws.logits = logits.get();
    ws.xq = xq.get();
    ws.attn_scratch = {scores.get(), chunk_max.get(), chunk_den.get(), chunk_val.get(), B,
                       cfg.n_heads,  n_ctx,           cfg.head_dim};

    ids = DeviceBuffer<int32_t>(static_cast<size_t>(n_ctx));
    token = DeviceBuffer<int32_t>(1);
    pos = DeviceBuffer<int>(1);
    CUDA_CHECK(cudaMemset(token.get(), 0, sizeof(int32_t)));
    CUDA_CHECK(cudaMemset(pos.get(), 0, sizeof(int)));
  }

  uint64_t workspace_bytes() const {
    return rope_table.bytes() + x.bytes() + h.bytes() + q.bytes() + k.bytes() + v.bytes() +
           attn.bytes() + gate.bytes() + up.bytes() + logits.bytes() + xq.bytes() + scores.bytes() +
           chunk_max.bytes() + chunk_den.bytes() + chunk_val.bytes() + attn_counters.bytes() +
           argmax_scratch.bytes() + ids.bytes() + token.bytes() + pos.bytes() +
           (sampler ? sampler->bytes() : 0);
  }

  // The decode step: token id and position in, next id and position + 1 out, all on the device.
  void enqueue_decode_step(Pick p) {
    forward_layers(dm, kv, ws, token.get(), pos.get(), 1, n_ctx, stream);
    forward_head(dm, ws, 0, 1, stream);
    if (fault == Fault::perturb_kernel)
      perturb_logits(ws.logits, cfg.vocab_size, pos.get(), stream);
    if (fault == Fault::throttle) spin(10000, stream);
    if (p == kArgmax)
      argmax(ws.logits, cfg.vocab_size, token.get(), pos.get(), 1, stream, argmax_scratch.get());
    else
      sampler->enqueue(ws.logits, token.get(), pos.get(), 1, p == kPenalizedArgmax, stream);
  }

  void capture_decode_graph(Pick p) {
    if (graph_execs[p]) return;
    CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_decode_step(p);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream, &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream, &graphs[p]));
    CUDA_CHECK(cudaGraphInstantiate(&graph_execs[p], graphs[p], 0));
    CUDA_CHECK(cudaGraphUpload(graph_execs[p], stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  static Pick pick_for(const SamplerParams& p) {
    if (p.temperature != 0.0f) return kSample;
    return (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) ? kPenalizedArgmax : kArgmax;
  }

  void check_prompt(std::span<const int32_t> tokens, int start) const {
    if (tokens.empty()) throw Error("prefill: empty prompt");
    if (static_cast<int64_t>(start) + static_cast<int64_t>(tokens.size()) > n_ctx)
      throw Error("context full: " + std::to_string(start) + " + " + std::to_string(tokens.size()) +
                  " tokens exceed the context length " + std::to_string(n_ctx) + " (use --ctx)");
    for (int32_t id : tokens)
      if (id < 0 || id >= cfg.vocab_size)
        throw Error("token id " + std::to_string(id) + " out of range (vocab " +
                    std::to_string(cfg.vocab_size) + ")");
  }

  // Evaluates tokens at positions [position, position + n) in passes of up to max_batch tokens.
  // all_logits: copies every position's logits into *out; else leaves the last one's in ws.logits.
  void run_tokens(std::span<const int32_t> tokens, std::vector<float>* out) {
    const int n = static_cast<int>(tokens.size());
    const int start = position;
    // One host -> device copy per prompt (outside the decode loop).
    CUDA_CHECK(cudaMemcpyAsync(ids.get() + start, tokens.data(), n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    const int64_t vocab = cfg.vocab_size;
    for (int b = 0; b < n; b += max_batch) {
      const int m = std::min(max_batch, n - b);
      forward_layers(dm, kv, ws, ids.get() + start + b, pos.get(), m, start + b + m, stream);
      advance_position(pos.get(), m, stream);
      if (out) {
        for (int c = 0; c < m; c += logit_rows) {
          const int rows = std::min(logit_rows, m - c);
          forward_head(dm, ws, c, rows, stream);
          CUDA_CHECK(cudaMemcpyAsync(out->data() + static_cast<int64_t>(b + c) * vocab, ws.logits,
                                     static_cast<size_t>(rows) * vocab * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
        }
      } else if (b + m == n) {
        forward_head(dm, ws, m - 1, 1, stream);
      }
    }
    position = start + n;
  }

  // The picked id (and, from the device sampler, the step's status: a NaN/+inf logit throws the
  // CPU sampler's error, and the sequence then needs a reset).
  int32_t read_token() {
    CUDA_CHECK(
        cudaMemcpyAsync(token_host, token.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    if (pick != kArgmax) sampler->enqueue_status_readback(stream);
    CUDA_CHECK(cudaEventRecord(token_ready, stream));
    CUDA_CHECK(cudaEventSynchronize(token_ready));
    if (pick != kArgmax) {
      try {
        sampler->check();
      } catch (...) {
        have_token = false;
        throw;
      }
    }
    return *token_host;
  }

  void reset_position() {
    position = 0;
    have_token = false;
    CUDA_CHECK(cudaMemsetAsync(pos.get(), 0, sizeof(int), stream));
    sampler->reset_history(stream);
  }
};

CudaBackend::CudaBackend(const Model& model, const CudaOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}

CudaBackend::~CudaBackend() = default;

BackendInfo CudaBackend::info() const {
  BackendInfo i;
  i.device = "cuda";
  i.device_name = impl_->device.name;
  i.driver = impl_->device.driver;
  return i;
}

int CudaBackend::n_ctx() const {
  return impl_->n_ctx;
}

int CudaBackend::position() const {
  return impl_->position;
}

void CudaBackend::reset(const SamplerParams& params) {
  Impl& s = *impl_;
  Sampler validate(params, s.cfg.vocab_size);  // same parameter errors as the CPU backend
  const Impl::Pick pick = Impl::pick_for(params);
  s.capture_decode_graph(pick);  // once per kind of pick; a no-op afterwards
  s.params = params;
  s.pick = pick;
  s.reset_position();
  // One small host -> device copy per request (not per token): the params the graph reads.
  if (pick != Impl::kArgmax) s.sampler->set_params(params, s.stream);
}

int32_t CudaBackend::prefill(std::span<const int32_t> tokens) {
  Impl& s = *impl_;
  s.check_prompt(tokens, s.position);
  const int start = s.position;
  const int n = static_cast<int>(tokens.size());
  if (s.pick != Impl::kArgmax) s.sampler->require_room(n + 1);
  s.run_tokens(tokens, nullptr);  // *pos = start + n on the device: the sampler's step
  if (s.pick == Impl::kArgmax) {
    argmax(s.ws.logits, s.cfg.vocab_size, s.token.get(), nullptr, 0, s.stream,
           s.argmax_scratch.get());
  } else {
    // The CPU backend's history: prompt ids appended before the pick, the pick after it.
    s.sampler->append_prompt(s.ids.get() + start, n, s.stream);
    s.sampler->enqueue(s.ws.logits, s.token.get(), s.pos.get(), 0, s.pick == Impl::kPenalizedArgmax,
                       s.stream);
    s.sampler->note_picks(1);
  }
  const int32_t id = s.read_token();
  s.have_token = true;
  return id;
}

int32_t CudaBackend::decode() {
  Impl& s = *impl_;
  if (!s.have_token) throw Error("decode: no token sampled yet (call prefill first)");
  if (s.position + 1 > s.n_ctx)
    throw Error("context full: " + std::to_string(s.position) +
                " + 1 tokens exceed the context length " + std::to_string(s.n_ctx) +
                " (use --ctx)");
  if (s.pick != Impl::kArgmax) s.sampler->require_room(1);
  s.capture_decode_graph(s.pick);  // no-op once captured (reset() captures it)
  if (s.fault == Fault::htod_per_token)
    CUDA_CHECK(cudaMemcpyAsync(s.fault_scratch.get(), s.token_host, sizeof(int32_t),
                               cudaMemcpyHostToDevice, s.stream));
  CUDA_CHECK(cudaGraphLaunch(s.graph_execs[s.pick], s.stream));
  if (s.pick != Impl::kArgmax) s.sampler->note_picks(1);
  s.position += 1;  // the graph advanced *pos, also when the status read back below is an error
  return s.read_token();
}

double CudaBackend::time_decode_steps(int steps) {
  Impl& s = *impl_;
  if (!s.have_token) throw Error("time_decode_steps: call prefill first");
  if (steps < 1 || s.position + steps > s.n_ctx)
    throw Error("time_decode_steps: steps exceed the context");
  if (s.pick != Impl::kArgmax) s.sampler->require_room(steps);
  s.capture_decode_graph(s.pick);  // before the timed region
  CUDA_CHECK(cudaEventRecord(s.t_begin, s.stream));
  for (int i = 0; i < steps; ++i) CUDA_CHECK(cudaGraphLaunch(s.graph_execs[s.pick], s.stream));
  if (s.pick != Impl::kArgmax) s.sampler->note_picks(steps);
  CUDA_CHECK(cudaEventRecord(s.t_end, s.stream));
  CUDA_CHECK(cudaEventSynchronize(s.t_end));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, s.t_begin, s.t_end));
  s.position += steps;
  (void)s.read_token();
  return ms / steps;
}

CudaBackend::GraphStats CudaBackend::decode_graph_stats() {
  impl_->capture_decode_graph(impl_->pick);
  const cudaGraph_t graph = impl_->graphs[impl_->pick];
  size_t n = 0;
  CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  GraphStats g;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    CUDA_CHECK(cudaGraphNodeGetType(node, &type));
    if (type == cudaGraphNodeTypeKernel)
      ++g.kernels;
    else if (type == cudaGraphNodeTypeMemcpy)
      ++g.memcpys;
    else if (type == cudaGraphNodeTypeMemset)
      ++g.memsets;
    else
      ++g.other;
  }
  return g;
}

std::vector<float> CudaBackend::logits(std::span<const int32_t> tokens) {
  Impl& s = *impl_;
  s.reset_position();
  s.check_prompt(tokens, 0);
  std::vector<float> out(tokens.size() * static_cast<size_t>(s.cfg.vocab_size));
  s.run_tokens(tokens, &out);
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
  return out;
}

namespace {

// CUDA-event timer on the backend's stream: measures GPU time of the work enqueued between
// start() and stop_ms(), independent of host-side scheduling.
class CudaTimer : public Timer {
 public:
  explicit CudaTimer(cudaStream_t stream) : stream_(stream) {
    CUDA_CHECK(cudaEventCreate(&begin_));
    CUDA_CHECK(cudaEventCreate(&end_));
  }
  ~CudaTimer() override {
    cudaEventDestroy(begin_);
    cudaEventDestroy(end_);
  }
  void start() override { CUDA_CHECK(cudaEventRecord(begin_, stream_)); }
  double stop_ms() override {
    CUDA_CHECK(cudaEventRecord(end_, stream_));
    CUDA_CHECK(cudaEventSynchronize(end_));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, begin_, end_));
    return ms;
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
};

}  // namespace

std::unique_ptr<Timer> CudaBackend::make_timer() const {
  return std::make_unique<CudaTimer>(impl_->stream);
}

MemoryReport CudaBackend::memory_report() const {
  const CudaMemoryReport c = cuda_memory_report();
  MemoryReport r;
  r.weight_memory = c.weight_alloc_flag == "CU_MEM_ATTACH_GLOBAL" ? "managed" : "device";
  r.weights = c.weight_bytes;
  r.kv_cache = c.kv_cache_bytes;
  r.workspace = c.workspace_bytes;
  r.context = 0;  // not measured here (the verify probe takes the NVML baseline)
  return r;
}

CudaMemoryReport CudaBackend::cuda_memory_report() const {
  const Impl& s = *impl_;
  CudaMemoryReport r;
  const ArenaStats& a = s.arena->stats();
  r.weight_bytes = a.bytes;
  r.upload_seconds = a.upload_seconds;
  r.upload_gb_per_s = a.upload_gb_per_s;
  r.weight_alloc_flag = a.alloc_flag;
  if (s.fault == Fault::bad_flag && r.weight_alloc_flag == "CU_MEM_ATTACH_GLOBAL")
    r.weight_alloc_flag = "cu_mem_attach_global";
  r.kv_cache_bytes = s.k_cache.bytes() + s.v_cache.bytes();
  r.workspace_bytes = s.workspace_bytes();
  return r;
}

}  // namespace resident::cuda
