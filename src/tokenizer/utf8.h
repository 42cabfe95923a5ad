// UTF-8 helpers shared by the tokenizer: strict validation (prompts are untrusted input),
// code point encoding, and the incremental decoding step the streaming decoder needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace resident::tokenizer::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Outcome of looking at the bytes starting at one position.
struct Step {
  enum class Kind {
    valid,       // `length` bytes form one well-formed code point
    invalid,     // `length` bytes are a maximal ill-formed subpart (one U+FFFD replaces them)
    incomplete,  // every byte up to the end is a valid prefix: more bytes could complete it
  };
  Kind kind;
  size_t length;
  uint32_t code_point;  // valid only
};

// Classifies the sequence at text[pos] (pos < text.size()) following Unicode's "maximal
// subpart" rule (the same one WHATWG and Python's errors='replace' use): overlong forms,
// surrogates and values above U+10FFFF are ill-formed.
Step step(std::string_view text, size_t pos);

// Byte offset of the first ill-formed (or truncated) sequence, or nullopt if all is valid.
std::optional<size_t> first_invalid(std::string_view text);

// Copy of `text` with each maximal ill-formed subpart (and a truncated tail) replaced by U+FFFD.
std::string sanitize(std::string_view text);

// Appends the UTF-8 encoding of `cp` (cp <= 0x10FFFF, not a surrogate).
void append(std::string& out, uint32_t cp);

}  // namespace resident::tokenizer::utf8
