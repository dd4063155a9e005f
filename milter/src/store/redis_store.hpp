#pragma once
// AliasStore over one synchronous hiredis connection. Not thread-safe by
// design: each milter connection (one libmilter thread) owns its own.

#include "config/config.hpp"
#include "core/alias_store.hpp"

#include <memory>
#include <string>

struct redisContext;

namespace impalemail {

class RedisStore : public AliasStore {
public:
    // Connects lazily, on the first read.
    explicit RedisStore(const RedisSettings& settings);
    ~RedisStore() override;
    RedisStore(const RedisStore&) = delete;
    RedisStore& operator=(const RedisStore&) = delete;

    // One GET. A connection found dead is reopened (and the GET re-sent
    // once, if the old connection was closed by the server before it could
    // have answered); every other failure is an Error reply, never NotFound.
    StoreReply get(const std::string& key) override;

    // Counters for logs: connections opened since construction.
    unsigned connects() const noexcept { return connects_; }

private:
    struct ContextDeleter {
        void operator()(redisContext* c) const noexcept;
    };
    using Context = std::unique_ptr<redisContext, ContextDeleter>;

    std::string connect();                  // returns an error text, empty on success
    bool handshake(std::string& error); // AUTH and SELECT on a fresh context

    const RedisSettings settings_;
    Context ctx_;
    unsigned connects_ = 0;
};

} // namespace impalemail
