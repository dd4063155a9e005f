// libFuzzer harness: StripPolicy and HeaderTally (core/header_policy.hpp).
//
// Input: text, split at '\n' (a final '\n' is not an extra line):
//   pattern lines        the strip list; the line "@default" stands for
//                        StripPolicy::default_patterns()
//   one empty line       separator (without it: patterns only)
//   header-name lines    the names of a message's headers, in order
// The policy is built from every pattern line, valid or not, since
// StripPolicy itself accepts any list; validity is checked separately.
//
// Invariants, each against a plain reference model written here:
//   - is_valid_pattern: non-empty after dropping one trailing '*', and every
//     byte printable ASCII (33..126) other than ':' and '*';
//   - matches(name): some pattern equals name ignoring ASCII case, or some
//     pattern "P*" has P as a case-insensitive prefix of name;
//     matching_pattern(name) points at the first such entry of patterns();
//   - observe(name) returns matches(name);
//   - deletions(): for each distinct matching name (ASCII case folded), in
//     order of first occurrence, spelled as first seen, indices count..1
//     strictly descending; total() == deletions().size(); every deleted
//     name matches the policy;
//   - clear() empties the tally, and a replay gives the same deletions.

#include "core/header_policy.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace impalemail;
using impalemail::fuzz::print_escaped;
using impalemail::fuzz::model_lower;

namespace {

bool model_valid(std::string_view p)
{
    if (!p.empty() && p.back() == '*')
        p.remove_suffix(1);
    if (p.empty())
        return false;
    for (char ch : p) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 33 || c > 126 || c == ':' || c == '*')
            return false;
    }
    return true;
}

// Index of the first pattern matching `name`, or folded.size(); `folded`:
// the patterns with ASCII case folded, computed once per input.
std::size_t model_first_match(const std::vector<std::string>& folded, std::string_view name)
{
    const std::string n = model_lower(name);
    for (std::size_t k = 0; k < folded.size(); ++k) {
        const std::string& p = folded[k];
        if (!p.empty() && p.back() == '*') {
            const std::string_view prefix = std::string_view(p).substr(0, p.size() - 1);
            if (n.size() >= prefix.size() && std::string_view(n).substr(0, prefix.size()) == prefix)
                return k;
        } else if (p == n) {
            return k;
        }
    }
    return folded.size();
}

std::vector<std::string_view> split_lines(std::string_view s)
{
    std::vector<std::string_view> out;
    while (!s.empty()) {
        const std::size_t nl = s.find('\n');
        out.push_back(s.substr(0, nl));
        if (nl == std::string_view::npos)
            break;
        s.remove_prefix(nl + 1);
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::vector<std::string_view> lines = split_lines(input);

    std::vector<std::string> patterns;
    std::vector<std::string_view> names;
    std::size_t i = 0;
    for (; i < lines.size() && !lines[i].empty(); ++i) {
        if (lines[i] == "@default") {
            for (auto& p : StripPolicy::default_patterns())
                patterns.push_back(std::move(p));
        } else {
            patterns.emplace_back(lines[i]);
        }
    }
    for (++i; i < lines.size(); ++i)
        names.push_back(lines[i]);

    for (const auto& p : patterns)
        FUZZ_CHECK(StripPolicy::is_valid_pattern(p) == model_valid(p), print_escaped("pattern", p));
    for (const auto& p : StripPolicy::default_patterns())
        FUZZ_CHECK(StripPolicy::is_valid_pattern(p), print_escaped("default pattern", p));

    const StripPolicy policy(patterns);
    std::vector<std::string> folded;
    for (const auto& p : patterns)
        folded.push_back(model_lower(p));
    FUZZ_CHECK(policy.patterns() == patterns);

    // The reference tally: per folded name, first spelling and count.
    struct Expected {
        std::string folded;
        std::string spelling;
        int count;
    };
    std::vector<Expected> model;
    HeaderTally tally;
    for (const auto name : names) {
        const bool m = policy.matches(name);
        const std::size_t expected_first = model_first_match(folded, name);
        FUZZ_CHECK(m == (expected_first < patterns.size()), print_escaped("name", name);
                   std::fprintf(stderr, "  matches() said %d\n", m));
        // matching_pattern(): the first matching pattern, by address in patterns().
        const std::string* first = policy.matching_pattern(name);
        FUZZ_CHECK(m ? first == &policy.patterns()[expected_first] : first == nullptr, print_escaped("name", name);
                   if (first) print_escaped("matching_pattern", *first));
        FUZZ_CHECK(tally.observe(name, policy) == m, print_escaped("name", name));
        if (!m)
            continue;
        const std::string f = model_lower(name);
        bool found = false;
        for (auto& e : model)
            if (e.folded == f) {
                ++e.count;
                found = true;
                break;
            }
        if (!found)
            model.push_back({f, std::string(name), 1});
    }

    const std::vector<HeaderDeletion> dels = tally.deletions();
    FUZZ_CHECK(tally.total() == dels.size(),
               std::fprintf(stderr, "  total %zu, deletions %zu\n", tally.total(), dels.size()));

    std::vector<HeaderDeletion> expected;
    for (const auto& e : model)
        for (int k = e.count; k >= 1; --k)
            expected.push_back({e.spelling, k});
    FUZZ_CHECK(dels == expected, std::fprintf(stderr, "  deletions differ from the model (%zu vs %zu)\n",
                                              dels.size(), expected.size()));

    // The stated invariants, checked directly on the output as well.
    for (std::size_t k = 0; k < dels.size(); ++k) {
        FUZZ_CHECK(dels[k].index >= 1);
        FUZZ_CHECK(policy.matches(dels[k].name), print_escaped("deleted name", dels[k].name));
        const bool run_continues = k + 1 < dels.size() && model_lower(dels[k + 1].name) == model_lower(dels[k].name);
        if (run_continues)
            FUZZ_CHECK(dels[k + 1].index == dels[k].index - 1);
        else
            FUZZ_CHECK(dels[k].index == 1, print_escaped("name", dels[k].name));
    }

    tally.clear();
    FUZZ_CHECK(tally.total() == 0 && tally.deletions().empty());
    for (const auto name : names)
        tally.observe(name, policy);
    FUZZ_CHECK(tally.deletions() == dels);
    return 0;
}
