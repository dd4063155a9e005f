#pragma once
// Invariant checks for the harnesses. assert() is compiled out in the
// RelWithDebInfo fuzz build (NDEBUG), so failures are reported here and then
// abort(): libFuzzer treats the SIGABRT as a crash and saves the input.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace impalemail::fuzz {

// Prints a value with non-printable bytes as \xNN, at most `limit` bytes.
inline void print_escaped(const char* label, std::string_view s, std::size_t limit = 600)
{
    std::fprintf(stderr, "  %s (%zu bytes): \"", label, s.size());
    for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            std::fputc(c, stderr);
        else
            std::fprintf(stderr, "\\x%02x", c);
    }
    std::fprintf(stderr, s.size() > limit ? "\"...\n" : "\"\n");
}

// ASCII lower-casing written apart from the core's, so that the harnesses'
// models do not share the code they check.
inline std::string model_lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

[[noreturn]] inline void fail(const char* file, int line, const char* what)
{
    std::fprintf(stderr, "\n==FUZZ INVARIANT== %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    std::abort();
}

} // namespace impalemail::fuzz

// FUZZ_CHECK(cond, { print_escaped(...); ... }) -- the block runs only on failure.
#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            std::fprintf(stderr, "\n==FUZZ INVARIANT== failed: %s\n", #cond);                                          \
            __VA_ARGS__;                                                                                               \
            ::impalemail::fuzz::fail(__FILE__, __LINE__, #cond);                                                       \
        }                                                                                                              \
    } while (0)
