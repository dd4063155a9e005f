#pragma once
// The validated configuration, as plain values. Built by config_loader from
// YAML; nothing here depends on the file format.

#include "core/alias_policy.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace impalemail {

struct MilterSettings {
    // libmilter syntax: unix:PATH | local:PATH | inet:PORT@HOST | inet6:PORT@HOST
    std::string socket = "unix:/var/spool/postfix/impalemail/milter.sock";
    // How long SIGTERM waits for transactions in flight.
    std::chrono::seconds shutdown_timeout{15};
    // When started as root: the account to switch to once the socket is open
    // (group empty: the user's primary group). Required when run as root.
    std::string user;
    std::string group;
    // Unix sockets only. Group empty: the milter's own group.
    unsigned socket_mode = 0660;
    std::string socket_group;
};

struct RedisEndpoint {
    enum class Transport { Tcp, Unix };
    Transport transport = Transport::Tcp;
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string path; // Unix socket

    std::string describe() const
    {
        if (transport == Transport::Unix)
            return "unix:" + path;
        const bool v6 = host.find(':') != std::string::npos;
        return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    }
    bool operator==(const RedisEndpoint& o) const
    {
        return transport == o.transport && host == o.host && port == o.port && path == o.path;
    }
};

// Redis Sentinel: the primary is asked of these sentinels, not configured.
struct SentinelSettings {
    std::string master; // the name the sentinels monitor
    std::vector<RedisEndpoint> addresses;
    std::string username;
    std::string password; // read from password_file
};

struct RedisSettings {
    using Transport = RedisEndpoint::Transport;
    std::string address = "tcp://127.0.0.1:6379"; // as written, for messages
    Transport transport = Transport::Tcp;
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string path; // Unix socket
    std::optional<SentinelSettings> sentinel; // set: address is not used
    // Per-alias statistics live in the hash <stats_prefix><alias>; empty: off.
    std::string stats_prefix = "stats:";

    RedisEndpoint endpoint() const { return RedisEndpoint{transport, host, port, path}; }
    std::chrono::milliseconds timeout{250};
    int database = 0;
    std::string username; // ACL user; empty: the default user
    std::string password; // read from password_file, never from the YAML
};

enum class LogLevel { Error = 0, Warning = 1, Info = 2, Debug = 3 };

struct LogSettings {
    LogLevel level = LogLevel::Info;
    bool syslog = true;
    // Secret for the HMAC pseudonyms of mailbox addresses; empty: a random
    // key per process (pseudonyms then change at each start).
    std::string pseudonym_key;
    bool show_addresses = false; // debugging only: log mailboxes in clear
};

struct MetricsSettings {
    std::string listen; // HOST:PORT of the Prometheus endpoint; empty: none
};

struct Config {
    MilterSettings milter;
    MetricsSettings metrics;
    RedisSettings redis;
    AliasPolicy aliases;
    LogSettings logging;
};

} // namespace impalemail
