// Greedy sampling on the device: argmax of the logits, ties to the lowest id. Writes the id to
// device memory (the next decode step's input) and advances the device position, so the decode
// loop needs nothing from the host. CPU twin: cpu::argmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace resident::cuda {

// *token = argmax(logits[0..n)); then, if pos is non-null, *pos += advance.
void argmax(const float* logits, int n, int32_t* token, int* pos, int advance, cudaStream_t stream);

// *pos += advance (prefill moves the position by the batch size).
void advance_position(int* pos, int advance, cudaStream_t stream);

}  // namespace resident::cuda
