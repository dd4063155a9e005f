#include "store/redis_store.hpp"

#include <cerrno>
#include <ctime>
#include <vector>

namespace impalemail {

namespace {

// Error replies after which the connection itself is suspect (server
// restarted, lost our AUTH, still loading, demoted to replica): reconnect on
// the next read.
bool poisons_connection(const std::string& error)
{
    for (const char* prefix : {"NOAUTH", "WRONGPASS", "LOADING", "READONLY", "MASTERDOWN"})
        if (error.rfind(prefix, 0) == 0)
            return true;
    return false;
}

bool is_role_master(const redisReply* r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING &&
           std::string(r->element[0]->str, r->element[0]->len) == "master";
}

// KEYS: alias, stats hash. ARGV: unix time. The hash takes the alias's TTL.
constexpr const char* kForwardedScript =
    "local ttl = redis.call('PTTL', KEYS[1]) "
    "if ttl == -2 then return 0 end "
    "redis.call('HINCRBY', KEYS[2], 'forwarded', 1) "
    "redis.call('HSET', KEYS[2], 'last_used', ARGV[1]) "
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end "
    "return 1";

// KEYS: stats hash. No hash is created for aliases that never lived.
constexpr const char* kRefusedScript =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "return redis.call('HINCRBY', KEYS[1], 'refused', 1)";

} // namespace

RedisStore::RedisStore(const RedisSettings& settings, std::shared_ptr<PrimaryLocator> locator)
    : settings_(settings), locator_(std::move(locator))
{
}

bool RedisStore::handshake(std::string& error)
{
    redisContext* c = ctx_.get();
    if (!redis_auth(c, settings_.username, settings_.password, error))
        return false;
    if (settings_.database != 0 &&
        !redis_expect_ok(c, "SELECT", redisCommand(c, "SELECT %d", settings_.database), error))
        return false;
    if (locator_->confirm_role()) {
        // A sentinel's answer can be stale during a failover.
        const RedisReply r(static_cast<redisReply*>(redisCommand(c, "ROLE")));
        if (r && r->type == REDIS_REPLY_ERROR) {
            error = "ROLE refused by " + endpoint_.describe() + ": " + std::string(r->str, r->len) +
                    " (with Sentinel the Redis user needs +role)";
            return false;
        }
        if (!is_role_master(r.get())) {
            error = endpoint_.describe() + " is not the primary";
            return false;
        }
    }
    return true;
}

std::string RedisStore::connect()
{
    ctx_.reset();
    std::string error;
    const auto endpoint = locator_->primary(error);
    if (!endpoint)
        return error;
    endpoint_ = *endpoint;
    ctx_ = redis_connect(endpoint_, settings_.timeout, error);
    if (ctx_ && handshake(error)) {
        ++connects_;
        return {};
    }
    drop_connection(true);
    return error;
}

void RedisStore::drop_connection(bool primary_suspect)
{
    ctx_.reset();
    pending_ = 0;
    if (primary_suspect)
        locator_->forget(endpoint_);
}

void RedisStore::queue(std::initializer_list<std::string_view> argv)
{
    if (!ctx_)
        return; // no lookup connection: the statistic is skipped, never worth a connect
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (auto a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()) != REDIS_OK) {
        drop_connection(false);
        return;
    }
    ++pending_;
    int done = 0;
    while (!done) // push it out now; the reply is read before the next lookup
        if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) {
            drop_connection(false);
            return;
        }
}

void RedisStore::record_forwarded(const std::string& alias_key, const std::string& stats_key)
{
    const std::string now = std::to_string(static_cast<long long>(std::time(nullptr)));
    queue({"EVAL", kForwardedScript, "2", alias_key, stats_key, now});
}

void RedisStore::record_refused(const std::string& stats_key)
{
    queue({"EVAL", kRefusedScript, "1", stats_key});
}

bool RedisStore::drain_pending()
{
    while (pending_ > 0) {
        void* raw = nullptr;
        if (redisGetReply(ctx_.get(), &raw) != REDIS_OK) {
            drop_connection(true);
            return false;
        }
        freeReplyObject(raw); // an error reply only cost the statistic
        --pending_;
    }
    return true;
}

StoreReply RedisStore::get(const std::string& key)
{
    if (ctx_)
        drain_pending(); // on failure the connection is dropped and the lookup opens a new one
    if (ctx_ && locator_->confirm_role()) {
        // Follows a switchover that left the old primary up (cheap: the
        // locator re-asks the sentinels at most once a second).
        std::string ignored;
        if (const auto now_primary = locator_->primary(ignored); now_primary && !(*now_primary == endpoint_))
            drop_connection(false);
    }
    bool fresh = false;
    if (!ctx_) {
        if (std::string error = connect(); !error.empty())
            return StoreReply::error(std::move(error));
        fresh = true;
    }
    for (;;) {
        const RedisReply r(static_cast<redisReply*>(redisCommand(ctx_.get(), "GET %b", key.data(), key.size())));
        if (!r) {
            const int err = ctx_->err;
            const int sys_errno = errno;
            std::string why = ctx_->errstr;
            // A kept connection the server closed while we idled (restart,
            // idle timeout): the GET never ran, so one retry on a new one.
            const bool closed_while_idle =
                err == REDIS_ERR_EOF || (err == REDIS_ERR_IO && (sys_errno == EPIPE || sys_errno == ECONNRESET));
            if (err == REDIS_ERR_IO && (sys_errno == EAGAIN || sys_errno == EWOULDBLOCK))
                why = "no reply within " + std::to_string(settings_.timeout.count()) + " ms (redis.timeout_ms)";
            drop_connection(true);
            if (closed_while_idle && !fresh) {
                if (std::string error = connect(); !error.empty())
                    return StoreReply::error(std::move(error));
                fresh = true;
                continue;
            }
            return StoreReply::error("GET failed: " + why);
        }
        switch (r->type) {
        case REDIS_REPLY_STRING:
            return StoreReply::found(std::string(r->str, r->len));
        case REDIS_REPLY_NIL:
            return StoreReply::not_found();
        case REDIS_REPLY_ERROR: {
            std::string error(r->str, r->len);
            if (poisons_connection(error))
                drop_connection(true);
            return StoreReply::error("Redis replied: " + error);
        }
        default:
            return StoreReply::error("unexpected Redis reply type " + std::to_string(r->type));
        }
    }
}

} // namespace impalemail
