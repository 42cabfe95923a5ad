// A/B switch between the fast decode kernels and the first (simple) versions they replaced, for
// measuring each change on the GPU in one run: RESIDENT_CUDA_LEGACY=attn,matvec,fuse,stream (any subset)
// selects the old kernel for those parts. Both versions compute the same bits (docs/numerics.md);
// the switch only changes speed. Read once per process; graphs capture whichever was chosen.
#pragma once

#include <cstdlib>
#include <cstring>

namespace resident::cuda {

inline bool use_legacy(const char* part) {
  const char* v = std::getenv("RESIDENT_CUDA_LEGACY");
  if (!v) return false;
  const size_t n = std::strlen(part);
  for (const char* p = v; (p = std::strstr(p, part)) != nullptr; p += n) {
    const bool starts = p == v || p[-1] == ',';
    const bool ends = p[n] == '\0' || p[n] == ',';
    if (starts && ends) return true;
  }
  return false;
}

}  // namespace resident::cuda
