// Tensor element types as numbered by GGUF/ggml, with their block geometry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace resident::quant {

// Values are the ggml type ids stored in GGUF tensor infos.
enum class Type : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q5_0 = 6,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct TypeInfo {
  Type type;
  std::string_view name;  // "Q4_K", as llama.cpp and the gguf package print it
  int block_elems;        // elements per block (1 for plain float types)
  int block_bytes;        // bytes per block
};

// Geometry of a supported type. Types that GGUF knows but this engine does not read
// (Q4_1, Q2_K, IQ*, ...) give std::nullopt: callers turn that into an error naming the tensor.
std::optional<TypeInfo> type_info(uint32_t ggml_type_id);
const TypeInfo& type_info(Type type);

// Name of any ggml type id, known to us or not (for error messages and `inspect`).
std::string_view ggml_type_name(uint32_t ggml_type_id);

// Blocks of `type` in n elements; throws resident::Error naming `caller` unless n >= 0 is a whole
// number of blocks.
int64_t whole_blocks(Type type, int64_t n, const char* caller);

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t row_bytes(const TypeInfo& info, int64_t n) {
  return static_cast<size_t>(n / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

}  // namespace resident::quant
