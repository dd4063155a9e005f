#include "core/target_address.hpp"

#include "core/ascii.hpp"
#include "core/mail_syntax.hpp"

namespace impalemail {

TargetProblem check_target(std::string_view value, const DomainSet& alias_domains)
{
    if (value.empty())
        return TargetProblem::Empty;
    if (value.size() > kMaxMailbox)
        return TargetProblem::TooLong;
    for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7f)
            return TargetProblem::ControlOrSpace;
    }
    const std::size_t at = value.rfind('@');
    if (at == std::string_view::npos)
        return TargetProblem::NotAMailbox;
    const std::string_view local = value.substr(0, at);
    const std::string_view domain = value.substr(at + 1);
    if (local.size() > kMaxLocalPart || !is_dot_atom(local, Charset::Ascii) ||
        !is_domain_name(domain, Charset::Ascii))
        return TargetProblem::NotAMailbox;
    if (alias_domains.contains(ascii_lowercase(domain)))
        return TargetProblem::InAliasDomain;
    return TargetProblem::None;
}

std::string_view describe(TargetProblem problem) noexcept
{
    switch (problem) {
    case TargetProblem::None: return "ok";
    case TargetProblem::Empty: return "empty value";
    case TargetProblem::TooLong: return "value longer than 254 octets";
    case TargetProblem::ControlOrSpace: return "value contains whitespace or control characters";
    case TargetProblem::NotAMailbox: return "value is not a single mailbox";
    case TargetProblem::InAliasDomain: return "target lies inside an alias domain";
    }
    return "unknown problem";
}

} // namespace impalemail
