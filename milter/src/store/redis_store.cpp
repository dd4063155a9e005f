#include "store/redis_store.hpp"

#include <cerrno>

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
    if (primary_suspect)
        locator_->forget(endpoint_);
}

StoreReply RedisStore::get(const std::string& key)
{
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
