#pragma once
// Parsing of the address argument an MTA passes to the RCPT callback
// (argv[0], e.g. "<Shop-7k2@Alias.Example>"). The raw string itself is kept by
// the caller: deleting a recipient needs it byte for byte.

#include <string>
#include <string_view>

namespace impalemail {

enum class AddressProblem {
    None,
    Unparseable,      // unbalanced or nested brackets, stray characters
    NullPath,         // "<>"
    NoDomain,         // a bare local part such as "postmaster"
    BadLocalPart,     // not a dot-atom, bad quoting, invalid UTF-8
    LocalPartTooLong, // more than 64 octets
    BadDomain,
    DomainTooLong,    // more than 255 octets
    AddressTooLong,   // more than 254 octets in all
};

struct EnvelopeAddress {
    AddressProblem problem = AddressProblem::None;
    // Lower-cased (ASCII only), unquoted where quoting was unnecessary. Set
    // whenever the parser got that far, even if the other half is bad, so a
    // caller can tell which domain a malformed address was meant for.
    std::string local;
    std::string domain; // trailing root dot removed

    bool ok() const noexcept { return problem == AddressProblem::None; }
    std::string normalized() const { return local + '@' + domain; }
};

// Strips angle brackets, a source route ("@a,@b:") and any ESMTP parameters
// after the path, then splits and normalizes local part and domain.
EnvelopeAddress parse_envelope_address(std::string_view raw);

std::string_view describe(AddressProblem problem) noexcept;

// The raw argument without its source route ("<@a,@b:user@d>" gives
// "<user@d>"), or an empty string when it has none. MTAs differ in which of
// the two forms they store and match a recipient deletion against.
std::string without_source_route(std::string_view raw);

} // namespace impalemail
