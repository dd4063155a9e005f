#include "core/header_policy.hpp"

#include "core/ascii.hpp"

namespace impalemail {

StripPolicy::StripPolicy(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {}

const std::string* StripPolicy::matching_pattern(std::string_view header_name) const noexcept
{
    for (const auto& p : patterns_) {
        if (!p.empty() && p.back() == '*') {
            const std::size_t n = p.size() - 1;
            if (header_name.size() >= n && iequals(header_name.substr(0, n), std::string_view(p).substr(0, n)))
                return &p;
        } else if (iequals(header_name, p)) {
            return &p;
        }
    }
    return nullptr;
}

std::vector<std::string> StripPolicy::default_patterns()
{
    return {
        // Read-receipt requests: the user's client would answer from the real address.
        "Disposition-Notification-To", "Return-Receipt-To", "X-Confirm-Reading-To", "Read-Receipt-To",
        // The sender's trace: client IPs and relays.
        "Received", "X-Received", "X-Originating-IP", "X-Sender-IP",
        // Client fingerprints.
        "X-Mailer", "User-Agent", "X-MimeOLE",
        // Envelope headers written by earlier hops.
        "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-*",
    };
}

bool StripPolicy::is_valid_pattern(std::string_view pattern) noexcept
{
    if (!pattern.empty() && pattern.back() == '*')
        pattern.remove_suffix(1);
    if (pattern.empty())
        return false;
    for (char ch : pattern) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 33 || c > 126 || c == ':' || c == '*')
            return false;
    }
    return true;
}

bool HeaderTally::observe(std::string_view name, const StripPolicy& policy)
{
    if (!policy.matches(name))
        return false;
    std::string key = ascii_lowercase(name);
    const auto [it, inserted] = by_lowercase_name_.try_emplace(std::move(key), entries_.size());
    if (inserted)
        entries_.push_back(Entry{std::string(name), 0});
    ++entries_[it->second].count;
    ++total_;
    return true;
}

std::vector<HeaderDeletion> HeaderTally::deletions() const
{
    std::vector<HeaderDeletion> out;
    out.reserve(total_);
    for (const auto& e : entries_)
        for (int i = e.count; i >= 1; --i)
            out.push_back(HeaderDeletion{e.name, i});
    return out;
}

void HeaderTally::clear() noexcept
{
    entries_.clear();
    by_lowercase_name_.clear();
    total_ = 0;
}

} // namespace impalemail
