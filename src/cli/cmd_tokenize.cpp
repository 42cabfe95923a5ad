// `resident tokenize` (hidden): exposes the tokenizer to tests and debugging.
//   resident tokenize -m MODEL -p TEXT            ids of TEXT, space separated
//   resident tokenize -m MODEL --jsonl            stdin: one JSON string per line;
//                                                 stdout: one JSON array of ids per line
//   resident tokenize -m MODEL --decode [--jsonl] ids -> text (JSON arrays in, JSON strings out)
//   resident tokenize -m MODEL --chat             stdin: one JSON object per line
//                  {"messages": [{"role", "content"}...], "add_generation_prompt": bool}
//                                                 stdout: {"text": ..., "ids": [...]} per line
// The JSONL modes let a test push thousands of strings through one process.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/command_registry.h"
#include "gguf/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace resident::cli {
namespace {

using nlohmann::json;
using tokenizer::TokenId;

struct Options {
  std::string model;
  std::string prompt;
  bool jsonl = false;
  bool no_special = false;
  bool decode = false;
  bool render_special = false;
  bool chat = false;
};

// Decoded bytes may be ill-formed UTF-8 (a token boundary inside a character); JSON cannot
// carry that, so it is replaced with U+FFFD (a round-trip test then sees the difference).
std::string to_json_string(const std::string& bytes) {
  return json(bytes).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<TokenId> ids_from_json(const json& j, size_t line) {
  if (!j.is_array()) throw Error("stdin line " + std::to_string(line) + ": expected an array");
  std::vector<TokenId> ids;
  for (const json& v : j) {
    if (!v.is_number_integer()) {
      throw Error("stdin line " + std::to_string(line) + ": expected integer ids");
    }
    ids.push_back(v.get<TokenId>());
  }
  return ids;
}

json parse_line(const std::string& line, size_t number) {
  try {
    return json::parse(line);
  } catch (const json::exception& e) {
    throw Error("stdin line " + std::to_string(number) + ": " + e.what());
  }
}

void write_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

int run(const Options& o) {
  const gguf::File file = gguf::File::open(o.model);
  const tokenizer::Tokenizer tok(file);
  const bool special = !o.no_special;

  if (o.chat) {
    const tokenizer::ChatFormatter chat(tok);
    std::string line;
    for (size_t n = 1; std::getline(std::cin, line); ++n) {
      const json request = parse_line(line, n);
      std::vector<tokenizer::ChatMessage> messages;
      for (const json& m : request.value("messages", json::array())) {
        messages.push_back({m.value("role", ""), m.value("content", "")});
      }
      const tokenizer::ChatPrompt p =
          chat.format(messages, request.value("add_generation_prompt", true));
      json out;
      out["text"] = p.text();
      out["add_bos"] = p.add_bos;
      out["ids"] = chat.encode(messages, request.value("add_generation_prompt", true));
      write_line(out.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    return 0;
  }

  if (o.decode) {
    if (o.jsonl) {
      std::string line;
      for (size_t n = 1; std::getline(std::cin, line); ++n) {
        write_line(
            to_json_string(tok.decode(ids_from_json(parse_line(line, n), n), o.render_special)));
      }
    } else {
      std::string text = o.prompt;
      if (text.empty()) {
        std::stringstream ss;
        ss << std::cin.rdbuf();
        text = ss.str();
      }
      for (char& c : text) {
        if (c == ',') c = ' ';
      }
      std::istringstream in(text);
      std::vector<TokenId> ids;
      long long v;
      while (in >> v) ids.push_back(static_cast<TokenId>(v));
      if (!in.eof()) throw Error("--decode: expected integer ids");
      tokenizer::StreamDecoder stream(tok, o.render_special);
      std::string out;
      for (TokenId id : ids) out += stream.push(id);
      out += stream.flush();
      write_line(out);
    }
    return 0;
  }

  if (o.jsonl) {
    std::string line, out;
    for (size_t n = 1; std::getline(std::cin, line); ++n) {
      const json j = parse_line(line, n);
      if (!j.is_string()) throw Error("stdin line " + std::to_string(n) + ": expected a string");
      out = json(tok.encode(j.get_ref<const std::string&>(), special)).dump();
      write_line(out);
    }
    return 0;
  }

  std::string line;
  for (TokenId id : tok.encode_prompt(o.prompt, special)) {
    if (!line.empty()) line += ' ';
    line += std::to_string(id);
  }
  write_line(line);
  return 0;
}

const CommandRegistration registration{Command{
    "tokenize",
    "Tokenize text with a model's tokenizer (test/debug)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      sub.add_option("-m,--model", o->model, "GGUF model file")->required();
      sub.add_option("-p,--prompt", o->prompt, "text to tokenize (or ids with --decode)");
      sub.add_flag("--jsonl", o->jsonl, "read JSON lines on stdin, write JSON lines");
      sub.add_flag("--no-special", o->no_special, "treat special-token text as plain text");
      sub.add_flag("--decode", o->decode, "ids in, text out");
      sub.add_flag("--render-special", o->render_special, "decode control tokens as their text");
      sub.add_flag("--chat", o->chat, "format chat requests (JSON lines) and tokenize them");
      return [o] { return run(*o); };
    },
    /*hidden=*/true,
}};

}  // namespace
}  // namespace resident::cli
