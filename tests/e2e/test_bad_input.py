"""Bad input through the real Postfix: odd RCPT forms, hostile Redis values,
huge and odd headers, a thousand recipients. Each case gets a clear SMTP
reply (5xx for what is malformed, 4xx for what might heal) or a correct
delivery, never a crash, a hang, or mail delivered where it should not go.
docs/bad-input.md is the table of these cases."""

import smtplib
import socket

import pytest

import lab as labmod
from test_postfix import ALICE, BOB, CAROL, assert_nowhere, make_message


def transaction(lab, rcpt_args, msg, mail_args=""):
    """One SMTP transaction with RCPT arguments sent verbatim (no quoting by
    smtplib). Returns ([(code, text) per RCPT], (code, text) of DATA or None,
    queue id or None)."""
    smtp = smtplib.SMTP("127.0.0.1", lab.postfix.port, timeout=120)
    smtp.command_encoding = "utf-8"  # SMTPUTF8 addresses
    try:
        smtp.ehlo("client.sender.test")
        code, text = smtp.docmd("MAIL", f"FROM:<news@shop.test>{mail_args}")
        assert code == 250, text
        replies = [smtp.docmd("RCPT", "TO:" + arg) for arg in rcpt_args]
        data = None
        if any(c == 250 for c, _ in replies):
            try:
                data = smtp.data(labmod._crlf(msg))
            except smtplib.SMTPDataError as e:
                data = (e.smtp_code, e.smtp_error)
        smtp.quit()
    finally:
        smtp.close()
    qid = None
    if data and data[0] == 250:
        qid = data[1].decode().rsplit(" ", 1)[-1]
    return [(c, t.decode(errors="replace")) for c, t in replies], data, qid


def wait_delivered(lab, qid, owner, token):
    assert lab.postfix.wait_settled(qid) is None, f"{qid} still queued (parked?)"
    msgs = lab.postfix.messages(owner, token)
    assert len(msgs) == 1, f"{owner} got {len(msgs)} copies"
    return msgs[0]


# (id, RCPT argument with {a} = the alias local part, expected reply, delivered to the owner)
RCPT_FORMS = [
    ("plain", "<{a}@alias.example.org>", "250", True),
    ("needless-quotes", '<"{a}"@alias.example.org>', "250", True),
    ("quoted-with-space", '<"{a} x"@alias.example.org>', "553 5.1.3", False),
    ("source-route", "<@relay.example,@b.example:{a}@alias.example.org>", "250", True),
    ("no-brackets", "{a}@alias.example.org", "250", True),
    ("esmtp-params", "<{a}@alias.example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.example", "250", True),
    ("trailing-root-dot", "<{A}@ALIAS.example.org.>", "250", True),
    ("stray-closing-bracket", "{a}@alias.example.org>", "553 5.1.3", False),
    ("unbalanced-bracket", "<{a}@alias.example.org", "501 5.1.3", False),   # refused by Postfix itself
    ("null-path", "<>", "501 5.1.3", False),                                # refused by Postfix itself
    ("local-part-65-octets", "<{a}" + "x" * 65 + "@alias.example.org>", "553 5.1.3", False),
    ("domain-over-255-octets", "<{a}@" + ("d" * 60 + ".") * 4 + "alias.example.org>", "501 5.1.3", False),
]


@pytest.mark.parametrize("form,arg,expected,delivered", RCPT_FORMS, ids=[f[0] for f in RCPT_FORMS])
def test_rcpt_forms(lab, new_alias, token, form, arg, expected, delivered):
    local = new_alias("form").split("@")[0]
    lab.redis.set_alias(f"{local}@alias.example.org", ALICE, ttl=300)
    replies, data, qid = transaction(lab, [arg.format(a=local, A=local.upper())],
                                     make_message(token, f"{local}@alias.example.org"))
    (code, text), = replies
    assert f"{code} {text}".startswith(expected), f"{form}: {code} {text}"
    if delivered:
        assert data[0] == 250
        wait_delivered(lab, qid, ALICE, token)
    else:
        assert data is None
        assert_nowhere(lab, token)
    assert lab.milter.is_running()


def test_smtputf8_local_part(lab, token):
    alias = f"jürgen-{token}@alias.example.org"
    lab.redis.set_alias(alias, ALICE, ttl=300)
    replies, data, qid = transaction(lab, [f"<J\u00fcrgen-{token}@alias.example.org>"],
                                     make_message(token, "undisclosed-recipients:;"), mail_args=" SMTPUTF8")
    assert replies[0][0] == 250, replies
    wait_delivered(lab, qid, ALICE, token)


def test_local_part_of_64_octets_is_an_alias_like_any_other(lab, token):
    local = (token + "x" * 64)[:64]
    lab.redis.set_alias(f"{local}@alias.example.org", BOB, ttl=300)
    replies, data, qid = transaction(lab, [f"<{local}@alias.example.org>"], make_message(token, "x@y.example"))
    assert replies[0][0] == 250, replies
    wait_delivered(lab, qid, BOB, token)


def set_raw(lab, key, value: bytes):
    """SET with arbitrary bytes (redis-cli cannot pass NUL)."""
    def bulk(b):
        return b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection(("127.0.0.1", lab.redis.port), timeout=10) as s:
        s.sendall(b"*5\r\n" + bulk(b"SET") + bulk(key.encode()) + bulk(value) + bulk(b"EX") + bulk(b"300"))
        assert s.recv(16).startswith(b"+OK")


HOSTILE_VALUES = {
    "one-megabyte": b"a" * (1 << 20) + b"@real.example",
    "binary": bytes(range(256)),
    "nul-inside": b"alice@real.example\x00bob@real.example",
    "empty": b"",
    "crlf": b"alice@real.example\r\nRCPT TO:<bob@real.example>",
    "several-addresses": b"alice@real.example,bob@real.example",
    "angle-brackets": b"<alice@real.example>",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_VALUES))
def test_hostile_redis_values_tempfail(lab, new_alias, token, kind):
    alias = new_alias("hostile")
    set_raw(lab, f"alias:{alias}", HOSTILE_VALUES[kind])
    offset = lab.milter.log_offset()
    replies, data, _ = transaction(lab, [f"<{alias}>"], make_message(token, alias))
    assert replies[0][0] == 451 and replies[0][1].startswith("4.3.0"), replies
    assert data is None
    assert_nowhere(lab, token)
    log = lab.milter.log(offset)
    assert f"key=alias:{alias}" in log and "corrupt value" in log, log
    assert "real.example" not in log


def test_thousand_recipients_mixing_live_dead_and_foreign(lab, token):
    live = [f"m{i}-{token}@alias.example.org" for i in range(300)]
    dead = [f"d{i}-{token}@alias.example.org" for i in range(500)]
    owners = [ALICE, BOB]
    lab.redis.cli("MSET", *[x for i, a in enumerate(live) for x in (f"alias:{a}", owners[i % 2])])
    rcpts = []
    for i in range(1000):  # interleaved: live, dead, dead, foreign, live, ...
        if i % 5 == 3 and len(rcpts) - len(live) - len(dead) < 200:
            rcpts.append(CAROL)
        elif i % 5 in (0, 4) and live:
            rcpts.append(live.pop())
        elif dead:
            rcpts.append(dead.pop())
        elif live:
            rcpts.append(live.pop())
        else:
            rcpts.append(CAROL)
    assert len(rcpts) == 1000
    # Postfix drops a client after smtpd_hard_error_limit (20) refusals, and
    # slows it down after the soft limit: lift both for this one transaction.
    limits = {n: lab.postfix.param(n) for n in ("smtpd_hard_error_limit", "smtpd_soft_error_limit",
                                                  "smtpd_error_sleep_time")}
    lab.postfix.postconf("smtpd_hard_error_limit=2000", "smtpd_soft_error_limit=2000", "smtpd_error_sleep_time=0")
    lab.postfix.reload()
    try:
        replies, data, qid = transaction(lab, [f"<{r}>" for r in rcpts], make_message(token, "many@shop.test"))
    finally:
        lab.postfix.postconf(*[f"{n}={v}" for n, v in limits.items()])
        lab.postfix.reload()
    by_kind = {"live": [], "dead": [], "foreign": []}
    for r, (code, _) in zip(rcpts, replies):
        kind = "foreign" if r == CAROL else ("live" if r.startswith("m") else "dead")
        by_kind[kind].append(code)
    assert set(by_kind["live"]) == {250} and len(by_kind["live"]) == 300
    assert set(by_kind["dead"]) == {550} and len(by_kind["dead"]) == 500
    assert set(by_kind["foreign"]) == {250} and len(by_kind["foreign"]) == 200
    assert data[0] == 250, data
    assert lab.postfix.wait_settled(qid, timeout=60) is None
    for mailbox in (ALICE, BOB, CAROL):
        assert len(lab.postfix.messages(mailbox, token)) == 1, mailbox


def test_ten_thousand_headers(lab, new_alias, token):
    alias = new_alias("headers")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    head, body = make_message(token, alias, leaky=False).split(b"\r\n\r\n", 1)
    extra = []
    for i in range(10000):
        if i % 2:
            extra.append(b"X-Originating-IP: [203.0.113.%d] LEAK-%s" % (i % 250, token.encode()))
        else:
            extra.append(b"X-Keep-%d: kept" % i)
    msg = head + b"\r\n" + b"\r\n".join(extra) + b"\r\n\r\n" + body
    replies, data, qid = transaction(lab, [f"<{alias}>"], msg)
    assert replies[0][0] == 250 and data[0] == 250, (replies, data)
    got = wait_delivered(lab, qid, ALICE, token)
    assert b"LEAK-" + token.encode() not in got
    assert len([1 for line in got.split(b"\n") if line.startswith(b"X-Keep-")]) == 5000


def test_one_megabyte_header(lab, new_alias, token):
    """Postfix keeps at most header_size_limit (100 KB) of one header; the
    milter must cope with what it gets, and strip what follows."""
    alias = new_alias("bighead")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    head, body = make_message(token, alias, leaky=False).split(b"\r\n\r\n", 1)
    big = b"X-Big: " + b"\r\n\t".join([b"b" * 70] * 15000)  # 1.08 MB, folded
    msg = head + b"\r\n" + big + b"\r\nX-Mailer: LEAK-" + token.encode() + b"\r\n\r\n" + body
    replies, data, qid = transaction(lab, [f"<{alias}>"], msg)
    assert replies[0][0] == 250 and data[0] == 250, (replies, data)
    got = wait_delivered(lab, qid, ALICE, token)
    assert b"LEAK-" + token.encode() not in got
    assert lab.milter.is_running()


def test_odd_header_names(lab, new_alias, token):
    alias = new_alias("oddnames")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    head, body = make_message(token, alias, leaky=False).split(b"\r\n\r\n", 1)
    odd = [b"X-Odd!#$%&'*+.^_`|~: kept-1", b"X_Under_Score: kept-2", b"x-mailer:LEAK-" + token.encode(),
           b"RECEIVED: from LEAK-" + token.encode(), b"X-Mailer : LEAK-" + token.encode()]
    msg = head + b"\r\n" + b"\r\n".join(odd) + b"\r\n\r\n" + body
    replies, data, qid = transaction(lab, [f"<{alias}>"], msg)
    assert replies[0][0] == 250 and data[0] == 250, (replies, data)
    got = wait_delivered(lab, qid, ALICE, token)
    assert b"kept-1" in got and b"kept-2" in got
    assert b"LEAK-" + token.encode() not in got, got.decode(errors="replace")[:2000]
