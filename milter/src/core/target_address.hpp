#pragma once
// Validation of an alias's target, the string value read from the store.
// The value is untrusted: anything but one plain mailbox outside the alias
// domains is treated as corruption, never as a recipient.

#include "core/domain_set.hpp"

#include <string_view>

namespace impalemail {

enum class TargetProblem {
    None,
    Empty,
    TooLong,         // more than 254 octets
    ControlOrSpace,  // CR/LF injection, spaces, tabs, NUL...
    NotAMailbox,     // not exactly one ASCII dot-atom@domain
    InAliasDomain,   // would loop back into the catch-all
};

TargetProblem check_target(std::string_view value, const DomainSet& alias_domains);

std::string_view describe(TargetProblem problem) noexcept;

} // namespace impalemail
