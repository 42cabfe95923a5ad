#include "engine/generation.h"

#include <chrono>

#include "util/error.h"

namespace resident {

std::vector<int32_t> generate(Backend& backend, const tokenizer::Tokenizer& tokenizer,
                              const GenerationRequest& request,
                              const std::function<bool(std::string_view)>& on_text,
                              GenerationStats* stats) {
  using clock = std::chrono::steady_clock;
  GenerationStats local;
  GenerationStats& s = stats ? *stats : local;
  s = GenerationStats{};
  if (request.prompt.empty()) throw Error("prompt: empty (nothing to generate from)");
  const int room = backend.n_ctx() - backend.position();
  if (static_cast<int>(request.prompt.size()) >= room)
    throw Error("prompt: " + std::to_string(request.prompt.size()) +
                " tokens do not fit the remaining context (" + std::to_string(room) + " of " +
                std::to_string(backend.n_ctx()) + "; use --ctx)");

  std::vector<int32_t> generated;
  tokenizer::StreamDecoder decoder(tokenizer);
  auto emit = [&](int32_t id) -> bool {
    generated.push_back(id);
    if (request.stop_at_eog && tokenizer.is_eog(id)) {
      s.stop_reason = "eog";
      return false;
    }
    const std::string text = decoder.push(id);
    if (!text.empty() && on_text && !on_text(text)) {
      s.stop_reason = "callback";
      return false;
    }
    return true;
  };

  s.prompt_tokens = static_cast<int>(request.prompt.size());
  auto t0 = clock::now();
  int32_t id = backend.prefill(request.prompt);
  s.prompt_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  s.generated_tokens = 1;
  bool go = request.max_tokens > 0 && emit(id);
  auto t1 = clock::now();
  while (go) {
    if (s.generated_tokens >= request.max_tokens) {
      s.stop_reason = "length";
      break;
    }
    if (backend.position() >= backend.n_ctx()) {
      s.stop_reason = "context";
      break;
    }
    id = backend.decode();
    ++s.generated_tokens;
    go = emit(id);
  }
  s.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
  const std::string tail = decoder.flush();
  if (!tail.empty() && on_text) on_text(tail);
  if (s.stop_reason.empty()) s.stop_reason = "length";
  return generated;
}

}  // namespace resident
