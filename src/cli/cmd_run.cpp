// `resident run`: generate from one prompt, streaming text to stdout and a stats line to stderr.
#include <chrono>
#include <cstdio>

#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "cli/sampling_options.h"
#include "engine/generation.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace resident::cli {
namespace {

struct RunOptions {
  std::string model, prompt;
  int n_predict = 256;
  bool chat = false, verbose = false;
  SamplingFlags sampling;
  BackendOptions backend;
};

void print_memory(const MemoryReport& m) {
  auto mib = [](uint64_t b) { return b / 1048576.0; };
  std::fprintf(stderr,
               "memory: weights %.1f MiB (%s) | kv cache %.1f MiB | workspace %.1f MiB | context "
               "%.1f MiB\n",
               mib(m.weights), m.weight_memory.c_str(), mib(m.kv_cache), mib(m.workspace),
               mib(m.context));
}

int run(RunOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const Model model = Model::load(resolve_model_path(o.model));
  const tokenizer::Tokenizer tok(model.file);
  auto backend = make_backend(model, o.backend);
  const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();

  std::vector<int32_t> prompt;
  if (o.chat) {
    const tokenizer::ChatFormatter formatter(tok);
    const std::vector<tokenizer::ChatMessage> messages{{"user", o.prompt}};
    prompt = formatter.encode(messages, /*add_generation_prompt=*/true);
  } else {
    prompt = tok.encode_prompt(o.prompt);
  }
  const SamplerParams params = o.sampling.resolve();
  if (o.verbose) {
    std::fprintf(stderr, "model: %s (%s, %d layers, vocab %d)\n", model.file.path().c_str(),
                 model.config.arch_name.c_str(), model.config.n_layers, model.config.vocab_size);
    std::fprintf(
        stderr,
        "sampling: temp %.3g top-k %d top-p %.3g min-p %.3g repeat-penalty %.3g seed %llu\n",
        params.temperature, params.top_k, params.top_p, params.min_p, params.repeat_penalty,
        static_cast<unsigned long long>(params.seed));
    print_memory(backend->memory_report());
  }
  backend->reset(params);
  GenerationRequest request;
  request.prompt = prompt;
  request.max_tokens = o.n_predict;
  GenerationStats stats;
  generate(
      *backend, tok, request,
      [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
      },
      &stats);
  std::printf("\n");
  std::fflush(stdout);  // the text's last line before the stats line, also when both share a pipe
  const int decoded = stats.generated_tokens - 1;
  std::fprintf(
      stderr,
      "load %.0f ms | prompt %d tokens %.1f tok/s | decode %d tokens %.1f tok/s | stop: %s\n",
      load_ms, stats.prompt_tokens, stats.prompt_tokens / (stats.prompt_ms / 1e3), decoded,
      decoded > 0 ? decoded / (stats.decode_ms / 1e3) : 0.0, stats.stop_reason.c_str());
  return 0;
}

CommandRegistration registration{Command{
    "run", "generate text from a prompt", [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<RunOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model file (default: the cached default model)");
      sub.add_option("-p,--prompt", o->prompt, "prompt text")->required();
      sub.add_option("-n,--n-predict", o->n_predict, "maximum tokens to generate")
          ->check(CLI::Range(0, 1 << 24));
      sub.add_flag("--chat", o->chat, "wrap the prompt in the model's chat template");
      sub.add_flag("-v,--verbose", o->verbose, "print model, sampling and memory details");
      add_sampling_options(sub, o->sampling);
      add_backend_options(sub, o->backend);
      return [o] { return run(*o); };
    }}};

}  // namespace
}  // namespace resident::cli
