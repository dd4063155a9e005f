#pragma once
// The per-transaction decisions: which recipients to accept, refuse or
// tempfail, and the rewrite plan carried out at end of message. Pure C++:
// it talks to an AliasStore and returns values; the protocol adapter acts.

#include "core/alias_policy.hpp"
#include "core/alias_store.hpp"
#include "core/header_policy.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace impalemail {

enum class RcptOutcome {
    Passthrough,   // not in an alias domain: no lookup, untouched
    Accepted,      // live alias with a valid target
    Unknown,       // no such key (never existed, expired or revoked)
    Malformed,     // in an alias domain but not a usable address
    StoreError,    // the store could not answer
    CorruptValue,  // the key holds something that is not a valid target
};

struct SmtpReply {
    const char* code;  // nullptr: the MTA's own reply stands
    const char* xcode;
    const char* text;
};

struct RcptDecision {
    RcptOutcome outcome = RcptOutcome::Passthrough;
    std::string alias;  // normalized alias address, when one was identified
    std::string key;    // store key looked up, when one was
    std::string target; // owner mailbox, only when Accepted
    std::string detail; // why, for logs; never contains a stored value

    SmtpReply reply() const noexcept;
};

struct EomPlan {
    std::vector<std::string> delete_recipients; // raw argv[0] strings, exactly as the MTA sent them
    std::vector<std::string> add_recipients;    // distinct targets, first-seen order
    std::vector<HeaderDeletion> delete_headers; // last index first, per name
    std::vector<std::string> aliases;           // distinct normalized aliases, for statistics

    bool empty() const noexcept { return delete_recipients.empty(); }
};

class MessageSession {
public:
    // Both must outlive the session.
    MessageSession(const AliasPolicy& policy, AliasStore& store) : policy_(&policy), store_(&store) {}

    RcptDecision on_recipient(std::string_view raw_argument);
    // Returns whether the header is one the policy strips.
    bool on_header(std::string_view name) { return tally_.observe(name, policy_->strip); }

    bool has_aliases() const noexcept { return !accepted_.empty(); }
    std::size_t alias_count() const noexcept { return accepted_.size(); }
    // Empty when no alias recipient was accepted: the message passes untouched.
    EomPlan plan() const;

    void reset() noexcept;

private:
    struct AcceptedAlias {
        std::string raw;
        std::string target;
        std::string alias; // normalized
    };
    const AliasPolicy* policy_;
    AliasStore* store_;
    std::vector<AcceptedAlias> accepted_;
    HeaderTally tally_;
};

} // namespace impalemail
