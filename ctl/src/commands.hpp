#pragma once
// The impalectl commands. Each validates its input first (CtlError with
// Exit::InvalidInput), then connects, runs the Redis commands documented in
// the README ("impalectl and its redis-cli equivalents") and prints text or
// JSON. Failures are thrown as CtlError; the return value is the exit code.

#include "config/config.hpp"

#include <optional>
#include <string>

namespace impalectl {

struct Context {
    const impalemail::Config& config;
    bool json = false;
};

struct NewOptions {
    std::optional<std::string> domain; // default: the first alias domain
    std::string ttl = "7d";
    std::string style = "random"; // random | words
    std::string to;
};

// New aliases: attempts at a free name before giving up.
inline constexpr int kMaxNewAttempts = 10;

int cmd_new(const Context& ctx, const NewOptions& opts);
int cmd_list(const Context& ctx, const std::optional<std::string>& owner);
int cmd_show(const Context& ctx, const std::string& alias);
int cmd_extend(const Context& ctx, const std::string& alias, const std::string& ttl);
int cmd_persist(const Context& ctx, const std::string& alias);
int cmd_revoke(const Context& ctx, const std::string& alias);
int cmd_stats(const Context& ctx, const std::optional<std::string>& alias);

} // namespace impalectl
