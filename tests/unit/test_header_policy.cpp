#include "core/header_policy.hpp"

#include <catch2/catch.hpp>

using namespace impalemail;

TEST_CASE("the default strip list covers the identifying headers")
{
    const StripPolicy p(StripPolicy::default_patterns());
    for (const char* h : {"Disposition-Notification-To", "Return-Receipt-To", "X-Confirm-Reading-To", "Read-Receipt-To",
                          "Received", "X-Received", "X-Originating-IP", "X-Sender-IP", "X-Mailer", "User-Agent",
                          "X-MimeOLE", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-From"})
        CHECK(p.matches(h));
    for (const char* h : {"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
                          "Content-Transfer-Encoding", "List-Unsubscribe", "List-Id", "DKIM-Signature", "Reply-To",
                          "References", "In-Reply-To", "Receivedx", "X-Envelope"})
        CHECK_FALSE(p.matches(h));
}

TEST_CASE("matching is case-insensitive and supports prefix patterns")
{
    const StripPolicy p({"Received", "X-Spam-*"});
    CHECK(p.matches("received"));
    CHECK(p.matches("RECEIVED"));
    CHECK(p.matches("x-spam-status"));
    CHECK(p.matches("X-Spam-"));
    CHECK_FALSE(p.matches("X-Spam"));
    CHECK_FALSE(p.matches("Received-SPF"));
}

TEST_CASE("patterns are validated")
{
    CHECK(StripPolicy::is_valid_pattern("X-Mailer"));
    CHECK(StripPolicy::is_valid_pattern("X-Spam-*"));
    CHECK_FALSE(StripPolicy::is_valid_pattern(""));
    CHECK_FALSE(StripPolicy::is_valid_pattern("*"));
    CHECK_FALSE(StripPolicy::is_valid_pattern("X Mailer"));
    CHECK_FALSE(StripPolicy::is_valid_pattern("X-Mailer:"));
    CHECK_FALSE(StripPolicy::is_valid_pattern("X-*-Foo"));
    CHECK_FALSE(StripPolicy::is_valid_pattern("X-M\xC3\xA4iler"));
}

TEST_CASE("deletions run from the last index to the first, per name, case-insensitively")
{
    const StripPolicy p({"Received", "X-Mailer", "X-Envelope-*"});
    HeaderTally t;
    for (const char* h : {"Received", "From", "received", "X-Mailer", "RECEIVED", "Subject", "x-envelope-to",
                          "X-Envelope-To", "X-Envelope-From"})
        t.observe(h, p);
    CHECK(t.total() == 7);
    const std::vector<HeaderDeletion> expected = {
        {"Received", 3}, {"Received", 2}, {"Received", 1}, {"X-Mailer", 1},
        {"x-envelope-to", 2}, {"x-envelope-to", 1}, {"X-Envelope-From", 1},
    };
    CHECK(t.deletions() == expected);
    t.clear();
    CHECK(t.deletions().empty());
    CHECK(t.total() == 0);
}

TEST_CASE("ten thousand headers are tallied")
{
    const StripPolicy p({"Received", "X-Envelope-*"});
    HeaderTally t;
    for (int i = 0; i < 10000; ++i) {
        t.observe("Received", p);
        t.observe("X-Envelope-" + std::to_string(i), p);
        t.observe("Keep-Me", p);
    }
    const auto d = t.deletions();
    REQUIRE(d.size() == 20000);
    CHECK(d.front() == HeaderDeletion{"Received", 10000});
    CHECK(d[9999] == HeaderDeletion{"Received", 1});
}

TEST_CASE("an empty policy strips nothing")
{
    const StripPolicy p(std::vector<std::string>{});
    HeaderTally t;
    CHECK_FALSE(t.observe("Received", p));
    CHECK(t.deletions().empty());
}

TEST_CASE("the matching pattern is reported, for bounded metric labels")
{
    const StripPolicy p({"Received", "X-Envelope-*"});
    REQUIRE(p.matching_pattern("x-envelope-from"));
    CHECK(*p.matching_pattern("x-envelope-from") == "X-Envelope-*");
    CHECK(*p.matching_pattern("RECEIVED") == "Received");
    CHECK(p.matching_pattern("Subject") == nullptr);
}
