// A/B switch between the fast decode kernels and the first (simple) versions they replaced, for
// measuring each change on the GPU in one run: RESIDENT_CUDA_LEGACY=attn,attn1,attn_tile,
// attn_gemm,attn2kind,matvec,fuse,decode,q4k16,mixed,prewait,rowloads,normw,balance,mma,mma64,
// mma_multi,fork (any subset) selects the old kernel for those parts (docs/cuda.md; q4k16:
// matvec_decode's Q4_K quants by 4-byte loads; mixed: decode q/k (Q4_K) and v (Q6_K) in two
// launches, not one; prewait: matvec_decode's first weight copy after the PDL wait, not before;
// rowloads: its bias and residual read after the row sums; balance: its group rows as before
// balance_rows; normw: the decode RMSNorm's weights read after the PDL wait; attn2kind:
// attention_decode's max and full items at every depth; attn_gemm: the prefill attention passes
// of attention.cu instead of attention_prefill.cu; mma64: 64-row matmul_mma tiles everywhere;
// mma_multi: one prefill launch per matrix, not one for gate+up and for q+k(+v); fork: prefill
// k/v matmuls on the main stream, not beside q). Both versions compute the same bits
// (docs/numerics.md); the switch only changes speed. Read once per process; graphs capture
// whichever was chosen.
#pragma once

#include <cstdlib>
#include <cstring>

namespace resident::cuda {

// Whether `part` is one of the comma-separated names in environment variable `var`.
inline bool env_lists(const char* var, const char* part) {
  const char* v = std::getenv(var);
  if (!v) return false;
  const size_t n = std::strlen(part);
  for (const char* p = v; (p = std::strstr(p, part)) != nullptr; p += n) {
    const bool starts = p == v || p[-1] == ',';
    const bool ends = p[n] == '\0' || p[n] == ',';
    if (starts && ends) return true;
  }
  return false;
}

inline bool use_legacy(const char* part) {
  return env_lists("RESIDENT_CUDA_LEGACY", part);
}

// Timing probe, for measurement only: RESIDENT_DECODE_PROBE=norm,qkv,rope,attn,o,gate_up,swiglu,
// down (any subset) launches those parts of every layer twice ("empty": adds 4 empty kernels per
// layer). The tok/s difference against a
// plain run is their cost inside the real decode graph (PDL overlap included), which per-kernel
// profiler times cannot show. The model's output is wrong under the probe; never for real runs.
inline int probe_repeats(const char* part) {
  static const bool any = std::getenv("RESIDENT_DECODE_PROBE") != nullptr;
  return any && env_lists("RESIDENT_DECODE_PROBE", part) ? 2 : 1;
}

}  // namespace resident::cuda
