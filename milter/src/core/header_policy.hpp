#pragma once
// Which headers to strip, and the bookkeeping that turns the headers seen in
// a message into milter header deletions.

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace impalemail {

// Header names to strip, matched case-insensitively. A pattern ending in '*'
// matches every name with that prefix ("X-Envelope-*").
class StripPolicy {
public:
    StripPolicy() = default;
    explicit StripPolicy(std::vector<std::string> patterns);

    bool matches(std::string_view header_name) const noexcept { return matching_pattern(header_name) != nullptr; }
    // The first pattern that matches, or nullptr.
    const std::string* matching_pattern(std::string_view header_name) const noexcept;
    const std::vector<std::string>& patterns() const noexcept { return patterns_; }

    // The list that applies when the config names none.
    static std::vector<std::string> default_patterns();
    // A field name (printable ASCII but ':'), optionally ending in '*'.
    static bool is_valid_pattern(std::string_view pattern) noexcept;

private:
    std::vector<std::string> patterns_;
};

// One smfi_chgheader(name, index, NULL) call; index counts from 1 among the
// headers of that name, case-insensitively, in message order.
struct HeaderDeletion {
    std::string name;
    int index;
    bool operator==(const HeaderDeletion& o) const { return index == o.index && name == o.name; }
};

// Counts the occurrences of each strippable header name in one message.
class HeaderTally {
public:
    // Counts `name` if the policy strips it; returns whether it did.
    bool observe(std::string_view name, const StripPolicy& policy);

    // Every counted occurrence, each name from its last index down to 1, so
    // that earlier deletions never shift the indices of later ones.
    std::vector<HeaderDeletion> deletions() const;

    std::size_t total() const noexcept { return total_; }
    void clear() noexcept;

private:
    struct Entry {
        std::string name; // spelling of the first occurrence
        int count;
    };
    std::vector<Entry> entries_;
    std::unordered_map<std::string, std::size_t> by_lowercase_name_;
    std::size_t total_ = 0;
};

} // namespace impalemail
