#pragma once
// Process-wide log sink: stderr, plus syslog on the mail facility. Each call
// writes one whole line, so lines from concurrent milter threads never mix.

#include "config/config.hpp"

#include <string_view>

namespace impalemail::logging {

// Before any thread starts. `ident` is the syslog tag.
void configure(LogLevel level, bool use_syslog, const char* ident);

bool enabled(LogLevel level) noexcept;

void write(LogLevel level, std::string_view message);

inline void error(std::string_view m) { write(LogLevel::Error, m); }
inline void warning(std::string_view m) { write(LogLevel::Warning, m); }
inline void info(std::string_view m) { write(LogLevel::Info, m); }
inline void debug(std::string_view m) { write(LogLevel::Debug, m); }

} // namespace impalemail::logging
