#pragma once
// Switching from root to the configured service user, and giving the milter
// socket its owner, group and mode.

#include <optional>
#include <string>
#include <sys/types.h>

namespace impalemail {

struct Identity {
    std::string user;
    uid_t uid;
    gid_t gid;
};

// The user (and group; empty: the user's primary group) by name.
std::optional<Identity> resolve_identity(const std::string& user, const std::string& group, std::string& error);

std::optional<gid_t> resolve_group(const std::string& group, std::string& error);

// chown(path, uid, gid) then chmod(path, mode); uid -1 keeps the owner.
bool set_socket_access(const std::string& path, uid_t uid, gid_t gid, mode_t mode, std::string& error);

// initgroups + setgid + setuid, then checks that root cannot be regained.
bool drop_privileges(const Identity& to, std::string& error);

} // namespace impalemail
