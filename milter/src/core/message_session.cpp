#include "core/message_session.hpp"

#include "core/ascii.hpp"
#include "core/envelope_address.hpp"
#include "core/target_address.hpp"

#include <algorithm>

namespace impalemail {

SmtpReply RcptDecision::reply() const noexcept
{
    switch (outcome) {
    case RcptOutcome::Passthrough:
    case RcptOutcome::Accepted:
        return {nullptr, nullptr, nullptr};
    case RcptOutcome::Unknown:
        // One text for never-existed, expired and revoked: no oracle for probing.
        return {"550", "5.1.1", "Recipient address rejected: unknown alias"};
    case RcptOutcome::Malformed:
        return {"553", "5.1.3", "Recipient address rejected: malformed alias address"};
    case RcptOutcome::StoreError:
    case RcptOutcome::CorruptValue:
        return {"451", "4.3.0", "Alias lookup temporarily unavailable, try again later"};
    }
    return {"451", "4.3.0", "Alias lookup temporarily unavailable, try again later"};
}

RcptDecision MessageSession::on_recipient(std::string_view raw_argument)
{
    RcptDecision d;
    const EnvelopeAddress addr = parse_envelope_address(raw_argument);
    switch (addr.problem) {
    case AddressProblem::Unparseable:
    case AddressProblem::NullPath:
        // No domain to tell whether it is ours; the MTA normally refuses
        // these itself, and a permanent refusal loses nothing.
        d.outcome = RcptOutcome::Malformed;
        d.detail = std::string(describe(addr.problem));
        return d;
    case AddressProblem::NoDomain:
    case AddressProblem::BadDomain:
    case AddressProblem::DomainTooLong:
        return d; // cannot be an alias domain
    default:
        break;
    }
    if (!policy_->domains.contains(addr.domain))
        return d;
    if (!addr.ok()) {
        d.outcome = RcptOutcome::Malformed;
        d.detail = std::string(describe(addr.problem));
        return d;
    }

    d.alias = addr.normalized();
    d.key = policy_->key_prefix + d.alias;
    StoreReply reply = store_->get(d.key);
    switch (reply.status) {
    case StoreReply::Status::NotFound:
        d.outcome = RcptOutcome::Unknown;
        return d;
    case StoreReply::Status::Error:
        d.outcome = RcptOutcome::StoreError;
        d.detail = std::move(reply.value);
        return d;
    case StoreReply::Status::Found:
        break;
    }
    if (const TargetProblem p = check_target(reply.value, policy_->domains); p != TargetProblem::None) {
        d.outcome = RcptOutcome::CorruptValue;
        d.detail = std::string(describe(p));
        return d;
    }
    d.outcome = RcptOutcome::Accepted;
    d.target = std::move(reply.value);
    accepted_.push_back(AcceptedAlias{std::string(raw_argument), d.target, d.alias});
    return d;
}

namespace {

// Mailbox identity for de-duplication: local parts are case-sensitive in
// principle, domains never are.
std::string mailbox_identity(const std::string& mailbox)
{
    const std::size_t at = mailbox.rfind('@');
    return mailbox.substr(0, at + 1) + ascii_lowercase(std::string_view(mailbox).substr(at + 1));
}

void push_unique(std::vector<std::string>& seen, std::vector<std::string>& out, std::string identity,
                 const std::string& value)
{
    if (std::find(seen.begin(), seen.end(), identity) != seen.end())
        return;
    seen.push_back(std::move(identity));
    out.push_back(value);
}

} // namespace

EomPlan MessageSession::plan() const
{
    EomPlan plan;
    if (accepted_.empty())
        return plan;
    std::vector<std::string> seen_raw;
    std::vector<std::string> seen_target;
    std::vector<std::string> seen_alias;
    for (const auto& a : accepted_) {
        push_unique(seen_alias, plan.aliases, a.alias, a.alias);
        push_unique(seen_raw, plan.delete_recipients, a.raw, a.raw);
        // Deleting an address the MTA does not hold is a no-op, so both forms
        // of a source-routed recipient are deleted.
        if (std::string routeless = without_source_route(a.raw); !routeless.empty())
            push_unique(seen_raw, plan.delete_recipients, routeless, routeless);
        push_unique(seen_target, plan.add_recipients, mailbox_identity(a.target), a.target);
    }
    plan.delete_headers = tally_.deletions();
    return plan;
}

void MessageSession::reset() noexcept
{
    accepted_.clear();
    tally_.clear();
}

} // namespace impalemail
