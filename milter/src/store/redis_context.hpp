#pragma once
// Small RAII wrappers over hiredis, shared by the store and the Sentinel locator.

#include "config/config.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace impalemail {

struct RedisContextDeleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using RedisContext = std::unique_ptr<redisContext, RedisContextDeleter>;

struct RedisReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

// Connects with `timeout` for the connect and for every later command.
// Returns null with `error` set on failure.
RedisContext redis_connect(const RedisEndpoint& endpoint, std::chrono::milliseconds timeout, std::string& error);

// AUTH (with username when given) if a password is set; false with `error`.
bool redis_auth(redisContext* c, const std::string& username, const std::string& password, std::string& error);

// Checks the reply to a command sent only for its effect; false with `error`.
bool redis_expect_ok(redisContext* c, const char* what, void* reply, std::string& error);

// What every new connection does before its first command: AUTH, SELECT
// and, when `confirm_primary` (Sentinel, whose answer can be stale during a
// failover), a ROLE check that `endpoint` is the primary. False with `error`.
bool redis_handshake(redisContext* c, const RedisSettings& settings, const RedisEndpoint& endpoint,
                     bool confirm_primary, std::string& error);

// A command in hiredis's argv form (hiredis wants the arrays non-const);
// the strings must outlive it.
struct RedisArgv {
    std::vector<const char*> ptr;
    std::vector<std::size_t> len;

    template <class Strings>
    explicit RedisArgv(const Strings& args)
    {
        for (const auto& a : args) {
            ptr.push_back(a.data());
            len.push_back(a.size());
        }
    }
    int argc() const noexcept { return static_cast<int>(ptr.size()); }
};

} // namespace impalemail
