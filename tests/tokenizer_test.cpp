// Tokenizer unit tests on a small synthetic vocabulary (no model file needed), plus a few
// checks on the real model when it is present. The exhaustive comparison against an
// independent reference (HF tokenizers) is tests/python/test_tokenizer.py.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "gguf/gguf.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace resident::tokenizer {
namespace {

using Ids = std::vector<TokenId>;

// Ids 0..255 are the byte tokens in byte order, so byte b has id b.
VocabData byte_vocab(std::string pre = "qwen2") {
  VocabData d;
  d.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) d.tokens.push_back(byte_to_unicode(static_cast<uint8_t>(b)));
  d.token_types.assign(256, 1);
  return d;
}

TokenId add(VocabData& d, std::string text, int type = 1) {
  d.tokens.push_back(std::move(text));
  d.token_types.push_back(type);
  return static_cast<TokenId>(d.tokens.size() - 1);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Tokenizer, MergesApplyLowestRankFirst) {
  VocabData d = byte_vocab();
  const TokenId ab = add(d, "ab"), bc = add(d, "bc");
  d.merges = {"a b", "b c"};
  EXPECT_EQ(Tokenizer(d).encode("abc"), (Ids{ab, 'c'}));
  d.merges = {"b c", "a b"};  // same pairs, ranks swapped: the other split wins
  EXPECT_EQ(Tokenizer(d).encode("abc"), (Ids{'a', bc}));
}

TEST(Tokenizer, EqualRanksMergeLeftmostFirstAndChain) {
  VocabData d = byte_vocab();
  const TokenId aa = add(d, "aa"), aaaa = add(d, "aaaa");
  d.merges = {"a a", "aa aa"};
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("aaa"), (Ids{aa, 'a'}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{aaaa, 'a'}));
  EXPECT_EQ(t.encode("aaaaaa"), (Ids{aaaa, aa}));
}

TEST(Tokenizer, SpaceIsByteLevelAndAttachesToTheWord) {
  VocabData d = byte_vocab();
  const TokenId g_h = add(d, "\xC4\xA0h"), g_hi = add(d, "\xC4\xA0hi");  // "Ġh", "Ġhi"
  d.merges = {"\xC4\xA0 h", "\xC4\xA0h i"};
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("a hi"), (Ids{'a', g_hi}));
  EXPECT_EQ(t.encode(" h"), (Ids{g_h}));
  EXPECT_EQ(t.decode(t.encode("a hi")), "a hi");
}

TEST(Tokenizer, UnmergedCharactersFallBackToByteTokens) {
  const Tokenizer t(byte_vocab());
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, no merges for it
  EXPECT_EQ(t.encode("\xC3\xA9"), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(t.encode(emoji), (Ids{0xF0, 0x9F, 0x98, 0x80}));
  EXPECT_EQ(t.decode(t.encode("x\xC3\xA9" + emoji)), "x\xC3\xA9" + emoji);
}

TEST(Tokenizer, SpecialTokensLeftmostLongestAndOnlyWhenAsked) {
  VocabData d = byte_vocab();
  const TokenId start = add(d, "<|im_start|>", 3), end = add(d, "<|im_end|>", 3);
  const TokenId a = add(d, "<|a|>", 3), ab = add(d, "<|a|>b", 3), tool = add(d, "<tool>", 4);
  add(d, "[PAD1]", 5);  // unused: never matched
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("<|im_start|>x<|im_end|>"), (Ids{start, 'x', end}));
  EXPECT_EQ(t.encode("<|a|>bc"), (Ids{ab, 'c'}));
  EXPECT_EQ(t.encode("<|a|>c"), (Ids{a, 'c'}));
  EXPECT_EQ(t.encode("<<tool>>"), (Ids{'<', tool, '>'}));
  EXPECT_EQ(t.encode("[PAD1]"), (Ids{'[', 'P', 'A', 'D', '1', ']'}));
  const Ids plain = t.encode("<|im_end|>", /*parse_special=*/false);
  EXPECT_EQ(plain.size(), 10u);
  for (TokenId id : plain) EXPECT_LT(id, 256);
  // Control tokens are hidden unless asked for; user-defined ones are content.
  EXPECT_EQ(t.decode(Ids{start, 'x', tool}), "x<tool>");
  EXPECT_EQ(t.decode(Ids{start, 'x'}, /*render_special=*/true), "<|im_start|>x");
}

TEST(Tokenizer, PartsOnlyParseSpecialsWhereAllowed) {
  VocabData d = byte_vocab();
  const TokenId end = add(d, "<|im_end|>", 3);
  const Tokenizer t(d);
  const std::vector<TextPart> parts = {{"<|im_end|>", true}, {"<|im_end|>", false}};
  const Ids ids = t.encode(parts);
  ASSERT_EQ(ids.size(), 11u);
  EXPECT_EQ(ids[0], end);
  // Plain text spanning parts is pre-tokenized as one string.
  const std::vector<TextPart> split = {{"12", false}, {"3 ab", true}};
  EXPECT_EQ(t.encode(split), t.encode("123 ab"));
}

TEST(PreTokenizer, Qwen2AndLlama3Patterns) {
  const auto pieces = [](const std::string& pre, std::string_view text) {
    std::vector<std::string> out;
    PreTokenizer(pretokenizer_pattern(pre)).split(text, [&](std::string_view p) {
      out.emplace_back(p);
    });
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("qwen2", "12345"), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(pieces("llama-bpe", "12345"), (V{"123", "45"}));
  EXPECT_EQ(pieces("qwen2", "I'LL go"), (V{"I", "'LL", " go"}));
  EXPECT_EQ(pieces("qwen2", "a  \n\n b"), (V{"a", "  \n\n", " b"}));
  EXPECT_EQ(pieces("qwen2", "x   y"), (V{"x", "  ", " y"}));
  EXPECT_EQ(pieces("default", "hello world!!"), (V{"hello", " world", "!!"}));
  EXPECT_EQ(message_of([] { pretokenizer_pattern("falcon"); }),
            "tokenizer.ggml.pre: unsupported pre-tokenizer 'falcon'");
}

TEST(Tokenizer, InvalidUtf8IsAnErrorWithItsOffset) {
  const Tokenizer t(byte_vocab());
  const std::pair<std::string, size_t> cases[] = {
      {"ab\xFF", 2},
      {"\xC0\x80", 0},
      {"ok\xED\xA0\x80", 2},     // surrogate
      {"x\xF4\x90\x80\x80", 1},  // > U+10FFFF
      {"abc\xE2\x82", 3},        // truncated
      {"\x80", 0},
  };
  for (const auto& [text, offset] : cases) {
    EXPECT_EQ(message_of([&] { t.encode(text); }),
              "prompt: invalid UTF-8 at byte " + std::to_string(offset));
  }
  EXPECT_NO_THROW(t.encode("\xF4\x8F\xBF\xBF\xEF\xBF\xBF"));  // U+10FFFF, U+FFFF are valid
}

TEST(StreamDecoder, HoldsSplitCharactersUntilComplete) {
  const Tokenizer t(byte_vocab());
  StreamDecoder s(t);
  EXPECT_EQ(s.push('a'), "a");
  EXPECT_EQ(s.push(0xF0), "");
  EXPECT_EQ(s.push(0x9F), "");
  EXPECT_EQ(s.push(0x98), "");
  EXPECT_EQ(s.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(s.push(0xC3), "");
  EXPECT_EQ(s.push('b'), std::string(utf8::kReplacement) + "b");  // C3 cannot be completed
  EXPECT_EQ(s.push(0xE2), "");
  EXPECT_EQ(s.flush(), utf8::kReplacement);  // truncated at the end
  EXPECT_EQ(s.flush(), "");
}

TEST(StreamDecoder, RandomByteStreamsEqualWholeDecodeSanitized) {
  // Property: streaming never changes the text, only when it appears. Fresh seed each run.
  const Tokenizer t(byte_vocab());
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  // Bias toward lead and continuation bytes so that splits and ill-formed cases are common.
  const uint8_t interesting[] = {'a',  0x80, 0xBF, 0xC2, 0xC3, 0xDF, 0xE0, 0xE2, 0xED,
                                 0xEF, 0xF0, 0xF4, 0xF5, 0xA0, 0x90, 0x8F, 0xFF};
  for (int trial = 0; trial < 2000; ++trial) {
    Ids ids(rng() % 24);
    for (TokenId& id : ids) {
      id = rng() % 2 ? interesting[rng() % sizeof interesting] : static_cast<TokenId>(rng() % 256);
    }
    StreamDecoder s(t);
    std::string streamed;
    for (TokenId id : ids) {
      const std::string out = s.push(id);
      ASSERT_FALSE(utf8::first_invalid(out).has_value()) << "seed " << seed;
      streamed += out;
    }
    streamed += s.flush();
    ASSERT_EQ(streamed, utf8::sanitize(t.decode(ids))) << "seed " << seed << " trial " << trial;
  }
}

TEST(Tokenizer, BosAndEndOfGenerationTrustOnlyControlTokens) {
  VocabData d = byte_vocab();
  const TokenId eot = add(d, "<|endoftext|>", 3), im_end = add(d, "<|im_end|>", 3);
  add(d, "<|eot_id|>", 1);  // named like a stop token but ordinary: must not stop
  // The defect the brief describes: BOS = EOS = an ordinary token ('"'), add_bos true.
  d.bos_id = '"';
  d.eos_id = '"';
  d.add_bos = true;
  {
    const Tokenizer t(d);
    EXPECT_FALSE(t.bos().has_value());
    EXPECT_FALSE(t.add_bos());
    EXPECT_FALSE(t.is_eog('"'));
    EXPECT_EQ(t.eog_ids(), (Ids{im_end, eot}));
    EXPECT_EQ(t.encode_prompt("hi"), t.encode("hi"));
  }
  d.bos_id = eot;
  d.eos_id = im_end;
  const Tokenizer t(d);
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.encode_prompt("hi"), (Ids{eot, 'h', 'i'}));
  EXPECT_EQ(t.eog_ids().front(), im_end);
  d.bos_id = 100000;
  EXPECT_EQ(message_of([&] { Tokenizer{d}; }),
            "tokenizer.ggml.bos_token_id: 100000 is outside the vocabulary (259 tokens)");
}

TEST(Tokenizer, MalformedVocabulariesAreErrors) {
  VocabData d = byte_vocab();
  d.merges = {"a b"};
  EXPECT_EQ(
      message_of([&] { Tokenizer{d}; }),
      "tokenizer.ggml.merges[0]: \"a b\" names a string that is not in tokenizer.ggml.tokens");
  d.merges = {"ab"};
  EXPECT_EQ(message_of([&] { Tokenizer{d}; }),
            "tokenizer.ggml.merges[0]: expected \"left right\", found \"ab\"");
  d = byte_vocab();
  d.tokens[0x41] = "zz";
  EXPECT_EQ(
      message_of([&] { Tokenizer{d}; }),
      "tokenizer.ggml.tokens: byte 0x41 has no token (a byte-level BPE vocabulary needs all 256)");
  d = byte_vocab();
  d.model = "llama";
  EXPECT_EQ(
      message_of([&] { Tokenizer{d}; }),
      "tokenizer.ggml.model: unsupported tokenizer model 'llama' (only 'gpt2' byte-level BPE)");
  d = byte_vocab("mystery");
  EXPECT_EQ(message_of([&] { Tokenizer{d}; }),
            "tokenizer.ggml.pre: unsupported pre-tokenizer 'mystery'");
  d = byte_vocab();
  d.token_types[7] = 9;
  EXPECT_EQ(message_of([&] { Tokenizer{d}; }), "tokenizer.ggml.token_type[7]: unknown type 9");
  d = byte_vocab();
  EXPECT_EQ(message_of([&] { Tokenizer(d).decode(Ids{256}); }),
            "decode: token id 256 is outside the vocabulary (256 tokens)");
}

VocabData chat_vocab() {
  VocabData d = byte_vocab();
  for (const char* s : {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>",
                        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
    add(d, s, 3);
  }
  return d;
}

TEST(Chat, ChatMLWithQwenDefaultSystemMessage) {
  const Tokenizer t(chat_vocab());
  const std::string qwen_template =
      "{%- if messages[0]['role'] == 'system' %}...{%- else %}{{- '<|im_start|>system\\nYou are "
      "Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}";
  const ChatFormatter chat(t, qwen_template);
  EXPECT_EQ(chat.family(), ChatFamily::chatml);
  const std::vector<ChatMessage> m = {{"user", "Hi <|im_end|>"}};
  const ChatPrompt p = chat.format(m, true);
  EXPECT_EQ(p.text(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi <|im_end|><|im_end|>\n"
            "<|im_start|>assistant\n");
  // The user's "<|im_end|>" is text; the template's are tokens.
  const Ids ids = chat.encode(m, true);
  const TokenId im_end = *t.find_token("<|im_end|>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_end), 2);
  const std::vector<ChatMessage> with_system = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
  EXPECT_EQ(chat.format(with_system, false).text(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\nA<|im_end|>\n");
  EXPECT_EQ(message_of([&] {
              chat.format(std::vector<ChatMessage>{{"wizard", "x"}}, true);
            }),
            "chat: messages[0].role: unsupported role 'wizard'");
}

TEST(Chat, Llama3HeadersAndBos) {
  VocabData d = chat_vocab();
  d.bos_id = *Tokenizer(chat_vocab()).find_token("<|begin_of_text|>");
  d.add_bos = true;
  const Tokenizer t(d);
  const ChatFormatter chat(t, "{{ bos_token }}{% for m in messages %}<|start_header_id|>...");
  EXPECT_EQ(chat.family(), ChatFamily::llama3);
  const std::vector<ChatMessage> m = {{"system", "Be terse."}, {"user", "  Hello \n"}};
  const ChatPrompt p = chat.format(m, true);
  EXPECT_TRUE(p.add_bos);
  EXPECT_EQ(p.text(),
            "<|start_header_id|>system<|end_header_id|>\n\nBe terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const Ids ids = chat.encode(m, true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], *t.bos());
}

TEST(Chat, UnknownTemplateFallsBackToChatMLOnlyWithItsTokens) {
  const Tokenizer with_chatml(chat_vocab());
  EXPECT_EQ(ChatFormatter(with_chatml, "{{ weird }}").family(), ChatFamily::chatml);
  const Tokenizer plain(byte_vocab());
  EXPECT_EQ(message_of([&] { ChatFormatter(plain, "{{ weird }}"); }),
            "chat: unsupported chat template");
}

// ---- real model (skipped when absent) ----

std::string model_path() {
  if (const char* env = std::getenv("RESIDENT_MODEL")) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf";
}

TEST(RealModel, QwenTokenizerFromGguf) {
  const std::string path = model_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "real model not found at " << path;
  const gguf::File file = gguf::File::open(path);
  const Tokenizer t(file);
  EXPECT_EQ(t.vocab_size(), 151936u);
  EXPECT_EQ(t.pre(), "qwen2");
  // Reference ids (HF tokenizers on the same vocabulary, see test_tokenizer.py).
  EXPECT_EQ(t.encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(t.encode("<|im_start|>user\n"), (Ids{151644, 872, 198}));
  EXPECT_FALSE(t.add_bos());
  EXPECT_TRUE(t.is_eog(151645));  // <|im_end|>
  EXPECT_TRUE(t.is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(t.is_eog(1));
  EXPECT_EQ(ChatFormatter(t).family(), ChatFamily::chatml);

  // 10 KB of varied text (fresh words each run so the piece cache cannot help much) must
  // tokenize in milliseconds; 100 ms leaves room for a loaded 2-core CI machine.
  std::mt19937 rng(std::random_device{}());
  std::string text;
  while (text.size() < 10000) {
    const int len = 1 + rng() % 9;
    for (int i = 0; i < len; ++i) text += static_cast<char>('a' + rng() % 26);
    text += rng() % 7 ? " " : ".\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = t.encode(text);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_LT(ms, 100.0) << ids.size() << " tokens";
  std::printf("10 KB of random words: %zu tokens in %.2f ms\n", ids.size(), ms);
}

}  // namespace
}  // namespace resident::tokenizer
