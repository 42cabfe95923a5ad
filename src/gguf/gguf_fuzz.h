// Internal entry point for the fuzz target (tests/fuzz/fuzz_gguf.cpp) and tests: runs the exact
// parser and validator that File::open runs, on a caller-owned buffer instead of a mapping.
// Parsing a buffer of exactly `size` bytes lets AddressSanitizer catch a read one byte past the
// end, which a page-granular mmap would hide. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace resident::gguf::detail {

// Parses and validates `data` as a whole GGUF file named `path` (for messages), then drops the
// result. Throws resident::Error exactly where File::open would.
void parse_buffer(const std::string& path, const uint8_t* data, size_t size);

}  // namespace resident::gguf::detail
