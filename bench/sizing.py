#!/usr/bin/python3
"""Sizing, measured: Redis memory per alias and RCPT lookup latency at 1,000
and at 1,000,000 aliases (docs/deployment.md has the figures).

    /usr/bin/python3 bench/sizing.py            # 1,000,000 aliases (~1-2 min, ~200 MB RAM)
    /usr/bin/python3 bench/sizing.py --smoke    # 10,000 aliases, few samples (CI: checks the machinery)
    options: --aliases N  --small N  --samples N  --smtp-samples N  --sessions N  --keep  --json FILE

What it does, in a fresh /tmp/impalemail-sizing-* directory (removed at the
end unless --keep or a failure), with private services on 127.0.0.1 only:

1. Starts a private redis-server (no persistence) and reads INFO memory on
   the empty database: the baseline.
2. Loads aliases as the README creates them, through `redis-cli --pipe` fed
   with generated RESP:  SET alias:<12 random [a-z2-7]>@alias.example.org
   owner@real.example EX <random 1..90 days>.  First --small (1,000), then
   up to --aliases (1,000,000).  At each size: INFO memory (used_memory,
   used_memory_dataset) minus the baseline, divided by the number of aliases.
3. At each size, RCPT lookup latency, two ways:
   - "GET": one GET per lookup over one kept connection (a Python socket
     speaking RESP), exactly the command the milter sends; round trip
     measured with perf_counter_ns around send + reply, so it includes a
     few microseconds of Python;
   - "RCPT": the RCPT reply time through a private Postfix (configured from
     contrib/postfix) and impalemail-milter, over raw SMTP on 127.0.0.1:
     the time from sending `RCPT TO:<alias>` to reading Postfix's reply,
     i.e. smtpd -> milter -> GET -> milter -> smtpd.  "same session": many
     RCPTs in one SMTP session (the milter's Redis connection is kept);
     "new session": the first RCPT of a fresh session (the milter connects
     to Redis for it).  The lab Postfix's error limits are raised so the
     550s of misses do not slow the session down (smtpd_error_sleep_time),
     and in_flow_delay is 0 (these transactions open queue files, as any
     accepted RCPT does, but never deliver them, so Postfix's flow control
     would otherwise hold each new one for 1 s).
   Hits (live aliases) and misses (unknown aliases, 550) are measured apart.
4. The on-disk size of an RDB snapshot of the full data set (SAVE).

Prints the machine, a table, and (--json) writes the figures.  With
--smoke, exits non-zero if a figure is implausible (the machinery broke),
never because the machine is slow.  Root only (Postfix's master needs it).
"""

import argparse
import base64
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import lab  # noqa: E402

DOMAIN = lab.ALIAS_DOMAIN
OWNER = "owner@real.example"
PREFIX = "alias:"


# --------------------------------------------------------------------------
# generating and loading aliases
# --------------------------------------------------------------------------
def random_locals(n, rng):
    """n distinct-enough 12-character local parts over [a-z2-7] (base32)."""
    raw = base64.b32encode(rng.randbytes(8 * n)).decode().lower()
    out = [raw[i * 12:(i + 1) * 12] for i in range(len(raw) // 12)]
    return out[:n]


def resp(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class Reservoir:
    """A uniform random sample of up to k of all the keys ever offered."""

    def __init__(self, k, rng):
        self.k, self.rng, self.seen, self.keys = k, rng, 0, []

    def offer(self, key):
        self.seen += 1
        if len(self.keys) < self.k:
            self.keys.append(key)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.k:
                self.keys[j] = key


def load(redis, n, rng, sample):
    """SET n new aliases through redis-cli --pipe, offering each key to `sample`."""
    proc = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunk = 50_000
    done = 0
    try:
        while done < n:
            m = min(chunk, n - done)
            buf = []
            for local in random_locals(m, rng):
                key = f"{PREFIX}{local}@{DOMAIN}"
                sample.offer(key)
                buf.append(resp("SET", key, OWNER, "EX", rng.randint(86_400, 90 * 86_400)))
            proc.stdin.write(b"".join(buf))
            done += m
        proc.stdin.close()
        out = proc.stdout.read().decode(errors="replace")
        proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    m = re.search(r"errors: (\d+), replies: (\d+)", out)
    if proc.returncode != 0 or not m or m.group(1) != "0" or int(m.group(2)) != n:
        raise SystemExit(f"redis-cli --pipe failed ({proc.returncode}): {out}")


def info_memory(redis):
    text = redis.cli("INFO", "memory")
    return {k: int(v) for k, v in re.findall(r"^(used_memory|used_memory_dataset|used_memory_rss):(\d+)",
                                               text, re.M)}


# --------------------------------------------------------------------------
# latency: GET over one connection
# --------------------------------------------------------------------------
class RespConn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def get(self, key):
        self.sock.sendall(resp("GET", key))
        line = self._line()
        if line == b"$-1":
            return None
        if not line.startswith(b"$"):
            raise RuntimeError(f"unexpected reply {line!r}")
        n = int(line[1:])
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        value, self.buf = self.buf[:n], self.buf[n + 2:]
        return value

    def close(self):
        self.sock.close()


def time_gets(port, keys, expect_hit):
    conn = RespConn(port)
    out = []
    try:
        for key in keys:
            t0 = time.perf_counter_ns()
            value = conn.get(key)
            out.append(time.perf_counter_ns() - t0)
            if (value is not None) != expect_hit:
                raise SystemExit(f"GET {key}: {'miss' if value is None else 'hit'}, expected the other")
    finally:
        conn.close()
    return out


# --------------------------------------------------------------------------
# latency: RCPT through Postfix and the milter
# --------------------------------------------------------------------------
class Smtp:
    """A raw SMTP client: exact timing of one command's reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self._reply()
        self.cmd("EHLO sizing.test")

    def _reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("SMTP server closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines).decode(errors="replace")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self._reply()

    def timed(self, text):
        t0 = time.perf_counter_ns()
        self.sock.sendall(text.encode() + b"\r\n")
        code, reply = self._reply()
        return time.perf_counter_ns() - t0, code, reply

    def close(self):
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


def rcpt_same_session(port, aliases, expect):
    """RCPT for each alias in one session (RSET + MAIL every 400)."""
    s = Smtp(port)
    out = []
    try:
        for i, alias in enumerate(aliases):
            if i % 400 == 0:
                if i:
                    s.cmd("RSET")
                code, text = s.cmd("MAIL FROM:<news@shop.test>")
                assert code == 250, text
            ns, code, text = s.timed(f"RCPT TO:<{alias}>")
            if code != expect:
                raise SystemExit(f"RCPT {alias}: {text} (expected {expect})")
            out.append(ns)
    finally:
        s.close()
    return out


def rcpt_new_sessions(port, aliases, expect):
    """The first RCPT of a fresh session, for each alias."""
    out = []
    for alias in aliases:
        s = Smtp(port)
        try:
            code, text = s.cmd("MAIL FROM:<news@shop.test>")
            assert code == 250, text
            ns, code, text = s.timed(f"RCPT TO:<{alias}>")
            if code != expect:
                raise SystemExit(f"RCPT {alias}: {text} (expected {expect})")
            out.append(ns)
        finally:
            s.close()
    return out


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------
def pct(samples_ns, p):
    s = sorted(samples_ns)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] / 1000.0  # microseconds


def summary(samples_ns):
    return {"n": len(samples_ns), "p50_us": pct(samples_ns, 50), "p99_us": pct(samples_ns, 99),
            "p999_us": pct(samples_ns, 99.9), "max_us": max(samples_ns) / 1000.0}


def machine():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        pass
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    postfix_v = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "loadavg": os.getloadavg(),
            "debian": Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?",
            "redis": redis_v, "postfix": postfix_v, "python": platform.python_version()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aliases", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--samples", type=int, default=20_000, help="GETs per measurement (hits and misses each)")
    ap.add_argument("--smtp-samples", type=int, default=4_000, help="RCPTs per same-session measurement")
    ap.add_argument("--sessions", type=int, default=400, help="new-session RCPTs per measurement")
    ap.add_argument("--smoke", action="store_true", help="10,000 aliases, few samples: checks the machinery")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.smoke:
        args.aliases, args.samples, args.smtp_samples, args.sessions = 10_000, 2_000, 300, 40
    if os.geteuid() != 0:
        sys.exit("bench/sizing.py must run as root (Postfix's master needs it)")
    binary = lab.milter_binary()
    if not binary.is_file():
        sys.exit(f"milter binary {binary} missing: run scripts/build.sh (or set IMPALEMAIL_MILTER)")

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="impalemail-sizing-"))
    os.chmod(work, 0o755)
    redis = lab.Redis(work / "redis")
    postfix = lab.Postfix(work / "postfix")
    milter = lab.Milter(binary, work / "milter", redis.port, postfix.milter_socket)
    ok = False
    results = {"machine": machine(), "sizes": []}
    try:
        redis.start()
        base = info_memory(redis)
        postfix.setup()
        # Misses are 550s: without this, after 10 of them smtpd would sleep
        # 1 s before each reply (smtpd_soft_error_limit / error_sleep_time).
        # The first accepted RCPT of a transaction opens a queue file, and
        # these transactions are never delivered, so Postfix's flow control
        # would soon make each one wait in_flow_delay (1 s) for a token.
        postfix.postconf("smtpd_soft_error_limit = 1000000", "smtpd_hard_error_limit = 1000000",
                         "in_flow_delay = 0")
        milter.start()
        postfix.start()

        loaded = 0
        sample = Reservoir(args.samples, rng)  # hits: drawn from every alias loaded so far
        for size in (args.small, args.aliases):
            t0 = time.monotonic()
            load(redis, size - loaded, rng, sample)
            hit_keys = list(sample.keys)
            load_s = time.monotonic() - t0
            loaded = size
            dbsize = int(redis.cli("DBSIZE"))
            if dbsize != size:
                raise SystemExit(f"DBSIZE {dbsize}, expected {size} (a random local part repeated?)")
            mem = info_memory(redis)
            per_alias = (mem["used_memory"] - base["used_memory"]) / size
            per_alias_dataset = (mem["used_memory_dataset"] - base["used_memory_dataset"]) / size
            sample_key = hit_keys[0]
            usage = int(redis.cli("MEMORY", "USAGE", sample_key))

            hits = [rng.choice(hit_keys) for _ in range(args.samples)]
            misses = [f"{PREFIX}miss-{x}@{DOMAIN}" for x in random_locals(args.samples, rng)]
            time_gets(redis.port, hits[:500], True)  # warm-up
            lat = {"GET hit": summary(time_gets(redis.port, hits, True)),
                   "GET miss": summary(time_gets(redis.port, misses, False))}
            hit_aliases = [k[len(PREFIX):] for k in hits]
            miss_aliases = [k[len(PREFIX):] for k in misses]
            rcpt_same_session(postfix.port, hit_aliases[:200], 250)  # warm-up
            lat["RCPT hit, same session"] = summary(rcpt_same_session(postfix.port, hit_aliases[:args.smtp_samples], 250))
            lat["RCPT miss, same session"] = summary(rcpt_same_session(postfix.port, miss_aliases[:args.smtp_samples], 550))
            lat["RCPT hit, new session"] = summary(rcpt_new_sessions(postfix.port, hit_aliases[:args.sessions], 250))
            results["sizes"].append({
                "aliases": size, "load_s": round(load_s, 2),
                "used_memory": mem["used_memory"], "used_memory_dataset": mem["used_memory_dataset"],
                "used_memory_rss": mem["used_memory_rss"],
                "baseline_used_memory": base["used_memory"], "baseline_used_memory_dataset": base["used_memory_dataset"],
                "bytes_per_alias": round(per_alias, 1), "dataset_bytes_per_alias": round(per_alias_dataset, 1),
                "memory_usage_one_key": usage, "latency": lat})
            sys.stderr.write(f"[sizing] {size:,} aliases done\n")

        t0 = time.monotonic()
        redis.cli("SAVE")
        rdb = work / "redis" / "dump.rdb"
        results["rdb"] = {"aliases": loaded, "bytes": rdb.stat().st_size, "save_s": round(time.monotonic() - t0, 2)}
        results["milter_log_lines"] = milter.log().count("\n")
        ok = True
    finally:
        for stop in (postfix.stop, milter.stop, redis.stop):
            try:
                stop()
            except Exception as e:  # keep stopping the rest
                sys.stderr.write(f"[sizing] stop: {e}\n")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            sys.stderr.write(f"[sizing] work directory kept: {work}\n")

    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.smoke:
        return smoke_check(results)
    return 0


def report(r):
    m = r["machine"]
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gb']} GB, Linux {m['kernel']}, Debian {m['debian']}, "
          f"load avg {m['loadavg'][0]:.2f}/{m['loadavg'][1]:.2f}/{m['loadavg'][2]:.2f}")
    print(f"         {m['redis']}; Postfix {m['postfix']}; Python {m['python']}")
    print()
    print("memory (INFO memory, minus the empty database):")
    print(f"  {'aliases':>10} | {'used_memory':>12} | {'RSS':>9} | {'bytes/alias':>11} | {'dataset B/alias':>15} | "
          f"{'MEMORY USAGE 1 key':>18} | {'load':>6}")
    for s in r["sizes"]:
        print(f"  {s['aliases']:>10,} | {s['used_memory'] / 1048576:>9.1f} MB | {s['used_memory_rss'] / 1048576:>6.1f} MB | "
              f"{s['bytes_per_alias']:>11.1f} | {s['dataset_bytes_per_alias']:>15.1f} | "
              f"{s['memory_usage_one_key']:>16} B | {s['load_s']:>5.1f}s")
    rdb = r["rdb"]
    print(f"  RDB snapshot of {rdb['aliases']:,} aliases: {rdb['bytes'] / 1048576:.1f} MB "
          f"({rdb['bytes'] / rdb['aliases']:.1f} B/alias), SAVE took {rdb['save_s']:.2f} s")
    print()
    print("lookup latency, microseconds (GET: Python RESP client, one kept connection;"
          " RCPT: raw SMTP through Postfix + milter):")
    names = list(r["sizes"][0]["latency"])
    print(f"  {'measurement':<26} | {'aliases':>10} | {'n':>6} | {'p50':>8} | {'p99':>8} | {'p99.9':>8} | {'max':>8}")
    for name in names:
        for s in r["sizes"]:
            l = s["latency"][name]
            print(f"  {name:<26} | {s['aliases']:>10,} | {l['n']:>6} | {l['p50_us']:>8.0f} | {l['p99_us']:>8.0f} | "
                  f"{l['p999_us']:>8.0f} | {l['max_us']:>8.0f}")


def smoke_check(r):
    problems = []
    for s in r["sizes"]:
        if not 40 <= s["bytes_per_alias"] <= 1000:
            problems.append(f"{s['aliases']} aliases: {s['bytes_per_alias']} bytes per alias is implausible")
        for name, l in s["latency"].items():
            if not (0 < l["p50_us"] <= l["p99_us"] <= l["max_us"]) or l["n"] == 0:
                problems.append(f"{name} at {s['aliases']}: inconsistent figures {l}")
    if r["rdb"]["bytes"] <= 0:
        problems.append("empty RDB")
    for p in problems:
        print(f"SMOKE FAILURE: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
