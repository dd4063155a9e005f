#pragma once
// One log line per decision, in the key=value style mail admins grep:
//   queue=4FZ1x2 alias=shop@alias.example.org owner=h:1f0c... action=accept
// Owner mailboxes and recipients outside the alias domains only ever appear
// as pseudonyms; alias addresses and store keys appear as they are.

#include "core/message_session.hpp"
#include "log/pseudonym_cache.hpp"

#include <string_view>

namespace impalemail {

void log_rcpt_decision(PseudonymCache& pseudonym, std::string_view queue_id, std::string_view raw_rcpt,
                       const RcptDecision& decision);

void log_rewrite(PseudonymCache& pseudonym, std::string_view queue_id, const EomPlan& plan);

} // namespace impalemail
