#!/usr/bin/python3
"""A private Sendmail 8.17 on 127.0.0.1, configured from contrib/sendmail,
relaying everything to an smtp-sink that records each final envelope.

Sendmail conflicts with Postfix as a Debian package, so it is never
installed: `apt-get download` fetches sendmail-bin, sendmail-cf and
sendmail-base into a cache directory (default build/sendmail-debs, or
$IMPALEMAIL_SENDMAIL_CACHE) and `dpkg -x` unpacks them there.  The .cf is
built with m4 from a lab .mc that includes contrib/sendmail/impalemail.mc,
with only the socket path, the hold mailer's path (and the alias domain)
replaced, the way an admin would.  Nothing is written to /etc; everything
else lives in the instance's work directory.

    /usr/bin/python3 tests/e2e/sendmail_lab.py fetch     # download + unpack only
    (syslogd SOCKET LOGFILE is used internally)

Facts this module relies on (checked on Debian 12, Sendmail 8.17.1.9):
- Every sendmail invocation (daemon, -bs, -bp, -bi) runs as
  `unshare -u -m WORKDIR/sendmail.sh ARGS`: a UTS namespace with hostname
  sm.test (Sendmail sleeps and retries forever when the host name is not
  fully qualified) and a mount namespace in which /etc/hosts and
  /etc/resolv.conf are bind-mounted private copies (sm.test resolves from
  files; any stray DNS query goes to 127.0.0.1, never to the real resolver).
  The host's /etc is untouched: the bind mounts exist only in that namespace.
- There is no syslog daemon.  In the same mount namespace a tmpfs is mounted
  on /dev holding symlinks to the real device nodes plus /dev/log pointing
  at WORKDIR/syslog.sock, where a tiny listener (this file, `syslogd`)
  appends every datagram to WORKDIR/maillog (LogLevel 14: milter actions,
  every delrcpt/addrcpt/header deletion, each delivery's stat=).  Set
  IMPALEMAIL_NO_SYSLOG=1 to skip the /dev overlay (then there is no log).
- ServiceSwitchFile says `hosts files`, so Sendmail itself never uses DNS
  (no MX lookups either).
- A smart host of [127.0.0.1] is ignored (design notes), so smtp-sink
  listens on 127.0.0.2 and the port goes into the mailers' A=
  (ESMTP_MAILER_ARGS `TCP $h PORT', and the other SMTP mailers likewise).
- Under /tmp (world writable) Sendmail refuses to build its alias database
  ("World writable directory /tmp"); the lab .mc sets
  DontBlameSendmail=TrustStickyBit.  contrib/sendmail needs nothing of it.
- makemap needs `-C LAB.cf` (it reads sendmail.cf for TrustedUser) and
  the statistics file must exist (else "poststats: ... No such file").
- RefuseLA/QueueLA are raised: on a busy CI machine the default load
  limits would make Sendmail only queue (or refuse) mail.
- The daemon runs in the foreground (-bD) with a queue run every minute
  (-q1m); the DATA reply carries the queue id
  ("250 2.0.0 6B4LHU7S026776 Message accepted for delivery").
"""

import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as labmod  # noqa: E402
from lab import LabError, _Service, _read, free_port, port_open, tail, wait_until  # noqa: E402

REPO = labmod.REPO
CONTRIB_SENDMAIL = REPO / "contrib" / "sendmail"
ALIAS_DOMAIN = labmod.ALIAS_DOMAIN
PACKAGES = ("sendmail-bin", "sendmail-cf", "sendmail-base")
HOSTNAME = "sm.test"
SINK_HOST = "127.0.0.2"

# Placeholders in contrib/sendmail/impalemail.mc that an admin replaces.
FRAGMENT_SOCKET = "/run/impalemail/milter.sock"
FRAGMENT_HOLD = "/usr/local/libexec/impalemail-hold"


def cache_dir():
    return Path(os.environ.get("IMPALEMAIL_SENDMAIL_CACHE", str(REPO / "build" / "sendmail-debs")))


def _run(argv, timeout=120, check=True, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise LabError(f"{' '.join(map(str, argv))} failed ({out.returncode}):\n"
                       f"{out.stdout}{out.stderr}")
    return out


def sendmail_root(cache=None):
    """Download (if not cached) and unpack (if not yet) the Sendmail packages.

    Returns the private root (ROOT/usr/libexec/sendmail/sendmail, ROOT/usr/share/sendmail/cf).
    """
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        debs = {p: sorted(glob.glob(str(cache / f"{p}_*.deb"))) for p in PACKAGES}
        missing = [p for p, found in debs.items() if not found]
        if missing:
            argv = ["apt-get", "download", "-o", "APT::Sandbox::User=root", *missing]
            out = _run(argv, check=False, cwd=cache)
            if out.returncode != 0:          # a fresh machine may have no package lists yet
                _run(["apt-get", "update"], timeout=300)
                _run(argv, cwd=cache)
            debs = {p: sorted(glob.glob(str(cache / f"{p}_*.deb"))) for p in PACKAGES}
        chosen = [found[-1] for found in debs.values()]
        stamp = "\n".join(os.path.basename(d) for d in chosen) + "\n"
        root = cache / "root"
        if _read(cache / "root.stamp") != stamp:
            shutil.rmtree(root, ignore_errors=True)
            for deb in chosen:
                _run(["dpkg-deb", "-x", deb, str(root)])
            (cache / "root.stamp").write_text(stamp)
    for needed in ("usr/libexec/sendmail/sendmail", "usr/libexec/sendmail/makemap",
                   "usr/share/sendmail/cf/m4/cf.m4"):
        if not (root / needed).exists():
            raise LabError(f"unpacked Sendmail lacks {needed} (in {root})")
    if shutil.which("m4") is None:
        raise LabError("m4 is not installed (scripts/install-deps.sh installs it)")
    return root


def sendmail_version(cache=None):
    """Version of the unpacked sendmail-bin package (from the cache stamp)."""
    stamp = _read(Path(cache or cache_dir()) / "root.stamp")
    m = re.search(r"sendmail-bin_([^_]+)_", stamp)
    return m.group(1) if m else "?"


def m4_cf(mc_text, root=None):
    """sendmail.cf text built by m4 from mc_text (which must not include cf.m4 itself)."""
    root = Path(root or sendmail_root())
    cfdir = root / "usr/share/sendmail/cf"
    text = f"include(`{cfdir}/m4/cf.m4')dnl\n" + mc_text
    out = _run(["m4", f"-D_CF_DIR_={cfdir}/", "-"], input=text, timeout=30)
    if out.stderr.strip():
        raise LabError(f"m4 printed errors:\n{out.stderr}")
    return out.stdout


def cf_header_definition(cf_text, name):
    """The H line for header `name` in a .cf, continuation lines included."""
    m = re.search(rf"^H(?:\?[^?]*\?)?{re.escape(name)}:.*(?:\n[ \t].*)*", cf_text, re.M)
    return m.group(0) if m else None


# --------------------------------------------------------------------------
# syslog listener (a separate process, so a detached Sendmail keeps logging)
# --------------------------------------------------------------------------
def _syslogd(sock_path, logfile):
    sock_path = Path(sock_path)
    sock_path.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))
    os.chmod(sock_path, 0o666)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with open(logfile, "ab", buffering=0) as out:
        while True:
            data = s.recv(65536)
            # "<PRI>Mmm dd hh:mm:ss ident[pid]: text" -> keep everything after PRI
            data = re.sub(rb"^<\d+>", b"", data).rstrip(b"\0\n")
            out.write(data + b"\n")


class Syslog(_Service):
    def __init__(self, sock_path, logfile):
        super().__init__()
        self.sock_path = Path(sock_path)
        self.logfile = Path(logfile)

    def start(self, timeout=10):
        if self.is_running():
            return
        self.sock_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable if sys.executable else "/usr/bin/python3", __file__, "syslogd",
             str(self.sock_path), str(self.logfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.sock_path.exists(), timeout, f"syslog socket {self.sock_path}")

    def stop(self):
        self._terminate(5)
        self.sock_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# smtp-sink: the "rest of the world"
# --------------------------------------------------------------------------
@dataclass
class SinkMessage:
    """One transaction recorded by smtp-sink -d."""
    path: Path
    mail_from: str
    rcpts: list                  # envelope recipients, without <> and ESMTP parameters
    raw: bytes                   # the message as received (header + body), LF line ends
    meta: dict = field(default_factory=dict)

    def __contains__(self, needle):
        if isinstance(needle, str):
            needle = needle.encode()
        return needle in self.raw


def _addr(args):
    m = re.match(r"\s*<([^>]*)>", args)
    return m.group(1) if m else args.split()[0] if args.split() else ""


def parse_sink_dump(data, path=None):
    lines = data.split(b"\n")
    meta, rcpts = {}, []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received:"):
        name, _, value = lines[i].decode(errors="replace").partition(":")
        value = value.strip()
        if name == "X-Rcpt-Args":
            rcpts.append(_addr(value))
        elif name:
            meta[name] = value
        i += 1
    i += 1                                   # smtp-sink's own Received: header ...
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1                               # ... and its continuation lines
    body = lines[i:]
    if body and body[-1] == b"":
        body = body[:-1]                     # the file ends with newline + an empty line
    if body and body[-1] == b"":
        body = body[:-1]
    raw = b"\n".join(body) + b"\n"
    return SinkMessage(Path(path) if path else None, _addr(meta.get("X-Mail-Args", "")),
                       rcpts, raw, meta)


class SmtpSink(_Service):
    """smtp-sink on 127.0.0.2:port, one dump file per transaction in workdir/dump."""

    def __init__(self, workdir, port=None, host=SINK_HOST):
        super().__init__()
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port()
        self.dump = self.workdir / "dump"

    def start(self, timeout=10):
        if self.is_running():
            return
        self.dump.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        shutil.chown(self.dump, "nobody", "nogroup")
        log = open(self.workdir / "smtp-sink.log", "ab")
        try:
            self.proc = subprocess.Popen(
                ["smtp-sink", "-u", "nobody", "-h", "sink.test", "-d", f"{self.dump}/%Y%m%d%H%M%S.",
                 f"{self.host}:{self.port}", "64"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        wait_until(lambda: self._ready(), timeout, f"smtp-sink on {self.host}:{self.port}",
                   detail=lambda: tail(_read(self.workdir / "smtp-sink.log")))

    def _ready(self):
        if not self.is_running():
            raise LabError("smtp-sink exited:\n" + tail(_read(self.workdir / "smtp-sink.log")))
        return port_open(self.port, self.host)

    def stop(self):
        self._terminate(5)

    def messages(self, match=None):
        """Every recorded transaction (oldest first), or those containing `match`."""
        if isinstance(match, str):
            match = match.encode()
        out = []
        files = [p for p in self.dump.iterdir() if p.is_file()] if self.dump.is_dir() else []
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        for p in files:
            data = p.read_bytes()
            if match is None or match in data:
                out.append(parse_sink_dump(data, p))
        return out

    def wait_for(self, match, count=1, timeout=15, detail=None):
        wait_until(lambda: len(self.messages(match)) >= count, timeout,
                   f"{count} message(s) containing {match!r} at smtp-sink",
                   interval=0.1, detail=detail)
        time.sleep(0.2)   # let a (not expected) further copy arrive too
        return self.messages(match)


# --------------------------------------------------------------------------
# Sendmail
# --------------------------------------------------------------------------
LAB_MC = """\
divert(-1)
# Private lab Sendmail (generated by tests/e2e/sendmail_lab.py).
divert(0)dnl
include(`{cf}/m4/cf.m4')dnl
VERSIONID(`impalemail e2e lab')dnl
OSTYPE(`linux')dnl
define(`MAIL_SETTINGS_DIR', `{etc}/')dnl
dnl The lab lives under /tmp (world writable, sticky): trust the sticky bit.
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`QUEUE_DIR', `{queue}')dnl
define(`confPID_FILE', `{pidfile}')dnl
define(`STATUS_FILE', `{workdir}/statistics')dnl
define(`ALIAS_FILE', `{etc}/aliases')dnl
define(`HELP_FILE', `{etc}/helpfile')dnl
define(`confCW_FILE', `{etc}/local-host-names')dnl
define(`confSERVICE_SWITCH_FILE', `{etc}/service.switch')dnl
define(`confHOSTS_FILE', `{etc}/hosts')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confDEAD_LETTER_DROP', `{workdir}/dead.letter')dnl
define(`confLOG_LEVEL', `14')dnl
define(`confMILTER_LOG_LEVEL', `14')dnl
define(`confTO_IDENT', `0')dnl
define(`confREFUSE_LA', `999')dnl
define(`confQUEUE_LA', `999')dnl
define(`confDELAY_LA', `0')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confTO_QUEUERETURN', `5d')dnl
define(`SMART_HOST', `esmtp:[{sink_host}]')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`SMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`SMTP8_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`DSMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
dnl ---- contrib/sendmail/impalemail.mc, socket and hold-mailer paths replaced ----
include(`{fragment}')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

# The namespace wrapper: see the module docstring.
WRAPPER = """\
#!/bin/sh
# Run the lab Sendmail (generated by tests/e2e/sendmail_lab.py).
# Must be started as: unshare -u -m {wrapper} SENDMAIL-ARGS...
set -e
mount --make-rprivate / 2>/dev/null || true
mount --bind {etc}/hosts /etc/hosts
mount --bind {etc}/resolv.conf /etc/resolv.conf
if [ -z "$IMPALEMAIL_NO_SYSLOG" ] && mount --rbind /dev {ns}/dev 2>/dev/null; then
    mount -t tmpfs -o mode=0755 impalemail-lab-dev /dev
    for f in {ns}/dev/* ; do ln -s "$f" /dev/ ; done
    ln -s {syslog_sock} /dev/log
fi
hostname {hostname}
exec {sendmail} -C {cf} "$@"
"""


class Sendmail(_Service):
    """A private Sendmail daemon on 127.0.0.1:port built from contrib/sendmail."""

    def __init__(self, workdir, milter_socket, sink, port=None, contrib_dir=CONTRIB_SENDMAIL,
                 with_milter=True, alias_domain=ALIAS_DOMAIN, queue_interval="1m",
                 fragment_edit=None):
        super().__init__()
        self.workdir = Path(workdir).resolve()
        self.milter_socket = Path(milter_socket)
        self.sink = sink
        self.port = port or free_port()
        self.contrib_dir = Path(contrib_dir)
        self.with_milter = with_milter
        self.fragment_edit = fragment_edit      # test-only changes to the fragment
        self.alias_domain = alias_domain
        self.queue_interval = queue_interval
        self.etc = self.workdir / "etc"
        self.queue_dir = self.workdir / "queue"
        self.ns = self.workdir / "ns"
        self.mc = self.workdir / "lab.mc"
        self.cf = self.workdir / "lab.cf"
        self.fragment = self.workdir / "impalemail.mc"
        self.hold = self.workdir / "libexec" / "impalemail-hold"
        self.wrapper = self.workdir / "sendmail.sh"
        self.pidfile = self.workdir / "sendmail.pid"
        self.maillog = self.workdir / "maillog"
        self.syslog = Syslog(self.workdir / "syslog.sock", self.maillog)
        self.root = None

    # -- building ----------------------------------------------------------
    def fragment_text(self):
        """contrib/sendmail/impalemail.mc as an admin would adapt it."""
        text = (self.contrib_dir / "impalemail.mc").read_text()
        for old in (FRAGMENT_SOCKET, FRAGMENT_HOLD):
            if old not in text:
                raise LabError(f"{old} not found in contrib/sendmail/impalemail.mc")
        text = text.replace(FRAGMENT_SOCKET, str(self.milter_socket))
        text = text.replace(FRAGMENT_HOLD, str(self.hold))
        text = text.replace(ALIAS_DOMAIN, self.alias_domain)
        if not self.with_milter:
            lines = text.splitlines(keepends=True)
            kept = [ln for ln in lines if not ln.startswith("INPUT_MAIL_FILTER(")]
            if len(kept) != len(lines) - 1:
                raise LabError("expected exactly one INPUT_MAIL_FILTER line in the fragment")
            text = "".join(kept)
        if self.fragment_edit is not None:
            edited = self.fragment_edit(text)
            if edited == text:
                raise LabError("fragment_edit changed nothing")
            text = edited
        return text

    def setup(self):
        self.root = sendmail_root()
        for d in (self.workdir, self.etc, self.queue_dir, self.ns / "dev", self.hold.parent):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.workdir, self.etc, self.ns, self.hold.parent):
            os.chmod(d, 0o755)
        os.chmod(self.queue_dir, 0o700)
        sm = self.root / "usr/libexec/sendmail"
        cfdir = self.root / "usr/share/sendmail/cf"

        (self.etc / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.0.1\t{HOSTNAME} {HOSTNAME.split('.')[0]}\n"
            f"{SINK_HOST}\tsink.test\n")
        (self.etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (self.etc / "service.switch").write_text("hosts\tfiles\naliases\tfiles\n")
        (self.etc / "local-host-names").write_text(f"{HOSTNAME}\nlocalhost\n")
        (self.etc / "aliases").write_text("postmaster: root\nMAILER-DAEMON: postmaster\n")
        shutil.copy(self.root / "etc/mail/helpfile", self.etc / "helpfile")
        (self.workdir / "statistics").touch()
        shutil.copy(self.contrib_dir / "impalemail-hold", self.hold)
        os.chmod(self.hold, 0o755)

        self.fragment.write_text(self.fragment_text())
        self.mc.write_text(LAB_MC.format(
            cf=cfdir, etc=self.etc, hostname=HOSTNAME, queue=self.queue_dir, pidfile=self.pidfile,
            workdir=self.workdir, sink_host=self.sink.host, sink_port=self.sink.port,
            port=self.port, fragment=self.fragment))
        out = _run(["m4", f"-D_CF_DIR_={cfdir}/", str(self.mc)], timeout=30)
        if out.stderr.strip():
            raise LabError(f"m4 {self.mc} printed errors:\n{out.stderr}")
        self.cf.write_text(out.stdout)
        # The map lines from contrib, as the README tells an admin to add them.
        for name, mapname in (("impalemail-virtusertable", "virtusertable"),
                              ("impalemail-mailertable", "mailertable")):
            text = (self.contrib_dir / name).read_text().replace(ALIAS_DOMAIN, self.alias_domain)
            (self.etc / mapname).write_text(text)
            _run([str(sm / "makemap"), "-C", str(self.cf), "hash", str(self.etc / mapname)],
                 input=text, timeout=30)
        self.wrapper.write_text(WRAPPER.format(
            wrapper=self.wrapper, etc=self.etc, ns=self.ns, syslog_sock=self.syslog.sock_path,
            hostname=HOSTNAME, sendmail=sm / "sendmail", cf=self.cf))
        os.chmod(self.wrapper, 0o755)
        self.run("-bi")                                   # newaliases

    def argv(self, *args):
        """Command line running this instance's sendmail with args (in its namespaces)."""
        return ["unshare", "-u", "-m", str(self.wrapper), *map(str, args)]

    def run(self, *args, check=True, timeout=60, input=None):
        out = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                             input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise LabError(f"sendmail {' '.join(args)} failed ({out.returncode}):\n"
                           f"{out.stdout}{out.stderr}\n{tail(self.log(), 15)}")
        return out.stdout + out.stderr

    # -- running -----------------------------------------------------------
    def start(self, timeout=30):
        if self.is_running():
            return
        if not self.cf.exists():
            self.setup()
        self.syslog.start()
        log = open(self.workdir / "sendmail.out", "ab")
        try:
            # -bD: daemon in the foreground; -q: queue runs at this interval.
            self.proc = subprocess.Popen(self.argv("-bD", f"-q{self.queue_interval}"),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()
        wait_until(self._ready, timeout, f"Sendmail on 127.0.0.1:{self.port}",
                   detail=lambda: tail(_read(self.workdir / "sendmail.out")) + "\n" + tail(self.log()))

    def _ready(self):
        if not self.is_running():
            raise LabError(f"sendmail exited ({self.proc.returncode}):\n"
                           + tail(_read(self.workdir / "sendmail.out")) + "\n" + tail(self.log()))
        return port_open(self.port)

    def stop(self, timeout=15):
        self._terminate(timeout)
        self.syslog.stop()

    # -- SMTP --------------------------------------------------------------
    def send(self, rcpts, msg, mail_from="news@shop.test", **kw):
        return labmod.send(self.port, mail_from, rcpts, msg, **kw)

    def swaks_pipe(self, rcpts, msg, mail_from="news@shop.test", timeout=60):
        """One message through `sendmail -bs` driven by swaks --pipe.
        Returns (swaks exit status, transcript)."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if isinstance(msg, str):
            msg = msg.encode()
        # swaks ends the data with CRLF "." CRLF itself, adding a line break
        # of its own: hand it the message without its final one.
        msg = re.sub(rb"\r?\n\Z", b"", msg)
        data_file = self.workdir / f"swaks-{time.monotonic_ns()}.eml"
        data_file.write_bytes(msg)
        pipe = " ".join(self.argv("-bs"))
        out = subprocess.run(
            ["swaks", "--pipe", pipe, "--from", mail_from, "--to", ",".join(rcpts),
             "--helo", "client.sender.test", "--data", f"@{data_file}", "--timeout", "30"],
            capture_output=True, text=True, timeout=timeout)
        data_file.unlink(missing_ok=True)
        return out.returncode, out.stdout + out.stderr

    # -- inspecting --------------------------------------------------------
    def queue_ids(self):
        """Queue ids of every message in the queue (its qf files)."""
        return sorted(p.name[2:] for p in self.queue_dir.glob("qf*"))

    def mailq(self):
        """`mailq` (sendmail -bp) output for this instance."""
        return self.run("-bp", check=False)

    def queue(self):
        """The queue as a list of {'id', 'sender', 'recipients', 'reason'} (from -bp)."""
        entries = []
        for line in self.mailq().splitlines():
            m = re.match(r"^([0-9A-Za-z]{8,})\*?\s+\d+\s+\w{3} \w{3}\s+\d+ \d\d:\d\d\s+(\S*)", line)
            if m:
                entries.append({"id": m.group(1), "sender": m.group(2), "recipients": [],
                                "reason": ""})
                continue
            if not entries:
                continue
            s = line.strip()
            if s.startswith("(") and s.endswith(")"):
                entries[-1]["reason"] = s[1:-1]
            elif s.startswith("<") or "@" in s:
                entries[-1]["recipients"].append(s)
        return entries

    def queued_file(self, queue_id, kind="qf"):
        return _read(self.queue_dir / f"{kind}{queue_id}")

    def clear_queue(self):
        for p in list(self.queue_dir.glob("[dqxtQ]f*")):
            p.unlink(missing_ok=True)

    def wait_queue_empty(self, timeout=20):
        wait_until(lambda: not self.queue_ids(), timeout, "the Sendmail queue to be empty",
                   interval=0.1, detail=lambda: self.mailq() + "\n" + tail(self.log(), 25))

    def wait_log(self, pattern, timeout=15, since=0):
        wait_until(lambda: re.search(pattern, self.log(since)), timeout,
                   f"/{pattern}/ in the Sendmail log", interval=0.1,
                   detail=lambda: tail(self.log(since), 25))
        return re.search(pattern, self.log(since))

    def log(self, since=0):
        return _read(self.maillog)[since:]

    def log_offset(self):
        return len(_read(self.maillog))


def queue_id_of(reply):
    """Sendmail's DATA reply: '2.0.0 5B4LA1xx012345 Message accepted for delivery'."""
    if reply is None or not reply.ok:
        return None
    m = re.search(r"([0-9A-Za-z]{8,}) Message accepted", reply.text)
    return m.group(1) if m else None


def _cli(argv):
    if len(argv) >= 1 and argv[0] == "syslogd" and len(argv) == 3:
        _syslogd(argv[1], argv[2])
        return 0
    if argv == ["fetch"]:
        root = sendmail_root()
        print(f"{root} (sendmail-bin {sendmail_version()})")
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
