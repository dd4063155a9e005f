#pragma once
// One synchronous Redis connection for admin commands: the milter's
// PrimaryLocator (fixed address or Sentinel), AUTH, SELECT and, with
// Sentinel, a ROLE check. Every failure throws CtlError(Exit::Redis).

#include "config/config.hpp"
#include "store/primary_locator.hpp"
#include "store/redis_context.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace impalectl {

// Admin commands may scan the whole key space: never less than this.
inline constexpr std::chrono::milliseconds kMinAdminTimeout{2000};

class AdminRedis {
public:
    explicit AdminRedis(const impalemail::RedisSettings& settings);

    // Sends one command and waits for its reply. An error reply throws,
    // naming the command.
    impalemail::RedisReply command(const std::vector<std::string>& argv);

    // Pipelining: queue commands, then read their replies in order. Error
    // replies are returned, not thrown; a lost connection throws.
    void append(const std::vector<std::string>& argv);
    impalemail::RedisReply reply();

    const impalemail::RedisEndpoint& endpoint() const noexcept { return endpoint_; }

private:
    void connect();
    bool try_connect(std::string& error);
    std::string io_error() const; // why the last command got no reply

    impalemail::RedisSettings settings_;
    std::shared_ptr<impalemail::PrimaryLocator> locator_;
    impalemail::RedisContext ctx_;
    impalemail::RedisEndpoint endpoint_;
};

// Integer reply, or throws CtlError(Exit::Redis) naming `what`.
long long integer_reply(const redisReply* r, const char* what);

} // namespace impalectl
