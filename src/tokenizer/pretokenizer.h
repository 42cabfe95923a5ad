// Pre-tokenizer: splits text into the pieces BPE runs on, with the regex a model's
// tokenizer.ggml.pre names. Matching uses PCRE2 in UTF + UCP mode (\p{L}, \s, (?i) follow
// Unicode), JIT-compiled when the library supports it. Pieces are the matches plus any
// unmatched gaps between them (HF's Split behaviour "isolated"), so the pieces always
// concatenate back to the input.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace resident::tokenizer {

// The regex for a tokenizer.ggml.pre name; throws resident::Error naming an unknown one.
// Known: "qwen2" (and "deepseek-r1-qwen"), "llama-bpe" (and "llama3", "llama-v3"),
// "default" and "gpt2" (the original GPT-2 pattern).
std::string pretokenizer_pattern(std::string_view name);

class PreTokenizer {
 public:
  // Compiles `pattern`; throws resident::Error with PCRE2's message and offset.
  explicit PreTokenizer(const std::string& pattern);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Calls `piece` for each piece of `text`, in order. `text` must be valid UTF-8 (the caller
  // validates it once; matching skips PCRE2's own per-call check, which would make a long
  // text quadratic). Safe to call from several threads at once.
  void split(std::string_view text, const std::function<void(std::string_view)>& piece) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace resident::tokenizer
