#pragma once
// The libmilter protocol adapter: the only code that speaks the milter
// protocol. It translates callbacks into MessageSession calls and the
// session's decisions back into milter replies and edits.

#include "config/config.hpp"

#include <memory>
#include <string>

namespace impalemail {

// Opens the socket, drops privileges, and serves until SIGTERM/SIGHUP
// (drain, then stop) or SIGINT (stop now); SIGUSR1 reloads `config_path`.
// Returns the process exit status.
int run_milter(const std::string& config_path, std::shared_ptr<const Config> config);

} // namespace impalemail
