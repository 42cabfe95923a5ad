// Chat prompt formatting without a Jinja engine: the model's tokenizer.chat_template is only
// inspected to recognise its family, which is then rendered natively.
//   ChatML (Qwen): "<|im_start|>role\ncontent<|im_end|>\n" per message; Qwen's default system
//     message is inserted when the template carries it and none is given.
//   Llama 3: "<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>" per message, content
//     trimmed as the template does; <|begin_of_text|> is the BOS token, added when encoding.
// An unrecognised template falls back to ChatML if the vocabulary has <|im_start|>; otherwise
// "chat: unsupported chat template".
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace resident::tokenizer {

enum class ChatFamily { chatml, llama3 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" ("tool" where the family supports it)
  std::string content;
};

// A formatted prompt as parts: the template's own text may hold special tokens, message
// content may not (a user typing "<|im_end|>" gets plain text, not a turn boundary).
struct ChatPrompt {
  std::vector<std::pair<std::string, bool>> parts;  // (text, parse_special)
  bool add_bos = false;                             // put the BOS token in front

  std::string text() const;  // the parts joined (what a Jinja renderer would print, minus BOS)
};

class ChatFormatter {
 public:
  // Uses tokenizer.chat_template(); throws "chat: unsupported chat template" as above.
  explicit ChatFormatter(const Tokenizer& tokenizer);
  ChatFormatter(const Tokenizer& tokenizer, std::string_view chat_template);

  ChatFamily family() const { return family_; }

  // Throws resident::Error for an empty message list, an unsupported role or content that is
  // not valid UTF-8 ("chat: messages[i].role: ...").
  ChatPrompt format(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  std::vector<TokenId> encode(std::span<const ChatMessage> messages,
                              bool add_generation_prompt) const;

 private:
  ChatPrompt format_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  ChatPrompt format_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  const Tokenizer* tokenizer_;
  ChatFamily family_ = ChatFamily::chatml;
  std::string default_system_;     // ChatML: inserted when no system message is given
  bool tool_responses_ = false;    // ChatML: the template wraps role "tool" in <tool_response>
  bool llama31_preamble_ = false;  // Llama 3.1: "Cutting Knowledge Date" system header
};

}  // namespace resident::tokenizer
