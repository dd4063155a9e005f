"""End-to-end: SMTP client -> Sendmail 8.17 (contrib/sendmail config) ->
impalemail-milter -> Redis, relaying to an smtp-sink that records each final
envelope.

The Sendmail packages are downloaded and unpacked privately (never
installed: they conflict with Postfix), see sendmail_lab.py.  The session's
Redis is shared with the Postfix tests; this module runs its own milter,
whose socket is the one the Sendmail configuration points to.
"""

import re
import smtplib
import time

import pytest

import lab as labmod
import sendmail_lab as smlab
from lab import raw_headers, split_message
from sendmail_lab import queue_id_of
from test_postfix import STRIPPED, assert_reply, header_value, headers_named, make_message

ALICE = "alice@real.example"
BOB = "bob@real.example"
CAROL = "carol@other.example"
SENDER = "news@shop.test"


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sink(workdir):
    with labmod.running(smlab.SmtpSink(workdir / "sm-sink"), "smtp-sink") as s:
        yield s


@pytest.fixture(scope="module")
def sm_milter(workdir, redis):
    m = labmod.Milter(labmod.milter_binary(), workdir / "sm-milter", redis.port,
                      workdir / "sm-milter" / "milter.sock")
    with labmod.running(m, "the milter"):
        yield m


def running_sendmail(sm):
    return labmod.running(sm, "the lab Sendmail", start=lambda: (sm.setup(), sm.start()))


@pytest.fixture(scope="module")
def sendmail(workdir, sm_milter, sink):
    with running_sendmail(smlab.Sendmail(workdir / "sendmail", sm_milter.socket_path, sink)) as sm:
        yield sm


@pytest.fixture(scope="module")
def bare_sendmail(workdir, sink):
    """contrib/sendmail with its INPUT_MAIL_FILTER line removed: as if the
    milter had been left out of the configuration."""
    sm = smlab.Sendmail(workdir / "sendmail-bare", workdir / "sendmail-bare" / "no.sock", sink,
                        with_milter=False)
    with running_sendmail(sm):
        yield sm
        sm.clear_queue()


@pytest.fixture(scope="module")
def no_ft_sendmail(workdir, sink):
    """contrib/sendmail with F=T removed from the milter line, and the milter
    socket pointing nowhere: what happens if an admin forgets F=T."""
    sm = smlab.Sendmail(workdir / "sendmail-noft", workdir / "sendmail-noft" / "dead.sock", sink,
                        fragment_edit=lambda text: text.replace(", F=T,", ","))
    with running_sendmail(sm):
        yield sm
        sm.clear_queue()


class SmLab:
    def __init__(self, redis, milter, sendmail, sink):
        self.redis = redis
        self.milter = milter
        self.sendmail = sendmail
        self.sink = sink

    def send(self, rcpts, msg, mail_from=SENDER):
        return self.sendmail.send(rcpts, msg, mail_from)


@pytest.fixture
def sm(redis, sm_milter, sendmail, sink):
    """Redis, milter, Sendmail and smtp-sink, checked after each test: every
    service still running and the Sendmail queue empty (nothing held)."""
    yield SmLab(redis, sm_milter, sendmail, sink)
    problems = labmod.revive(redis, sm_milter)
    if not sendmail.is_running():
        problems.append("sendmail is not running; log tail:\n" + labmod.tail(sendmail.log(), 20))
        sendmail.start()
    try:
        sendmail.wait_queue_empty(timeout=15)
    except labmod.LabError as e:
        problems.append(f"the Sendmail queue is not empty:\n{e}")
        sendmail.clear_queue()
    if problems:
        pytest.fail("after the test: " + "; ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def relayed(sm, result, token, copies=1):
    """DATA accepted, the message left Sendmail's queue, and smtp-sink got
    `copies` transactions containing token.  Returns them."""
    assert result.data is not None and result.data.ok, f"not accepted: {result}"
    qid = queue_id_of(result.data)
    assert qid, f"no queue id in {result.data}"
    detail = lambda: sm.sendmail.mailq() + "\n" + labmod.tail(sm.sendmail.log(), 30)  # noqa: E731
    try:
        labmod.wait_until(lambda: qid not in sm.sendmail.queue_ids(), 20,
                          f"{qid} to leave the Sendmail queue", interval=0.1)
    except labmod.LabError as e:
        raise AssertionError(f"{e}\n{detail()}") from None
    got = sm.sink.wait_for(token, copies, detail=detail)
    assert len(got) == copies, f"{len(got)} copies at smtp-sink, expected {copies}"
    return got


def nothing_relayed(sm, token, settle=0.5):
    time.sleep(settle)
    got = sm.sink.messages(token)
    assert not got, f"smtp-sink unexpectedly got: {got[0].rcpts}\n{got[0].raw.decode()[:800]}"


def own_received(raw):
    """The one Received header left: Sendmail's own (the client's are stripped)."""
    received = headers_named(raw, "Received")
    assert len(received) == 1, f"expected only Sendmail's own Received, got {received}"
    assert re.search(r"by sm\.test \(8\.17", received[0]), received[0]
    return received[0]


def mixed_case(alias):
    local = alias.split("@")[0]
    mixed = f"{local[:1].upper()}{local[1:4].upper()}{local[4:]}@Alias.Example.ORG"
    assert mixed != alias and mixed.lower() == alias
    return mixed


# --------------------------------------------------------------------------
# the configuration itself (m4 only, no daemon)
# --------------------------------------------------------------------------
def test_fragment_drops_for_clause_from_received_header():
    frag = (smlab.CONTRIB_SENDMAIL / "impalemail.mc").read_text()
    mailers = "MAILER(`local')dnl\nMAILER(`smtp')dnl\n"
    stock = smlab.m4_cf("OSTYPE(`linux')dnl\n" + mailers)
    ours = smlab.m4_cf("OSTYPE(`linux')dnl\n" + frag + mailers)
    stock_rec = smlab.cf_header_definition(stock, "Received")
    ours_rec = smlab.cf_header_definition(ours, "Received")
    # Stock Sendmail writes "for <rcpt>" for a single recipient ...
    assert "for $u" in stock_rec, stock_rec
    # ... ours is the same header without that clause.
    assert "for $u" not in ours_rec and "$?u" in ours_rec, ours_rec
    assert ours_rec == stock_rec.replace("\tfor $u; $|;", "\t; $|;"), ours_rec
    # The rest of what the fragment promises is in the .cf.
    assert re.search(r"^Ximpalemail, S=unix:/run/impalemail/milter.sock, F=T, "
                     r"T=C:10s;S:10s;R:10s;E:60s$", ours, re.M), "X line"
    assert re.search(r"^O InputMailFilters=impalemail$", ours, re.M)
    for stage in ("envfrom", "envrcpt", "eom"):
        m = re.search(rf"^O Milter\.macros\.{stage}=(.*)$", ours, re.M)
        assert m and "i" in [x.strip() for x in m.group(1).split(",")], (stage, m)
    assert re.search(r"^Mimpalehold,\s+P=/usr/local/libexec/impalemail-hold,", ours, re.M)
    assert re.search(r"^C\{VirtHost\}alias\.example\.org$", ours, re.M)
    assert re.search(r"^Kvirtuser hash /etc/mail/virtusertable$", ours, re.M)
    assert re.search(r"^Kmailertable hash /etc/mail/mailertable$", ours, re.M)


# --------------------------------------------------------------------------
# through a running Sendmail
# --------------------------------------------------------------------------
def test_live_alias_relayed_to_owner_only_with_headers_stripped(sm, new_alias, token):
    alias = new_alias("shop")
    sm.redis.set_alias(alias, ALICE, ttl=300)
    offset = sm.milter.log_offset()
    sent = make_message(token, alias)

    result = sm.send([alias], sent)

    assert_reply(result.rcpts[alias], 250, "2.1.5")
    assert_reply(result.data, 250, "2.0.0")
    (got,) = relayed(sm, result, token)

    # The final envelope: the owner, only the owner; the sender unchanged.
    assert got.rcpts == [ALICE]
    assert got.mail_from == SENDER

    sent_head = raw_headers(sent.replace(b"\r\n", b"\n"))
    got_head = raw_headers(got.raw)
    # Every header the sender wrote that is not on the strip list arrives
    # byte for byte (folding included), in the same order; the only header
    # Sendmail adds is its own Received (From/To/Subject/Date/Message-ID are
    # all present, so it adds none of those).
    strip = {s.lower() for s in STRIPPED}
    kept = [(n, t) for n, t in sent_head if n.lower() not in strip]
    assert [x for x in got_head if x[0].lower() != "received"] == kept
    for name in ("From", "To", "Subject", "Message-ID", "DKIM-Signature", "Date"):
        assert headers_named(got.raw, name) == headers_named(sent.replace(b"\r\n", b"\n"), name)

    # The header indexes: the message carried two client Received headers
    # (plus X-Received).  Sendmail's own Received is not shown to the milter
    # and not counted by smfi_chgheader, so deleting Received 2 then 1
    # removes exactly the two client ones and leaves Sendmail's.
    head, body = split_message(got.raw)
    assert f"LEAK-{token}".encode() not in head, head.decode()
    assert b"203.0.113.7" not in head
    got_names = {n.lower() for n, _ in got_head}
    for name in STRIPPED:
        if name.lower() != "received":
            assert name.lower() not in got_names, f"{name} was not stripped"
    received = own_received(got.raw)
    assert alias not in received.lower() and "for <" not in received, received
    assert f"with ESMTP id {queue_id_of(result.data)}" in received, received

    # The body is untouched, byte for byte.
    assert body == split_message(sent)[1]

    # Sendmail's log agrees; the milter knew the queue id already at RCPT
    # (Sendmail sends macro i from MAIL on).
    qid = queue_id_of(result.data)
    log = sm.sendmail.log()
    assert re.search(rf"{qid}: Milter \(impalemail\) delete: rcpt <{re.escape(alias)}>, naddrs=1", log)
    assert re.search(rf"{qid}: Milter \(impalemail\) add: rcpt: {re.escape(ALICE)}", log)
    assert len(re.findall(rf"{qid}: Milter \(impalemail\) delete: header Received:", log)) == 2
    assert re.search(rf"queue={qid} alias={re.escape(alias)} owner=h:[0-9a-f]{{16}} action=accept",
                     sm.milter.log(offset)), sm.milter.log(offset)


def test_mixed_case_alias(sm, new_alias, token):
    alias = new_alias("shop-7k2")                      # stored lower case
    mixed = mixed_case(alias)
    sm.redis.set_alias(alias, BOB, ttl=300)

    result = sm.send([f"<{mixed}>"], make_message(token, mixed))

    assert_reply(result.rcpts[f"<{mixed}>"], 250, "2.1.5")
    assert mixed in result.rcpts[f"<{mixed}>"].text
    (got,) = relayed(sm, result, token)
    assert got.rcpts == [BOB]
    # delrcpt with the address exactly as sent (brackets, case) removed it.
    qid = queue_id_of(result.data)
    assert re.search(rf"{qid}: Milter \(impalemail\) delete: rcpt <{re.escape(mixed)}>, naddrs=1",
                     sm.sendmail.log())
    received = own_received(got.raw)
    assert alias not in received.lower(), received


def test_unknown_alias_is_rejected_550_and_nothing_relayed(sm, new_alias, token):
    alias = new_alias("never")

    result = sm.send([alias], make_message(token, alias))

    assert_reply(result.mail, 250, "2.1.0")
    assert_reply(result.rcpts[alias], 550, "5.1.1")
    assert "unknown alias" in result.rcpts[alias].text
    assert result.data is None
    nothing_relayed(sm, token)
    assert not sm.sendmail.queue_ids()


def test_mixed_live_and_dead_recipients(sm, new_alias, token):
    live1, dead, live2 = new_alias("live"), new_alias("dead"), new_alias("live")
    sm.redis.set_alias(live1, BOB, ttl=300)
    sm.redis.set_alias(live2, ALICE, ttl=300)

    # dead between two live ones, plus a recipient outside the alias domain.
    result = sm.send([live1, dead, CAROL, live2], make_message(token, live1, cc=dead))

    assert_reply(result.rcpts[live1], 250, "2.1.5")
    assert_reply(result.rcpts[dead], 550, "5.1.1")
    assert_reply(result.rcpts[CAROL], 250, "2.1.5")
    assert_reply(result.rcpts[live2], 250, "2.1.5")
    # Each reply names its own address (each alias stays a recipient of its own).
    for addr in (live1, dead, CAROL, live2):
        assert f"<{addr}>" in result.rcpts[addr].text, result.rcpts[addr]
    assert_reply(result.data, 250, "2.0.0")
    (got,) = relayed(sm, result, token)
    assert sorted(got.rcpts) == sorted([BOB, ALICE, CAROL])


def test_two_aliases_of_one_owner_give_one_envelope_recipient(sm, new_alias, token):
    a1, a2 = new_alias("one"), new_alias("two")
    sm.redis.set_alias(a1, ALICE, ttl=300)
    sm.redis.set_alias(a2, ALICE, ttl=300)

    result = sm.send([a1, a2], make_message(token, a1, cc=a2))

    assert_reply(result.rcpts[a1], 250, "2.1.5")
    assert_reply(result.rcpts[a2], 250, "2.1.5")
    (got,) = relayed(sm, result, token)
    assert got.rcpts == [ALICE]


def test_other_domains_pass_untouched(sm, token):
    sent = make_message(token, CAROL)

    result = sm.send([CAROL], sent)

    assert_reply(result.rcpts[CAROL], 250, "2.1.5")
    (got,) = relayed(sm, result, token)
    assert got.rcpts == [CAROL]
    # The milter changed nothing: both client Received headers and the rest
    # are still there, plus Sendmail's own (which, for one recipient, would
    # say "for <carol@...>" in stock Sendmail).
    received = headers_named(got.raw, "Received")
    assert len(received) == 3, received
    assert "by sm.test" in received[0] and "for <" not in received[0], received[0]
    assert f"LEAK-{token}".encode() in split_message(got.raw)[0]
    sent_lf = sent.replace(b"\r\n", b"\n")
    for name in ("X-Mailer", "User-Agent", "Disposition-Notification-To", "X-Originating-IP"):
        assert headers_named(got.raw, name) == headers_named(sent_lf, name)
    assert split_message(got.raw)[1] == split_message(sent)[1]


def test_redis_down_tempfails_then_recovers_in_same_process(sm, new_alias, token):
    alias = new_alias("redis")
    pid = sm.milter.pid
    sm.redis.set_alias(alias, ALICE, ttl=300)
    sm.redis.stop()
    try:
        down = sm.send([alias], make_message(token + "a", alias))
        assert_reply(down.mail, 250, "2.1.0")
        assert_reply(down.rcpts[alias], 451, "4.3.0")
        assert down.data is None
    finally:
        sm.redis.start()

    sm.redis.set_alias(alias, ALICE, ttl=300)     # the lab Redis keeps no data
    replies = []
    deadline = time.monotonic() + 5
    while True:
        up = sm.send([alias], make_message(token + "b", alias))
        replies.append(up.rcpts[alias])
        if up.rcpts[alias].ok or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(r.code == 451 for r in replies[:-1]), [str(r) for r in replies]
    assert_reply(up.rcpts[alias], 250, "2.1.5", f"(replies: {[str(r) for r in replies]})")
    (got,) = relayed(sm, up, token + "b")
    assert got.rcpts == [ALICE]
    assert sm.milter.pid == pid and sm.milter.is_running()
    nothing_relayed(sm, token + "a", settle=0)


def test_milter_down_tempfails_everything_then_recovers(sm, new_alias, token):
    """F=T: with the milter unreachable Sendmail answers 4xx (to MAIL FROM),
    for alias and non-alias mail alike, and relays nothing."""
    alias = new_alias("nomilter")
    sm.redis.set_alias(alias, ALICE, ttl=300)
    sm.milter.stop()
    try:
        down = sm.send([alias], make_message(token + "a", alias))
        other = sm.send([CAROL], make_message(token + "c", CAROL))
    finally:
        sm.milter.start()

    for res in (down, other):
        replies = res.all_replies()[1:]           # without the 220 greeting
        assert not any(500 <= r.code < 600 for r in replies), str(res)
        assert_reply(res.mail, 451, "4.3.2")
        assert res.data is None, str(res)
    # (Connection refused, or "local socket name ... unsafe" once the socket
    # file is gone: Sendmail's wording for a missing socket.)
    assert "Milter (impalemail): to error state" in sm.sendmail.log()
    assert "Milter: initialization failed, temp failing commands" in sm.sendmail.log()
    nothing_relayed(sm, token + "a")
    nothing_relayed(sm, token + "c", settle=0)
    assert not sm.sendmail.queue_ids()

    up = sm.send([alias], make_message(token + "b", alias))
    assert_reply(up.rcpts[alias], 250, "2.1.5")
    (got,) = relayed(sm, up, token + "b")
    assert got.rcpts == [ALICE]


def test_sendmail_bs_through_swaks_pipe(sm, new_alias, token):
    """sendmail -bs (SMTP on stdin/stdout, no daemon) calls the milter too."""
    alias, dead = new_alias("bs"), new_alias("bs-dead")
    sm.redis.set_alias(alias, BOB, ttl=300)
    sent = make_message(token, alias)

    rc, transcript = sm.sendmail.swaks_pipe([alias, dead], sent)

    assert rc == 0, transcript              # swaks: 0 = message accepted
    assert re.search(rf"<-\s+250 2\.1\.5 <{re.escape(alias)}>\.\.\. Recipient ok", transcript), transcript
    assert re.search(rf"<\*\*\s+550 5\.1\.1 <{re.escape(dead)}>\.\.\. Recipient address rejected: "
                     r"unknown alias", transcript), transcript
    m = re.search(r"<-\s+250 2\.0\.0 ([0-9A-Za-z]+) Message accepted for delivery", transcript)
    assert m, transcript
    qid = m.group(1)
    labmod.wait_until(lambda: qid not in sm.sendmail.queue_ids(), 20, f"{qid} to leave the queue",
                      detail=sm.sendmail.mailq)
    got = sm.sink.wait_for(token, 1)
    assert len(got) == 1
    assert got[0].rcpts == [BOB]
    assert f"LEAK-{token}".encode() not in split_message(got[0].raw)[0]
    received = own_received(got[0].raw)
    assert alias not in received.lower() and "for <" not in received, received
    assert split_message(got[0].raw)[1] == split_message(sent)[1]


def test_queue_id_per_transaction_known_to_milter_at_rcpt(sm, new_alias, token):
    """Two transactions on one connection get two queue ids, and the milter
    logs each at RCPT already (Sendmail sends macro i from MAIL on)."""
    a1, a2 = new_alias("qid"), new_alias("qid")
    sm.redis.set_alias(a1, ALICE, ttl=300)
    sm.redis.set_alias(a2, BOB, ttl=300)
    offset = sm.milter.log_offset()
    qids = []
    with smtplib.SMTP("127.0.0.1", sm.sendmail.port, timeout=30) as s:
        s.ehlo("client.sender.test")
        for n, alias in enumerate((a1, a2)):
            s.mail(SENDER)
            assert s.rcpt(alias)[0] == 250
            code, text = s.data(make_message(f"{token}{n}", alias))
            assert code == 250, text
            qids.append(queue_id_of(labmod.Reply(code, text.decode())))
    assert qids[0] and qids[1] and qids[0] != qids[1], qids
    log = sm.milter.log(offset)
    for qid, alias in zip(qids, (a1, a2)):
        assert re.search(rf"queue={qid} alias={re.escape(alias)} .*action=accept", log), log
        assert f"queue={qid} action=rewrite" in log, log
    for n, owner in enumerate((ALICE, BOB)):
        (got,) = sm.sink.wait_for(f"{token}{n}", 1)
        assert got.rcpts == [owner]


# --------------------------------------------------------------------------
# the safety net, without the milter
# --------------------------------------------------------------------------
def test_unrewritten_alias_mail_is_held_not_relayed(bare_sendmail, sink, new_alias, token):
    alias = new_alias("held")
    mixed = mixed_case(new_alias("held"))

    result = bare_sendmail.send([alias, mixed], make_message(token, alias))

    # The catch-all makes every local part a valid recipient ...
    assert_reply(result.rcpts[alias], 250, "2.1.5")
    assert_reply(result.rcpts[mixed], 250, "2.1.5")
    assert_reply(result.data, 250, "2.0.0")
    qid = queue_id_of(result.data)
    # ... and without the milter's rewrite the hold mailer defers it.
    bare_sendmail.wait_log(rf"{qid}: to=.*mailer=impalehold, .*stat=Deferred", timeout=20)
    assert "Milter: no active filter" in bare_sendmail.log()
    entries = [q for q in bare_sendmail.queue() if q["id"] == qid]
    assert len(entries) == 1, bare_sendmail.mailq()
    assert sorted(entries[0]["recipients"]) == sorted([f"<{alias}>", f"<{mixed}>"]), entries
    assert "impalehold mailer" in entries[0]["reason"] and "Deferred" in entries[0]["reason"]
    assert qid in bare_sendmail.queue_ids()
    # Still held after a forced queue run, and nothing reached smtp-sink
    # (neither the message nor a bounce to the sender).
    bare_sendmail.run("-q", check=False)
    assert qid in bare_sendmail.queue_ids()
    time.sleep(0.5)
    assert not sink.messages(token), sink.messages(token)[0].rcpts
    assert not [m for m in sink.messages() if alias in m.raw.decode(errors="replace")]
    # The queued copy's own Received header has no "for <alias>".
    qf = bare_sendmail.queued_file(qid)
    own = re.search(r"^H\?\?Received: from client\.sender\.test.*(?:\n\t.*)*", qf, re.M).group(0)
    assert "for <" not in own and alias not in own, own

    bare_sendmail.clear_queue()


def test_bare_sendmail_still_relays_other_mail(bare_sendmail, sink, token):
    """Control for the test above: the same configuration relays non-alias
    mail (so 'held' really means the hold mailer, not a broken relay)."""
    result = bare_sendmail.send([CAROL], make_message(token, CAROL))
    assert_reply(result.rcpts[CAROL], 250, "2.1.5")
    qid = queue_id_of(result.data)
    bare_sendmail.wait_log(rf"{qid}: done;", timeout=20)
    (got,) = sink.wait_for(token, 1)
    assert got.rcpts == [CAROL]
    assert len(headers_named(got.raw, "Received")) == 3
    assert header_value(headers_named(got.raw, "Subject")[0]).endswith(token)


def test_without_F_T_a_dead_milter_is_skipped_and_the_hold_mailer_catches_it(
        no_ft_sendmail, sink, new_alias, token):
    """Why the fragment sets F=T: without it Sendmail accepts mail as if the
    (unreachable) milter did not exist.  The hold mailer still keeps the
    un-rewritten alias mail from going anywhere."""
    assert re.search(r"^Ximpalemail, S=unix:\S+, T=", no_ft_sendmail.cf.read_text(), re.M)
    alias = new_alias("noft")

    result = no_ft_sendmail.send([alias], make_message(token, alias))

    assert_reply(result.mail, 250, "2.1.0")
    assert_reply(result.rcpts[alias], 250, "2.1.5")
    assert_reply(result.data, 250, "2.0.0")
    qid = queue_id_of(result.data)
    no_ft_sendmail.wait_log(rf"{qid}: to=.*mailer=impalehold, .*stat=Deferred", timeout=20)
    # Sendmail could not reach the milter, put it in error state and went on.
    assert f"{qid}: Milter (impalemail): to error state" in no_ft_sendmail.log()
    assert f"{qid}: Milter accept: message" in no_ft_sendmail.log()
    assert qid in no_ft_sendmail.queue_ids()
    time.sleep(0.5)
    assert not sink.messages(token)
    no_ft_sendmail.clear_queue()
