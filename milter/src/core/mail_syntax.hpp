#pragma once
// Syntax checks shared by the envelope parser and the target validator
// (RFC 5321 / RFC 6531 grammar, octet based).

#include <string_view>

namespace impalemail {

enum class Charset { Ascii, Utf8 };

// RFC 5321 limits, in octets.
inline constexpr std::size_t kMaxLocalPart = 64;
inline constexpr std::size_t kMaxDomain = 255;
inline constexpr std::size_t kMaxMailbox = 254;

// True for a well-formed UTF-8 sequence (no overlongs, no surrogates).
bool is_valid_utf8(std::string_view s) noexcept;

// A dot-atom local part: atext runs separated by single dots. With Utf8,
// non-ASCII UTF-8 characters count as atext (SMTPUTF8).
bool is_dot_atom(std::string_view s, Charset charset) noexcept;

// A domain name of LDH labels (1..63 octets, no leading or trailing hyphen),
// no trailing dot, at most kMaxDomain octets. Address literals are not names.
bool is_domain_name(std::string_view s, Charset charset) noexcept;

} // namespace impalemail
