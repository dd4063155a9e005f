#include "commands.hpp"

#include "admin_redis.hpp"
#include "alias_name.hpp"
#include "ctl_error.hpp"
#include "duration.hpp"
#include "output.hpp"

#include "core/ascii.hpp"
#include "core/envelope_address.hpp"
#include "core/target_address.hpp"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <unordered_set>

namespace impalectl {

using impalemail::RedisReply;

namespace {

// ---------------------------------------------------------------------------
// Keys (as the milter reads and writes them)
//   alias:      <redis.key_prefix><alias>    string, value = owner, TTL = life
//   statistics: <redis.stats_prefix><alias>  hash: forwarded, refused, last_used
//               (written by the milter; none when stats_prefix is "")
// ---------------------------------------------------------------------------
constexpr const char* kScanCount = "1000";

std::string alias_key(const Context& ctx, const std::string& alias)
{
    return ctx.config.aliases.key_prefix + alias;
}

bool stats_enabled(const Context& ctx)
{
    return !ctx.config.redis.stats_prefix.empty();
}

std::string stats_key(const Context& ctx, const std::string& alias)
{
    return ctx.config.redis.stats_prefix + alias;
}

std::string domain_list(const Context& ctx)
{
    std::string out;
    for (const auto& d : ctx.config.aliases.domains.list())
        out += (out.empty() ? "" : ", ") + d;
    return out;
}

void warn(const std::string& message)
{
    std::cerr << "impalectl: warning: " << message << '\n';
}

// A SCAN MATCH pattern matching `prefix` literally, then anything.
std::string glob_prefix(const std::string& prefix)
{
    std::string out;
    for (char c : prefix) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
            out += '\\';
        out += c;
    }
    return out + '*';
}

// The alias named on the command line, normalized as the milter normalizes
// a recipient (brackets dropped, ASCII lower-cased), inside an alias domain.
std::string normalize_alias(const Context& ctx, const std::string& arg)
{
    const auto a = impalemail::parse_envelope_address(arg);
    if (!a.ok())
        throw CtlError(Exit::InvalidInput, "'" + printable(arg) + "' is not a valid alias address (" +
                                               std::string(impalemail::describe(a.problem)) + ")");
    if (!ctx.config.aliases.domains.contains(a.domain))
        throw CtlError(Exit::InvalidInput,
                       "'" + printable(arg) + "' is not in an alias domain (" + domain_list(ctx) + ")");
    return a.normalized();
}

// The alias a key under the prefix stands for, if the milter could ever look
// it up (normalized address in an alias domain); empty otherwise.
std::string alias_of_key(const Context& ctx, const std::string& key, const std::string& prefix)
{
    if (key.compare(0, prefix.size(), prefix) != 0)
        return {};
    const std::string rest = key.substr(prefix.size());
    const auto a = impalemail::parse_envelope_address(rest);
    if (!a.ok() || a.normalized() != rest || !ctx.config.aliases.domains.contains(a.domain))
        return {};
    return rest;
}

Ttl parse_ttl_option(const std::string& text)
{
    const auto ttl = parse_ttl(text);
    if (!ttl)
        throw CtlError(Exit::InvalidInput, "invalid --ttl '" + printable(text) +
                                               "': use 30s, 15m, 12h, 7d, 2w, plain seconds (at most " +
                                               std::to_string(kMaxTtlSeconds) + "), or never/0 for permanent");
    return *ttl;
}

std::string string_of(const redisReply* r)
{
    return std::string(r->str, r->len);
}

// ---------------------------------------------------------------------------
// Aliases as read back
// ---------------------------------------------------------------------------
struct AliasInfo {
    std::string alias;
    std::string owner;
    bool permanent = false;
    long long ttl_seconds = -1; // -1 when permanent
};

// PTTL reply: false if the key is gone (-2).
bool apply_pttl(const redisReply* r, AliasInfo& info)
{
    const long long ms = integer_reply(r, "PTTL");
    if (ms == -2)
        return false;
    info.permanent = ms == -1;
    info.ttl_seconds = info.permanent ? -1 : ttl_seconds_from_ms(ms);
    return true;
}

Json alias_json(const Context& ctx, const AliasInfo& a)
{
    Json j = {{"alias", a.alias},
              {"key", alias_key(ctx, a.alias)},
              {"owner", a.owner},
              {"permanent", a.permanent},
              {"ttl_seconds", a.ttl_seconds}};
    const auto problem = impalemail::check_target(a.owner, ctx.config.aliases.domains);
    if (problem != impalemail::TargetProblem::None)
        j["owner_problem"] = std::string(impalemail::describe(problem)); // the milter answers 451 for it
    return j;
}

std::string owner_column(const Context& ctx, const AliasInfo& a)
{
    std::string s = printable(a.owner);
    const auto problem = impalemail::check_target(a.owner, ctx.config.aliases.domains);
    if (problem != impalemail::TargetProblem::None)
        s += " [invalid: " + std::string(impalemail::describe(problem)) + "]";
    return s;
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------
struct Stats {
    long long forwarded = 0;
    long long refused = 0;
    long long last_used = 0; // unix time; 0: never
};

long long stats_number(const std::string& key, const char* field, const redisReply* v)
{
    if (!v || v->type == REDIS_REPLY_NIL)
        return 0;
    if (v->type == REDIS_REPLY_STRING) {
        const std::string s = string_of(v);
        try {
            std::size_t used = 0;
            const long long n = std::stoll(s, &used);
            if (used == s.size() && n >= 0)
                return n;
        } catch (const std::exception&) {
        }
    }
    warn("'" + printable(key) + "' field '" + field + "' is not a non-negative integer; counted as 0");
    return 0;
}

// Reply to HMGET key forwarded refused last_used.
Stats stats_of_hmget(const std::string& key, const redisReply* r)
{
    Stats s;
    if (r->type == REDIS_REPLY_ERROR) {
        warn("'" + printable(key) + "' is not a statistics hash (" + string_of(r) + "); ignored");
        return s;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        throw CtlError(Exit::Redis, "unexpected Redis reply to HMGET");
    s.forwarded = stats_number(key, "forwarded", r->element[0]);
    s.refused = stats_number(key, "refused", r->element[1]);
    s.last_used = stats_number(key, "last_used", r->element[2]);
    return s;
}

void append_stats_read(AdminRedis& redis, const std::string& key)
{
    redis.append({"HMGET", key, "forwarded", "refused", "last_used"});
}

Json stats_json(const Stats& s)
{
    return {{"forwarded", s.forwarded},
            {"refused", s.refused},
            {"last_used", s.last_used > 0 ? Json(s.last_used) : Json(nullptr)}};
}

void stats_rows(const Stats& s, std::vector<std::vector<std::string>>& rows)
{
    rows.push_back({"forwarded:", std::to_string(s.forwarded)});
    rows.push_back({"refused:", std::to_string(s.refused)});
    rows.push_back({"last used:", human_time(s.last_used)});
}

// ---------------------------------------------------------------------------
// SCAN over the keys matching `prefix`*, one page at a time, duplicates
// (which SCAN may return) removed.
// ---------------------------------------------------------------------------
template <typename PageFn>
void scan_prefix(AdminRedis& redis, const std::string& prefix, PageFn on_page)
{
    const std::string pattern = glob_prefix(prefix);
    std::unordered_set<std::string> seen;
    std::string cursor = "0";
    do {
        const RedisReply r = redis.command({"SCAN", cursor, "MATCH", pattern, "COUNT", kScanCount});
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY)
            throw CtlError(Exit::Redis, "unexpected Redis reply to SCAN");
        cursor = string_of(r->element[0]);
        std::vector<std::string> keys;
        const redisReply* page = r->element[1];
        for (std::size_t i = 0; i < page->elements; ++i) {
            std::string key = string_of(page->element[i]);
            if (seen.insert(key).second)
                keys.push_back(std::move(key));
        }
        if (!keys.empty())
            on_page(keys);
    } while (cursor != "0");
}

bool owner_matches(const std::string& value, const std::string& owner)
{
    const std::size_t a = value.rfind('@');
    const std::size_t b = owner.rfind('@');
    return a != std::string::npos && b != std::string::npos && value.compare(0, a, owner, 0, b) == 0 &&
           impalemail::iequals(std::string_view(value).substr(a + 1), std::string_view(owner).substr(b + 1));
}

} // namespace

// ---------------------------------------------------------------------------
int cmd_new(const Context& ctx, const NewOptions& opts)
{
    const auto& domains = ctx.config.aliases.domains;
    std::string domain = domains.list().front();
    if (opts.domain) {
        domain = impalemail::ascii_lowercase(*opts.domain);
        if (!domain.empty() && domain.back() == '.')
            domain.pop_back();
        if (!domains.contains(domain))
            throw CtlError(Exit::InvalidInput,
                           "--domain '" + printable(*opts.domain) + "' is not an alias domain (" +
                               domain_list(ctx) + ")");
    }
    const Ttl ttl = parse_ttl_option(opts.ttl);
    if (const auto problem = impalemail::check_target(opts.to, domains); problem != impalemail::TargetProblem::None)
        throw CtlError(Exit::InvalidInput,
                       "invalid --to '" + printable(opts.to) + "': " + std::string(impalemail::describe(problem)));
    const NameStyle style = opts.style == "words" ? NameStyle::Words : NameStyle::Random;

    AdminRedis redis(ctx.config.redis);
    for (int attempt = 0; attempt < kMaxNewAttempts; ++attempt) {
        const std::string alias = generate_local_part(style) + '@' + domain;
        const auto parsed = impalemail::parse_envelope_address(alias);
        if (!parsed.ok() || parsed.normalized() != alias)
            throw CtlError(Exit::Redis, "internal error: generated an invalid alias '" + alias + "'");
        const std::string key = alias_key(ctx, alias);
        std::vector<std::string> argv = {"SET", key, opts.to};
        if (!ttl.permanent)
            argv.insert(argv.end(), {"EX", std::to_string(ttl.seconds)});
        argv.push_back("NX");
        const RedisReply r = redis.command(argv);
        if (r->type == REDIS_REPLY_NIL)
            continue; // taken: NX left it alone; draw another name
        if (r->type != REDIS_REPLY_STATUS || string_of(r.get()) != "OK")
            throw CtlError(Exit::Redis, "unexpected Redis reply to SET");
        if (ctx.json)
            print_json(std::cout, alias_json(ctx, {alias, opts.to, ttl.permanent, ttl.permanent ? -1 : ttl.seconds}));
        else
            std::cout << alias << '\n';
        return 0;
    }
    throw CtlError(Exit::Redis, "no free alias name after " + std::to_string(kMaxNewAttempts) + " attempts");
}

// ---------------------------------------------------------------------------
int cmd_list(const Context& ctx, const std::optional<std::string>& owner)
{
    if (owner) {
        if (const auto problem = impalemail::check_target(*owner, ctx.config.aliases.domains);
            problem != impalemail::TargetProblem::None)
            throw CtlError(Exit::InvalidInput,
                           "invalid --owner '" + printable(*owner) +
                               "': " + std::string(impalemail::describe(problem)));
    }
    const std::string& prefix = ctx.config.aliases.key_prefix;
    const std::string& stats_prefix = ctx.config.redis.stats_prefix; // may overlap the alias prefix
    AdminRedis redis(ctx.config.redis);
    std::vector<AliasInfo> found;
    std::vector<std::string> ignored; // under the prefix, but not an alias the milter would look up
    scan_prefix(redis, prefix, [&](const std::vector<std::string>& keys) {
        std::vector<std::pair<const std::string*, std::string>> wanted; // key, alias
        for (const auto& key : keys) {
            std::string alias = alias_of_key(ctx, key, prefix);
            if (!alias.empty())
                wanted.emplace_back(&key, std::move(alias));
            else if (stats_prefix.empty() || key.compare(0, stats_prefix.size(), stats_prefix) != 0)
                ignored.push_back(key);
        }
        for (const auto& w : wanted) {
            redis.append({"GET", *w.first});
            redis.append({"PTTL", *w.first});
        }
        for (const auto& w : wanted) {
            const RedisReply value = redis.reply();
            const RedisReply pttl = redis.reply();
            if (value->type == REDIS_REPLY_NIL)
                continue; // expired or deleted since the SCAN
            if (value->type != REDIS_REPLY_STRING) {
                ignored.push_back(*w.first); // not a string: not an alias (WRONGTYPE)
                continue;
            }
            AliasInfo info{w.second, string_of(value.get())};
            if (!apply_pttl(pttl.get(), info))
                continue;
            if (owner && !owner_matches(info.owner, *owner))
                continue;
            found.push_back(std::move(info));
        }
    });
    std::sort(found.begin(), found.end(), [](const AliasInfo& a, const AliasInfo& b) { return a.alias < b.alias; });
    std::sort(ignored.begin(), ignored.end());
    if (!ignored.empty())
        warn(std::to_string(ignored.size()) + " key(s) under '" + printable(prefix) +
             "' are not aliases the milter would look up (not a lower-case address in an alias domain, or not a "
             "string), e.g. '" + printable(ignored.front()) + "'");

    if (ctx.json) {
        Json list = Json::array();
        for (const auto& a : found)
            list.push_back(alias_json(ctx, a));
        print_json(std::cout,
                   {{"count", found.size()}, {"aliases", std::move(list)}, {"ignored_keys", ignored.size()}});
        return 0;
    }
    if (found.empty()) {
        std::cout << "no aliases\n";
        return 0;
    }
    std::vector<std::vector<std::string>> rows{{"ALIAS", "OWNER", "TTL"}};
    for (const auto& a : found)
        rows.push_back({printable(a.alias), owner_column(ctx, a), human_ttl(a.permanent, a.ttl_seconds)});
    print_table(std::cout, rows);
    return 0;
}

// ---------------------------------------------------------------------------
int cmd_show(const Context& ctx, const std::string& arg)
{
    const std::string alias = normalize_alias(ctx, arg);
    const std::string key = alias_key(ctx, alias);
    AdminRedis redis(ctx.config.redis);
    redis.append({"GET", key});
    redis.append({"PTTL", key});
    if (stats_enabled(ctx))
        append_stats_read(redis, stats_key(ctx, alias));
    const RedisReply value = redis.reply();
    const RedisReply pttl = redis.reply();
    const RedisReply stats = stats_enabled(ctx) ? redis.reply() : nullptr;
    if (value->type == REDIS_REPLY_ERROR)
        throw CtlError(Exit::Redis, "Redis refused GET: " + string_of(value.get()));
    AliasInfo info{alias, {}};
    if (value->type == REDIS_REPLY_NIL || !apply_pttl(pttl.get(), info))
        throw CtlError(Exit::NotFound, "no such alias: " + printable(alias));
    if (value->type != REDIS_REPLY_STRING)
        throw CtlError(Exit::Redis, "unexpected Redis reply to GET");
    info.owner = string_of(value.get());
    const Stats s = stats ? stats_of_hmget(stats_key(ctx, alias), stats.get()) : Stats{};

    if (ctx.json) {
        Json j = alias_json(ctx, info);
        j["stats"] = stats ? stats_json(s) : Json(nullptr); // null: statistics are off
        print_json(std::cout, j);
        return 0;
    }
    std::vector<std::vector<std::string>> rows{{"alias:", printable(alias)},
                                               {"owner:", owner_column(ctx, info)},
                                               {"ttl:", human_ttl(info.permanent, info.ttl_seconds)}};
    if (stats)
        stats_rows(s, rows);
    else
        rows.push_back({"statistics:", "off (redis.stats_prefix is empty)"});
    print_table(std::cout, rows);
    return 0;
}

// ---------------------------------------------------------------------------
int cmd_persist(const Context& ctx, const std::string& arg)
{
    const std::string alias = normalize_alias(ctx, arg);
    const std::string key = alias_key(ctx, alias);
    AdminRedis redis(ctx.config.redis);
    bool changed = integer_reply(redis.command({"PERSIST", key}).get(), "PERSIST") == 1;
    // 0 means "no such key" or "already permanent": EXISTS tells which.
    if (!changed && integer_reply(redis.command({"EXISTS", key}).get(), "EXISTS") == 0)
        throw CtlError(Exit::NotFound, "no such alias: " + printable(alias));
    // The statistics hash lives as long as its alias (the milter copies the
    // TTL at each update): follow now, not at the next message.
    if (stats_enabled(ctx))
        integer_reply(redis.command({"PERSIST", stats_key(ctx, alias)}).get(), "PERSIST");
    if (ctx.json)
        print_json(std::cout, {{"alias", alias}, {"permanent", true}, {"ttl_seconds", -1}, {"changed", changed}});
    else
        std::cout << printable(alias) << (changed ? " is now permanent\n" : " was already permanent\n");
    return 0;
}

int cmd_extend(const Context& ctx, const std::string& arg, const std::string& ttl_text)
{
    const std::string alias = normalize_alias(ctx, arg);
    const Ttl ttl = parse_ttl_option(ttl_text);
    if (ttl.permanent)
        return cmd_persist(ctx, alias);
    AdminRedis redis(ctx.config.redis);
    const std::string seconds = std::to_string(ttl.seconds);
    if (integer_reply(redis.command({"EXPIRE", alias_key(ctx, alias), seconds}).get(), "EXPIRE") == 0)
        throw CtlError(Exit::NotFound, "no such alias: " + printable(alias));
    if (stats_enabled(ctx)) // the statistics hash expires with its alias
        integer_reply(redis.command({"EXPIRE", stats_key(ctx, alias), seconds}).get(), "EXPIRE");
    if (ctx.json)
        print_json(std::cout, {{"alias", alias}, {"permanent", false}, {"ttl_seconds", ttl.seconds}});
    else
        std::cout << printable(alias) << " now expires in " << human_ttl(false, ttl.seconds) << '\n';
    return 0;
}

int cmd_revoke(const Context& ctx, const std::string& arg)
{
    const std::string alias = normalize_alias(ctx, arg);
    AdminRedis redis(ctx.config.redis);
    if (integer_reply(redis.command({"DEL", alias_key(ctx, alias)}).get(), "DEL") == 0)
        throw CtlError(Exit::NotFound, "no such alias: " + printable(alias));
    if (ctx.json)
        print_json(std::cout, {{"alias", alias}, {"revoked", true}});
    else
        std::cout << printable(alias) << " revoked\n";
    return 0;
}

// ---------------------------------------------------------------------------
int cmd_stats(const Context& ctx, const std::optional<std::string>& arg)
{
    std::optional<std::string> alias_arg;
    if (arg)
        alias_arg = normalize_alias(ctx, *arg);
    if (!stats_enabled(ctx))
        throw CtlError(Exit::Config, "statistics are off: redis.stats_prefix is empty in the configuration");
    if (alias_arg) {
        const std::string& alias = *alias_arg;
        const std::string key = stats_key(ctx, alias);
        AdminRedis redis(ctx.config.redis);
        append_stats_read(redis, key);
        const RedisReply r = redis.reply();
        const Stats s = stats_of_hmget(key, r.get());
        if (ctx.json) {
            Json j = stats_json(s);
            j["alias"] = alias;
            print_json(std::cout, j);
            return 0;
        }
        std::vector<std::vector<std::string>> rows{{"alias:", printable(alias)}};
        stats_rows(s, rows);
        print_table(std::cout, rows);
        return 0;
    }

    const std::string& stats_prefix = ctx.config.redis.stats_prefix;
    AdminRedis redis(ctx.config.redis);
    Stats total;
    long long counted = 0;
    scan_prefix(redis, stats_prefix, [&](const std::vector<std::string>& keys) {
        std::vector<const std::string*> wanted;
        for (const auto& key : keys)
            if (!alias_of_key(ctx, key, stats_prefix).empty())
                wanted.push_back(&key);
        for (const auto* key : wanted)
            append_stats_read(redis, *key);
        for (const auto* key : wanted) {
            const RedisReply r = redis.reply();
            if (r->type == REDIS_REPLY_ERROR) {
                stats_of_hmget(*key, r.get()); // warns
                continue;
            }
            const Stats s = stats_of_hmget(*key, r.get());
            ++counted;
            total.forwarded += s.forwarded;
            total.refused += s.refused;
            total.last_used = std::max(total.last_used, s.last_used);
        }
    });
    if (ctx.json) {
        Json j = stats_json(total);
        j["aliases"] = counted;
        print_json(std::cout, j);
        return 0;
    }
    std::vector<std::vector<std::string>> rows{{"aliases with statistics:", std::to_string(counted)}};
    stats_rows(total, rows);
    print_table(std::cout, rows);
    return 0;
}

} // namespace impalectl
