#pragma once
// Exit codes scripts can rely on, and the exception that carries one from a
// command to main().

#include <stdexcept>
#include <string>

namespace impalectl {

enum class Exit : int {
    Ok = 0,
    NotFound = 1,     // show/extend/persist/revoke of an alias that does not exist
    Usage = 2,        // command-line syntax (CLI11's own errors)
    Config = 3,       // the YAML file cannot be read or is invalid
    Redis = 4,        // Redis unreachable, timing out, or answering an error
    InvalidInput = 5, // bad target, bad duration, alias outside the alias domains
};

class CtlError : public std::runtime_error {
public:
    CtlError(Exit code, const std::string& message) : std::runtime_error(message), code_(code) {}
    Exit code() const noexcept { return code_; }

private:
    Exit code_;
};

} // namespace impalectl
