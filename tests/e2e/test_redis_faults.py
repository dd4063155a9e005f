"""A slow and a broken Redis, through the real Postfix (contrib/postfix).

Every test here runs against a private lab of its own (module fixture
`flab`): Redis started with `--enable-debug-command yes` (DEBUG is refused by
default in Redis 7 and `enable-debug-command` cannot be changed at run
time), the milter (timeout_ms 250) and Postfix.  The shared session lab of
conftest.py is not used: these tests pause Redis for everyone, set a
password on it and fill its memory, and a failed test must not take the
other modules down with it.  Redis is still put back after each test
(`restore_redis`), since the tests of this module share it.

What is checked:
- a Redis that stops answering (CLIENT PAUSE ... ALL, DEBUG SLEEP): every
  RCPT gets 451 4.3.0; a lone session's RCPTs within RCPT_MAX_S (the
  milter's own budget is 250 ms for the connect plus 250 ms for the GET;
  1.5 s leaves room for a loaded 2-core machine), and with N_SESSIONS stuck
  at once within QUEUED_RCPT_MAX_S (libmilter's worker pool can queue a
  session behind others' timeouts, see below); the milter's thread count
  stays bounded (one per stuck session at most, plus slack) and comes back
  to its baseline when the sessions end; the same milter process answers
  250 again as soon as Redis does;
- a Redis that accepts no connection at all (full accept queue): the connect
  timeout also gives 451 within RCPT_MAX_S;
- error replies: WRONGTYPE, NOAUTH (requirepass set while the milter is
  connected without a password) each give 451 and a log line naming the
  alias and the error;
- OOM: Redis 7 never answers GET with OOM (GET is not a "denyoom" command;
  only writes and MULTI queuing are refused when used memory is over
  maxmemory), so a real Redis cannot produce it for the milter's only
  command: the test shows that (SET refused with OOM, GET still served, the
  alias delivered) and then checks the milter's handling of an OOM reply
  with a RESP stub that answers every command with Redis's exact OOM text
  (as would a proxy or a future Redis); LOADING (a Redis still reading its
  dataset after a restart) is injected the same way.

Postfix's smtpd answers with a 1 s delay after smtpd_soft_error_limit (10)
errors in one session, so no session here sends more than RCPTS_PER_SESSION
(6) failing RCPTs: what is timed is the milter, not Postfix's tarpit.
"""

import os
import re
import smtplib
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import lab as labmod

ALICE = "alice@real.example"
BOB = "bob@real.example"
CAROL = "carol@other.example"
SENDER = "news@shop.test"
DOMAIN = labmod.ALIAS_DOMAIN

RCPT_MAX_S = 1.5            # per RCPT reply while Redis hangs; the milter's budget is 2 x 250 ms
N_SESSIONS = 6              # concurrent stuck SMTP sessions
RCPTS_PER_SESSION = 6       # below smtpd_soft_error_limit (10)
LONE_RCPTS = 2              # RCPTs of the lone session, timed against RCPT_MAX_S
# Concurrent sessions: Debian's libmilter is built with its worker pool
# (_FFR_WORKERS_POOL).  When several sessions become ready in the same poll
# round, its controller marks them all "ready to run" and signals the one
# idle worker instead of starting a thread per session (tm_nb_idle is only
# decremented once that worker wakes up); the rest wait until a busy worker
# finishes its own 250 ms Redis timeout.  So with N sessions stuck at once a
# reply can queue behind up to N-1 others: observed up to 1.8 s with 6
# sessions and DEBUG SLEEP (strace: a session's fd ready at t, read by a
# worker at t + 0.57 s).  The concurrent phase allows for that queueing.
QUEUED_RCPT_MAX_S = RCPT_MAX_S + N_SESSIONS * 0.3
MARGIN_S = 0.6              # stop sending RCPTs this long before the fault may end
THREAD_SLACK = 2            # libmilter may start a spare worker besides one per busy session
RECOVERY_S = 8              # a recovered Redis must give 250 within this


# --------------------------------------------------------------------------
# the module's own lab
# --------------------------------------------------------------------------
class FaultLab:
    def __init__(self, workdir, redis, milter, postfix):
        self.workdir = workdir
        self.redis = redis
        self.milter = milter
        self.postfix = postfix
        self.planned_restarts = 0   # milter restarts a test made on purpose (milter_on)


@pytest.fixture(scope="module")
def flab(request):
    if os.geteuid() != 0:
        pytest.fail("the e2e tests must run as root (Postfix master needs it)")
    binary = labmod.milter_binary()
    if not binary.is_file():
        pytest.fail(f"milter binary {binary} does not exist; run scripts/build.sh", pytrace=False)
    failed_before = request.session.testsfailed
    with labmod.work_directory("impalemail-redisfaults-", "redis-faults",
                               lambda: request.session.testsfailed > failed_before) as workdir:
        redis = labmod.Redis(workdir / "redis", extra_args=["--enable-debug-command", "yes"])
        postfix = labmod.Postfix(workdir / "postfix")
        milter = labmod.Milter(binary, workdir / "milter", redis.port, postfix.milter_socket)
        try:
            redis.start()
            postfix.setup()
            milter.start()
            postfix.start()
            yield FaultLab(workdir, redis, milter, postfix)
        finally:
            for stop in (postfix.stop, milter.stop, redis.resume, redis.stop):
                try:
                    stop()
                except Exception as e:  # keep stopping the rest
                    sys.stderr.write(f"[redis-faults] teardown: {e}\n")


def redis_ping(redis, timeout=0.2):
    """True if Redis answers PING within timeout (raw socket: never blocks)."""
    try:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@pytest.fixture(autouse=True)
def restore_redis(flab):
    """Put Redis (and the milter) back the way the next test expects."""
    # redis-cli prints name and value on two lines; an empty value (no
    # requirepass) leaves only the name once the final newline is stripped.
    defaults = {k: (flab.redis.cli("CONFIG", "GET", k).split("\n") + [""])[1]
                for k in ("maxmemory", "maxmemory-policy", "requirepass")}
    pid, planned = flab.milter.pid, flab.planned_restarts
    yield
    problems = []
    flab.redis.resume()
    # CLIENT PAUSE / DEBUG SLEEP end by themselves (CLIENT UNPAUSE would be
    # paused too); wait for them, bounded.
    labmod.wait_until(lambda: redis_ping(flab.redis), 15, "Redis to answer PING again")
    try:
        flab.redis.cli("CONFIG", "SET", "requirepass", defaults["requirepass"])
    except subprocess.SubprocessError:
        pass
    if "NOAUTH" in flab.redis.cli("PING"):      # the test left a password set
        flab.redis.password = "x"
        flab.redis.cli("CONFIG", "SET", "requirepass", defaults["requirepass"])
        flab.redis.password = None
    for k in ("maxmemory", "maxmemory-policy"):
        flab.redis.cli("CONFIG", "SET", k, defaults[k])
    flab.redis.cli("FLUSHALL")
    if not flab.milter.is_running():
        problems.append("the milter is not running (crashed?):\n" + labmod.tail(flab.milter.log(), 20))
        flab.milter.start()
    elif flab.milter.pid != pid and flab.planned_restarts == planned:
        problems.append(f"the milter was restarted behind the test's back ({pid} -> {flab.milter.pid})")
    queue = flab.postfix.queue()
    parked = [q for q in queue if any(r["address"].endswith("@hold.invalid") for r in q["recipients"])]
    if parked:
        problems.append(f"mail parked for hold.invalid (not rewritten): {parked}")
    if queue:
        flab.postfix.delete_queue()
    if problems:
        pytest.fail("after the test: " + "; ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def alias(label):
    return f"{label}-{uuid.uuid4().hex[:8]}@{DOMAIN}"


def message(token, to):
    return (f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: redis faults {token}\r\n"
            f"Message-ID: <{token}@shop.test>\r\n\r\nmarker {token}\r\n").encode()


def send(flab, rcpts, token):
    return labmod.send(flab.postfix.port, SENDER, rcpts, message(token, rcpts[0]))


def delivered(flab, owner, token):
    return flab.postfix.wait_for_delivery(owner, 1, timeout=20, match=token)


def log_lines(milter, offset, needle):
    return [line for line in milter.log(offset).splitlines() if needle in line]


def assert_tempfail_logged(milter, offset, address, error=None):
    """A `tempfail code=451` line for address, naming `error` if given."""
    lines = log_lines(milter, offset, f"alias={address} ")
    assert lines, f"no log line for {address}:\n{labmod.tail(milter.log(offset), 20)}"
    line = lines[-1]
    assert "action=tempfail" in line and "code=451" in line and 'reason="' in line, line
    if error:
        assert error in line, f"log line does not name {error}: {line}"
    return re.search(r'reason="([^"]*)"', line).group(1)


def wait_threads_stable(milter, timeout=10):
    """The milter's thread count once it stopped changing (two equal samples 0.5 s apart)."""
    deadline = time.monotonic() + timeout
    last = milter.thread_count()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = milter.thread_count()
        if now == last:
            return now
        last = now
    return last


def stuck_sessions(flab, targets, until):
    """len(targets) concurrent SMTP sessions, each sending RCPT for its
    targets while time.monotonic() < until, then staying connected until
    every session is done (so they are all open at once), then QUIT.
    Meanwhile the milter's thread count is sampled every 20 ms.
    Returns (rcpt results, peak thread count)."""
    results = []                # (address, code, text, seconds, replied_at_monotonic)
    lock = threading.Lock()
    finished = []
    release = threading.Event()
    errors = []

    def session(addresses):
        smtp = None
        try:
            smtp = smtplib.SMTP("127.0.0.1", flab.postfix.port, timeout=30)
            smtp.ehlo("stuck.sender.test")
            code, text = smtp.mail(SENDER)
            assert code == 250, (code, text)
            for a in addresses:
                if time.monotonic() >= until:
                    break
                t0 = time.monotonic()
                code, text = smtp.rcpt(a)
                t1 = time.monotonic()
                with lock:
                    results.append((a, code, text.decode(errors="replace"), t1 - t0, t1))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            with lock:
                finished.append(1)
            release.wait(30)
            if smtp is not None:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()

    threads = [threading.Thread(target=session, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    peak = flab.milter.thread_count() or 0
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        peak = max(peak, flab.milter.thread_count() or 0)
        with lock:
            if len(finished) == len(threads):
                release.set()
        time.sleep(0.02)
    release.set()
    for t in threads:
        t.join(10)
    assert not errors, errors
    return results, peak


def wait_recovered(flab, address, owner, token):
    """Send to a live alias until it is accepted (bounded); before that only
    451 is acceptable.  Returns every RCPT reply."""
    replies = []
    deadline = time.monotonic() + RECOVERY_S
    while True:
        r = send(flab, [address], f"{token}-{len(replies)}")
        reply = r.rcpts.get(address) or r.mail
        replies.append(reply)
        if reply is not None and reply.ok and r.data is not None and r.data.ok:
            delivered(flab, owner, f"{token}-{len(replies) - 1}")
            return replies
        assert reply is not None and reply.code == 451, f"{r} (replies so far: {[str(x) for x in replies]})"
        assert time.monotonic() < deadline, f"not recovered after {RECOVERY_S}s: {[str(x) for x in replies]}"
        time.sleep(0.3)


def hang_and_check(flab, start_fault, fault_s, label, capsys):
    """Common body of the CLIENT PAUSE and DEBUG SLEEP tests."""
    owner = ALICE
    targets = [[alias(f"{label}{s}-{k}") for k in range(RCPTS_PER_SESSION)] for s in range(N_SESSIONS)]
    for a in [a for t in targets for a in t]:
        flab.redis.set_alias(a, owner, ttl=600)
    warm = alias(f"{label}-warm")
    flab.redis.set_alias(warm, owner, ttl=600)
    token = "tok" + uuid.uuid4().hex[:10]
    r = send(flab, [warm], token + "w")       # libmilter's workers exist, Redis connected once
    assert r.data is not None and r.data.ok, str(r)
    delivered(flab, owner, token + "w")
    baseline = wait_threads_stable(flab.milter)
    pid = flab.milter.pid
    offset = flab.milter.log_offset()

    lone = [alias(f"{label}-lone{k}") for k in range(LONE_RCPTS)]
    for a in lone:
        flab.redis.set_alias(a, owner, ttl=600)

    t_before = time.monotonic()
    t_hung = start_fault()             # returns once Redis is certainly not answering
    fault_ends_not_before = t_before + fault_s
    # 1. One session alone: nothing to queue behind, the milter's own timeout.
    lone_results, _ = stuck_sessions(flab, [lone], until=fault_ends_not_before - MARGIN_S)
    # 2. N sessions at once.
    results, peak = stuck_sessions(flab, targets, until=fault_ends_not_before - MARGIN_S)
    sessions_end = time.monotonic()
    labmod.wait_until(lambda: (flab.milter.thread_count() or 0) <= baseline, 15,
                      f"milter threads back to the baseline of {baseline}",
                      detail=lambda: f"now {flab.milter.thread_count()}")
    after = flab.milter.thread_count()

    assert len(lone_results) == LONE_RCPTS and all(x[4] < fault_ends_not_before for x in lone_results), \
        f"the lone session's RCPTs did not all happen while Redis hung ({t_hung - t_before:.2f}s to hang): " \
        f"{lone_results}"
    for a, code, text, secs, _ in lone_results:
        assert code == 451 and text.startswith("4.3.0"), f"RCPT {a} while Redis hung: {code} {text}"
        assert secs < RCPT_MAX_S, f"lone RCPT {a} took {secs:.3f}s (timeout_ms is 250)"

    during = [x for x in results if x[4] < fault_ends_not_before]
    assert len(during) >= N_SESSIONS, f"too few RCPTs while Redis hung ({t_hung - t_before:.2f}s to hang): {results}"
    for a, code, text, secs, _ in during:
        assert code == 451 and text.startswith("4.3.0"), f"RCPT {a} while Redis hung: {code} {text}"
    slow = [(a, round(secs, 3)) for a, _, _, secs, _ in results if secs >= QUEUED_RCPT_MAX_S]
    assert not slow, f"RCPT replies slower than {QUEUED_RCPT_MAX_S}s with {N_SESSIONS} sessions: {slow}"
    late = [x for x in results if x[4] >= fault_ends_not_before]
    assert all(code in (250, 451) for _, code, _, _, _ in late), late
    reasons = {assert_tempfail_logged(flab.milter, offset, a)
               for a, code, _, _, _ in lone_results + results if code == 451}

    assert peak <= baseline + N_SESSIONS + THREAD_SLACK, \
        f"milter threads piled up: baseline {baseline}, peak {peak} with {N_SESSIONS} sessions"
    assert after <= baseline

    # Redis answers again: the same milter process accepts again.
    labmod.wait_until(lambda: redis_ping(flab.redis), 15, "Redis to answer again")
    live = alias(f"{label}-after")
    flab.redis.set_alias(live, BOB, ttl=600)
    replies = wait_recovered(flab, live, BOB, token + "r")
    assert flab.milter.pid == pid and flab.milter.is_running()

    with capsys.disabled():
        secs = sorted(x[3] for x in during)
        print(f"\n[redis-faults] {label}: lone session {[round(x[3], 3) for x in lone_results]}s; "
              f"{N_SESSIONS} sessions: {len(during)} RCPTs while hung, all 451 4.3.0, "
              f"reply time median {secs[len(secs) // 2]:.3f}s max {secs[-1]:.3f}s; threads baseline "
              f"{baseline} peak {peak} after {after} ({sessions_end - t_before:.1f}s of stuck sessions); "
              f"recovered after {len(replies) - 1} more 451; logged reasons {sorted(reasons)}")


# --------------------------------------------------------------------------
# Redis stops answering
# --------------------------------------------------------------------------
def test_client_pause_tempfails_fast_without_thread_pileup_and_recovers(flab, capsys):
    def pause():
        assert flab.redis.cli("CLIENT", "PAUSE", "5000", "ALL") == "OK"
        assert not redis_ping(flab.redis), "CLIENT PAUSE ALL did not stop PING"
        return time.monotonic()
    hang_and_check(flab, pause, 5.0, "pause", capsys)


def test_debug_sleep_tempfails_fast_without_thread_pileup_and_recovers(flab, capsys):
    sleeper = []

    def sleep():
        sleeper.append(subprocess.Popen(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(flab.redis.port), "DEBUG", "SLEEP", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        labmod.wait_until(lambda: not redis_ping(flab.redis, timeout=0.1), 2,
                          "DEBUG SLEEP to block Redis")
        return time.monotonic()
    try:
        hang_and_check(flab, sleep, 3.0, "sleep", capsys)
    finally:
        outs = [p.communicate(timeout=15)[0] for p in sleeper]
    assert [o.strip() for o in outs] == [b"OK"], f"DEBUG SLEEP: {outs!r} (is enable-debug-command on?)"


# --------------------------------------------------------------------------
# Redis answers with errors
# --------------------------------------------------------------------------
def test_wrongtype_tempfails_and_names_the_error(flab):
    bad, good = alias("wrongtype"), alias("ok")
    key = f"alias:{bad}"
    assert flab.redis.cli("HSET", key, "f", "v") == "1"
    flab.redis.set_alias(good, BOB, ttl=600)
    pid, offset = flab.milter.pid, flab.milter.log_offset()
    token = "tok" + uuid.uuid4().hex[:10]

    r = send(flab, [bad, CAROL], token)

    assert r.rcpts[bad].code == 451 and r.rcpts[bad].text.startswith("4.3.0"), str(r)
    assert r.data is not None and r.data.ok, str(r)          # carol's copy only
    delivered(flab, CAROL, token)
    assert not flab.postfix.messages(ALICE, token) and not flab.postfix.messages(BOB, token)
    assert_tempfail_logged(flab.milter, offset, bad, "WRONGTYPE")
    # The connection is not poisoned by it: the next lookup works.
    r2 = send(flab, [good], token + "b")
    assert r2.rcpts[good].code == 250, str(r2)
    delivered(flab, BOB, token + "b")
    assert flab.milter.pid == pid


def test_noauth_tempfails_names_the_error_and_recovers(flab):
    """requirepass set, and the milter's Redis connections closed, while the
    milter runs without a password.

    Redis (7.0) only asks new connections to authenticate, so the milter's
    pooled connections are killed too: the next lookup finds its pooled
    connection closed, opens a new one, gets NOAUTH -> 451 with the error
    named in the log.  Once the password is removed, the same session's next
    RCPT works again (the milter drops a connection after NOAUTH and
    reconnects), and a transaction begun before it all is delivered."""
    a1, a2, a4 = (alias(f"noauth{i}") for i in (1, 2, 4))
    for a in (a1, a2, a4):
        flab.redis.set_alias(a, BOB, ttl=600)
    pid = flab.milter.pid
    token = "tok" + uuid.uuid4().hex[:10]
    old = smtplib.SMTP("127.0.0.1", flab.postfix.port, timeout=30)
    new = None
    try:
        old.ehlo("old.sender.test")
        assert old.mail(SENDER)[0] == 250
        assert old.rcpt(a1)[0] == 250            # the milter is connected to Redis now
        offset = flab.milter.log_offset()
        assert flab.redis.cli("CONFIG", "SET", "requirepass", "x") == "OK"
        try:
            flab.redis.password = "x"
            killed = int(flab.redis.cli("CLIENT", "KILL", "TYPE", "normal"))
            assert killed >= 1, "the milter held no Redis connection"
            new = smtplib.SMTP("127.0.0.1", flab.postfix.port, timeout=30)
            new.ehlo("new.sender.test")
            assert new.mail(SENDER)[0] == 250
            code, text = new.rcpt(a2)
            assert code == 451 and text.startswith(b"4.3.0"), (code, text)
            reason = assert_tempfail_logged(flab.milter, offset, a2, "NOAUTH")
            assert "Authentication required" in reason, reason
        finally:
            flab.redis.password = "x"
            assert flab.redis.cli("CONFIG", "SET", "requirepass", "") == "OK"
            flab.redis.password = None
        code, text = new.rcpt(a4)                # same session, password gone
        assert code == 250, (code, text)
        code, text = new.data(message(token, a4))
        assert code == 250, (code, text)
        delivered(flab, BOB, token)
        code, text = old.data(message(token + "old", a1))
        assert code == 250, (code, text)
        delivered(flab, BOB, token + "old")
    finally:
        for s in (old, new):
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    s.close()
    assert flab.milter.pid == pid


def test_oom_does_not_refuse_get_so_aliases_keep_working(flab):
    """Redis 7 refuses only "denyoom" commands (writes, MULTI queuing) when
    used memory is over maxmemory; GET is served.  So an out-of-memory
    Redis does not stop alias delivery, and cannot make the milter see an
    OOM reply (see test_injected_error_reply_tempfails for that)."""
    live, dead = alias("oom-live"), alias("oom-unknown")
    flab.redis.set_alias(live, ALICE, ttl=600)
    assert flab.redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert flab.redis.cli("CONFIG", "SET", "maxmemory", "1") == "OK"
    assert flab.redis.cli("SET", "oom-probe", "x").startswith("OOM "), "Redis is not out of memory"
    token = "tok" + uuid.uuid4().hex[:10]

    r = send(flab, [live], token)
    refused = send(flab, [dead], token + "d")

    assert r.rcpts[live].code == 250 and r.data.ok, str(r)
    delivered(flab, ALICE, token)
    assert refused.rcpts[dead].code == 550, str(refused)


# --------------------------------------------------------------------------
# replies and behaviours a real Redis cannot be made to show on demand
# --------------------------------------------------------------------------
class StubRedis(labmod.RespStub):
    """Answers every command with one error reply; records the commands
    (decoded) and counts connections."""

    def __init__(self, error):
        self.error = error
        self.commands = []
        super().__init__()

    def answer(self, args):
        self.commands.append([a.decode(errors="replace") for a in args])
        return b"-" + self.error.encode() + b"\r\n"


class milter_on:
    """Context manager: the lab milter replaced, on the same socket (so
    Postfix talks to it), by one whose Redis is `address`; the original is
    started again afterwards.  SIGKILL, not SIGTERM: a stop after traffic
    takes ~5 s (libmilter's poll loop) and no mail is in flight here."""

    def __init__(self, flab, address, name):
        self.flab = flab
        self.milter = labmod.Milter(labmod.milter_binary(), flab.workdir / name, flab.redis.port,
                                    flab.postfix.milter_socket, redis_address=address)

    def __enter__(self):
        self.flab.planned_restarts += 1
        self.flab.milter.kill()
        try:
            self.milter.start()
        except BaseException:
            self.flab.milter.start()
            raise
        return self.milter

    def __exit__(self, *exc):
        self.milter.kill()
        self.flab.milter.start()
        return False


OOM_TEXT = "OOM command not allowed when used memory > 'maxmemory'."
LOADING_TEXT = "LOADING Redis is loading the dataset in memory"


@pytest.mark.parametrize("error", [OOM_TEXT, LOADING_TEXT], ids=["OOM", "LOADING"])
def test_injected_error_reply_tempfails_and_names_the_error(flab, error):
    stub = StubRedis(error)
    first = alias("stub1")
    second = alias("stub2")
    token = "tok" + uuid.uuid4().hex[:10]
    try:
        with milter_on(flab, f"tcp://127.0.0.1:{stub.port}", "milter-stub") as m:
            offset = m.log_offset()
            with smtplib.SMTP("127.0.0.1", flab.postfix.port, timeout=30) as smtp:
                smtp.ehlo("stub.sender.test")
                assert smtp.mail(SENDER)[0] == 250
                replies = [smtp.rcpt(first), smtp.rcpt(second), smtp.rcpt(CAROL)]
                assert replies[2][0] == 250
                code, text = smtp.data(message(token, CAROL))
                assert code == 250, (code, text)
            for a, (code, text) in zip((first, second), replies):
                assert code == 451 and text.startswith(b"4.3.0"), (a, code, text)
                assert_tempfail_logged(m, offset, a, error.split()[0])
            delivered(flab, CAROL, token)
            gets = [c for c in stub.commands if c and c[0].upper() == "GET"]
            assert [c[1] for c in gets] == [f"alias:{first}", f"alias:{second}"], stub.commands
            if error.startswith("LOADING"):
                # A loading Redis: the milter must not keep the connection.
                assert stub.connections == 2, stub.connections
            else:
                assert stub.connections == 1, stub.connections
    finally:
        stub.close()


def test_redis_not_accepting_connections_tempfails_within_connect_timeout(flab):
    """A listener whose accept queue is full: the kernel drops the SYN, so
    connect() hangs until the milter's connect timeout (timeout_ms 250)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)   # fills the queue
    probe = socket.socket()
    probe.settimeout(0.5)
    with pytest.raises(OSError):
        probe.connect(("127.0.0.1", port))                             # queue really full
    probe.close()
    a = alias("noaccept")
    try:
        with milter_on(flab, f"tcp://127.0.0.1:{port}", "milter-noaccept") as m:
            offset = m.log_offset()
            t0 = time.monotonic()
            r = send(flab, [a], "tok" + uuid.uuid4().hex[:10])
            secs = time.monotonic() - t0
            assert r.rcpts[a].code == 451 and r.rcpts[a].text.startswith("4.3.0"), str(r)
            assert secs < RCPT_MAX_S + 0.5, f"whole session took {secs:.2f}s"
            reason = assert_tempfail_logged(m, offset, a, "cannot connect")
            assert f"127.0.0.1:{port}" in reason, reason
    finally:
        filler.close()
        listener.close()
