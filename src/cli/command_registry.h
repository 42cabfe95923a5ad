// Each subcommand lives in its own src/cli/cmd_<name>.cpp and registers itself here with a
// static CommandRegistration. The CLI sources are linked straight into the executable, so
// every registration runs.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace resident::cli {

struct Command {
  std::string name;
  std::string description;
  // Adds options to `sub` and returns the action to run when the subcommand is chosen.
  // The action returns the process exit code.
  std::function<std::function<int()>(CLI::App& sub)> setup;
  bool hidden = false;  // debug/test commands: not listed in --help
};

std::vector<Command>& command_registry();

struct CommandRegistration {
  explicit CommandRegistration(Command command) {
    command_registry().push_back(std::move(command));
  }
};

}  // namespace resident::cli
