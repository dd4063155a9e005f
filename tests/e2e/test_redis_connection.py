"""The milter's Redis connection options against real Redis servers: AUTH as
an ACL user with the password read from a file, requirepass, a Unix socket,
a database number, and a wrong password (451, never 5xx, never a crash)."""

import subprocess

import pytest

import lab as labmod

PASSWORD = "correct horse battery staple"


rcpt = labmod.assert_miltertest_rcpt


@pytest.fixture(scope="module")
def workdir(request):
    with labmod.work_directory("impalemail-redis-", "redis-connection",
                               lambda: request.session.testsfailed) as path:
        (path / "redis-password").write_text(PASSWORD + "\n")
        (path / "wrong-password").write_text("not the password\n")
        yield path


@pytest.fixture(scope="module")
def acl_redis(workdir):
    """Redis with requirepass for the default user, an ACL user allowed only
    GET on alias:*, a Unix socket, and the alias in database 3."""
    sock = workdir / "redis" / "redis.sock"
    r = labmod.Redis(workdir / "redis", password="admin-secret", extra_args=[
        "--requirepass", "admin-secret",
        "--unixsocket", str(sock), "--unixsocketperm", "777",  # the milter runs as nobody
    ])
    r.start()
    r.cli("ACL", "SETUSER", "impalemail", "on", f">{PASSWORD}", "~alias:*", "+get", "+select", "+auth")
    r.cli("-n", "3", "SET", "alias:shop@alias.example.org", "alice@real.example", "EX", "600")
    r.socket = sock
    yield r
    r.stop()


def milter_for(workdir, redis, name, redis_extra, address=None):
    return labmod.Milter(labmod.milter_binary(), workdir / name, redis.port, workdir / name / "milter.sock",
                         redis_address=address, redis_extra=redis_extra)


def test_acl_user_with_password_file_over_unix_socket(workdir, acl_redis):
    m = milter_for(workdir, acl_redis, "acl",
                   "  username: impalemail\n  password_file: ../redis-password\n  database: 3\n",
                   address=f"unix:{acl_redis.socket}")
    m.start()
    try:
        rcpt(m, "<Shop@alias.example.org>", "continue")
        rcpt(m, "<nobody@alias.example.org>", "reply")
        assert "code=550" in m.log()
        assert PASSWORD not in m.log()
    finally:
        m.stop()


def test_requirepass_default_user(workdir, acl_redis):
    (workdir / "admin-password").write_text("admin-secret")
    m = milter_for(workdir, acl_redis, "requirepass",
                   f"  password_file: {workdir}/admin-password\n  database: 3\n")
    m.start()
    try:
        rcpt(m, "<shop@alias.example.org>", "continue")
    finally:
        m.stop()


def test_wrong_password_tempfails_and_names_the_cause(workdir, acl_redis):
    m = milter_for(workdir, acl_redis, "wrong",
                   "  username: impalemail\n  password_file: ../wrong-password\n  database: 3\n")
    m.start()
    try:
        rcpt(m, "<shop@alias.example.org>", "reply")
        log = m.log()
        assert "action=tempfail code=451" in log and "AUTH refused" in log, log
        assert "not the password" not in log
    finally:
        m.stop()


def test_no_password_against_requirepass_tempfails(workdir, acl_redis):
    m = milter_for(workdir, acl_redis, "noauth", "  database: 3\n")
    m.start()
    try:
        rcpt(m, "<shop@alias.example.org>", "reply")
        assert "code=451" in m.log() and "NOAUTH" in m.log()
    finally:
        m.stop()


def milter_redis_clients(redis):
    """CLIENT LIST lines of the clients whose last command was a GET or the
    statistics EVAL (the milter's: redis-cli's own is CLIENT LIST)."""
    return [line for line in redis.cli("CLIENT", "LIST").splitlines()
            if " cmd=get " in line or " cmd=eval " in line]


def test_sessions_share_a_pooled_connection_with_keepalives(workdir, acl_redis):
    """Milter sessions one after another borrow the same Redis connection
    (same client id, never a second client), which stays open between them
    with TCP keepalives on, so an idle pool survives firewalls and NAT."""
    (workdir / "admin-password").write_text("admin-secret")
    m = milter_for(workdir, acl_redis, "pooled", f"  password_file: {workdir}/admin-password\n  database: 3\n")
    m.start()
    try:
        rcpt(m, "<shop@alias.example.org>", "continue")
        first = milter_redis_clients(acl_redis)
        assert len(first) == 1, first
        client_id = first[0].split()[0]
        for _ in range(4):
            rcpt(m, "<shop@alias.example.org>", "continue")
            rcpt(m, "<nobody@alias.example.org>", "reply")
        after = milter_redis_clients(acl_redis)
        assert [line.split()[0] for line in after] == [client_id], after

        ss = subprocess.run(["ss", "-tnpoH", "state", "established", "dport", "=", f":{acl_redis.port}"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
        mine = [line for line in ss.splitlines() if f"pid={m.proc.pid}," in line]
        assert len(mine) == 1, ss
        assert "timer:(keepalive" in mine[0], mine[0]
    finally:
        m.stop()


def test_pooled_connection_closed_by_redis_idle_timeout_is_replaced_without_451(workdir, acl_redis):
    """Redis's own idle `timeout` closes the pooled connection between two
    sessions: the next lookup replaces it and re-sends the GET, so the
    sender sees 250, not 451."""
    (workdir / "admin-password").write_text("admin-secret")
    m = milter_for(workdir, acl_redis, "idle-timeout", f"  password_file: {workdir}/admin-password\n  database: 3\n")
    m.start()
    assert acl_redis.cli("CONFIG", "SET", "timeout", "1") == "OK"
    try:
        rcpt(m, "<shop@alias.example.org>", "continue")
        assert len(milter_redis_clients(acl_redis)) == 1
        labmod.wait_until(lambda: not milter_redis_clients(acl_redis), 15,
                          "Redis closing the idle milter connection")
        offset = m.log_offset()
        rcpt(m, "<shop@alias.example.org>", "continue")
        assert "action=tempfail" not in m.log(offset), m.log(offset)
        assert "action=accept" in m.log(offset), m.log(offset)
    finally:
        acl_redis.cli("CONFIG", "SET", "timeout", "0")
        m.stop()
