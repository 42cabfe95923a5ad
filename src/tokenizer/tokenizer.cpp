#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "gguf/gguf.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace resident::tokenizer {
namespace {

// Names of the tokens that end a turn in the model families we know. Only control tokens
// count: an ordinary token with such a text would be a vocabulary defect, not a stop signal.
constexpr std::string_view kEndOfGeneration[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>",
                                                 "<|end_of_text|>", "<|eom_id|>"};

std::vector<std::string> read_strings(const gguf::File& file, std::string_view key, bool required) {
  const std::vector<gguf::Value>* array = file.find_array(key);
  std::vector<std::string> out;
  if (!array) {
    if (required) throw Error(file.path() + ": " + std::string(key) + ": missing");
    return out;
  }
  out.reserve(array->size());
  for (const gguf::Value& v : *array) {
    if (v.type != gguf::ValueType::STRING) {
      throw Error(file.path() + ": " + std::string(key) + ": expected an array of strings, found " +
                  std::string(gguf::value_type_name(v.type)));
    }
    out.push_back(v.s);
  }
  return out;
}

std::optional<int64_t> read_id(const gguf::File& file, std::string_view key) {
  const std::optional<uint64_t> v = file.find_uint(key);
  if (!v) return std::nullopt;
  return static_cast<int64_t>(std::min<uint64_t>(*v, INT64_MAX));
}

// "<0x0A>" -> 0x0A: the spelling byte tokens use in SentencePiece-derived vocabularies.
std::optional<uint8_t> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<uint8_t>(value);
}

bool is_hidden_special(TokenType t) {
  return t == TokenType::control || t == TokenType::unknown || t == TokenType::unused;
}

}  // namespace

VocabData read_vocab(const gguf::File& file) {
  VocabData d;
  d.model = file.find_string("tokenizer.ggml.model").value_or("");
  if (d.model.empty()) throw Error(file.path() + ": tokenizer.ggml.model: missing");
  d.pre = file.find_string("tokenizer.ggml.pre").value_or("default");
  d.tokens = read_strings(file, "tokenizer.ggml.tokens", true);
  d.merges = read_strings(file, "tokenizer.ggml.merges", false);
  if (const std::vector<gguf::Value>* types = file.find_array("tokenizer.ggml.token_type")) {
    d.token_types.reserve(types->size());
    for (const gguf::Value& v : *types) {
      if (!v.is_integer()) {
        throw Error(file.path() + ": tokenizer.ggml.token_type: expected integers, found " +
                    std::string(gguf::value_type_name(v.type)));
      }
      // Values outside 0..6 are rejected by the Tokenizer constructor, which names them.
      const int64_t t = v.type == gguf::ValueType::INT8 || v.type == gguf::ValueType::INT16 ||
                                v.type == gguf::ValueType::INT32 || v.type == gguf::ValueType::INT64
                            ? v.i
                            : static_cast<int64_t>(std::min<uint64_t>(v.u, INT32_MAX));
      d.token_types.push_back(static_cast<int32_t>(std::clamp<int64_t>(t, INT32_MIN, INT32_MAX)));
    }
  }
  d.bos_id = read_id(file, "tokenizer.ggml.bos_token_id");
  d.eos_id = read_id(file, "tokenizer.ggml.eos_token_id");
  d.eot_id = read_id(file, "tokenizer.ggml.eot_token_id");
  d.add_bos = file.find_bool("tokenizer.ggml.add_bos_token");
  d.chat_template = file.find_string("tokenizer.chat_template").value_or("");
  return d;
}

Tokenizer::Tokenizer(const gguf::File& file) try : Tokenizer(read_vocab(file)) {
} catch (const Error& e) {
  const std::string message = e.what();
  // Field errors from the plain-data constructor do not know the file; add it.
  if (message.rfind(file.path(), 0) == 0) throw;
  throw Error(file.path() + ": " + message);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer::Tokenizer(VocabData data) {
  if (data.model != "gpt2") {
    throw Error("tokenizer.ggml.model: unsupported tokenizer model '" + data.model +
                "' (only 'gpt2' byte-level BPE)");
  }
  if (data.tokens.empty()) throw Error("tokenizer.ggml.tokens: empty");
  if (data.tokens.size() > static_cast<size_t>(INT32_MAX)) {
    throw Error("tokenizer.ggml.tokens: too many tokens");
  }
  const size_t n = data.tokens.size();
  if (!data.token_types.empty() && data.token_types.size() != n) {
    throw Error("tokenizer.ggml.token_type: " + std::to_string(data.token_types.size()) +
                " entries for " + std::to_string(n) + " tokens");
  }
  types_.resize(n, TokenType::normal);
  for (size_t i = 0; i < data.token_types.size(); ++i) {
    const int32_t t = data.token_types[i];
    if (t < 0 || t > 6) {
      throw Error("tokenizer.ggml.token_type[" + std::to_string(i) + "]: unknown type " +
                  std::to_string(t));
    }
    types_[i] = static_cast<TokenType>(t);
  }

  pre_ = data.pre;
  pre_tokenizer_ = std::make_unique<PreTokenizer>(pretokenizer_pattern(pre_));
  // Llama 3's tokenizer.json sets "ignore_merges": true (llama.cpp does the same for this
  // pre-tokenizer); Qwen2's sets false.
  const bool llama3 = pretokenizer_pattern(pre_) == pretokenizer_pattern("llama-bpe");
  bpe_ = std::make_unique<BpeModel>(data.tokens, data.merges, llama3);

  pieces_.resize(n);
  specials_by_byte_.resize(256);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = data.tokens[i];
    switch (types_[i]) {
      case TokenType::normal:
      case TokenType::undefined:
        pieces_[i] = unicode_to_bytes(text);
        break;
      case TokenType::byte:
        if (const auto b = parse_byte_token(text)) {
          pieces_[i] = std::string(1, static_cast<char>(*b));
        } else {
          pieces_[i] = unicode_to_bytes(text);
        }
        break;
      case TokenType::control:
      case TokenType::user_defined:
        // Written literally in text (they are matched that way when encoding).
        pieces_[i] = text;
        if (!text.empty()) {
          specials_by_byte_[static_cast<uint8_t>(text[0])].push_back(static_cast<TokenId>(i));
        }
        break;
      case TokenType::unknown:
      case TokenType::unused:
        pieces_[i] = text;
        break;
    }
  }
  texts_ = std::move(data.tokens);
  for (auto& group : specials_by_byte_) {
    // Longest first, so that the first hit at a position is the longest match; ties by id
    // keep the order deterministic.
    std::sort(group.begin(), group.end(), [&](TokenId a, TokenId b) {
      return texts_[a].size() != texts_[b].size() ? texts_[a].size() > texts_[b].size() : a < b;
    });
  }

  const auto checked_id = [&](const std::optional<int64_t>& id,
                              const char* key) -> std::optional<TokenId> {
    if (!id) return std::nullopt;
    if (*id < 0 || static_cast<uint64_t>(*id) >= n) {
      throw Error(std::string(key) + ": " + std::to_string(*id) + " is outside the vocabulary (" +
                  std::to_string(n) + " tokens)");
    }
    return static_cast<TokenId>(*id);
  };
  const auto bos = checked_id(data.bos_id, "tokenizer.ggml.bos_token_id");
  const auto eos = checked_id(data.eos_id, "tokenizer.ggml.eos_token_id");
  const auto eot = checked_id(data.eot_id, "tokenizer.ggml.eot_token_id");
  if (bos && types_[*bos] == TokenType::control) bos_ = bos;
  // llama.cpp's default for a Llama 3 vocabulary without the key is to add the BOS.
  const bool add_bos_requested = data.add_bos.value_or(llama3);
  add_bos_ = add_bos_requested && bos_.has_value();

  const auto add_eog = [&](std::optional<TokenId> id) {
    if (id && types_[*id] == TokenType::control &&
        std::find(eog_.begin(), eog_.end(), *id) == eog_.end()) {
      eog_.push_back(*id);
    }
  };
  add_eog(eos);
  add_eog(eot);
  for (std::string_view name : kEndOfGeneration) add_eog(find_token(name));
  chat_template_ = std::move(data.chat_template);
}

void Tokenizer::check_id(TokenId id, const char* what) const {
  if (id < 0 || static_cast<size_t>(id) >= texts_.size()) {
    throw Error(std::string(what) + ": token id " + std::to_string(id) +
                " is outside the vocabulary (" + std::to_string(texts_.size()) + " tokens)");
  }
}

const std::string& Tokenizer::token_text(TokenId id) const {
  check_id(id, "token_text");
  return texts_[id];
}

TokenType Tokenizer::token_type(TokenId id) const {
  check_id(id, "token_type");
  return types_[id];
}

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
  // Special tokens are not always reachable through the BPE map (a later duplicate may
  // shadow them), so look there first.
  if (!text.empty()) {
    for (TokenId id : specials_by_byte_[static_cast<uint8_t>(text[0])]) {
      if (texts_[id] == text) return id;
    }
  }
  const TokenId id = bpe_->find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool Tokenizer::is_eog(TokenId id) const {
  return std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

void Tokenizer::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
  pre_tokenizer_->split(text, [&](std::string_view piece) { bpe_->encode_piece(piece, out); });
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const TextPart part{text, parse_special};
  return encode(std::span<const TextPart>(&part, 1));
}

std::vector<TokenId> Tokenizer::encode(std::span<const TextPart> parts) const {
  size_t offset = 0;
  for (const TextPart& part : parts) {
    if (const auto bad = utf8::first_invalid(part.text)) {
      throw Error("prompt: invalid UTF-8 at byte " + std::to_string(offset + *bad));
    }
    offset += part.text.size();
  }
  std::vector<TokenId> out;
  // Plain text accumulates across parts and is pre-tokenized only when a special token (or
  // the end) closes it, exactly as if the parts were one string.
  std::string plain;
  for (const TextPart& part : parts) {
    const std::string_view text = part.text;
    size_t start = 0;  // beginning of the not yet flushed plain text in `text`
    if (part.parse_special) {
      for (size_t pos = 0; pos < text.size(); ++pos) {
        const auto& candidates = specials_by_byte_[static_cast<uint8_t>(text[pos])];
        for (TokenId id : candidates) {
          const std::string& s = texts_[id];
          if (text.compare(pos, s.size(), s) != 0) continue;
          plain.append(text.substr(start, pos - start));
          encode_plain(plain, out);
          plain.clear();
          out.push_back(id);
          pos += s.size() - 1;
          start = pos + 1;
          break;
        }
      }
    }
    plain.append(text.substr(start));
  }
  encode_plain(plain, out);
  return out;
}

std::vector<TokenId> Tokenizer::encode_prompt(std::string_view text, bool parse_special) const {
  std::vector<TokenId> ids;
  if (add_bos_) ids.push_back(*bos_);
  const std::vector<TokenId> body = encode(text, parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string_view Tokenizer::piece(TokenId id, bool render_special) const {
  check_id(id, "decode");
  if (!render_special && is_hidden_special(types_[id])) return {};
  return pieces_[id];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  for (TokenId id : ids) out.append(piece(id, render_special));
  return out;
}

std::string StreamDecoder::push(TokenId id) {
  return push_bytes(tokenizer_->piece(id, render_special_));
}

std::string StreamDecoder::push_bytes(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const utf8::Step s = utf8::step(pending_, pos);
    if (s.kind == utf8::Step::Kind::incomplete) break;  // keep it: the next token may finish it
    if (s.kind == utf8::Step::Kind::valid) {
      out.append(pending_, pos, s.length);
    } else {
      out.append(utf8::kReplacement);  // can never become valid: replace now
    }
    pos += s.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace resident::tokenizer
