#pragma once
// Prometheus metrics, served over HTTP on metrics.listen. The protocol
// adapter reports events; nothing else knows about Prometheus.

#include "core/message_session.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace impalemail {

class Metrics {
public:
    // Starts the HTTP endpoint ("HOST:PORT"); throws if it cannot listen.
    static std::unique_ptr<Metrics> serve(const std::string& listen_address);
    virtual ~Metrics() = default;

    virtual void rcpt_decided(RcptOutcome outcome) = 0;
    virtual void lookup_took(std::chrono::duration<double> seconds) = 0;
    virtual void message_rewritten() = 0;
    // `pattern` is the strip-list entry that matched: bounded by the config,
    // unlike header names, which senders choose.
    virtual void header_stripped(std::string_view pattern) = 0;
    virtual void redis_error() = 0;
    virtual void redis_reconnected() = 0;
    virtual void connection_opened() = 0;
    virtual void connection_closed() = 0;
};

} // namespace impalemail
