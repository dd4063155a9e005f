#include "store/redis_store.hpp"

#include <cerrno>
#include <ctime>

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

constexpr unsigned kMaxUnreadReplies = 1000;

// Reads the replies owed to fire-and-forget commands on `link` until at most
// `keep` remain; false if the connection failed.
bool read_owed_replies(RedisLink& link, unsigned keep)
{
    while (link.pending > keep) {
        void* raw = nullptr;
        if (redisGetReply(link.ctx.get(), &raw) != REDIS_OK)
            return false;
        freeReplyObject(raw); // an error reply only cost the statistic
        --link.pending;
    }
    return true;
}

} // namespace

RedisStore::RedisStore(const RedisSettings& settings, std::shared_ptr<PrimaryLocator> locator,
                       std::shared_ptr<RedisPool> pool)
    : settings_(settings), locator_(std::move(locator)), pool_(std::move(pool))
{
}

std::unique_ptr<RedisLink> RedisStore::open(std::string& error)
{
    const auto endpoint = locator_->primary(error);
    if (!endpoint)
        return nullptr;
    auto link = std::make_unique<RedisLink>();
    link->endpoint = *endpoint;
    link->generation = pool_->generation();
    link->ctx = redis_connect(*endpoint, settings_.timeout, error);
    if (link->ctx && redis_handshake(link->ctx.get(), settings_, link->endpoint, locator_->confirm_role(), error)) {
        ++connects_;
        return link;
    }
    discard(link, true);
    return nullptr;
}

void RedisStore::discard(std::unique_ptr<RedisLink>& link, bool server_suspect)
{
    if (!link)
        return;
    const RedisEndpoint endpoint = link->endpoint;
    link.reset();
    // The idle connections lead to the same server: a restart, a failover or
    // a hang that broke this one broke them too.
    pool_->discard_idle();
    if (server_suspect)
        locator_->forget(endpoint);
}

bool RedisStore::send_backlog(RedisLink& link)
{
    for (const std::string& command : pool_->take_backlog()) {
        if (redisAppendFormattedCommand(link.ctx.get(), command.data(), command.size()) != REDIS_OK)
            return false;
        ++link.pending;
    }
    return true;
}

void RedisStore::queue(std::initializer_list<std::string_view> argv)
{
    RedisArgv args(argv);
    auto link = pool_->take();
    if (!link) {
        // Never worth a connect on the SMTP path: the next borrower sends
        // it (a full backlog, a Redis long gone, drops the statistic).
        char* formatted = nullptr;
        const int len = redisFormatCommandArgv(&formatted, args.argc(), args.ptr.data(), args.len.data());
        if (len >= 0)
            pool_->defer(std::string(formatted, static_cast<std::size_t>(len)));
        redisFreeCommand(formatted);
        return;
    }
    redisContext* c = link->ctx.get();
    // A connection used only for statistics for a long while: its replies
    // arrived long ago, reading them now keeps Redis's output buffer small.
    bool ok = read_owed_replies(*link, kMaxUnreadReplies - 1) && send_backlog(*link) &&
              redisAppendCommandArgv(c, args.argc(), args.ptr.data(), args.len.data()) == REDIS_OK;
    if (ok)
        ++link->pending;
    int done = 0;
    while (ok && !done) // push it out now; the reply is read by the next borrower
        ok = redisBufferWrite(c, &done) == REDIS_OK;
    if (!ok) {
        discard(link, false);
        return;
    }
    pool_->give_back(std::move(link));
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

StoreReply RedisStore::get(const std::string& key)
{
    auto link = pool_->take();
    if (link && locator_->confirm_role()) {
        // Follows a switchover that left the old primary up (cheap: the
        // locator re-asks the sentinels at most once a second).
        std::string ignored;
        if (const auto now_primary = locator_->primary(ignored); now_primary && !(*now_primary == link->endpoint))
            discard(link, false);
    }
    bool fresh = false;
    if (!link) {
        std::string error;
        if (!(link = open(error)))
            return StoreReply::error(std::move(error));
        fresh = true;
    }
    for (;;) {
        redisContext* c = link->ctx.get();
        // Replies owed to earlier fire-and-forget commands come first; they
        // travel with the GET's, in the same round trip.
        bool ok = send_backlog(*link) && redisAppendCommand(c, "GET %b", key.data(), key.size()) == REDIS_OK &&
                  read_owed_replies(*link, 0);
        void* raw = nullptr;
        ok = ok && redisGetReply(c, &raw) == REDIS_OK;
        const RedisReply r(static_cast<redisReply*>(raw));
        if (!ok || !r) {
            const int err = c->err;
            const int sys_errno = errno;
            std::string why = c->errstr;
            // A pooled connection the server closed while it idled (restart,
            // idle timeout) or that keepalives found dead: one retry on a
            // new one (GET is read-only, and a dead connection never ran it).
            const bool closed_while_idle =
                err == REDIS_ERR_EOF ||
                (err == REDIS_ERR_IO && (sys_errno == EPIPE || sys_errno == ECONNRESET || sys_errno == ETIMEDOUT));
            if (err == REDIS_ERR_IO && (sys_errno == EAGAIN || sys_errno == EWOULDBLOCK))
                why = "no reply within " + std::to_string(settings_.timeout.count()) + " ms (redis.timeout_ms)";
            discard(link, true);
            if (closed_while_idle && !fresh) {
                std::string error;
                if (!(link = open(error)))
                    return StoreReply::error(std::move(error));
                fresh = true;
                continue;
            }
            return StoreReply::error("GET failed: " + why);
        }
        switch (r->type) {
        case REDIS_REPLY_STRING:
            pool_->give_back(std::move(link));
            return StoreReply::found(std::string(r->str, r->len));
        case REDIS_REPLY_NIL:
            pool_->give_back(std::move(link));
            return StoreReply::not_found();
        case REDIS_REPLY_ERROR: {
            std::string error(r->str, r->len);
            if (poisons_connection(error))
                discard(link, true);
            else
                pool_->give_back(std::move(link));
            return StoreReply::error("Redis replied: " + error);
        }
        default:
            discard(link, false);
            return StoreReply::error("unexpected Redis reply type " + std::to_string(r->type));
        }
    }
}

} // namespace impalemail
