// Small file and time helpers shared by the CLI and the contract report.
#pragma once

#include <string>
#include <string_view>

namespace resident {

// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
// failed or interrupted write never leaves a half-written file. Throws resident::Error naming
// the path.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (the date field of benchmark and verify reports).
std::string utc_date();

}  // namespace resident
