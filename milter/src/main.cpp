// impalemail-milter: decides disposable-alias recipients at RCPT time from
// Redis and rewrites them to their owners at end of message.

#include "adapter/milter_adapter.hpp"
#include "config/config_loader.hpp"
#include "log/logger.hpp"
#include "version.hpp"

#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

int main(int argc, char** argv)
{
    using namespace impalemail;

    CLI::App app{"impalemail-milter: disposable-alias milter for Postfix and Sendmail, backed by Redis"};
    std::string config_path = "/etc/impalemail/impalemail.yaml";
    bool check_only = false;
    app.add_option("-c,--config", config_path, "YAML configuration file")->capture_default_str();
    app.add_flag("--check", check_only, "validate the configuration, print every error, and exit 0 or 1");
    app.set_version_flag("--version", std::string("impalemail-milter ") + kVersion);
    CLI11_PARSE(app, argc, argv);

    ConfigLoad load = load_config_file(config_path);
    for (const auto& e : load.errors)
        std::cerr << format_error(config_path, e) << '\n';
    if (!load.config) {
        std::cerr << config_path << ": " << load.errors.size() << " error(s)\n";
        return 1;
    }
    if (check_only) {
        std::cout << config_path << ": OK\n";
        return 0;
    }

    // hiredis writes to sockets Redis may have closed; EPIPE must be an
    // error return, not the end of the process.
    std::signal(SIGPIPE, SIG_IGN);

    const Config& cfg = *load.config;
    logging::configure(cfg.logging.level, cfg.logging.syslog, "impalemail-milter");
    if (cfg.logging.show_addresses)
        logging::warning("logging.show_addresses is on: mailbox addresses will be logged in clear");
    try {
        return run_milter(config_path, std::make_shared<const Config>(std::move(*load.config)));
    } catch (const std::exception& e) {
        logging::error(std::string("fatal: ") + e.what());
        return 1;
    }
}
