#include "duration.hpp"

namespace impalectl {

std::optional<Ttl> parse_ttl(std::string_view text)
{
    if (text == "never")
        return Ttl{true, 0};
    std::size_t i = 0;
    std::int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        if (n > kMaxTtlSeconds) // keeps the multiplication below from overflowing
            return std::nullopt;
        n = n * 10 + (text[i] - '0');
        ++i;
    }
    if (i == 0)
        return std::nullopt;
    std::int64_t unit = 1;
    if (i < text.size()) {
        if (i + 1 != text.size())
            return std::nullopt;
        switch (text[i]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return std::nullopt;
        }
    }
    if (n > kMaxTtlSeconds / unit)
        return std::nullopt;
    if (n == 0)
        return Ttl{true, 0};
    return Ttl{false, n * unit};
}

std::string human_duration(std::int64_t seconds)
{
    if (seconds <= 0)
        return "0s";
    static constexpr struct {
        std::int64_t size;
        const char* name;
    } units[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
    std::string out;
    int shown = 0;
    for (const auto& u : units) {
        const std::int64_t q = seconds / u.size;
        if (q == 0 && shown == 0)
            continue;
        if (shown == 1 && q == 0)
            break;
        if (shown)
            out += ' ';
        out += std::to_string(q) + u.name;
        seconds -= q * u.size;
        if (++shown == 2)
            break;
    }
    return out;
}

} // namespace impalectl
