#pragma once
// The alias store as the core sees it. "Not found" and "failed" are kept
// apart on purpose: one is a permanent 5xx, the other a retryable 4xx.

#include <string>

namespace impalemail {

struct StoreReply {
    enum class Status { Found, NotFound, Error };
    Status status;
    std::string value; // Found: the stored string; Error: what went wrong (for logs)

    static StoreReply found(std::string v) { return {Status::Found, std::move(v)}; }
    static StoreReply not_found() { return {Status::NotFound, {}}; }
    static StoreReply error(std::string why) { return {Status::Error, std::move(why)}; }
};

class AliasStore {
public:
    virtual ~AliasStore() = default;
    // Exactly one read of `key`; implementations never cache.
    virtual StoreReply get(const std::string& key) = 0;
};

} // namespace impalemail
