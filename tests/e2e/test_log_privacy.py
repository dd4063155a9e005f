"""Owner mailboxes appear in the log only as keyed HMAC pseudonyms, stable
across restarts with a key file; show_addresses is the debugging switch."""

import hashlib
import hmac

import pytest

import lab as labmod

OWNER = "Alice.Private@Real.Example"
KEY = b"0123456789abcdef0123456789abcdef-log-key"


def accept_once(milter):
    labmod.assert_miltertest_rcpt(milter, "<shop@alias.example.org>", "continue")


@pytest.fixture(scope="module")
def env(request):
    with labmod.work_directory("impalemail-logs-", "log-privacy", lambda: request.session.testsfailed) as workdir:
        (workdir / "pseudonym.key").write_bytes(KEY + b"\n")
        redis = labmod.Redis(workdir / "redis")
        redis.start()
        redis.cli("SET", "alias:shop@alias.example.org", OWNER, "EX", "600")
        yield workdir, redis
        redis.stop()


def milter_with(workdir, redis, name, logging_yaml):
    m = labmod.Milter(labmod.milter_binary(), workdir / name, redis.port, workdir / name / "m.sock")
    m.logging_extra = logging_yaml
    return m


def test_keyed_pseudonym_is_the_hmac_and_stable_across_restarts(env):
    workdir, redis = env
    expected = "h:" + hmac.new(KEY, OWNER.lower().encode(), hashlib.sha256).hexdigest()[:16]
    m = milter_with(workdir, redis, "keyed", f"  pseudonym_key_file: {workdir}/pseudonym.key\n")
    for _ in range(2):  # two processes, one pseudonym
        m.start()
        accept_once(m)
        m.stop()
    log = m.log()
    assert log.count(f"owner={expected} action=accept") == 2, log
    assert OWNER.lower() not in log.lower() and "alice.private" not in log.lower()


def test_without_a_key_pseudonyms_change_per_process(env):
    workdir, redis = env
    m = milter_with(workdir, redis, "random", "")
    owners = []
    for _ in range(2):
        offset = m.log_offset() if m.logfile.exists() else 0
        m.start()
        accept_once(m)
        m.stop()
        line = next(l for l in m.log(offset).splitlines() if "action=accept" in l)
        owners.append(line.split("owner=")[1].split()[0])
    assert owners[0] != owners[1] and all(o.startswith("h:") for o in owners)
    assert "alice.private" not in m.log().lower()


def test_show_addresses_logs_in_clear_and_warns(env):
    workdir, redis = env
    m = milter_with(workdir, redis, "clear", "  show_addresses: true\n")
    m.start()
    accept_once(m)
    m.stop()
    log = m.log()
    assert f"owner={OWNER} action=accept" in log
    assert "mailbox addresses will be logged in clear" in log
