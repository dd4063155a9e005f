#include "log/logger.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

namespace impalemail::logging {

namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::atomic<bool> g_syslog{false}; // a reload may switch it while threads log
std::atomic<bool> g_stderr_is_journal{false};

const char* level_name(LogLevel l)
{
    switch (l) {
    case LogLevel::Error: return "error";
    case LogLevel::Warning: return "warning";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    }
    return "info";
}

int syslog_priority(LogLevel l)
{
    switch (l) {
    case LogLevel::Error: return LOG_ERR;
    case LogLevel::Warning: return LOG_WARNING;
    case LogLevel::Info: return LOG_INFO;
    case LogLevel::Debug: return LOG_DEBUG;
    }
    return LOG_INFO;
}

// Under systemd, stderr already goes to the journal (tagged with the unit's
// SyslogFacility); writing to syslog as well would log every line twice.
bool stderr_is_journal()
{
    const char* js = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (!js || fstat(STDERR_FILENO, &st) != 0)
        return false;
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

} // namespace

void configure(LogLevel level, bool use_syslog, const char* ident)
{
    g_level.store(static_cast<int>(level));
    g_stderr_is_journal = stderr_is_journal();
    if (use_syslog && !g_stderr_is_journal)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    g_syslog.store(use_syslog && !g_stderr_is_journal);
}

bool enabled(LogLevel level) noexcept
{
    return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

void write(LogLevel level, std::string_view message)
{
    if (!enabled(level))
        return;
    std::string line;
    line.reserve(message.size() + 48);
    if (!g_stderr_is_journal) {
        char stamp[32];
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        gmtime_r(&now, &tm);
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
        line += stamp;
    }
    line += level_name(level);
    line += ": ";
    line += message;
    line += '\n';
    // One write(2) per line keeps concurrent lines whole.
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    if (g_syslog.load(std::memory_order_relaxed))
        syslog(syslog_priority(level), "%s: %.*s", level_name(level), static_cast<int>(message.size()), message.data());
}

} // namespace impalemail::logging
