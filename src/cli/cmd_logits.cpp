// `resident logits`: hidden test command. One forward pass over the given token ids from
// position 0; writes the logits of every position as float32 little-endian, row-major
// (n_positions x vocab). The Python reference tests compare these with a float64 forward pass.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "util/error.h"
#include "util/files.h"

namespace resident::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw Error("--ids: '" + item + "' is not a token id");
    }
  }
  if (ids.empty()) throw Error("--ids: no token ids given");
  return ids;
}

CommandRegistration registration{Command{
    "logits", "write the logits of every position for given token ids (testing)",
    [](CLI::App& sub) -> std::function<int()> {
      struct Options {
        std::string model, ids, out;
        BackendOptions backend;
      };
      auto o = std::make_shared<Options>();
      o->backend.device = "cpu";
      sub.add_option("-m,--model", o->model, "GGUF model file");
      sub.add_option("--ids", o->ids, "comma-separated token ids")->required();
      sub.add_option("-o,--out", o->out, "output file (float32, n x vocab)")->required();
      add_backend_options(sub, o->backend);
      return [o]() -> int {
        const Model model = Model::load(resolve_model_path(o->model));
        const std::vector<int32_t> ids = parse_ids(o->ids);
        for (int32_t id : ids)
          if (id >= model.config.vocab_size)
            throw Error("--ids: token id " + std::to_string(id) + " >= vocab size " +
                        std::to_string(model.config.vocab_size));
        o->backend.n_ctx = std::max<int>(o->backend.n_ctx, static_cast<int>(ids.size()));
        auto backend = make_backend(model, o->backend);
        const std::vector<float> logits = backend->logits(ids);
        write_file_atomically(o->out, std::string_view(reinterpret_cast<const char*>(logits.data()),
                                                       logits.size() * sizeof(float)));
        return 0;
      };
    },
    /*hidden=*/true}};

}  // namespace
}  // namespace resident::cli
