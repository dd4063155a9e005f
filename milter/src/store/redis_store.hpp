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

    // Connections opened so far (the first one included), for metrics.
    unsigned connects() const noexcept { return connects_; }

private:
    std::string connect(); // returns an error text, empty on success
    bool handshake(std::string& error);
    void drop_connection(bool primary_suspect);

    const RedisSettings settings_;
    const std::shared_ptr<PrimaryLocator> locator_;
    RedisContext ctx_;
    RedisEndpoint endpoint_; // what ctx_ is connected to
    unsigned connects_ = 0;
};

} // namespace impalemail
