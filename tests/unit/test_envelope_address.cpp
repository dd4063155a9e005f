#include "core/envelope_address.hpp"

#include <catch2/catch.hpp>

using namespace impalemail;

namespace {
struct Row {
    const char* raw;
    AddressProblem problem;
    const char* local;
    const char* domain;
};
} // namespace

TEST_CASE("RCPT arguments are parsed and normalized")
{
    const std::string long_local(65, 'a');
    const std::string max_local(64, 'a');
    const Row rows[] = {
        {"<shop-7k2@alias.example.org>", AddressProblem::None, "shop-7k2", "alias.example.org"},
        {"<Shop-7K2@Alias.Example.ORG>", AddressProblem::None, "shop-7k2", "alias.example.org"},
        {"shop@alias.example.org", AddressProblem::None, "shop", "alias.example.org"},
        {"  <shop@alias.example.org>  ", AddressProblem::None, "shop", "alias.example.org"},
        {"<shop@alias.example.org> NOTIFY=SUCCESS ORCPT=rfc822;x@y", AddressProblem::None, "shop", "alias.example.org"},
        {"shop@alias.example.org NOTIFY=NEVER", AddressProblem::None, "shop", "alias.example.org"},
        {"<shop@alias.example.org.>", AddressProblem::None, "shop", "alias.example.org"},
        {"<@relay.example,@other.example:shop@alias.example.org>", AddressProblem::None, "shop", "alias.example.org"},
        {"<\"shop\"@alias.example.org>", AddressProblem::None, "shop", "alias.example.org"},
        {"<\"sh\\op\"@alias.example.org>", AddressProblem::None, "shop", "alias.example.org"},
        {"<\"john doe\"@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<\"a@b\"@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<J\xC3\xBCrgen@alias.example.org>", AddressProblem::None, "j\xC3\xBCrgen", "alias.example.org"},
        {"<j\xC3@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<a..b@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<.a@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<a b@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<a(b)@alias.example.org>", AddressProblem::BadLocalPart, "", "alias.example.org"},
        {"<user@[192.0.2.1]>", AddressProblem::None, "user", "[192.0.2.1]"},
        {"<user@[IPv6:2001:DB8::1]>", AddressProblem::None, "user", "[ipv6:2001:db8::1]"},
        {"<user@[192.0.2.300]>", AddressProblem::BadDomain, "", "[192.0.2.300]"},
        {"<user@[b@c]>", AddressProblem::BadDomain, "", ""},
        {"<user@[\"]>", AddressProblem::Unparseable, "", ""}, // the quote swallows the closing bracket
        {"<user@[tag:content]>", AddressProblem::BadDomain, "", "[tag:content]"},
        {"<user@-bad.example>", AddressProblem::BadDomain, "", "-bad.example"},
        {"<user@bad..example>", AddressProblem::BadDomain, "", "bad..example"},
        {"<user@>", AddressProblem::BadDomain, "", ""},
        {"<postmaster>", AddressProblem::NoDomain, "postmaster", ""},
        {"<Postmaster>", AddressProblem::NoDomain, "postmaster", ""},
        {"<>", AddressProblem::NullPath, "", ""},
        {"", AddressProblem::Unparseable, "", ""},
        {"<shop@alias.example.org", AddressProblem::Unparseable, "", ""},
        {"shop@alias.example.org>", AddressProblem::Unparseable, "", ""},
        {"<<shop@alias.example.org>>", AddressProblem::Unparseable, "", ""},
        {"<shop@alias.example.org>x", AddressProblem::Unparseable, "", ""},
        {"<@relay.example shop@alias.example.org>", AddressProblem::Unparseable, "", ""},
        {"<\"unterminated@alias.example.org>", AddressProblem::Unparseable, "", ""},
    };
    for (const auto& r : rows) {
        INFO("raw: " << r.raw);
        const EnvelopeAddress a = parse_envelope_address(r.raw);
        CHECK(a.problem == r.problem);
        if (r.problem == AddressProblem::None || r.problem == AddressProblem::NoDomain)
            CHECK(a.local == r.local);
        if (*r.domain)
            CHECK(a.domain == r.domain);
    }
}

TEST_CASE("length limits are enforced in octets")
{
    const std::string max_local(64, 'a');
    CHECK(parse_envelope_address("<" + max_local + "@alias.example.org>").ok());
    CHECK(parse_envelope_address("<" + std::string(65, 'a') + "@alias.example.org>").problem ==
          AddressProblem::LocalPartTooLong);

    std::string long_domain;
    while (long_domain.size() < 256)
        long_domain += "abcdefghi.";
    long_domain += "example";
    CHECK(parse_envelope_address("<a@" + long_domain + ">").problem == AddressProblem::DomainTooLong);

    // 64 + 1 + 190 = 255 octets: each half fine, the whole too long.
    std::string domain190;
    while (domain190.size() < 180)
        domain190 += "abcdefghi.";
    domain190 += "example.ab"; // 190
    REQUIRE(domain190.size() == 190);
    CHECK(parse_envelope_address("<" + max_local + "@" + domain190 + ">").problem == AddressProblem::AddressTooLong);
}

TEST_CASE("the normalized form is local@domain")
{
    CHECK(parse_envelope_address("<Shop@Alias.Example.org>").normalized() == "shop@alias.example.org");
}

TEST_CASE("hostile input neither crashes nor hangs")
{
    const std::string big(1 << 20, '<');
    CHECK(parse_envelope_address(big).problem == AddressProblem::Unparseable);
    std::string nul_inside = "<a";
    nul_inside += '\0';
    nul_inside += "b@alias.example.org>";
    CHECK(parse_envelope_address(nul_inside).problem == AddressProblem::BadLocalPart);
    CHECK(parse_envelope_address("<\"\\").problem == AddressProblem::Unparseable);
    CHECK(parse_envelope_address("<@:>").problem != AddressProblem::None);
    CHECK(parse_envelope_address(std::string("u@[\0]", 6)).problem == AddressProblem::BadDomain);
    CHECK(parse_envelope_address(std::string("<u@[192.0.2.1\0x]>", 17)).problem == AddressProblem::BadDomain);
}

TEST_CASE("the source route can be removed from a raw argument")
{
    CHECK(without_source_route("<@a.example,@b.example:Shop@Alias.example.org>") == "<Shop@Alias.example.org>");
    CHECK(without_source_route("@a.example:shop@alias.example.org") == "shop@alias.example.org");
    CHECK(without_source_route("<shop@alias.example.org>").empty());
    CHECK(without_source_route("<@no-colon.example>").empty());
    CHECK(without_source_route("").empty());
}
