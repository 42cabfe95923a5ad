// One error type for everything a user can trigger (bad files, bad flags, no GPU).
// The CLI catches it at the top and prints the message as one line; nothing user-triggerable
// is an assert or a crash.
#pragma once

#include <stdexcept>
#include <string>

namespace resident {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace resident
