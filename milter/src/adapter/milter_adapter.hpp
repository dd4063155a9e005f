#pragma once
// The libmilter protocol adapter: the only code that speaks the milter
// protocol. It translates callbacks into MessageSession calls and the
// session's decisions back into milter replies and edits.

#include "config/config.hpp"
#include "log/pseudonymizer.hpp"

#include <memory>

namespace impalemail {

// Opens the socket, serves until SIGTERM/SIGHUP/SIGINT, then waits (up to
// config.milter.shutdown_timeout) for transactions in flight. Returns the
// process exit status.
int run_milter(std::shared_ptr<const Config> config, std::shared_ptr<const Pseudonymizer> pseudonym);

} // namespace impalemail
