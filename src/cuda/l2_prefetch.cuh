// L2 prefetch of weights a later decode kernel will read (sm_90's bulk prefetch).
//
// Why: a decode step is a chain of latency-bound kernels (docs/perf.md, round 7: 33 us per
// layer against ~6.5 us of DRAM time for the layer's ~28 MB), so DRAM idles while norms,
// attention and the matvecs' tails run. Weights never change, so a kernel can ask for the
// weights of a launch after it before its own PDL wait; the later launch then finds them in L2
// (50 MB on the H200, a layer's weights ~28 MB). A prefetch is a hint: it changes no value, only
// where a later load is served from.
#pragma once

#include <cstdint>

namespace resident::cuda {

struct L2Range {
  const void* ptr = nullptr;
  int64_t bytes = 0;
};

inline constexpr int kMaxL2Ranges = 6;

// Device memory to bring into L2, split evenly over a launch's thread blocks.
struct L2Prefetch {
  L2Range range[kMaxL2Ranges];
  int n = 0;
  void add(const void* ptr, int64_t bytes) {
    if (ptr && bytes > 0 && n < kMaxL2Ranges) range[n++] = {ptr, bytes};
  }
};

// Block `part` of `n_parts` asks for its share of every range: 16-byte aligned slices (the bulk
// prefetch's rule) inside the range, so nothing outside an allocation is touched. One thread
// issues it; the copy engine does the rest, so it costs the block a few instructions.
__device__ __forceinline__ void l2_prefetch_share(const L2Prefetch& p, int part, int n_parts) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  for (int i = 0; i < p.n; ++i) {
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p.range[i].ptr) + 15) & ~uintptr_t{15};
    const uintptr_t end =
        (reinterpret_cast<uintptr_t>(p.range[i].ptr) + p.range[i].bytes) & ~uintptr_t{15};
    if (end <= begin) continue;
    const uintptr_t chunks = (end - begin) / 16;
    const uintptr_t from = begin + 16 * (chunks * part / n_parts);
    const uintptr_t to = begin + 16 * (chunks * (part + 1) / n_parts);
    for (uintptr_t a = from; a < to; a += uintptr_t{1} << 30) {
      const uint32_t size =
          static_cast<uint32_t>(to - a < (uintptr_t{1} << 30) ? to - a : uintptr_t{1} << 30);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(size) : "memory");
    }
  }
#endif
}

}  // namespace resident::cuda
