#include "core/message_session.hpp"
#include "store/memory_store.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using namespace impalemail;

namespace {

AliasPolicy policy()
{
    AliasPolicy p;
    p.domains = DomainSet({"alias.example.org"});
    return p;
}

struct Fixture {
    AliasPolicy pol = policy();
    MemoryStore store;
    MessageSession session{pol, store};
};

std::string code_of(const RcptDecision& d)
{
    const SmtpReply r = d.reply();
    return r.code ? std::string(r.code) + " " + r.xcode : "continue";
}

} // namespace

TEST_CASE_METHOD(Fixture, "a live alias is accepted and rewritten at end of message")
{
    store.set("alias:shop-7k2@alias.example.org", "alice@real.example");
    const RcptDecision d = session.on_recipient("<Shop-7K2@Alias.Example.org>");
    CHECK(d.outcome == RcptOutcome::Accepted);
    CHECK(code_of(d) == "continue");
    CHECK(d.target == "alice@real.example");
    CHECK(store.reads() == 1);

    for (const char* h : {"Received", "From", "X-Mailer", "Received", "Subject", "DKIM-Signature"})
        session.on_header(h);
    const EomPlan plan = session.plan();
    CHECK(plan.delete_recipients == std::vector<std::string>{"<Shop-7K2@Alias.Example.org>"});
    CHECK(plan.add_recipients == std::vector<std::string>{"alice@real.example"});
    const std::vector<HeaderDeletion> headers = {{"Received", 2}, {"Received", 1}, {"X-Mailer", 1}};
    CHECK(plan.delete_headers == headers);
}

TEST_CASE_METHOD(Fixture, "unknown aliases get 550 5.1.1 with one text for every reason")
{
    const RcptDecision never = session.on_recipient("<never@alias.example.org>");
    store.set("alias:gone@alias.example.org", "alice@real.example");
    store.erase("alias:gone@alias.example.org"); // expired or revoked
    const RcptDecision gone = session.on_recipient("<gone@alias.example.org>");
    CHECK(never.outcome == RcptOutcome::Unknown);
    CHECK(code_of(never) == "550 5.1.1");
    CHECK(std::strcmp(never.reply().text, gone.reply().text) == 0);
    CHECK(code_of(gone) == "550 5.1.1");
    CHECK(session.plan().empty());
}

TEST_CASE_METHOD(Fixture, "a store failure is a 451 4.3.0, never a 5xx")
{
    store.fail_with("connection refused");
    const RcptDecision d = session.on_recipient("<shop@alias.example.org>");
    CHECK(d.outcome == RcptOutcome::StoreError);
    CHECK(code_of(d) == "451 4.3.0");
    CHECK(d.detail == "connection refused");
    store.recover();
    store.set("alias:shop@alias.example.org", "alice@real.example");
    CHECK(session.on_recipient("<shop@alias.example.org>").outcome == RcptOutcome::Accepted);
}

TEST_CASE_METHOD(Fixture, "corrupt values are tempfailed, never added, never echoed")
{
    const char* values[] = {"not an address", "alice@real.example\r\nRCPT TO:<x@evil.example>",
                            "a@b.example c@d.example", "", "loop@alias.example.org", "<alice@real.example>"};
    for (const char* v : values) {
        INFO(v);
        store.set("alias:bad@alias.example.org", v);
        const RcptDecision d = session.on_recipient("<bad@alias.example.org>");
        CHECK(d.outcome == RcptOutcome::CorruptValue);
        CHECK(code_of(d) == "451 4.3.0");
        CHECK(d.key == "alias:bad@alias.example.org");
        CHECK(d.target.empty());
        if (*v)
            CHECK(d.detail.find(v) == std::string::npos);
    }
    CHECK(session.plan().empty());
}

TEST_CASE_METHOD(Fixture, "recipients outside the alias domains are neither looked up nor touched")
{
    for (const char* r : {"<carol@other.example>", "<postmaster>", "<x@sub.alias.example.org>", "<x@[192.0.2.1]>",
                          "<\"john doe\"@other.example>"}) {
        INFO(r);
        CHECK(session.on_recipient(r).outcome == RcptOutcome::Passthrough);
    }
    CHECK(store.reads() == 0);
    session.on_header("Received");
    CHECK(session.plan().empty());
}

TEST_CASE_METHOD(Fixture, "malformed alias-domain recipients get 553 5.1.3 without a lookup")
{
    for (const char* r : {"<\"john doe\"@alias.example.org>", "<a..b@alias.example.org>", "<>",
                          "<unbalanced@alias.example.org"}) {
        INFO(r);
        const RcptDecision d = session.on_recipient(r);
        CHECK(d.outcome == RcptOutcome::Malformed);
        CHECK(code_of(d) == "553 5.1.3");
    }
    const std::string long_local(65, 'x');
    CHECK(session.on_recipient("<" + long_local + "@alias.example.org>").outcome == RcptOutcome::Malformed);
    CHECK(store.reads() == 0);
}

TEST_CASE_METHOD(Fixture, "mixed recipients: only live aliases are rewritten, each owner once")
{
    store.set("alias:a1@alias.example.org", "alice@real.example");
    store.set("alias:a2@alias.example.org", "alice@REAL.example");
    store.set("alias:b1@alias.example.org", "bob@real.example");
    CHECK(session.on_recipient("<a1@alias.example.org>").outcome == RcptOutcome::Accepted);
    CHECK(session.on_recipient("<dead@alias.example.org>").outcome == RcptOutcome::Unknown);
    CHECK(session.on_recipient("<carol@other.example>").outcome == RcptOutcome::Passthrough);
    CHECK(session.on_recipient("<A2@alias.example.org>").outcome == RcptOutcome::Accepted);
    CHECK(session.on_recipient("<b1@alias.example.org>").outcome == RcptOutcome::Accepted);
    CHECK(session.on_recipient("<a1@alias.example.org>").outcome == RcptOutcome::Accepted); // repeated
    CHECK(store.reads() == 5);

    const EomPlan plan = session.plan();
    CHECK(plan.delete_recipients ==
          std::vector<std::string>{"<a1@alias.example.org>", "<A2@alias.example.org>", "<b1@alias.example.org>"});
    CHECK(plan.add_recipients == std::vector<std::string>{"alice@real.example", "bob@real.example"});
}

TEST_CASE_METHOD(Fixture, "the key prefix is configurable")
{
    pol.key_prefix = "mx1:alias:";
    store.set("mx1:alias:shop@alias.example.org", "alice@real.example");
    CHECK(session.on_recipient("<shop@alias.example.org>").outcome == RcptOutcome::Accepted);
}

TEST_CASE_METHOD(Fixture, "reset forgets the transaction")
{
    store.set("alias:shop@alias.example.org", "alice@real.example");
    session.on_recipient("<shop@alias.example.org>");
    session.on_header("Received");
    session.reset();
    CHECK_FALSE(session.has_aliases());
    CHECK(session.plan().empty());
    session.on_recipient("<shop@alias.example.org>");
    CHECK(session.plan().delete_headers.empty());
}

TEST_CASE_METHOD(Fixture, "a thousand recipients mixing live, dead and foreign")
{
    for (int i = 0; i < 1000; i += 3)
        store.set("alias:r" + std::to_string(i) + "@alias.example.org", "owner" + std::to_string(i % 7) + "@real.example");
    int accepted = 0, unknown = 0, passed = 0;
    for (int i = 0; i < 1000; ++i) {
        const std::string domain = (i % 5 == 4) ? "other.example" : "alias.example.org";
        switch (session.on_recipient("<r" + std::to_string(i) + "@" + domain + ">").outcome) {
        case RcptOutcome::Accepted: ++accepted; break;
        case RcptOutcome::Unknown: ++unknown; break;
        case RcptOutcome::Passthrough: ++passed; break;
        default: FAIL("unexpected outcome");
        }
    }
    CHECK(passed == 200);
    CHECK(accepted + unknown == 800);
    const EomPlan plan = session.plan();
    CHECK(plan.delete_recipients.size() == static_cast<std::size_t>(accepted));
    CHECK(plan.add_recipients.size() == 7);
}

TEST_CASE_METHOD(Fixture, "a source-routed alias is deleted in both spellings")
{
    store.set("alias:shop@alias.example.org", "alice@real.example");
    CHECK(session.on_recipient("<@relay.example:Shop@alias.example.org>").outcome == RcptOutcome::Accepted);
    CHECK(session.plan().delete_recipients ==
          std::vector<std::string>{"<@relay.example:Shop@alias.example.org>", "<Shop@alias.example.org>"});
}
