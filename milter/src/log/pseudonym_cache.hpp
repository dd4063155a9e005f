#pragma once
// The pseudonyms of one transaction: an owner is logged at RCPT and again
// at the rewrite, and many aliases of one owner can share a message, but
// each mailbox is hashed once per transaction.

#include "log/pseudonymizer.hpp"

#include <string>
#include <string_view>
#include <unordered_map>

namespace impalemail {

class PseudonymCache {
public:
    explicit PseudonymCache(const Pseudonymizer& pseudonym) : pseudonym_(&pseudonym) {}

    const std::string& operator()(std::string_view address)
    {
        const auto [it, inserted] = known_.try_emplace(std::string(address));
        if (inserted)
            it->second = (*pseudonym_)(address);
        return it->second;
    }

    // Between transactions, so a long SMTP session does not accumulate them.
    void clear() noexcept { known_.clear(); }

private:
    const Pseudonymizer* pseudonym_;
    std::unordered_map<std::string, std::string> known_;
};

} // namespace impalemail
