// Embedding lookup: row `id` of token_embd dequantized to floats, for token ids read from device
// memory (the decode graph's sampled id). CPU twin: quant::dequantize_row on that row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "quant/types.h"

namespace resident::cuda {

// out: (n_tokens, row_length). An id outside [0, vocab) yields a row of NaN (the host validates
// prompt ids, and sampled ids are in range, so this only makes a bug loud).
void embed(quant::Type type, const void* table, int64_t row_length, int64_t vocab,
           const int32_t* ids, int n_tokens, float* out, cudaStream_t stream);

}  // namespace resident::cuda
