// One thread block of 1024 threads: each thread scans a strided slice keeping its first maximum
// (strictly greater replaces, so its lowest index wins a tie), then a tree over (value, index)
// pairs prefers the larger value and, on equal values, the lower index. The result is the
// sequential scan's answer for any input without NaN.
#include <algorithm>
#include <cfloat>
#include <cstdlib>

#include "cuda/argmax.cuh"
#include "cuda/block_argmax.cuh"
#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "util/error.h"

namespace resident::cuda {
namespace {

constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ logits, int n, int32_t* token, int* pos, int advance) {
  float bv = -INFINITY;
  int bi = n;  // sentinel: loses every tie against a real index
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const float v = logits[i];
    if (argmax_better(v, i, bv, bi)) bv = v, bi = i;
  }
  block_best<kThreads>(&bv, &bi);
  if (threadIdx.x == 0) {
    // All logits -inf (or n == 0 excluded by the launcher): fall back to id 0 like the CPU scan.
    *token = bi < n ? bi : 0;
    if (pos) *pos += advance;
  }
}

// The same answer from `gridDim.x` blocks (PDL-launched): block b scans slice b of the logits
// and publishes its (value, index); the last block to count itself in scratch[0] reduces them.
// `argmax_better` is a total order on (value, index) pairs without NaN, so any reduction order
// gives the sequential scan's pair. scratch: [0] the count (left zero), then kMaxBlocks values
// (float bits) and kMaxBlocks indices. (Shared-memory pairs of block_best are reused by its second
// call in the last block: the barrier after `last` separates the calls.)
constexpr int kMaxBlocks = 128;
constexpr int kBlockThreads = 256;

__global__ void __launch_bounds__(kBlockThreads)
    argmax_blocks_kernel(const float* __restrict__ logits, int n, int32_t* token, int* pos,
                         int advance, unsigned* scratch) {
  pdl_trigger();
  pdl_wait();  // the logits come from the previous kernel
  const int per = (n + gridDim.x - 1) / gridDim.x;
  const int begin = blockIdx.x * per, end = min(n, begin + per);
  float bv = -INFINITY;
  int bi = n;  // sentinel: loses every tie against a real index
  for (int i = begin + threadIdx.x; i < end; i += kBlockThreads) {
    const float v = logits[i];
    if (argmax_better(v, i, bv, bi)) bv = v, bi = i;
  }
  block_best<kBlockThreads>(&bv, &bi);
  __shared__ bool last;
  unsigned* count = scratch;
  float* vals = reinterpret_cast<float*>(scratch + 1);
  int* idxs = reinterpret_cast<int*>(scratch + 1 + kMaxBlocks);
  if (threadIdx.x == 0) {
    vals[blockIdx.x] = bv;
    idxs[blockIdx.x] = bi;
    __threadfence();
    last = atomicAdd(count, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  bv = -INFINITY, bi = n;
  for (int b = threadIdx.x; b < static_cast<int>(gridDim.x); b += kBlockThreads) {
    const float v = __ldcg(&vals[b]);
    const int i = __ldcg(&idxs[b]);
    if (argmax_better(v, i, bv, bi)) bv = v, bi = i;
  }
  block_best<kBlockThreads>(&bv, &bi);
  if (threadIdx.x == 0) {
    *token = bi < n ? bi : 0;  // all logits NaN: id 0 like the CPU scan
    if (pos) *pos += advance;
    *count = 0;  // every block has counted: ready for the next launch
  }
}

__global__ void advance_kernel(int* pos, int advance) {
  *pos += advance;
}

}  // namespace

int argmax_scratch_words() {
  return 1 + 2 * kMaxBlocks;
}

void argmax(const float* logits, int n, int32_t* token, int* pos, int advance, cudaStream_t stream,
            unsigned* scratch, int blocks) {
  if (!logits || !token || n < 1) throw Error("cuda argmax: null pointer or empty vector");
  if (blocks < 0) {
    static const int from_env = [] {
      const char* v = std::getenv("RESIDENT_ARGMAX_BLOCKS");
      return v && *v ? std::clamp(std::atoi(v), 0, kMaxBlocks) : 0;
    }();
    blocks = from_env;
  }
  blocks = std::min({blocks, kMaxBlocks, n});
  if (scratch && blocks > 1)
    return launch_pdl(argmax_blocks_kernel, dim3(blocks), dim3(kBlockThreads), 0, stream, logits, n,
                      token, pos, advance, scratch);
  argmax_kernel<<<1, kThreads, 0, stream>>>(logits, n, token, pos, advance);
  CUDA_CHECK_LAUNCH();
}

void advance_position(int* pos, int advance, cudaStream_t stream) {
  if (!pos) throw Error("cuda advance_position: null pointer");
  advance_kernel<<<1, 1, 0, stream>>>(pos, advance);
  CUDA_CHECK_LAUNCH();
}

}  // namespace resident::cuda
