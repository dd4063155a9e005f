#include "config/config_loader.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace impalemail;

namespace {

const char* kMinimal = "aliases:\n  domains: [alias.example.org]\n";

bool has_error(const ConfigLoad& l, int line, int column, const std::string& needle)
{
    for (const auto& e : l.errors)
        if (e.line == line && e.column == column && e.message.find(needle) != std::string::npos)
            return true;
    return false;
}

std::string dump(const ConfigLoad& l)
{
    std::string s;
    for (const auto& e : l.errors)
        s += format_error("cfg", e) + "\n";
    return s;
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/impalemail-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir()
    {
        for (const char* f : {"/secret", "/short", "/empty", "/big", "/impalemail.yaml"})
            std::remove((path + f).c_str());
        rmdir(path.c_str());
    }
    void write(const std::string& name, const std::string& content) const
    {
        std::ofstream(path + "/" + name) << content;
    }
};

} // namespace

TEST_CASE("a minimal config gets documented defaults")
{
    const ConfigLoad l = load_config_text(kMinimal, "/");
    INFO(dump(l));
    REQUIRE(l.config);
    const Config& c = *l.config;
    CHECK(c.milter.socket == "unix:/var/spool/postfix/impalemail/milter.sock");
    CHECK(c.redis.transport == RedisSettings::Transport::Tcp);
    CHECK(c.redis.host == "127.0.0.1");
    CHECK(c.redis.port == 6379);
    CHECK(c.redis.timeout.count() == 250);
    CHECK(c.aliases.key_prefix == "alias:");
    CHECK(c.aliases.domains.contains("alias.example.org"));
    CHECK(c.aliases.strip.patterns() == StripPolicy::default_patterns());
    CHECK(c.logging.level == LogLevel::Info);
    CHECK(c.logging.syslog);
    CHECK_FALSE(c.logging.show_addresses);
}

TEST_CASE("the issue's example config loads")
{
    const char* yaml = R"(milter:
  socket: unix:/var/spool/postfix/impalemail/milter.sock
redis:
  address: unix:/run/redis/redis.sock
  key_prefix: "alias:"
  timeout_ms: 250
aliases:
  domains: [Alias.Example.org.]
headers:
  strip: [Received, X-Originating-IP]
)";
    const ConfigLoad l = load_config_text(yaml, "/");
    INFO(dump(l));
    REQUIRE(l.config);
    CHECK(l.config->redis.transport == RedisSettings::Transport::Unix);
    CHECK(l.config->redis.path == "/run/redis/redis.sock");
    CHECK(l.config->aliases.domains.contains("alias.example.org"));
    CHECK(l.config->aliases.strip.patterns() == std::vector<std::string>{"Received", "X-Originating-IP"});
}

TEST_CASE("every error is reported with its line and column")
{
    const char* yaml = R"(milter:
  socket: tcp:25
  sockt: x
redis:
  address: redis.example:6379
  timeout_ms: 0
  database: many
aliases:
  domains: [alias.example.org, "bad domain", alias.example.org]
headers:
  strip: ["X Mailer", Received]
logging:
  level: loud
  syslog: maybe
extra: 1
)";
    const ConfigLoad l = load_config_text(yaml, "/");
    INFO(dump(l));
    CHECK_FALSE(l.config);
    CHECK(has_error(l, 2, 11, "milter.socket"));
    CHECK(has_error(l, 3, 3, "unknown key 'sockt' in 'milter'"));
    CHECK(has_error(l, 5, 12, "redis.address"));
    CHECK(has_error(l, 6, 15, "between 1 and 60000"));
    CHECK(has_error(l, 7, 13, "must be an integer"));
    CHECK(has_error(l, 9, 32, "not a valid domain"));
    CHECK(has_error(l, 9, 46, "listed twice"));
    CHECK(has_error(l, 11, 11, "not a header name"));
    CHECK(has_error(l, 13, 10, "logging.level"));
    CHECK(has_error(l, 14, 11, "true or false"));
    CHECK(has_error(l, 15, 1, "unknown key 'extra'"));
    CHECK(l.errors.size() == 11);
    CHECK(format_error("f.yaml", l.errors.front()) == "f.yaml:2:11: error: " + l.errors.front().message);
}

TEST_CASE("alias domains are required")
{
    CHECK_FALSE(load_config_text("milter:\n  socket: inet:8890@127.0.0.1\n", "/").config);
    CHECK_FALSE(load_config_text("aliases:\n  domains: []\n", "/").config);
    CHECK_FALSE(load_config_text("aliases:\n", "/").config);
    CHECK_FALSE(load_config_text("aliases:\n  domains: alias.example.org\n", "/").config);
}

TEST_CASE("YAML syntax errors carry a position")
{
    const ConfigLoad l = load_config_text("aliases:\n  domains: [a.example\n", "/");
    REQUIRE(l.errors.size() == 1);
    CHECK(l.errors[0].line >= 2);
    CHECK_FALSE(load_config_text("", "/").config);
    CHECK_FALSE(load_config_text("- a\n- b\n", "/").config);
}

TEST_CASE("milter and redis addresses in every accepted form")
{
    for (const char* s : {"unix:/run/m.sock", "local:/run/m.sock", "inet:8890", "inet:8890@127.0.0.1",
                          "inet6:8890@::1", "inet:8890@localhost"}) {
        INFO(s);
        CHECK(load_config_text(std::string("milter:\n  socket: \"") + s + "\"\n" + kMinimal, "/").config);
    }
    for (const char* s : {"unix:relative.sock", "inet:0@127.0.0.1", "inet:70000", "inet:@127.0.0.1", "/run/m.sock"}) {
        INFO(s);
        CHECK_FALSE(load_config_text(std::string("milter:\n  socket: \"") + s + "\"\n" + kMinimal, "/").config);
    }
    const auto v6 = load_config_text(std::string("redis:\n  address: \"tcp://[::1]:6380\"\n") + kMinimal, "/");
    REQUIRE(v6.config);
    CHECK(v6.config->redis.host == "::1");
    CHECK(v6.config->redis.port == 6380);
    for (const char* s : {"tcp://::1:6379", "tcp://host", "tcp://host:", "redis://host:6379", "unix:"}) {
        INFO(s);
        CHECK_FALSE(load_config_text(std::string("redis:\n  address: \"") + s + "\"\n" + kMinimal, "/").config);
    }
}

TEST_CASE("the Redis password and pseudonym key come from files")
{
    TempDir dir;
    dir.write("secret", "s3cret-of-some-length\n");
    dir.write("short", "tooshort");
    dir.write("empty", "\n");
    const std::string yaml = std::string(kMinimal) +
                             "redis:\n  username: impalemail\n  password_file: secret\n"
                             "logging:\n  pseudonym_key_file: " + dir.path + "/secret\n";
    const ConfigLoad ok = load_config_text(yaml, dir.path);
    INFO(dump(ok));
    REQUIRE(ok.config);
    CHECK(ok.config->redis.username == "impalemail");
    CHECK(ok.config->redis.password == "s3cret-of-some-length");
    CHECK(ok.config->logging.pseudonym_key == "s3cret-of-some-length");

    const ConfigLoad bad = load_config_text(std::string(kMinimal) +
                                                "redis:\n  username: u\n  password_file: missing\n"
                                                "logging:\n  pseudonym_key_file: short\n",
                                            dir.path);
    INFO(dump(bad));
    CHECK(has_error(bad, 5, 18, "cannot read"));
    CHECK(has_error(bad, 7, 23, "at least 16 bytes"));
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  password_file: empty\n", dir.path).config);
    // Not a regular file, or far too big for a secret: refused without reading it.
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "logging:\n  pseudonym_key_file: /dev/urandom\n", "/").config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  password_file: /etc\n", "/").config);
    dir.write("big", std::string(5000, 'k'));
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  password_file: big\n", dir.path).config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  username: u\n", dir.path).config);
}

TEST_CASE("a config file is read from disk, errors name the file")
{
    TempDir dir;
    dir.write("impalemail.yaml", kMinimal);
    CHECK(load_config_file(dir.path + "/impalemail.yaml").config);
    const ConfigLoad missing = load_config_file(dir.path + "/nope.yaml");
    REQUIRE(missing.errors.size() == 1);
    CHECK(format_error("x.yaml", missing.errors[0]) == "x.yaml: error: cannot open config file");
}

TEST_CASE("an empty strip list strips nothing, omitting it keeps the defaults")
{
    const auto empty = load_config_text(std::string(kMinimal) + "headers:\n  strip: []\n", "/");
    REQUIRE(empty.config);
    CHECK(empty.config->aliases.strip.patterns().empty());
    const auto omitted = load_config_text(std::string(kMinimal) + "headers:\n", "/");
    REQUIRE(omitted.config);
    CHECK(omitted.config->aliases.strip.patterns() == StripPolicy::default_patterns());
}

TEST_CASE("service account and socket access settings")
{
    const auto ok = load_config_text(std::string(kMinimal) +
                                         "milter:\n  user: impalemail\n  group: impalemail\n"
                                         "  socket_mode: \"0640\"\n  socket_group: postfix\n",
                                     "/");
    REQUIRE(ok.config);
    CHECK(ok.config->milter.user == "impalemail");
    CHECK(ok.config->milter.socket_mode == 0640);
    CHECK(ok.config->milter.socket_group == "postfix");
    CHECK(load_config_text(kMinimal, "/").config->milter.socket_mode == 0660);
    // Unquoted, YAML would read 0660 as a number; the text is what counts.
    CHECK(load_config_text(std::string(kMinimal) + "milter:\n  socket_mode: 0660\n", "/").config->milter.socket_mode ==
          0660);
    for (const char* bad : {"0666", "0777", "0o660", "660x", "10660", "\"\""}) {
        INFO(bad);
        CHECK_FALSE(load_config_text(std::string(kMinimal) + "milter:\n  socket_mode: " + bad + "\n", "/").config);
    }
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "milter:\n  user: \"bad user\"\n", "/").config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "milter:\n  group: -x\n", "/").config);
}

TEST_CASE("Redis Sentinel settings")
{
    TempDir dir;
    dir.write("secret", "sentinel-secret\n");
    const std::string yaml = std::string(kMinimal) +
                             "redis:\n  sentinel:\n    master: impalemail\n"
                             "    addresses: [tcp://10.0.0.1:26379, \"tcp://[::1]:26380\"]\n"
                             "    username: watcher\n    password_file: secret\n";
    const ConfigLoad l = load_config_text(yaml, dir.path);
    INFO(dump(l));
    REQUIRE(l.config);
    REQUIRE(l.config->redis.sentinel);
    const SentinelSettings& s = *l.config->redis.sentinel;
    CHECK(s.master == "impalemail");
    REQUIRE(s.addresses.size() == 2);
    CHECK(s.addresses[0].describe() == "tcp://10.0.0.1:26379");
    CHECK(s.addresses[1].describe() == "tcp://[::1]:26380");
    CHECK(s.username == "watcher");
    CHECK(s.password == "sentinel-secret");
    CHECK(l.config->redis.address == "sentinel:impalemail");
}

TEST_CASE("Sentinel and a fixed address are mutually exclusive, and Sentinel needs its fields")
{
    const ConfigLoad both = load_config_text(std::string(kMinimal) +
                                                 "redis:\n  address: tcp://127.0.0.1:6379\n  sentinel:\n"
                                                 "    master: m\n    addresses: [tcp://127.0.0.1:26379]\n",
                                             "/");
    INFO(dump(both));
    CHECK(has_error(both, 5, 3, "mutually exclusive"));
    const ConfigLoad empty = load_config_text(std::string(kMinimal) + "redis:\n  sentinel: {}\n", "/");
    CHECK_FALSE(empty.config);
    CHECK(empty.errors.size() == 2); // master and addresses
    CHECK_FALSE(load_config_text(std::string(kMinimal) +
                                     "redis:\n  sentinel:\n    master: m\n    addresses: [unix:/run/s.sock]\n",
                                 "/")
                    .config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  sentinel:\n    master: m\n    addresses: []\n", "/")
                    .config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) +
                                     "redis:\n  sentinel:\n    master: \"a b\"\n    addresses: [tcp://h:1]\n",
                                 "/")
                    .config);
}

TEST_CASE("metrics endpoint address")
{
    CHECK(load_config_text(kMinimal, "/").config->metrics.listen.empty());
    const auto ok = load_config_text(std::string(kMinimal) + "metrics:\n  listen: 127.0.0.1:9464\n", "/");
    REQUIRE(ok.config);
    CHECK(ok.config->metrics.listen == "127.0.0.1:9464");
    CHECK(load_config_text(std::string(kMinimal) + "metrics:\n  listen: \"[::1]:9464\"\n", "/").config);
    for (const char* bad : {"9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", ":9464", "a b:1"}) {
        INFO(bad);
        CHECK_FALSE(load_config_text(std::string(kMinimal) + "metrics:\n  listen: \"" + bad + "\"\n", "/").config);
    }
}

TEST_CASE("statistics prefix")
{
    CHECK(load_config_text(kMinimal, "/").config->redis.stats_prefix == "stats:");
    CHECK(load_config_text(std::string(kMinimal) + "redis:\n  stats_prefix: \"\"\n", "/").config->redis.stats_prefix.empty());
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  stats_prefix: \"alias:\"\n", "/").config);
    CHECK_FALSE(load_config_text(std::string(kMinimal) + "redis:\n  stats_prefix: \"a b\"\n", "/").config);
}
