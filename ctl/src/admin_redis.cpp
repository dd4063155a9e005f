#include "admin_redis.hpp"

#include "ctl_error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace impalectl {

using impalemail::RedisReply;

namespace {

impalemail::RedisSettings admin_settings(impalemail::RedisSettings s)
{
    s.timeout = std::max(s.timeout, kMinAdminTimeout);
    return s;
}

} // namespace

std::string AdminRedis::io_error() const
{
    // hiredis reports a read or write timeout as an I/O error with
    // strerror(EAGAIN) as its text (errno itself may be stale by now).
    if (ctx_->err == REDIS_ERR_IO && std::strcmp(ctx_->errstr, std::strerror(EAGAIN)) == 0)
        return "timed out after " + std::to_string(settings_.timeout.count()) + " ms";
    return ctx_->errstr;
}

AdminRedis::AdminRedis(const impalemail::RedisSettings& settings)
    : settings_(admin_settings(settings)), locator_(impalemail::make_primary_locator(settings_))
{
    connect();
}

bool AdminRedis::try_connect(std::string& error)
{
    ctx_.reset();
    const auto endpoint = locator_->primary(error);
    if (!endpoint)
        return false;
    endpoint_ = *endpoint;
    ctx_ = impalemail::redis_connect(endpoint_, settings_.timeout, error);
    if (!ctx_)
        return false;
    return impalemail::redis_handshake(ctx_.get(), settings_, endpoint_, locator_->confirm_role(), error);
}

void AdminRedis::connect()
{
    std::string error;
    if (try_connect(error))
        return;
    // With Sentinel, the answer may have been stale (failover in progress):
    // forget it and ask the sentinels once more.
    if (locator_->confirm_role()) {
        locator_->forget(endpoint_);
        error.clear();
        if (try_connect(error))
            return;
    }
    ctx_.reset();
    throw CtlError(Exit::Redis, "Redis: " + error);
}

RedisReply AdminRedis::command(const std::vector<std::string>& argv)
{
    impalemail::RedisArgv a(argv);
    RedisReply r(static_cast<redisReply*>(redisCommandArgv(ctx_.get(), a.argc(), a.ptr.data(), a.len.data())));
    if (!r)
        throw CtlError(Exit::Redis, "Redis (" + endpoint_.describe() + "): " + argv.front() + " failed: " + io_error());
    if (r->type == REDIS_REPLY_ERROR)
        throw CtlError(Exit::Redis, "Redis (" + endpoint_.describe() + ") refused " + argv.front() + ": " +
                                        std::string(r->str, r->len));
    return r;
}

void AdminRedis::append(const std::vector<std::string>& argv)
{
    impalemail::RedisArgv a(argv);
    if (redisAppendCommandArgv(ctx_.get(), a.argc(), a.ptr.data(), a.len.data()) != REDIS_OK)
        throw CtlError(Exit::Redis, "Redis (" + endpoint_.describe() + "): cannot queue " + argv.front() + ": " +
                                        ctx_->errstr);
}

RedisReply AdminRedis::reply()
{
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || !raw)
        throw CtlError(Exit::Redis, "Redis (" + endpoint_.describe() + "): no reply: " + io_error());
    return RedisReply(static_cast<redisReply*>(raw));
}

long long integer_reply(const redisReply* r, const char* what)
{
    if (r->type == REDIS_REPLY_ERROR)
        throw CtlError(Exit::Redis, std::string("Redis refused ") + what + ": " + std::string(r->str, r->len));
    if (r->type != REDIS_REPLY_INTEGER)
        throw CtlError(Exit::Redis, std::string("unexpected Redis reply to ") + what);
    return r->integer;
}

} // namespace impalectl
