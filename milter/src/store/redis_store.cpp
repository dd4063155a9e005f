#include "store/redis_store.hpp"

#include <hiredis/hiredis.h>

#include <cerrno>

namespace impalemail {

namespace {

struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval to_timeval(std::chrono::milliseconds ms)
{
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

// Error replies after which the connection itself is suspect (server
// restarted, lost our AUTH, still loading): reconnect on the next read.
bool poisons_connection(const std::string& error)
{
    for (const char* prefix : {"NOAUTH", "WRONGPASS", "LOADING", "READONLY", "MASTERDOWN"})
        if (error.rfind(prefix, 0) == 0)
            return true;
    return false;
}

} // namespace

void RedisStore::ContextDeleter::operator()(redisContext* c) const noexcept
{
    redisFree(c);
}

RedisStore::RedisStore(const RedisSettings& settings) : settings_(settings) {}

RedisStore::~RedisStore() = default;

namespace {

// Checks the reply to one handshake command; sets `error` unless it succeeded.
bool handshake_step(redisContext* ctx, const char* what, void* raw, std::string& error)
{
    const Reply r(static_cast<redisReply*>(raw));
    if (!r)
        error = std::string(what) + " failed: " + ctx->errstr;
    else if (r->type == REDIS_REPLY_ERROR)
        error = std::string(what) + " refused: " + std::string(r->str, r->len);
    return error.empty();
}

} // namespace

bool RedisStore::handshake(std::string& error)
{
    redisContext* c = ctx_.get();
    const std::string& pw = settings_.password;
    const std::string& user = settings_.username;
    if (!pw.empty()) {
        void* r = user.empty() ? redisCommand(c, "AUTH %b", pw.data(), pw.size())
                               : redisCommand(c, "AUTH %b %b", user.data(), user.size(), pw.data(), pw.size());
        if (!handshake_step(c, "AUTH", r, error))
            return false;
    }
    if (settings_.database != 0 &&
        !handshake_step(c, "SELECT", redisCommand(c, "SELECT %d", settings_.database), error))
        return false;
    return true;
}

std::string RedisStore::connect()
{
    ctx_.reset();
    const timeval tv = to_timeval(settings_.timeout);
    Context c(settings_.transport == RedisSettings::Transport::Unix
                  ? redisConnectUnixWithTimeout(settings_.path.c_str(), tv)
                  : redisConnectWithTimeout(settings_.host.c_str(), settings_.port, tv));
    if (!c)
        return "cannot allocate a Redis context";
    if (c->err)
        return "cannot connect to " + settings_.address + ": " + c->errstr;
    if (redisSetTimeout(c.get(), tv) != REDIS_OK)
        return "cannot set the Redis command timeout: " + std::string(c->errstr);
    ctx_ = std::move(c);
    std::string error;
    if (!handshake(error)) {
        ctx_.reset();
        return error;
    }
    ++connects_;
    return {};
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
        Reply r(static_cast<redisReply*>(redisCommand(ctx_.get(), "GET %b", key.data(), key.size())));
        if (!r) {
            const int err = ctx_->err;
            const int sys_errno = errno;
            std::string why = ctx_->errstr;
            ctx_.reset();
            // A kept connection the server closed while we idled (restart,
            // idle timeout): the GET never ran, so one retry on a new one.
            const bool closed_while_idle =
                err == REDIS_ERR_EOF || (err == REDIS_ERR_IO && (sys_errno == EPIPE || sys_errno == ECONNRESET));
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
                ctx_.reset();
            return StoreReply::error("Redis replied: " + error);
        }
        default:
            return StoreReply::error("unexpected Redis reply type " + std::to_string(r->type));
        }
    }
}

} // namespace impalemail
