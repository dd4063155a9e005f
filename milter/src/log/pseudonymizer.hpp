#pragma once
// Turns mailbox addresses into stable, keyed pseudonyms for logs, so an
// admin can follow one mailbox through the log without the log revealing it.

#include <cstdint>
#include <string>
#include <string_view>

namespace impalemail {

class Pseudonymizer {
public:
    // An empty key draws a random one (pseudonyms then last one process).
    Pseudonymizer(std::string key, bool show_clear);

    // "h:" and 16 hex digits of HMAC-SHA256(key, lower-cased address), or
    // the address itself when clear addresses were asked for.
    std::string operator()(std::string_view address) const;

private:
    std::string key_;
    bool show_clear_;
    std::uint64_t generation_; // tells per-thread keyed contexts apart
};

} // namespace impalemail
