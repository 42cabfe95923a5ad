// Why a separate decode kernel: a decode step reads ~1 GB of weights through ~200 matvecs, and
// the block-staged kernel of matvec.cu (now behind RESIDENT_CUDA_LEGACY=stream) copied a block's
// rows, waited, then computed, with a launch per matrix.
//
// Here one launch sized to a single wave covers one to three matrices with the same input (q/k/v,
// gate/up). Rows form groups of up to 8 consecutive rows of one matrix (about 4 KB of weights;
// one row when rows are longer), and each warp owns a contiguous run of groups. A warp streams
// its run through a ring of `depth` group slots in its own shared memory: lane l issues cp.async
// for the 16-byte chunks l, l + 32, ... of the group's bytes, so while it computes one group the
// next is in flight. The first slots are filled before pdl_wait (weights are never written), so
// that copy overlaps the previous kernel's tail. No block-wide barrier after the start.
//
// The arithmetic is the spec's (docs/numerics.md): the partials p_j = B::partial(B::load(row, j),
// a_j) of every (row, block) pair of the group are spread over the lanes, one storage block per
// lane (a k-quant super-block's 8 sub-blocks together, so its scales and shared quant bytes are
// read once), and stored in shared memory; then lane i adds row i's p_0, p_1, ... in j order from
// 0.0f. The sums of a group's rows run side by side, bit for bit the CPU's.
//
// Measured (docs/perf.md, "CUDA decode, round 2"): +3.6% over the staged kernel; these matvecs
// are bound by the latency of each warp's serial work, not by DRAM.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/matvec_stream.cuh"
#include "cuda/pdl.cuh"
#include "cuda/quant_blocks.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kWarps = 8;             // warps per thread block
constexpr int kMaxGroupRows = 8;      // rows a warp works on at once
constexpr int kGroupTarget = 4096;    // bytes of weights per group (fewer rows for long rows)
constexpr int kMaxDepth = 4;          // groups in flight per warp
constexpr int kMaxSmem = 200 * 1024;  // opt-in dynamic shared memory per block (H200: 227 KB)

struct Params {
  const uint8_t* w[kMaxStreamSegments];
  float* out[kMaxStreamSegments];
  const float* bias[kMaxStreamSegments];
  int64_t rows[kMaxStreamSegments];
  int64_t group_end[kMaxStreamSegments];  // cumulative group counts
  int acc_mask;                           // bit s: segment s accumulates into out
  int n_segments;
  int64_t row_bytes;
  int n_blocks;     // 32-blocks per row
  int group_rows;   // R: rows per group (a group never spans two segments)
  int depth;        // groups in flight per warp
  int slot_bytes;   // >= the 16-byte chunks covering R rows at any alignment
  int part_stride;  // odd >= n_blocks: one row's partials (odd: conflict-free column reads)
  int warp_bytes;   // depth * slot_bytes + R * part_stride * 4, 16-byte multiple
  int act_bytes;    // staged activation blocks, 16-byte multiple
  const numerics::ActBlock* xq;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most `pending` of this thread's copy groups are still in flight.
__device__ __forceinline__ void cp_async_wait(int pending) {
  switch (pending) {
    case 0:
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
      break;
    case 1:
      asm volatile("cp.async.wait_group 1;\n" ::: "memory");
      break;
    case 2:
      asm volatile("cp.async.wait_group 2;\n" ::: "memory");
      break;
    default:
      asm volatile("cp.async.wait_group 3;\n" ::: "memory");
      break;
  }
}

// Group g: rows [first, first + n) of segment seg, bytes [start, start + n * row_bytes).
struct Group {
  int seg;
  int n;
  int64_t first;
  const uint8_t* start;
};

__device__ __forceinline__ Group locate(const Params& p, int64_t g) {
  int s = 0;
  while (s + 1 < p.n_segments && g >= p.group_end[s]) ++s;
  const int64_t first = (g - (s == 0 ? 0 : p.group_end[s - 1])) * p.group_rows;
  const int64_t left = p.rows[s] - first;
  return {s, static_cast<int>(left < p.group_rows ? left : p.group_rows), first,
          p.w[s] + first * p.row_bytes};
}

// The warp copies the group's bytes into `slot`: lane l issues the 16-byte chunks l, l + 32, ...
// of the aligned cover. A chunk holding a byte of the range cannot cross a page, so the aligned
// load is safe, except that past the last row of a tensor it could leave the allocation: that one
// chunk is copied bytewise.
__device__ __forceinline__ void issue_group(const Params& p, const Group& gr, uint8_t* slot,
                                            int lane) {
  const uint8_t* end = gr.start + gr.n * p.row_bytes;
  const uint8_t* a0 =
      reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(gr.start) & ~uintptr_t{15});
  const int n_chunks = static_cast<int>((end - a0 + 15) / 16);
  const bool tensor_end = gr.first + gr.n == p.rows[gr.seg];
  for (int c = lane; c < n_chunks; c += 32) {
    const uint8_t* src = a0 + 16 * c;
    if (tensor_end && src + 16 > end) {
      for (int b = 0; b < 16; ++b) slot[16 * c + b] = src + b < end ? src[b] : 0;
    } else {
      cp_async16(slot + 16 * c, src);
    }
  }
}

template <typename B>
__global__ void __launch_bounds__(kWarps * 32) matvec_stream_kernel(const Params p) {
  extern __shared__ uint4 smem[];
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nb = p.n_blocks;
  constexpr int kSub = B::kSubBlocks;
  const int n_storage = nb / kSub;  // storage blocks per row
  auto* a_s = reinterpret_cast<numerics::ActBlock*>(smem);
  uint8_t* slots = reinterpret_cast<uint8_t*>(smem) + p.act_bytes + warp * p.warp_bytes;
  float* part = reinterpret_cast<float*>(slots + p.depth * p.slot_bytes);

  // This warp's run: groups [g_begin, g_end).
  const int64_t n_groups = p.group_end[p.n_segments - 1];
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int64_t g_begin = n_groups * gw / n_warps, g_end = n_groups * (gw + 1) / n_warps;

  // Prologue: the first `depth` groups, one copy group each (empty commits keep the count
  // uniform, so wait(depth - 1) always means "the oldest group has landed").
  for (int i = 0; i < p.depth; ++i) {
    if (g_begin + i < g_end) issue_group(p, locate(p, g_begin + i), slots + i * p.slot_bytes, lane);
    cp_async_commit();
  }
  // Activations are written by the previous kernel: wait for it, then stage them once per block.
  pdl_wait();
  {
    const int* xs = reinterpret_cast<const int*>(p.xq);
    int* as = reinterpret_cast<int*>(a_s);
    const int n_words = nb * static_cast<int>(sizeof(numerics::ActBlock) / 4);
    for (int i = threadIdx.x; i < n_words; i += blockDim.x) as[i] = xs[i];
  }
  __syncthreads();

  for (int64_t g = g_begin; g < g_end; ++g) {
    uint8_t* slot = slots + static_cast<int>((g - g_begin) % p.depth) * p.slot_bytes;
    const Group gr = locate(p, g);
    cp_async_wait(p.depth - 1);
    __syncwarp();  // every lane's chunks of this group are in shared memory
    // Partials of every (row, storage block) pair, spread over the lanes. A k-quant storage
    // block holds 8 sub-blocks: one lane decodes them together, so their shared bytes (scales,
    // d, the quants two sub-blocks share) are read once.
    const uint8_t* base = slot + (reinterpret_cast<uintptr_t>(gr.start) & 15);
    for (int it = lane; it < gr.n * n_storage; it += 32) {
      const int i = it / n_storage, sb = it - i * n_storage;
      const uint8_t* row = base + i * p.row_bytes;
      float pk[kSub];
      if constexpr (kSub == 1) {
        pk[0] = B::partial(B::load(row, sb), a_s[sb]);
      } else {
        const uint8_t* blk = row + sb * B::kBlockBytes;
#pragma unroll
        for (int k = 0; k < kSub; ++k) pk[k] = B::partial(B::load(blk, k), a_s[kSub * sb + k]);
      }
#pragma unroll
      for (int k = 0; k < kSub; ++k) part[i * p.part_stride + kSub * sb + k] = pk[k];
    }
    __syncwarp();  // partials visible to their row's lane; the slot is free again
    if (g + p.depth < g_end) issue_group(p, locate(p, g + p.depth), slot, lane);
    cp_async_commit();
    if (lane < gr.n) {  // lane i: row first + i, the spec's sequential sum from 0.0f in j order
      const float* pi = part + lane * p.part_stride;
      float acc = 0.0f;
      // Eight loads issued together, then their eight adds in order: the chain waits on the
      // shared-memory latency once per eight partials instead of once per partial.
      int j = 0;
      for (; j + 8 <= nb; j += 8) {
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = pi[j + k];
#pragma unroll
        for (int k = 0; k < 8; ++k) acc = acc + v[k];
      }
      for (; j < nb; ++j) acc = acc + pi[j];
      const int64_t r = gr.first + lane;
      float* o = p.out[gr.seg] + r;
      float y = acc;
      if (p.bias[gr.seg]) y = y + p.bias[gr.seg][r];
      if (p.acc_mask >> gr.seg & 1) y = *o + y;
      *o = y;
    }
    __syncwarp();  // the sums have read every partial before the next group overwrites them
  }
  cp_async_wait(0);  // leave no copy in flight into shared memory that is about to be released
}

int sm_count() {
  static const int n = [] {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    return device_info(dev).sm_count;
  }();
  return n;
}

// Resident thread blocks per SM for a shared-memory size. Asked once per (format, size): the
// decode step launches this kernel ~130 times, and without a graph each launch would repeat
// the occupancy query on the host.
template <typename B>
int blocks_per_sm(int smem) {
  static std::mutex mutex;
  static std::unordered_map<int, int> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(smem);
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, matvec_stream_kernel<B>,
                                                           kWarps * 32, smem));
  cache.emplace(smem, per_sm);
  return per_sm;
}

template <typename B>
void launch(Params p, cudaStream_t stream) {
  static const bool configured = [] {
    CUDA_CHECK(cudaFuncSetAttribute(matvec_stream_kernel<B>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem));
    return true;
  }();
  (void)configured;
  const int smem = p.act_bytes + kWarps * p.warp_bytes;
  const int per_sm = blocks_per_sm<B>(smem);
  if (per_sm < 1) throw Error("cuda matvec_stream: a thread block does not fit on an SM");
  // One wave, but no more warps than row groups.
  const int64_t wave = static_cast<int64_t>(per_sm) * sm_count();
  const int64_t needed = (p.group_end[p.n_segments - 1] + kWarps - 1) / kWarps;
  const unsigned grid = static_cast<unsigned>(std::max<int64_t>(1, std::min(wave, needed)));
  launch_pdl(matvec_stream_kernel<B>, dim3(grid), dim3(kWarps * 32), smem, stream, p);
}

int round16(int64_t v) {
  return static_cast<int>((v + 15) & ~int64_t{15});
}

}  // namespace

bool matvec_stream_supported(quant::Type type, int64_t n) {
  if (!quant::uses_int8_activations(type) || n <= 0 || n % 32 != 0) return false;
  const auto& info = quant::type_info(type);
  if (n % info.block_elems != 0) return false;
  const int64_t slot = round16(static_cast<int64_t>(quant::row_bytes(info, n)) + 16);
  const int64_t n_blocks = n / 32;
  const int64_t smem = round16(n_blocks * static_cast<int64_t>(sizeof(numerics::ActBlock))) +
                       kWarps * round16(slot + 4 * (n_blocks | 1));
  return smem <= kMaxSmem;
}

void matvec_stream(const MatvecStreamArgs& a, cudaStream_t stream) {
  const auto& info = quant::type_info(a.type);
  const std::string what = "cuda matvec_stream (" + std::string(info.name) + "): ";
  if (!matvec_stream_supported(a.type, a.n))
    throw Error(what + "row length " + std::to_string(a.n) + " not supported");
  if (!a.xq) throw Error(what + "null activation blocks");
  if (a.n_segments < 1 || a.n_segments > kMaxStreamSegments)
    throw Error(what + "1 to " + std::to_string(kMaxStreamSegments) + " segments");
  Params p = {};
  p.row_bytes = static_cast<int64_t>(quant::row_bytes(info, a.n));
  p.n_blocks = static_cast<int>(a.n / 32);
  p.n_segments = a.n_segments;
  // RESIDENT_STREAM_TUNE="rows,group_bytes,depth" overrides the three sizes, for tuning sweeps.
  static const std::array<int, 3> tune = [] {
    std::array<int, 3> t{kMaxGroupRows, kGroupTarget, 2};
    if (const char* v = std::getenv("RESIDENT_STREAM_TUNE")) {
      int r = 0, b = 0, d = 0;
      if (std::sscanf(v, "%d,%d,%d", &r, &b, &d) == 3 && r >= 1 && r <= kMaxGroupRows && b >= 1 &&
          d >= 1 && d <= kMaxDepth)
        t = {r, b, d};
    }
    return t;
  }();
  p.group_rows = static_cast<int>(std::clamp<int64_t>(tune[1] / p.row_bytes, 1, tune[0]));
  int64_t groups = 0;
  for (int s = 0; s < a.n_segments; ++s) {
    const StreamSegment& g = a.seg[s];
    if (!g.w || !g.out) throw Error(what + "null weight or output pointer");
    if (g.rows < 1 || g.rows > (int64_t{1} << 31)) throw Error(what + "rows out of range");
    // Q4_K/Q5_K read 32-bit words: their rows must start 4-byte aligned.
    if (reinterpret_cast<uintptr_t>(g.w) % 4 != 0) throw Error(what + "weights not 4-byte aligned");
    p.w[s] = static_cast<const uint8_t*>(g.w);
    p.out[s] = g.out;
    p.bias[s] = g.bias;
    p.rows[s] = g.rows;
    groups += (g.rows + p.group_rows - 1) / p.group_rows;
    p.group_end[s] = groups;
    if (g.accumulate) p.acc_mask |= 1 << s;
  }
  p.slot_bytes = round16(p.group_rows * p.row_bytes + 16);
  p.part_stride = p.n_blocks | 1;
  p.act_bytes = round16(static_cast<int64_t>(p.n_blocks) * sizeof(numerics::ActBlock));
  // Two groups in flight while one is computed where the rows are short; a long row (the
  // 8960-wide down projection) is a whole group's worth of bytes by itself.
  p.depth = p.group_rows * p.row_bytes > tune[1] ? 1 : tune[2];
  auto warp_bytes = [&] {
    return round16(static_cast<int64_t>(p.depth) * p.slot_bytes +
                   static_cast<int64_t>(p.group_rows) * p.part_stride * 4);
  };
  if (p.act_bytes + kWarps * warp_bytes() > kMaxSmem) p.depth = 1;
  p.warp_bytes = warp_bytes();
  if (p.act_bytes + kWarps * p.warp_bytes > kMaxSmem)
    throw Error(what + "row length " + std::to_string(a.n) + " needs too much shared memory");
  p.xq = a.xq;

  switch (a.type) {
    case quant::Type::Q4_0:
      return launch<blocks::Q4_0>(p, stream);
    case quant::Type::Q5_0:
      return launch<blocks::Q5_0>(p, stream);
    case quant::Type::Q8_0:
      return launch<blocks::Q8_0>(p, stream);
    case quant::Type::Q4_K:
      return launch<blocks::Q4_K>(p, stream);
    case quant::Type::Q5_K:
      return launch<blocks::Q5_K>(p, stream);
    case quant::Type::Q6_K:
      return launch<blocks::Q6_K>(p, stream);
    default:
      break;
  }
  throw Error(what + "unsupported type");
}

}  // namespace resident::cuda
