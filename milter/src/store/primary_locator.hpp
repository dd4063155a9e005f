#pragma once
// Where the Redis primary is: fixed by the config, or asked of Redis
// Sentinel. One locator is shared by every connection of the process, so a
// failover is discovered once, not once per MTA connection.

#include "config/config.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace impalemail {

class PrimaryLocator {
public:
    virtual ~PrimaryLocator() = default;
    // The endpoint to connect to; nullopt, with `error` set, if none is known.
    virtual std::optional<RedisEndpoint> primary(std::string& error) = 0;
    // `endpoint` failed or is no longer the primary: ask again next time.
    virtual void forget(const RedisEndpoint& endpoint) = 0;
    // Whether a fresh connection must confirm with ROLE that it reached the primary.
    virtual bool confirm_role() const noexcept = 0;
};

class FixedPrimary : public PrimaryLocator {
public:
    explicit FixedPrimary(RedisEndpoint e) : endpoint_(std::move(e)) {}
    std::optional<RedisEndpoint> primary(std::string&) override { return endpoint_; }
    void forget(const RedisEndpoint&) override {}
    bool confirm_role() const noexcept override { return false; }

private:
    RedisEndpoint endpoint_;
};

// Asks each sentinel in turn (starting with the last one that answered)
// SENTINEL get-master-addr-by-name, and caches the answer until it is
// forgotten or older than kRecheckInterval.
class SentinelPrimary : public PrimaryLocator {
public:
    SentinelPrimary(SentinelSettings settings, std::chrono::milliseconds timeout)
        : settings_(std::move(settings)), timeout_(timeout)
    {
    }
    std::optional<RedisEndpoint> primary(std::string& error) override;
    void forget(const RedisEndpoint& endpoint) override;
    bool confirm_role() const noexcept override { return true; }

private:
    std::optional<RedisEndpoint> ask(const RedisEndpoint& sentinel, std::string& error) const;

    const SentinelSettings settings_;
    const std::chrono::milliseconds timeout_;
    std::mutex mutex_; // also serializes discovery: one query per failover, not one per thread
    std::optional<RedisEndpoint> cached_;
    std::chrono::steady_clock::time_point asked_at_{};
    std::size_t next_ = 0;

public:
    static constexpr std::chrono::seconds kRecheckInterval{1};
};

std::shared_ptr<PrimaryLocator> make_primary_locator(const RedisSettings& settings);

} // namespace impalemail
