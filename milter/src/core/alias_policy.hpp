#pragma once

#include "core/domain_set.hpp"
#include "core/header_policy.hpp"

#include <string>

namespace impalemail {

// What the core needs from the configuration to decide.
struct AliasPolicy {
    DomainSet domains;
    std::string key_prefix = "alias:";
    StripPolicy strip{StripPolicy::default_patterns()};
};

} // namespace impalemail
