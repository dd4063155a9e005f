// libFuzzer harness: check_target (core/target_address.hpp), the validation
// of an alias's value as read from Redis -- untrusted bytes.
//
// Input: the value, byte for byte (binary, CR/LF, NUL, anything).
// Alias domains: a fixed set, so that InAliasDomain is reachable.
// Invariants when the value is judged valid (TargetProblem::None):
//   - no byte <= 0x20 or 0x7f, at most 254 octets, exactly one '@';
//   - ASCII only, non-empty local part of at most 64 octets, non-empty domain;
//   - the lower-cased domain is not an alias domain.
// When InAliasDomain: the lower-cased part after the last '@' is one.
// Always: describe() of the problem is non-empty and never echoes an '@'.

#include "core/target_address.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace impalemail;
using impalemail::fuzz::model_lower;
using impalemail::fuzz::print_escaped;

namespace {

const DomainSet& alias_domains()
{
    static const DomainSet set({"alias.example.org", "a.example", "xn--bcher-kva.example"});
    return set;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view value(reinterpret_cast<const char*>(data), size);
    const TargetProblem p = check_target(value, alias_domains());
    const auto context = [&] {
        print_escaped("value", value);
        std::fprintf(stderr, "  problem: %d\n", static_cast<int>(p));
    };

    FUZZ_CHECK(!describe(p).empty());
    FUZZ_CHECK(describe(p).find('@') == std::string_view::npos);

    const std::size_t last_at = value.rfind('@');
    if (p == TargetProblem::InAliasDomain) {
        FUZZ_CHECK(last_at != std::string_view::npos && alias_domains().contains(model_lower(value.substr(last_at + 1))),
                   context());
        return 0;
    }
    if (p != TargetProblem::None)
        return 0;

    FUZZ_CHECK(value.size() <= 254, context());
    std::size_t ats = 0;
    for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        FUZZ_CHECK(c > 0x20 && c != 0x7f, context());
        FUZZ_CHECK(c < 0x80, context());
        ats += (c == '@');
    }
    FUZZ_CHECK(ats == 1, context());
    FUZZ_CHECK(last_at > 0 && last_at <= 64 && last_at + 1 < value.size(), context());
    FUZZ_CHECK(!alias_domains().contains(model_lower(value.substr(last_at + 1))), context());
    return 0;
}
