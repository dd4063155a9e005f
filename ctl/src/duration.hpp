#pragma once
// Alias lifetimes on the command line: "30s", "15m", "12h", "7d", "2w", plain
// seconds ("3600"), or "never" / "0" for a permanent alias.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace impalectl {

// Longest accepted lifetime: 100 years (far below Redis's own limit).
inline constexpr std::int64_t kMaxTtlSeconds = 100LL * 365 * 86400;

struct Ttl {
    bool permanent = false;
    std::int64_t seconds = 0; // > 0 unless permanent
};

// nullopt when `text` is not a duration (or is out of range).
std::optional<Ttl> parse_ttl(std::string_view text);

// "6d 23h", "59m 58s", "12s": the two largest non-zero units.
std::string human_duration(std::int64_t seconds);

// Seconds Redis's TTL command would report for a PTTL reply in milliseconds.
inline std::int64_t ttl_seconds_from_ms(std::int64_t ms) { return (ms + 500) / 1000; }

} // namespace impalectl
