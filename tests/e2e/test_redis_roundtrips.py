"""Exactly one Redis round trip per alias recipient, none for any other.

Counted where it happens, on the Redis server, two ways around N messages
sent through the real Postfix, each with K alias recipients and M recipients
outside the alias domains:
- INFO commandstats: the GET count grows by exactly N*K;
- MONITOR: the commands clients sent (not those run inside Lua scripts) are
  exactly one GET of each alias's key per message, and apart from them only
  the per-alias statistics updates (EVAL), which the milter pipelines without
  waiting for their replies (README: statistics), so they add no round trip.
  No PING, AUTH, SELECT, EXISTS, TTL or second GET.
The milter's GET happens at RCPT time, so by the time the 250 for DATA is
back every lookup of that message has reached Redis.
"""

import re
from collections import Counter

import pytest

ALICE = "alice@real.example"
BOB = "bob@real.example"
CAROL = "carol@other.example"     # owner of every alias here
SENDER = "news@shop.test"
NON_ALIAS = [ALICE, BOB]
# Commands the milter may send without waiting for the reply.
PIPELINED = {"eval", "evalsha"}
# +1796423086.812101 [0 127.0.0.1:55738] "GET" "alias:x@alias.example.org"
MONITOR_LINE = re.compile(r'^\+?\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?')


def get_calls(redis):
    for line in redis.cli("INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_get:calls=(\d+)", line.strip())
        if m:
            return int(m.group(1))
    return 0


def client_commands(lines):
    """(command, first argument) of every command a client sent, in order;
    commands run by Lua scripts ("[0 lua]") and our own INFO left out."""
    out = []
    for line in lines:
        m = MONITOR_LINE.match(line)
        if m and m.group(1) != "lua" and m.group(2).lower() != "info":
            out.append((m.group(2).lower(), m.group(3)))
    return out


def message(token, i):
    return (f"From: <{SENDER}>\r\nTo: undisclosed-recipients:;\r\n"
            f"Subject: round trips {token} {i}\r\nMessage-ID: <{token}.{i}@shop.test>\r\n"
            f"X-Mailer: counted\r\n\r\nbody {token}\r\n").encode()


def check(cmds, expected_gets, alias_events):
    gets = Counter(arg for cmd, arg in cmds if cmd == "get")
    assert gets == expected_gets, f"GETs by key: {dict(gets)}"
    others = Counter(cmd for cmd, _ in cmds if cmd != "get")
    assert set(others) <= PIPELINED, f"commands other than GET and statistics: {dict(others)}"
    assert sum(others.values()) <= alias_events, f"more statistics updates than alias RCPTs: {dict(others)}"


@pytest.mark.parametrize("n,k,m", [
    (3, 1, 0),   # one alias per message
    (2, 3, 2),   # several aliases next to ordinary recipients
    (2, 0, 2),   # no alias at all: no lookup
])
def test_one_get_per_alias_recipient(lab, new_alias, token, n, k, m):
    aliases = [new_alias("rt") for _ in range(k)]
    for a in aliases:
        lab.redis.set_alias(a, CAROL, ttl=600)
    others = NON_ALIAS[:m]
    # Interleave alias and non-alias recipients.
    rcpts = [r for pair in zip(aliases, others) for r in pair] + aliases[len(others):] + others[len(aliases):]

    before = get_calls(lab.redis)
    with lab.redis.monitor() as mon:
        for i in range(n):
            result = lab.send(rcpts, message(token, i))
            assert result.data is not None and result.data.ok, f"message {i}: {result}"
            assert all(r.ok for r in result.rcpts.values()), f"message {i}: {result}"
    assert get_calls(lab.redis) - before == n * k
    check(client_commands(mon.lines), Counter({f"alias:{a}": n for a in aliases}), n * k)

    # The messages really went through (rewritten to the owner when aliased).
    if k:
        assert len(lab.postfix.wait_for_delivery(CAROL, n, match=token)) == n
    for r in others:
        assert len(lab.postfix.wait_for_delivery(r, n, match=token)) == n


def test_refused_alias_costs_one_get_too(lab, new_alias, token):
    """An unknown alias (550) is one GET as well; the live one next to it is
    one more; the ordinary recipient none."""
    n = 3
    live, dead = new_alias("live"), new_alias("dead")
    lab.redis.set_alias(live, CAROL, ttl=600)

    before = get_calls(lab.redis)
    with lab.redis.monitor() as mon:
        for i in range(n):
            result = lab.send([dead, live, ALICE], message(token, i))
            assert result.rcpts[dead].code == 550, f"message {i}: {result}"
            assert result.rcpts[live].ok and result.rcpts[ALICE].ok, f"message {i}: {result}"
            assert result.data is not None and result.data.ok, f"message {i}: {result}"
    assert get_calls(lab.redis) - before == 2 * n
    check(client_commands(mon.lines), Counter({f"alias:{live}": n, f"alias:{dead}": n}), 2 * n)
    assert len(lab.postfix.wait_for_delivery(CAROL, n, match=token)) == n
    assert len(lab.postfix.wait_for_delivery(ALICE, n, match=token)) == n
