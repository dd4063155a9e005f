#pragma once
// Redis connections shared by every MTA connection of one config snapshot.
// A lookup borrows one for its GET and gives it back, so the milter holds a
// handful of Redis connections (about one per busy libmilter worker) instead
// of one per SMTP session, and no session pays a connect once the pool is warm.

#include "config/config.hpp"
#include "store/redis_context.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace impalemail {

// One connection and what is owed on it.
struct RedisLink {
    RedisContext ctx;
    RedisEndpoint endpoint;
    unsigned pending = 0;     // replies of fire-and-forget commands not read yet
    std::uint64_t generation = 0; // the pool's generation when it was opened
};

class RedisPool {
public:
    // Idle connections beyond `max_idle` are closed when given back.
    explicit RedisPool(std::size_t max_idle = kDefaultMaxIdle) : max_idle_(max_idle) {}

    // An idle connection, most recently used first; null when none is idle.
    std::unique_ptr<RedisLink> take();
    // Keeps `link` for the next borrower unless it was opened before the
    // last discard_idle() or the pool is full.
    void give_back(std::unique_ptr<RedisLink> link);
    // The server behind the idle connections is suspect (it closed one,
    // restarted, failed over): close them all, and refuse the ones now
    // borrowed when they come back.
    void discard_idle();
    // Stamps a new connection with the current generation.
    std::uint64_t generation() const;

    // Fire-and-forget commands (already in RESP) that found no idle
    // connection: the next borrower sends them ahead of its own command.
    // Bounded: false (the command dropped) beyond kMaxBacklog.
    bool defer(std::string command);
    std::vector<std::string> take_backlog();

    std::size_t idle() const;

    static constexpr std::size_t kDefaultMaxIdle = 64;
    static constexpr std::size_t kMaxBacklog = 1024;

private:
    const std::size_t max_idle_;
    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<RedisLink>> idle_;
    std::vector<std::string> backlog_;
    std::uint64_t generation_ = 0;
};

} // namespace impalemail
