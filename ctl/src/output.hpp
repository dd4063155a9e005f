#pragma once
// Output: plain text for people (columns, durations, control characters
// made visible) or one JSON document per command (--json).

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace impalectl {

using Json = nlohmann::ordered_json; // keys in the order written

// Prints `doc` on one line; bytes that are not UTF-8 become U+FFFD instead
// of failing (Redis values are untrusted).
void print_json(std::ostream& out, const Json& doc);

// `s` with control characters, DEL and backslashes escaped (\n, \x1b, \\),
// so a stored value cannot drive the terminal.
std::string printable(std::string_view s);

// Left-aligned columns separated by two spaces; the last column is not padded.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows);

// "6d 23h (604790 s)" or "permanent".
std::string human_ttl(bool permanent, long long seconds);

// "2024-05-01 12:34:56 UTC" or "never" (0).
std::string human_time(long long unix_time);

} // namespace impalectl
