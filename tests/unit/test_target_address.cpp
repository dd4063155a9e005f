#include "core/target_address.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace impalemail;

namespace {
// A valid domain name of exactly n octets (n >= 5), labels of up to 63.
std::string domain_of_length(std::size_t n)
{
    std::string d;
    while (d.size() + 4 < n) {
        const std::size_t label = std::min<std::size_t>(63, n - 4 - d.size());
        d += std::string(label, 'b');
        if (d.size() + 4 < n)
            d += '.';
    }
    return d + ".com";
}
} // namespace

TEST_CASE("only one plain mailbox outside the alias domains is a valid target")
{
    const DomainSet aliases({"alias.example.org", "relay.example"});
    struct Row {
        std::string value;
        TargetProblem expected;
    };
    const Row rows[] = {
        {"alice@real.example", TargetProblem::None},
        {"Alice.Smith+tag@Real.Example", TargetProblem::None},
        {"alice@sub.alias.example.org", TargetProblem::None}, // not an alias domain itself
        {"", TargetProblem::Empty},
        {std::string(64, 'a') + "@" + domain_of_length(189), TargetProblem::None},
        {std::string(64, 'a') + "@" + domain_of_length(190), TargetProblem::TooLong},
        {std::string(1 << 20, 'x'), TargetProblem::TooLong},
        {"alice@real.example\r\nRCPT TO:<evil@bad.example>", TargetProblem::ControlOrSpace},
        {"alice@real.example\n", TargetProblem::ControlOrSpace},
        {" alice@real.example", TargetProblem::ControlOrSpace},
        {"alice@real.example bob@real.example", TargetProblem::ControlOrSpace},
        {std::string("alice\0@real.example", 19), TargetProblem::ControlOrSpace},
        {"alice@real.example\x7f", TargetProblem::ControlOrSpace},
        {"alice@real.example,bob@real.example", TargetProblem::NotAMailbox},
        {"<alice@real.example>", TargetProblem::NotAMailbox},
        {"alice", TargetProblem::NotAMailbox},
        {"@real.example", TargetProblem::NotAMailbox},
        {"alice@", TargetProblem::NotAMailbox},
        {"alice@real.example.", TargetProblem::NotAMailbox},
        {"alice@[192.0.2.1]", TargetProblem::NotAMailbox},
        {"al..ice@real.example", TargetProblem::NotAMailbox},
        {"\"alice\"@real.example", TargetProblem::NotAMailbox},
        {"j\xC3\xBCrgen@real.example", TargetProblem::NotAMailbox},
        {std::string("\xff\xfe\x00\x01", 4), TargetProblem::ControlOrSpace},
        {"\xff\xfe@real.example", TargetProblem::NotAMailbox},
        {std::string(65, 'a') + "@real.example", TargetProblem::NotAMailbox},
        {"loop@alias.example.org", TargetProblem::InAliasDomain},
        {"loop@ALIAS.Example.org", TargetProblem::InAliasDomain},
        {"loop@relay.example", TargetProblem::InAliasDomain},
    };
    for (const auto& r : rows) {
        INFO("value: " << r.value.substr(0, 80));
        CHECK(check_target(r.value, aliases) == r.expected);
    }
}

TEST_CASE("every problem has a description that never repeats the value")
{
    for (auto p : {TargetProblem::Empty, TargetProblem::TooLong, TargetProblem::ControlOrSpace,
                   TargetProblem::NotAMailbox, TargetProblem::InAliasDomain})
        CHECK(describe(p).find('@') == std::string_view::npos);
}
