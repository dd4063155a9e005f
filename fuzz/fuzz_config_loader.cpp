// libFuzzer harness: load_config_text (config/config_loader.hpp), YAML text
// to a validated Config, through yaml-cpp.
//
// Input: the YAML text. base_dir is "/nonexistent", so relative secret-file
// paths (redis.password_file, logging.pseudonym_key_file) fail cleanly.
// Inputs where a "*_file" key names an absolute path are skipped (yaml-cpp
// parses them here first): the fuzzer would otherwise read whatever it names,
// e.g. "/dev/urandom" (which the shipped example config mentions) or
// /dev/stdin, and report a memory blow-up or a hang that depends on the machine.
//
// Invariants:
//   - exactly one of: config set and errors empty / config unset and errors
//     non-empty;
//   - every error has line >= 0, column >= 0 and a non-empty message, and the
//     errors are sorted by (line, column); format_error() shows the message;
//   - a loaded Config holds only what validation promises: at least one
//     alias domain, each a lower-case ASCII domain name of at most 253 octets
//     without trailing dot, no duplicates; valid strip patterns; key and
//     stats prefixes without space or control bytes, not equal; valid
//     account names; a socket mode without write access for others; Sentinel
//     with a master name and TCP addresses; values within their ranges; no
//     secret read (none is readable under /nonexistent).

#include "config/config_loader.hpp"
#include "core/mail_syntax.hpp"
#include "fuzz_check.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace impalemail;
using impalemail::fuzz::print_escaped;

namespace {

const std::string kBaseDir = "/nonexistent";

// True when some "*_file" key (a secret file: redis.password_file,
// redis.sentinel.password_file, logging.pseudonym_key_file, and any added
// later) names an absolute path. Configs are shallow; the depth limit also
// stops at self-referencing aliases ("&a [*a]").
bool names_absolute_file(const YAML::Node& n, int depth)
{
    if (depth > 8)
        return false;
    if (n.IsSequence()) {
        for (const auto& item : n)
            if (names_absolute_file(item, depth + 1))
                return true;
    } else if (n.IsMap()) {
        for (const auto& kv : n) {
            const std::string& key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
            if (key.size() > 5 && key.compare(key.size() - 5, 5, "_file") == 0 && kv.second.IsScalar() &&
                !kv.second.Scalar().empty() && kv.second.Scalar().front() == '/')
                return true;
            if (names_absolute_file(kv.second, depth + 1))
                return true;
        }
    }
    return false;
}

bool names_absolute_file(const std::string& yaml)
{
    try {
        return names_absolute_file(YAML::Load(yaml), 0);
    } catch (const YAML::Exception&) {
        return false; // the loader fails the same way, before reading anything
    }
}

bool valid_account_name(const std::string& s)
{
    if (s.empty() || s.size() > 32 || s.front() == '-')
        return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    return true;
}

bool has_space_or_control(const std::string& s)
{
    return std::any_of(s.begin(), s.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c <= 0x20 || c == 0x7f;
    });
}

void check_config(const Config& c, const std::string& yaml)
{
    const auto context = [&] { print_escaped("yaml", yaml, 4000); };

    const auto& domains = c.aliases.domains.list();
    FUZZ_CHECK(!domains.empty(), context());
    for (std::size_t i = 0; i < domains.size(); ++i) {
        const std::string& d = domains[i];
        FUZZ_CHECK(is_domain_name(d, Charset::Ascii) && d.size() <= 253, context(); print_escaped("domain", d));
        FUZZ_CHECK(std::none_of(d.begin(), d.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; }), context();
                   print_escaped("domain", d));
        FUZZ_CHECK(std::find(domains.begin() + static_cast<long>(i) + 1, domains.end(), d) == domains.end(), context();
                   print_escaped("duplicate domain", d));
        FUZZ_CHECK(c.aliases.domains.contains(d), context());
    }
    for (const auto& p : c.aliases.strip.patterns())
        FUZZ_CHECK(StripPolicy::is_valid_pattern(p), context(); print_escaped("pattern", p));
    FUZZ_CHECK(!has_space_or_control(c.aliases.key_prefix), context(); print_escaped("key_prefix", c.aliases.key_prefix));
    FUZZ_CHECK(!has_space_or_control(c.redis.stats_prefix), context(); print_escaped("stats_prefix", c.redis.stats_prefix));
    FUZZ_CHECK(c.redis.stats_prefix.empty() || c.redis.stats_prefix != c.aliases.key_prefix, context());

    for (const std::string* account : {&c.milter.user, &c.milter.group, &c.milter.socket_group})
        FUZZ_CHECK(account->empty() || valid_account_name(*account), context(); print_escaped("account", *account));
    FUZZ_CHECK(c.milter.socket_mode <= 0777 && (c.milter.socket_mode & 0002) == 0, context());
    FUZZ_CHECK(c.milter.shutdown_timeout.count() >= 0 && c.milter.shutdown_timeout.count() <= 3600, context());
    FUZZ_CHECK(!c.milter.socket.empty(), context());
    FUZZ_CHECK(c.redis.timeout.count() >= 1 && c.redis.timeout.count() <= 60000, context());
    FUZZ_CHECK(c.redis.database >= 0 && c.redis.database <= 65535, context());
    if (c.redis.transport == RedisSettings::Transport::Tcp)
        FUZZ_CHECK(c.redis.port >= 1 && c.redis.port <= 65535 && !c.redis.host.empty(), context();
                   print_escaped("address", c.redis.address));
    else
        FUZZ_CHECK(c.redis.path.size() > 1 && c.redis.path.front() == '/', context();
                   print_escaped("address", c.redis.address));
    if (c.redis.sentinel) {
        const SentinelSettings& st = *c.redis.sentinel;
        FUZZ_CHECK(!st.master.empty() && !has_space_or_control(st.master), context());
        FUZZ_CHECK(!st.addresses.empty(), context());
        for (const RedisEndpoint& e : st.addresses)
            FUZZ_CHECK(e.transport == RedisEndpoint::Transport::Tcp && e.port >= 1 && e.port <= 65535 && !e.host.empty(),
                       context(); print_escaped("sentinel", e.describe()));
        FUZZ_CHECK(st.password.empty(), context());
    }
    FUZZ_CHECK(static_cast<int>(c.logging.level) >= 0 && static_cast<int>(c.logging.level) <= 3, context());
    FUZZ_CHECK(c.redis.password.empty() && c.logging.pseudonym_key.empty(), context());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string yaml(reinterpret_cast<const char*>(data), size);
    if (names_absolute_file(yaml))
        return -1; // not added to the corpus

    const ConfigLoad load = load_config_text(yaml, kBaseDir);
    const auto context = [&] { print_escaped("yaml", yaml, 4000); };

    FUZZ_CHECK(load.config.has_value() == load.errors.empty(), context();
               std::fprintf(stderr, "  config %s, %zu errors\n", load.config ? "set" : "unset", load.errors.size()));
    for (std::size_t i = 0; i < load.errors.size(); ++i) {
        const ConfigError& e = load.errors[i];
        const auto econtext = [&] {
            context();
            std::fprintf(stderr, "  error %zu: line %d column %d\n", i, e.line, e.column);
            print_escaped("message", e.message);
        };
        FUZZ_CHECK(e.line >= 0 && e.column >= 0, econtext());
        FUZZ_CHECK(!e.message.empty(), econtext());
        if (i > 0) {
            const ConfigError& p = load.errors[i - 1];
            FUZZ_CHECK(p.line < e.line || (p.line == e.line && p.column <= e.column), econtext());
        }
        FUZZ_CHECK(format_error("impalemail.yaml", e).find(e.message) != std::string::npos, econtext());
    }
    if (load.config)
        check_config(*load.config, yaml);
    return 0;
}
