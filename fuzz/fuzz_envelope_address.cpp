// libFuzzer harness: parse_envelope_address (core/envelope_address.hpp), the
// parser of the RCPT TO argument an MTA hands to the milter.
//
// Input: the raw argv[0] bytes, e.g. "<Shop@Alias.Example.org> NOTIFY=NEVER".
// Invariants when the parse is ok():
//   - normalized() has no ASCII upper-case letter, no space or control byte
//     (<= 0x20, 0x7f), and at most 254 octets;
//   - local and domain are non-empty, the local part at most 64 octets;
//   - parsing "<" + normalized() + ">" is ok() again and yields the same
//     normalized form (the normal form is a fixed point).
// Always: describe() of the problem is non-empty.

#include "core/envelope_address.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace impalemail;
using impalemail::fuzz::print_escaped;

namespace {

const char* name_of(AddressProblem p)
{
    switch (p) {
    case AddressProblem::None: return "None";
    case AddressProblem::Unparseable: return "Unparseable";
    case AddressProblem::NullPath: return "NullPath";
    case AddressProblem::NoDomain: return "NoDomain";
    case AddressProblem::BadLocalPart: return "BadLocalPart";
    case AddressProblem::LocalPartTooLong: return "LocalPartTooLong";
    case AddressProblem::BadDomain: return "BadDomain";
    case AddressProblem::DomainTooLong: return "DomainTooLong";
    case AddressProblem::AddressTooLong: return "AddressTooLong";
    }
    return "?";
}

bool has_upper(std::string_view s)
{
    for (char c : s)
        if (c >= 'A' && c <= 'Z')
            return true;
    return false;
}

bool has_space_or_control(std::string_view s)
{
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    const EnvelopeAddress a = parse_envelope_address(raw);

    FUZZ_CHECK(!describe(a.problem).empty());
    if (!a.ok())
        return 0;

    const std::string n = a.normalized();
    const auto context = [&] {
        print_escaped("raw", raw);
        print_escaped("local", a.local);
        print_escaped("domain", a.domain);
        print_escaped("normalized", n);
    };
    FUZZ_CHECK(!a.local.empty() && !a.domain.empty(), context());
    FUZZ_CHECK(a.local.size() <= 64, context());
    FUZZ_CHECK(!has_upper(n), context());
    FUZZ_CHECK(!has_space_or_control(n), context());
    FUZZ_CHECK(n.size() <= 254, context());

    const std::string rewrapped = "<" + n + ">";
    const EnvelopeAddress again = parse_envelope_address(rewrapped);
    FUZZ_CHECK(again.ok() && again.normalized() == n, context();
               std::fprintf(stderr, "  reparse problem: %s\n", name_of(again.problem));
               print_escaped("reparsed", again.normalized()));
    return 0;
}
