// The GPT-2 byte <-> unicode map. Byte-level BPE vocabularies are written in a space where each
// byte 0..255 is one printable code point: the 188 printable Latin-1 bytes stand for
// themselves and the other 68 (controls, space, 0x7F..0xA0, 0xAD) map to U+0100.. in byte
// order. So a token string like "Ġworld" means the bytes " world".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace resident::tokenizer {

// UTF-8 encoding of the code point that stands for byte `b`.
const std::string& byte_to_unicode(uint8_t b);

// Maps one code point back to its byte; nullopt if the code point is not in the map.
std::optional<uint8_t> unicode_to_byte(uint32_t cp);

// Byte string -> vocabulary space (each byte becomes its code point).
std::string bytes_to_unicode(std::string_view bytes);

// Vocabulary space -> bytes. Code points outside the map (only in malformed vocabularies) are
// kept as their own UTF-8 so that nothing is silently dropped.
std::string unicode_to_bytes(std::string_view text);

}  // namespace resident::tokenizer
