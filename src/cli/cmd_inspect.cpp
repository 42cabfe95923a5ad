// `resident inspect MODEL [--json]`: what a GGUF file holds (metadata, tensor table, weight
// bytes). It goes through the same validating reader as the engine, so it doubles as a checker
// for untrusted files: a malformed file gives one "error:" line and exit code 1.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "gguf/gguf.h"
#include "quant/types.h"

namespace resident::cli {
namespace {

// Tokenizer arrays hold ~150k entries: show the type, the count and a few, never all.
constexpr size_t kArrayHead = 8;
constexpr size_t kMaxStringShown = 120;

bool is_signed(gguf::ValueType t) {
  using gguf::ValueType;
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}

// Strings from the file may hold control bytes (tokens like "\n"): escape them so every
// metadata entry stays on one line.
std::string escaped(const std::string& s) {
  std::string out;
  const size_t shown = std::min(s.size(), kMaxStringShown);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (s.size() > shown) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string quoted(const std::string& s) {
  return "\"" + escaped(s) + "\"";
}

std::string type_string(const gguf::Value& v) {
  if (v.type != gguf::ValueType::ARRAY) return std::string(gguf::value_type_name(v.type));
  return "array<" + std::string(gguf::value_type_name(v.elem_type)) + ">[" +
         std::to_string(v.array.size()) + "]";
}

std::string value_text(const gguf::Value& v) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::STRING:
      return quoted(v.s);
    case ValueType::BOOL:
      return v.u ? "true" : "false";
    case ValueType::FLOAT32:
    case ValueType::FLOAT64: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", v.f);
      return buf;
    }
    case ValueType::ARRAY: {
      std::string out = "[";
      for (size_t i = 0; i < v.array.size() && i < kArrayHead; ++i) {
        if (i) out += ", ";
        const auto& e = v.array[i];
        out += e.type == ValueType::ARRAY ? type_string(e) + " " + value_text(e) : value_text(e);
      }
      if (v.array.size() > kArrayHead) out += ", ...";
      return out + "]";
    }
    default:
      return is_signed(v.type) ? std::to_string(v.i) : std::to_string(v.u);
  }
}

nlohmann::json value_json(const gguf::Value& v) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::STRING:
      return v.s;
    case ValueType::BOOL:
      return v.u != 0;
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return v.f;
    case ValueType::ARRAY: {
      nlohmann::json a = {{"type", "array"},
                          {"elem_type", gguf::value_type_name(v.elem_type)},
                          {"count", v.array.size()}};
      nlohmann::json head = nlohmann::json::array();
      for (size_t i = 0; i < v.array.size() && i < kArrayHead; ++i) {
        head.push_back(value_json(v.array[i]));
      }
      a["head"] = std::move(head);
      return a;
    }
    default:
      return is_signed(v.type) ? nlohmann::json(v.i) : nlohmann::json(v.u);
  }
}

std::string shape_text(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

void print_text(const gguf::File& f) {
  std::printf("file: %s\n", f.path().c_str());
  std::printf("format: GGUF v%u, %llu bytes, alignment %llu\n", f.version(),
              static_cast<unsigned long long>(f.file_size()),
              static_cast<unsigned long long>(f.alignment()));
  std::printf("metadata: %zu keys\n", f.metadata().size());
  size_t key_width = 0;
  for (const auto& [key, v] : f.metadata()) key_width = std::max(key_width, key.size());
  key_width = std::min<size_t>(key_width, 48);
  for (const auto& [key, v] : f.metadata()) {
    std::printf("  %-*s  %-22s %s\n", static_cast<int>(key_width), escaped(key).c_str(),
                type_string(v).c_str(), value_text(v).c_str());
  }
  std::printf("tensors: %zu\n", f.tensors().size());
  size_t name_width = 4;
  for (const auto& t : f.tensors()) name_width = std::max(name_width, t.name.size());
  name_width = std::min<size_t>(name_width, 64);
  std::printf("  %-*s  %-8s %-24s %14s %14s\n", static_cast<int>(name_width), "name", "type",
              "shape", "bytes", "offset");
  for (const auto& t : f.tensors()) {
    std::printf("  %-*s  %-8s %-24s %14llu %14llu\n", static_cast<int>(name_width),
                escaped(t.name).c_str(), std::string(quant::ggml_type_name(t.ggml_type)).c_str(),
                shape_text(t.dims).c_str(), static_cast<unsigned long long>(t.n_bytes),
                static_cast<unsigned long long>(t.offset));
  }
  std::printf("total tensor bytes: %llu (%.2f MiB)\n",
              static_cast<unsigned long long>(f.total_tensor_bytes()),
              static_cast<double>(f.total_tensor_bytes()) / (1024.0 * 1024.0));
}

void print_json(const gguf::File& f) {
  nlohmann::json j;
  j["path"] = f.path();
  j["version"] = f.version();
  j["file_size"] = f.file_size();
  j["alignment"] = f.alignment();
  nlohmann::json metadata = nlohmann::json::array();
  for (const auto& [key, v] : f.metadata()) {
    metadata.push_back(
        {{"key", key}, {"type", gguf::value_type_name(v.type)}, {"value", value_json(v)}});
  }
  j["metadata"] = std::move(metadata);
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : f.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", quant::ggml_type_name(t.ggml_type)},
                       {"type_id", t.ggml_type},
                       {"shape", t.dims},
                       {"n_elements", t.n_elements},
                       {"bytes", t.n_bytes},
                       {"offset", t.offset}});
  }
  j["tensors"] = std::move(tensors);
  j["total_tensor_bytes"] = f.total_tensor_bytes();
  // Keys and tokens are arbitrary bytes; replace invalid UTF-8 instead of throwing.
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

// --memory: what a backend holds once this model is loaded (the same report as run --verbose).
int print_memory(const std::string& path, const BackendOptions& options, bool json) {
  const Model model = Model::load(path);
  const auto backend = make_backend(model, options);
  const MemoryReport m = backend->memory_report();
  if (json) {
    const nlohmann::json j{{"device", backend->info().device},
                           {"weight_memory", m.weight_memory},
                           {"weights", m.weights},
                           {"kv_cache", m.kv_cache},
                           {"workspace", m.workspace},
                           {"context", m.context},
                           {"n_ctx", backend->n_ctx()}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    auto mib = [](uint64_t b) { return b / 1048576.0; };
    std::printf("device %s, context %d tokens\n", backend->info().device.c_str(), backend->n_ctx());
    std::printf("weights    %10.1f MiB (%s)\n", mib(m.weights), m.weight_memory.c_str());
    std::printf("kv cache   %10.1f MiB\n", mib(m.kv_cache));
    std::printf("workspace  %10.1f MiB\n", mib(m.workspace));
    std::printf("context    %10.1f MiB%s\n", mib(m.context),
                m.context ? "" : " (not measured here: resident verify measures it with NVML)");
  }
  return 0;
}

const CommandRegistration kInspect{
    Command{"inspect", "Print a GGUF file's metadata and tensor table (validates the whole header)",
            [](CLI::App& sub) -> std::function<int()> {
              auto model = std::make_shared<std::string>();
              auto json = std::make_shared<bool>(false);
              auto memory = std::make_shared<bool>(false);
              auto backend = std::make_shared<BackendOptions>();
              sub.add_option("model", *model, "GGUF file")->required();
              sub.add_flag("--json", *json, "Emit JSON instead of text");
              sub.add_flag("--memory", *memory,
                           "Load the model on --device and report weights / KV cache / "
                           "workspace / context memory");
              // Not add_backend_options: its --memory (device|unified) would clash with this flag.
              sub.add_option("--device", backend->device, "with --memory: cpu, cuda or auto")
                  ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
              sub.add_option("--ctx", backend->n_ctx, "with --memory: context length")
                  ->check(CLI::Range(1, 1 << 20));
              return [model, json, memory, backend]() {
                if (*memory) return print_memory(*model, *backend, *json);
                const gguf::File file = gguf::File::open(*model);
                if (*json) {
                  print_json(file);
                } else {
                  print_text(file);
                }
                return 0;
              };
            }}};

}  // namespace
}  // namespace resident::cli
