// libFuzzer target for the GGUF reader: any byte string must either load or throw
// resident::Error; a crash, a sanitizer report, another exception type, a hang or a huge
// allocation is a bug. Run (see docs/gguf.md):
//   mkdir -p /tmp/fuzz_corpus   # new inputs go to the first directory, seeds stay untouched
//   build-fuzz/fuzz_gguf -max_total_time=600 -rss_limit_mb=2048 /tmp/fuzz_corpus tests/fuzz/corpus
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gguf/gguf.h"
#include "gguf/gguf_fuzz.h"
#include "util/error.h"

namespace {

// The in-memory parser sees a buffer of exactly `size` bytes, so ASan catches any overread.
bool parse_in_memory(const uint8_t* data, size_t size) {
  try {
    resident::gguf::detail::parse_buffer("fuzz.gguf", data, size);
    return true;
  } catch (const resident::Error&) {
    return false;
  }
}

// The public entry point (open + fstat + mmap + parse), through a memfd so no disk is involved.
bool open_as_file(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 ||
      (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))) {
    std::perror("memfd");
    std::abort();
  }
  try {
    const auto file = resident::gguf::File::open(path);
    // Exercise every typed accessor on every key: each must return or throw Error.
    for (const auto& [key, value] : file.metadata()) {
      try {
        (void)file.find_uint(key);
      } catch (const resident::Error&) {
      }
      try {
        (void)file.find_float(key);
      } catch (const resident::Error&) {
      }
      try {
        (void)file.find_bool(key);
      } catch (const resident::Error&) {
      }
      try {
        (void)file.find_string(key);
      } catch (const resident::Error&) {
      }
      try {
        (void)file.find_array(key);
      } catch (const resident::Error&) {
      }
    }
    volatile uint64_t sum = 0;  // volatile: keep the reads
    for (const auto& t : file.tensors()) {
      if (file.find_tensor(t.name) != &t) std::abort();
      // Touch the first and last byte: they must lie inside the mapping.
      sum = sum + t.data[0] + t.data[t.n_bytes - 1];
    }
    if (file.total_tensor_bytes() > file.data_section_bytes()) std::abort();
    return true;
  } catch (const resident::Error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool in_memory = parse_in_memory(data, size);
  const bool as_file = open_as_file(data, size);
  // Both entry points run the same validation; a disagreement is a bug.
  if (in_memory != as_file) {
    std::fprintf(stderr, "parse_buffer and File::open disagree (%d vs %d)\n", in_memory, as_file);
    std::abort();
  }
  return 0;
}
