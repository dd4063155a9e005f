#!/usr/bin/python3
"""A private mail lab on 127.0.0.1: Redis, impalemail-milter and Postfix.

Everything lives under one work directory; nothing is written to /etc and
nothing listens anywhere but 127.0.0.1.  Used by the end-to-end tests
(tests/e2e) and, through the command line, by demo scripts:

    /usr/bin/python3 tests/e2e/lab.py up WORKDIR --smtp-port 2525 --redis-port 6390
    /usr/bin/python3 tests/e2e/lab.py status WORKDIR
    /usr/bin/python3 tests/e2e/lab.py down WORKDIR

Only the Python standard library is used.  Must run as root (Postfix's
master(8) needs it).

Facts about Postfix this module relies on (checked on Debian 12, Postfix 3.7):
- `postfix -c DIR start` works for root with no /etc/postfix/main.cf and no
  alternate_config_directories; the postmap/postqueue/postcat commands need
  `-c DIR` too (without it they die on the missing /etc/postfix/main.cf).
- queue_directory must exist before `postfix start`; its subdirectories are
  created with the right owners by `postfix start` itself (post-install
  create-missing).  data_directory must NOT be pre-created as root: Postfix
  creates it owned by mail_owner; a root-owned one makes master fail with
  "open lock file .../master.lock: Permission denied".
- Without syslog, `maillog_file` needs the postlog service in master.cf and
  a maillog_file_prefixes entry that covers the file.
- With chroot=n, Postfix daemons chdir into queue_directory, so the snippet's
  relative `unix:impalemail/milter.sock` means QUEUE_DIR/impalemail/milter.sock.
- The milter creates its socket with mode 0770; smtpd (user postfix) gets
  "connect to Milter service ...: Permission denied" unless the milter runs
  with group postfix, which is how Milter.start runs it.
- alias_maps/alias_database are emptied: the default nis:mail.aliases only
  logs "dict_nis_init: NIS domain name not set" warnings.
- virtual(8) delivers as nobody, so every directory above the Maildirs must
  be traversable (pytest's 0700 tmp_path is not usable as a work dir).
- With the milter down (or its socket stale), milter_default_action=tempfail
  makes smtpd answer "451 4.7.1 Service unavailable - try again later" to
  MAIL FROM. libmilter leaves the socket file behind on exit.
"""

import argparse
import contextlib
import email
import email.policy
import json
import os
import pwd
import grp
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MILTER = REPO / "build" / "milter" / "impalemail-milter"
CONTRIB_POSTFIX = REPO / "contrib" / "postfix"
MILTERTEST_SCRIPTS = REPO / "tests" / "miltertest"
ALIAS_DOMAIN = "alias.example.org"

# Real mailboxes of the lab Postfix: address -> Maildir (relative to base).
MAILBOXES = {
    "alice@real.example": "real.example/alice/",
    "bob@real.example": "real.example/bob/",
    "carol@other.example": "other.example/carol/",
}


# What ASan, LeakSanitizer and UBSan print when they find something.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class LabError(RuntimeError):
    pass


def milter_binary():
    """Path of the milter under test: $IMPALEMAIL_MILTER or the build tree."""
    return Path(os.environ.get("IMPALEMAIL_MILTER", str(DEFAULT_MILTER)))


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_socket_accepts(path):
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def wait_until(predicate, timeout, what, interval=0.05, detail=None):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            extra = ""
            if detail is not None:
                extra = "\n" + detail()
            raise LabError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def redis_cli(port, password, *args):
    """Run redis-cli against 127.0.0.1:port; returns stdout without the final newline."""
    env = dict(os.environ)
    if password:
        env["REDISCLI_AUTH"] = password
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *map(str, args)],
                         capture_output=True, timeout=10, check=False, env=env)
    if out.returncode != 0:
        raise subprocess.SubprocessError(
            f"redis-cli {args!r} failed: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode(errors="replace").rstrip("\n")


def miltertest(milter, script, **variables):
    """Run tests/miltertest/<script>.lua against the Unix socket of `milter`
    (anything with a socket_path); `variables` go to the script's
    environment.  Returns the CompletedProcess: status 0 when the script's
    expectations held."""
    env = dict(os.environ, MILTER_SOCKET=f"unix:{milter.socket_path}",
               MILTERTEST_DIR=str(MILTERTEST_SCRIPTS), **variables)
    return subprocess.run(["miltertest", "-s", str(MILTERTEST_SCRIPTS / f"{script}.lua")], env=env,
                          capture_output=True, text=True, timeout=60)


def miltertest_rcpt(milter, address, expect):
    """One RCPT straight to the milter; `expect` is 'continue' (accepted) or
    'reply' (refused or tempfailed).  The CompletedProcess, as miltertest()."""
    return miltertest(milter, "rcpt_reply", RCPT=address, EXPECT=expect)


def assert_miltertest_rcpt(milter, address, expect, log_lines=10):
    run = miltertest_rcpt(milter, address, expect)
    assert run.returncode == 0, f"{address}: {run.stdout}{run.stderr}\n{tail(milter.log(), log_lines)}"


def parse_resp_command(buf):
    """One RESP array of bulk strings from the front of buf: (args as bytes,
    rest), or (None, buf) while it is incomplete."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None, buf
    end = buf.index(b"\r\n")
    pos, args = end + 2, []
    for _ in range(int(buf[1:end])):
        e = buf.find(b"\r\n", pos)
        if e < 0:
            return None, buf
        n = int(buf[pos + 1:e])
        if len(buf) < e + 2 + n + 2:
            return None, buf
        args.append(buf[e + 2:e + 2 + n])
        pos = e + 2 + n + 2
    return args, buf[pos:]


class RespStub:
    """A RESP server on 127.0.0.1 for replies a real Redis cannot be made to
    give on demand: each command (a list of bytes) goes to answer(), which
    returns the reply's bytes.  Counts connections.  Bounded: every loop
    polls a stop flag every 0.2 s.  Subclasses set their own state before
    calling __init__, which starts serving."""

    def __init__(self):
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def address(self):
        return f"tcp://127.0.0.1:{self.port}"

    def answer(self, args):
        raise NotImplementedError

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        conn.settimeout(0.2)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while True:
                    args, buf = parse_resp_command(buf)
                    if args is None:
                        break
                    conn.sendall(self.answer(args))

    def close(self):
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def work_directory(prefix, label, failed):
    """A fresh directory for private services, mode 0755: virtual(8) delivers
    and the milter runs as nobody, so pytest's 0700 tmp_path will not do.
    Removed afterwards, unless failed() or IMPALEMAIL_E2E_KEEP asks to keep
    it; then its path goes to stderr."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        if failed() or os.environ.get("IMPALEMAIL_E2E_KEEP"):
            sys.stderr.write(f"\n[{label}] work directory kept: {path}\n")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(service, what, start=None):
    """For a pytest fixture: starts `service` (service.start(), or `start`
    when given), yields it, and stops it afterwards.  A start that fails
    stops what did start and fails the fixture with the reason instead of a
    traceback."""
    import pytest  # only here: lab.py also runs as a command, without pytest
    try:
        (start or service.start)()
    except (LabError, OSError) as e:
        service.stop()
        pytest.fail(f"cannot start {what}: {e}", pytrace=False)
    try:
        yield service
    finally:
        service.stop()


def revive(redis, milter):
    """After a test: resume a SIGSTOPped Redis, and start Redis or the milter
    again if either is gone.  Returns what was wrong, for the test's report
    (a test that stops a service on purpose starts it again itself)."""
    problems = []
    redis.resume()
    if not redis.is_running():
        problems.append("redis-server is not running")
        redis.start()
    if not milter.is_running():
        problems.append("the milter is not running (crashed?); log tail:\n" + tail(milter.log(), 20))
        milter.start()
    return problems


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        if st.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (FileNotFoundError, IndexError):
        return False
    return True


class _Service:
    """A foreground process started with Popen (or adopted by pid)."""

    def __init__(self):
        self.proc = None
        self._pid = None

    @property
    def pid(self):
        if self.proc is not None:
            return self.proc.pid
        return self._pid

    def is_running(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return self._pid is not None and _pid_alive(self._pid)

    def _signal(self, sig):
        if self.pid is not None and self.is_running():
            os.kill(self.pid, sig)

    def thread_count(self):
        """Number of threads of the running process (the `Threads:` line of
        /proc/PID/status), or None if it is not running."""
        if self.pid is None or not self.is_running():
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None
        return None

    def _wait_exit(self, timeout):
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                return True
            time.sleep(0.05)
        return not self.is_running()

    def stop(self, timeout=10):
        """SIGTERM and wait (SIGKILL after timeout)."""
        self._terminate(timeout)

    def kill(self):
        """SIGKILL: a crash (for Redis: no shutdown save, no AOF fsync beyond
        the configured policy)."""
        self._signal(signal.SIGKILL)
        self._wait_exit(5)
        self._reap()

    def _terminate(self, timeout=10):
        if not self.is_running():
            self._reap()
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self._signal(signal.SIGKILL)
            self._wait_exit(5)
        self._reap()

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self._pid = None


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------
class Redis(_Service):
    """A private redis-server on 127.0.0.1:port, data dir = workdir."""

    def __init__(self, workdir, port=None, extra_args=(), password=None):
        super().__init__()
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.logfile = self.workdir / "redis.log"
        self.extra_args = list(extra_args)  # e.g. --requirepass, --unixsocket
        self.password = password            # what cli() authenticates with

    def argv(self):
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(self.logfile), *self.extra_args]

    def start(self, detach=False, timeout=10):
        if self.is_running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=detach)
        wait_until(self._ready, timeout, f"redis PING on port {self.port}",
                   detail=lambda: tail(_read(self.logfile)))

    def _ready(self):
        if not self.is_running():
            raise LabError(f"redis-server exited ({self.proc.returncode}):\n"
                           + tail(_read(self.logfile)))
        try:
            return self.cli("PING") == "PONG"
        except subprocess.SubprocessError:
            return False

    def pause(self):
        """SIGSTOP: Redis keeps its port open but answers nothing (a hung server)."""
        self._signal(signal.SIGSTOP)

    def resume(self):
        self._signal(signal.SIGCONT)

    def cli(self, *args):
        """Run redis-cli against this server; returns stdout without the final newline."""
        return redis_cli(self.port, self.password, *args)

    def set_alias(self, alias, owner, ttl=None, prefix="alias:"):
        args = ["SET", prefix + alias.lower(), owner]
        if ttl is not None:
            args += ["EX", str(ttl)]
        reply = self.cli(*args)
        if reply != "OK":
            raise LabError(f"SET failed: {reply}")

    def monitor(self):
        """Context manager recording every command Redis processes (MONITOR)."""
        return _RedisMonitor(self)


class _RedisMonitor:
    def __init__(self, redis):
        self.redis = redis
        self.lines = []

    def __enter__(self):
        self.sock = socket.create_connection(("127.0.0.1", self.redis.port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += self.sock.recv(4096)
        if not buf.startswith(b"+OK"):
            raise LabError(f"MONITOR failed: {buf!r}")
        self._buf = buf.split(b"\r\n", 1)[1]
        return self

    def __exit__(self, *exc):
        # A marker command tells us when everything before it was seen.
        marker = f"monitor-end-{time.monotonic_ns()}"
        self.redis.cli("ECHO", marker)
        buf = self._buf
        self.sock.settimeout(5)
        while marker.encode() not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        self.sock.close()
        for line in buf.split(b"\r\n"):
            text = line.decode(errors="replace")
            if text and marker not in text:
                self.lines.append(text)
        return False


# --------------------------------------------------------------------------
# Redis Sentinel
# --------------------------------------------------------------------------
class Sentinel(_Service):
    """A private Redis Sentinel (redis-server --sentinel) on 127.0.0.1:port
    monitoring the primary on 127.0.0.1:master_port as `master`.

    Its config file is workdir/sentinel.conf, written at the first start;
    Sentinel rewrites it as it learns (replicas, other sentinels, the current
    primary, the epoch), so it lives in the writable workdir and a restart
    keeps what was learnt.  `extra_conf` adds lines, e.g. "requirepass X\n"
    (clients must AUTH) or "sentinel auth-pass impalemail X\n" (the data
    nodes' password); `password` is what cli() authenticates with.
    """

    def __init__(self, workdir, master_port, port=None, master="impalemail", quorum=2,
                 down_after_ms=1000, failover_timeout_ms=5000, extra_conf="", password=None):
        super().__init__()
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.master = master
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.extra_conf = extra_conf
        self.password = password
        self.conf = self.workdir / "sentinel.conf"
        self.logfile = self.workdir / "sentinel.log"

    @property
    def address(self):
        return f"tcp://127.0.0.1:{self.port}"

    def write_conf(self):
        m = self.master
        self.conf.write_text(
            "# Private lab sentinel (generated by tests/e2e/lab.py; Sentinel rewrites it).\n"
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            "daemonize no\n"
            f"dir {self.workdir}\n"
            f"logfile {self.logfile}\n"
            f"sentinel monitor {m} 127.0.0.1 {self.master_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {m} {self.down_after_ms}\n"
            f"sentinel failover-timeout {m} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {m} 1\n"
            + self.extra_conf)

    def start(self, detach=False, timeout=10):
        if self.is_running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.conf.exists():
            self.write_conf()
        self.proc = subprocess.Popen(["redis-server", str(self.conf), "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=detach)
        wait_until(self._ready, timeout, f"sentinel PING on port {self.port}",
                   detail=lambda: tail(_read(self.logfile)))

    def _ready(self):
        if not self.is_running():
            raise LabError(f"sentinel exited ({self.proc.returncode}):\n" + tail(_read(self.logfile)))
        try:
            return self.cli("PING") == "PONG"
        except subprocess.SubprocessError:
            return False

    def cli(self, *args):
        return redis_cli(self.port, self.password, *args)

    def master_port_now(self):
        """Port of the primary this sentinel names now (None if it names none)."""
        try:
            lines = self.cli("SENTINEL", "get-master-addr-by-name", self.master).splitlines()
        except subprocess.SubprocessError:
            return None
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def master_info(self):
        """SENTINEL MASTER as a dict (flags, num-slaves, num-other-sentinels, ...)."""
        lines = self.cli("SENTINEL", "MASTER", self.master).splitlines()
        return dict(zip(lines[0::2], lines[1::2]))

    def log(self):
        return _read(self.logfile)


def stop_all(services):
    """Stop several services at once, each with its own stop() (a milter's
    stop can take ~5 s: libmilter's worker pool polls); errors are collected."""
    errors = []

    def stop(svc):
        try:
            svc.stop()
        except Exception as e:  # keep stopping the others
            errors.append(f"{svc!r}: {e}")
    threads = [threading.Thread(target=stop, args=(svc,)) for svc in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise LabError("; ".join(errors))


def wait_sentinels_ready(sentinels, replicas, timeout=30):
    """Wait until every sentinel sees the primary as up, `replicas` replicas
    and every other sentinel: only then can they agree on a failover."""
    def ready():
        for s in sentinels:
            try:
                info = s.master_info()
            except (subprocess.SubprocessError, IndexError):
                return False
            if (info.get("flags") != "master" or int(info.get("num-slaves", -1)) != replicas
                    or int(info.get("num-other-sentinels", -1)) != len(sentinels) - 1):
                return False
        return True
    wait_until(ready, timeout, f"{len(sentinels)} sentinels to see the primary, {replicas} replica(s) "
               "and each other", interval=0.2,
               detail=lambda: "\n".join(f"sentinel {s.port}: " + tail(s.log(), 8) for s in sentinels))


def wait_replica_in_sync(replica, timeout=20):
    """Wait until a replica's link to its primary is up (initial sync done)."""
    wait_until(lambda: "master_link_status:up" in replica.cli("INFO", "replication"), timeout,
               f"replica on port {replica.port} to sync", interval=0.1,
               detail=lambda: tail(_read(replica.logfile)))


class SentinelCluster:
    """One Redis primary, `replicas` replicas (--replicaof) and `sentinels`
    sentinels (quorum `quorum`), all on free ports under workdir.

    data_password: requirepass + masterauth on the data nodes (and
    `sentinel auth-pass` so the sentinels can reach them);
    sentinel_password: requirepass on the sentinels themselves.
    """

    def __init__(self, workdir, replicas=1, sentinels=3, quorum=2, master="impalemail",
                 data_password=None, sentinel_password=None, sentinel_extra="",
                 down_after_ms=1000, failover_timeout_ms=5000):
        self.workdir = Path(workdir)
        self.master = master
        args = ["--requirepass", data_password, "--masterauth", data_password] if data_password else []
        # Replicas sync at once (the default waits 5 s for more replicas to join).
        args += ["--repl-diskless-sync-delay", "0"]
        self.nodes = [Redis(self.workdir / "redis-0", extra_args=args, password=data_password)]
        for i in range(1, replicas + 1):
            self.nodes.append(Redis(self.workdir / f"redis-{i}", password=data_password, extra_args=[
                *args, "--replicaof", "127.0.0.1", str(self.nodes[0].port)]))
        extra = sentinel_extra
        # Quoted: a password may contain spaces (not double quotes).
        if data_password:
            extra += f'sentinel auth-pass {master} "{data_password}"\n'
        if sentinel_password:
            extra += f'requirepass "{sentinel_password}"\n'
        self.sentinels = [Sentinel(self.workdir / f"sentinel-{i}", self.nodes[0].port, master=master,
                                   quorum=quorum, down_after_ms=down_after_ms,
                                   failover_timeout_ms=failover_timeout_ms, extra_conf=extra,
                                   password=sentinel_password)
                          for i in range(sentinels)]

    def start(self, timeout=30):
        try:
            for node in self.nodes:
                node.start()
            for replica in self.nodes[1:]:
                wait_replica_in_sync(replica)
            for s in self.sentinels:
                s.start()
            wait_sentinels_ready(self.sentinels, len(self.nodes) - 1, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for svc in (*self.sentinels, *self.nodes):
            if isinstance(svc, Redis):
                svc.resume()
            svc.stop()

    def named_ports(self):
        """The primary port each sentinel names now (None where one names none)."""
        return [s.master_port_now() for s in self.sentinels if s.is_running()]

    def node_on(self, port):
        for node in self.nodes:
            if node.port == port:
                return node
        raise LabError(f"no data node on port {port}")

    def primary(self):
        """The data node every running sentinel names as primary."""
        ports = set(self.named_ports())
        if len(ports) != 1 or None in ports:
            raise LabError(f"sentinels disagree on the primary: {self.named_ports()}")
        return self.node_on(ports.pop())

    def wait_primary_is(self, node, timeout=30):
        """Wait until every running sentinel names `node` and it says ROLE master."""
        def done():
            if set(self.named_ports()) != {node.port}:
                return False
            try:
                return node.cli("ROLE").splitlines()[0] == "master"
            except (subprocess.SubprocessError, IndexError):
                return False
        wait_until(done, timeout, f"sentinels to name port {node.port} as primary", interval=0.1,
                   detail=lambda: f"named: {self.named_ports()}\n" + "\n".join(
                       f"sentinel {s.port}: " + tail(s.log(), 10) for s in self.sentinels))

    def set_alias_everywhere(self, alias, owner, ttl=600, prefix="alias:", timeout=10):
        """SET on the primary the sentinels name, then wait until every other
        running data node has the key.  (Not WAIT: on Redis 7.0 it was seen
        to count a replica that had just resynced before that replica had the
        write, and a failover right then lost it.)  Returns the primary."""
        primary = self.primary()
        primary.set_alias(alias, owner, ttl=ttl, prefix=prefix)
        key = prefix + alias.lower()
        for node in self.nodes:
            if node is not primary and node.is_running():
                wait_until(lambda node=node: node.cli("EXISTS", key) == "1", timeout,
                           f"{key} to reach the replica on port {node.port}", interval=0.05)
        return primary

    def wait_replica_ready(self, node, timeout=40):
        """Wait until `node` says ROLE slave with its link up and every running
        sentinel lists it as a replica with master-link-status ok: a candidate
        for the next failover.  (After a switchover Sentinel demotes the old
        primary only some 8-10 s later.)"""
        def listed(s):
            lines = s.cli("SENTINEL", "REPLICAS", self.master).splitlines()
            replicas, cur = [], None
            for k, v in zip(lines[0::2], lines[1::2]):
                if k == "name":
                    cur = {}
                    replicas.append(cur)
                if cur is not None:
                    cur[k] = v
            return any(r.get("port") == str(node.port) and r.get("flags") == "slave"
                       and r.get("master-link-status") == "ok" for r in replicas)

        def done():
            try:
                return ("master_link_status:up" in node.cli("INFO", "replication")
                        and all(listed(s) for s in self.sentinels if s.is_running()))
            except subprocess.SubprocessError:
                return False
        wait_until(done, timeout, f"port {node.port} to be a synced replica known to the sentinels",
                   interval=0.2)

    def yaml(self, extra=""):
        """The milter's `sentinel:` block (see Milter.sentinel_yaml)."""
        return sentinel_yaml(self.sentinels, self.master, extra)


def sentinel_yaml(sentinels, master="impalemail", extra=""):
    """The `sentinel:` block of the milter's redis: section (see Milter.sentinel_yaml)."""
    addrs = ", ".join(s.address for s in sentinels)
    return f"  sentinel:\n    master: {master}\n    addresses: [{addrs}]\n" + extra


# --------------------------------------------------------------------------
# Milter
# --------------------------------------------------------------------------
class Milter(_Service):
    """impalemail-milter in the foreground, config in workdir/impalemail.yaml."""

    def __init__(self, binary, workdir, redis_port, socket_path,
                 alias_domains=(ALIAS_DOMAIN,), extra_yaml=None, redis_address=None, redis_extra=""):
        super().__init__()
        # redis_address replaces tcp://127.0.0.1:<redis_port>; redis_extra
        # adds lines (already indented) to the redis: section.
        self.redis_address = redis_address
        self.redis_extra = redis_extra
        # Lines (indented, e.g. "  sentinel:\n    master: ...\n") that
        # replace the `address:` line of the redis: section (Redis Sentinel).
        self.sentinel_yaml = None
        self.milter_extra = ""  # lines (indented) added to the milter: section
        self.logging_extra = ""  # lines (indented) added to the logging: section
        self.user = "nobody"
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.redis_port = redis_port
        self.socket_path = Path(socket_path).resolve()
        self.alias_domains = list(alias_domains)
        self.extra_yaml = extra_yaml
        self.config = self.workdir / "impalemail.yaml"
        self.group = "postfix"
        self.logfile = self.workdir / "milter.log"
        if len(str(self.socket_path).encode()) >= 104:
            raise LabError(f"unix socket path too long for sun_path: {self.socket_path}")

    def write_config(self):
        domains = ", ".join(self.alias_domains)
        text = (
            "milter:\n"
            f"  socket: unix:{self.socket_path}\n"
            # Started as root, like a packaged milter: it opens the socket,
            # gives it to group postfix (smtpd's user) and becomes nobody.
            f"  user: {self.user}\n"
            "  socket_group: postfix\n"
            + self.milter_extra +
            "redis:\n"
            + (self.sentinel_yaml if self.sentinel_yaml else
               f"  address: {self.redis_address or f'tcp://127.0.0.1:{self.redis_port}'}\n") +
            '  key_prefix: "alias:"\n'
            "  timeout_ms: 250\n"
            + self.redis_extra +
            "aliases:\n"
            f"  domains: [{domains}]\n"
            "logging:\n"
            "  syslog: false\n"
            + self.logging_extra
        )
        if self.extra_yaml:
            text += self.extra_yaml if self.extra_yaml.endswith("\n") else self.extra_yaml + "\n"
        self.config.write_text(text)

    def start(self, detach=False, timeout=15):
        if self.is_running():
            return
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise LabError(
                f"milter binary not found or not executable: {self.binary}\n"
                "build it with scripts/build.sh (or set IMPALEMAIL_MILTER)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o755)
        self.write_config()
        log = open(self.logfile, "ab")
        try:
            # The milter makes its socket mode 0770 (owner and group may
            # connect).  Postfix's smtpd runs as user postfix, so run the
            # milter with group postfix, as a packaged milter would be
            # (Debian puts milter users in the postfix group).
            self.proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=detach, group=self.group, extra_groups=[])
        finally:
            log.close()
        wait_until(self._ready, timeout, f"milter socket {self.socket_path}",
                   detail=lambda: tail(self.log()))

    def _ready(self):
        if not self.is_running():
            rc = self.proc.returncode if self.proc else "?"
            raise LabError(f"milter exited with status {rc} during startup:\n" + tail(self.log()))
        return unix_socket_accepts(self.socket_path)

    def log(self, since=0):
        text = _read(self.logfile)
        return text[since:]

    def log_offset(self):
        return len(_read(self.logfile))


# --------------------------------------------------------------------------
# Postfix
# --------------------------------------------------------------------------
MASTER_CF = """\
# Private lab instance: every service chroot=n, smtpd on 127.0.0.1 only.
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# Private lab instance (generated by tests/e2e/lab.py).
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {maillog}
maillog_file_prefixes = {workdir}
myhostname = mx.test
mydomain = mx.test
myorigin = $myhostname
mydestination = localhost
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP lab
# Nothing ever leaves this machine: no smtp transport exists in master.cf and
# anything not local or virtual fails right here.
default_transport = error:5.3.0 outbound mail disabled in the test lab
relay_transport = error:5.3.0 outbound mail disabled in the test lab
# Real mailboxes.
virtual_mailbox_domains = real.example other.example
virtual_mailbox_maps = hash:{conf}/vmailbox
virtual_mailbox_base = {vmail}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}

# ---- contrib/postfix/main.cf.snippet follows, /etc/postfix/ -> {conf}/ ----
"""


@dataclass
class Reply:
    code: int
    text: str

    @property
    def ok(self):
        return 200 <= self.code < 300

    def __str__(self):
        return f"{self.code} {self.text}"


@dataclass
class SendResult:
    """Every reply of one SMTP transaction (nothing raised on refusals)."""
    greeting: Reply = None
    mail: Reply = None
    rcpts: dict = field(default_factory=dict)   # address -> Reply, in RCPT order
    data: Reply = None                          # None if DATA was not sent
    error: str = None                           # connection-level failure, if any

    @property
    def queue_id(self):
        if self.data and self.data.ok:
            m = re.search(r"queued as ([0-9A-Za-z]+)", self.data.text)
            if m:
                return m.group(1)
        return None

    def all_replies(self):
        out = [r for r in (self.greeting, self.mail) if r is not None]
        out += list(self.rcpts.values())
        if self.data is not None:
            out.append(self.data)
        return out

    def __str__(self):
        parts = [f"MAIL: {self.mail}"]
        parts += [f"RCPT {a}: {r}" for a, r in self.rcpts.items()]
        parts.append(f"DATA: {self.data}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


def _crlf(msg):
    if isinstance(msg, str):
        msg = msg.encode()
    return re.sub(rb"\r?\n", b"\r\n", msg)


def send(port, mail_from, rcpts, msg_bytes, host="127.0.0.1", helo="client.sender.test",
         timeout=30):
    """Send one message; return a SendResult with every reply.

    Unlike smtplib.sendmail, never raises on refusals: each RCPT reply is
    recorded and DATA is sent if at least one recipient was accepted.
    """
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    result = SendResult()
    smtp = smtplib.SMTP(timeout=timeout)
    try:
        code, text = smtp.connect(host, port)
        result.greeting = Reply(code, text.decode(errors="replace"))
        if code != 220:
            return result
        code, text = smtp.ehlo(helo)
        code, text = smtp.mail(mail_from)
        result.mail = Reply(code, text.decode(errors="replace"))
        if not result.mail.ok:
            return result
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            result.rcpts[rcpt] = Reply(code, text.decode(errors="replace"))
        if not any(r.ok for r in result.rcpts.values()):
            return result
        try:
            code, text = smtp.data(_crlf(msg_bytes))
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        result.data = Reply(code, text.decode(errors="replace")
                            if isinstance(text, bytes) else str(text))
        return result
    except (smtplib.SMTPException, OSError) as e:
        result.error = f"{type(e).__name__}: {e}"
        return result
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


class SmtpSession:
    """One SMTP session kept open over several transactions: for Postfix,
    one milter connection, so one kept Redis connection inside the milter.

        with SmtpSession(port) as s:
            r = s.transaction("a@b.test", [alias], msg)   # a SendResult
    """

    def __init__(self, port, host="127.0.0.1", helo="client.sender.test", timeout=30):
        self.smtp = smtplib.SMTP(timeout=timeout)
        code, text = self.smtp.connect(host, port)
        if code != 220:
            self.smtp.close()
            raise LabError(f"greeting {code} {text!r}")
        self.smtp.ehlo(helo)

    def transaction(self, mail_from, rcpts, msg_bytes=None):
        """MAIL, each RCPT, then DATA if msg_bytes is given and a recipient
        was accepted, else RSET.  Refusals are recorded, never raised;
        a lost connection raises (smtplib.SMTPServerDisconnected, OSError)."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        result = SendResult()
        code, text = self.smtp.mail(mail_from)
        result.mail = Reply(code, text.decode(errors="replace"))
        if result.mail.ok:
            for rcpt in rcpts:
                code, text = self.smtp.rcpt(rcpt)
                result.rcpts[rcpt] = Reply(code, text.decode(errors="replace"))
        if msg_bytes is not None and any(r.ok for r in result.rcpts.values()):
            try:
                code, text = self.smtp.data(_crlf(msg_bytes))
            except smtplib.SMTPDataError as e:
                code, text = e.smtp_code, e.smtp_error
            result.data = Reply(code, text.decode(errors="replace")
                                if isinstance(text, bytes) else str(text))
        else:
            self.smtp.rset()
        return result

    def close(self):
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def parse_message(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def split_message(raw):
    """(header block, body) of a raw message, line endings normalized to LF."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    return head + b"\n", body


def raw_headers(raw):
    """List of (name, full raw header text incl. continuation lines), LF endings."""
    head, _ = split_message(raw)
    out = []
    for line in head.split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, text = out[-1]
            out[-1] = (name, text + b"\n" + line)
        else:
            out.append((line.split(b":", 1)[0].decode(errors="replace"), line))
    return [(n, t.decode(errors="replace")) for n, t in out]


class Postfix:
    """A private Postfix instance built from contrib/postfix like an admin would."""

    def __init__(self, workdir, port=None, contrib_dir=CONTRIB_POSTFIX, extra_mailboxes=None):
        self.workdir = Path(workdir).resolve()
        # MAILBOXES plus extra_mailboxes ({address: maildir relative to the
        # base, ending in "/"}); their domains must be real.example or
        # other.example (the lab's virtual_mailbox_domains).
        self.mailboxes = dict(MAILBOXES)
        for addr, maildir in (extra_mailboxes or {}).items():
            if addr.split("@")[-1].lower() not in ("real.example", "other.example"):
                raise LabError(f"extra mailbox {addr}: domain must be real.example or other.example")
            if not maildir.endswith("/"):
                raise LabError(f"extra mailbox {addr}: Maildir path {maildir!r} must end in '/'")
            self.mailboxes[addr.lower()] = maildir
        self.port = port or free_port()
        self.contrib_dir = Path(contrib_dir)
        self.conf = self.workdir / "conf"
        self.queue_dir = self.workdir / "queue"
        self.data_dir = self.workdir / "data"
        self.vmail = self.workdir / "vmail"
        self.maillog = self.workdir / "maillog"
        self.milter_socket = self.queue_dir / "impalemail" / "milter.sock"
        self.vuid = pwd.getpwnam("nobody").pw_uid
        self.vgid = grp.getgrnam("nogroup").gr_gid

    # -- building ----------------------------------------------------------
    def setup(self):
        """Write main.cf/master.cf/maps. Idempotent."""
        for d in (self.workdir, self.conf, self.queue_dir, self.vmail,
                  self.milter_socket.parent):
            d.mkdir(parents=True, exist_ok=True)
        # virtual(8) delivers as nobody: every directory down to the Maildirs
        # must be traversable by it.
        for d in (self.workdir, self.queue_dir, self.milter_socket.parent):
            os.chmod(d, 0o755)
        os.chown(self.vmail, self.vuid, self.vgid)
        # data_directory is deliberately not created here (see module doc).

        main = MAIN_CF.format(conf=self.conf, queue=self.queue_dir, data=self.data_dir,
                              maillog=self.maillog, workdir=self.workdir, vmail=self.vmail,
                              uid=self.vuid, gid=self.vgid)
        snippet = (self.contrib_dir / "main.cf.snippet").read_text()
        main += snippet.replace("/etc/postfix/", f"{self.conf}/")
        (self.conf / "main.cf").write_text(main)
        (self.conf / "master.cf").write_text(
            MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        (self.conf / "vmailbox").write_text(
            "".join(f"{a}\t{m}\n" for a, m in self.mailboxes.items()))
        for name in ("impalemail-virtual", "impalemail-transport", "impalemail-header_checks"):
            shutil.copy(self.contrib_dir / name, self.conf / name)
        self.postmap("vmailbox", "impalemail-virtual", "impalemail-transport")
        self._run(["postfix", "-c", str(self.conf), "check"])

    def postmap(self, *names):
        self._run(["postmap", "-c", str(self.conf), *[str(self.conf / n) for n in names]])

    def postconf(self, *settings):
        """postconf -e on this instance (call reload() afterwards)."""
        self._run(["postconf", "-c", str(self.conf), "-e", *settings])

    def param(self, name):
        return self._run(["postconf", "-c", str(self.conf), "-h", name]).strip()

    def _run(self, argv, check=True):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({out.returncode}):\n"
                           f"{out.stdout}{out.stderr}\n{tail(self.log(), 15)}")
        return out.stdout

    # -- running -----------------------------------------------------------
    def master_pid(self):
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def is_running(self):
        pid = self.master_pid()
        return pid is not None and _pid_alive(pid)

    def start(self, timeout=20):
        if not (self.conf / "main.cf").exists():
            self.setup()
        if self.is_running():
            return
        self._run(["postfix", "-c", str(self.conf), "start"])
        wait_until(lambda: port_open(self.port), timeout,
                   f"Postfix smtpd on 127.0.0.1:{self.port}",
                   detail=lambda: tail(self.log()))

    def reload(self):
        self._run(["postfix", "-c", str(self.conf), "reload"])
        time.sleep(0.5)

    def stop(self, timeout=20):
        pid = self.master_pid()
        if pid is None or not _pid_alive(pid):
            return
        self._run(["postfix", "-c", str(self.conf), "stop"], check=False)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            self._run(["postfix", "-c", str(self.conf), "abort"], check=False)
            time.sleep(1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    # -- inspecting ----------------------------------------------------------
    def maildir_path(self, addr):
        return self.vmail / self.mailboxes[addr.lower()]

    def maildir(self, addr):
        """Raw bytes of every message in addr's Maildir (new/ and cur/), oldest first."""
        base = self.maildir_path(addr)
        files = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                files += [p for p in d.iterdir() if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in files]

    def messages(self, addr, match=None):
        """Raw messages in addr's Maildir containing the bytes `match` (all if None)."""
        if isinstance(match, str):
            match = match.encode()
        return [m for m in self.maildir(addr) if match is None or match in m]

    def wait_for_delivery(self, addr, count=1, timeout=15, match=None):
        """Wait until addr's Maildir holds `count` messages (containing `match`)."""
        try:
            wait_until(lambda: len(self.messages(addr, match)) >= count, timeout,
                       f"{count} message(s) for {addr}" + (f" matching {match!r}" if match else ""),
                       interval=0.1)
        except LabError as e:
            raise LabError(f"{e}\nqueue: {self.queue()}\nmaillog:\n{tail(self.log(), 25)}")
        return self.messages(addr, match)

    def queue(self):
        """Postfix queue as a list of dicts (postqueue -j)."""
        out = self._run(["postqueue", "-c", str(self.conf), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def postcat(self, queue_id, what="-bh"):
        """Queued message content (default: body+headers) of queue_id."""
        return self._run(["postcat", "-c", str(self.conf), what, "-q", queue_id])

    def flush(self):
        self._run(["postqueue", "-c", str(self.conf), "-f"])

    def delete_queue(self):
        """postsuper -d ALL (clears leftovers between tests)."""
        self._run(["postsuper", "-c", str(self.conf), "-d", "ALL"], check=False)

    def wait_settled(self, queue_id, timeout=15):
        """Wait until queue_id has left the incoming/active queues (delivered,
        bounced or deferred). Returns the queue entry if it is still queued."""
        def settled():
            if re.search(rf"{queue_id}: removed", self.log()):
                return True
            return any(q["queue_id"] == queue_id and q["queue_name"] in ("deferred", "hold")
                       for q in self.queue())
        wait_until(settled, timeout, f"queue id {queue_id} to be delivered or deferred",
                   interval=0.1, detail=lambda: tail(self.log(), 25))
        for q in self.queue():
            if q["queue_id"] == queue_id:
                return q
        return None

    def log(self, since=0):
        return _read(self.maillog)[since:]

    def log_offset(self):
        return len(_read(self.maillog))


def start_sentinel_mx(base, cluster, binary=None):
    """One MX: a lab Postfix under base/postfix and a Sentinel-mode milter
    under base/milter on that Postfix's own QUEUE/impalemail/milter.sock
    (so several MXes in different bases never share a socket).
    Returns (postfix, milter); stops what it started if anything fails."""
    base = Path(base)
    postfix = Postfix(base / "postfix")
    milter = Milter(binary or milter_binary(), base / "milter", cluster.nodes[0].port, postfix.milter_socket)
    milter.sentinel_yaml = cluster.yaml()
    try:
        postfix.setup()
        milter.start()
        postfix.start()
    except BaseException:
        milter.stop()
        postfix.stop()
        raise
    return postfix, milter


# --------------------------------------------------------------------------
# A whole lab (used by the CLI)
# --------------------------------------------------------------------------
class Lab:
    def __init__(self, workdir, smtp_port=None, redis_port=None, binary=None):
        self.workdir = Path(workdir).resolve()
        self.redis = Redis(self.workdir / "redis", redis_port)
        self.postfix = Postfix(self.workdir / "postfix", smtp_port)
        self.milter = Milter(binary or milter_binary(), self.workdir / "milter",
                             self.redis.port, self.postfix.milter_socket)

    def up(self, detach=False):
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        try:
            self.redis.start(detach=detach)
            self.postfix.setup()
            self.milter.start(detach=detach)
            self.postfix.start()
        except BaseException:
            self.down()
            raise

    def down(self):
        errors = []
        for stop in (self.postfix.stop, self.milter.stop, self.redis.stop):
            try:
                stop()
            except Exception as e:  # keep stopping the rest
                errors.append(f"{stop.__qualname__}: {e}")
        if errors:
            raise LabError("; ".join(errors))

    def state(self):
        return {"smtp_port": self.postfix.port, "redis_port": self.redis.port,
                "redis_pid": self.redis.pid, "milter_pid": self.milter.pid,
                "postfix_master_pid": self.postfix.master_pid(),
                "milter_binary": str(self.milter.binary),
                "postfix_config": str(self.postfix.conf),
                "milter_log": str(self.milter.logfile),
                "maillog": str(self.postfix.maillog),
                "maildirs": str(self.postfix.vmail)}

    @classmethod
    def from_state(cls, workdir):
        workdir = Path(workdir).resolve()
        st = json.loads((workdir / "lab.json").read_text())
        lab = cls(workdir, st["smtp_port"], st["redis_port"], st["milter_binary"])
        lab.redis._pid = st.get("redis_pid")
        lab.milter._pid = st.get("milter_pid")
        return lab


def _cli(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start Redis, the milter and Postfix, detached")
    up.add_argument("workdir")
    up.add_argument("--smtp-port", type=int, default=2525)
    up.add_argument("--redis-port", type=int, default=6390)
    up.add_argument("--milter", help="milter binary (default $IMPALEMAIL_MILTER or build tree)")
    for name, helptext in (("down", "stop everything started by 'up'"),
                           ("status", "show what is running")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("workdir")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        sys.exit("lab.py must run as root (Postfix master needs it)")
    workdir = Path(args.workdir).resolve()
    state_file = workdir / "lab.json"

    if args.cmd == "up":
        if state_file.exists():
            old = Lab.from_state(workdir)
            if old.redis.is_running() or old.milter.is_running() or old.postfix.is_running():
                sys.exit(f"lab already running in {workdir}; run 'down' first")
        for port in (args.smtp_port, args.redis_port):
            if port_open(port):
                sys.exit(f"port 127.0.0.1:{port} is already in use")
        lab = Lab(workdir, args.smtp_port, args.redis_port, args.milter)
        try:
            lab.up(detach=True)
        except LabError as e:
            sys.exit(f"lab up failed: {e}")
        state_file.write_text(json.dumps(lab.state(), indent=2) + "\n")
        for name, pid in (("redis", lab.redis.pid), ("milter", lab.milter.pid),
                          ("postfix-master", lab.postfix.master_pid())):
            (workdir / f"{name}.pid").write_text(f"{pid}\n")
        print(json.dumps(lab.state(), indent=2))
        # Popen objects must not be waited for: the services outlive us.
        lab.redis.proc = lab.milter.proc = None
        return 0

    if not state_file.exists():
        sys.exit(f"no lab state in {workdir} (lab.json missing)")
    lab = Lab.from_state(workdir)
    if args.cmd == "status":
        st = lab.state()
        st.update(redis_running=lab.redis.is_running(), milter_running=lab.milter.is_running(),
                  postfix_running=lab.postfix.is_running())
        print(json.dumps(st, indent=2))
        return 0
    # down
    try:
        lab.down()
    except LabError as e:
        sys.exit(f"lab down: {e}")
    for name in ("redis", "milter", "postfix-master"):
        (workdir / f"{name}.pid").unlink(missing_ok=True)
    print(f"lab in {workdir} stopped")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
