#include "adapter/milter_adapter.hpp"

#include "adapter/milter_callbacks.hpp"
#include "config/config_loader.hpp"
#include "log/logger.hpp"
#include "metrics/metrics.hpp"
#include "os/privileges.hpp"

#include <libmilter/mfapi.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace impalemail {

namespace {

// The path of a unix:/local: socket spec; empty for inet sockets.
std::string unix_socket_path(const std::string& spec)
{
    for (const char* p : {"unix:", "local:"})
        if (spec.rfind(p, 0) == 0)
            return spec.substr(std::char_traits<char>::length(p));
    return {};
}

bool socket_dir_exists(const std::string& path)
{
    const std::string dir = path.substr(0, path.rfind('/'));
    struct stat st {};
    if (!dir.empty() && (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
        logging::error("socket directory " + dir + " does not exist");
        return false;
    }
    return true;
}

// Who the milter runs as once the socket is open: nullopt (after logging
// why) if the configuration does not allow it to run.
bool plan_identity(const MilterSettings& m, std::optional<Identity>& target)
{
    std::string error;
    if (geteuid() == 0) {
        if (m.user.empty()) {
            logging::error("refusing to run as root: set milter.user to the account to switch to "
                           "(or run as that user, as the systemd unit does)");
            return false;
        }
        target = resolve_identity(m.user, m.group, error);
    } else if (!m.user.empty()) {
        const auto wanted = resolve_identity(m.user, m.group, error);
        if (wanted && wanted->uid != geteuid()) {
            logging::error("milter.user is " + m.user + " but the milter was not started as root or as that user");
            return false;
        }
    }
    if (!error.empty()) {
        logging::error(error);
        return false;
    }
    return true;
}

bool secure_socket(const MilterSettings& m, const std::string& path, const std::optional<Identity>& target)
{
    std::string error;
    gid_t gid = target ? target->gid : getegid();
    if (!m.socket_group.empty()) {
        const auto g = resolve_group(m.socket_group, error);
        if (!g) {
            logging::error(error);
            return false;
        }
        gid = *g;
    }
    const uid_t uid = target ? target->uid : static_cast<uid_t>(-1);
    if (!set_socket_access(path, uid, gid, m.socket_mode, error)) {
        logging::error(error);
        return false;
    }
    return true;
}

// Removes the socket file only if it is still ours (a successor may already
// listen at the same path).
void unlink_own_socket(const std::string& path, ino_t inode)
{
    struct stat st {};
    if (!path.empty() && stat(path.c_str(), &st) == 0 && st.st_ino == inode)
        unlink(path.c_str());
}

// Settings bound when the milter starts; a reload keeps the running ones.
void keep_startup_settings(const MilterSettings& running, MilterSettings& next)
{
    const std::pair<const char*, bool> changed[] = {
        {"milter.socket", running.socket != next.socket},
        {"milter.user", running.user != next.user},
        {"milter.group", running.group != next.group},
        {"milter.socket_mode", running.socket_mode != next.socket_mode},
        {"milter.socket_group", running.socket_group != next.socket_group},
    };
    for (const auto& [name, differs] : changed)
        if (differs)
            logging::warning(std::string("reload: ") + name + " changed; it takes effect at the next restart");
    const auto shutdown_timeout = next.shutdown_timeout;
    next = running;
    next.shutdown_timeout = shutdown_timeout;
}

// SIGUSR1: a new validated snapshot for new connections, or nothing at all.
std::shared_ptr<const Config> reload(const std::string& path, const std::shared_ptr<const Config>& running)
{
    ConfigLoad load = load_config_file(path);
    if (!load.config) {
        for (const auto& e : load.errors)
            logging::error("reload refused, the running configuration stays: " + format_error(path, e));
        return running;
    }
    keep_startup_settings(running->milter, load.config->milter);
    if (load.config->metrics.listen != running->metrics.listen) {
        logging::warning("reload: metrics.listen changed; it takes effect at the next restart");
        load.config->metrics = running->metrics;
    }
    auto next = std::make_shared<const Config>(std::move(*load.config));
    try {
        use_runtime(make_runtime(next));
    } catch (const std::exception& e) {
        logging::error(std::string("reload refused, the running configuration stays: ") + e.what());
        return running;
    }
    logging::configure(next->logging.level, next->logging.syslog, "impalemail-milter");
    logging::info("reloaded " + path + ": new connections use it, open ones finish on the one they started with");
    return next;
}

} // namespace

int run_milter(const std::string& config_path, std::shared_ptr<const Config> config)
{
    // Blocked in every thread created from here on (libmilter's, the metrics
    // server's), so that only the loop at the end of this function takes them.
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1})
        sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    const MilterSettings& m = config->milter;
    const std::string path = unix_socket_path(m.socket);
    std::optional<Identity> target;
    if ((!path.empty() && !socket_dir_exists(path)) || !plan_identity(m, target))
        return 1;

    std::unique_ptr<Metrics> metrics;
    if (!config->metrics.listen.empty()) {
        try {
            metrics = Metrics::serve(config->metrics.listen);
        } catch (const std::exception& e) {
            logging::error("cannot serve metrics on " + config->metrics.listen + ": " + e.what());
            return 1;
        }
    }
    if (smfi_setconn(const_cast<char*>(m.socket.c_str())) != MI_SUCCESS ||
        !register_callbacks(make_runtime(config), metrics.get())) {
        logging::error("cannot set up the milter on " + m.socket);
        return 1;
    }
    // Created owner-only; opened up to socket_mode once its group is right.
    const mode_t old_umask = umask(0177);
    const int opened = smfi_opensocket(true);
    umask(old_umask);
    if (opened != MI_SUCCESS) {
        logging::error("cannot open milter socket " + m.socket + " (in use, or no permission?)");
        return 1;
    }
    struct stat socket_stat {};
    if (!path.empty() && (stat(path.c_str(), &socket_stat) != 0 || !secure_socket(m, path, target)))
        return 1;
    if (target) {
        std::string error;
        if (!drop_privileges(*target, error)) {
            logging::error(error);
            return 1;
        }
    }

    std::string domains;
    for (const auto& d : config->aliases.domains.list())
        domains += (domains.empty() ? "" : ",") + d;
    logging::info("listening on " + m.socket + ", store " + config->redis.address + ", alias domains " + domains +
                  ", running as uid " + std::to_string(getuid()));

    // libmilter's own signal thread stops everything at once on SIGTERM and,
    // in Debian's worker-pool build, abandons the transactions in flight. So
    // this thread waits for the signals itself while smfi_main runs in
    // another: Linux hands a process-directed signal to the main thread first
    // whenever it is waiting for it, and libmilter's thread never sees one.
    std::atomic<bool> served{false};
    int rc = MI_FAILURE;
    std::thread server([&] {
        rc = smfi_main();
        served.store(true);
    });

    bool draining = false;
    bool stopping = false;
    std::chrono::steady_clock::time_point deadline;
    while (!served.load()) {
        const timespec tick{0, 100 * 1000 * 1000};
        const int sig = sigtimedwait(&signals, nullptr, &tick);
        if (stopping)
            continue;
        if (sig == SIGUSR1) {
            config = reload(config_path, config);
            continue;
        }
        if (sig == SIGINT || (sig > 0 && draining)) {
            logging::warning("stopping now, " + std::to_string(transactions_in_flight()) +
                             " transaction(s) unfinished; the MTA will tempfail them");
            stopping = true;
        } else if (sig > 0) {
            draining = true;
            begin_drain();
            unlink_own_socket(path, socket_stat.st_ino); // new connections now fail; the MTA tempfails them
            const auto grace = config->milter.shutdown_timeout;
            deadline = std::chrono::steady_clock::now() + grace;
            logging::info("stopping: " + std::to_string(transactions_in_flight()) +
                          " transaction(s) in flight, waiting up to " + std::to_string(grace.count()) +
                          " s (signal again to stop now)");
        }
        if (draining && !stopping) {
            if (transactions_in_flight() == 0) {
                stopping = true;
            } else if (std::chrono::steady_clock::now() >= deadline) {
                logging::warning("stopping with " + std::to_string(transactions_in_flight()) +
                                 " transaction(s) unfinished; the MTA will tempfail them");
                stopping = true;
            }
        }
        if (stopping)
            smfi_stop();
    }
    server.join();
    logging::info("stopped");
    return rc == MI_SUCCESS ? 0 : 1;
}

} // namespace impalemail
