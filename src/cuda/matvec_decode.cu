// Decode matvec: each row's 32-blocks split over a thread block (docs/perf.md, "CUDA decode,
// round 3").
//
// Why: timing probes inside the real decode graph (RESIDENT_DECODE_PROBE) put the previous
// decode kernel (a weight stream, one k-quant storage block per lane and a few rows per warp; in
// git history as matvec_stream.cu) at 15 us for the down projection (11.3 MB) and 11 us for
// gate+up (15.5 MB), 3-4x their DRAM time, while a kernel boundary costs only ~0.1 us: long
// per-lane chains on few warps per SM.
//
// Here rows form groups of R consecutive rows of one matrix (R * n/32 ~ 3 blocks of 32 per
// thread), and one wave of 256-thread blocks takes the groups in turn. A block copies a group's
// bytes into shared memory with coalesced 16-byte cp.async (the first one before waiting for the
// previous kernel: weights are never written, so the DRAM reads overlap the predecessor's tail;
// each next one while the current group is computed), then thread t computes the partials of
// 32-blocks t, t + 256, ... of the group's rows with the format's own decoder. After a barrier,
// thread i adds row i's partials p_0, p_1, ... in j order from 0.0f: the spec's sequential sum,
// bit for bit the CPU's and matvec()'s.
#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/legacy_switch.h"
#include "cuda/matvec_decode.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quant_blocks.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerThread = 3;  // target 32-blocks per thread: rows per block = 768 / (n/32)
constexpr int kMaxRows = 64;
// Register budget: 4 thread blocks per SM (<= 64 registers). A budget of 5 for the one-format
// kernels (3403bbd) was slower: tg128 846-856 vs 870-874, @ d4096 598-600 vs 645-646
// (docs/perf.md, round 6; Q6_K squeezed from 62 to 48 registers).
constexpr int kMinBlocksPerSm = 4;
constexpr int kSpreadPct = 200;  // spread_rows: groups per SM (in %) wanted where rows allow

struct Params {
  const uint8_t* w[kMaxDecodeSegments];
  float* out[kMaxDecodeSegments];
  const float* bias[kMaxDecodeSegments];
  int64_t rows[kMaxDecodeSegments];
  int64_t group_end[kMaxDecodeSegments];  // cumulative group counts
  int64_t row_bytes[kMaxDecodeSegments];  // of each segment's format
  int acc_mask;                           // bit s: segment s accumulates into out
  int alt_mask;                           // bit s: segment s is in the launch's second format
  int n_segments;
  int n_blocks;         // 32-blocks per row
  int group_rows;       // R
  int part_stride;      // odd >= n_blocks (conflict-free column reads in the sums)
  int act_bytes;        // staged activation blocks, 16-byte multiple
  bool rows_aligned16;  // every first-format row starts 16-byte aligned (load_q4k_a16)
  int w_bytes;          // staged weight bytes: R of the longest rows at any 16-byte alignment, x16
  const numerics::ActBlock* xq;
  bool act_chunks16;       // xq 16-byte aligned and n_blocks * 40 a multiple of 16
  int n_bufs;              // weight buffers: 2, or 1 when every block takes one group
  bool stage_before_wait;  // the first group's copy before the PDL wait (else after it)
  bool early_row_loads;    // bias and residual loaded at the group's start (else at its end)
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem) : "memory");
}

// Group g: rows [first, first + n) of segment seg, bytes [start, start + n * row_bytes).
struct Group {
  int seg;
  int n;
  int64_t first;
  const uint8_t* start;
  int64_t row_bytes;
  bool alt;  // the segment's format is the launch's second one
};

__device__ __forceinline__ Group locate(const Params& p, int64_t g) {
  int s = 0;
  while (s + 1 < p.n_segments && g >= p.group_end[s]) ++s;
  const int64_t first = (g - (s == 0 ? 0 : p.group_end[s - 1])) * p.group_rows;
  const int64_t left = p.rows[s] - first;
  return {s,
          static_cast<int>(left < p.group_rows ? left : p.group_rows),
          first,
          p.w[s] + first * p.row_bytes[s],
          p.row_bytes[s],
          ((p.alt_mask >> s) & 1) != 0};
}

// The group's bytes into `buf`: 16-byte chunks of their aligned cover, one chunk per thread in
// turn (coalesced), as one cp.async group. A chunk holding a byte of the rows cannot cross a
// page, but past the tensor's last row it could leave the allocation: that one is bytewise.
__device__ __forceinline__ void stage_group(const Params& p, const Group& gr, uint8_t* buf) {
  const uint8_t* end = gr.start + gr.n * gr.row_bytes;
  const uint8_t* a0 =
      reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(gr.start) & ~uintptr_t{15});
  const int n_chunks = static_cast<int>((end - a0 + 15) / 16);
  const bool tensor_end = gr.first + gr.n == p.rows[gr.seg];
  for (int c = threadIdx.x; c < n_chunks; c += kThreads) {
    const uint8_t* src = a0 + 16 * c;
    if (tensor_end && src + 16 > end) {
      for (int b = 0; b < 16; ++b) buf[16 * c + b] = src + b < end ? src[b] : 0;
    } else {
      cp_async16(buf + 16 * c, src);
    }
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Q4_K's 32-block j (blocks::Q4_K::load, the same fields) for a row staged at a 16-byte aligned
// address: its 32 quant bytes as two 16-byte loads instead of eight 4-byte ones (ncu, round 5:
// the 4-byte loads of a warp cost 2 shared-memory wavefronts each, the ideal being 1), and the
// super-block's 16 header bytes (d, dmin, scales) as one.
__device__ __forceinline__ blocks::Q4_K::Block load_q4k_a16(const uint8_t* row, int64_t j) {
  const uint32_t uj = static_cast<uint32_t>(j);  // 0 <= j < 2^32: unsigned / and %
  const uint8_t* b = row + (uj / 8) * blocks::Q4_K::kBlockBytes;
  const int sub = static_cast<int>(uj % 8);
  blocks::Q4_K::Block out;
  const uint4 head = *reinterpret_cast<const uint4*>(b);
  blocks::Q4_K::header_fields(head.x, head.y, head.z, head.w, sub, &out.dsc, &out.dm);
  const uint4* qs = reinterpret_cast<const uint4*>(b + 16 + 32 * (sub / 2));
  const uint4 x = qs[0], y = qs[1];
  const uint32_t v[8] = {x.x, x.y, x.z, x.w, y.x, y.y, y.z, y.w};
  const int shift = 4 * (sub & 1);
#pragma unroll
  for (int k = 0; k < 8; ++k) out.w[k] = static_cast<int>((v[k] >> shift) & 0x0f0f0f0fu);
  return out;
}

// Eight consecutive 32-bit words from a 2-byte aligned shared-memory address, each shifted
// right by `shift` (< 16; the bits that shift in from the next word are the caller's to mask):
// the aligned words that cover them, joined by funnel shifts, 8 or 9 loads instead of 16 halves.
// Reads stay inside the 4-byte cover of the 32 bytes.
__device__ __forceinline__ void load_8_words_a2(const uint8_t* p, uint32_t (&w)[8],
                                                unsigned shift) {
  // p - mis, not the address masked: the pointer keeps its memory space, so the loads stay LDS
  // (masked, they became generic loads).
  const unsigned mis = static_cast<unsigned>(reinterpret_cast<uintptr_t>(p) & 2);
  const uint32_t* aligned = reinterpret_cast<const uint32_t*>(p - mis);
  uint32_t x[9];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = aligned[i];
  x[8] = mis != 0 ? aligned[8] : 0u;
#pragma unroll
  for (int i = 0; i < 8; ++i) w[i] = __funnelshift_r(x[i], x[i + 1], mis * 8 + shift);
}

// Q6_K's 32-block j (blocks::Q6_K::load, the same fields) with fewer instructions: quants as
// aligned words (the 210-byte blocks leave every other one 2 mod 4) with the 4- and 2-bit
// shifts folded into the funnel shifts, both scales in one load, unsigned index math. ncu of
// the LM head (a Q6_K matvec_decode) had it issue-bound: 72% SM throughput, 51% DRAM.
__device__ __forceinline__ blocks::Q6_K::Block load_q6k(const uint8_t* row, int64_t j) {
  const uint32_t uj = static_cast<uint32_t>(j);  // 0 <= j < 2^32: unsigned / and %
  const uint8_t* b = row + (uj / 8) * blocks::Q6_K::kBlockBytes;
  const int sub = static_cast<int>(uj % 8);
  const int h = sub / 4, k = sub % 4;
  uint32_t lw[8], hw[8];
  load_8_words_a2(b + 64 * h + 32 * (k & 1), lw, 4 * (k >> 1));
  load_8_words_a2(b + 128 + 32 * h, hw, 2 * k);
  blocks::Q6_K::Block out;
#pragma unroll
  for (int w = 0; w < 8; ++w)
    out.w[w] = static_cast<int>((lw[w] & 0x0f0f0f0fu) | ((hw[w] & 0x03030303u) << 4));
  const uint16_t sc = blocks::load_u16(b + 192 + 2 * sub);
  out.sc_lo = static_cast<int8_t>(sc & 0xffu);
  out.sc_hi = static_cast<int8_t>(sc >> 8);
  out.d = blocks::half_to_float(blocks::load_u16(b + 208));
  return out;
}

// The decode kernel's loader of format B: B::load, or the decode-specific one above.
template <typename B>
__device__ __forceinline__ typename B::Block decode_load(const uint8_t* row, int64_t j) {
  if constexpr (std::is_same_v<B, blocks::Q6_K>)
    return load_q6k(row, j);
  else
    return B::load(row, j);
}

// One wave of thread blocks; block b takes groups b, b + gridDim.x, ... The next group's bytes
// are copied while the current one is computed (two buffers). The first copy is issued before
// the PDL wait: weights are never written, so it overlaps the previous kernel's tail.
// B2 (when not B): the format of the segments in p.alt_mask (q/k in Q4_K with v in Q6_K: one
// launch instead of two in a row); a group's rows are all of one segment, so the choice is
// uniform per group.
template <typename B, typename B2>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) matvec_decode_kernel(const Params p) {
  extern __shared__ uint4 smem[];
  pdl_trigger();
  const int tid = threadIdx.x;
  const int nb = p.n_blocks;
  auto* a_s = reinterpret_cast<numerics::ActBlock*>(smem);
  uint8_t* w_s = reinterpret_cast<uint8_t*>(smem) + p.act_bytes;  // n_bufs buffers of w_bytes
  float* part = reinterpret_cast<float*>(w_s + p.n_bufs * p.w_bytes);
  const int64_t n_groups = p.group_end[p.n_segments - 1];

  const int i0 = tid / nb, j0 = tid - i0 * nb, step_i = kThreads / nb, step_j = kThreads % nb;
  int64_t g = blockIdx.x;
  Group cur = locate(p, g);
  if (p.stage_before_wait) stage_group(p, cur, w_s);

  pdl_wait();  // the activation blocks come from the previous kernel
  if (!p.stage_before_wait) stage_group(p, cur, w_s);
  // The activation blocks, copied by cp.async as one group (waited for with the first weight
  // group): all in flight at once. Loaded through registers, a thread's share came in rounds of
  // four loads, each round waiting for the last (down, n = 8960: three rounds).
  {
    const int n_bytes = nb * static_cast<int>(sizeof(numerics::ActBlock));
    const uint8_t* xs = reinterpret_cast<const uint8_t*>(p.xq);
    uint8_t* as = reinterpret_cast<uint8_t*>(a_s);
    if (p.act_chunks16) {
      for (int c = tid; c < n_bytes / 16; c += kThreads) cp_async16(as + 16 * c, xs + 16 * c);
    } else {
      for (int c = tid; c < n_bytes / 4; c += kThreads) cp_async4(as + 4 * c, xs + 4 * c);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }

  for (int k = 0; g < n_groups; ++k, g += gridDim.x) {
    // Row tid's bias and residual, loaded now (after the PDL wait: the residual is written by
    // earlier kernels) so that their latency hides behind the partials, not after them.
    float bias = 0.0f, prior = 0.0f;
    const bool has_bias = p.bias[cur.seg] != nullptr, accumulate = (p.acc_mask >> cur.seg & 1) != 0;
    if (p.early_row_loads && tid < cur.n) {
      if (has_bias) bias = p.bias[cur.seg][cur.first + tid];
      if (accumulate) prior = p.out[cur.seg][cur.first + tid];
    }
    uint8_t* buf = w_s + (p.n_bufs == 2 ? k & 1 : 0) * p.w_bytes;
    // One buffer (balance_rows planned one group per block): a further group, should the grid be
    // smaller than planned, is copied only now, its buffer read before the last barrier.
    if (p.n_bufs == 1 && k > 0) stage_group(p, cur, buf);
    const bool has_next = p.n_bufs == 2 && g + gridDim.x < n_groups;
    Group next{};
    if (has_next) {  // its buffer was last read before the previous iteration's second barrier
      next = locate(p, g + gridDim.x);
      stage_group(p, next, w_s + ((k + 1) & 1) * p.w_bytes);
      asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    }
    // Every thread's chunks of this group have landed; also: the previous group's sums have
    // read every partial, so they can be overwritten.
    __syncthreads();

    const uint8_t* rows = buf + (reinterpret_cast<uintptr_t>(cur.start) & 15);
    // Item it = i * nb + j, stepped by kThreads without a division per item (i0, j0 and the
    // step's quotient and remainder come once per block).
    const auto partials = [&](auto load, auto partial) {
      for (int i = i0, j = j0; i < cur.n;) {
        part[i * p.part_stride + j] = partial(load(rows + i * cur.row_bytes, j), a_s[j]);
        i += step_i, j += step_j;
        if (j >= nb) j -= nb, ++i;
      }
    };
    // The first format's partials (Q4_K: 16-byte quant loads where the rows allow).
    const auto first_format = [&] {
      const auto partial = [](const typename B::Block& b, const numerics::ActBlock& a) {
        return B::partial(b, a);
      };
      if constexpr (std::is_same_v<B, blocks::Q4_K>) {
        if (p.rows_aligned16) {
          partials([](const uint8_t* row, int64_t j) { return load_q4k_a16(row, j); }, partial);
          return;
        }
      }
      partials([](const uint8_t* row, int64_t j) { return decode_load<B>(row, j); }, partial);
    };
    if constexpr (std::is_same_v<B, B2>) {
      first_format();
    } else if (cur.alt) {
      partials([](const uint8_t* row, int64_t j) { return decode_load<B2>(row, j); },
               [](const typename B2::Block& b, const numerics::ActBlock& a) {
                 return B2::partial(b, a);
               });
    } else {
      first_format();
    }
    __syncthreads();

    if (tid < cur.n) {  // thread i: row first + i, the spec's sequential sum from 0.0f in j order
      const float* pi = part + tid * p.part_stride;
      float acc = 0.0f;
      int j = 0;
      // Eight loads issued together, then their eight adds in order. (Loading the next eight
      // while adding measured slower: docs/perf.md, round 7.)
      for (; j + 8 <= nb; j += 8) {
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = pi[j + e];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc = acc + v[e];
      }
      for (; j < nb; ++j) acc = acc + pi[j];
      const int64_t r = cur.first + tid;
      float* o = p.out[cur.seg] + r;
      if (!p.early_row_loads) {
        if (has_bias) bias = p.bias[cur.seg][r];
        if (accumulate) prior = *o;
      }
      float y = acc;
      if (has_bias) y = y + bias;
      if (accumulate) y = prior + y;
      *o = y;
    }
    cur = next;
  }
}

int round16(int64_t v) {
  return static_cast<int>((v + 15) & ~int64_t{15});
}

// Resident thread blocks per SM for a shared-memory size, asked once per (kernel, size).
template <typename B, typename B2>
int blocks_per_sm(int smem) {
  static std::mutex mutex;
  static std::unordered_map<int, int> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(smem);
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, matvec_decode_kernel<B, B2>,
                                                           kThreads, smem));
  cache.emplace(smem, per_sm);
  return per_sm;
}

template <typename B, typename B2 = B>
void launch(const Params& p, int64_t groups, cudaStream_t stream) {
  const int smem =
      p.act_bytes + p.n_bufs * p.w_bytes + p.group_rows * p.part_stride * 4;  // <= 48 KB
  const int per_sm = blocks_per_sm<B, B2>(smem);
  if (per_sm < 1) throw Error("cuda matvec_decode: a thread block does not fit on an SM");
  const int64_t grid = std::min<int64_t>(groups, static_cast<int64_t>(per_sm) * current_sm_count());
  launch_pdl(matvec_decode_kernel<B, B2>, dim3(static_cast<unsigned>(grid)), dim3(kThreads), smem,
             stream, p);
}

// Shared memory of a block: activation blocks, `bufs` buffers of R rows of weights (+16 for the
// alignment shift), R rows of partials.
int64_t smem_bytes(int64_t n_blocks, int64_t row_bytes, int rows, int bufs = 2) {
  return round16(n_blocks * static_cast<int64_t>(sizeof(numerics::ActBlock))) +
         bufs * round16(rows * row_bytes + 16) + rows * (n_blocks | 1) * 4;
}

// Rows per thread block: about kBlocksPerThread 32-blocks per thread, fewer where shared memory
// runs out (0: not even one row fits). RESIDENT_DECODE_TUNE=n overrides kBlocksPerThread.
int rows_per_block(int64_t n_blocks, int64_t row_bytes) {
  static const int per_thread = [] {
    const char* v = std::getenv("RESIDENT_DECODE_TUNE");
    const int t = v ? std::atoi(v) : 0;
    return t >= 1 && t <= 64 ? t : kBlocksPerThread;
  }();
  int rows =
      static_cast<int>(std::clamp<int64_t>(kThreads * per_thread / n_blocks, 1, int64_t{kMaxRows}));
  while (rows > 0 && smem_bytes(n_blocks, row_bytes, rows) > kMaxDecodeSmem) --rows;
  return rows;
}

// Groups of `rows` rows that the launch's segments make (a group never spans two segments).
int64_t count_groups(const MatvecDecodeArgs& a, int64_t rows) {
  int64_t g = 0;
  for (int s = 0; s < a.n_segments; ++s) g += (a.seg[s].rows + rows - 1) / rows;
  return g;
}

// Small matrices (o: 1536 rows, q/k/v: 2048) make fewer groups of R rows than the GPU has SMs
// (96, 128 for 132 SMs): one latency-bound group per block, some SMs idle. Halve R while the
// launch has fewer than kSpreadPct / 100 x SMs groups, trading the per-thread work of a group
// (R x n/32 items over 256 threads) for more groups in flight. 200% (o and q/k/v: R = 4) since
// round 7: 947.6 vs 927.9 tok/s at 100% (R = 8), @ d4096 761.7 vs 747.4 (docs/perf.md; at
// round 6, before the balanced rows, 100% had won at depth 0). RESIDENT_DECODE_SPREAD=pct sets
// it (0: off).
int spread_rows(int rows, const MatvecDecodeArgs& a) {
  static const int spread = [] {
    const char* v = std::getenv("RESIDENT_DECODE_SPREAD");
    return v && *v ? std::clamp(std::atoi(v), 0, 6400) : kSpreadPct;
  }();
  const int64_t want = static_cast<int64_t>(spread) * current_sm_count() / 100;
  while (rows > 1 && count_groups(a, rows) < want) rows /= 2;
  return rows;
}

// Launches whose groups of R rows take more than one wave (gate/up: 1,120 groups of 16 rows for
// 528 blocks; down: 768 of 2): the blocks that take one group more than the others set the
// kernel's length (3 groups of 16 = 48 rows where 34 would do). Pick the fewest rounds (groups
// per block) whose R = ceil(rows / (rounds x wave)) fits the shared memory (one buffer when a
// block takes one group) and at most doubles R's 32-blocks per thread: gate/up 2 rounds of 17,
// down 1 of 3. Returns the rows and sets *bufs. RESIDENT_CUDA_LEGACY=balance: R as it was.
int balance_rows(int rows, int64_t row_bytes, const MatvecDecodeArgs& a, int* bufs) {
  static const bool legacy = use_legacy("balance");
  *bufs = 2;
  const int64_t groups = count_groups(a, rows);
  int64_t total = 0;
  for (int s = 0; s < a.n_segments; ++s) total += a.seg[s].rows;
  const int64_t wave = int64_t{kMinBlocksPerSm} * current_sm_count();
  if (legacy || groups <= wave) return rows;
  const int64_t nb = a.n / 32;
  for (int64_t rounds = 1; rounds * wave < groups; ++rounds) {
    // Rounding per segment adds up to one group per segment: leave room for it.
    const int64_t slots = rounds * wave - a.n_segments;
    const int64_t r = (total + slots - 1) / slots;
    const int b = rounds == 1 ? 1 : 2;
    if (r > 2 * rows || r > kMaxRows ||
        smem_bytes(nb, row_bytes, static_cast<int>(r), b) > kMaxDecodeSmem)
      continue;
    *bufs = b;
    return static_cast<int>(r);
  }
  return rows;
}

}  // namespace

bool matvec_decode_pair_supported(quant::Type type, quant::Type alt_type, int64_t n) {
  if (type != quant::Type::Q4_K || alt_type != quant::Type::Q6_K) return false;
  if (!matvec_decode_supported(type, n) || !matvec_decode_supported(alt_type, n)) return false;
  return true;
}

bool matvec_decode_supported(quant::Type type, int64_t n) {
  if (!quant::uses_int8_activations(type) || n <= 0 || n % 32 != 0) return false;
  const auto& info = quant::type_info(type);
  if (n % info.block_elems != 0) return false;
  return rows_per_block(n / 32, static_cast<int64_t>(quant::row_bytes(info, n))) > 0;
}

void matvec_decode(const MatvecDecodeArgs& a, cudaStream_t stream) {
  const auto& info = quant::type_info(a.type);
  const std::string what = "cuda matvec_decode (" + std::string(info.name) + "): ";
  if (!matvec_decode_supported(a.type, a.n))
    throw Error(what + "row length " + std::to_string(a.n) + " not supported");
  if (!a.xq) throw Error(what + "null activation blocks");
  if (a.n_segments < 1 || a.n_segments > kMaxDecodeSegments)
    throw Error(what + "1 to " + std::to_string(kMaxDecodeSegments) + " segments");
  bool any_alt = false;
  for (int s = 0; s < a.n_segments; ++s) any_alt = any_alt || a.seg[s].alt;
  const bool mixed = any_alt && a.alt_type != a.type;
  if (mixed && !matvec_decode_pair_supported(a.type, a.alt_type, a.n))
    throw Error(what + "no launch for this pair of formats");
  Params p = {};
  const int64_t rb = static_cast<int64_t>(quant::row_bytes(info, a.n));
  const int64_t rb_alt =
      mixed ? static_cast<int64_t>(quant::row_bytes(quant::type_info(a.alt_type), a.n)) : rb;
  const int64_t rb_max = std::max(rb, rb_alt);
  p.n_blocks = static_cast<int>(a.n / 32);
  p.n_segments = a.n_segments;
  p.group_rows =
      balance_rows(spread_rows(rows_per_block(p.n_blocks, rb_max), a), rb_max, a, &p.n_bufs);
  int64_t groups = 0;
  for (int s = 0; s < a.n_segments; ++s) {
    const DecodeSegment& g = a.seg[s];
    if (!g.w || !g.out) throw Error(what + "null weight or output pointer");
    if (g.rows < 1 || g.rows > (int64_t{1} << 31)) throw Error(what + "rows out of range");
    // Q4_K/Q5_K read 32-bit words: their rows must start 4-byte aligned.
    if (reinterpret_cast<uintptr_t>(g.w) % 4 != 0) throw Error(what + "weights not 4-byte aligned");
    const bool alt = mixed && g.alt;
    p.w[s] = static_cast<const uint8_t*>(g.w);
    p.out[s] = g.out;
    p.bias[s] = g.bias;
    p.rows[s] = g.rows;
    p.row_bytes[s] = alt ? rb_alt : rb;
    groups += (g.rows + p.group_rows - 1) / p.group_rows;
    p.group_end[s] = groups;
    if (g.accumulate) p.acc_mask |= 1 << s;
    if (alt) p.alt_mask |= 1 << s;
  }
  if (groups > (int64_t{1} << 31) - 1) throw Error(what + "too many rows");
  p.part_stride = p.n_blocks | 1;
  p.act_bytes = round16(static_cast<int64_t>(p.n_blocks) * sizeof(numerics::ActBlock));
  p.w_bytes = round16(p.group_rows * rb_max + 16);
  p.xq = a.xq;
  p.act_chunks16 = reinterpret_cast<uintptr_t>(a.xq) % 16 == 0 &&
                   p.n_blocks * sizeof(numerics::ActBlock) % 16 == 0;
  // RESIDENT_CUDA_LEGACY=prewait: the first group's copy after the PDL wait (8% slower, round 7);
  // rowloads: bias and residual read after the sums (2% slower).
  static const bool late_stage = use_legacy("prewait"), late_rows = use_legacy("rowloads");
  p.stage_before_wait = !late_stage;
  p.early_row_loads = !late_rows;
  // Staged rows sit at their global address mod 16 (stage_group), so they are 16-byte aligned in
  // shared memory when every first-format segment's base and the row length are.
  // RESIDENT_CUDA_LEGACY=q4k16: always the 4-byte loads (A/B runs).
  static const bool legacy16 = use_legacy("q4k16");
  p.rows_aligned16 = !legacy16 && rb % 16 == 0;
  for (int s = 0; s < a.n_segments; ++s)
    if (!((p.alt_mask >> s) & 1))
      p.rows_aligned16 = p.rows_aligned16 && reinterpret_cast<uintptr_t>(a.seg[s].w) % 16 == 0;

  if (mixed) return launch<blocks::Q4_K, blocks::Q6_K>(p, groups, stream);  // the one pair
  switch (a.type) {
    case quant::Type::Q4_0:
      return launch<blocks::Q4_0>(p, groups, stream);
    case quant::Type::Q5_0:
      return launch<blocks::Q5_0>(p, groups, stream);
    case quant::Type::Q8_0:
      return launch<blocks::Q8_0>(p, groups, stream);
    case quant::Type::Q4_K:
      return launch<blocks::Q4_K>(p, groups, stream);
    case quant::Type::Q5_K:
      return launch<blocks::Q5_K>(p, groups, stream);
    case quant::Type::Q6_K:
      return launch<blocks::Q6_K>(p, groups, stream);
    default:
      break;
  }
  throw Error(what + "unsupported type");
}

}  // namespace resident::cuda
