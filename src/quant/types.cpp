// Type table: geometry of the types this engine reads, names of every ggml type id.
#include "quant/types.h"

#include <array>
#include <string>

#include "util/error.h"

namespace resident::quant {

namespace {

constexpr std::array<TypeInfo, 9> kSupported = {{
    {Type::F32, "F32", 1, 4},
    {Type::F16, "F16", 1, 2},
    {Type::Q4_0, "Q4_0", 32, 18},
    {Type::Q5_0, "Q5_0", 32, 22},
    {Type::Q8_0, "Q8_0", 32, 34},
    {Type::Q4_K, "Q4_K", 256, 144},
    {Type::Q5_K, "Q5_K", 256, 176},
    {Type::Q6_K, "Q6_K", 256, 210},
    {Type::BF16, "BF16", 1, 2},
}};

// Names as ggml.h's type_traits and gguf.GGMLQuantizationType spell them. Ids 4, 5 and 31..33,
// 36..38 are formats ggml has removed; they keep a descriptive name for error messages.
constexpr std::array<std::string_view, 42> kGgmlNames = {
    "F32",
    "F16",
    "Q4_0",
    "Q4_1",
    "Q4_2 (removed)",
    "Q4_3 (removed)",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q8_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "Q8_K",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ3_XXS",
    "IQ1_S",
    "IQ4_NL",
    "IQ3_S",
    "IQ2_S",
    "IQ4_XS",
    "I8",
    "I16",
    "I32",
    "I64",
    "F64",
    "IQ1_M",
    "BF16",
    "Q4_0_4_4 (removed)",
    "Q4_0_4_8 (removed)",
    "Q4_0_8_8 (removed)",
    "TQ1_0",
    "TQ2_0",
    "IQ4_NL_4_4 (removed)",
    "IQ4_NL_4_8 (removed)",
    "IQ4_NL_8_8 (removed)",
    "MXFP4",
    "NVFP4",
    "Q1_0",
};

}  // namespace

std::optional<TypeInfo> type_info(uint32_t ggml_type_id) {
  for (const TypeInfo& info : kSupported) {
    if (static_cast<uint32_t>(info.type) == ggml_type_id) return info;
  }
  return std::nullopt;
}

const TypeInfo& type_info(Type type) {
  for (const TypeInfo& info : kSupported) {
    if (info.type == type) return info;
  }
  // Only reachable through a cast of an unchecked integer to Type.
  throw Error("unsupported tensor type id " + std::to_string(static_cast<uint32_t>(type)) + " (" +
              std::string(ggml_type_name(static_cast<uint32_t>(type))) + ")");
}

std::string_view ggml_type_name(uint32_t ggml_type_id) {
  if (ggml_type_id < kGgmlNames.size()) return kGgmlNames[ggml_type_id];
  return "unknown";
}

int64_t whole_blocks(Type type, int64_t n, const char* caller) {
  const TypeInfo& info = type_info(type);
  if (n < 0 || n % info.block_elems != 0)
    throw Error(std::string(caller) + ": " + std::to_string(n) +
                " elements is not a whole number of " + std::string(info.name) + " blocks");
  return n / info.block_elems;
}

}  // namespace resident::quant
