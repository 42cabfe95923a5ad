#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizer/byte_unicode.h"
#include "util/error.h"

namespace resident::tokenizer {

BpeModel::BpeModel(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                   bool ignore_merges)
    : ignore_merges_(ignore_merges) {
  vocab_.reserve(tokens.size());
  // A later duplicate wins, as when HF builds its vocabulary dict (and llama.cpp its map).
  for (size_t i = 0; i < tokens.size(); ++i) vocab_[tokens[i]] = static_cast<TokenId>(i);

  for (int b = 0; b < 256; ++b) {
    const TokenId id = find(byte_to_unicode(static_cast<uint8_t>(b)));
    if (id < 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      throw Error(std::string("tokenizer.ggml.tokens: byte ") + hex +
                  " has no token (a byte-level BPE vocabulary needs all 256)");
    }
    byte_token_[b] = id;
  }

  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    const auto field = [&] { return "tokenizer.ggml.merges[" + std::to_string(rank) + "]: "; };
    // Vocabulary-space strings never contain a plain space (the byte 0x20 is written 'Ġ'),
    // so the first space after the first character separates the two halves.
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos || space + 1 >= m.size()) {
      throw Error(field() + "expected \"left right\", found \"" + m + "\"");
    }
    const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
    const TokenId a = find(left), b = find(right);
    const TokenId result = find(std::string(left) + std::string(right));
    if (a < 0 || b < 0 || result < 0) {
      throw Error(field() + "\"" + m + "\" names a string that is not in tokenizer.ggml.tokens");
    }
    merges_.try_emplace(pair_key(a, b),
                        Merge{static_cast<uint32_t>(rank), result});  // first rank wins
  }
}

TokenId BpeModel::find(std::string_view vocab_text) const {
  const auto it = vocab_.find(std::string(vocab_text));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_piece(std::string_view bytes, std::vector<TokenId>& out) const {
  if (bytes.size() == 1) {
    out.push_back(byte_token_[static_cast<uint8_t>(bytes[0])]);
    return;
  }
  const bool cacheable = bytes.size() <= kCacheMaxPiece;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    const auto it = cache_.find(std::string(bytes));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_piece(bytes, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.try_emplace(std::string(bytes), out.begin() + first, out.end());
  }
}

void BpeModel::merge_piece(std::string_view bytes, std::vector<TokenId>& out) const {
  if (ignore_merges_) {
    const TokenId whole = find(bytes_to_unicode(bytes));
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  const int n = static_cast<int>(bytes.size());
  std::vector<TokenId> id(n);
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    id[i] = byte_token_[static_cast<uint8_t>(bytes[i])];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }

  struct Candidate {
    uint32_t rank;
    int left, right;
    TokenId left_id, right_id, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const auto it = merges_.find(pair_key(id[left], id[right]));
    if (it != merges_.end())
      heap.push({it->second.rank, left, right, id[left], id[right], it->second.result});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);

  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // Stale entries (a side was merged away or changed since the push) are skipped: a removed
    // symbol never comes back, and a surviving one changes id only through a merge.
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right || id[c.left] != c.left_id ||
        id[c.right] != c.right_id) {
      continue;
    }
    id[c.left] = c.result;
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
}

}  // namespace resident::tokenizer
