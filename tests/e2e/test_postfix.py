"""End-to-end: SMTP client -> Postfix (contrib/postfix config) -> impalemail-milter
-> Redis, with delivery into private Maildirs.

Mailboxes of the lab Postfix: alice@real.example, bob@real.example,
carol@other.example.  Aliases live in alias.example.org; each test makes its
own with `SET alias:<alias> <owner> EX n`.
"""

import re
import time

import pytest

import lab as labmod
from lab import raw_headers, split_message

ALICE = "alice@real.example"
BOB = "bob@real.example"
CAROL = "carol@other.example"
SENDER = "news@shop.test"

# Headers the milter must remove (its built-in default strip list).
STRIPPED = [
    "Disposition-Notification-To", "Return-Receipt-To", "X-Confirm-Reading-To",
    "Read-Receipt-To", "Received", "X-Received", "X-Originating-IP", "X-Sender-IP",
    "X-Mailer", "User-Agent", "X-MimeOLE", "Delivered-To", "X-Original-To", "Envelope-To",
]

# Headers virtual(8) / smtpd add themselves, which the milter never sees:
# Return-Path, X-Original-To and Delivered-To at final delivery, and smtpd's
# own Received header (its "for <alias>" clause removed by contrib's
# header_checks).
ADDED_BY_POSTFIX = {"return-path", "x-original-to", "delivered-to", "received"}


def make_message(token, to, cc=None, leaky=True, subject="Your order"):
    """A realistic message (CRLF) with headers to keep and headers to strip.

    Every leaky header value contains LEAK-<token>, so its survival anywhere
    in the delivered copy is easy to spot.
    """
    leak = f"LEAK-{token}"
    h = []
    if leaky:
        h += [
            f"Received: from laptop.{leak}.sender.test (dsl-203-0-113-7.isp.test [203.0.113.7])\r\n"
            f"\tby smtp.shop.test (Postfix) with ESMTPSA id 4XyZ{token}\r\n"
            f"\tfor <{to}>; Mon, 1 Jan 2024 10:00:00 +0000",
            f"Received: from [10.0.0.5] (helo={leak}) by relay.shop.test; Mon, 1 Jan 2024 09:59:59 +0000",
            f"X-Received: by 2002:a05:{leak} with SMTP id x1; Mon, 1 Jan 2024 09:59:58 +0000",
        ]
    h += [
        'From: "Shop Newsletter" <news@shop.test>',
        f"To: <{to}>",
    ]
    if cc:
        h.append(f"Cc: {cc}")
    h += [
        f"Subject: {subject} {token}",
        "Date: Mon, 1 Jan 2024 10:00:00 +0000",
        f"Message-ID: <{token}@shop.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "List-Id: Shop news <news.shop.test>",
        "List-Unsubscribe: <https://shop.test/unsub/123>, <mailto:unsub@shop.test>",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.test; s=s1;\r\n"
        "\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        "\tb=dGVzdHNpZ25hdHVyZQ==",
    ]
    if leaky:
        h += [
            f"Disposition-Notification-To: {leak}@dnt.sender.test",
            f"Return-Receipt-To: {leak}@rrt.sender.test",
            f"X-Confirm-Reading-To: {leak}@xcrt.sender.test",
            f"Read-Receipt-To: {leak}@rdrt.sender.test",
            "X-Originating-IP: [203.0.113.7]",
            f"X-Sender-IP: 203.0.113.7 {leak}",
            f"X-Mailer: ShopMailer 9.1 {leak}",
            f"User-Agent: Mozilla/5.0 {leak}",
            f"X-MimeOLE: Produced By Microsoft MimeOLE {leak}",
            f"Delivered-To: {leak}@old-hop.test",
            f"X-Original-To: {leak}@old-hop.test",
            f"Envelope-To: {leak}@old-hop.test",
        ]
    body = (
        "Hello,\r\n"
        "Received: from body-line (this line is body text, not a header)\r\n"
        "X-Mailer: also body text\r\n"
        ".a line starting with a dot\r\n"
        "..two dots\r\n"
        "trailing blanks   \r\n"
        "\r\n"
        "Caf=C3=A9 =E2=9C=93 quoted-printable=\r\n"
        " soft break\r\n"
        f"marker {token}\r\n"
    )
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


# --------------------------------------------------------------------------
# assertion helpers
# --------------------------------------------------------------------------
def assert_reply(reply, code, enhanced, context=""):
    assert reply is not None, f"no reply {context}"
    assert reply.code == code and reply.text.startswith(enhanced), \
        f"expected {code} {enhanced}, got {reply} {context}"


def accepted_and_delivered(lab, result, owner, token, copies=1):
    """DATA accepted, message left the queue, owner got `copies` copies."""
    assert result.data is not None and result.data.ok, f"not accepted: {result}"
    qid = result.queue_id
    left = lab.postfix.wait_settled(qid)
    assert left is None, f"message {qid} still queued (not rewritten?): {left}"
    msgs = lab.postfix.messages(owner, token)
    assert len(msgs) == copies, f"{owner} got {len(msgs)} copies, expected {copies}"
    return msgs


def settle(lab, result):
    """If the message was queued, wait until Postfix is done with it."""
    if result.queue_id:
        lab.postfix.wait_settled(result.queue_id)


def assert_nowhere(lab, token, mailboxes=(ALICE, BOB, CAROL)):
    for mb in mailboxes:
        got = lab.postfix.messages(mb, token)
        assert not got, f"{mb} unexpectedly received the message:\n{got[0].decode()[:800]}"


def own_received(raw):
    """The one Received header left: Postfix's own (the client's are stripped)."""
    received = headers_named(raw, "Received")
    assert len(received) == 1, f"expected only Postfix's own Received, got {received}"
    assert "by mx.test (Postfix)" in received[0], received[0]
    return received[0]


def headers_named(raw, name):
    return [t for n, t in raw_headers(raw) if n.lower() == name.lower()]


def header_value(text):
    return text.split(":", 1)[1].strip()


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def test_live_alias_delivered_to_owner_with_headers_stripped(lab, new_alias, token):
    alias = new_alias("shop")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    sent = make_message(token, alias)

    result = lab.send([alias], sent)

    assert_reply(result.rcpts[alias], 250, "2.1.5")
    assert_reply(result.data, 250, "2.0.0")
    (got,) = accepted_and_delivered(lab, result, ALICE, token)
    assert_nowhere(lab, token, (BOB, CAROL))

    sent_head = raw_headers(sent.replace(b"\r\n", b"\n"))
    got_head = raw_headers(got)
    got_names = [n.lower() for n, _ in got_head]

    # Everything the sender wrote that is not on the strip list arrives
    # byte for byte (folding included), in the same order.
    strip = {s.lower() for s in STRIPPED}
    kept = [(n, t) for n, t in sent_head if n.lower() not in strip]
    assert [x for x in got_head if x[0].lower() not in ADDED_BY_POSTFIX] == kept

    # No leaky header survived: every one of their values carried LEAK-token.
    head, body = split_message(got)
    assert f"LEAK-{token}".encode() not in head, head.decode()
    assert b"203.0.113.7" not in head
    for name in STRIPPED:
        if name.lower() not in ADDED_BY_POSTFIX:
            assert name.lower() not in got_names, f"{name} was not stripped"

    # What Postfix itself adds: one Received of its own (without the alias),
    # and the delivery headers, which name the owner, never the alias.
    received = own_received(got)
    assert alias.lower() not in received.lower(), f"alias leaked in Received: {received}"
    assert [header_value(t) for t in headers_named(got, "Delivered-To")] == [ALICE]
    assert [header_value(t) for t in headers_named(got, "X-Original-To")] in ([], [ALICE])
    assert [header_value(t) for t in headers_named(got, "Return-Path")] == [f"<{SENDER}>"]

    # The body is untouched, byte for byte (Maildir stores LF line ends).
    assert body == split_message(sent)[1]


def test_unknown_alias_is_rejected_550(lab, new_alias, token):
    alias = new_alias("never")
    result = lab.send([alias], make_message(token, alias))

    assert_reply(result.rcpts[alias], 550, "5.1.1")
    assert result.data is None
    assert_nowhere(lab, token)


def _normalized(reply, alias):
    """Reply text with the recipient address blanked (Postfix may quote it)."""
    return re.sub(re.escape(alias), "<ADDR>", reply.text, flags=re.I)


def test_expired_alias_is_rejected_like_unknown(lab, new_alias, token):
    never, expiring = new_alias("never"), new_alias("ttl")
    lab.redis.set_alias(expiring, ALICE, ttl=2)

    before = lab.send([expiring], make_message(token + "a", expiring))
    assert_reply(before.rcpts[expiring], 250, "2.1.5")
    accepted_and_delivered(lab, before, ALICE, token + "a")

    time.sleep(3)
    assert lab.redis.cli("EXISTS", f"alias:{expiring}") == "0"
    after = lab.send([expiring], make_message(token + "b", expiring))
    unknown = lab.send([never], make_message(token + "c", never))

    assert_reply(after.rcpts[expiring], 550, "5.1.1")
    assert_reply(unknown.rcpts[never], 550, "5.1.1")
    assert _normalized(after.rcpts[expiring], expiring) == _normalized(unknown.rcpts[never], never)
    assert after.data is None
    assert_nowhere(lab, token + "b")


def test_del_revokes_alias(lab, new_alias, token):
    alias = new_alias("revoke")
    lab.redis.set_alias(alias, BOB, ttl=300)
    first = lab.send([alias], make_message(token + "a", alias))
    accepted_and_delivered(lab, first, BOB, token + "a")

    assert lab.redis.cli("DEL", f"alias:{alias}") == "1"
    second = lab.send([alias], make_message(token + "b", alias))

    assert_reply(second.rcpts[alias], 550, "5.1.1")
    assert second.data is None
    assert_nowhere(lab, token + "b")


def test_persist_keeps_alias_alive(lab, new_alias, token):
    alias = new_alias("persist")
    key = f"alias:{alias}"
    lab.redis.set_alias(alias, ALICE, ttl=2)
    assert lab.redis.cli("PERSIST", key) == "1"
    assert lab.redis.cli("TTL", key) == "-1"

    time.sleep(3)       # past the original expiry
    result = lab.send([alias], make_message(token, alias))

    assert_reply(result.rcpts[alias], 250, "2.1.5")
    accepted_and_delivered(lab, result, ALICE, token)


def test_expire_extends_alias(lab, new_alias, token):
    alias = new_alias("extend")
    key = f"alias:{alias}"
    lab.redis.set_alias(alias, ALICE, ttl=2)
    assert lab.redis.cli("EXPIRE", key, "3600") == "1"
    assert 3500 < int(lab.redis.cli("TTL", key)) <= 3600

    time.sleep(3)       # past the original expiry
    result = lab.send([alias], make_message(token, alias))

    assert_reply(result.rcpts[alias], 250, "2.1.5")
    accepted_and_delivered(lab, result, ALICE, token)


def test_mixed_live_and_dead_recipients(lab, new_alias, token):
    live, dead = new_alias("live"), new_alias("dead")
    lab.redis.set_alias(live, BOB, ttl=300)

    result = lab.send([dead, live], make_message(token, live, cc=dead))

    assert_reply(result.rcpts[dead], 550, "5.1.1")
    assert_reply(result.rcpts[live], 250, "2.1.5")
    assert_reply(result.data, 250, "2.0.0")
    accepted_and_delivered(lab, result, BOB, token)
    assert_nowhere(lab, token, (ALICE, CAROL))


def test_two_aliases_of_one_owner_give_one_copy(lab, new_alias, token):
    a1, a2 = new_alias("one"), new_alias("two")
    lab.redis.set_alias(a1, ALICE, ttl=300)
    lab.redis.set_alias(a2, ALICE, ttl=300)

    result = lab.send([a1, a2], make_message(token, a1, cc=a2))

    assert_reply(result.rcpts[a1], 250, "2.1.5")
    assert_reply(result.rcpts[a2], 250, "2.1.5")
    accepted_and_delivered(lab, result, ALICE, token, copies=1)
    assert_nowhere(lab, token, (BOB, CAROL))


def test_alias_lookup_ignores_letter_case(lab, new_alias, token):
    alias = new_alias("shop-7k2")                       # stored lower case
    local = alias.split("@")[0]
    mixed = f"{local[:1].upper()}{local[1:4].upper()}{local[4:]}@Alias.Example.ORG"
    assert mixed != alias and mixed.lower() == alias
    lab.redis.set_alias(alias, BOB, ttl=300)

    result = lab.send([mixed], make_message(token, mixed))

    assert_reply(result.rcpts[mixed], 250, "2.1.5")
    (got,) = accepted_and_delivered(lab, result, BOB, token)
    # The mixed-case alias was deleted as a recipient (nothing parked for
    # hold.invalid, checked by the fixture), and Postfix's own Received
    # header lost its "for <Alias>" clause despite the case.
    received = own_received(got)
    assert alias not in received.lower(), received


CORRUPT_VALUES = {
    "not-an-address": "not an address {t}",
    "crlf-injection": "alice+{t}@real.example\r\nBcc: bob@real.example",
    "two-addresses": "alice+{t}@real.example bob+{t}@real.example",
    "empty": "",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_VALUES))
def test_corrupt_value_tempfails_and_is_not_logged(lab, new_alias, token, kind):
    value = CORRUPT_VALUES[kind].format(t=token)
    alias = new_alias("corrupt")
    key = f"alias:{alias}"
    lab.redis.cli("SET", key, value, "EX", "300")
    assert lab.redis.cli("STRLEN", key) == str(len(value.encode()))
    offset = lab.milter.log_offset()

    # carol (not an alias) makes sure the message itself is accepted, so we
    # can see that nobody but carol receives it.
    result = lab.send([alias, CAROL], make_message(token, alias, cc=CAROL))

    assert_reply(result.rcpts[alias], 451, "4.3.0")
    assert_reply(result.rcpts[CAROL], 250, "2.1.5")
    accepted_and_delivered(lab, result, CAROL, token)
    assert_nowhere(lab, token, (ALICE, BOB))

    log = lab.milter.log(offset)
    assert key in log, f"milter log does not name the key {key}:\n{log}"
    for piece in [value] + re.split(r"\s+", value):
        if len(piece) > 3:
            assert piece not in log, f"milter log contains the value {piece!r}:\n{log}"


def test_target_inside_alias_domain_tempfails(lab, new_alias, token):
    alias = new_alias("loop")
    target = new_alias("loop-target")          # also in alias.example.org
    lab.redis.set_alias(target, ALICE, ttl=300)  # even a live alias is no valid target
    key = f"alias:{alias}"
    lab.redis.set_alias(alias, target, ttl=300)
    offset = lab.milter.log_offset()

    result = lab.send([alias], make_message(token, alias))

    assert_reply(result.rcpts[alias], 451, "4.3.0")
    assert result.data is None
    assert_nowhere(lab, token)
    log = lab.milter.log(offset)
    assert key in log, f"milter log does not name the key {key}:\n{log}"
    assert target not in log, f"milter log contains the value {target}:\n{log}"


def test_redis_down_tempfails_then_recovers_in_same_process(lab, new_alias, token):
    alias = new_alias("redis")
    pid = lab.milter.pid
    lab.redis.set_alias(alias, ALICE, ttl=300)
    lab.redis.stop()
    try:
        down = lab.send([alias], make_message(token + "a", alias))
        assert_reply(down.rcpts[alias], 451, "4.3.0")
        assert down.data is None
    finally:
        lab.redis.start()

    lab.redis.set_alias(alias, ALICE, ttl=300)     # the lab Redis keeps no data
    # The milter may need a moment to reconnect; until then it must only
    # ever answer 4xx, never 5xx.
    replies = []
    deadline = time.monotonic() + 5
    while True:
        up = lab.send([alias], make_message(token + "b", alias))
        replies.append(up.rcpts[alias])
        if up.rcpts[alias].ok or time.monotonic() > deadline:
            break
        settle(lab, up)
        time.sleep(0.5)
    assert all(r.code == 451 for r in replies[:-1]), [str(r) for r in replies]
    assert_reply(up.rcpts[alias], 250, "2.1.5", f"(replies: {[str(r) for r in replies]})")
    accepted_and_delivered(lab, up, ALICE, token + "b")
    assert lab.milter.pid == pid and lab.milter.is_running()
    assert_nowhere(lab, token + "a")


def test_hung_redis_tempfails_quickly_and_leaves_no_stale_reply(lab, new_alias, token):
    """A Redis that accepts connections but never answers: the 250 ms timeout
    must turn into 451 well before Postfix's own milter timeouts (10 s).
    When Redis wakes up it answers the timed-out GET; that late reply must
    not be taken as the answer to the next lookup."""
    alias, other = new_alias("hung"), new_alias("after-hung")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    lab.redis.set_alias(other, BOB, ttl=300)
    lab.redis.pause()
    try:
        t0 = time.monotonic()
        result = lab.send([alias], make_message(token, alias))
        elapsed = time.monotonic() - t0
    finally:
        lab.redis.resume()

    assert_reply(result.rcpts[alias], 451, "4.3.0")
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert_nowhere(lab, token)

    time.sleep(0.5)
    after = lab.send([other], make_message(token + "b", other))
    if after.rcpts[other].code == 451:          # one reconnect attempt is fair
        time.sleep(1)
        after = lab.send([other], make_message(token + "b", other))
    assert_reply(after.rcpts[other], 250, "2.1.5")
    accepted_and_delivered(lab, after, BOB, token + "b")
    assert_nowhere(lab, token + "b", (ALICE, CAROL))


def test_milter_down_tempfails_then_recovers(lab, new_alias, token):
    alias = new_alias("nomilter")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    lab.milter.stop()
    try:
        down = lab.send([alias], make_message(token + "a", alias))
        settle(lab, down)
    finally:
        lab.milter.start()

    replies = down.all_replies()[1:]           # without the 220 greeting
    assert not any(500 <= r.code < 600 for r in replies), str(down)
    assert any(400 <= r.code < 500 for r in replies), str(down)
    assert down.data is None or not down.data.ok, str(down)
    assert_nowhere(lab, token + "a")

    up = lab.send([alias], make_message(token + "b", alias))
    assert_reply(up.rcpts[alias], 250, "2.1.5")
    accepted_and_delivered(lab, up, ALICE, token + "b")


def test_other_domains_pass_untouched_and_are_not_looked_up(lab, new_alias, token):
    sent = make_message(token, CAROL)
    alias = new_alias("seen")
    lab.redis.set_alias(alias, BOB, ttl=300)

    with lab.redis.monitor() as mon:
        result = lab.send([CAROL], sent)
        assert_reply(result.rcpts[CAROL], 250, "2.1.5")
        (got,) = accepted_and_delivered(lab, result, CAROL, token)
    assert not [line for line in mon.lines if "other.example" in line or "carol" in line], mon.lines

    # The sender's own trace headers are still there; the milter changed nothing.
    assert f"LEAK-{token}".encode() in split_message(got)[0]
    assert len(headers_named(got, "Received")) == 3      # 2 from the client + Postfix's own
    for name in ("X-Mailer", "User-Agent", "Disposition-Notification-To", "X-Originating-IP"):
        assert headers_named(got, name) == headers_named(sent.replace(b"\r\n", b"\n"), name)
    assert split_message(got)[1] == split_message(sent)[1]

    # Control: the same monitor does see an alias lookup.
    with lab.redis.monitor() as mon:
        check = lab.send([alias], make_message(token + "c", alias))
        settle(lab, check)
    assert any(f"alias:{alias}" in line for line in mon.lines), mon.lines


def test_milter_log_shows_no_mailbox_in_clear(lab, new_alias, token):
    a1, a2 = new_alias("privacy"), new_alias("privacy")
    lab.redis.set_alias(a1, ALICE, ttl=300)
    lab.redis.set_alias(a2, BOB, ttl=300)
    offset = lab.milter.log_offset()

    result = lab.send([a1, a2, CAROL], make_message(token, a1, cc=CAROL))
    accepted_and_delivered(lab, result, ALICE, token)
    accepted_and_delivered(lab, result, BOB, token)
    accepted_and_delivered(lab, result, CAROL, token)

    log = lab.milter.log(offset)
    assert a1 in log, f"expected the decision for {a1} in the milter log:\n{log}"
    whole = lab.milter.log()
    for mailbox in labmod.MAILBOXES:
        assert mailbox not in whole.lower(), f"{mailbox} appears in clear in the milter log"
        assert mailbox.split("@")[0] + "@" not in whole.lower()
