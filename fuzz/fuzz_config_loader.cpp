// libFuzzer harness: load_config_text (config/config_loader.hpp), YAML text
// to a validated Config, through yaml-cpp.
//
// Input: the YAML text. base_dir is "/nonexistent", so relative secret-file
// paths (redis.password_file, logging.pseudonym_key_file) fail cleanly.
// Inputs whose secret-file path is absolute are skipped (yaml-cpp parses them
// here first): the fuzzer would otherwise read whatever it names, e.g.
// "/dev/urandom" (which the shipped example config mentions) or /dev/stdin,
// and report a memory blow-up or a hang that depends on the machine.
//
// Invariants:
//   - exactly one of: config set and errors empty / config unset and errors
//     non-empty;
//   - every error has line >= 0, column >= 0 and a non-empty message, and the
//     errors are sorted by (line, column); format_error() shows the message;
//   - a loaded Config holds only what validation promises: at least one
//     alias domain, each a lower-case ASCII domain name of at most 253 octets
//     without trailing dot, no duplicates; valid strip patterns; a key
//     prefix without space or control bytes; values within their ranges;
//     no secret read (none is readable under /nonexistent).

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

// True when the loader would open a secret file by absolute path.
bool names_absolute_secret(const std::string& yaml)
{
    YAML::Node parsed;
    try {
        parsed = YAML::Load(yaml);
    } catch (const YAML::Exception&) {
        return false; // the loader fails the same way, before reading anything
    }
    const YAML::Node& root = parsed; // const operator[]: never inserts
    if (!root.IsMap())
        return false;
    for (const auto& [section, key] : {std::pair{"redis", "password_file"}, std::pair{"logging", "pseudonym_key_file"}}) {
        const YAML::Node s = root[section];
        if (!s || !s.IsMap())
            continue;
        const YAML::Node v = s[key];
        if (v && v.IsScalar() && !v.Scalar().empty() && v.Scalar().front() == '/')
            return true;
    }
    return false;
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
    for (char ch : c.aliases.key_prefix) {
        const auto u = static_cast<unsigned char>(ch);
        FUZZ_CHECK(u > 0x20 && u != 0x7f, context(); print_escaped("key_prefix", c.aliases.key_prefix));
    }

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
    FUZZ_CHECK(static_cast<int>(c.logging.level) >= 0 && static_cast<int>(c.logging.level) <= 3, context());
    FUZZ_CHECK(c.redis.password.empty() && c.logging.pseudonym_key.empty(), context());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string yaml(reinterpret_cast<const char*>(data), size);
    if (names_absolute_secret(yaml))
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
