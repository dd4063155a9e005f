#include "log/decision_log.hpp"

#include "log/logger.hpp"

#include <string>

namespace impalemail {

namespace {

std::string prefix(std::string_view queue_id)
{
    std::string s = "queue=";
    s += queue_id.empty() ? std::string_view("NOQUEUE") : queue_id;
    return s;
}

void append_reply(std::string& line, const RcptDecision& d)
{
    const SmtpReply r = d.reply();
    line += " code=";
    line += r.code;
    line += " reason=\"";
    line += d.detail.empty() ? std::string_view(r.text) : std::string_view(d.detail);
    line += '"';
}

} // namespace

void log_rcpt_decision(PseudonymCache& pseudonym, std::string_view queue_id, std::string_view raw_rcpt,
                       const RcptDecision& d)
{
    std::string line = prefix(queue_id);
    switch (d.outcome) {
    case RcptOutcome::Passthrough:
        if (!logging::enabled(LogLevel::Debug))
            return;
        line += " rcpt=" + pseudonym(raw_rcpt) + " action=pass";
        logging::debug(line);
        return;
    case RcptOutcome::Accepted:
        line += " alias=" + d.alias + " owner=" + pseudonym(d.target) + " action=accept";
        logging::info(line);
        return;
    case RcptOutcome::Unknown:
        line += " alias=" + d.alias + " action=reject";
        append_reply(line, d);
        logging::info(line);
        return;
    case RcptOutcome::Malformed:
        line += " rcpt=" + pseudonym(raw_rcpt) + " action=reject";
        append_reply(line, d);
        logging::info(line);
        return;
    case RcptOutcome::StoreError:
        line += " alias=" + d.alias + " action=tempfail";
        append_reply(line, d);
        logging::warning(line);
        return;
    case RcptOutcome::CorruptValue:
        // Names the key so the admin can fix it; the value may be a mailbox
        // or an injection attempt, so it is never echoed.
        line += " alias=" + d.alias + " key=" + d.key + " action=tempfail";
        append_reply(line, d);
        line.insert(line.size() - 1, " (corrupt value)");
        logging::error(line);
        return;
    }
}

void log_rewrite(PseudonymCache& pseudonym, std::string_view queue_id, const EomPlan& plan)
{
    std::string line = prefix(queue_id);
    line += " action=rewrite aliases=" + std::to_string(plan.delete_recipients.size()) + " owners=";
    for (std::size_t i = 0; i < plan.add_recipients.size(); ++i) {
        if (i)
            line += ',';
        line += pseudonym(plan.add_recipients[i]);
    }
    line += " headers_removed=" + std::to_string(plan.delete_headers.size());
    logging::info(line);
}

} // namespace impalemail
