#pragma once
// The libmilter callbacks and the per-connection state behind them.

#include "config/config.hpp"
#include "log/pseudonymizer.hpp"
#include "store/primary_locator.hpp"
#include "store/redis_pool.hpp"

#include <memory>

namespace impalemail {

// What a connection pins for its whole life: a config reload builds a new
// Runtime for the connections that open after it.
struct Runtime {
    std::shared_ptr<const Config> config;
    std::shared_ptr<PrimaryLocator> locator;
    std::shared_ptr<RedisPool> pool; // Redis connections of this snapshot's connections
    std::shared_ptr<const Pseudonymizer> pseudonym;
};

// Throws when no pseudonym key can be had.
std::shared_ptr<const Runtime> make_runtime(std::shared_ptr<const Config> config);

class Metrics;

// Registers the callbacks with libmilter; connections use `runtime`.
// `metrics` (may be null) must outlive smfi_main.
bool register_callbacks(std::shared_ptr<const Runtime> runtime, Metrics* metrics);

// Connections opened from now on use `runtime`; open ones keep theirs.
void use_runtime(std::shared_ptr<const Runtime> runtime);

// From now on, transactions that begin are refused at RCPT with 451 4.3.2;
// the ones already begun carry on.
void begin_drain() noexcept;

// Transactions begun before the drain and not yet ended (end of message,
// abort, or connection closed).
int transactions_in_flight() noexcept;

} // namespace impalemail
