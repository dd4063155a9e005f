#include "store/primary_locator.hpp"

#include "store/redis_context.hpp"

namespace impalemail {

std::optional<RedisEndpoint> SentinelPrimary::ask(const RedisEndpoint& sentinel, std::string& error) const
{
    RedisContext c = redis_connect(sentinel, timeout_, error);
    if (!c)
        return std::nullopt; // the error names the sentinel already
    const std::string who = "sentinel " + sentinel.describe() + " ";
    if (!redis_auth(c.get(), settings_.username, settings_.password, error)) {
        error = who + error;
        return std::nullopt;
    }
    const RedisReply r(static_cast<redisReply*>(redisCommand(c.get(), "SENTINEL get-master-addr-by-name %b",
                                                             settings_.master.data(), settings_.master.size())));
    if (!r) {
        error = who + "did not answer: " + c->errstr;
        return std::nullopt;
    }
    if (r->type == REDIS_REPLY_NIL) {
        error = who + "does not know master '" + settings_.master + "'";
        return std::nullopt;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        error = who + "replied: " + std::string(r->str, r->len);
        return std::nullopt;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        error = who + "gave an unexpected reply";
        return std::nullopt;
    }
    RedisEndpoint e;
    e.host.assign(r->element[0]->str, r->element[0]->len);
    try {
        e.port = std::stoi(std::string(r->element[1]->str, r->element[1]->len));
    } catch (const std::exception&) {
        error = who + "gave an invalid port";
        return std::nullopt;
    }
    return e;
}

std::optional<RedisEndpoint> SentinelPrimary::primary(std::string& error)
{
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (cached_ && now - asked_at_ < kRecheckInterval)
        return cached_;
    // A planned switchover leaves the old primary up and answering until the
    // sentinels demote it: re-ask now and then, keeping the known answer if
    // no sentinel replies.
    asked_at_ = now;
    std::string errors;
    const std::size_t n = settings_.addresses.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t k = (next_ + i) % n;
        std::string why;
        if (auto e = ask(settings_.addresses[k], why)) {
            next_ = k;
            cached_ = std::move(e);
            return cached_;
        }
        errors += (errors.empty() ? "" : "; ") + why;
    }
    if (cached_)
        return cached_;
    error = "no sentinel named a primary for '" + settings_.master + "': " + errors;
    return std::nullopt;
}

void SentinelPrimary::forget(const RedisEndpoint& endpoint)
{
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ && *cached_ == endpoint) {
        cached_.reset();
        // The sentinel that named it may be the stale one: ask another first.
        next_ = (next_ + 1) % settings_.addresses.size();
    }
}

std::shared_ptr<PrimaryLocator> make_primary_locator(const RedisSettings& settings)
{
    if (settings.sentinel)
        return std::make_shared<SentinelPrimary>(*settings.sentinel, settings.timeout);
    return std::make_shared<FixedPrimary>(settings.endpoint());
}

} // namespace impalemail
