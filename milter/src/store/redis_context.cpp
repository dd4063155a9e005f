#include "store/redis_context.hpp"

namespace impalemail {

namespace {

timeval to_timeval(std::chrono::milliseconds ms)
{
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

bool is_role_master(const redisReply* r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING &&
           std::string(r->element[0]->str, r->element[0]->len) == "master";
}

} // namespace

RedisContext redis_connect(const RedisEndpoint& e, std::chrono::milliseconds timeout, std::string& error)
{
    const timeval tv = to_timeval(timeout);
    RedisContext c(e.transport == RedisEndpoint::Transport::Unix ? redisConnectUnixWithTimeout(e.path.c_str(), tv)
                                                                 : redisConnectWithTimeout(e.host.c_str(), e.port, tv));
    if (!c) {
        error = "cannot allocate a Redis context";
        return nullptr;
    }
    if (c->err) {
        error = "cannot connect to " + e.describe() + ": " + c->errstr;
        return nullptr;
    }
    if (redisSetTimeout(c.get(), tv) != REDIS_OK) {
        error = "cannot set the Redis command timeout: " + std::string(c->errstr);
        return nullptr;
    }
    // Pooled connections can idle for hours: keepalives hold a firewall's
    // or NAT's state open and notice a peer that vanished without a reset.
    if (e.transport == RedisEndpoint::Transport::Tcp && redisEnableKeepAlive(c.get()) != REDIS_OK) {
        error = "cannot enable TCP keepalive: " + std::string(c->errstr);
        return nullptr;
    }
    return c;
}

bool redis_expect_ok(redisContext* c, const char* what, void* raw, std::string& error)
{
    const RedisReply r(static_cast<redisReply*>(raw));
    if (!r)
        error = std::string(what) + " failed: " + c->errstr;
    else if (r->type == REDIS_REPLY_ERROR)
        error = std::string(what) + " refused: " + std::string(r->str, r->len);
    return error.empty();
}

bool redis_handshake(redisContext* c, const RedisSettings& settings, const RedisEndpoint& endpoint,
                     bool confirm_primary, std::string& error)
{
    if (!redis_auth(c, settings.username, settings.password, error))
        return false;
    if (settings.database != 0 &&
        !redis_expect_ok(c, "SELECT", redisCommand(c, "SELECT %d", settings.database), error))
        return false;
    if (!confirm_primary)
        return true;
    const RedisReply r(static_cast<redisReply*>(redisCommand(c, "ROLE")));
    if (r && r->type == REDIS_REPLY_ERROR) {
        error = "ROLE refused by " + endpoint.describe() + ": " + std::string(r->str, r->len) +
                " (with Sentinel the Redis user needs +role)";
        return false;
    }
    if (!is_role_master(r.get())) {
        error = endpoint.describe() + " is not the primary";
        return false;
    }
    return true;
}

bool redis_auth(redisContext* c, const std::string& user, const std::string& pw, std::string& error)
{
    if (pw.empty())
        return true;
    void* r = user.empty() ? redisCommand(c, "AUTH %b", pw.data(), pw.size())
                           : redisCommand(c, "AUTH %b %b", user.data(), user.size(), pw.data(), pw.size());
    return redis_expect_ok(c, "AUTH", r, error);
}

} // namespace impalemail
