// `resident chat`: interactive conversation. Each turn re-renders the whole conversation with
// the chat template; when the cached sequence is a prefix of the new prompt only the new tokens
// are prefilled, otherwise the sequence restarts. Ctrl-D (end of input) exits.
#include <cstdio>
#include <iostream>

#include "cli/backend_factory.h"
#include "cli/command_registry.h"
#include "cli/sampling_options.h"
#include "engine/generation.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace resident::cli {
namespace {

struct ChatOptions {
  std::string model, system;
  int n_predict = 1024;
  SamplingFlags sampling;
  BackendOptions backend;
};

int chat(ChatOptions& o) {
  const Model model = Model::load(resolve_model_path(o.model));
  const tokenizer::Tokenizer tok(model.file);
  const tokenizer::ChatFormatter formatter(tok);
  auto backend = make_backend(model, o.backend);
  const SamplerParams params = o.sampling.resolve();
  backend->reset(params);

  std::vector<tokenizer::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  std::vector<int32_t> cached;  // tokens whose K/V the backend holds, in order
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({"user", line});
    const std::vector<int32_t> full = formatter.encode(messages, /*add_generation_prompt=*/true);
    bool prefix =
        cached.size() < full.size() && std::equal(cached.begin(), cached.end(), full.begin());
    if (!prefix) {
      backend->reset(params);
      cached.clear();
    }
    GenerationRequest request;
    request.prompt.assign(full.begin() + static_cast<int64_t>(cached.size()), full.end());
    request.max_tokens = o.n_predict;
    std::string reply;
    GenerationStats stats;
    std::vector<int32_t> out;
    try {
      out = generate(
          *backend, tok, request,
          [&reply](std::string_view text) {
            reply.append(text);
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
            return true;
          },
          &stats);
    } catch (const Error& e) {
      // A full context ends this turn, not the session: start over with the next message.
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      messages.pop_back();
      backend->reset(params);
      cached.clear();
      continue;
    }
    std::printf("\n");
    std::fflush(stdout);  // before any stderr line below, also when both share a pipe
    cached = full;
    if (!out.empty()) cached.insert(cached.end(), out.begin(), out.end() - 1);  // last one not fed
    messages.push_back({"assistant", reply});
    if (stats.stop_reason == "context") {
      std::fprintf(stderr, "(context full: conversation restarts)\n");
      messages.clear();
      if (!o.system.empty()) messages.push_back({"system", o.system});
      backend->reset(params);
      cached.clear();
    }
  }
  std::fprintf(stderr, "\n");
  return 0;
}

CommandRegistration registration{Command{
    "chat", "interactive chat (Ctrl-D exits)", [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<ChatOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model file (default: the cached default model)");
      sub.add_option("--system", o->system, "system message");
      sub.add_option("-n,--n-predict", o->n_predict, "maximum tokens per reply")
          ->check(CLI::Range(1, 1 << 24));
      add_sampling_options(sub, o->sampling);
      add_backend_options(sub, o->backend);
      return [o] { return chat(*o); };
    }}};

}  // namespace
}  // namespace resident::cli
