#include "os/privileges.hpp"

#include <cerrno>
#include <cstring>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace impalemail {

namespace {

std::string errno_text() { return std::strerror(errno); }

} // namespace

std::optional<gid_t> resolve_group(const std::string& group, std::string& error)
{
    std::vector<char> buf(16384);
    struct group gr {};
    struct group* found = nullptr;
    int rc;
    while ((rc = getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 22))
        buf.resize(buf.size() * 4); // groups with many members
    if (rc != 0 || !found) {
        error = "unknown group '" + group + "'";
        return std::nullopt;
    }
    return found->gr_gid;
}

std::optional<Identity> resolve_identity(const std::string& user, const std::string& group, std::string& error)
{
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) {
        error = "unknown user '" + user + "'";
        return std::nullopt;
    }
    Identity id{found->pw_name, found->pw_uid, found->pw_gid};
    if (!group.empty()) {
        const auto gid = resolve_group(group, error);
        if (!gid)
            return std::nullopt;
        id.gid = *gid;
    }
    return id;
}

bool set_socket_access(const std::string& path, uid_t uid, gid_t gid, mode_t mode, std::string& error)
{
    if (chown(path.c_str(), uid, gid) != 0) {
        error = "cannot give " + path + " group " + std::to_string(gid) + ": " + errno_text();
        return false;
    }
    if (chmod(path.c_str(), mode) != 0) {
        error = "cannot set the mode of " + path + ": " + errno_text();
        return false;
    }
    return true;
}

bool drop_privileges(const Identity& to, std::string& error)
{
    // Supplementary groups matter: membership in "redis" may be what grants
    // access to Redis's Unix socket.
    if (initgroups(to.user.c_str(), to.gid) != 0 || setgid(to.gid) != 0 || setuid(to.uid) != 0) {
        error = "cannot switch to user " + to.user + ": " + errno_text();
        return false;
    }
    if (to.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        error = "could regain root after switching to " + to.user;
        return false;
    }
    return true;
}

} // namespace impalemail
