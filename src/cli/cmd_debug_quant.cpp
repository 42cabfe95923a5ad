// `resident debug-quant ACTION --type T --in FILE --out FILE` (hidden; for tests):
//   dequant:  blocks of type T (raw bytes)  -> float32 values (dequantize_row)
//   quantize: float32 values                -> blocks of type T (quantize_row)
// tests/python/test_quant.py compares these with the `gguf` package's NumPy (de)quantizers.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "cli/command_registry.h"
#include "quant/quant.h"
#include "util/error.h"

namespace resident::cli {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) throw Error("cannot write " + path);
}

quant::TypeInfo parse_type(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto info = quant::type_info(id);
    if (info && info->name == name) return *info;
  }
  throw Error("--type: unsupported type '" + name + "'");
}

int run(const std::string& action, const std::string& type_name, const std::string& in_path,
        const std::string& out_path) {
  const quant::TypeInfo info = parse_type(type_name);
  const std::vector<uint8_t> in = read_file(in_path);
  if (action == "dequant") {
    if (in.size() % static_cast<size_t>(info.block_bytes) != 0) {
      throw Error(in_path + ": " + std::to_string(in.size()) + " bytes is not a whole number of " +
                  std::string(info.name) + " blocks (" + std::to_string(info.block_bytes) +
                  " bytes each)");
    }
    const int64_t n =
        static_cast<int64_t>(in.size() / static_cast<size_t>(info.block_bytes)) * info.block_elems;
    std::vector<float> out(static_cast<size_t>(n));
    quant::dequantize_row(info.type, in.data(), out.data(), n);
    write_file(out_path, out.data(), out.size() * sizeof(float));
    return 0;
  }
  if (action == "quantize") {
    if (in.size() % 4 != 0 || (in.size() / 4) % static_cast<size_t>(info.block_elems) != 0) {
      throw Error(in_path + ": " + std::to_string(in.size()) + " bytes is not a whole number of " +
                  std::to_string(info.block_elems) + "-float blocks");
    }
    const int64_t n = static_cast<int64_t>(in.size() / 4);
    std::vector<float> x(static_cast<size_t>(n));
    std::memcpy(x.data(), in.data(), in.size());
    std::vector<uint8_t> out(quant::row_bytes(info, n));
    quant::quantize_row(info.type, x.data(), out.data(), n);
    write_file(out_path, out.data(), out.size());
    return 0;
  }
  throw Error("debug-quant: unknown action '" + action + "' (dequant, quantize)");
}

const CommandRegistration kDebugQuant{
    Command{"debug-quant", "Quantize / dequantize raw block files (test helper)",
            [](CLI::App& sub) -> std::function<int()> {
              auto action = std::make_shared<std::string>();
              auto type = std::make_shared<std::string>();
              auto in = std::make_shared<std::string>();
              auto out = std::make_shared<std::string>();
              sub.add_option("action", *action, "dequant | quantize")->required();
              sub.add_option("--type", *type, "Q4_K, Q6_K, ...")->required();
              sub.add_option("--in", *in, "input file")->required();
              sub.add_option("--out", *out, "output file")->required();
              return [=]() { return run(*action, *type, *in, *out); };
            },
            /*hidden=*/true}};

}  // namespace
}  // namespace resident::cli
