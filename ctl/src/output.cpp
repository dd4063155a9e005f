#include "output.hpp"

#include "duration.hpp"

#include <ctime>
#include <ostream>

namespace impalectl {

void print_json(std::ostream& out, const Json& doc)
{
    out << doc.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
}

std::string printable(std::string_view s)
{
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\t')
            out += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        } else
            out += ch;
    }
    return out;
}

namespace {

// Terminal columns of a UTF-8 string, roughly: one per code point.
std::size_t width(const std::string& s)
{
    std::size_t n = 0;
    for (char c : s)
        if ((static_cast<unsigned char>(c) & 0xc0) != 0x80)
            ++n;
    return n;
}

} // namespace

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> widths;
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (widths.size() <= i)
                widths.push_back(0);
            widths[i] = std::max(widths[i], width(row[i]));
        }
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size())
                line += std::string(widths[i] - width(row[i]) + 2, ' ');
        }
        out << line << '\n';
    }
}

std::string human_ttl(bool permanent, long long seconds)
{
    if (permanent)
        return "permanent";
    return human_duration(seconds) + " (" + std::to_string(seconds) + " s)";
}

std::string human_time(long long unix_time)
{
    if (unix_time <= 0)
        return "never";
    const std::time_t t = static_cast<std::time_t>(unix_time);
    std::tm tm{};
    if (!gmtime_r(&t, &tm))
        return std::to_string(unix_time);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

} // namespace impalectl
