#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <string>

#include "util/error.h"

namespace resident::tokenizer {
namespace {

// Patterns are data, written as the HF tokenizer.json files define them (Qwen2.5, Llama 3,
// GPT-2). The only difference between qwen2 and llama-bpe is how many digits one piece may
// hold: Qwen splits numbers into single digits, Llama 3 into groups of up to three.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0)
    return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

std::string pretokenizer_pattern(std::string_view name) {
  if (name == "qwen2" || name == "deepseek-r1-qwen") return kQwen2;
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return kLlama3;
  if (name == "default" || name == "gpt2") return kGpt2;
  throw Error("tokenizer.ggml.pre: unsupported pre-tokenizer '" + std::string(name) + "'");
}

struct PreTokenizer::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;

  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

PreTokenizer::PreTokenizer(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!impl_->code) {
    throw Error("pre-tokenizer regex: " + pcre2_message(error) + " at offset " +
                std::to_string(offset));
  }
  // JIT is an optimisation only: a library built without it still matches correctly.
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(std::string_view text,
                         const std::function<void(std::string_view)>& piece) const {
  if (text.empty()) return;
  // Match data is per call, so one compiled pattern serves any number of threads.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), &pcre2_match_data_free);
  if (!match) throw Error("pre-tokenizer: out of memory");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), pos, 0,
                                                match.get(), nullptr)
                              : pcre2_match(impl_->code, subject, text.size(), pos,
                                            PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error("pre-tokenizer: regex match failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    size_t begin = ovector[0], end = ovector[1];
    if (begin > pos) piece(text.substr(pos, begin - pos));  // unmatched gap
    if (end == begin) {
      // An empty match cannot come from the built-in patterns; emit one code point as its own
      // piece so that a custom pattern cannot loop forever.
      end = begin + 1;
      while (end < text.size() && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) ++end;
      piece(text.substr(begin, end - begin));
    } else {
      piece(text.substr(begin, end - begin));
    }
    pos = end;
  }
  if (pos < text.size()) piece(text.substr(pos));
}

}  // namespace resident::tokenizer
