"""Per-alias statistics in Redis: forwarded messages, refused RCPTs and last
use, in a hash that expires with its alias, written without a blocking round
trip (the GET count per alias recipient stays exactly one)."""

import time

from test_postfix import ALICE, BOB, accepted_and_delivered, make_message


def stats(lab, alias):
    flat = lab.redis.cli("HGETALL", f"stats:{alias}").split("\n")
    return dict(zip(flat[::2], flat[1::2])) if flat != [""] else {}


def get_calls(lab):
    for line in lab.redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_get:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_forwarded_and_last_used_follow_each_message(lab, new_alias, token):
    alias = new_alias("stats")
    lab.redis.set_alias(alias, ALICE, ttl=600)
    before_gets = get_calls(lab)
    t0 = int(time.time())
    for i in range(3):
        result = lab.send([alias], make_message(f"{token}n{i}", alias))
        accepted_and_delivered(lab, result, ALICE, f"{token}n{i}")
    # The statistics update is sent after the decision, without waiting:
    # the next lookup on the connection reads its reply. Give it a moment.
    time.sleep(0.3)
    s = stats(lab, alias)
    assert s.get("forwarded") == "3", s
    assert t0 - 1 <= int(s["last_used"]) <= time.time() + 1
    assert get_calls(lab) - before_gets == 3          # one GET per alias RCPT, nothing more
    ttl = int(lab.redis.cli("TTL", f"stats:{alias}"))
    assert 590 <= ttl <= 600, ttl                       # expires with its alias


def test_stats_hash_follows_persist_and_expire(lab, new_alias, token):
    alias = new_alias("stats-ttl")
    lab.redis.set_alias(alias, BOB, ttl=600)
    lab.redis.cli("PERSIST", f"alias:{alias}")
    accepted_and_delivered(lab, lab.send([alias], make_message(token + "p", alias)), BOB, token + "p")
    time.sleep(0.3)
    assert lab.redis.cli("TTL", f"stats:{alias}") == "-1"
    lab.redis.cli("EXPIRE", f"alias:{alias}", "120")
    accepted_and_delivered(lab, lab.send([alias], make_message(token + "e", alias)), BOB, token + "e")
    time.sleep(0.3)
    assert 110 <= int(lab.redis.cli("TTL", f"stats:{alias}")) <= 120


def test_refused_counts_only_for_aliases_that_lived(lab, new_alias, token):
    alias, never = new_alias("stats-rev"), new_alias("stats-never")
    lab.redis.set_alias(alias, ALICE, ttl=600)
    accepted_and_delivered(lab, lab.send([alias], make_message(token, alias)), ALICE, token)
    lab.redis.cli("DEL", f"alias:{alias}")                 # revoked
    for _ in range(2):
        assert lab.send([alias, never], make_message(token + "r", alias)).rcpts[alias].code == 550
    time.sleep(0.3)
    assert stats(lab, alias).get("refused") == "2"
    assert stats(lab, alias).get("forwarded") == "1"
    assert lab.redis.cli("EXISTS", f"stats:{never}") == "0"   # no keys for guessed names
