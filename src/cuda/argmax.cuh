// Greedy sampling on the device: argmax of the logits, ties to the lowest id. Writes the id to
// device memory (the next decode step's input) and advances the device position, so the decode
// loop needs nothing from the host. CPU twin: cpu::argmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace resident::cuda {

// *token = argmax(logits[0..n)); then, if pos is non-null, *pos += advance. One thread block;
// with `scratch` (argmax_scratch_words() unsigned ints, zeroed once at allocation, left zero by
// every launch) and blocks > 1 (at most 128; blocks < 0 takes RESIDENT_ARGMAX_BLOCKS, default 0),
// that many blocks, PDL-launched, the same answer: an A/B switch, not yet measured on a GPU.
int argmax_scratch_words();
void argmax(const float* logits, int n, int32_t* token, int* pos, int advance, cudaStream_t stream,
            unsigned* scratch = nullptr, int blocks = -1);

// *pos += advance (prefill moves the position by the batch size).
void advance_position(int* pos, int advance, cudaStream_t stream);

}  // namespace resident::cuda
