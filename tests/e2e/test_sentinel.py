"""Redis Sentinel, end to end: a real Postfix, the milter in Sentinel mode, a
primary, a replica and three sentinels (quorum 2), all on free ports of
127.0.0.1 in a lab of this module's own (not the session Postfix, whose
milter socket belongs to the session milter).

- The primary is SIGKILLed mid-traffic: senders (one opening a session per
  message, one keeping its session, so the milter's kept Redis connection
  dies under it) get only 4xx until the replica is promoted, then 250 again
  from the same milter process; every message accepted with 250 is
  delivered exactly once; aliases made on the new primary work, and so do
  revocations.  The time from the kill to the first 250 is printed.
- AUTH: requirepass, and least-privilege ACL users, on the sentinels and on
  the data nodes; wrong or missing passwords → 451 naming the cause.
- A sentinel naming a node that is not the primary (ROLE check) → 451.
- Every sentinel down: a milter that knows the primary goes on; one that
  must ask tempfails until one sentinel answers.
- A stale sentinel listed first does not block the others.
- ROLE refused by an ACL is logged with Redis's error, not as "not the primary".
- `--check` refuses `address` together with `sentinel`.
"""

import re
import smtplib
import subprocess
import threading
import time
import uuid

import pytest

import lab as labmod

ALICE = "alice@real.example"
BOB = "bob@real.example"
SENDER = "news@shop.test"
DOMAIN = labmod.ALIAS_DOMAIN
FAILOVER_BOUND_S = 30  # generous: Sentinel needs down-after (1 s) + election + promotion


def new_alias(label):
    return f"{label}-{uuid.uuid4().hex[:8]}@{DOMAIN}"


def message(test_id, to):
    return (f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: failover {test_id}\r\n"
            f"X-Test-Id: {test_id}\r\nMessage-ID: <{test_id}@shop.test>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {test_id}\r\n").encode()


rcpt_via_miltertest = labmod.miltertest_rcpt


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(workdir):
    with labmod.running(labmod.SentinelCluster(workdir / "sentinel"), "Redis + Sentinel") as c:
        yield c


@pytest.fixture(scope="module")
def mx(workdir, cluster):
    try:
        pf, m = labmod.start_sentinel_mx(workdir / "sentinel", cluster)
    except labmod.LabError as e:
        pytest.fail(f"cannot start the Sentinel lab MX: {e}", pytrace=False)
    yield pf, m
    m.stop()
    pf.delete_queue()
    pf.stop()


@pytest.fixture(scope="module")
def milters():
    """Milters started by this module's small tests, all stopped together at
    the end (each stop takes ~5 s: libmilter's worker pool polls)."""
    started = []

    def start(m):
        started.append(m)
        m.start()
        return m
    yield start
    labmod.stop_all(started)


# --------------------------------------------------------------------------
# traffic: senders that retry 4xx like an MTA would (only faster)
# --------------------------------------------------------------------------
class Traffic:
    """Two sender threads to one alias, each message with a unique id.

    'fresh': one SMTP session per message (each a new milter connection);
    'kept':  one session for many messages (a kept Redis connection in the
             milter), reopened after 5 refusals in a row or a lost session.
    A 4xx (or a lost connection) is retried with the same id after a short
    pause; a 5xx is recorded and not retried.  Everything is bounded by
    `max_s`.
    """

    RETRY_PAUSE_S = 0.1

    def __init__(self, port, alias, max_s=120):
        self.port = port
        self.alias = alias
        self.deadline = time.monotonic() + max_s
        self.run_id = uuid.uuid4().hex[:8]
        self.lock = threading.Lock()
        self.replies = []     # (t_start, t_end, sender, id, stage, Reply), per transaction
        self.errors = []      # (t, sender, id, text)
        self.accepted = {}    # id -> (t, sender)
        self.given_up = set() # ids refused with 5xx
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(name,), daemon=True)
                        for name in ("fresh", "kept")]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "sender threads did not stop"

    def _running(self):
        return not self.stop_event.is_set() and time.monotonic() < self.deadline

    def _record(self, t0, sender, test_id, result):
        t = time.monotonic()
        with self.lock:
            if result.mail is not None:
                self.replies.append((t0, t, sender, test_id, "MAIL", result.mail))
            for r in result.rcpts.values():
                self.replies.append((t0, t, sender, test_id, "RCPT", r))
            if result.data is not None:
                self.replies.append((t0, t, sender, test_id, "DATA", result.data))
            if result.error:
                self.errors.append((t, sender, test_id, result.error))
            if result.data is not None and result.data.ok:
                self.accepted[test_id] = (t0, sender)
                return "accepted"
            if any(r.code >= 500 for r in result.all_replies()):
                self.given_up.add(test_id)
                return "refused"
        return "retry"

    def _run(self, sender):
        session = None
        refusals_in_a_row = 0
        n = 0
        try:
            while self._running():
                test_id = f"fo-{self.run_id}-{sender}-{n:05d}"
                n += 1
                while self._running():
                    t0 = time.monotonic()
                    if sender == "fresh":
                        result = labmod.send(self.port, SENDER, [self.alias], message(test_id, self.alias))
                    else:
                        try:
                            if session is None:
                                session = labmod.SmtpSession(self.port)
                            result = session.transaction(SENDER, [self.alias], message(test_id, self.alias))
                        except (OSError, labmod.LabError, smtplib.SMTPException) as e:
                            result = labmod.SendResult(error=f"{type(e).__name__}: {e}")
                            session = None
                    outcome = self._record(t0, sender, test_id, result)
                    if outcome != "retry":
                        refusals_in_a_row = 0
                        break
                    refusals_in_a_row += 1
                    if session is not None and refusals_in_a_row >= 5:
                        session.close()
                        session = None
                        refusals_in_a_row = 0
                    time.sleep(self.RETRY_PAUSE_S)
        finally:
            if session is not None:
                session.close()

    # -- views ---------------------------------------------------------------
    def accepted_count(self, sender, started_after=0.0):
        """Messages of `sender` accepted in transactions begun after `started_after`."""
        with self.lock:
            return sum(1 for t0, s in self.accepted.values() if s == sender and t0 > started_after)

    def snapshot(self):
        with self.lock:
            return list(self.replies), list(self.errors), dict(self.accepted), set(self.given_up)


def maildir_ids(postfix, owner):
    """X-Test-Id of every message in owner's Maildir -> number of copies."""
    counts = {}
    for raw in postfix.maildir(owner):
        m = re.search(rb"^X-Test-Id: (\S+)", raw, re.M)
        if m:
            key = m.group(1).decode()
            counts[key] = counts.get(key, 0) + 1
    return counts


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def test_check_refuses_address_together_with_sentinel(tmp_path):
    cfg = tmp_path / "impalemail.yaml"
    cfg.write_text(
        "milter:\n"
        "  socket: unix:/run/impalemail/milter.sock\n"
        "redis:\n"
        "  address: tcp://127.0.0.1:6379\n"
        "  sentinel:\n"
        "    master: impalemail\n"
        "    addresses: [tcp://127.0.0.1:26379, tcp://127.0.0.1:26380, tcp://127.0.0.1:26381]\n"
        "aliases:\n"
        "  domains: [alias.example.org]\n")
    r = subprocess.run([str(labmod.milter_binary()), "-c", str(cfg), "--check"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [l for l in r.stderr.splitlines() if ": error: " in l]
    assert len(errors) == 1, r.stderr
    m = re.match(rf"{re.escape(str(cfg))}:(\d+):(\d+): error: (.*)", errors[0])
    assert m, errors[0]
    assert int(m.group(1)) in (5, 6), f"should point at the sentinel block: {errors[0]}"
    assert "mutually exclusive" in m.group(3)

    # The same file without `address` is fine.
    cfg.write_text(cfg.read_text().replace("  address: tcp://127.0.0.1:6379\n", ""))
    r = subprocess.run([str(labmod.milter_binary()), "-c", str(cfg), "--check"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_primary_killed_mid_traffic_fails_over_without_5xx_or_loss(cluster, mx, capsys):
    postfix, milter = mx
    primary, replica = cluster.nodes[0], cluster.nodes[1]
    assert cluster.primary() is primary
    pid = milter.pid

    alias = new_alias("live")
    cluster.set_alias_everywhere(alias, ALICE)  # the replica has it before the kill
    warmup = labmod.send(postfix.port, SENDER, [alias], message("warmup-" + alias, alias))
    assert warmup.data is not None and warmup.data.ok, str(warmup)

    traffic = Traffic(postfix.port, alias)
    traffic.start()
    try:
        labmod.wait_until(lambda: traffic.accepted_count("fresh") >= 3 and traffic.accepted_count("kept") >= 3,
                          60, "3 accepted messages from each sender before the kill", interval=0.05)
        t_kill = time.monotonic()
        primary.kill()
        # Both senders must get through again, several times, after the kill.
        labmod.wait_until(
            lambda: traffic.accepted_count("fresh", t_kill) >= 3 and traffic.accepted_count("kept", t_kill) >= 3,
            90, "3 accepted messages from each sender after the kill", interval=0.1,
            detail=lambda: f"sentinels name: {cluster.named_ports()}\n" + labmod.tail(milter.log(), 20))
    finally:
        traffic.stop()
    replies, errors, accepted, given_up = traffic.snapshot()

    # The same milter process went through it all.
    assert milter.is_running() and milter.pid == pid, "the milter restarted or died:\n" + milter.log()[-3000:]
    # Never a 5xx, never a transaction given up.
    five = [(round(t - t_kill, 2), s, i, st, str(r)) for _, t, s, i, st, r in replies if r.code >= 500]
    assert not five and not given_up, f"5xx during the failover: {five}"
    # Refused (4xx) from the kill until the replica took over, then 250 again.
    # Transactions are judged by when they began: one begun before the kill
    # may have had its RCPT answered before it.
    after = sorted((t0, t, s, st, r) for t0, t, s, _, st, r in replies if t0 > t_kill)
    tempfails = [(t0, s, st, r) for t0, _, s, st, r in after if 400 <= r.code < 500]
    assert tempfails, "no 4xx after the kill: the failover was not exercised"
    assert all(st == "RCPT" and str(r).startswith("451 4.3.0") for _, _, st, r in tempfails), \
        f"unexpected temporary failures: {[(s, st, str(r)) for _, s, st, r in tempfails]}"
    # Upper bound of the first RCPT 250: the end of the first transaction
    # begun after the kill whose RCPT got 250.
    first_ok_start, first_ok = min((t0, t) for t0, t, _, st, r in after if st == "RCPT" and r.code == 250)
    late = [(round(t0 - first_ok, 2), s, str(r)) for t0, s, _, r in tempfails if t0 > first_ok]
    assert not late, f"4xx again after service came back: {late}"
    failover_s = first_ok - t_kill
    with capsys.disabled():
        print(f"\n[sentinel] primary SIGKILLed -> first 250 after {failover_s:.2f} s "
              f"({len(tempfails)} x 451 4.3.0 meanwhile, {len(accepted)} messages accepted, "
              f"{len(errors)} connection errors, milter pid {pid} throughout)")
    assert failover_s < FAILOVER_BOUND_S

    # Sentinel agrees: the replica is the primary now.
    cluster.wait_primary_is(replica)
    log = milter.log()
    assert "code=451" in log and "Connection refused" in log, labmod.tail(log, 20)

    # An alias made on the new primary works at once; so does a revocation.
    fresh = new_alias("after")
    replica.set_alias(fresh, BOB, ttl=600)
    res = labmod.send(postfix.port, SENDER, [fresh], message("after-" + fresh, fresh))
    assert res.rcpts[fresh].code == 250 and res.data is not None and res.data.ok, str(res)
    postfix.wait_for_delivery(BOB, 1, timeout=60, match="after-" + fresh)
    assert replica.cli("DEL", "alias:" + fresh) == "1"
    res = labmod.send(postfix.port, SENDER, [fresh], message("revoked-" + fresh, fresh))
    assert res.rcpts[fresh].code == 550 and res.rcpts[fresh].text.startswith("5.1.1"), str(res)

    # Every message accepted with 250 is delivered exactly once; no other is.
    accepted_ids = set(accepted)
    labmod.wait_until(lambda: accepted_ids <= set(maildir_ids(postfix, ALICE)), 90,
                      f"delivery of {len(accepted_ids)} accepted messages", interval=0.2,
                      detail=lambda: f"missing: {sorted(accepted_ids - set(maildir_ids(postfix, ALICE)))[:10]}"
                                     f"\nqueue: {postfix.queue()}\n{labmod.tail(postfix.log(), 20)}")
    counts = {k: v for k, v in maildir_ids(postfix, ALICE).items() if k.startswith(f"fo-{traffic.run_id}-")}
    dupes = {k: v for k, v in counts.items() if v != 1}
    assert not dupes, f"delivered more than once: {dupes}"
    extra = set(counts) - accepted_ids
    assert not extra, f"delivered without a 250 to the sender: {sorted(extra)}"
    parked = [q for q in postfix.queue()
              if any(r["address"].endswith("@hold.invalid") for r in q["recipients"])]
    assert not parked, f"mail parked un-rewritten: {parked}"


# --------------------------------------------------------------------------
# AUTH on the sentinels and on the data nodes
# --------------------------------------------------------------------------
SENTINEL_PW = "sentinel secret 1"
DATA_PW = "data secret 2"
SENTINEL_ACL_PW = "sentinel-acl-pw-3"
DATA_ACL_PW = "data-acl-pw-4"
# The least a milter needs: on the sentinels one subcommand, on the data
# nodes GET on the alias keys and ROLE (the check that a connection reached
# the primary).
SENTINEL_ACL = "user impalemail-milter on >{pw} -@all +sentinel|get-master-addr-by-name\n"
DATA_ACL = ["~alias:*", "+get", "+role"]


@pytest.fixture(scope="module")
def auth_cluster(workdir):
    """requirepass on the sentinel and on the data node (default users), and
    an ACL user on each."""
    base = workdir / "sentinel-auth"
    c = labmod.SentinelCluster(base, replicas=0, sentinels=1, quorum=1,
                               data_password=DATA_PW, sentinel_password=SENTINEL_PW,
                               sentinel_extra=SENTINEL_ACL.format(pw=SENTINEL_ACL_PW))
    with labmod.running(c, "Redis + Sentinel with AUTH"):
        for name, text in (("sentinel-password", SENTINEL_PW), ("redis-password", DATA_PW),
                           ("sentinel-acl-password", SENTINEL_ACL_PW), ("redis-acl-password", DATA_ACL_PW),
                           ("wrong-password", "not it")):
            (base / name).write_text(text + "\n")
        primary = c.nodes[0]
        primary.cli("ACL", "SETUSER", "impalemail", "on", f">{DATA_ACL_PW}", *DATA_ACL)
        primary.cli("ACL", "SETUSER", "impalemail-norole", "on", f">{DATA_ACL_PW}", "~alias:*", "+get")
        primary.set_alias("shop@alias.example.org", ALICE, ttl=600)
        yield c


def auth_milter(cluster, name, sentinel_extra, redis_extra):
    base = cluster.workdir / name
    m = labmod.Milter(labmod.milter_binary(), base, 0, base / "milter.sock", redis_extra=redis_extra)
    m.sentinel_yaml = cluster.yaml(sentinel_extra)
    return m


S_PW = "    password_file: ../sentinel-password\n"
S_ACL = "    username: impalemail-milter\n    password_file: ../sentinel-acl-password\n"
D_PW = "  password_file: ../redis-password\n"
D_ACL = "  username: impalemail\n  password_file: ../redis-acl-password\n"
WRONG_S = "    password_file: ../wrong-password\n"
WRONG_D = "  password_file: ../wrong-password\n"


@pytest.mark.parametrize("sentinel_extra, redis_extra, expect, why", [
    (S_PW, D_PW, "continue", None),
    (S_ACL, D_ACL, "continue", None),
    (WRONG_S, D_PW, "reply", "AUTH refused"),
    ("", D_PW, "reply", "NOAUTH"),
    (S_PW, WRONG_D, "reply", "AUTH refused"),
    (S_ACL.replace("impalemail-milter", "nobody-here"), D_PW, "reply", "AUTH refused"),
], ids=["requirepass-both", "acl-users-both", "wrong-sentinel-password", "no-sentinel-password",
        "wrong-data-password", "unknown-sentinel-user"])
def test_sentinel_and_data_node_auth(auth_cluster, milters, sentinel_extra, redis_extra, expect, why, request):
    m = milters(auth_milter(auth_cluster, request.node.callspec.id, sentinel_extra, redis_extra))
    run = rcpt_via_miltertest(m, "<shop@alias.example.org>", expect)
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\n{labmod.tail(m.log(), 10)}"
    log = m.log()
    if why:
        assert "code=451" in log and why in log, log
    else:
        assert "action=accept" in log, log
    for secret in (SENTINEL_PW, DATA_PW, SENTINEL_ACL_PW, DATA_ACL_PW, "not it"):
        assert secret not in log


def test_role_refused_by_acl_is_reported_as_such(auth_cluster, milters):
    m = milters(auth_milter(auth_cluster, "acl-without-role", S_PW,
                            "  username: impalemail-norole\n  password_file: ../redis-acl-password\n"))
    run = rcpt_via_miltertest(m, "<shop@alias.example.org>", "reply")
    log = m.log()
    if run.returncode != 0 or "code=451" not in log:  # safe either way: never accepted, never 5xx
        pytest.fail(f"expected a 451: {run.stdout}{run.stderr}\n{labmod.tail(log, 10)}")
    assert "NOPERM" in log, log            # but the reason should say why


# --------------------------------------------------------------------------
# Every sentinel down
# --------------------------------------------------------------------------
def test_sentinels_down_primary_up_mail_goes_on_discovery_tempfails(workdir, milters):
    """Sentinels are needed to find the primary, not to read it: a milter
    that knows the primary keeps accepting with every sentinel down; one
    that must ask (a new process, or after an error) tempfails until one
    sentinel, quorum or not, answers again."""
    c = labmod.SentinelCluster(workdir / "sentinel-down", replicas=0, sentinels=2, quorum=2)
    try:
        c.start()
        c.nodes[0].set_alias("shop@alias.example.org", ALICE, ttl=600)

        def milter(name):
            base = c.workdir / name
            m = labmod.Milter(labmod.milter_binary(), base, 0, base / "milter.sock")
            m.sentinel_yaml = c.yaml()
            return milters(m)

        def rcpt(m, expect):
            run = rcpt_via_miltertest(m, "<shop@alias.example.org>", expect)
            assert run.returncode == 0, f"{run.stdout}{run.stderr}\n{labmod.tail(m.log(), 6)}"

        known = milter("knows-primary")
        rcpt(known, "continue")
        for s in c.sentinels:
            s.kill()
        rcpt(known, "continue")               # cached primary, no sentinel asked
        newcomer = milter("newcomer")
        rcpt(newcomer, "reply")               # must discover: 451
        assert "no sentinel named a primary for 'impalemail'" in newcomer.log(), newcomer.log()
        c.sentinels[1].start()                # one of two: below the failover quorum
        rcpt(newcomer, "continue")
        assert "code=5" not in known.log() + newcomer.log()
    finally:
        c.stop()


# --------------------------------------------------------------------------
# A sentinel that answers wrongly
# --------------------------------------------------------------------------
class FakeSentinel(labmod.RespStub):
    """Answers SENTINEL get-master-addr-by-name with a fixed port, like a
    sentinel cut off from the Redis nodes that still names its last-known
    primary.  Everything else gets +OK."""

    def __init__(self, named_port):
        self.named_port = named_port
        self.queries = 0
        super().__init__()

    def answer(self, args):
        words = [a.decode(errors="replace").lower() for a in args]
        if words[:2] == ["sentinel", "get-master-addr-by-name"]:
            self.queries += 1
            port = str(self.named_port).encode()
            return b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n" % (len(port), port)
        return b"+OK\r\n"


@pytest.fixture(scope="module")
def plain_cluster(workdir):
    """A primary, one replica, one sentinel (quorum 1)."""
    c = labmod.SentinelCluster(workdir / "sentinel-plain", replicas=1, sentinels=1, quorum=1)
    with labmod.running(c, "Redis + Sentinel"):
        c.set_alias_everywhere("shop@alias.example.org", ALICE)
        yield c


def fake_milter(cluster, name, addresses):
    base = cluster.workdir / name
    m = labmod.Milter(labmod.milter_binary(), base, 0, base / "milter.sock")
    m.sentinel_yaml = f"  sentinel:\n    master: {cluster.master}\n    addresses: [{', '.join(addresses)}]\n"
    return m


def test_a_replica_named_as_primary_is_refused_by_the_role_check(plain_cluster, milters):
    """The replica has the alias, and GET would work on it, but reads must
    come from the primary (a replica can lag behind a revocation)."""
    replica = plain_cluster.nodes[1]
    fake = FakeSentinel(replica.port)
    try:
        m = milters(fake_milter(plain_cluster, "role-check", [fake.address]))
        run = rcpt_via_miltertest(m, "<shop@alias.example.org>", "reply")
        assert run.returncode == 0, f"{run.stdout}{run.stderr}\n{labmod.tail(m.log(), 10)}"
        log = m.log()
        assert "code=451" in log and f"tcp://127.0.0.1:{replica.port} is not the primary" in log, log
        assert "action=accept" not in log
    finally:
        fake.close()


def test_a_stale_sentinel_listed_first_does_not_block_the_others(plain_cluster, milters):
    dead_port = labmod.free_port()  # nothing listens there: the "old primary"
    fake = FakeSentinel(dead_port)
    real = plain_cluster.sentinels[0]
    try:
        m = milters(fake_milter(plain_cluster, "stale-first", [fake.address, real.address]))
        outcomes = []
        for _ in range(5):
            run = rcpt_via_miltertest(m, "<shop@alias.example.org>", "continue")
            outcomes.append(run.returncode == 0)
            if outcomes[-1]:
                break
            time.sleep(0.2)
        assert any(outcomes), (f"{len(outcomes)} RCPTs all tempfailed; the fake sentinel was asked "
                               f"{fake.queries} times:\n{labmod.tail(m.log(), 8)}")
    finally:
        fake.close()
