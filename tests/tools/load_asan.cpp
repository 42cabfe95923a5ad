// resident_load_asan: loads a model file (GGUF reader + model binding) in a build with
// AddressSanitizer and UndefinedBehaviorSanitizer, so the malformed-file corpus
// (tests/python/test_malformed.py) proves no hostile file reads out of bounds or hits undefined
// behaviour, not only that it exits with a message. Prints "error: ..." and exits 1 on a
// rejected file, "ok" and 0 on a valid one.
#include <cstdio>

#include "model/model.h"
#include "util/error.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: resident_load_asan MODEL.gguf\n");
    return 2;
  }
  try {
    const resident::Model model = resident::Model::load(argv[1]);
    std::printf("ok %zu tensors\n", model.file.tensors().size());
    return 0;
  } catch (const resident::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
