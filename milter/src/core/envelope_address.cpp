#include "core/envelope_address.hpp"

#include "core/ascii.hpp"
#include "core/mail_syntax.hpp"

#include <arpa/inet.h>

namespace impalemail {

namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

// Index of the first `wanted` outside a quoted string, or npos. Returns npos
// as well when a quote is left open.
std::size_t find_unquoted(std::string_view s, char wanted, std::size_t from = 0) noexcept
{
    bool quoted = false;
    for (std::size_t i = from; i < s.size(); ++i) {
        const char c = s[i];
        if (quoted && c == '\\') {
            ++i;
        } else if (c == '"') {
            quoted = !quoted;
        } else if (!quoted && c == wanted) {
            return i;
        }
    }
    return std::string_view::npos;
}

bool is_qtext(unsigned char c) noexcept
{
    return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || c >= 0x80;
}

// The path between the brackets, or without brackets the first word; the
// rest of the argument (ESMTP parameters) is ignored.
bool extract_path(std::string_view arg, std::string_view& path) noexcept
{
    if (arg.empty())
        return false;
    if (arg.front() == '<') {
        const std::size_t close = find_unquoted(arg, '>', 1);
        if (close == std::string_view::npos)
            return false;
        const std::string_view rest = arg.substr(close + 1);
        if (!rest.empty() && !is_space(rest.front()))
            return false;
        path = arg.substr(1, close - 1);
    } else {
        std::size_t end = 0;
        bool quoted = false;
        for (; end < arg.size(); ++end) {
            const char c = arg[end];
            if (quoted && c == '\\')
                ++end;
            else if (c == '"')
                quoted = !quoted;
            else if (!quoted && is_space(c))
                break;
        }
        path = arg.substr(0, end < arg.size() ? end : arg.size());
        if (path.empty())
            return false;
    }
    return find_unquoted(path, '<') == std::string_view::npos &&
           find_unquoted(path, '>') == std::string_view::npos;
}

// Unquotes a quoted-string local part. Returns false on bad quoting.
bool unquote(std::string_view quoted, std::string& out)
{
    out.clear();
    for (std::size_t i = 1; i + 1 < quoted.size(); ++i) {
        auto c = static_cast<unsigned char>(quoted[i]);
        if (c == '\\') {
            if (i + 2 >= quoted.size())
                return false;
            c = static_cast<unsigned char>(quoted[++i]);
            if (c < 32 || c == 127)
                return false;
        } else if (!is_qtext(c)) {
            return false;
        }
        out.push_back(static_cast<char>(c));
    }
    return true;
}

// "[192.0.2.1]" or "[ipv6:2001:db8::1]" (already lower-cased). General
// address literals (RFC 5321 "tag:content") are not accepted.
bool is_address_literal(const std::string& d)
{
    if (d.size() < 3 || d.front() != '[' || d.back() != ']')
        return false;
    std::string inner = d.substr(1, d.size() - 2);
    // inet_pton stops at a NUL; only the characters of an address may pass.
    if (inner.find_first_not_of("0123456789abcdef:.ipv6") != std::string::npos)
        return false;
    unsigned char buf[16];
    if (inner.rfind("ipv6:", 0) == 0)
        return inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
    return inet_pton(AF_INET, inner.c_str(), buf) == 1;
}

AddressProblem check_domain(std::string& domain)
{
    if (domain.size() > 1 && domain.back() == '.' && domain.front() != '[')
        domain.pop_back();
    if (domain.size() > kMaxDomain)
        return AddressProblem::DomainTooLong;
    if (!domain.empty() && domain.front() == '[')
        return is_address_literal(domain) ? AddressProblem::None // valid, never an alias domain
                                          : AddressProblem::BadDomain;
    return is_domain_name(domain, Charset::Utf8) ? AddressProblem::None : AddressProblem::BadDomain;
}

} // namespace

EnvelopeAddress parse_envelope_address(std::string_view raw)
{
    EnvelopeAddress result;
    std::string_view path;
    if (!extract_path(trim(raw), path)) {
        result.problem = AddressProblem::Unparseable;
        return result;
    }
    if (path.empty()) {
        result.problem = AddressProblem::NullPath;
        return result;
    }
    if (path.front() == '@') { // obsolete source route, ignored per RFC 5321 4.1.2
        const std::size_t colon = path.find(':');
        if (colon == std::string_view::npos) {
            result.problem = AddressProblem::Unparseable;
            return result;
        }
        path.remove_prefix(colon + 1);
    }

    std::size_t at;
    if (!path.empty() && path.front() == '"') {
        std::size_t end = std::string_view::npos;
        for (std::size_t i = 1; i < path.size(); ++i) {
            if (path[i] == '\\') {
                ++i;
            } else if (path[i] == '"') {
                end = i;
                break;
            }
        }
        if (end == std::string_view::npos) {
            result.problem = AddressProblem::Unparseable;
            return result;
        }
        at = end + 1 < path.size() ? end + 1 : std::string_view::npos;
        if (at != std::string_view::npos && path[at] != '@') {
            result.problem = AddressProblem::Unparseable;
            return result;
        }
    } else {
        at = path.rfind('@');
    }

    const std::string_view local_wire = path.substr(0, at == std::string_view::npos ? path.size() : at);
    if (at == std::string_view::npos) {
        result.local = ascii_lowercase(local_wire);
        result.problem = AddressProblem::NoDomain;
        return result;
    }
    result.domain = ascii_lowercase(path.substr(at + 1));
    if (const AddressProblem p = check_domain(result.domain); p != AddressProblem::None) {
        result.problem = p;
        return result;
    }

    std::string local;
    if (!local_wire.empty() && local_wire.front() == '"') {
        if (!unquote(local_wire, local) || !is_dot_atom(local, Charset::Utf8)) {
            // A local part that needs quoting is legal SMTP but never an alias name.
            result.problem = AddressProblem::BadLocalPart;
            return result;
        }
    } else if (is_dot_atom(local_wire, Charset::Utf8)) {
        local.assign(local_wire);
    } else {
        result.problem = AddressProblem::BadLocalPart;
        return result;
    }
    result.local = ascii_lowercase(local);
    if (result.local.size() > kMaxLocalPart)
        result.problem = AddressProblem::LocalPartTooLong;
    else if (result.local.size() + 1 + result.domain.size() > kMaxMailbox)
        result.problem = AddressProblem::AddressTooLong;
    return result;
}

std::string without_source_route(std::string_view raw)
{
    const std::string_view arg = trim(raw);
    const std::size_t start = (!arg.empty() && arg.front() == '<') ? 1 : 0;
    if (arg.size() <= start || arg[start] != '@')
        return {};
    const std::size_t colon = arg.find(':', start);
    if (colon == std::string_view::npos)
        return {};
    std::string out(arg.substr(0, start));
    out.append(arg.substr(colon + 1));
    return out;
}

std::string_view describe(AddressProblem problem) noexcept
{
    switch (problem) {
    case AddressProblem::None: return "ok";
    case AddressProblem::Unparseable: return "unparseable address";
    case AddressProblem::NullPath: return "null path";
    case AddressProblem::NoDomain: return "no domain";
    case AddressProblem::BadLocalPart: return "invalid local part";
    case AddressProblem::LocalPartTooLong: return "local part longer than 64 octets";
    case AddressProblem::BadDomain: return "invalid domain";
    case AddressProblem::DomainTooLong: return "domain longer than 255 octets";
    case AddressProblem::AddressTooLong: return "address longer than 254 octets";
    }
    return "unknown problem";
}

} // namespace impalemail
