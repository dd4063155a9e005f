"""The Prometheus endpoint, scraped during an end-to-end run through Postfix."""

import re
import urllib.request

import pytest

import lab as labmod
from test_postfix import ALICE, CAROL, accepted_and_delivered, make_message


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def value(text, name, labels=""):
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def metrics_lab(lab):
    port = labmod.free_port()
    lab.milter.stop()
    lab.milter.extra_yaml = f"metrics:\n  listen: 127.0.0.1:{port}\n"
    lab.milter.start()
    yield lab, port
    lab.milter.stop()
    lab.milter.extra_yaml = None
    lab.milter.start()


def test_metrics_count_what_happened(metrics_lab, new_alias, token):
    lab, port = metrics_lab
    live, dead, corrupt = new_alias("m-live"), new_alias("m-dead"), new_alias("m-corrupt")
    lab.redis.set_alias(live, ALICE, ttl=300)
    lab.redis.cli("SET", f"alias:{corrupt}", "not a mailbox", "EX", "300")
    before = scrape(port)

    result = lab.send([live, dead, corrupt, CAROL], make_message(token, live))
    accepted_and_delivered(lab, result, ALICE, token)
    lab.redis.stop()
    try:
        down = lab.send([live], make_message(token + "x", live))
        assert down.rcpts[live].code == 451
    finally:
        lab.redis.start()

    after = scrape(port)
    def delta(name, labels=""):
        return value(after, name, labels) - value(before, name, labels)
    assert delta("impalemail_rcpt_decisions_total", 'outcome="accepted"') == 1
    assert delta("impalemail_rcpt_decisions_total", 'outcome="unknown"') == 1
    assert delta("impalemail_rcpt_decisions_total", 'outcome="tempfail-corrupt"') == 1
    assert delta("impalemail_rcpt_decisions_total", 'outcome="tempfail-store"') == 1
    assert delta("impalemail_rcpt_decisions_total", 'outcome="passthrough"') == 1
    assert delta("impalemail_messages_rewritten_total") == 1
    assert delta("impalemail_headers_stripped_total", 'header="Received"') == 2
    assert delta("impalemail_headers_stripped_total", 'header="X-Mailer"') == 1
    assert delta("impalemail_redis_errors_total") == 1
    assert delta("impalemail_rcpt_lookup_seconds_count") == 4   # every lookup, not the pass-through
    assert value(after, "impalemail_redis_connects_total") >= 1
    assert "impalemail_active_connections" in after
