"""impalectl, the admin command line, against a private Redis (and, for the
end-to-end check, the milter through miltertest): every command in text and
--json, the documented exit codes, TTL parsing, SET NX with retries on a
taken name, SCAN over several pages, Sentinel discovery, and that what
`impalectl new` writes is accepted by the milter and refused after `revoke`.

Environment:
  IMPALECTL           binary under test (default build/ctl/impalectl)
  IMPALEMAIL_MILTER   milter binary (default build/milter/impalemail-milter)
"""

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

import lab as labmod

REPO = Path(__file__).resolve().parents[2]
DOMAIN = labmod.ALIAS_DOMAIN          # alias.example.org
DOMAIN2 = "second.example"
RANDOM_ALIAS = re.compile(r"^[a-z0-9]{10}@" + re.escape(DOMAIN) + "$")
WORDS_ALIAS = re.compile(r"^[a-z]{3,7}-[a-z]{3,7}-[a-z]{3,7}-[0-9]{3}@" + re.escape(DOMAIN) + "$")

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_CONFIG, EXIT_REDIS, EXIT_INPUT = 0, 1, 2, 3, 4, 5


def binary():
    return Path(os.environ.get("IMPALECTL", str(REPO / "build" / "ctl" / "impalectl")))


def run_ctl(config, *args, expect=EXIT_OK, timeout=120):
    """Runs impalectl -c CONFIG ARGS and checks its exit code."""
    argv = [str(binary())] + (["-c", str(config)] if config else []) + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
    assert p.returncode == expect, (f"{' '.join(argv[1:])}: exit {p.returncode}, expected {expect}\n"
                                    f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def ctl_json(config, *args):
    p = run_ctl(config, *args, "--json")
    return json.loads(p.stdout)


def write_config(path, redis_lines, domains=(DOMAIN, DOMAIN2), prefix="alias:", stats_prefix=None):
    """A config like the milter's; redis_lines go in the redis: section (indented)."""
    path = Path(path)
    path.write_text(
        "redis:\n" + redis_lines +
        f'  key_prefix: "{prefix}"\n'
        + (f'  stats_prefix: "{stats_prefix}"\n' if stats_prefix is not None else "") +
        "  timeout_ms: 250\n"
        "aliases:\n"
        f"  domains: [{', '.join(domains)}]\n"
        "logging:\n"
        "  syslog: false\n")
    return path


def redis_pipe(r, commands):
    """Sends many commands on one connection (RESP) and returns the raw
    replies' count; every reply must be a status, integer or bulk line."""
    payload = bytearray()
    for cmd in commands:
        payload += b"*%d\r\n" % len(cmd)
        for arg in cmd:
            a = str(arg).encode()
            payload += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
        s.sendall(payload)
        buf = b""
        while buf.count(b"\r\n") < len(commands):
            chunk = s.recv(65536)
            assert chunk, "redis closed the connection"
            buf += chunk
    assert b"-" not in buf[:1] and b"\r\n-" not in buf, buf[:200]


def ttl(r, key):
    return int(r.cli("TTL", key))


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctl_dir(request):
    if not binary().is_file():
        pytest.fail(f"impalectl binary {binary()} does not exist; build it first (scripts/build.sh) "
                    "or set IMPALECTL", pytrace=False)
    with labmod.work_directory("impalemail-ctl-", "impalectl", lambda: request.session.testsfailed) as path:
        yield path


@pytest.fixture(scope="module")
def ctl_redis(ctl_dir):
    r = labmod.Redis(ctl_dir / "redis")
    r.start()
    yield r
    r.resume()
    r.stop()


@pytest.fixture
def redis(ctl_redis):
    """The module's Redis, emptied before each test."""
    ctl_redis.cli("FLUSHALL")
    return ctl_redis


@pytest.fixture
def cfg(ctl_dir, ctl_redis):
    return write_config(ctl_dir / "impalectl.yaml", f"  address: tcp://127.0.0.1:{ctl_redis.port}\n")


# ---------------------------------------------------------------------------
# --version, --help, usage errors
# ---------------------------------------------------------------------------
def test_version_and_help():
    v = run_ctl(None, "--version")
    assert re.fullmatch(r"impalectl \d+\.\d+\.\d+\n", v.stdout), v.stdout
    h = run_ctl(None, "--help")
    for word in ("new", "list", "show", "extend", "persist", "revoke", "stats", "--json", "--config",
                 "Exit codes", "never"):
        assert word in h.stdout, word
    sub = run_ctl(None, "new", "--help")
    assert "--to" in sub.stdout and "--ttl" in sub.stdout and "--style" in sub.stdout


@pytest.mark.parametrize("args", [
    [],                                       # no command
    ["frobnicate"],                           # unknown command
    ["new"],                                  # --to missing
    ["new", "--to", "a@real.example", "--style", "emoji"],
    ["new", "--to", "a@real.example", "--colour", "blue"],
    ["show"],                                 # alias missing
    ["extend", f"x@{DOMAIN}"],                # --ttl missing
    ["revoke", f"x@{DOMAIN}", f"y@{DOMAIN}"],
], ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_exit_2(cfg, args):
    p = run_ctl(cfg, *args, expect=EXIT_USAGE)
    assert p.stdout == "" and p.stderr


# ---------------------------------------------------------------------------
# new
# ---------------------------------------------------------------------------
def test_new_random_alias_with_default_ttl(redis, cfg):
    p = run_ctl(cfg, "new", "--to", "alice@real.example")
    alias = p.stdout.strip()
    assert RANDOM_ALIAS.match(alias), alias
    assert p.stdout == alias + "\n"
    assert redis.cli("GET", "alias:" + alias) == "alice@real.example"
    assert 604790 <= ttl(redis, "alias:" + alias) <= 604800   # default 7d


def test_new_words_style(redis, cfg):
    alias = run_ctl(cfg, "new", "--to", "alice@real.example", "--style", "words").stdout.strip()
    assert WORDS_ALIAS.match(alias), alias
    assert redis.cli("GET", "alias:" + alias) == "alice@real.example"


def test_new_json_other_domain(redis, cfg):
    doc = ctl_json(cfg, "new", "--to", "Bob@Real.Example", "--domain", "SECOND.example.", "--ttl", "30m")
    assert doc["alias"].endswith("@" + DOMAIN2) and doc["key"] == "alias:" + doc["alias"]
    assert doc["owner"] == "Bob@Real.Example"              # stored as given, like redis-cli SET
    assert doc["permanent"] is False and doc["ttl_seconds"] == 1800
    assert redis.cli("GET", doc["key"]) == "Bob@Real.Example"
    assert 1790 <= ttl(redis, doc["key"]) <= 1800


@pytest.mark.parametrize("text,seconds", [
    ("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("3600", 3600),
    ("never", -1), ("0", -1),
])
def test_ttl_forms(redis, cfg, text, seconds):
    doc = ctl_json(cfg, "new", "--to", "alice@real.example", "--ttl", text)
    left = ttl(redis, doc["key"])
    if seconds == -1:
        assert left == -1 and doc["permanent"] is True and doc["ttl_seconds"] == -1
    else:
        assert seconds - 10 <= left <= seconds and doc["ttl_seconds"] == seconds


@pytest.mark.parametrize("text", ["7x", "-5", "1.5d", "", "d", "7 d", "7dd", "1e3", "never!", "NEVER",
                                  "99999999999999999999", "5300w"])
def test_bad_ttl_exit_5_and_writes_nothing(redis, cfg, text):
    p = run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", text, expect=EXIT_INPUT)
    assert "--ttl" in p.stderr and p.stdout == ""
    assert redis.cli("DBSIZE") == "0"


@pytest.mark.parametrize("target", [
    f"x@{DOMAIN}",                       # inside an alias domain: would loop
    f"x@{DOMAIN2.upper()}",
    "a b@real.example",
    "alice",
    "alice@real.example\r\nRCPT TO:<evil@x.test>",
    "<alice@real.example>",
    "a@b@real.example",
    "alice@real.example, bob@real.example",
    "",
    "x" * 250 + "@real.example",
])
def test_new_refuses_what_the_milter_would_refuse(redis, cfg, target):
    p = run_ctl(cfg, "new", "--to", target, expect=EXIT_INPUT)
    assert "--to" in p.stderr
    assert "\r" not in p.stderr                           # the value is shown escaped
    assert redis.cli("DBSIZE") == "0"


def test_new_domain_must_be_an_alias_domain(redis, cfg):
    p = run_ctl(cfg, "new", "--to", "alice@real.example", "--domain", "real.example", expect=EXIT_INPUT)
    assert "not an alias domain" in p.stderr
    assert redis.cli("DBSIZE") == "0"


def test_new_200_times_gives_200_distinct_aliases(redis, cfg):
    aliases = set()
    for i in range(200):
        style = "words" if i % 2 else "random"
        aliases.add(run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", "1h", "--style", style).stdout.strip())
    assert len(aliases) == 200
    assert int(redis.cli("DBSIZE")) == 200
    for a in list(aliases)[:20]:
        assert 3590 <= ttl(redis, "alias:" + a) <= 3600


def test_new_uses_set_nx_ex(redis, cfg):
    with redis.monitor() as mon:
        alias = run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", "7d").stdout.strip()
        run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", "never")
    sets = [l for l in mon.lines if '"SET"' in l or '"set"' in l]
    assert len(sets) == 2, mon.lines
    assert sets[0].endswith(f'"SET" "alias:{alias}" "alice@real.example" "EX" "604800" "NX"'), sets[0]
    assert sets[1].endswith('"alice@real.example" "NX"'), sets[1]


class FakeRedis(labmod.RespStub):
    """Answers SET with a nil reply (name taken, as SET NX does) the first
    `taken` times and +OK afterwards; records every SET."""

    def __init__(self, taken):
        self.taken = taken
        self.sets = []
        super().__init__()

    def answer(self, args):
        args = [a.decode() for a in args]
        if args[0].upper() != "SET":
            return b"-ERR unexpected command\r\n"
        self.sets.append(args)
        return b"$-1\r\n" if len(self.sets) <= self.taken else b"+OK\r\n"


def test_new_retries_with_a_new_name_when_the_name_is_taken(ctl_dir):
    with FakeRedis(taken=3) as fake:
        cfg = write_config(ctl_dir / "fake.yaml", f"  address: tcp://127.0.0.1:{fake.port}\n")
        alias = run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", "1h").stdout.strip()
    keys = [s[1] for s in fake.sets]
    assert len(keys) == 4 and len(set(keys)) == 4, keys       # a fresh name each time
    assert all(s[2:] == ["alice@real.example", "EX", "3600", "NX"] for s in fake.sets), fake.sets
    assert keys[-1] == "alias:" + alias                       # the one SET that succeeded


def test_new_gives_up_after_bounded_attempts(ctl_dir):
    with FakeRedis(taken=10**6) as fake:
        cfg = write_config(ctl_dir / "fake.yaml", f"  address: tcp://127.0.0.1:{fake.port}\n")
        p = run_ctl(cfg, "new", "--to", "alice@real.example", expect=EXIT_REDIS)
    assert len(fake.sets) == 10 and "no free alias name" in p.stderr
    assert p.stdout == ""


# ---------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------
def test_list_more_aliases_than_one_scan_page(redis, cfg):
    alice = {f"a{i:04d}@{DOMAIN}" for i in range(1250)}
    bob = {f"b{i:04d}@{DOMAIN2}" for i in range(1250)}
    redis_pipe(redis, [["SET", "alias:" + a, "alice@real.example", "EX", 3600] for a in alice] +
                      [["SET", "alias:" + a, "bob@Real.Example"] for a in bob])
    with redis.monitor() as mon:
        doc = ctl_json(cfg, "list")
    assert doc["count"] == 2500 and doc["ignored_keys"] == 0
    assert {a["alias"] for a in doc["aliases"]} == alice | bob
    assert [a["alias"] for a in doc["aliases"]] == sorted(alice | bob)
    by = {a["alias"]: a for a in doc["aliases"]}
    a0 = by[f"a0000@{DOMAIN}"]
    assert a0["owner"] == "alice@real.example" and a0["permanent"] is False and 3590 <= a0["ttl_seconds"] <= 3600
    b0 = by[f"b0000@{DOMAIN2}"]
    assert b0["permanent"] is True and b0["ttl_seconds"] == -1 and b0["key"] == f"alias:b0000@{DOMAIN2}"
    scans = [l for l in mon.lines if '"SCAN"' in l]
    assert len(scans) >= 3, scans                                     # several pages
    assert all('"MATCH" "alias:*" "COUNT" "1000"' in l for l in scans), scans
    assert not any('"KEYS"' in l for l in mon.lines)

    # --owner: exact local part, domain in any letter case.
    mine = ctl_json(cfg, "list", "--owner", "bob@real.EXAMPLE")
    assert mine["count"] == 1250 and {a["alias"] for a in mine["aliases"]} == bob
    assert ctl_json(cfg, "list", "--owner", "BOB@real.example")["count"] == 0
    assert ctl_json(cfg, "list", "--owner", "carol@real.example")["count"] == 0

    text = run_ctl(cfg, "list").stdout.splitlines()
    assert text[0].split() == ["ALIAS", "OWNER", "TTL"] and len(text) == 2501


def test_list_text_shows_ttl_and_permanent(redis, cfg):
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=90061)
    redis.set_alias(f"forever@{DOMAIN}", "bob@real.example")
    lines = run_ctl(cfg, "list").stdout.splitlines()
    assert lines[1].split()[:2] == [f"forever@{DOMAIN}", "bob@real.example"] and lines[1].endswith("permanent")
    assert lines[2].startswith(f"shop@{DOMAIN}")
    assert re.search(r"alice@real\.example\s+1d 1h \(900(5\d|6[01]) s\)$", lines[2]), lines[2]


def test_list_empty(redis, cfg):
    assert run_ctl(cfg, "list").stdout == "no aliases\n"
    assert ctl_json(cfg, "list") == {"count": 0, "aliases": [], "ignored_keys": 0}


def test_list_skips_keys_that_are_not_aliases(redis, cfg):
    redis.set_alias(f"good@{DOMAIN}", "alice@real.example")
    redis.cli("SET", f"alias:Upper@{DOMAIN}", "alice@real.example")       # the milter never looks this up
    redis.cli("SET", "alias:x@not-an-alias-domain.example", "alice@real.example")
    redis.cli("LPUSH", f"alias:list@{DOMAIN}", "x")                        # not a string
    redis.cli("HSET", f"stats:good@{DOMAIN}", "forwarded", "1")            # statistics: another prefix
    redis.cli("SET", f"other:y@{DOMAIN}", "alice@real.example")            # outside the prefix
    redis.cli("SET", f"alias:bad@{DOMAIN}", "two@real.example three@real.example")
    p = run_ctl(cfg, "list", "--json")
    doc = json.loads(p.stdout)
    assert [a["alias"] for a in doc["aliases"]] == [f"bad@{DOMAIN}", f"good@{DOMAIN}"]
    assert doc["ignored_keys"] == 3
    assert "3 key(s) under 'alias:'" in p.stderr
    bad = doc["aliases"][0]
    assert bad["owner_problem"] == "value contains whitespace or control characters"   # the milter answers 451
    assert "owner_problem" not in doc["aliases"][1]


def test_list_bad_owner_exit_5(redis, cfg):
    run_ctl(cfg, "list", "--owner", "not a mailbox", expect=EXIT_INPUT)


def test_key_prefix_with_glob_characters(redis, ctl_dir, ctl_redis):
    cfg = write_config(ctl_dir / "glob.yaml", f"  address: tcp://127.0.0.1:{ctl_redis.port}\n", prefix="t[1]*:")
    alias = run_ctl(cfg, "new", "--to", "alice@real.example").stdout.strip()
    assert redis.cli("GET", "t[1]*:" + alias) == "alice@real.example"
    redis.cli("SET", f"t1:x@{DOMAIN}", "bob@real.example")      # matched by an unescaped pattern
    doc = ctl_json(cfg, "list")
    assert [a["alias"] for a in doc["aliases"]] == [alias] and doc["ignored_keys"] == 0


def test_empty_key_prefix_skips_statistics_silently(redis, ctl_dir, ctl_redis):
    cfg = write_config(ctl_dir / "noprefix.yaml", f"  address: tcp://127.0.0.1:{ctl_redis.port}\n", prefix="")
    alias = run_ctl(cfg, "new", "--to", "alice@real.example").stdout.strip()
    assert redis.cli("GET", alias) == "alice@real.example"
    redis.cli("HSET", f"stats:{alias}", "forwarded", "2")
    redis.cli("SET", "unrelated", "x")
    p = run_ctl(cfg, "list", "--json")
    doc = json.loads(p.stdout)
    assert [a["alias"] for a in doc["aliases"]] == [alias] and doc["ignored_keys"] == 1, doc
    assert "'unrelated'" in p.stderr and "stats:" not in p.stderr
    assert ctl_json(cfg, "show", alias)["stats"]["forwarded"] == 2


# ---------------------------------------------------------------------------
# show, extend, persist, revoke
# ---------------------------------------------------------------------------
def test_show(redis, cfg):
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=3600)
    redis.cli("HSET", f"stats:shop@{DOMAIN}", "forwarded", "12", "refused", "3", "last_used", "1700000000")
    doc = ctl_json(cfg, "show", "<Shop@Alias.Example.ORG>")          # normalized like an RCPT argument
    assert doc["alias"] == f"shop@{DOMAIN}" and doc["owner"] == "alice@real.example"
    assert doc["permanent"] is False and 3590 <= doc["ttl_seconds"] <= 3600
    assert doc["stats"] == {"forwarded": 12, "refused": 3, "last_used": 1700000000}
    text = run_ctl(cfg, "show", f"shop@{DOMAIN}").stdout
    assert re.search(r"^owner:\s+alice@real\.example$", text, re.M), text
    assert re.search(r"^forwarded:\s+12$", text, re.M) and re.search(r"^refused:\s+3$", text, re.M)
    assert "2023-11-14 22:13:20 UTC" in text

    redis.set_alias(f"fresh@{DOMAIN}", "bob@real.example")
    doc = ctl_json(cfg, "show", f"fresh@{DOMAIN}")
    assert doc["permanent"] is True and doc["ttl_seconds"] == -1
    assert doc["stats"] == {"forwarded": 0, "refused": 0, "last_used": None}
    assert re.search(r"^last used:\s+never$", run_ctl(cfg, "show", f"fresh@{DOMAIN}").stdout, re.M)


def test_not_found_exit_1(redis, cfg):
    for cmd in (["show"], ["persist"], ["revoke"], ["extend", "--ttl", "1d"], ["extend", "--ttl", "never"]):
        p = run_ctl(cfg, cmd[0], f"nobody@{DOMAIN}", *cmd[1:], expect=EXIT_NOT_FOUND)
        assert "no such alias: nobody@" in p.stderr and p.stdout == ""
        p = run_ctl(cfg, cmd[0], f"nobody@{DOMAIN}", *cmd[1:], "--json", expect=EXIT_NOT_FOUND)
        assert p.stdout == ""
    assert redis.cli("DBSIZE") == "0"                               # EXPIRE/PERSIST created nothing


@pytest.mark.parametrize("alias", [f"x@{DOMAIN}.evil.test", "x@real.example", "nobody", f"a..b@{DOMAIN}",
                                   f"<x@{DOMAIN}", f"{'x' * 65}@{DOMAIN}", "<>"])
def test_alias_outside_domains_or_malformed_exit_5(redis, cfg, alias):
    for cmd in (["show"], ["persist"], ["revoke"], ["stats"], ["extend", "--ttl", "1d"]):
        p = run_ctl(cfg, cmd[0], alias, *cmd[1:], expect=EXIT_INPUT)
        assert "alias" in p.stderr


def test_extend(redis, cfg):
    key, stats = f"alias:shop@{DOMAIN}", f"stats:shop@{DOMAIN}"
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=60)
    redis.cli("HSET", stats, "forwarded", "1")
    redis.cli("EXPIRE", stats, "60")
    p = run_ctl(cfg, "extend", f"SHOP@{DOMAIN}", "--ttl", "7d")
    assert p.stdout == f"shop@{DOMAIN} now expires in 7d (604800 s)\n"
    assert 604790 <= ttl(redis, key) <= 604800
    assert 604790 <= ttl(redis, stats) <= 604800          # statistics expire with their alias
    doc = ctl_json(cfg, "extend", f"shop@{DOMAIN}", "--ttl", "2w")
    assert doc == {"alias": f"shop@{DOMAIN}", "permanent": False, "ttl_seconds": 1209600}
    assert 1209590 <= ttl(redis, key) <= 1209600
    run_ctl(cfg, "extend", f"shop@{DOMAIN}", "--ttl", "never")
    assert ttl(redis, key) == -1 and ttl(redis, stats) == -1
    run_ctl(cfg, "extend", f"shop@{DOMAIN}", "--ttl", "1h")
    run_ctl(cfg, "extend", f"shop@{DOMAIN}", "--ttl", "0")         # 0 is permanent, never EXPIRE 0 (= delete)
    assert ttl(redis, key) == -1 and redis.cli("GET", key) == "alice@real.example"
    run_ctl(cfg, "extend", f"shop@{DOMAIN}", "--ttl", "soon", expect=EXIT_INPUT)


def test_persist(redis, cfg):
    key, stats = f"alias:shop@{DOMAIN}", f"stats:shop@{DOMAIN}"
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=60)
    redis.cli("HSET", stats, "forwarded", "1")
    redis.cli("EXPIRE", stats, "60")
    assert ctl_json(cfg, "persist", f"shop@{DOMAIN}") == {
        "alias": f"shop@{DOMAIN}", "permanent": True, "ttl_seconds": -1, "changed": True}
    assert ttl(redis, key) == -1 and ttl(redis, stats) == -1
    assert ctl_json(cfg, "persist", f"shop@{DOMAIN}")["changed"] is False   # already permanent: still 0
    assert run_ctl(cfg, "persist", f"shop@{DOMAIN}").stdout == f"shop@{DOMAIN} was already permanent\n"


def test_revoke(redis, cfg):
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=60)
    redis.set_alias(f"keep@{DOMAIN}", "alice@real.example", ttl=60)
    redis.cli("HSET", f"stats:shop@{DOMAIN}", "forwarded", "1")
    assert run_ctl(cfg, "revoke", f"shop@{DOMAIN}").stdout == f"shop@{DOMAIN} revoked\n"
    assert redis.cli("EXISTS", f"alias:shop@{DOMAIN}") == "0"
    # The statistics stay (the milter counts refused RCPTs while they exist).
    assert redis.cli("EXISTS", f"stats:shop@{DOMAIN}") == "1"
    assert redis.cli("EXISTS", f"alias:keep@{DOMAIN}") == "1"
    run_ctl(cfg, "revoke", f"shop@{DOMAIN}", expect=EXIT_NOT_FOUND)
    assert ctl_json(cfg, "revoke", f"keep@{DOMAIN}") == {"alias": f"keep@{DOMAIN}", "revoked": True}


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------
def test_stats_one_alias(redis, cfg):
    doc = ctl_json(cfg, "stats", f"unused@{DOMAIN}")              # no hash (and no alias): zeros
    assert doc == {"forwarded": 0, "refused": 0, "last_used": None, "alias": f"unused@{DOMAIN}"}
    text = run_ctl(cfg, "stats", f"unused@{DOMAIN}").stdout
    assert re.search(r"^forwarded:\s+0$", text, re.M) and re.search(r"^last used:\s+never$", text, re.M)
    redis.cli("HSET", f"stats:shop@{DOMAIN}", "forwarded", "5", "last_used", "1700000000")
    doc = ctl_json(cfg, "stats", f"Shop@{DOMAIN}")
    assert doc == {"forwarded": 5, "refused": 0, "last_used": 1700000000, "alias": f"shop@{DOMAIN}"}


def test_stats_totals(redis, cfg):
    assert ctl_json(cfg, "stats") == {"forwarded": 0, "refused": 0, "last_used": None, "aliases": 0}
    redis.cli("HSET", f"stats:a@{DOMAIN}", "forwarded", "5", "refused", "1", "last_used", "1700000000")
    redis.cli("HSET", f"stats:b@{DOMAIN2}", "forwarded", "7", "last_used", "1700000500")
    redis.cli("HSET", f"stats:c@{DOMAIN}", "forwarded", "lots", "refused", "2")   # corrupt field: 0, warned
    redis.cli("SET", f"stats:d@{DOMAIN}", "not a hash")                           # warned, skipped
    redis.set_alias(f"a@{DOMAIN}", "alice@real.example")                                # an alias: not counted
    p = run_ctl(cfg, "stats", "--json")
    assert json.loads(p.stdout) == {"forwarded": 12, "refused": 3, "last_used": 1700000500, "aliases": 3}
    assert "'forwarded' is not a non-negative integer" in p.stderr and "not a statistics hash" in p.stderr
    text = run_ctl(cfg, "stats").stdout
    assert re.search(r"^aliases with statistics:\s+3$", text, re.M) and re.search(r"^forwarded:\s+12$", text, re.M)


def test_statistics_turned_off(redis, ctl_dir, ctl_redis):
    cfg = write_config(ctl_dir / "nostats.yaml", f"  address: tcp://127.0.0.1:{ctl_redis.port}\n", stats_prefix="")
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example", ttl=60)
    redis.cli("HSET", f"stats:shop@{DOMAIN}", "forwarded", "1")
    redis.cli("EXPIRE", f"stats:shop@{DOMAIN}", "60")
    assert ctl_json(cfg, "show", f"shop@{DOMAIN}")["stats"] is None
    assert "statistics:" in run_ctl(cfg, "show", f"shop@{DOMAIN}").stdout
    for args in (["stats"], ["stats", f"shop@{DOMAIN}"]):
        assert "stats_prefix" in run_ctl(cfg, *args, expect=EXIT_CONFIG).stderr
    run_ctl(cfg, "persist", f"shop@{DOMAIN}")
    assert ttl(redis, f"stats:shop@{DOMAIN}") > 0                   # not ours to touch then


def test_custom_stats_prefix(redis, ctl_dir, ctl_redis):
    cfg = write_config(ctl_dir / "mystats.yaml", f"  address: tcp://127.0.0.1:{ctl_redis.port}\n",
                       stats_prefix="st:")
    redis.cli("HSET", f"st:shop@{DOMAIN}", "forwarded", "4")
    redis.cli("HSET", f"stats:shop@{DOMAIN}", "forwarded", "100")
    assert ctl_json(cfg, "stats", f"shop@{DOMAIN}")["forwarded"] == 4
    assert ctl_json(cfg, "stats")["forwarded"] == 4


# ---------------------------------------------------------------------------
# Configuration, connection and Redis errors
# ---------------------------------------------------------------------------
def test_config_errors_exit_3(ctl_dir):
    p = run_ctl(ctl_dir / "missing.yaml", "list", expect=EXIT_CONFIG)
    assert "cannot open config file" in p.stderr
    bad = ctl_dir / "bad.yaml"
    bad.write_text("redis:\n  colour: blue\naliases:\n  domains: []\n")
    p = run_ctl(bad, "list", expect=EXIT_CONFIG)
    assert f"{bad}:2:3: error: unknown key 'colour'" in p.stderr and f"{bad}:4:12: error:" in p.stderr
    # Checked before anything else, even before the --to value.
    run_ctl(bad, "new", "--to", "not valid", expect=EXIT_CONFIG)


def test_default_config_path_is_etc():
    assert "--config TEXT=/etc/impalemail/impalemail.yaml" in run_ctl(None, "--help").stdout
    if not Path("/etc/impalemail/impalemail.yaml").exists():
        p = run_ctl(None, "list", expect=EXIT_CONFIG)
        assert "/etc/impalemail/impalemail.yaml" in p.stderr


def test_global_options_before_or_after_the_command(redis, cfg):
    redis.set_alias(f"shop@{DOMAIN}", "alice@real.example")
    for argv in (["--json", "-c", cfg, "list"], ["list", "--json", "-c", cfg], ["-c", cfg, "list", "--json"],
                 ["--config", cfg, "show", "--json", f"shop@{DOMAIN}"]):
        p = run_ctl(None, *argv)
        assert json.loads(p.stdout)


def test_redis_unreachable_exit_4(ctl_dir):
    cfg = write_config(ctl_dir / "down.yaml", f"  address: tcp://127.0.0.1:{labmod.free_port()}\n")
    for args in (["list"], ["new", "--to", "a@real.example"], ["show", f"x@{DOMAIN}"], ["stats"],
                 ["revoke", f"x@{DOMAIN}"], ["list", "--json"]):
        p = run_ctl(cfg, *args, expect=EXIT_REDIS)
        assert "cannot connect" in p.stderr and p.stdout == ""
    # Invalid input is reported as such even when Redis is down.
    run_ctl(cfg, "new", "--to", "x@" + DOMAIN, expect=EXIT_INPUT)


def test_hung_redis_times_out_exit_4(redis, cfg):
    redis.pause()
    try:
        p = run_ctl(cfg, "list", expect=EXIT_REDIS, timeout=30)
    finally:
        redis.resume()
    assert "timed out after 2000 ms" in p.stderr, p.stderr   # max(timeout_ms 250, 2 s)


def test_auth_database_and_redis_errors(ctl_dir):
    r = labmod.Redis(ctl_dir / "redis-auth", password="admin-secret",
                     extra_args=["--requirepass", "admin-secret"])
    r.start()
    try:
        (ctl_dir / "admin-password").write_text("admin-secret\n")
        (ctl_dir / "wrong-password").write_text("guess\n")
        (ctl_dir / "reader-password").write_text("reader-secret\n")
        addr = f"  address: tcp://127.0.0.1:{r.port}\n"
        good = write_config(ctl_dir / "auth.yaml", addr + "  password_file: admin-password\n  database: 5\n")
        alias = run_ctl(good, "new", "--to", "alice@real.example").stdout.strip()
        assert r.cli("-n", "5", "GET", "alias:" + alias) == "alice@real.example"
        assert r.cli("-n", "0", "DBSIZE") == "0"
        assert ctl_json(good, "list")["count"] == 1

        wrong = write_config(ctl_dir / "wrong.yaml", addr + "  password_file: wrong-password\n")
        p = run_ctl(wrong, "list", expect=EXIT_REDIS)
        assert "AUTH refused" in p.stderr and "guess" not in p.stderr
        none = write_config(ctl_dir / "noauth.yaml", addr + "  database: 5\n")
        assert "NOAUTH" in run_ctl(none, "list", expect=EXIT_REDIS).stderr

        # A user allowed to read aliases but not to SCAN or write: error replies are exit 4.
        r.cli("ACL", "SETUSER", "reader", "on", ">reader-secret", "~alias:*", "+get", "+pttl", "+select",
              "+auth", "+hmget")
        reader = write_config(ctl_dir / "reader.yaml",
                              addr + "  username: reader\n  password_file: reader-password\n  database: 5\n")
        assert ctl_json(reader, "show", alias)["owner"] == "alice@real.example"
        p = run_ctl(reader, "list", expect=EXIT_REDIS)
        assert "SCAN" in p.stderr and "NOPERM" in p.stderr
        p = run_ctl(reader, "revoke", alias, expect=EXIT_REDIS)
        assert "NOPERM" in p.stderr
        assert r.cli("-n", "5", "EXISTS", "alias:" + alias) == "1"
    finally:
        r.stop()


def test_wrong_type_key_is_a_redis_error(redis, cfg):
    redis.cli("LPUSH", f"alias:odd@{DOMAIN}", "x")
    p = run_ctl(cfg, "show", f"odd@{DOMAIN}", expect=EXIT_REDIS)
    assert "WRONGTYPE" in p.stderr


def start_sentinel(workdir, master_port, master="impalemail"):
    """One Redis Sentinel (quorum 1) monitoring 127.0.0.1:master_port; it
    rewrites its config file, so that lives in workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = labmod.free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(f"bind 127.0.0.1\nport {port}\ndaemonize no\ndir {workdir}\n"
                    f"logfile {workdir / 'sentinel.log'}\n"
                    f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        assert proc.poll() is None, "sentinel exited"
        out = subprocess.run(["redis-cli", "-p", str(port), "SENTINEL", "get-master-addr-by-name", master],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.split() == ["127.0.0.1", str(master_port)]
    labmod.wait_until(answers, 10, f"sentinel on port {port}")
    return proc, port


def test_sentinel_discovery(ctl_dir, redis):
    proc, port = start_sentinel(ctl_dir / "sentinel", redis.port)
    try:
        # The first sentinel is down: the next one is asked.
        cfg = write_config(ctl_dir / "sentinel.yaml",
                           "  sentinel:\n    master: impalemail\n"
                           f"    addresses: [tcp://127.0.0.1:{labmod.free_port()}, tcp://127.0.0.1:{port}]\n")
        alias = run_ctl(cfg, "new", "--to", "alice@real.example").stdout.strip()
        assert redis.cli("GET", "alias:" + alias) == "alice@real.example"
        assert ctl_json(cfg, "show", alias)["owner"] == "alice@real.example"
        bad = write_config(ctl_dir / "sentinel-bad.yaml",
                           f"  sentinel:\n    master: nosuchmaster\n    addresses: [tcp://127.0.0.1:{port}]\n")
        p = run_ctl(bad, "list", expect=EXIT_REDIS)
        assert "nosuchmaster" in p.stderr
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------------
# What impalectl writes, the milter accepts; what it revokes, the milter refuses.
# ---------------------------------------------------------------------------
def test_milter_accepts_new_aliases_and_refuses_revoked_ones(ctl_dir, redis):
    m = labmod.Milter(labmod.milter_binary(), ctl_dir / "milter", redis.port, ctl_dir / "milter" / "milter.sock")
    m.start()
    try:
        cfg = m.config                        # the milter's own YAML
        random_alias = run_ctl(cfg, "new", "--to", "alice@real.example", "--ttl", "1h").stdout.strip()
        words_alias = run_ctl(cfg, "new", "--to", "bob@real.example", "--style", "words").stdout.strip()
        assert RANDOM_ALIAS.match(random_alias) and WORDS_ALIAS.match(words_alias)
        labmod.assert_miltertest_rcpt(m, f"<{random_alias}>", "continue")
        labmod.assert_miltertest_rcpt(m, f"<{words_alias.upper()}>", "continue")
        before = m.log_offset()
        run_ctl(cfg, "revoke", random_alias)
        labmod.assert_miltertest_rcpt(m, f"<{random_alias}>", "reply")
        assert "code=550" in m.log(before), m.log(before)
        labmod.assert_miltertest_rcpt(m, f"<{words_alias}>", "continue")
        assert "code=451" not in m.log()
    finally:
        m.stop()


def wait_for(predicate, what, timeout=5):
    labmod.wait_until(predicate, timeout, what, interval=0.05)


def test_statistics_written_by_the_milter_are_read_back(ctl_dir, redis):
    """rewrite.lua forwards one message to shop@alias.example.org; after
    `revoke` a refused RCPT counts too: impalectl reads the milter's keys."""
    m = labmod.Milter(labmod.milter_binary(), ctl_dir / "milter-stats", redis.port,
                      ctl_dir / "milter-stats" / "milter.sock")
    m.start()
    try:
        cfg = m.config
        alias = f"shop@{DOMAIN}"
        redis.set_alias(alias, "alice@real.example", ttl=600)
        run = labmod.miltertest(m, "rewrite")
        assert run.returncode == 0, run.stdout + run.stderr + labmod.tail(m.log(), 10)
        wait_for(lambda: ctl_json(cfg, "stats", alias)["forwarded"] == 1, "forwarded == 1")
        shown = ctl_json(cfg, "show", alias)
        assert shown["stats"]["forwarded"] == 1 and shown["stats"]["last_used"] is not None
        run_ctl(cfg, "revoke", alias)
        labmod.assert_miltertest_rcpt(m, f"<{alias}>", "reply")
        wait_for(lambda: ctl_json(cfg, "stats", alias)["refused"] == 1, "refused == 1")
        totals = ctl_json(cfg, "stats")
        assert totals["aliases"] == 1 and totals["forwarded"] == 1 and totals["refused"] == 1
    finally:
        m.stop()
