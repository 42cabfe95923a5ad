// Functions shared verbatim by the CPU and CUDA backends are marked RESIDENT_HD so that both
// compile the same source: that is how GPU == CPU token parity is made a design property.
#pragma once

#if defined(__CUDACC__)
#define RESIDENT_HD __host__ __device__ __forceinline__
#else
#define RESIDENT_HD inline
#endif
