#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace impalemail {

// The configured alias domains, compared exactly (no subdomains) against a
// lower-cased domain. Deployments have a handful, so a scan beats hashing.
class DomainSet {
public:
    DomainSet() = default;
    explicit DomainSet(std::vector<std::string> lowercase_domains) : domains_(std::move(lowercase_domains)) {}

    bool contains(std::string_view lowercase_domain) const noexcept
    {
        for (const auto& d : domains_)
            if (d == lowercase_domain)
                return true;
        return false;
    }
    const std::vector<std::string>& list() const noexcept { return domains_; }

private:
    std::vector<std::string> domains_;
};

} // namespace impalemail
