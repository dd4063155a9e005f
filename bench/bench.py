#!/usr/bin/python3
"""ImpaleMail benchmark: what does impalemail-milter cost Postfix?

Run through bench/run.sh (see docs/benchmarks.md):

    bench/run.sh            full run (6-12 minutes), the numbers in docs/benchmarks.md
    bench/run.sh --quick    the same table with shorter runs and 2 rounds (~3 minutes)
    bench/run.sh --smoke    a few messages per cell: checks the machinery (CI, < 1 minute)
    bench/run.sh --profile  callgrind, strace -c and perf of the filters (not a benchmark)

One private Postfix on 127.0.0.1, configured from contrib/postfix exactly as
the end-to-end tests do (tests/e2e/lab.py), plus:
  - the owners' domain discard.example, delivered by Postfix's discard(8);
  - smtpd listeners that differ only in smtpd_milters (master.cf -o):
      (a) none       smtpd_milters empty; mail to sink@discard.example
      (b) noop       bench/noop_milter.c (skips every stage it can);
                     mail to sink@discard.example
      (c) impalemail smtpd_milters from contrib (impalemail-milter); mail to
                     a live alias, rewritten to its owner @discard.example,
                     6 headers stripped
      (d) steps      noop_milter --steps: impalemail's negotiation, no work
                     (a diagnostic, at two points only)
  - a private Redis holding the aliases.
smtp-source is the load generator; a Python probe session samples SMTP
transaction latency at the same time.  Variants run back to back for each
sweep point and the order rotates every round, so machine noise lands on
all three alike; ratios are taken within a round.

Everything lives in one temporary directory (/tmp/impalemail-bench-*),
removed at the end unless --keep (or a failure) says otherwise.  Nothing in
/etc is touched; every socket is on 127.0.0.1 or in that directory.
Only the Python standard library is used; must run as root.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import lab as labmod  # noqa: E402

ALIAS_DOMAIN = labmod.ALIAS_DOMAIN
DISCARD_DOMAIN = "discard.example"
SENDER = "bench@sender.test"
SINK = f"sink@{DISCARD_DOMAIN}"
ALIAS = f"bench@{ALIAS_DOMAIN}"
IDLE_ALIAS = f"idle@{ALIAS_DOMAIN}"
MAX_RCPTS = 100
HELO = "client.bench.test"

VARIANTS = ("a", "b", "c")
VARIANT_NAMES = {"a": "(a) no milter", "b": "(b) noop milter", "c": "(c) impalemail",
                 "d": "(d) noop, impalemail's steps"}
# (d), a diagnostic, runs at these points only: the noop filter negotiating
# what impalemail negotiates (MAIL, RCPT, headers, EOM, the "i" macro).
D_POINTS = ("base", "rcpt 100")
SIZES = {"2KB": 2 * 1024, "1MB": 1024 * 1024, "10MB": 10 * 1024 * 1024}

# One factor at a time around BASE.
BASE = {"size": "2KB", "rcpts": 1, "sessions": 20, "reuse": False}
POINTS = [
    ("base", {}),
    ("body 1MB", {"size": "1MB"}),
    ("body 10MB", {"size": "10MB"}),
    ("rcpt 10", {"rcpts": 10}),
    ("rcpt 100", {"rcpts": 100}),
    ("sess 1", {"sessions": 1}),
    ("sess 100", {"sessions": 100}),
    ("reuse", {"reuse": True}),
]
# Warm-up message counts (also used to size the measured runs).
WARMUP = {"base": 200, "body 1MB": 20, "body 10MB": 4, "rcpt 10": 100, "rcpt 100": 20,
          "sess 1": 60, "sess 100": 300, "reuse": 300}

MODES = {
    # seconds per measured run, rounds, probe interval, idle connections
    "full": dict(seconds=2.5, rounds=6, probe_interval=0.05, idle=500, warmup_scale=1.0),
    "quick": dict(seconds=2.0, rounds=2, probe_interval=0.05, idle=500, warmup_scale=0.5),
    "smoke": dict(seconds=None, rounds=1, probe_interval=0.05, idle=30, warmup_scale=0.0),
}
SMOKE_COUNTS = {"base": 20, "body 1MB": 4, "body 10MB": 2, "rcpt 10": 6, "rcpt 100": 3,
                "sess 1": 5, "sess 100": 20, "reuse": 20}

TARGETS = [
    # (id, description)
    ("T1", "(c)/(b) throughput >= 0.97 (base point)"),
    ("T2", "(c)/(b) milter CPU per message <= 1.1 (base point)"),
    ("T3", "(c)/(a) throughput >= 0.93 (1 MB body)"),
    ("T4", "(c) milter CPU per message, 10 MB body <= 1.2 x 2 KB body"),
    ("T5", "(c) milter RSS <= 50 MB with {idle} idle connections"),
]


class BenchError(RuntimeError):
    pass


def log(msg):
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# process statistics
# --------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_ns(pid):
    """utime+stime of a whole process (all threads, dead ones included), in ns.

    The process CPU-time clock (clock_getcpuclockid) is what /proc/PID/stat
    prints as utime+stime, before it is rounded to clock ticks (10 ms)."""
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def proc_ticks(pid):
    """(utime, stime) in clock ticks from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def proc_status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])  # kB
        elif k == "Threads":
            out[k] = int(v)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def reset_hwm(pid):
    # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def machine_busy_ticks():
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
    return user + nice + system + irq + softirq + steal


# --------------------------------------------------------------------------
# Redis over a socket (RESP), for bulk SETs and INFO without a process each
# --------------------------------------------------------------------------
def resp(*args):
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


def redis_pipeline(port, commands):
    """Send commands, return the raw replies (simple parser: +, -, :, $)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(resp(*c) for c in commands))
        f = s.makefile("rb")
        replies = []
        for _ in commands:
            line = f.readline()
            if line[:1] == b"$":
                n = int(line[1:])
                replies.append(None if n < 0 else f.read(n + 2)[:-2].decode())
            elif line[:1] == b"-":
                raise BenchError(f"redis error: {line!r}")
            else:
                replies.append(line[1:].strip().decode())
        return replies


def redis_info(port, section):
    text = redis_pipeline(port, [("INFO", section)])[0]
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


# --------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------
class BenchPostfix(labmod.Postfix):
    """lab.Postfix (contrib/postfix config) + discard domain + 3 listeners."""

    NOOP_SOCKET_REL = "bench-noop/noop.sock"    # relative to queue_directory
    STEPS_SOCKET_REL = "bench-noop/steps.sock"

    def __init__(self, workdir, ports):
        super().__init__(workdir, port=ports["c"])
        self.ports = ports
        self.noop_socket = self.queue_dir / self.NOOP_SOCKET_REL
        self.steps_socket = self.queue_dir / self.STEPS_SOCKET_REL

    def setup(self):
        super().setup()   # main.cf = lab base + contrib/postfix/main.cf.snippet
        self.noop_socket.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.noop_socket.parent, 0o755)
        (self.conf / "bench-transport").write_text(f"{DISCARD_DOMAIN}\tdiscard:\n")
        self.postmap("bench-transport")
        self.postconf(
            # contrib's transport map stays, after ours (README: add to the list).
            f"transport_maps = hash:{self.conf}/bench-transport, "
            f"hash:{self.conf}/impalemail-transport",
            f"relay_domains = {DISCARD_DOMAIN}",
            # 100 concurrent sessions under load, 500 idle ones for the RSS figure.
            "default_process_limit = 700",
            "message_size_limit = 52428800",
        )
        with open(self.conf / "master.cf", "a") as f:
            f.write("# bench: same smtpd, different smtpd_milters ((c) uses main.cf's)\n")
            f.write(f"127.0.0.1:{self.ports['a']} inet n - n - - smtpd\n"
                    "  -o smtpd_milters=\n")
            f.write(f"127.0.0.1:{self.ports['b']} inet n - n - - smtpd\n"
                    f"  -o smtpd_milters=unix:{self.NOOP_SOCKET_REL}\n")
            f.write(f"127.0.0.1:{self.ports['d']} inet n - n - - smtpd\n"
                    f"  -o smtpd_milters=unix:{self.STEPS_SOCKET_REL}\n")
        self._run(["postfix", "-c", str(self.conf), "check"])

    def start(self, timeout=20):
        super().start(timeout)
        for v in ("a", "b", "d"):
            labmod.wait_until(lambda: labmod.port_open(self.ports[v]), timeout,
                              f"smtpd on {self.ports[v]}")

    def queue_counts(self):
        out = {}
        for name in ("maildrop", "incoming", "active", "deferred", "hold"):
            n = 0
            for _, _, files in os.walk(self.queue_dir / name):
                n += len(files)
            out[name] = n
        return out


class NoopMilter(labmod._Service):
    def __init__(self, binary, socket_path, logfile, wrapper=(), steps=False):
        super().__init__()
        self.steps = steps
        self.binary = Path(binary)
        self.socket_path = Path(socket_path)
        self.logfile = Path(logfile)
        self.wrapper = list(wrapper)

    def start(self, timeout=15):
        with open(self.logfile, "ab") as log_f:
            self.proc = subprocess.Popen(
                [*self.wrapper, str(self.binary), *(["--steps"] if self.steps else []),
                 f"unix:{self.socket_path}"],
                stdin=subprocess.DEVNULL, stdout=log_f, stderr=subprocess.STDOUT,
                group="postfix", extra_groups=[])
        labmod.wait_until(lambda: self._ready(), timeout, f"noop milter on {self.socket_path}")

    def _ready(self):
        if not self.is_running():
            raise BenchError("noop milter exited:\n" + labmod.tail(labmod._read(self.logfile)))
        return labmod.unix_socket_accepts(self.socket_path)

    def stop(self, timeout=15):
        self._terminate(timeout)


def stop_all(services, timeout=20):
    """SIGTERM every service at once, then wait (libmilter takes ~5 s each)."""
    for s in services:
        if s is not None and s.is_running():
            s._signal(signal.SIGTERM)
    for s in services:
        if s is not None:
            s._terminate(timeout)


def build_noop(workdir):
    out = workdir / "noop-milter"
    argv = ["cc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-o", str(out),
            str(HERE / "noop_milter.c"), "-lmilter", "-pthread"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"building the noop milter failed:\n{' '.join(argv)}\n{r.stderr}")
    return out


# --------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------
STRIPPED_HEADERS = 6


def message_text(size):
    """A message of about `size` bytes on the wire, LF line endings.

    6 headers on impalemail's default strip list (2 Received, X-Mailer,
    X-Originating-IP, User-Agent, Disposition-Notification-To)."""
    head = (
        "Received: from laptop.sender.test (dsl-203-0-113-7.isp.test [203.0.113.7])\n"
        "\tby smtp.sender.test (Postfix) with ESMTPSA id 4XyZ1; Mon, 1 Jan 2024 10:00:00 +0000\n"
        "Received: from [10.0.0.5] by relay.sender.test; Mon, 1 Jan 2024 09:59:59 +0000\n"
        'From: "Bench Sender" <bench@sender.test>\n'
        f"To: <{ALIAS}>\n"
        "Subject: impalemail benchmark\n"
        "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
        "Message-ID: <bench-1@sender.test>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "X-Mailer: BenchMailer 1.0\n"
        "X-Originating-IP: [203.0.113.7]\n"
        "User-Agent: bench/1.0\n"
        "Disposition-Notification-To: bench@sender.test\n"
        "\n"
    )
    wire = len(head) + head.count("\n")
    lines = []
    n = 0
    while wire < size:
        line = f"{n:08d} The quick brown fox jumps over the lazy dog; pack my box with five dozen."
        lines.append(line)
        wire += len(line) + 2
        n += 1
    return head + "\n".join(lines) + "\n"


def wire_bytes(text):
    """CRLF line endings and dot-stuffing, terminated by CRLF.CRLF."""
    out = []
    for line in text.split("\n")[:-1]:
        out.append(("." + line) if line.startswith(".") else line)
    return ("\r\n".join(out) + "\r\n.\r\n").encode()


def recipients(base, count):
    """What smtp-source -r COUNT -t BASE sends: COUNTbase, ..., 2base, base."""
    return [f"{i}{base}" for i in range(count, 1, -1)] + [base]


# --------------------------------------------------------------------------
# latency probe
# --------------------------------------------------------------------------
class Probe(threading.Thread):
    """One SMTP session beside the load, one transaction at a time, starting
    one every `interval` seconds (or right after the previous one if that
    took longer).

    Latency of one transaction, as the client sees it: without reuse from
    connect() to the 250 after the final dot (the banner, HELO and the
    milter's connect and negotiation included); with reuse (-d) from MAIL to
    that 250."""

    def __init__(self, port, rcpts, payload, reuse, interval):
        super().__init__(daemon=True)
        self.port, self.rcpts, self.payload = port, rcpts, payload
        self.reuse, self.interval = reuse, interval
        self.stop_event = threading.Event()
        self.samples = []
        self.errors = []

    def _reply(self, f, expect):
        while True:
            line = f.readline()
            if not line:
                raise BenchError(f"connection closed waiting for {expect}")
            if line[3:4] != b"-":
                break
        if not line.startswith(expect):
            raise BenchError(f"expected {expect!r}, got {line!r}")

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        self._reply(f, b"220")
        s.sendall(f"HELO {HELO}\r\n".encode())
        self._reply(f, b"250")
        return s, f

    def run(self):
        s = f = None
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                if s is None:
                    s, f = self._connect()
                s.sendall(f"MAIL FROM:<{SENDER}>\r\n".encode())
                self._reply(f, b"250")
                for r in self.rcpts:
                    s.sendall(f"RCPT TO:<{r}>\r\n".encode())
                    self._reply(f, b"250")
                s.sendall(b"DATA\r\n")
                self._reply(f, b"354")
                s.sendall(self.payload)
                self._reply(f, b"250")
                self.samples.append(time.monotonic() - t0)
                if not self.reuse:
                    s.sendall(b"QUIT\r\n")
                    self._reply(f, b"221")
                    s.close()
                    s = f = None
            except (OSError, BenchError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                if s is not None:
                    s.close()
                s = f = None
            self.stop_event.wait(max(0.0, t0 + self.interval - time.monotonic()))
        if s is not None:
            try:
                s.sendall(b"QUIT\r\n")
                self._reply(f, b"221")
            except (OSError, BenchError):
                pass
            s.close()


def variants_at(point):
    return VARIANTS + (("d",) if point in D_POINTS else ())


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# --------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------
class Bench:
    def __init__(self, workdir, mode, milter_binary, rounds=None, seconds=None, idle=None):
        self.workdir = workdir
        self.mode = mode
        self.cfg = dict(MODES[mode])
        if rounds:
            self.cfg["rounds"] = rounds
        if seconds:
            self.cfg["seconds"] = seconds
        if idle:
            self.cfg["idle"] = idle
        self.ports = {v: labmod.free_port() for v in "abcd"}
        while len(set(self.ports.values())) < 4:
            self.ports = {v: labmod.free_port() for v in "abcd"}
        self.redis = labmod.Redis(workdir / "redis")
        self.postfix = BenchPostfix(workdir / "postfix", self.ports)
        self.impalemail = labmod.Milter(milter_binary, workdir / "milter", self.redis.port,
                                        self.postfix.milter_socket)
        self.noop = None
        self.steps = None
        self.msgfiles = {}
        self.payloads = {}
        self.counts = {}
        self.runs = []          # every measured run
        self.idle = {}

    # -- setup ---------------------------------------------------------------
    def up(self):
        noop_bin = build_noop(self.workdir)
        self.redis.start()
        cmds = [("SET", f"alias:{r}", r.split("@")[0] + "@" + DISCARD_DOMAIN)
                for r in recipients(ALIAS, MAX_RCPTS)]
        cmds.append(("SET", f"alias:{IDLE_ALIAS}", f"idle@{DISCARD_DOMAIN}"))
        redis_pipeline(self.redis.port, cmds)
        self.postfix.setup()
        self.impalemail.start()
        self.noop = NoopMilter(noop_bin, self.postfix.noop_socket, self.workdir / "noop-milter.log")
        self.noop.start()
        self.steps = NoopMilter(noop_bin, self.postfix.steps_socket, self.workdir / "steps-milter.log",
                                steps=True)
        self.steps.start()
        self.postfix.start()
        for name, size in SIZES.items():
            text = message_text(size)
            path = self.workdir / f"msg-{name}.eml"
            path.write_text(text)
            self.msgfiles[name] = path
            self.payloads[name] = wire_bytes(text)

    def down(self):
        errors = []
        try:
            self.postfix.stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the rest
            errors.append(f"postfix: {e}")
        try:
            stop_all([self.impalemail, self.noop, self.steps])
        except Exception as e:  # noqa: BLE001
            errors.append(f"milters: {e}")
        try:
            self.redis.stop()
        except Exception as e:  # noqa: BLE001
            errors.append(f"redis: {e}")
        if errors:
            raise BenchError("; ".join(errors))

    def milter_pid(self, v):
        return {"a": None, "b": self.noop.pid, "c": self.impalemail.pid,
                "d": self.steps.pid if self.steps else None}[v]

    def check_services(self):
        for name, svc in (("impalemail-milter", self.impalemail), ("noop milter", self.noop),
                          ("steps noop milter", self.steps),
                          ("redis", self.redis)):
            if not svc.is_running():
                raise BenchError(f"{name} is not running")
        if not self.postfix.is_running():
            raise BenchError("postfix is not running")

    def wait_queue_empty(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            q = self.postfix.queue_counts()
            if q["deferred"] or q["hold"]:
                raise BenchError(f"mail deferred or held (not rewritten, or not deliverable): {q}; "
                                 f"maillog:\n{labmod.tail(self.postfix.log(), 15)}")
            if not (q["maildrop"] or q["incoming"] or q["active"]):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"queue not empty after {timeout}s: {q}")
            time.sleep(0.05)

    # -- one run -----------------------------------------------------------
    def params(self, point):
        p = dict(BASE)
        p.update(dict(POINTS)[point])
        return p

    def run_once(self, point, v, count, probe=True):
        p = self.params(point)
        port = self.ports[v]
        base_rcpt = ALIAS if v == "c" else SINK
        argv = ["smtp-source", "-s", str(p["sessions"]), "-m", str(count), "-r", str(p["rcpts"]),
                "-f", SENDER, "-t", base_rcpt, "-M", HELO, "-F", str(self.msgfiles[p["size"]])]
        if p["reuse"]:
            argv.append("-d")
        argv.append(f"127.0.0.1:{port}")

        self.check_services()
        self.wait_queue_empty()
        mpid = self.milter_pid(v)
        if mpid:
            reset_hwm(mpid)
            cpu0, ticks0 = proc_cpu_ns(mpid), proc_ticks(mpid)
        rcpu0 = proc_cpu_ns(self.redis.pid)
        gets0 = int(redis_info(self.redis.port, "commandstats")
                    .get("cmdstat_get", "calls=0").split("calls=")[1].split(",")[0])
        log_off = self.impalemail.log_offset()
        busy0 = machine_busy_ticks()
        pr = None
        if probe:
            pr = Probe(port, recipients(base_rcpt, p["rcpts"]), self.payloads[p["size"]],
                       p["reuse"], self.cfg["probe_interval"])
        t0 = time.monotonic()
        if pr:
            pr.start()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        t1 = time.monotonic()
        if pr:
            pr.stop_event.set()
            pr.join(300)
        if mpid:
            cpu1, ticks1 = proc_cpu_ns(mpid), proc_ticks(mpid)
            st = proc_status(mpid)
        rcpu1 = proc_cpu_ns(self.redis.pid)
        gets1 = int(redis_info(self.redis.port, "commandstats")
                    .get("cmdstat_get", "calls=0").split("calls=")[1].split(",")[0])
        self.wait_queue_empty()
        t2 = time.monotonic()
        busy1 = machine_busy_ticks()

        if res.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
        if pr and pr.errors:
            raise BenchError(f"latency probe errors on {VARIANT_NAMES[v]} / {point}: {pr.errors[:3]}")
        probe_n = len(pr.samples) if pr else 0
        total_msgs = count + probe_n
        if v == "c":
            rewrites = self.impalemail.log(log_off).count("action=rewrite")
            if rewrites != total_msgs:
                raise BenchError(f"impalemail rewrote {rewrites} messages, {total_msgs} were sent "
                                 f"({point})")
            if gets1 - gets0 != total_msgs * p["rcpts"]:
                raise BenchError(f"Redis GETs {gets1 - gets0} != {total_msgs}x{p['rcpts']}")
        elif gets1 != gets0:
            raise BenchError(f"Redis GETs during {VARIANT_NAMES[v]}: {gets1 - gets0}")
        run = {
            "point": point, "variant": v, "count": count, "seconds": t1 - t0,
            "rate": count / (t1 - t0), "probe_msgs": probe_n,
            "latency": pr.samples if pr else [],
            "machine_cpu_ms": (busy1 - busy0) * 1000.0 / CLK_TCK, "drain_seconds": t2 - t1,
            "redis_cpu_ms": (rcpu1 - rcpu0) / 1e6, "redis_gets": gets1 - gets0,
        }
        if mpid:
            run.update({"milter_cpu_ms": (cpu1 - cpu0) / 1e6,
                        "milter_utime_ticks": ticks1[0] - ticks0[0],
                        "milter_stime_ticks": ticks1[1] - ticks0[1],
                        "milter_hwm_kb": st["VmHWM"], "milter_rss_kb": st["VmRSS"],
                        "milter_threads": st["Threads"]})
        return run

    # -- phases --------------------------------------------------------------
    def warmup(self):
        """A short run per point and variant: starts smtpd processes, warms
        caches, and sizes the measured runs (same count for all variants)."""
        for point, _ in POINTS:
            if self.mode == "smoke":
                self.counts[point] = SMOKE_COUNTS[point]
                continue
            n = max(2, int(WARMUP[point] * self.cfg["warmup_scale"]))
            rates = []
            for v in variants_at(point):
                r = self.run_once(point, v, n, probe=False)
                rates.append(r["rate"])
            count = int(min(rates) * self.cfg["seconds"])
            self.counts[point] = max(count, self.params(point)["sessions"], 3)
            log(f"warm-up {point:10s} rates " + " ".join(f"{x:7.1f}" for x in rates)
                + f" msg/s -> {self.counts[point]} messages per run")

    def measure(self):
        rounds = self.cfg["rounds"]
        for rnd in range(rounds):
            for point, _ in POINTS:
                vs = variants_at(point)
                for v in vs[rnd % len(vs):] + vs[:rnd % len(vs)]:   # order rotates per round
                    r = self.run_once(point, v, self.counts[point])
                    r["round"] = rnd
                    self.runs.append(r)
                    log(f"round {rnd + 1}/{rounds} {point:10s} {VARIANT_NAMES[v]:29s} "
                        f"{r['rate']:8.1f} msg/s" + (f"  milter {r['milter_cpu_ms']:7.1f} ms"
                                                     if "milter_cpu_ms" in r else ""))

    def idle_connections(self, v, n):
        """RSS of the filter with n SMTP sessions open, each past a 250 to RCPT
        (so smtpd has connected its milters and, for (c), the milter has a
        Redis connection), then idle."""
        pid = self.milter_pid(v)
        rcpt = IDLE_ALIAS if v == "c" else SINK
        self.wait_queue_empty()
        # Idle smtpd processes left over from earlier runs (of any listener)
        # make master spawn the next few hundred very slowly; a reload ends them.
        self.postfix.reload()
        time.sleep(1.0)
        before = proc_status(pid)
        reset_hwm(pid)
        clients0 = int(redis_info(self.redis.port, "clients")["connected_clients"])
        socks = []
        t0 = time.monotonic()
        try:
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", self.ports[v]), timeout=60)
                f = s.makefile("rb")
                socks.append((s, f))
                for cmd, expect in ((None, b"220"), (f"HELO {HELO}", b"250"),
                                    (f"MAIL FROM:<{SENDER}>", b"250"), (f"RCPT TO:<{rcpt}>", b"250")):
                    if cmd:
                        s.sendall(cmd.encode() + b"\r\n")
                    line = f.readline()
                    while line[3:4] == b"-":
                        line = f.readline()
                    if not line.startswith(expect):
                        raise BenchError(f"idle session {i}: {cmd!r} -> {line!r}")
            opened = time.monotonic() - t0
            time.sleep(1.0)
            during = proc_status(pid)
            clients1 = int(redis_info(self.redis.port, "clients")["connected_clients"])
            milter_socks = sum(1 for fd in os.listdir(f"/proc/{pid}/fd")
                               if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"))
        finally:
            for s, f in socks:
                try:
                    s.sendall(b"QUIT\r\n")
                except OSError:
                    pass
            for s, f in socks:
                s.close()
        return {"variant": v, "sessions": n, "open_seconds": opened,
                "rss_before_kb": before["VmRSS"], "rss_kb": during["VmRSS"],
                "hwm_kb": during["VmHWM"], "threads": during["Threads"], "fds": during["fds"],
                "sockets": milter_socks, "redis_clients_added": clients1 - clients0}

    def memory(self):
        n = self.cfg["idle"]
        for v in ("b", "c"):
            r = self.idle_connections(v, n)
            self.idle[v] = r
            log(f"{n} idle sessions, {VARIANT_NAMES[v]}: RSS {r['rss_kb'] / 1024:.1f} MB "
                f"(before {r['rss_before_kb'] / 1024:.1f} MB), {r['threads']} threads, "
                f"{r['fds']} fds, +{r['redis_clients_added']} Redis clients")
        time.sleep(1.0)
        self.check_services()


# --------------------------------------------------------------------------
# aggregation and report
# --------------------------------------------------------------------------
def aggregate(runs, point, v):
    rs = [r for r in runs if r["point"] == point and r["variant"] == v]
    if not rs:
        return None
    msgs = sum(r["count"] + r["probe_msgs"] for r in rs)
    lat = [x for r in rs for x in r["latency"]]
    out = {
        "rate": statistics.median(r["rate"] for r in rs),
        "rates": [r["rate"] for r in rs],
        "p50_ms": (percentile(lat, 50) or 0) * 1000, "p99_ms": (percentile(lat, 99) or 0) * 1000,
        "samples": len(lat),
        "machine_ms_per_1k": sum(r["machine_cpu_ms"] for r in rs) / msgs * 1000,
        "redis_ms_per_1k": sum(r["redis_cpu_ms"] for r in rs) / msgs * 1000,
    }
    if "milter_cpu_ms" in rs[0]:
        ut = sum(r["milter_utime_ticks"] for r in rs)
        stt = sum(r["milter_stime_ticks"] for r in rs)
        out.update({
            "milter_ms_per_1k": sum(r["milter_cpu_ms"] for r in rs) / msgs * 1000,
            "milter_ms_per_1k_by_round": [r["milter_cpu_ms"] / (r["count"] + r["probe_msgs"]) * 1000
                                          for r in rs],
            "milter_sys_share": stt / (ut + stt) if ut + stt else None,
            "milter_hwm_mb": max(r["milter_hwm_kb"] for r in rs) / 1024,
        })
    return out


def round_ratios(runs, point, num, den, key):
    """Median over rounds of num/den, each ratio within one round."""
    vals = []
    for rnd in sorted({r["round"] for r in runs}):
        a = [r for r in runs if r["round"] == rnd and r["point"] == point and r["variant"] == num]
        b = [r for r in runs if r["round"] == rnd and r["point"] == point and r["variant"] == den]
        if not a or not b:
            continue
        if key == "rate":
            x, y = a[0]["rate"], b[0]["rate"]
        else:   # milter CPU per message
            x = a[0]["milter_cpu_ms"] / (a[0]["count"] + a[0]["probe_msgs"])
            y = b[0]["milter_cpu_ms"] / (b[0]["count"] + b[0]["probe_msgs"])
        if y:
            vals.append(x / y)
    if not vals:
        return None, []
    return statistics.median(vals), vals


def fmt(x, nd=1):
    if x is None:
        return "-"
    return f"{x:.{nd}f}"


def report(bench, info):
    runs = bench.runs
    lines = []
    lines.append(f"mode {bench.mode}: {bench.cfg['rounds']} round(s), variants interleaved "
                 f"(order rotates per round); probe interval {bench.cfg['probe_interval'] * 1000:.0f} ms")
    lines.append(f"machine: {info['nproc']} CPUs, {info['cpu']}, {info['mem']}; load before: {info['load']}")
    lines.append(f"Postfix {info['postfix']}, libmilter {info['libmilter']}, Redis {info['redis']}; "
                 f"impalemail-milter {info['milter']['path']} ({info['milter']['mtime']}, "
                 f"tree {info['milter']['git']})")
    if bench.mode == "smoke":
        lines.append("SMOKE MODE: a few messages per cell, checks the machinery only; "
                     "the numbers and verdicts below mean nothing")
    lines.append("base point: 2 KB message, 1 recipient, 20 sessions, new connection per message; "
                 "each row changes one factor")
    lines.append("")
    hdr = ("| point | messages/run | variant | msg/s | milter CPU ms/1k msg (sys %) | milter peak RSS MB "
           "| p50 ms | p99 ms | latency samples | redis CPU ms/1k | machine CPU ms/1k |")
    lines.append(hdr)
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    agg = {}
    for point, _ in POINTS:
        for v in variants_at(point):
            a = aggregate(runs, point, v)
            if a is None:
                continue
            agg[(point, v)] = a
            milter = "-"
            if "milter_ms_per_1k" in a:
                share = a["milter_sys_share"]
                milter = fmt(a["milter_ms_per_1k"]) + (f" ({share * 100:.0f}%)" if share is not None else "")
            lines.append(
                f"| {point} | {bench.counts.get(point, '-')} | {VARIANT_NAMES[v]} | {fmt(a['rate'])} | {milter} "
                f"| {fmt(a.get('milter_hwm_mb'))} | {fmt(a['p50_ms'], 2)} | {fmt(a['p99_ms'], 2)} "
                f"| {a['samples']} | {fmt(a['redis_ms_per_1k'])} | {fmt(a['machine_ms_per_1k'])} |")
    lines.append("")
    lines.append("Ratios (median over rounds of the ratio within each round; [per round]):")
    lines.append("")
    lines.append("| point | (c)/(b) msg/s | (c)/(a) msg/s | (b)/(a) msg/s | (c)/(b) milter CPU per msg "
                 "| (c)/(d) msg/s | (c)/(d) milter CPU per msg |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    for point, _ in POINTS:
        cb, cbv = round_ratios(runs, point, "c", "b", "rate")
        ca, cav = round_ratios(runs, point, "c", "a", "rate")
        ba, bav = round_ratios(runs, point, "b", "a", "rate")
        cpu, cpuv = round_ratios(runs, point, "c", "b", "cpu")
        cd, cdv = round_ratios(runs, point, "c", "d", "rate")
        cdc, cdcv = round_ratios(runs, point, "c", "d", "cpu")
        ratios[point] = {"c/b rate": cb, "c/a rate": ca, "b/a rate": ba, "c/b cpu": cpu,
                         "c/d rate": cd, "c/d cpu": cdc,
                         "c/b rate rounds": cbv, "c/a rate rounds": cav, "b/a rate rounds": bav,
                         "c/b cpu rounds": cpuv, "c/d rate rounds": cdv, "c/d cpu rounds": cdcv}

        def cell(x, xs):
            return f"{fmt(x, 3)} [{', '.join(f'{y:.2f}' for y in xs)}]" if x is not None else "-"
        lines.append(f"| {point} | {cell(cb, cbv)} | {cell(ca, cav)} | {cell(ba, bav)} | {cell(cpu, cpuv)} "
                     f"| {cell(cd, cdv)} | {cell(cdc, cdcv)} |")
    lines.append("")
    if bench.idle:
        lines.append("Idle connections (each SMTP session past RCPT, then idle; RSS while they are open):")
        lines.append("")
        lines.append("| filter | sessions | RSS before MB | RSS MB | peak MB | threads | fds | +Redis clients |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for v, r in bench.idle.items():
            lines.append(f"| {VARIANT_NAMES[v]} | {r['sessions']} | {r['rss_before_kb'] / 1024:.1f} "
                         f"| {r['rss_kb'] / 1024:.1f} | {r['hwm_kb'] / 1024:.1f} | {r['threads']} "
                         f"| {r['fds']} | {r['redis_clients_added']} |")
        lines.append("")

    # targets
    def cpu_ratio_10mb():
        a, b = agg.get(("body 10MB", "c")), agg.get(("base", "c"))
        if a and b and b["milter_ms_per_1k"]:
            return a["milter_ms_per_1k"] / b["milter_ms_per_1k"]
        return None
    idle_c = bench.idle.get("c")
    values = {
        "T1": (ratios["base"]["c/b rate"], lambda x: x >= 0.97),
        "T2": (ratios["base"]["c/b cpu"], lambda x: x <= 1.1),
        "T3": (ratios["body 1MB"]["c/a rate"], lambda x: x >= 0.93),
        "T4": (cpu_ratio_10mb(), lambda x: x <= 1.2),
        "T5": ((idle_c["rss_kb"] / 1024) if idle_c else None, lambda x: x <= 50),
    }
    lines.append("Targets:")
    lines.append("")
    targets = {}
    for tid, desc in TARGETS:
        val, ok = values[tid]
        verdict = "n/a" if val is None else ("PASS" if ok(val) else "MISS")
        targets[tid] = {"value": val, "verdict": verdict, "description": desc}
        unit = " MB" if tid == "T5" else ""
        lines.append(f"- {tid} {desc.format(idle=bench.cfg['idle'])}: {fmt(val, 3)}{unit} -> {verdict}")
        if tid == "T4":
            a, b = agg.get(("body 10MB", "b")), agg.get(("base", "b"))
            if val is not None and a and b and b["milter_ms_per_1k"]:
                noop = a["milter_ms_per_1k"] / b["milter_ms_per_1k"]
                lines.append(f"  (the no-op filter, which does the same work for any size, shows {noop:.3f} "
                             f"for the same ratio: impalemail's ratio divided by it is {val / noop:.3f})")
                targets["T4"]["noop_ratio"] = noop
    return "\n".join(lines), {"aggregate": {f"{p}|{v}": a for (p, v), a in agg.items()},
                              "ratios": ratios, "targets": targets}


def machine_info():
    cpu = "?"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            cpu = line.split(":", 1)[1].strip()
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem": f"{mem_kb / 1024 / 1024:.1f} GiB RAM",
            "load": Path("/proc/loadavg").read_text().split()[:3],
            "postfix": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "postfix"],
                                      capture_output=True, text=True).stdout,
            "libmilter": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libmilter1.0.1"],
                                        capture_output=True, text=True).stdout,
            "redis": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "redis-server"],
                                    capture_output=True, text=True).stdout}


# --------------------------------------------------------------------------
# profile mode: callgrind and strace of both filters under the base load
# --------------------------------------------------------------------------
ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*?)(?:\s+\[(/[^\[\]]*|\?\?\?)\])?\s*$")
# Inclusive cost of these (impalemail's callbacks and what they call).
INCLUSIVE_OF_INTEREST = ("on_negotiate", "on_envfrom", "on_envrcpt", "on_header", "on_eom", "on_abort",
                         "on_close", "Pseudonymizer::operator()", "RedisStore::get", "RedisStore::connect",
                         "log_rcpt_decision", "log_rewrite", "MessageSession::on_recipient",
                         "logging::write", "RedisStore::record_forwarded", "RedisStore::drain_pending")


def callgrind_annotate(outfile, inclusive):
    """[(Ir, function, object)] and the program total, from callgrind_annotate."""
    r = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--auto=no",
                        "--threshold=100", str(outfile)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"callgrind_annotate {outfile}: {r.stderr}")
    total, rows, in_table = None, [], False
    for line in r.stdout.splitlines():
        if line.strip().endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
            continue
        if "file:function" in line:
            in_table = True
            continue
        m = ANNOTATE_LINE.match(line) if in_table else None
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2), Path(m.group(3) or "???").name))
    return total, rows


CALLBACKS = ("on_negotiate", "on_envfrom", "on_envrcpt", "on_header", "on_eom", "on_abort", "on_close")
# Frames of the main thread, which sits in smfi_main: a dump taken while they
# are active charges them cost that is not theirs.
MAIN_FRAMES = re.compile(r":main$|smfi_main|__libc_start|below main|0x000000000001ab70|start_thread|clone\.S")


def callgrind_summary(outfile):
    """Total instructions, the top self-cost functions, and the inclusive cost
    of impalemail's callbacks and of the functions in INCLUSIVE_OF_INTEREST."""
    total, self_rows = callgrind_annotate(outfile, inclusive=False)
    _, incl_rows = callgrind_annotate(outfile, inclusive=True)
    inclusive = {}
    for ir, fn, _ in incl_rows:
        for name in INCLUSIVE_OF_INTEREST:
            if f"::{name}(" in fn or f"::{name}[" in fn:
                inclusive[name] = max(inclusive.get(name, 0), ir)
    top = [(ir, f"{fn} [{obj}]") for ir, fn, obj in self_rows if not MAIN_FRAMES.search(fn)][:15]
    return total, top, inclusive


def profile(args, workdir, milter_binary):
    """Instructions (callgrind) and system calls (strace -c) per message of
    both filters, for 2 KB and 10 MB messages (4 sessions, 1 recipient)."""
    bench = Bench(workdir, "smoke", milter_binary)
    try:
        return _profile(args, workdir, milter_binary, bench)
    finally:
        try:
            bench.down()
        except BenchError as e:
            log(f"teardown: {e}")


def _profile(args, workdir, milter_binary, bench):
    n = args.profile_messages
    noop_bin = build_noop(workdir)
    cgdir = workdir / "callgrind"
    cgdir.mkdir()
    vgdb = cgdir / "vgdb-pipe"

    def cg(name):
        return ["valgrind", "--tool=callgrind", f"--vgdb-prefix={vgdb}",
                f"--callgrind-out-file={cgdir}/{name}.out"]
    bench.redis.start()
    redis_pipeline(bench.redis.port, [("SET", f"alias:{r}", r.split("@")[0] + "@" + DISCARD_DOMAIN)
                                      for r in recipients(ALIAS, MAX_RCPTS)])
    bench.postfix.setup()
    for name, size in SIZES.items():
        text = message_text(size)
        (workdir / f"msg-{name}.eml").write_text(text)
        bench.msgfiles[name] = workdir / f"msg-{name}.eml"
        bench.payloads[name] = wire_bytes(text)

    def load(v, size, count, rcpts=1):
        argv = ["smtp-source", "-s", "4", "-m", str(count), "-r", str(rcpts), "-f", SENDER,
                "-t", ALIAS if v == "c" else SINK, "-M", HELO, "-F", str(bench.msgfiles[size]),
                f"127.0.0.1:{bench.ports[v]}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=900)
        bench.wait_queue_empty()

    # (size, recipients per message, messages)
    cases = [("2KB", 1, n), ("10MB", 1, max(10, n // 10)), ("2KB", 100, max(5, n // 20))]
    results = {}
    # lab.Milter runs [binary, -c, config]: wrap the binary in a script.
    # milter.user root: vgdb (callgrind_control) cannot reach a process that
    # switched to another user.
    bench.impalemail.user = "root"
    wrapper = workdir / "impalemail-callgrind.sh"
    wrapper.write_text(f"#!/bin/sh\nexec {' '.join(cg('impalemail'))} {milter_binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    bench.impalemail.binary = wrapper
    try:
        bench.impalemail.start(timeout=120)
        bench.noop = NoopMilter(noop_bin, bench.postfix.noop_socket, workdir / "noop-milter.log",
                                wrapper=cg("noop"))
        bench.noop.start(timeout=120)
        bench.steps = NoopMilter(noop_bin, bench.postfix.steps_socket, workdir / "steps-milter.log",
                                 wrapper=cg("steps"), steps=True)
        bench.steps.start(timeout=120)
        bench.postfix.start()
        for size, rcpts, count in cases:
            for v in ("b", "d", "c"):
                pid = str(bench.milter_pid(v))
                load(v, size, 3, rcpts)   # warm: connections, Redis, code paths
                ctl = ["callgrind_control", f"--vgdb-prefix={vgdb}"]
                run_group(ctl + ["--zero", pid], timeout=120)
                load(v, size, count, rcpts)
                run_group(ctl + [f"--dump={size}-r{rcpts}", pid], timeout=300)
                dumps = sorted(cgdir.glob({"b": "noop", "c": "impalemail", "d": "steps"}[v] + ".out.*"),
                               key=lambda p: p.stat().st_mtime)
                total, funcs, incl = callgrind_summary(dumps[-1])
                results[f"{v} {size} {rcpts}"] = {"file": str(dumps[-1]), "messages": count, "total_ir": total,
                                                  "top": funcs, "inclusive": incl}
                log(f"callgrind {VARIANT_NAMES[v]} {size} x{rcpts} rcpt: {total / count:,.0f} Ir per message")
    finally:
        bench.postfix.stop()
        stop_all([bench.impalemail, bench.noop, bench.steps], timeout=120)

    # strace -c on the plain filters: system calls per message.
    bench.impalemail.binary = Path(milter_binary)
    bench.noop = NoopMilter(noop_bin, bench.postfix.noop_socket, workdir / "noop-milter.log")
    bench.steps = NoopMilter(noop_bin, bench.postfix.steps_socket, workdir / "steps-milter.log", steps=True)
    strace = {}
    try:
        bench.impalemail.start()
        bench.noop.start()
        bench.steps.start()
        bench.postfix.start()
        for v in ("b", "d", "c"):
            load(v, "2KB", 3)
            sfile = workdir / f"strace-{v}.txt"
            tr = subprocess.Popen(["strace", "-c", "-f", "-o", str(sfile), "-p", str(bench.milter_pid(v))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            load(v, "2KB", n)
            tr.send_signal(signal.SIGINT)
            tr.wait(30)
            strace[v] = parse_strace(sfile.read_text(), n)
        perf = perf_phase(bench, workdir, [("base", n), ("rcpt 100", max(5, n // 20))])
    finally:
        bench.postfix.stop()
        stop_all([bench.impalemail, bench.noop, bench.steps])

    lines = ["profile: " + ", ".join(f"{c} x {s_}, {r_} recipient(s)" for s_, r_, c in cases)
             + "; 4 sessions, new connection per message; counters zeroed after a warm-up", ""]
    for key, r in results.items():
        m = r["messages"]
        v, size, rcpts = key.split()
        lines.append(f"{VARIANT_NAMES[v]}, {size}, {rcpts} recipient(s): {r['total_ir'] / m:,.0f} "
                     "instructions per message")
        inside = sum(r["inclusive"].get(c, 0) for c in CALLBACKS)
        if inside:
            lines.append(f"    {inside / m:>9,.0f}  {inside / r['total_ir'] * 100:5.1f}%  inside impalemail's "
                         "callbacks (its code, hiredis, OpenSSL, logging)")
            lines.append(f"    {(r['total_ir'] - inside) / m:>9,.0f}  "
                         f"{(r['total_ir'] - inside) / r['total_ir'] * 100:5.1f}%  outside them "
                         "(libmilter, libc, threads)")
        if size == "2KB" and rcpts == "1":
            lines.append("  top functions (self instructions per message):")
            for ir, fn in r["top"][:12]:
                lines.append(f"    {ir / m:>9,.0f}  {fn[:150]}")
        if r["inclusive"]:
            lines.append("  inclusive instructions per message:")
            for name, ir in sorted(r["inclusive"].items(), key=lambda x: -x[1]):
                lines.append(f"    {ir / m:>9,.0f}  {ir / r['total_ir'] * 100:5.1f}%  {name}")
        lines.append("")
    for v in ("b", "d", "c"):
        s = strace.get(v)
        if s:
            lines.append(f"{VARIANT_NAMES[v]}: {s['calls_per_msg']:.1f} system calls per 2 KB message: "
                         + ", ".join(f"{k} {c:.1f}" for k, c in s["top"]))
    lines.append("")
    lines += perf_lines(perf)
    text = "\n".join(lines)
    (workdir / "profile.json").write_text(json.dumps(
        {"callgrind": results, "strace": strace,
         "perf": {f"{p_}|{v}": x for (p_, v), x in perf.items()} if perf else None}, indent=1))
    return text


def children_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    out.append(int(p))
            except (FileNotFoundError, IndexError, ProcessLookupError):
                pass
    return out


PERF_GROUPS = {"impalemail-milt": "filter", "noop-milter": "filter", "redis-server": "redis-server"}


def perf_phase(bench, workdir, cases):
    """CPU per message of every process of the mail path (Postfix's daemons,
    the filter, Redis), sampled with perf (cpu-clock; this VM has no hardware
    counters).  perf follows the Postfix master's new children, so smtpd and
    cleanup processes forked during the run are included."""
    if shutil.which("perf") is None:
        log("perf not installed: no per-process CPU profile")
        return None
    out = {}
    for point, count in cases:
        for v in variants_at(point):
            master = bench.postfix.master_pid()
            pids = [master, *children_of(master), bench.noop.pid, bench.steps.pid, bench.impalemail.pid,
                    bench.redis.pid]
            data = workdir / f"perf-{point.replace(' ', '')}-{v}.data"
            pr = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "--no-buildid-cache",
                                   "-o", str(data), "-p", ",".join(map(str, pids))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            if pr.poll() is not None:
                log(f"perf record failed: {pr.stderr.read().decode(errors='replace')[:300]}")
                return None
            r = bench.run_once(point, v, count, probe=False)
            pr.send_signal(signal.SIGINT)
            pr.wait(120)
            out[(point, v)] = perf_by_comm(data, r["count"])
            log(f"perf {point} {VARIANT_NAMES[v]}: {sum(out[(point, v)]['us_per_msg'].values()):.0f} us CPU "
                "per message, all processes")
    return out


def perf_by_comm(data, msgs):
    r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "comm,dso", "-n",
                        "--percent-limit", "0"], capture_output=True, text=True)
    event_ns, rows = None, []
    for line in r.stdout.splitlines():
        m = re.match(r"# Event count \(approx\.\): (\d+)", line)
        if m:
            event_ns = int(m.group(1))
            continue
        m = re.match(r"^\s*([\d.]+)%\s+(\d+)\s+(.+?)\s{2,}(\S.*?)\s*$", line)
        if m and not line.startswith("#"):
            rows.append((int(m.group(2)), m.group(3).strip(), m.group(4).strip()))
    samples = sum(n for n, _, _ in rows)
    ns_per_sample = event_ns / samples if samples and event_ns else 0
    per = {}
    kernel = {}
    for n, comm, dso in rows:
        g = PERF_GROUPS.get(comm, comm)
        per[g] = per.get(g, 0) + n * ns_per_sample / 1000 / msgs
        if dso == "[kernel.kallsyms]":
            kernel[g] = kernel.get(g, 0) + n * ns_per_sample / 1000 / msgs
    return {"us_per_msg": per, "kernel_us_per_msg": kernel, "messages": msgs}


def perf_lines(perf):
    if not perf:
        return []
    lines = ["perf (cpu-clock sampling at 2 kHz, delivery included): CPU microseconds per message "
             "by process at the sweep point's parameters; in brackets the share spent in the kernel"]
    for point in sorted({p for p, _ in perf}, key=lambda p: [x for x, _ in POINTS].index(p)):
        vs = [v for v in "abdc" if (point, v) in perf]
        names = sorted({g for v in vs for g in perf[(point, v)]["us_per_msg"]},
                       key=lambda g: -max(perf[(point, v)]["us_per_msg"].get(g, 0) for v in vs))
        lines.append("")
        lines.append(f"{point}:")
        lines.append("| process | " + " | ".join(VARIANT_NAMES[v] for v in vs) + " |")
        lines.append("|---|" + "---:|" * len(vs))
        for g in names:
            cells = []
            for v in vs:
                us = perf[(point, v)]["us_per_msg"].get(g, 0)
                k = perf[(point, v)]["kernel_us_per_msg"].get(g, 0)
                cells.append(f"{us:,.0f} ({k / us * 100:.0f}%)" if us else "-")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        tot = [sum(perf[(point, v)]["us_per_msg"].values()) for v in vs]
        lines.append("| **all** | " + " | ".join(f"**{t:,.0f}**" for t in tot) + " |")
    return lines


def run_group(argv, timeout):
    """Run argv in its own process group; on timeout kill that group (vgdb,
    started by callgrind_control, would otherwise stay behind)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise BenchError(f"{' '.join(argv)}: no answer in {timeout} s")
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({p.returncode}): {out.decode(errors='replace')}")
    return out


def parse_strace(text, n):
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            try:
                c = int(parts[3])
            except ValueError:
                continue
            calls[parts[-1]] = c
    total = sum(calls.values())
    top = sorted(((k, c / n) for k, c in calls.items()), key=lambda x: -x[1])[:8]
    return {"calls_per_msg": total / n, "top": top, "raw": calls}


# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="impalemail-milter benchmark (see docs/benchmarks.md)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="shorter runs, 2 rounds (~3 minutes)")
    g.add_argument("--smoke", action="store_true",
                   help="a few messages per cell; fails only if the machinery breaks (CI)")
    g.add_argument("--profile", action="store_true",
                   help="callgrind, strace -c and perf of the filters instead of the benchmark")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--seconds", type=float, help="override the target seconds per measured run")
    ap.add_argument("--idle", type=int, help="idle sessions for the memory figure (default 500; smoke 30)")
    ap.add_argument("--profile-messages", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", help="also write the results (every run) to this file")
    ap.add_argument("--milter", default=str(labmod.milter_binary()),
                    help="impalemail-milter binary (default $IMPALEMAIL_MILTER or build/)")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        sys.exit("bench must run as root (Postfix master needs it)")
    for tool in ("smtp-source", "redis-server", "postfix", "cc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run scripts/install-deps.sh")
    milter_binary = Path(args.milter)
    if not milter_binary.is_file():
        sys.exit(f"{milter_binary} missing: run scripts/build.sh")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"

    workdir = Path(tempfile.mkdtemp(prefix="impalemail-bench-"))
    os.chmod(workdir, 0o755)
    # A private copy: a rebuild of build/ during the run must not change it.
    shutil.copy2(milter_binary, workdir / "impalemail-milter")
    info_binary = {"path": str(milter_binary), "mtime": time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(milter_binary.stat().st_mtime)),
        "git": subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()}
    milter_binary = workdir / "impalemail-milter"
    ok = False
    info = machine_info()
    info["milter"] = info_binary
    t_start = time.monotonic()
    bench = None
    try:
        if args.profile:
            if shutil.which("valgrind") is None or shutil.which("strace") is None:
                sys.exit("--profile needs valgrind and strace (scripts/install-deps.sh)")
            print(profile(args, workdir, milter_binary))
            ok = True
            return 0
        bench = Bench(workdir, mode, milter_binary, args.rounds, args.seconds, args.idle)
        log(f"work directory {workdir}; SMTP ports a={bench.ports['a']} b={bench.ports['b']} "
            f"c={bench.ports['c']}")
        bench.up()
        bench.warmup()
        bench.measure()
        bench.memory()
        text, summary = report(bench, info)
        elapsed = time.monotonic() - t_start
        print(text)
        print(f"\n(elapsed {elapsed:.0f} s)")
        data = {"mode": mode, "machine": info, "config": bench.cfg, "counts": bench.counts,
                "runs": bench.runs, "idle": bench.idle, "elapsed_s": elapsed, **summary}
        (workdir / "results.json").write_text(json.dumps(data, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1))
        ok = True
        return 0
    except (BenchError, labmod.LabError, subprocess.SubprocessError, OSError) as e:
        log(f"FAILED: {type(e).__name__}: {e}")
        return 1
    finally:
        try:
            if bench is not None:
                bench.down()
        except Exception as e:  # noqa: BLE001
            log(f"teardown: {e}")
            ok = False
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")


if __name__ == "__main__":
    sys.exit(main())
