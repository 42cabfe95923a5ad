// `resident synth`: write a random-weight GGUF with the shapes and quant mix of a real model.
#include <chrono>
#include <cstdio>

#include "cli/command_registry.h"
#include "model/synth.h"
#include "util/error.h"

namespace resident::cli {
namespace {

CommandRegistration registration{Command{
    "synth", "write a random-weight GGUF with the exact layout of a real model",
    [](CLI::App& sub) -> std::function<int()> {
      struct Options {
        std::string preset, quant = "q4_k_m", out;
        uint64_t seed = 0;
        int threads = 0;
      };
      auto o = std::make_shared<Options>();
      sub.add_option("--preset", o->preset, "qwen2.5-1.5b | qwen2.5-0.5b | tiny | tiny-llama")
          ->required();
      sub.add_option("--quant", o->quant, "q4_k_m | q8_0 | f16 (default q4_k_m)");
      sub.add_option("-o,--out", o->out, "output GGUF file")->required();
      sub.add_option("--seed", o->seed, "weight seed (default 0)");
      sub.add_option("--threads", o->threads, "worker threads (default: all cores)");
      return [o]() -> int {
        synth::SynthOptions options;
        const auto preset = synth::parse_preset(o->preset);
        if (!preset) {
          throw Error("--preset: unknown preset '" + o->preset +
                      "' (expected qwen2.5-1.5b, qwen2.5-0.5b, tiny or tiny-llama)");
        }
        const auto quant = synth::parse_quant(o->quant);
        if (!quant) {
          throw Error("--quant: unknown quant mix '" + o->quant +
                      "' (expected q4_k_m, q8_0 or f16)");
        }
        if (o->threads < 0) throw Error("--threads: must be >= 0");
        options.preset = *preset;
        options.quant = *quant;
        options.seed = o->seed;
        options.n_threads = o->threads;
        const auto t0 = std::chrono::steady_clock::now();
        synth::write_synthetic(options, o->out);
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "wrote %s (%s, %s, seed %llu) in %.1f s\n", o->out.c_str(),
                     o->preset.c_str(), o->quant.c_str(), static_cast<unsigned long long>(o->seed),
                     s);
        return 0;
      };
    }}};

}  // namespace
}  // namespace resident::cli
