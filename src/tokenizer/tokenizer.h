// Byte-level BPE tokenizer built from GGUF metadata (tokenizer.ggml.*): the Qwen2 / Llama 3
// family. Text -> ids: validate UTF-8, cut out special tokens, pre-tokenize with the model's
// regex, BPE each piece. Ids -> text: byte pieces, with a streaming decoder that only emits
// complete UTF-8.
//
// BOS / end-of-generation policy (docs/tokenizer.md): metadata is trusted only where it is
// consistent. A BOS is added only when add_bos_token is true AND bos_token_id names a control
// token; generation stops on eos_token_id only if it names a control token, plus the control
// tokens among <|im_end|>, <|endoftext|>, <|eot_id|>, <|end_of_text|>, <|eom_id|>.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"

namespace resident::gguf {
class File;
}

namespace resident::tokenizer {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// Everything the tokenizer needs, as plain data: what read_vocab() takes from a GGUF file,
// or what a test writes by hand.
struct VocabData {
  std::string model = "gpt2";        // tokenizer.ggml.model
  std::string pre = "default";       // tokenizer.ggml.pre
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens (byte-unicode space)
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type; empty: all normal
  std::vector<std::string> merges;   // tokenizer.ggml.merges, "left right", rank = index
  std::optional<int64_t> bos_id;     // tokenizer.ggml.bos_token_id
  std::optional<int64_t> eos_id;     // tokenizer.ggml.eos_token_id
  std::optional<int64_t> eot_id;     // tokenizer.ggml.eot_token_id
  std::optional<bool> add_bos;       // tokenizer.ggml.add_bos_token
  std::string chat_template;         // tokenizer.chat_template ("" if absent)
};

// Reads the tokenizer.* metadata; throws resident::Error naming the file and key.
VocabData read_vocab(const gguf::File& file);

// One span of text to encode, with whether special tokens may be recognised in it. Adjacent
// parts are pre-tokenized as one text, so splitting a string into parts never changes its
// tokens except where a special token is (or is not) recognised.
struct TextPart {
  std::string_view text;
  bool parse_special;
};

class Tokenizer {
 public:
  // Throws resident::Error naming the tokenizer.* field that is missing or inconsistent.
  explicit Tokenizer(VocabData data);
  explicit Tokenizer(const gguf::File& file);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  size_t vocab_size() const { return texts_.size(); }

  // Text -> ids, no BOS. With parse_special, control and user-defined tokens written in the
  // text become their ids (leftmost, then longest match); without, they are plain text.
  // Invalid UTF-8 throws "prompt: invalid UTF-8 at byte N". Thread-safe.
  std::vector<TokenId> encode(std::string_view text, bool parse_special = true) const;
  std::vector<TokenId> encode(std::span<const TextPart> parts) const;
  // encode() with the BOS in front when add_bos().
  std::vector<TokenId> encode_prompt(std::string_view text, bool parse_special = true) const;

  // Ids -> bytes (not necessarily valid UTF-8: a multi-byte character may span tokens).
  // Control/unknown/unused tokens give their text only with render_special. An id outside the
  // vocabulary throws resident::Error.
  std::string decode(std::span<const TokenId> ids, bool render_special = false) const;
  // The bytes one token stands for (empty for a hidden special token).
  std::string_view piece(TokenId id, bool render_special = false) const;

  const std::string& token_text(TokenId id) const;  // as stored (vocabulary space)
  TokenType token_type(TokenId id) const;
  std::optional<TokenId> find_token(std::string_view text) const;  // exact stored text

  std::optional<TokenId> bos() const { return bos_; }  // only if it names a control token
  bool add_bos() const { return add_bos_; }
  const std::vector<TokenId>& eog_ids() const { return eog_; }
  bool is_eog(TokenId id) const;

  const std::string& pre() const { return pre_; }
  const std::string& chat_template() const { return chat_template_; }

 private:
  void check_id(TokenId id, const char* what) const;
  void encode_plain(std::string_view text, std::vector<TokenId>& out) const;

  std::vector<std::string> texts_;
  std::vector<TokenType> types_;
  std::vector<std::string> pieces_;  // decoded bytes per token
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::string pre_;
  std::string chat_template_;
  // Special tokens recognised in text, grouped by first byte, longest first.
  std::vector<std::vector<TokenId>> specials_by_byte_;
  std::optional<TokenId> bos_;
  bool add_bos_ = false;
  std::vector<TokenId> eog_;
};

// Turns generated ids into text as it streams: emits only complete UTF-8 characters, holding
// back a tail that the next token may complete. Ill-formed bytes become U+FFFD, so the output
// is always valid UTF-8 (safe to put in JSON); flush() ends the stream.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(&tokenizer), render_special_(render_special) {}
  std::string push(TokenId id);
  std::string push_bytes(std::string_view bytes);
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  std::string pending_;  // at most 3 bytes: a valid prefix of one character
};

}  // namespace resident::tokenizer
