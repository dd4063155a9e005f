#include "log/pseudonym_cache.hpp"
#include "log/pseudonymizer.hpp"

#include <catch2/catch.hpp>

using namespace impalemail;

TEST_CASE("pseudonyms are stable per key, case-insensitive, and hide the address")
{
    const Pseudonymizer p("0123456789abcdef0123456789abcdef", false);
    const std::string a = p("alice@real.example");
    CHECK(a.rfind("h:", 0) == 0);
    CHECK(a.size() == 18);
    CHECK(a.find("alice") == std::string::npos);
    CHECK(p("Alice@Real.Example") == a);
    CHECK(p("bob@real.example") != a);
    CHECK(Pseudonymizer("another key of sixteen+ bytes", false)("alice@real.example") != a);
}

TEST_CASE("a random key is drawn when none is configured")
{
    CHECK(Pseudonymizer("", false)("alice@real.example") != Pseudonymizer("", false)("alice@real.example"));
}

TEST_CASE("clear addresses only when asked for")
{
    CHECK(Pseudonymizer("0123456789abcdef", true)("alice@real.example") == "alice@real.example");
}

TEST_CASE("a transaction's cache hashes each mailbox once and agrees with the pseudonymizer")
{
    const Pseudonymizer p("0123456789abcdef0123456789abcdef", false);
    PseudonymCache cache(p);
    const std::string& first = cache("alice@real.example");
    CHECK(first == p("alice@real.example"));
    CHECK(&cache("alice@real.example") == &first); // the stored one, not a new hash
    CHECK(cache("bob@real.example") == p("bob@real.example"));
    cache.clear();
    CHECK(cache("alice@real.example") == p("alice@real.example"));
}
