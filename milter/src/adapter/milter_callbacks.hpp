#pragma once
// The libmilter callbacks and the per-connection state behind them.

#include "config/config.hpp"
#include "log/pseudonymizer.hpp"

#include <memory>

namespace impalemail {

// Registers the callbacks with libmilter; connections opened from now on use
// this config snapshot.
bool register_callbacks(std::shared_ptr<const Config> config, std::shared_ptr<const Pseudonymizer> pseudonym);

// From now on, transactions that begin are refused at RCPT with 451 4.3.2;
// the ones already begun carry on.
void begin_drain() noexcept;

// Transactions begun before the drain and not yet ended (end of message,
// abort, or connection closed).
int transactions_in_flight() noexcept;

} // namespace impalemail
