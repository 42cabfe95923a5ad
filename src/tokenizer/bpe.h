// Byte-level BPE over token ids: a piece's bytes start as the 256 byte tokens and adjacent
// pairs are merged lowest rank first (leftmost first among equal ranks), the order HF
// tokenizers and llama.cpp use. Pairs live in a linked list with a min-heap of candidate
// merges, so one piece costs O(n log n); results are cached by piece.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace resident::tokenizer {

using TokenId = int32_t;

class BpeModel {
 public:
  // `tokens` are in vocabulary (byte-unicode) space; `merges` are "left right" strings whose
  // position is their rank. Throws resident::Error if a byte has no token or a merge names a
  // string that is not a token (the field and index are named).
  // `ignore_merges`: a piece that is itself a token is emitted whole (Llama 3 / HF
  // "ignore_merges": true) instead of being rebuilt from merges.
  BpeModel(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
           bool ignore_merges);

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty).
  void encode_piece(std::string_view bytes, std::vector<TokenId>& out) const;

  TokenId byte_token(uint8_t b) const { return byte_token_[b]; }
  // Id of a vocabulary-space string, or -1.
  TokenId find(std::string_view vocab_text) const;

 private:
  struct Merge {
    uint32_t rank;
    TokenId result;
  };
  static uint64_t pair_key(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_piece(std::string_view bytes, std::vector<TokenId>& out) const;

  std::unordered_map<std::string, TokenId> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<TokenId, 256> byte_token_{};
  bool ignore_merges_ = false;

  // Natural text repeats pieces (" the", "\n    "), so most pieces are cache hits. Bounded:
  // cleared when full, and long pieces (rare, cheap to recompute relative to their length)
  // are not stored.
  static constexpr size_t kCacheEntries = 1 << 16;
  static constexpr size_t kCacheMaxPiece = 64;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

}  // namespace resident::tokenizer
