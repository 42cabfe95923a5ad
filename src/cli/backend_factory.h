// Chooses and builds a backend for --device cpu|cuda|auto. Lives in the CLI because only the
// executable links the optional CUDA library.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "engine/backend.h"
#include "model/model.h"

namespace resident::cli {

struct BackendOptions {
  std::string device = "auto";  // cpu | cuda | auto
  int n_ctx = 4096;
  int threads = 0;                // CPU threads; 0 = all cores
  std::string memory = "device";  // cuda weight memory: device | unified
  bool verbose = false;
};

// Throws resident::Error for an unknown device or `cuda` without a usable GPU (never a silent
// fallback). `auto` says on stderr which device it picked.
std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options);

// Whether this build has the CUDA backend and a GPU is present.
bool cuda_available(std::string* reason);

// -m value, or the default model from the cache (scripts/fetch-model), or an error saying how
// to get it.
std::string resolve_model_path(const std::string& flag);

// Adds --device/--ctx/--threads options shared by run, chat, bench, verify.
void add_backend_options(CLI::App& app, BackendOptions& options);

}  // namespace resident::cli
