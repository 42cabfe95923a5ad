// One generation request over a Backend: prefill the prompt, decode until a stop condition,
// stream text as it becomes valid UTF-8. Shared by `run`, `chat` and (later) the server.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "tokenizer/tokenizer.h"

namespace resident {

struct GenerationStats {
  int prompt_tokens = 0;
  double prompt_ms = 0.0;
  int generated_tokens = 0;  // decoded tokens, the stop token included
  double decode_ms = 0.0;    // time of the decode steps after the first sampled token
  std::string stop_reason;   // "eog", "length", "context", "callback"
};

struct GenerationRequest {
  // Tokens to append to the backend's current sequence (the whole prompt after a reset).
  std::vector<int32_t> prompt;
  int max_tokens = 256;
  bool stop_at_eog = true;
};

// Streams text pieces to `on_text` (return false to stop early). Returns the generated ids
// (the stop token, if any, included as the last one: it was sampled but not fed back).
std::vector<int32_t> generate(Backend& backend, const tokenizer::Tokenizer& tokenizer,
                              const GenerationRequest& request,
                              const std::function<bool(std::string_view)>& on_text,
                              GenerationStats* stats);

}  // namespace resident
