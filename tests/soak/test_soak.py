"""Soak test with faults: nothing lost, misdelivered or duplicated.

Thousands of messages go from concurrent SMTP senders through a real Postfix
(contrib/postfix config), impalemail-milter and a real Redis, while a fault
thread (Faults.steps) restarts Redis (SIGTERM) and crashes it (SIGKILL),
hangs it (SIGSTOP for 1 s), makes it drop every client connection (CLIENT
KILL), SIGKILLs the milter (once in the middle of a transaction), revokes
aliases with DEL and creates aliases with TTLs of 2-5 s that expire during
the run.  At the end every message is accounted for, by the unique id it
carries.

Senders behave like an MTA:
- one recipient (an alias) per message, several messages per SMTP session;
- a 4xx reply (MAIL, RCPT, DATA, end of data) or a connection error *before
  the final dot* means "not taken": the same message (same id, same bytes) is
  retried after a jittered exponential backoff, at most MAX_ATTEMPTS times;
  after that it "gave up" and must not be delivered anywhere.  After any 4xx
  the session is closed (after a milter failure Postfix answers 4xx to
  everything else in that session: it only reconnects to the milter for a
  new SMTP session);
- a 5xx is final ("refused");
- 250 after the final dot is final ("accepted"); the message is never sent again;
- the duplicate window: if the connection fails *after* the final dot was
  sent and before the reply arrived, the sender cannot know whether Postfix
  queued the message.  A real MTA would retry and risk a duplicate
  (RFC 1047); here the message is not retried but counted as "uncertain",
  and the accounting accepts 0 or 1 deliveries of it (never 2, never
  elsewhere).  On an unloaded lab this never happens.

The subtlety of a milter kill between RCPT and the end of the message:
Postfix answered 250 to RCPT, the milter dies, and at the end of data
cleanup(8) cannot reach it, so `milter_default_action = tempfail` gives
"451 4.7.1": the message was NOT queued, and the sender retries it like any
4xx.  The fault thread forces this case once per cycle (a transaction held
open between RCPT and DATA across a milter SIGKILL); the run counts it as
rcpt250_then_data4xx.  Such a message must in the end be delivered exactly once.

Accounting, per message id, at the end (after the Postfix queue drained):
- accepted (250 at end of data): exactly one copy, in its owner's Maildir, and
  nowhere else; fewer is "lost", more is "duplicated", elsewhere "misdelivered";
  and its accepted RCPT must not have been sent after the alias was certainly
  dead (DEL answered, or TTL over by more than the tolerance): "accepted_dead";
- refused: the only allowed refusal is "550 5.1.1" at RCPT, and only if the
  alias was dead when the milter looked it up: the RCPT reply arrived after
  the DEL was sent (causality, no tolerance needed), or after the moment the
  key's TTL ran out (SET time taken *before* the SET was sent, plus the TTL,
  minus EXPIRY_TOLERANCE_S = 50 ms: Redis keeps expiry times in whole
  milliseconds; Redis and this test read the same host clock, so there is no
  skew to allow for).  Anything else is "wrongly_refused".  A refused
  message delivered anywhere is "misdelivered";
- gave_up: delivered anywhere is "misdelivered";
- uncertain: 0 or 1 copies in its owner's Maildir;
- an id found in a Maildir that no sender sent is "misdelivered";
- a delivered copy that still has the client's Received or X-Mailer header
  (both on the milter's default strip list) was not rewritten by the milter:
  a "maildir_problems" entry, as is a copy with other than one X-Soak-Id;
- nothing may be left in the Postfix queue, in particular nothing parked for
  unrewritten@hold.invalid (the catch-all for mail the milter did not rewrite).

The test fails on any lost, misdelivered, duplicated, wrongly refused or
accepted-while-dead message, on a queue that does not drain, and on signs
that the lab did not recover (more than 1% gave up; one of the N_FINAL
messages queued after the last fault not accepted; a fault kind that never
happened; the milter not running or logging an internal error at the end).

Size and time: SOAK_MESSAGES (default 3000) main messages over 320 aliases of
six owners, plus, per fault cycle, 3 x 8 short-lived aliases x 5 messages
and one held-transaction message, plus N_FINAL (16) messages after the
last fault (3137 in all by default), sent by SOAK_SENDERS (default 8) threads.  The main messages are paced evenly over
max(60 s, SOAK_MESSAGES / 50 per s) so that the faults (spread over the
first ~70% of that window) always hit live traffic: unpaced, the lab takes
several hundred messages per second and 3000 would be gone in seconds.
About 75 s in all on 2 cores.  SOAK_SEED replays a run's random choices
(not its timing).  Every message's attempts are written to
soak-ledger.json in the work directory, which is kept when the test fails.
"""

import heapq
import json
import os
import random
import re
import smtplib
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import lab as labmod

N_MESSAGES = int(os.environ.get("SOAK_MESSAGES", "3000"))
N_SENDERS = int(os.environ.get("SOAK_SENDERS", "8"))
N_ALIASES = 320                     # long-lived aliases (TTL 1 h)
N_PROTECTED = 20                    # of those, never revoked (used by the held-transaction probe)
PACE_S = max(60.0, N_MESSAGES / 50.0)
MSGS_PER_SESSION = 5
MAX_ATTEMPTS = 12
BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 4.0                 # 12 attempts span ~30 s: far longer than any fault here
SMTP_TIMEOUT_S = 60                 # per socket operation (Postfix's milter timeouts are 30 s)
EPHEMERAL_PER_BATCH = 8
EPHEMERAL_TTL_MS = (2000, 5000)
EPHEMERAL_MSGS_PER_ALIAS = 5        # spread over [creation, expiry + 3 s]
REVOKE_PER_BATCH = 12
N_FINAL = 16                        # sent after the last fault: all must be accepted
EXPIRY_TOLERANCE_S = 0.05
QUEUE_DRAIN_TIMEOUT_S = 120
GAVE_UP_MAX_FRACTION = 0.01
SENDER = "soak@shop.test"
ALIAS_DOMAIN = labmod.ALIAS_DOMAIN
RUN = uuid.uuid4().hex[:8]
ID_RE = re.compile(rb"^X-Soak-Id: (\S+)\s*$", re.M)


# --------------------------------------------------------------------------
# the ledger
# --------------------------------------------------------------------------
@dataclass
class Alias:
    address: str
    owner: str
    kind: str                       # "long" | "ephemeral" | "protected"
    set_at: float = 0.0             # time.time() just before the SET was sent
    set_done: float = 0.0           # time.time() after the SET was answered
    ttl_s: float = None             # only for ephemeral aliases
    revoked_before: float = None    # time.time() just before the DEL was sent
    revoked_after: float = None     # time.time() after the DEL was answered

    def surely_dead_from(self):
        """Moment from which the alias was certainly dead (None: never)."""
        times = []
        if self.revoked_after is not None:
            times.append(self.revoked_after)
        if self.ttl_s is not None:
            times.append(self.set_done + self.ttl_s + EXPIRY_TOLERANCE_S)
        return min(times) if times else None


@dataclass
class Message:
    id: str
    alias: Alias
    kind: str                       # "main" | "ephemeral" | "held"
    attempts: list = field(default_factory=list)
    state: str = "pending"          # accepted | refused | gave_up | uncertain | pending
    final: dict = None              # the attempt that decided the state

    def content(self):
        body_lines = "".join(f"soak line {i} for {self.id}\r\n" for i in range(8))
        text = (
            f"Received: from laptop.sender.test (dsl.isp.test [203.0.113.7]) by smtp.shop.test\r\n"
            f"From: Soak <{SENDER}>\r\n"
            f"To: <{self.alias.address}>\r\n"
            f"Subject: soak {self.id}\r\n"
            f"Message-ID: <{self.id}@soak.shop.test>\r\n"
            f"X-Soak-Id: {self.id}\r\n"
            f"X-Mailer: SoakMailer 1.0\r\n"
            "\r\n"
            f"{body_lines}"
        )
        # quotedata: CRLF line ends and dot-stuffing; text ends in CRLF.
        return smtplib.quotedata(text).encode() + b".\r\n"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


class WorkQueue:
    """Messages due at a time; retries go back in.  Senders stop when the
    fault thread is done and no message is pending, or at the deadline."""

    def __init__(self, deadline):
        self.cond = threading.Condition()
        self.heap = []
        self.seq = 0
        self.pending = 0            # queued or being sent
        self.producers_done = False
        self.deadline = deadline
        self.inflight = 0

    def put_new(self, msg, due):
        with self.cond:
            self.pending += 1
            self._push(msg, due)

    def retry(self, msg, due):
        with self.cond:
            self._push(msg, due)

    def _push(self, msg, due):
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, msg))
        self.cond.notify()

    def finished(self, msg):
        with self.cond:
            self.pending -= 1
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.producers_done = True
            self.cond.notify_all()

    def get(self):
        with self.cond:
            while True:
                now = time.monotonic()
                if now > self.deadline:
                    return None
                if self.heap and self.heap[0][0] <= now:
                    return heapq.heappop(self.heap)[2]
                if self.producers_done and self.pending == 0:
                    return None
                wait = 0.2 if not self.heap else min(0.2, self.heap[0][0] - now)
                self.cond.wait(max(wait, 0.001))


# --------------------------------------------------------------------------
# SMTP, the way an MTA would do it
# --------------------------------------------------------------------------
def backoff(attempt_no):
    return min(BACKOFF_FIRST_S * 2 ** (attempt_no - 1), BACKOFF_CAP_S) * random.uniform(0.5, 1.5)


def close(smtp):
    if smtp is None:
        return
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def connect(port):
    smtp = smtplib.SMTP(timeout=SMTP_TIMEOUT_S)
    code, text = smtp.connect("127.0.0.1", port)
    if code != 220:
        smtp.close()
        raise smtplib.SMTPConnectError(code, text)
    code, text = smtp.ehlo("soak.sender.test")
    if code != 250:
        smtp.close()
        raise smtplib.SMTPHeloError(code, text)
    return smtp


def _reply(code, text):
    return {"code": code, "text": text.decode(errors="replace") if isinstance(text, bytes) else str(text)}


def transact(smtp, msg, attempt, hold=None):
    """One transaction of msg on an open session.  Fills `attempt` and
    returns the outcome: "accepted", "refused", "retry" (4xx), "conn"
    (connection failed before the final dot), "uncertain" (after it).
    hold(): called between the 250 to RCPT and DATA (the milter-kill probe)."""
    phase = "mail"
    try:
        code, text = smtp.mail(SENDER)
        attempt["mail"] = _reply(code, text)
        if code != 250:
            return "refused" if code >= 500 else "retry"
        phase = "rcpt"
        attempt["rcpt_sent"] = time.time()
        code, text = smtp.rcpt(msg.alias.address)
        attempt["rcpt_replied"] = time.time()
        attempt["rcpt"] = _reply(code, text)
        if code >= 500:
            try:
                smtp.rset()
            except (smtplib.SMTPException, OSError) as e:
                attempt["session_broken"] = f"RSET: {e}"
            return "refused"
        if code != 250:
            return "retry"
        if hold is not None:
            hold()
        phase = "data"
        smtp.putcmd("data")
        code, text = smtp.getreply()
        attempt["data"] = _reply(code, text)
        if code != 354:
            return "refused" if code >= 500 else "retry"
        phase = "content"
        smtp.send(msg.content())
        phase = "after_dot"
        code, text = smtp.getreply()
        attempt["eod"] = _reply(code, text)
        if code == 250:
            return "accepted"
        return "refused" if code >= 500 else "retry"
    except (smtplib.SMTPException, OSError) as e:
        attempt["error"] = f"{phase}: {type(e).__name__}: {e}"
        return "uncertain" if phase == "after_dot" else "conn"


def settle(msg, outcome, attempt, queue, stats):
    """Record an attempt's outcome; requeue the message or finish it."""
    msg.attempts.append(attempt)
    if outcome in ("accepted", "refused", "uncertain"):
        msg.state, msg.final = outcome, attempt
        queue.finished(msg)
        return
    stats.add("retried_4xx" if outcome == "retry" else "retried_conn")
    for stage in ("mail", "rcpt", "data", "eod"):
        r = attempt.get(stage)
        if r and 400 <= r["code"] < 500:
            stats.add(f"4xx {stage} {r['code']} {r['text'].split(' ', 1)[0]}")
    if attempt.get("rcpt", {}).get("code") == 250 and (
            attempt.get("data", {}).get("code", 0) // 100 == 4 or attempt.get("eod", {}).get("code", 0) // 100 == 4):
        stats.add("rcpt250_then_data4xx")
    if len(msg.attempts) >= MAX_ATTEMPTS:
        msg.state, msg.final = "gave_up", attempt
        queue.finished(msg)
        return
    queue.retry(msg, time.monotonic() + backoff(len(msg.attempts)))


def sender(port, queue, stats, errors):
    smtp, used = None, 0
    try:
        while True:
            msg = queue.get()
            if msg is None:
                break
            attempt = {"no": len(msg.attempts) + 1, "start": time.time()}
            with queue.cond:
                queue.inflight += 1
            try:
                if smtp is None or used >= MSGS_PER_SESSION:
                    close(smtp)
                    smtp, used = None, 0
                    try:
                        smtp = connect(port)
                    except (smtplib.SMTPException, OSError) as e:
                        attempt["error"] = f"connect: {type(e).__name__}: {e}"
                        settle(msg, "conn", attempt, queue, stats)
                        continue
                used += 1
                outcome = transact(smtp, msg, attempt)
            finally:
                with queue.cond:
                    queue.inflight -= 1
            if outcome not in ("accepted", "refused") or attempt.get("session_broken"):
                close(smtp)
                smtp = None
            settle(msg, outcome, attempt, queue, stats)
    except Exception as e:  # a bug in the test itself: report, do not hang
        errors.append(f"sender crashed: {type(e).__name__}: {e}")
        raise
    finally:
        close(smtp)


# --------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------
class Faults:
    def __init__(self, lab, queue, stats, aliases, messages, rng):
        self.lab = lab
        self.queue = queue
        self.stats = stats
        self.aliases = aliases
        self.messages = messages
        self.rng = rng
        self.revocable = [a for a in aliases.values() if a.kind == "long"]
        self.protected = [a for a in aliases.values() if a.kind == "protected"]
        self.log = []               # (time.time(), what)
        self.last_fault_end = 0.0
        self.n_ephemeral = 0
        self.n_held = 0

    def note(self, what):
        self.log.append((time.time(), what))

    def redis_cli(self, *args):
        return self.lab.redis.cli(*args)

    # -- the fault kinds ---------------------------------------------------
    def ephemeral_batch(self):
        owners = self.lab.owners
        for _ in range(EPHEMERAL_PER_BATCH):
            self.n_ephemeral += 1
            address = f"eph{self.n_ephemeral}-{RUN}@{ALIAS_DOMAIN}"
            ttl_ms = self.rng.randint(*EPHEMERAL_TTL_MS)
            a = Alias(address, self.rng.choice(owners), "ephemeral", ttl_s=ttl_ms / 1000)
            a.set_at = time.time()
            assert self.redis_cli("SET", f"alias:{address}", a.owner, "PX", ttl_ms) == "OK"
            a.set_done = time.time()
            self.aliases[address] = a
            now = time.monotonic()
            for k in range(EPHEMERAL_MSGS_PER_ALIAS):
                m = Message(f"{RUN}-e{self.n_ephemeral}-{k}", a, "ephemeral")
                self.messages[m.id] = m
                self.queue.put_new(m, now + self.rng.uniform(0, a.ttl_s + 3))
        self.note(f"created {EPHEMERAL_PER_BATCH} aliases with TTL {EPHEMERAL_TTL_MS} ms")

    def revoke_batch(self):
        self.rng.shuffle(self.revocable)
        batch, self.revocable = self.revocable[:REVOKE_PER_BATCH], self.revocable[REVOKE_PER_BATCH:]
        for a in batch:
            a.revoked_before = time.time()
            assert self.redis_cli("DEL", f"alias:{a.address}") == "1", a.address
            a.revoked_after = time.time()
            self.stats.add("revoked")
        self.note(f"revoked {len(batch)} aliases with DEL")

    def wait_for_traffic(self, min_inflight=1, timeout=2.0):
        """Strike while senders are mid-transaction (bounded wait)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.queue.cond:
                if self.queue.inflight >= min_inflight:
                    return True
            time.sleep(0.002)
        return False

    def redis_restart(self, crash, down_s):
        self.wait_for_traffic()
        if crash:
            self.lab.redis.kill()
        else:
            self.lab.redis.stop()
        self.note(f"redis {'SIGKILLed' if crash else 'stopped'}")
        time.sleep(down_s)
        self.lab.redis.start()
        self.stats.add("redis_restarts")
        self.note("redis started")

    def redis_hang(self, hung_s):
        """SIGSTOP: Redis keeps its port open and answers nothing, so lookups
        time out (timeout_ms) and, after SIGCONT, Redis answers GETs whose
        asker gave up: a reply must never be taken for a later lookup's."""
        self.wait_for_traffic()
        self.lab.redis.pause()
        self.note("redis SIGSTOPped")
        try:
            time.sleep(hung_s)
        finally:
            self.lab.redis.resume()
        self.stats.add("redis_hangs")
        self.note("redis SIGCONTed")

    def redis_client_kill(self):
        """Redis drops every client connection (idle ones included): the
        milter's kept connections must be reopened, the GET re-sent once."""
        self.wait_for_traffic()
        killed = self.redis_cli("CLIENT", "KILL", "TYPE", "normal")
        self.stats.add("redis_client_kills")
        self.note(f"redis CLIENT KILL TYPE normal: {killed}")

    def milter_kill(self, down_s):
        self.wait_for_traffic()
        self.lab.milter.kill()
        self.note("milter SIGKILLed")
        time.sleep(down_s)
        self.lab.milter.start()
        self.stats.add("milter_kills")
        self.note("milter started")

    def milter_kill_held(self):
        """RCPT answered 250, then the milter dies, then DATA: must be 4xx."""
        self.n_held += 1
        a = self.rng.choice(self.protected)
        msg = Message(f"{RUN}-h{self.n_held}", a, "held")
        self.messages[msg.id] = msg
        with self.queue.cond:
            self.queue.pending += 1
        attempt = {"no": 1, "start": time.time(), "held": True}
        held = []

        def kill_between_rcpt_and_data():
            held.append(True)
            self.lab.milter.kill()
            self.note(f"milter SIGKILLed between RCPT and DATA of {msg.id}")
            time.sleep(0.5)
            self.lab.milter.start()
            self.note("milter started")

        smtp = None
        try:
            smtp = connect(self.lab.postfix.port)
            outcome = transact(smtp, msg, attempt, hold=kill_between_rcpt_and_data)
        except (smtplib.SMTPException, OSError) as e:
            attempt["error"] = f"connect: {e}"
            outcome = "conn"
        finally:
            close(smtp)
        if held:
            self.stats.add("milter_kills")
        else:                                   # RCPT was not 250: a plain kill instead
            self.note(f"held transaction {msg.id} got no 250 to RCPT: {attempt}")
            self.milter_kill(down_s=0.5)
        if attempt.get("eod", {}).get("code", 0) // 100 == 4:
            self.stats.add("held_data_4xx")
        settle(msg, outcome, attempt, self.queue, self.stats)

    # -- the schedule --------------------------------------------------------
    def steps(self):
        return [
            ("ephemeral", self.ephemeral_batch),
            ("revoke", self.revoke_batch),
            ("redis restart", lambda: self.redis_restart(crash=False, down_s=1.5)),
            ("ephemeral", self.ephemeral_batch),
            ("milter kill held", self.milter_kill_held),
            ("revoke", self.revoke_batch),
            ("redis crash", lambda: self.redis_restart(crash=True, down_s=3.0)),
            ("ephemeral", self.ephemeral_batch),
            ("milter kill", lambda: self.milter_kill(down_s=1.0)),
            ("revoke", self.revoke_batch),
            ("redis hang", lambda: self.redis_hang(hung_s=1.0)),
            ("redis client kill", self.redis_client_kill),
        ]

    def final_batch(self):
        """After the last fault: messages to never-revoked aliases, which
        must all be accepted (the lab recovered from everything)."""
        now = time.monotonic()
        for k in range(N_FINAL):
            m = Message(f"{RUN}-f{k}", self.protected[k % len(self.protected)], "final")
            self.messages[m.id] = m
            self.queue.put_new(m, now + k * 0.05)
        self.note(f"queued {N_FINAL} final messages")

    def run(self, t0, pace_end, errors):
        """One full cycle of steps, spread over the first ~70% of the paced
        traffic (a step may also wait up to 2 s for a transaction in flight
        and Redis/milter downtimes add ~8 s, hence the -12 s); more cycles
        while main traffic is still being paced (large SOAK_MESSAGES)."""
        n = len(self.steps())
        gap = min(4.0, max(1.5, ((pace_end - t0) * 0.7 - 12) / n))
        try:
            cycle = 0
            while cycle < 50:
                for name, step in self.steps():
                    time.sleep(gap * random.uniform(0.75, 1.25))
                    if name == "revoke" and len(self.revocable) < REVOKE_PER_BATCH:
                        continue
                    step()
                    self.last_fault_end = time.time()
                cycle += 1
                if time.monotonic() + n * (gap + 2) + 12 > pace_end:
                    break
            self.final_batch()
        except Exception as e:
            errors.append(f"fault thread crashed: {type(e).__name__}: {e}")
            raise
        finally:
            # Whatever happened, leave the services up for the senders.
            if not self.lab.redis.is_running():
                self.lab.redis.start()
            if not self.lab.milter.is_running():
                self.lab.milter.start()
            self.queue.close()


# --------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------
# Headers the client wrote that the milter's default strip list removes; a
# delivered copy still carrying one was not rewritten by the milter.
UNSTRIPPED_RE = re.compile(rb"^(Received: from laptop\.sender\.test|X-Mailer: SoakMailer)", re.M)


def scan_maildirs(postfix):
    """({id: Counter(mailbox -> copies)} over every real mailbox, problems)."""
    found = defaultdict(Counter)
    bad = []
    for mailbox in postfix.mailboxes:
        base = postfix.maildir_path(mailbox)
        for sub in ("new", "cur", "tmp"):
            d = base / sub
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if sub == "tmp":
                    bad.append(f"{mailbox}: file left in tmp/: {p.name}")
                    continue
                raw = p.read_bytes()
                ids = ID_RE.findall(raw)
                if len(ids) != 1:
                    bad.append(f"{mailbox}: {p.name} has {len(ids)} X-Soak-Id headers")
                head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
                if UNSTRIPPED_RE.search(head):
                    bad.append(f"{mailbox}: {p.name} ({ids}) still has the client's Received/X-Mailer")
                for i in ids:
                    found[i.decode()][mailbox] += 1
    return found, bad


def justified_refusal(msg):
    """Why a refusal was legitimate, or None."""
    r = msg.final.get("rcpt")
    if not r or r["code"] != 550 or not r["text"].startswith("5.1.1"):
        return None
    a, t = msg.alias, msg.final["rcpt_replied"]
    if a.revoked_before is not None and t >= a.revoked_before:
        return "revoked"
    if a.ttl_s is not None and t >= a.set_at + a.ttl_s - EXPIRY_TOLERANCE_S:
        return "expired"
    return None


def account(messages, found):
    problems = defaultdict(list)
    c = Counter()
    for mid, msg in messages.items():
        copies = found.get(mid, Counter())
        owner = msg.alias.owner
        own = copies.get(owner, 0)
        elsewhere = {mb: n for mb, n in copies.items() if mb != owner}
        c[msg.state] += 1
        if msg.state == "accepted":
            if own == 0:
                problems["lost"].append(mid)
            elif own > 1:
                problems["duplicated"].append(f"{mid} x{own}")
            if elsewhere:
                problems["misdelivered"].append(f"{mid} (owner {owner}) in {elsewhere}")
            dead = msg.alias.surely_dead_from()
            if dead is not None and msg.final["rcpt_sent"] > dead:
                problems["accepted_dead"].append(
                    f"{mid}: RCPT {msg.alias.address} sent {msg.final['rcpt_sent'] - dead:.3f}s "
                    f"after the alias was certainly dead, answered {msg.final['rcpt']}")
        elif msg.state == "refused":
            why = justified_refusal(msg)
            if why is None:
                problems["wrongly_refused"].append(
                    f"{mid}: {msg.alias.address} ({msg.alias.kind}) final attempt {msg.final}")
            else:
                c[f"refused_{why}"] += 1
            if copies:
                problems["misdelivered"].append(f"{mid} refused but delivered: {dict(copies)}")
        elif msg.state == "gave_up":
            if copies:
                problems["misdelivered"].append(f"{mid} gave up but delivered: {dict(copies)}")
        elif msg.state == "uncertain":
            if own > 1:
                problems["duplicated"].append(f"{mid} (uncertain) x{own}")
            if elsewhere:
                problems["misdelivered"].append(f"{mid} (uncertain) in {elsewhere}")
            c["uncertain_delivered"] += own
        else:
            problems["unfinished"].append(f"{mid}: state {msg.state}, {len(msg.attempts)} attempts")
        if len(msg.attempts) > 1:
            c["messages_retried"] += 1
    for mid, copies in found.items():
        if mid not in messages:
            problems["misdelivered"].append(f"unknown id {mid} in {dict(copies)}")
    return c, problems


def wait_queue_drained(postfix, timeout):
    deadline = time.monotonic() + timeout
    while True:
        q = postfix.queue()
        if not q:
            return []
        # Anything deferred (the hold.invalid catch-all, a failed delivery)
        # will not leave on its own within the test: no point waiting.
        if all(e["queue_name"] in ("deferred", "hold") for e in q) or time.monotonic() > deadline:
            return q
        time.sleep(0.5)


# --------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------
def test_soak_nothing_lost_under_faults(soak_lab, capsys):
    lab = soak_lab
    seed = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    owners = lab.owners
    assert len(owners) >= 6, owners
    t_start = time.monotonic()
    wall_start = time.time()

    # Aliases: N_ALIASES long-lived, spread evenly over the owners.
    aliases = {}
    commands = []
    for i in range(N_ALIASES):
        kind = "protected" if i < N_PROTECTED else "long"
        a = Alias(f"soak{i}-{RUN}@{ALIAS_DOMAIN}", owners[i % len(owners)], kind)
        aliases[a.address] = a
        commands.append(f"SET alias:{a.address} {a.owner} EX 3600")
    out = subprocess.run(["redis-cli", "-p", str(lab.redis.port)], input="\n".join(commands) + "\n",
                                capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["OK"] * N_ALIASES, out[:500]

    stats = Stats()
    deadline = time.monotonic() + PACE_S + 300     # hard bound on the sending phase
    queue = WorkQueue(deadline)
    messages = {}
    long_lived = list(aliases.values())
    t0 = time.monotonic()
    for i in range(N_MESSAGES):
        m = Message(f"{RUN}-m{i}", rng.choice(long_lived), "main")
        messages[m.id] = m
        queue.put_new(m, t0 + PACE_S * i / N_MESSAGES)

    errors = []
    faults = Faults(lab, queue, stats, aliases, messages, rng)
    threads = [threading.Thread(target=sender, args=(lab.postfix.port, queue, stats, errors),
                                name=f"sender-{k}", daemon=True) for k in range(N_SENDERS)]
    fault_thread = threading.Thread(target=faults.run, args=(t0, t0 + PACE_S, errors),
                                    name="faults", daemon=True)
    for t in threads:
        t.start()
    fault_thread.start()
    for t in [fault_thread] + threads:
        t.join(max(1.0, deadline + 30 - time.monotonic()))
    hung = [t.name for t in [fault_thread] + threads if t.is_alive()]
    send_end = time.monotonic()

    leftover_queue = wait_queue_drained(lab.postfix, QUEUE_DRAIN_TIMEOUT_S)
    found, maildir_problems = scan_maildirs(lab.postfix)
    counts, problems = account(messages, found)
    wall_end = time.time()
    expired = sum(1 for a in aliases.values() if a.ttl_s is not None and a.set_at + a.ttl_s < wall_end)
    duration = time.monotonic() - t_start

    s = stats.c
    figures = {
        "lost": len(problems["lost"]),
        "misdelivered": len(problems["misdelivered"]),
        "duplicated": len(problems["duplicated"]),
        "wrongly_refused": len(problems["wrongly_refused"]),
        "accepted_dead": len(problems["accepted_dead"]),
        "uncertain": counts["uncertain"],
        "maildir_problems": len(maildir_problems),
        "sent": len(messages),
        "accepted": counts["accepted"],
        "refused_5xx": counts["refused"],
        "refused_revoked": counts["refused_revoked"],
        "refused_expired": counts["refused_expired"],
        "retried_4xx": s["retried_4xx"],
        "retried_conn": s["retried_conn"],
        "messages_retried": counts["messages_retried"],
        "rcpt250_then_data4xx": s["rcpt250_then_data4xx"],
        "gave_up": counts["gave_up"],
        "redis_restarts": s["redis_restarts"],
        "redis_hangs": s["redis_hangs"],
        "redis_client_kills": s["redis_client_kills"],
        "milter_kills": s["milter_kills"],
        "revoked": s["revoked"],
        "expired": expired,
        "aliases": len(aliases),
        "owners": len(owners),
        "senders": N_SENDERS,
        "duration": f"{duration:.1f}s",
        "sending": f"{send_end - t0:.1f}s",
    }
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    replies_4xx = {k[4:]: v for k, v in sorted(s.items()) if k.startswith("4xx ")}

    # Everything, for a post-mortem (the work directory is kept on failure).
    (lab.workdir / "soak-ledger.json").write_text(json.dumps({
        "figures": figures, "replies_4xx": replies_4xx, "problems": problems,
        "faults": faults.log, "queue_left": leftover_queue,
        "messages": {mid: {"alias": m.alias.address, "owner": m.alias.owner, "kind": m.kind,
                           "state": m.state, "attempts": m.attempts,
                           "delivered": dict(found.get(mid, {}))}
                     for mid, m in messages.items()},
    }, indent=1, default=str))

    with capsys.disabled():
        print(f"\n[soak] {line}")
        print(f"[soak] SOAK_SEED={seed} SOAK_MESSAGES={N_MESSAGES}; 4xx replies by stage: {replies_4xx}")
        print("[soak] faults: " + "; ".join(
            f"+{t - wall_start:.1f}s {w}" for t, w in faults.log))
        for kind in ("lost", "misdelivered", "duplicated", "wrongly_refused", "accepted_dead", "unfinished"):
            for p in problems[kind][:10]:
                print(f"[soak] {kind}: {p}")
        for p in maildir_problems[:10]:
            print(f"[soak] maildir: {p}")
        print(f"[soak] ledger (work directory kept if the test fails): {lab.workdir / 'soak-ledger.json'}")

    assert not errors, errors
    assert not hung, f"threads still running at the deadline: {hung}"
    assert not leftover_queue, (
        f"Postfix queue not empty after {QUEUE_DRAIN_TIMEOUT_S}s (parked for hold.invalid = "
        f"not rewritten): {leftover_queue[:5]}\n{labmod.tail(lab.postfix.log(), 30)}")
    assert not maildir_problems, maildir_problems[:10]
    assert (figures["lost"], figures["misdelivered"], figures["duplicated"]) == (0, 0, 0), line
    assert figures["wrongly_refused"] == 0, problems["wrongly_refused"][:10]
    assert figures["accepted_dead"] == 0, problems["accepted_dead"][:10]
    assert not problems["unfinished"], problems["unfinished"][:10]

    # The faults really happened, the subtle case was exercised, and the lab
    # recovered from all of them.
    assert figures["redis_restarts"] >= 2 and figures["milter_kills"] >= 2, line
    assert figures["redis_hangs"] >= 1 and figures["redis_client_kills"] >= 1, line
    assert figures["revoked"] >= REVOKE_PER_BATCH and figures["expired"] >= EPHEMERAL_PER_BATCH, line
    assert s["held_data_4xx"] >= 1, \
        f"the held transaction did not get 4xx at end of data after the milter kill: " \
        f"{[m.attempts[0] for m in messages.values() if m.kind == 'held']}"
    assert figures["refused_revoked"] >= 1 and figures["refused_expired"] >= 1, line
    assert figures["gave_up"] <= GAVE_UP_MAX_FRACTION * figures["sent"], \
        f"too many messages gave up after {MAX_ATTEMPTS} attempts (~30 s): the lab did not recover; {line}"
    final = [m for m in messages.values() if m.kind == "final"]
    assert len(final) == N_FINAL and all(m.state == "accepted" for m in final), \
        [(m.id, m.state, m.attempts) for m in final if m.state != "accepted"][:5]
    assert figures["accepted"] >= 0.5 * figures["sent"], line
    assert lab.milter.is_running(), labmod.tail(lab.milter.log(), 20)
    assert "internal error" not in lab.milter.log(), \
        [l for l in lab.milter.log().splitlines() if "internal error" in l][:5]


def test_accounting_catches_every_kind_of_failure():
    """The checker itself, on a made-up ledger: a soak run that passes
    means something only if each kind of failure would have been counted."""
    now = time.time()
    live = Alias("live@x", "alice@real.example", "long")
    revoked = Alias("rev@x", "bob@real.example", "long", revoked_before=now - 10, revoked_after=now - 9.9)
    expiring = Alias("eph@x", "carol@other.example", "ephemeral", set_at=now - 10, set_done=now - 9.99, ttl_s=3)

    def msg(mid, alias, state, rcpt_at=now, rcpt=(250, "2.1.5 Ok")):
        m = Message(mid, alias, "main", state=state)
        m.final = {"rcpt_sent": rcpt_at - 0.01, "rcpt_replied": rcpt_at,
                   "rcpt": {"code": rcpt[0], "text": rcpt[1]}}
        m.attempts = [m.final]
        return m

    unknown = (550, "5.1.1 <x>: Recipient address rejected: unknown alias")
    ledger = {m.id: m for m in [
        msg("ok", live, "accepted"),
        msg("lost", live, "accepted"),
        msg("dup", live, "accepted"),
        msg("elsewhere", live, "accepted"),
        msg("refused-ok", revoked, "refused", rcpt=unknown),
        msg("refused-early", revoked, "refused", rcpt_at=now - 20, rcpt=unknown),
        msg("refused-live", live, "refused", rcpt=unknown),
        msg("refused-553", revoked, "refused", rcpt=(553, "5.1.3 malformed")),
        msg("expired-ok", expiring, "refused", rcpt=unknown),
        msg("expired-early", expiring, "refused", rcpt_at=now - 9, rcpt=unknown),
        msg("refused-delivered", revoked, "refused", rcpt=unknown),
        msg("dead-accepted", revoked, "accepted"),
        msg("gave-up-delivered", live, "gave_up"),
        msg("uncertain-once", live, "uncertain"),
        msg("uncertain-twice", live, "uncertain"),
        msg("pending", live, "pending"),
    ]}
    found = {
        "ok": Counter({"alice@real.example": 1}),
        "dup": Counter({"alice@real.example": 2}),
        "elsewhere": Counter({"alice@real.example": 1, "bob@real.example": 1}),
        "refused-delivered": Counter({"bob@real.example": 1}),
        "dead-accepted": Counter({"bob@real.example": 1}),
        "gave-up-delivered": Counter({"alice@real.example": 1}),
        "uncertain-once": Counter({"alice@real.example": 1}),
        "uncertain-twice": Counter({"alice@real.example": 2}),
        "stray": Counter({"carol@other.example": 1}),
    }
    counts, problems = account(ledger, found)

    def ids(kind):
        return sorted(p.split()[0].rstrip(":") for p in problems[kind])
    assert ids("lost") == ["lost"]
    assert ids("duplicated") == ["dup", "uncertain-twice"]
    assert ids("misdelivered") == ["elsewhere", "gave-up-delivered", "refused-delivered", "unknown"]
    assert ids("wrongly_refused") == ["expired-early", "refused-553", "refused-early", "refused-live"]
    assert ids("accepted_dead") == ["dead-accepted"]
    assert ids("unfinished") == ["pending"]
    assert counts["refused_revoked"] == 2 and counts["refused_expired"] == 1
