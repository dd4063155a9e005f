#pragma once

#include "config/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace impalemail {

struct ConfigError {
    int line;   // 1-based; 0 when the error concerns the whole file
    int column; // 1-based
    std::string message;
};

struct ConfigLoad {
    std::optional<Config> config; // set only when errors is empty
    std::vector<ConfigError> errors;
};

// Reads and validates a YAML config file, collecting every error rather than
// stopping at the first. Relative secret-file paths are resolved against the
// directory of `path`.
ConfigLoad load_config_file(const std::string& path);

// Same, from text; `base_dir` resolves relative file paths.
ConfigLoad load_config_text(std::string_view yaml, const std::string& base_dir);

// "FILE:LINE:COLUMN: error: MESSAGE"
std::string format_error(const std::string& file, const ConfigError& error);

} // namespace impalemail
