// The `resident` binary: dispatches to the registered subcommands. Every error a user can
// trigger arrives here as resident::Error and leaves as one line on stderr and exit code 1.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>

#include "cli/command_registry.h"
#include "util/error.h"

namespace resident::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

}  // namespace resident::cli

int main(int argc, char** argv) {
  // CUDA loads kernel code lazily by default (CUDA_MODULE_LOADING=LAZY), which allocates device
  // memory the first time each kernel runs, i.e. after the model is loaded: the contract says
  // used memory must not grow after load (GWR-001), so code is loaded eagerly unless the user
  // chose otherwise. Set before any CUDA call.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
  using resident::cli::command_registry;
  CLI::App app{"resident: GGUF inference engine with GPU-resident weights"};
  app.require_subcommand(1);
  std::function<int()> action;
  std::vector<std::function<int()>> actions(command_registry().size());
  for (size_t i = 0; i < command_registry().size(); ++i) {
    const auto& command = command_registry()[i];
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    if (command.hidden) sub->group("");
    actions[i] = command.setup(*sub);
    sub->callback([&action, &actions, i] { action = actions[i]; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return action ? action() : 1;
  } catch (const resident::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
