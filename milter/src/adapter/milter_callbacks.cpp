#include "adapter/milter_callbacks.hpp"

#include "core/message_session.hpp"
#include "log/decision_log.hpp"
#include "log/pseudonym_cache.hpp"
#include "log/logger.hpp"
#include "metrics/metrics.hpp"
#include "store/redis_store.hpp"

#include <libmilter/mfapi.h>

#include <atomic>
#include <chrono>
#include <string>

namespace impalemail {

namespace {

// Set once before smfi_main; connections take their own reference so a later
// swap never changes the config under a transaction in flight.
std::shared_ptr<const Runtime> g_runtime; // atomic_load/atomic_store only
Metrics* g_metrics = nullptr;             // set before smfi_main; null: no endpoint
std::atomic<int> g_transactions_in_flight{0};
std::atomic<bool> g_draining{false};

constexpr unsigned long kActions = SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGHDRS;
// Stages we never look at: the MTA need not send them at all.
constexpr unsigned long kSkippedSteps =
    SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
// Stages we see but never answer except "continue".
constexpr unsigned long kNoReplySteps = SMFIP_NR_MAIL | SMFIP_NR_HDR;

// Per MTA connection: pins one config snapshot (and with it the Redis
// connection pool its lookups borrow from).
struct Connection {
    explicit Connection(std::shared_ptr<const Runtime> rt)
        : runtime(std::move(rt)), store(runtime->config->redis, runtime->locator, runtime->pool),
          session(runtime->config->aliases, store), pseudonyms(*runtime->pseudonym)
    {
    }
    ~Connection()
    {
        end_transaction();
        if (g_metrics)
            g_metrics->connection_closed();
    }

    void begin_transaction()
    {
        if (!in_transaction) {
            in_transaction = true;
            pseudonyms.clear();
            // Transactions begun while the milter drains are refused at RCPT
            // and not waited for.
            admitted = !g_draining.load();
            if (admitted)
                ++g_transactions_in_flight;
        }
    }
    void end_transaction()
    {
        session.reset();
        failed = false;
        if (in_transaction) {
            in_transaction = false;
            if (admitted)
                --g_transactions_in_flight;
        }
    }

    std::shared_ptr<const Runtime> runtime;
    RedisStore store;
    MessageSession session;
    PseudonymCache pseudonyms;
    unsigned long protocol = 0; // negotiated SMFIP_* flags
    bool in_transaction = false;
    bool admitted = false; // begun before a drain started
    bool failed = false; // an error in a stage that could not reply
};

Connection* connection(SMFICTX* ctx)
{
    auto* c = static_cast<Connection*>(smfi_getpriv(ctx));
    if (!c) {
        c = new Connection(std::atomic_load(&g_runtime));
        if (g_metrics)
            g_metrics->connection_opened();
        smfi_setpriv(ctx, c);
    }
    return c;
}

std::string queue_id(SMFICTX* ctx)
{
    const char* id = smfi_getsymval(ctx, const_cast<char*>("i"));
    return id && *id ? id : "NOQUEUE";
}

sfsistat tempfail(SMFICTX* ctx)
{
    smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.3.0"),
                  const_cast<char*>("Alias service temporarily unavailable, try again later"));
    return SMFIS_TEMPFAIL;
}

// No C++ exception may unwind into libmilter's C code; one that escapes a
// callback becomes a tempfail, which loses nothing.
template <class Body>
sfsistat guarded(SMFICTX* ctx, const char* stage, Body&& body) noexcept
{
    try {
        return body();
    } catch (const std::exception& e) {
        try {
            logging::error(std::string("internal error in ") + stage + ": " + e.what());
        } catch (...) {
        }
    } catch (...) {
        logging::error(std::string("internal error in ") + stage);
    }
    return tempfail(ctx);
}

sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3)
{
    return guarded(ctx, "negotiate", [&]() -> sfsistat {
        if ((f0 & kActions) != kActions) {
            logging::error("the MTA does not allow adding and deleting recipients and deleting headers; "
                           "refusing to filter");
            return SMFIS_REJECT;
        }
        *pf0 = kActions;
        *pf1 = (kSkippedSteps | kNoReplySteps) & f1;
        *pf2 = 0;
        *pf3 = 0;
        if (f0 & SMFIF_SETSYMLIST) {
            // Only the queue id, for logs; the MTA's default macro sets are
            // bytes we would receive and ignore on every command.
            *pf0 |= SMFIF_SETSYMLIST;
            for (int stage : {SMFIM_ENVFROM, SMFIM_ENVRCPT, SMFIM_EOM})
                smfi_setsymlist(ctx, stage, const_cast<char*>("i"));
        }
        connection(ctx)->protocol = *pf1;
        return SMFIS_CONTINUE;
    });
}

sfsistat on_envfrom(SMFICTX* ctx, char**)
{
    return guarded(ctx, "MAIL", [&]() -> sfsistat {
        Connection* c = connection(ctx);
        c->end_transaction(); // a transaction the MTA never closed
        c->begin_transaction();
        return (c->protocol & SMFIP_NR_MAIL) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
    });
}

void report(Metrics& m, const RcptDecision& d, std::chrono::steady_clock::duration took, unsigned connects)
{
    m.rcpt_decided(d.outcome);
    if (!d.key.empty())
        m.lookup_took(took);
    if (d.outcome == RcptOutcome::StoreError)
        m.redis_error();
    for (unsigned i = 0; i < connects; ++i)
        m.redis_reconnected();
}

sfsistat on_envrcpt(SMFICTX* ctx, char** argv)
{
    return guarded(ctx, "RCPT", [&]() -> sfsistat {
        if (!argv || !argv[0])
            return tempfail(ctx);
        Connection* c = connection(ctx);
        c->begin_transaction();
        if (!c->admitted) {
            smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.3.2"),
                          const_cast<char*>("Service shutting down, try again later"));
            return SMFIS_TEMPFAIL;
        }
        const unsigned connects_before = c->store.connects();
        const auto started = std::chrono::steady_clock::now();
        const RcptDecision d = c->session.on_recipient(argv[0]);
        if (g_metrics)
            report(*g_metrics, d, std::chrono::steady_clock::now() - started, c->store.connects() - connects_before);
        log_rcpt_decision(c->pseudonyms, queue_id(ctx), argv[0], d);
        const std::string& stats_prefix = c->runtime->config->redis.stats_prefix;
        if (d.outcome == RcptOutcome::Unknown && !stats_prefix.empty())
            c->store.record_refused(stats_prefix + d.alias);
        const SmtpReply r = d.reply();
        if (!r.code)
            return SMFIS_CONTINUE;
        smfi_setreply(ctx, const_cast<char*>(r.code), const_cast<char*>(r.xcode), const_cast<char*>(r.text));
        return r.code[0] == '5' ? SMFIS_REJECT : SMFIS_TEMPFAIL;
    });
}

sfsistat on_header(SMFICTX* ctx, char* name, char*)
{
    Connection* c = nullptr;
    const sfsistat st = guarded(ctx, "header", [&]() -> sfsistat {
        c = connection(ctx);
        if (name)
            c->session.on_header(name);
        return SMFIS_CONTINUE;
    });
    if (st != SMFIS_CONTINUE && c)
        c->failed = true; // cannot answer here; the message is tempfailed at its end
    return (c && (c->protocol & SMFIP_NR_HDR)) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

// Carries out the plan; false as soon as the MTA refuses one edit.
bool apply(SMFICTX* ctx, const EomPlan& plan, std::string& failed_call)
{
    for (const auto& raw : plan.delete_recipients)
        if (smfi_delrcpt(ctx, const_cast<char*>(raw.c_str())) != MI_SUCCESS) {
            failed_call = "smfi_delrcpt";
            return false;
        }
    for (const auto& target : plan.add_recipients)
        if (smfi_addrcpt(ctx, const_cast<char*>(target.c_str())) != MI_SUCCESS) {
            failed_call = "smfi_addrcpt";
            return false;
        }
    for (const auto& h : plan.delete_headers)
        if (smfi_chgheader(ctx, const_cast<char*>(h.name.c_str()), h.index, nullptr) != MI_SUCCESS) {
            failed_call = "smfi_chgheader";
            return false;
        }
    return true;
}

sfsistat on_eom(SMFICTX* ctx)
{
    return guarded(ctx, "end of message", [&]() -> sfsistat {
        Connection* c = connection(ctx);
        const std::string queue = queue_id(ctx);
        if (c->failed) {
            logging::error("queue=" + queue + " action=tempfail reason=\"an earlier stage failed\"");
            c->end_transaction();
            return tempfail(ctx);
        }
        const EomPlan plan = c->session.plan();
        c->end_transaction();
        if (plan.empty())
            return SMFIS_CONTINUE;
        std::string failed_call;
        if (!apply(ctx, plan, failed_call)) {
            // Never accept a message whose rewrite did not happen.
            logging::error("queue=" + queue + " action=tempfail reason=\"" + failed_call + " failed\"");
            return tempfail(ctx);
        }
        log_rewrite(c->pseudonyms, queue, plan);
        const Config& cfg = *c->runtime->config;
        if (!cfg.redis.stats_prefix.empty())
            for (const auto& alias : plan.aliases)
                c->store.record_forwarded(cfg.aliases.key_prefix + alias, cfg.redis.stats_prefix + alias);
        if (g_metrics) {
            g_metrics->message_rewritten();
            for (const auto& h : plan.delete_headers)
                if (const std::string* pattern = c->runtime->config->aliases.strip.matching_pattern(h.name))
                    g_metrics->header_stripped(*pattern);
        }
        return SMFIS_CONTINUE;
    });
}

sfsistat on_abort(SMFICTX* ctx)
{
    return guarded(ctx, "abort", [&]() -> sfsistat {
        if (auto* c = static_cast<Connection*>(smfi_getpriv(ctx)))
            c->end_transaction();
        return SMFIS_CONTINUE;
    });
}

sfsistat on_close(SMFICTX* ctx)
{
    // priv may be NULL: close can come without any other callback.
    delete static_cast<Connection*>(smfi_getpriv(ctx));
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
}

} // namespace

std::shared_ptr<const Runtime> make_runtime(std::shared_ptr<const Config> config)
{
    auto rt = std::make_shared<Runtime>();
    rt->locator = make_primary_locator(config->redis);
    rt->pool = std::make_shared<RedisPool>();
    rt->pseudonym = std::make_shared<const Pseudonymizer>(config->logging.pseudonym_key, config->logging.show_addresses);
    rt->config = std::move(config);
    return rt;
}

void use_runtime(std::shared_ptr<const Runtime> runtime)
{
    std::atomic_store(&g_runtime, std::move(runtime));
}

bool register_callbacks(std::shared_ptr<const Runtime> runtime, Metrics* metrics)
{
    g_metrics = metrics;
    use_runtime(std::move(runtime));

    smfiDesc desc{};
    desc.xxfi_name = const_cast<char*>("impalemail-milter");
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = kActions;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_header = on_header;
    desc.xxfi_eom = on_eom;
    desc.xxfi_abort = on_abort;
    desc.xxfi_close = on_close;
    desc.xxfi_negotiate = on_negotiate;
    return smfi_register(desc) == MI_SUCCESS;
}

void begin_drain() noexcept
{
    g_draining.store(true);
}

int transactions_in_flight() noexcept
{
    return g_transactions_in_flight.load();
}

} // namespace impalemail
