#include "tokenizer/chat_template.h"

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace resident::tokenizer {
namespace {

constexpr std::string_view kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
// Llama 3.1's template falls back to this date when no date_string is passed; a fixed date
// keeps prompts (and so token ids) reproducible.
constexpr std::string_view kLlama31Preamble =
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Jinja's `trim` filter: Python's str.strip(), i.e. Unicode whitespace. The ASCII set plus the
// common Unicode spaces covers what appears around chat content.
std::string trim(std::string_view s) {
  constexpr std::string_view kSpaces[] = {
      " ",        "\t",       "\n",           "\r",           "\v",          "\f",
      "\xC2\x85", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "\xE2\x80\xA9"};
  const auto strip_front = [&]() {
    for (std::string_view sp : kSpaces) {
      if (s.substr(0, sp.size()) == sp) {
        s.remove_prefix(sp.size());
        return true;
      }
    }
    return false;
  };
  const auto strip_back = [&]() {
    for (std::string_view sp : kSpaces) {
      if (s.size() >= sp.size() && s.substr(s.size() - sp.size()) == sp) {
        s.remove_suffix(sp.size());
        return true;
      }
    }
    return false;
  };
  while (strip_front()) {
  }
  while (strip_back()) {
  }
  return std::string(s);
}

void check_messages(std::span<const ChatMessage> messages) {
  if (messages.empty()) throw Error("chat: no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string field = "chat: messages[" + std::to_string(i) + "]";
    if (const auto bad = utf8::first_invalid(messages[i].content)) {
      throw Error(field + ".content: invalid UTF-8 at byte " + std::to_string(*bad));
    }
  }
}

}  // namespace

std::string ChatPrompt::text() const {
  std::string out;
  for (const auto& [text, special] : parts) out += text;
  return out;
}

ChatFormatter::ChatFormatter(const Tokenizer& tokenizer)
    : ChatFormatter(tokenizer, tokenizer.chat_template()) {}

ChatFormatter::ChatFormatter(const Tokenizer& tokenizer, std::string_view chat_template)
    : tokenizer_(&tokenizer) {
  if (contains(chat_template, "<|im_start|>")) {
    family_ = ChatFamily::chatml;
    if (contains(chat_template, kQwenDefaultSystem)) default_system_ = kQwenDefaultSystem;
    tool_responses_ = contains(chat_template, "<tool_response>");
  } else if (contains(chat_template, "<|start_header_id|>")) {
    family_ = ChatFamily::llama3;
    llama31_preamble_ = contains(chat_template, "Cutting Knowledge Date");
  } else if (tokenizer.find_token("<|im_start|>") &&
             tokenizer.token_type(*tokenizer.find_token("<|im_start|>")) == TokenType::control) {
    family_ = ChatFamily::chatml;  // no or unknown template, but a ChatML vocabulary
  } else {
    throw Error("chat: unsupported chat template");
  }
  // The format writes these as special tokens; without them in the vocabulary the model would
  // see plain text where it expects a turn boundary.
  const std::vector<std::string_view> needed =
      family_ == ChatFamily::chatml
          ? std::vector<std::string_view>{"<|im_start|>", "<|im_end|>"}
          : std::vector<std::string_view>{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  for (std::string_view name : needed) {
    if (!tokenizer.find_token(name)) {
      throw Error("chat: the chat template needs token " + std::string(name) +
                  ", which is not in the vocabulary");
    }
  }
}

ChatPrompt ChatFormatter::format(std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  check_messages(messages);
  return family_ == ChatFamily::chatml ? format_chatml(messages, add_generation_prompt)
                                       : format_llama3(messages, add_generation_prompt);
}

ChatPrompt ChatFormatter::format_chatml(std::span<const ChatMessage> messages,
                                        bool add_generation_prompt) const {
  ChatPrompt p;
  p.add_bos = tokenizer_->add_bos();
  const auto special = [&](std::string s) { p.parts.emplace_back(std::move(s), true); };
  const auto content = [&](std::string_view s) { p.parts.emplace_back(std::string(s), false); };

  size_t first = 0;
  if (messages[0].role == "system") {
    special("<|im_start|>system\n");
    content(messages[0].content);
    special("<|im_end|>\n");
    first = 1;
  } else if (!default_system_.empty()) {
    special("<|im_start|>system\n");
    content(default_system_);
    special("<|im_end|>\n");
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system" || m.role == "user" || m.role == "assistant") {
      special("<|im_start|>" + m.role + "\n");
      content(m.content);
      special("<|im_end|>\n");
    } else if (m.role == "tool" && tool_responses_) {
      // Qwen: consecutive tool results share one user turn, each in <tool_response> tags.
      const bool opens = i == 0 || messages[i - 1].role != "tool";
      const bool closes = i + 1 == messages.size() || messages[i + 1].role != "tool";
      if (opens) special("<|im_start|>user");
      special("\n<tool_response>\n");
      content(m.content);
      special("\n</tool_response>");
      if (closes) special("<|im_end|>\n");
    } else {
      throw Error("chat: messages[" + std::to_string(i) + "].role: unsupported role '" + m.role +
                  "'");
    }
  }
  if (add_generation_prompt) special("<|im_start|>assistant\n");
  return p;
}

ChatPrompt ChatFormatter::format_llama3(std::span<const ChatMessage> messages,
                                        bool add_generation_prompt) const {
  ChatPrompt p;
  // The template starts with {{ bos_token }}: the BOS is part of the format whenever the
  // vocabulary has a control BOS, whatever add_bos_token says.
  p.add_bos = tokenizer_->bos().has_value();
  const auto special = [&](std::string s) { p.parts.emplace_back(std::move(s), true); };
  const auto content = [&](std::string s) { p.parts.emplace_back(std::move(s), false); };
  const auto header = [&](std::string_view role) {
    special("<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n");
  };

  size_t first = 0;
  if (llama31_preamble_) {
    // Llama 3.1 always opens with a system turn carrying the knowledge cut-off and date.
    header("system");
    std::string system(kLlama31Preamble);
    if (messages[0].role == "system") {
      system += trim(messages[0].content);
      first = 1;
    }
    content(system);
    special("<|eot_id|>");
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string role = m.role;
    if (role == "tool") role = "ipython";
    if (role != "system" && role != "user" && role != "assistant" && role != "ipython") {
      throw Error("chat: messages[" + std::to_string(i) + "].role: unsupported role '" + m.role +
                  "'");
    }
    header(role);
    content(trim(m.content));
    special("<|eot_id|>");
  }
  if (add_generation_prompt) header("assistant");
  return p;
}

std::vector<TokenId> ChatFormatter::encode(std::span<const ChatMessage> messages,
                                           bool add_generation_prompt) const {
  const ChatPrompt p = format(messages, add_generation_prompt);
  std::vector<TextPart> parts;
  parts.reserve(p.parts.size());
  for (const auto& [text, special] : p.parts) parts.push_back({text, special});
  std::vector<TokenId> ids;
  if (p.add_bos && tokenizer_->bos()) ids.push_back(*tokenizer_->bos());
  const std::vector<TokenId> body = tokenizer_->encode(parts);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace resident::tokenizer
