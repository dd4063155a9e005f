// impalectl: manage ImpaleMail aliases in Redis, with the milter's own
// configuration file and validation rules.
//
//   impalectl new --to alice@real.example [--ttl 7d] [--domain D] [--style random|words]
//   impalectl list [--owner alice@real.example]
//   impalectl show ALIAS
//   impalectl extend ALIAS --ttl 30d          (--ttl never: permanent)
//   impalectl persist ALIAS
//   impalectl revoke ALIAS
//   impalectl stats [ALIAS]
//
// Global options, before or after the command: -c/--config FILE (default
// /etc/impalemail/impalemail.yaml), --json (one JSON document on stdout).
// Each command is one documented redis-cli equivalent (README: "impalectl").
// Exit codes: 0 ok, 1 alias not found, 2 usage, 3 config, 4 Redis (or other
// runtime failure), 5 invalid input. Messages go to stderr.

#include "commands.hpp"
#include "ctl_error.hpp"

#include "config/config_loader.hpp"

#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

namespace {

constexpr const char* kFooter = R"(Durations (--ttl): 30s 15m 12h 7d 2w, plain seconds, or never/0 (permanent).
Aliases are normalized like the milter's recipients (lower-cased) and must be in aliases.domains.

Exit codes:
  0  ok
  1  alias not found (show, extend, persist, revoke)
  2  usage error
  3  configuration error
  4  Redis unreachable or answering an error
  5  invalid input (target mailbox, duration, alias outside the alias domains)
)";

} // namespace

int main(int argc, char** argv)
{
    using namespace impalectl;

    CLI::App app{"impalectl: manage ImpaleMail's disposable aliases in Redis", "impalectl"};
    app.footer(kFooter);
    app.set_version_flag("--version", std::string("impalectl ") + IMPALECTL_VERSION);
    app.require_subcommand(1);
    app.fallthrough(); // global options are accepted after the command too

    std::string config_path = "/etc/impalemail/impalemail.yaml";
    bool json = false;
    app.add_option("-c,--config", config_path, "the milter's YAML configuration file")->capture_default_str();
    app.add_flag("--json", json, "machine-readable output: one JSON document on stdout");

    NewOptions new_opts;
    auto* cmd_new_app = app.add_subcommand("new", "create an alias with a random name; prints it");
    cmd_new_app->add_option("--to", new_opts.to, "the owner's real mailbox")->required();
    cmd_new_app->add_option("--ttl", new_opts.ttl, "life of the alias")->capture_default_str();
    cmd_new_app->add_option("--domain", new_opts.domain, "alias domain (default: the first of aliases.domains)");
    cmd_new_app->add_option("--style", new_opts.style, "random: 10 of [a-z0-9]; words: amber-tiger-coral-417")
        ->check(CLI::IsMember({"random", "words"}))
        ->capture_default_str();

    std::optional<std::string> owner;
    auto* cmd_list_app = app.add_subcommand("list", "list live aliases (SCAN), with owner and remaining life");
    cmd_list_app->add_option("--owner", owner, "only the aliases of this mailbox (domain compared case-insensitively)");

    std::string alias;
    auto* cmd_show_app = app.add_subcommand("show", "owner, remaining life and statistics of one alias");
    cmd_show_app->add_option("alias", alias, "alias address")->required();

    std::string ttl;
    auto* cmd_extend_app = app.add_subcommand("extend", "set an alias's remaining life (from now)");
    cmd_extend_app->add_option("alias", alias, "alias address")->required();
    cmd_extend_app->add_option("--ttl", ttl, "new life, counted from now; never: permanent")->required();

    auto* cmd_persist_app = app.add_subcommand("persist", "make an alias permanent");
    cmd_persist_app->add_option("alias", alias, "alias address")->required();

    auto* cmd_revoke_app = app.add_subcommand("revoke", "delete an alias now (its next RCPT gets 550)");
    cmd_revoke_app->add_option("alias", alias, "alias address")->required();

    std::optional<std::string> stats_alias;
    auto* cmd_stats_app = app.add_subcommand("stats", "statistics of one alias, or totals over all");
    cmd_stats_app->add_option("alias", stats_alias, "alias address (default: totals)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(Exit::Usage);
    }

    // hiredis writes to sockets Redis may have closed: an error, not a signal.
    std::signal(SIGPIPE, SIG_IGN);

    impalemail::ConfigLoad load = impalemail::load_config_file(config_path);
    if (!load.config) {
        for (const auto& e : load.errors)
            std::cerr << impalemail::format_error(config_path, e) << '\n';
        std::cerr << "impalectl: " << config_path << ": " << load.errors.size() << " error(s)\n";
        return static_cast<int>(Exit::Config);
    }

    const Context ctx{*load.config, json};
    try {
        if (*cmd_new_app)
            return cmd_new(ctx, new_opts);
        if (*cmd_list_app)
            return cmd_list(ctx, owner);
        if (*cmd_show_app)
            return cmd_show(ctx, alias);
        if (*cmd_extend_app)
            return cmd_extend(ctx, alias, ttl);
        if (*cmd_persist_app)
            return cmd_persist(ctx, alias);
        if (*cmd_revoke_app)
            return cmd_revoke(ctx, alias);
        if (*cmd_stats_app)
            return cmd_stats(ctx, stats_alias);
    } catch (const CtlError& e) {
        std::cerr << "impalectl: " << e.what() << '\n';
        return static_cast<int>(e.code());
    } catch (const std::exception& e) {
        std::cerr << "impalectl: " << e.what() << '\n';
        return static_cast<int>(Exit::Redis);
    }
    return static_cast<int>(Exit::Usage); // unreachable: require_subcommand(1)
}
