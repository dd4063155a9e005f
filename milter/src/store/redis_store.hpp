#pragma once
// AliasStore over one synchronous hiredis connection. Not thread-safe by
// design: each milter connection owns its own; only the PrimaryLocator is
// shared.

#include "config/config.hpp"
#include "core/alias_store.hpp"
#include "store/primary_locator.hpp"
#include "store/redis_context.hpp"

#include <memory>
#include <string>

namespace impalemail {

class RedisStore : public AliasStore {
public:
    // Connects lazily, on the first read.
    RedisStore(const RedisSettings& settings, std::shared_ptr<PrimaryLocator> locator);
    RedisStore(const RedisStore&) = delete;
    RedisStore& operator=(const RedisStore&) = delete;

    // One GET. A connection found dead is reopened (and the GET re-sent
    // once, if the old connection was closed by the server before it could
    // have answered); every other failure is an Error reply, never NotFound.
    // With Sentinel, a failed or demoted primary is forgotten, so the next
    // read asks the sentinels again.
    StoreReply get(const std::string& key) override;

    // Per-alias statistics, sent on this connection without waiting for the
    // reply (read before the next lookup), so they never add a round trip
    // to the SMTP path; failures only cost the statistic. Both run a small
    // Lua script so that the statistics hash expires with its alias.
    void record_forwarded(const std::string& alias_key, const std::string& stats_key);
    void record_refused(const std::string& stats_key); // counted only while the stats hash exists

    // Connections opened so far (the first one included), for metrics.
    unsigned connects() const noexcept { return connects_; }

private:
    std::string connect(); // returns an error text, empty on success
    bool handshake(std::string& error);
    void drop_connection(bool primary_suspect);
    bool drain_pending(); // reads the replies of queued statistics updates
    void queue(std::initializer_list<std::string_view> argv);

    const RedisSettings settings_;
    const std::shared_ptr<PrimaryLocator> locator_;
    RedisContext ctx_;
    RedisEndpoint endpoint_; // what ctx_ is connected to
    unsigned connects_ = 0;
    unsigned pending_ = 0; // statistics replies not read yet
};

} // namespace impalemail
