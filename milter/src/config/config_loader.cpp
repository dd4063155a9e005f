#include "config/config_loader.hpp"

#include "core/ascii.hpp"
#include "core/mail_syntax.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <sstream>
#include <sys/stat.h>

namespace impalemail {

namespace {

// Passwords and keys are short; this also keeps /dev/urandom or a wrong
// path to a big file from being read into memory.
constexpr long kMaxSecretSize = 4096;

// Collects errors with their YAML positions while the tree is walked.
class Reader {
public:
    explicit Reader(std::string base_dir) : base_dir_(std::move(base_dir)) {}

    std::vector<ConfigError> errors;

    void error(const YAML::Node& at, std::string message)
    {
        const YAML::Mark m = at.Mark();
        errors.push_back({m.line + 1, m.column + 1, std::move(message)});
    }

    // A mapping whose keys must all be in `allowed`; null counts as empty.
    bool section(const YAML::Node& node, const std::string& name, std::initializer_list<const char*> allowed)
    {
        if (!node || node.IsNull())
            return false;
        if (!node.IsMap()) {
            error(node, "'" + name + "' must be a mapping");
            return false;
        }
        for (const auto& kv : node) {
            const std::string key = kv.first.Scalar();
            if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
                error(kv.first, "unknown key '" + key + "'" + (name.empty() ? "" : " in '" + name + "'"));
        }
        return true;
    }

    // The key node of `key` in `map`, for errors about the key itself.
    static YAML::Node key_node(const YAML::Node& map, const char* key)
    {
        for (const auto& kv : map)
            if (kv.first.Scalar() == key)
                return kv.first;
        return map;
    }

    bool scalar(const YAML::Node& n, const std::string& what, std::string& out)
    {
        if (!n.IsScalar()) {
            error(n, "'" + what + "' must be a string");
            return false;
        }
        out = n.Scalar();
        return true;
    }

    bool integer(const YAML::Node& n, const std::string& what, long min, long max, long& out)
    {
        long v = 0;
        if (!n.IsScalar() || !YAML::convert<long>::decode(n, v)) {
            error(n, "'" + what + "' must be an integer");
            return false;
        }
        if (v < min || v > max) {
            error(n, "'" + what + "' must be between " + std::to_string(min) + " and " + std::to_string(max));
            return false;
        }
        out = v;
        return true;
    }

    bool boolean(const YAML::Node& n, const std::string& what, bool& out)
    {
        if (!n.IsScalar() || !YAML::convert<bool>::decode(n, out)) {
            error(n, "'" + what + "' must be true or false");
            return false;
        }
        return true;
    }

    bool string_list(const YAML::Node& n, const std::string& what, std::vector<std::string>& out)
    {
        if (!n.IsSequence()) {
            error(n, "'" + what + "' must be a list");
            return false;
        }
        bool ok = true;
        for (const auto& item : n) {
            std::string s;
            if (scalar(item, what + " entry", s))
                out.push_back(std::move(s));
            else
                ok = false;
        }
        return ok;
    }

    // Contents of a secret file, without the trailing newline editors add.
    bool secret_file(const YAML::Node& n, const std::string& what, std::string& out)
    {
        std::string path;
        if (!scalar(n, what, path))
            return false;
        if (path.empty()) {
            error(n, "'" + what + "' must not be empty");
            return false;
        }
        if (path.front() != '/' && !base_dir_.empty())
            path = base_dir_ + "/" + path;
        struct stat st {};
        if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
            error(n, "cannot read " + what + " '" + path + "': not a regular file");
            return false;
        }
        if (st.st_size > kMaxSecretSize) {
            error(n, what + " '" + path + "' is larger than " + std::to_string(kMaxSecretSize) + " bytes");
            return false;
        }
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            error(n, "cannot read " + what + " '" + path + "'");
            return false;
        }
        out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
            out.pop_back();
        if (out.empty()) {
            error(n, what + " '" + path + "' is empty");
            return false;
        }
        return true;
    }

private:
    std::string base_dir_;
};

bool valid_port(const std::string& s, int& port)
{
    if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    port = std::stoi(s);
    return port >= 1 && port <= 65535;
}

bool valid_host(const std::string& h)
{
    if (h.empty())
        return false;
    return std::all_of(h.begin(), h.end(), [](char c) {
        return is_ascii_alnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':';
    });
}

bool valid_account_name(const std::string& s)
{
    return !s.empty() && s.size() <= 32 && s.front() != '-' &&
           std::all_of(s.begin(), s.end(), [](char c) {
               return is_ascii_alnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
           });
}

// Octal, at most 0777, and never writable by others: anyone who can connect
// can make the milter rewrite recipients.
bool parse_socket_mode(const std::string& s, unsigned& mode)
{
    if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '7'; }))
        return false;
    mode = static_cast<unsigned>(std::stoul(s, nullptr, 8));
    return mode <= 0777 && (mode & 0002) == 0;
}

// libmilter connection specs.
bool valid_milter_socket(const std::string& s)
{
    for (const char* unix_prefix : {"unix:", "local:"}) {
        const std::string p = unix_prefix;
        if (s.compare(0, p.size(), p) == 0)
            return s.size() > p.size() + 1 && s[p.size()] == '/';
    }
    for (const char* inet_prefix : {"inet:", "inet6:"}) {
        const std::string p = inet_prefix;
        if (s.compare(0, p.size(), p) == 0) {
            const std::string rest = s.substr(p.size());
            const std::size_t at = rest.find('@');
            int port = 0;
            if (!valid_port(rest.substr(0, at), port))
                return false;
            return at == std::string::npos || valid_host(rest.substr(at + 1));
        }
    }
    return false;
}

bool parse_redis_endpoint(const std::string& s, RedisEndpoint& r)
{
    if (s.rfind("unix:", 0) == 0) {
        r.transport = RedisEndpoint::Transport::Unix;
        r.path = s.substr(5);
        return r.path.size() > 1 && r.path.front() == '/';
    }
    if (s.rfind("tcp://", 0) != 0)
        return false;
    std::string rest = s.substr(6);
    std::string host;
    std::string port;
    if (!rest.empty() && rest.front() == '[') {
        const std::size_t close = rest.find(']');
        if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
            return false;
        host = rest.substr(1, close - 1);
        port = rest.substr(close + 2);
    } else {
        const std::size_t colon = rest.rfind(':');
        if (colon == std::string::npos)
            return false;
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (host.find(':') != std::string::npos)
            return false; // bare IPv6 needs brackets
    }
    r.transport = RedisEndpoint::Transport::Tcp;
    r.host = host;
    return valid_host(host) && valid_port(port, r.port);
}

// username (optional) and password_file of `section`; a user needs a password.
void read_credentials(Reader& rd, const YAML::Node& n, const std::string& section, std::string& username,
                      std::string& password)
{
    const auto user = n["username"];
    if (user)
        rd.scalar(user, section + ".username", username);
    if (const auto pf = n["password_file"])
        rd.secret_file(pf, section + ".password_file", password);
    else if (user)
        rd.error(user, "'" + section + ".username' needs '" + section + ".password_file'");
}

void read_sentinel(Reader& rd, const YAML::Node& n, RedisSettings& r)
{
    if (!rd.section(n, "redis.sentinel", {"master", "addresses", "username", "password_file"})) {
        if (n && n.IsNull())
            rd.error(n, "'redis.sentinel' needs 'master' and 'addresses'");
        return;
    }
    SentinelSettings s;
    if (const auto m = n["master"]) {
        if (rd.scalar(m, "redis.sentinel.master", s.master) &&
            (s.master.empty() || std::any_of(s.master.begin(), s.master.end(), [](char c) {
                 return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
             })))
            rd.error(m, "'redis.sentinel.master' must be a name without spaces");
    } else {
        rd.error(n, "'redis.sentinel.master' is required");
    }
    if (const auto a = n["addresses"]) {
        std::vector<std::string> texts;
        if (rd.string_list(a, "redis.sentinel.addresses", texts)) {
            if (texts.empty())
                rd.error(a, "'redis.sentinel.addresses' must name at least one sentinel");
            std::size_t i = 0;
            for (const auto& item : a) {
                RedisEndpoint e;
                if (!parse_redis_endpoint(texts[i++], e) || e.transport != RedisEndpoint::Transport::Tcp)
                    rd.error(item, "sentinel address '" + item.Scalar() + "' must be tcp://HOST:PORT");
                else
                    s.addresses.push_back(e);
            }
        }
    } else {
        rd.error(n, "'redis.sentinel.addresses' is required");
    }
    read_credentials(rd, n, "redis.sentinel", s.username, s.password);
    r.sentinel = std::move(s);
}

void read_milter(Reader& rd, const YAML::Node& n, MilterSettings& m)
{
    if (!rd.section(n, "milter", {"socket", "shutdown_timeout_s", "user", "group", "socket_mode", "socket_group"}))
        return;
    for (auto [key, field] : {std::pair{"user", &m.user}, {"group", &m.group}, {"socket_group", &m.socket_group}}) {
        const auto v = n[key];
        if (v && rd.scalar(v, std::string("milter.") + key, *field) && !valid_account_name(*field))
            rd.error(v, std::string("'milter.") + key + "' is not a valid user or group name");
    }
    if (const auto mode = n["socket_mode"]) {
        // Read as text: YAML would take 0660 for decimal 660.
        std::string text;
        if (rd.scalar(mode, "milter.socket_mode", text) && !parse_socket_mode(text, m.socket_mode))
            rd.error(mode, "'milter.socket_mode' must be an octal mode such as 0660, without write access for others");
    }
    if (const auto s = n["socket"]) {
        if (rd.scalar(s, "milter.socket", m.socket) && !valid_milter_socket(m.socket))
            rd.error(s, "'milter.socket' must be unix:/PATH, local:/PATH, inet:PORT@HOST or inet6:PORT@HOST");
    }
    long v = 0;
    if (const auto t = n["shutdown_timeout_s"]; t && rd.integer(t, "milter.shutdown_timeout_s", 0, 3600, v))
        m.shutdown_timeout = std::chrono::seconds(v);
}

void read_redis(Reader& rd, const YAML::Node& n, RedisSettings& r, std::string& key_prefix)
{
    if (!rd.section(n, "redis",
                    {"address", "sentinel", "key_prefix", "stats_prefix", "timeout_ms", "database", "username",
                     "password_file"}))
        return;
    const auto a = n["address"];
    if (a) {
        RedisEndpoint e;
        if (rd.scalar(a, "redis.address", r.address) && !parse_redis_endpoint(r.address, e))
            rd.error(a, "'redis.address' must be unix:/PATH or tcp://HOST:PORT");
        r.transport = e.transport;
        r.host = e.host;
        r.port = e.port;
        r.path = e.path;
    }
    if (const auto s = n["sentinel"]) {
        if (a)
            rd.error(Reader::key_node(n, "sentinel"), "'redis.address' and 'redis.sentinel' are mutually exclusive: "
                        "with Sentinel, the primary's address comes from the sentinels");
        read_sentinel(rd, s, r);
        if (r.sentinel)
            r.address = "sentinel:" + r.sentinel->master;
    }
    if (const auto p = n["key_prefix"]) {
        if (rd.scalar(p, "redis.key_prefix", key_prefix) &&
            std::any_of(key_prefix.begin(), key_prefix.end(),
                        [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
            rd.error(p, "'redis.key_prefix' must not contain whitespace or control characters");
    }
    if (const auto p = n["stats_prefix"]) {
        if (rd.scalar(p, "redis.stats_prefix", r.stats_prefix) &&
            std::any_of(r.stats_prefix.begin(), r.stats_prefix.end(),
                        [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
            rd.error(p, "'redis.stats_prefix' must not contain whitespace or control characters");
    }
    if (!r.stats_prefix.empty() && r.stats_prefix == key_prefix)
        rd.error(n["stats_prefix"] ? n["stats_prefix"] : n, "'redis.stats_prefix' must differ from 'redis.key_prefix'");
    long v = 0;
    if (const auto t = n["timeout_ms"]; t && rd.integer(t, "redis.timeout_ms", 1, 60000, v))
        r.timeout = std::chrono::milliseconds(v);
    if (const auto d = n["database"]; d && rd.integer(d, "redis.database", 0, 65535, v))
        r.database = static_cast<int>(v);
    read_credentials(rd, n, "redis", r.username, r.password);
}

void read_aliases(Reader& rd, const YAML::Node& root, AliasPolicy& policy)
{
    const auto n = root["aliases"];
    if (!n) {
        rd.errors.push_back({0, 0, "missing section 'aliases' (aliases.domains is required)"});
        return;
    }
    if (!rd.section(n, "aliases", {"domains"})) {
        if (n.IsNull())
            rd.error(n, "'aliases.domains' is required");
        return;
    }
    const auto d = n["domains"];
    if (!d) {
        rd.error(n, "'aliases.domains' is required");
        return;
    }
    std::vector<std::string> raw;
    if (!rd.string_list(d, "aliases.domains", raw))
        return;
    if (raw.empty())
        rd.error(d, "'aliases.domains' must name at least one domain");
    std::vector<std::string> domains;
    std::size_t i = 0;
    for (const auto& item : d) {
        std::string dom = ascii_lowercase(raw[i++]);
        if (!dom.empty() && dom.back() == '.')
            dom.pop_back();
        if (!is_domain_name(dom, Charset::Ascii) || dom.size() > 253)
            rd.error(item, "'" + item.Scalar() + "' is not a valid domain name (use the ASCII/punycode form)");
        else if (std::find(domains.begin(), domains.end(), dom) != domains.end())
            rd.error(item, "domain '" + dom + "' is listed twice");
        else
            domains.push_back(dom);
    }
    policy.domains = DomainSet(std::move(domains));
}

void read_headers(Reader& rd, const YAML::Node& n, AliasPolicy& policy)
{
    if (!rd.section(n, "headers", {"strip"}))
        return;
    const auto s = n["strip"];
    if (!s)
        return;
    std::vector<std::string> names;
    if (!rd.string_list(s, "headers.strip", names))
        return;
    std::size_t i = 0;
    for (const auto& item : s)
        if (!StripPolicy::is_valid_pattern(names[i++]))
            rd.error(item, "'" + item.Scalar() + "' is not a header name (optionally ending in '*')");
    policy.strip = StripPolicy(std::move(names));
}

void read_metrics(Reader& rd, const YAML::Node& n, MetricsSettings& m)
{
    if (!rd.section(n, "metrics", {"listen"}))
        return;
    const auto l = n["listen"];
    if (!l || !rd.scalar(l, "metrics.listen", m.listen))
        return;
    // HOST:PORT or [V6]:PORT, the form the HTTP server binds.
    const std::size_t colon = m.listen.rfind(':');
    int port = 0;
    std::string host = colon == std::string::npos ? "" : m.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (colon == std::string::npos || !valid_host(host) || !valid_port(m.listen.substr(colon + 1), port))
        rd.error(l, "'metrics.listen' must be HOST:PORT, e.g. 127.0.0.1:9464");
}

void read_logging(Reader& rd, const YAML::Node& n, LogSettings& l)
{
    if (!rd.section(n, "logging", {"level", "syslog", "pseudonym_key_file", "show_addresses"}))
        return;
    if (const auto lv = n["level"]) {
        std::string s;
        if (rd.scalar(lv, "logging.level", s)) {
            if (s == "error")
                l.level = LogLevel::Error;
            else if (s == "warning")
                l.level = LogLevel::Warning;
            else if (s == "info")
                l.level = LogLevel::Info;
            else if (s == "debug")
                l.level = LogLevel::Debug;
            else
                rd.error(lv, "'logging.level' must be one of error, warning, info, debug");
        }
    }
    if (const auto s = n["syslog"])
        rd.boolean(s, "logging.syslog", l.syslog);
    if (const auto k = n["pseudonym_key_file"]; k && rd.secret_file(k, "logging.pseudonym_key_file", l.pseudonym_key) &&
                                                l.pseudonym_key.size() < 16)
        rd.error(k, "'logging.pseudonym_key_file' must hold at least 16 bytes of secret");
    if (const auto s = n["show_addresses"])
        rd.boolean(s, "logging.show_addresses", l.show_addresses);
}

std::string directory_of(const std::string& path)
{
    const std::size_t slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

ConfigLoad load_config_text(std::string_view yaml, const std::string& base_dir)
{
    ConfigLoad result;
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
        result.errors.push_back({e.mark.line + 1, e.mark.column + 1, e.msg});
        return result;
    }
    Reader rd(base_dir);
    Config cfg;
    if (!root || root.IsNull()) {
        result.errors.push_back({0, 0, "the file is empty"});
        return result;
    }
    if (!rd.section(root, "", {"milter", "redis", "aliases", "headers", "logging", "metrics"})) {
        result.errors = std::move(rd.errors);
        return result;
    }
    read_milter(rd, root["milter"], cfg.milter);
    read_redis(rd, root["redis"], cfg.redis, cfg.aliases.key_prefix);
    read_aliases(rd, root, cfg.aliases);
    read_headers(rd, root["headers"], cfg.aliases);
    read_logging(rd, root["logging"], cfg.logging);
    read_metrics(rd, root["metrics"], cfg.metrics);
    result.errors = std::move(rd.errors);
    std::stable_sort(result.errors.begin(), result.errors.end(), [](const ConfigError& a, const ConfigError& b) {
        return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
    if (result.errors.empty())
        result.config = std::move(cfg);
    return result;
}

ConfigLoad load_config_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        ConfigLoad result;
        result.errors.push_back({0, 0, "cannot open config file"});
        return result;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    return load_config_text(buf.str(), directory_of(path));
}

std::string format_error(const std::string& file, const ConfigError& error)
{
    if (error.line == 0)
        return file + ": error: " + error.message;
    return file + ":" + std::to_string(error.line) + ":" + std::to_string(error.column) + ": error: " + error.message;
}

} // namespace impalemail
