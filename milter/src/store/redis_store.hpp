#pragma once
// AliasStore over the shared RedisPool. One RedisStore per MTA connection
// (it is not thread-safe); the Redis connections it uses are the pool's,
// borrowed for one command and given back.

#include "config/config.hpp"
#include "core/alias_store.hpp"
#include "store/primary_locator.hpp"
#include "store/redis_pool.hpp"

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace impalemail {

class RedisStore : public AliasStore {
public:
    RedisStore(const RedisSettings& settings, std::shared_ptr<PrimaryLocator> locator,
               std::shared_ptr<RedisPool> pool);
    RedisStore(const RedisStore&) = delete;
    RedisStore& operator=(const RedisStore&) = delete;

    // One GET, on an idle pooled connection or a new one. A pooled
    // connection the server closed while it idled is replaced and the GET
    // re-sent once (it never ran); every other failure is an Error reply,
    // never NotFound. With Sentinel, a failed or demoted primary is
    // forgotten, so the next read asks the sentinels again.
    StoreReply get(const std::string& key) override;

    // Per-alias statistics, written to an idle pooled connection without
    // waiting for the reply (the next borrower reads it first), so they never
    // add a round trip to the SMTP path; failures only cost the statistic.
    // Both run a small Lua script so that the statistics hash expires with
    // its alias.
    void record_forwarded(const std::string& alias_key, const std::string& stats_key);
    void record_refused(const std::string& stats_key); // counted only while the stats hash exists

    // Connections this store opened so far, for metrics.
    unsigned connects() const noexcept { return connects_; }

private:
    std::unique_ptr<RedisLink> open(std::string& error);
    // Closes `link`; a suspect server also costs the pool its idle connections.
    void discard(std::unique_ptr<RedisLink>& link, bool server_suspect);
    // Appends the pool's deferred commands to `link`; false if it broke.
    bool send_backlog(RedisLink& link);
    void queue(std::initializer_list<std::string_view> argv);

    const RedisSettings settings_;
    const std::shared_ptr<PrimaryLocator> locator_;
    const std::shared_ptr<RedisPool> pool_;
    unsigned connects_ = 0;
};

} // namespace impalemail
