#include "metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <mutex>

namespace impalemail {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const char* outcome_label(RcptOutcome o)
{
    switch (o) {
    case RcptOutcome::Passthrough: return "passthrough";
    case RcptOutcome::Accepted: return "accepted";
    case RcptOutcome::Unknown: return "unknown";
    case RcptOutcome::Malformed: return "malformed";
    case RcptOutcome::StoreError: return "tempfail-store";
    case RcptOutcome::CorruptValue: return "tempfail-corrupt";
    }
    return "unknown";
}

class PrometheusMetrics final : public Metrics {
public:
    explicit PrometheusMetrics(const std::string& listen)
        : exposer_(listen, /*num_threads=*/1),
          registry_(std::make_shared<prometheus::Registry>()),
          rcpt_(BuildCounter()
                    .Name("impalemail_rcpt_decisions_total")
                    .Help("RCPT decisions by outcome")
                    .Register(*registry_)),
          rewritten_(BuildCounter()
                         .Name("impalemail_messages_rewritten_total")
                         .Help("Messages whose alias recipients were rewritten to their owners")
                         .Register(*registry_)
                         .Add({})),
          stripped_(BuildCounter()
                        .Name("impalemail_headers_stripped_total")
                        .Help("Headers deleted, by the strip-list entry that matched")
                        .Register(*registry_)),
          redis_errors_(BuildCounter()
                            .Name("impalemail_redis_errors_total")
                            .Help("Alias lookups that failed: unreachable, timeout or error reply")
                            .Register(*registry_)
                            .Add({})),
          redis_reconnects_(BuildCounter()
                                .Name("impalemail_redis_connects_total")
                                .Help("Redis connections opened (the pool grows to about one per busy worker; reconnects after errors)")
                                .Register(*registry_)
                                .Add({})),
          lookup_seconds_(BuildHistogram()
                              .Name("impalemail_rcpt_lookup_seconds")
                              .Help("Time to decide an alias-domain RCPT, Redis round trip included")
                              .Register(*registry_)
                              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                                               0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                               0.5, 1.0})),
          connections_(BuildGauge()
                           .Name("impalemail_active_connections")
                           .Help("MTA connections open to the milter")
                           .Register(*registry_)
                           .Add({}))
    {
        for (auto o : {RcptOutcome::Passthrough, RcptOutcome::Accepted, RcptOutcome::Unknown, RcptOutcome::Malformed,
                       RcptOutcome::StoreError, RcptOutcome::CorruptValue})
            by_outcome_[static_cast<int>(o)] = &rcpt_.Add({{"outcome", outcome_label(o)}});
        exposer_.RegisterCollectable(registry_);
    }

    void rcpt_decided(RcptOutcome o) override { by_outcome_[static_cast<int>(o)]->Increment(); }
    void lookup_took(std::chrono::duration<double> s) override { lookup_seconds_.Observe(s.count()); }
    void message_rewritten() override { rewritten_.Increment(); }
    void header_stripped(std::string_view pattern) override
    {
        // Family::Add is thread-safe and returns the existing child.
        stripped_.Add({{"header", std::string(pattern)}}).Increment();
    }
    void redis_error() override { redis_errors_.Increment(); }
    void redis_reconnected() override { redis_reconnects_.Increment(); }
    void connection_opened() override { connections_.Increment(); }
    void connection_closed() override { connections_.Decrement(); }

private:
    prometheus::Exposer exposer_;
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Family<prometheus::Counter>& rcpt_;
    prometheus::Counter& rewritten_;
    prometheus::Family<prometheus::Counter>& stripped_;
    prometheus::Counter& redis_errors_;
    prometheus::Counter& redis_reconnects_;
    prometheus::Histogram& lookup_seconds_;
    prometheus::Gauge& connections_;
    prometheus::Counter* by_outcome_[6] = {};
};

} // namespace

std::unique_ptr<Metrics> Metrics::serve(const std::string& listen_address)
{
    return std::make_unique<PrometheusMetrics>(listen_address);
}

} // namespace impalemail
