#include "core/mail_syntax.hpp"

#include "core/ascii.hpp"

#include <cstring>

namespace impalemail {

namespace {

bool is_atext(unsigned char c) noexcept
{
    return is_ascii_alnum(c) || (c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr);
}

} // namespace

bool is_valid_utf8(std::string_view s) noexcept
{
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t extra = 0;
        unsigned min = 0;
        unsigned cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + extra >= s.size())
            return false;
        for (std::size_t k = 1; k <= extra; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

bool is_dot_atom(std::string_view s, Charset charset) noexcept
{
    if (s.empty() || s.front() == '.' || s.back() == '.')
        return false;
    bool saw_non_ascii = false;
    char prev = 0;
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '.') {
            if (prev == '.')
                return false;
        } else if (c >= 0x80) {
            if (charset == Charset::Ascii)
                return false;
            saw_non_ascii = true;
        } else if (!is_atext(c)) {
            return false;
        }
        prev = ch;
    }
    return !saw_non_ascii || is_valid_utf8(s);
}

bool is_domain_name(std::string_view s, Charset charset) noexcept
{
    if (s.empty() || s.size() > kMaxDomain)
        return false;
    bool saw_non_ascii = false;
    std::size_t label_start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == '.') {
            const std::size_t len = i - label_start;
            if (len == 0 || len > 63)
                return false;
            if (s[label_start] == '-' || s[i - 1] == '-')
                return false;
            label_start = i + 1;
            continue;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            if (charset == Charset::Ascii)
                return false;
            saw_non_ascii = true;
        } else if (!is_ascii_alnum(c) && c != '-') {
            return false;
        }
    }
    return !saw_non_ascii || is_valid_utf8(s);
}

} // namespace impalemail
