#include "tokenizer/byte_unicode.h"

#include "tokenizer/utf8.h"

namespace resident::tokenizer {
namespace {

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;

  ByteMap() {
    const auto printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      to_cp[b] = printable(b) ? static_cast<uint32_t>(b) : next++;
      utf8::append(to_utf8[b], to_cp[b]);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) {
  return byte_map().to_utf8[b];
}

std::optional<uint8_t> unicode_to_byte(uint32_t cp) {
  // Inverse of the construction above: printable Latin-1 is the identity, and U+0100..U+0143
  // are the 68 remapped bytes in increasing order.
  if (cp < 0x100) {
    if (byte_map().to_cp[cp] == cp) return static_cast<uint8_t>(cp);
    return std::nullopt;
  }
  if (cp < 0x100 + 68) {
    static const std::array<uint8_t, 68> remapped = [] {
      std::array<uint8_t, 68> r{};
      for (int b = 0; b < 256; ++b) {
        if (byte_map().to_cp[b] >= 0x100) r[byte_map().to_cp[b] - 0x100] = static_cast<uint8_t>(b);
      }
      return r;
    }();
    return remapped[cp - 0x100];
  }
  return std::nullopt;
}

std::string bytes_to_unicode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += byte_to_unicode(static_cast<uint8_t>(c));
  return out;
}

std::string unicode_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const utf8::Step s = utf8::step(text, pos);
    std::optional<uint8_t> b;
    if (s.kind == utf8::Step::Kind::valid) b = unicode_to_byte(s.code_point);
    if (b) {
      out.push_back(static_cast<char>(*b));
    } else {
      out.append(text.substr(pos, s.length));
    }
    pos += s.length;
  }
  return out;
}

}  // namespace resident::tokenizer
