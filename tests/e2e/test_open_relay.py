"""No open relay: with the contrib/postfix configuration, a client outside
mynetworks can reach the alias domain and the local mailboxes, and nothing
else; and the milter never adds a recipient that did not come from Redis."""

import smtplib

import pytest

from test_postfix import ALICE, accepted_and_delivered, assert_nowhere, make_message

OUTSIDER = "127.0.0.2"   # a loopback address outside the narrowed mynetworks


@pytest.fixture
def outsider_lab(lab):
    old = lab.postfix.param("mynetworks")
    lab.postfix.postconf("mynetworks=127.0.0.1/32")
    lab.postfix.reload()
    yield lab
    lab.postfix.postconf(f"mynetworks={old}")
    lab.postfix.reload()


def rcpt_from_outside(lab, rcpt):
    smtp = smtplib.SMTP(timeout=30, source_address=(OUTSIDER, 0))
    try:
        smtp.connect("127.0.0.1", lab.postfix.port)
        smtp.ehlo("outside.example")
        assert smtp.mail("someone@outside.example")[0] == 250
        code, text = smtp.rcpt(rcpt)
        return code, text.decode()
    finally:
        smtp.close()


def test_relaying_to_other_domains_is_refused(outsider_lab):
    for rcpt in ("victim@elsewhere.example", "x@sub.alias.example.org", "user@real.example.evil.test"):
        code, text = rcpt_from_outside(outsider_lab, rcpt)
        assert code in (454, 554) and "Relay access denied" in text, f"{rcpt}: {code} {text}"


def test_outsiders_still_reach_aliases_and_local_mailboxes(outsider_lab, new_alias, token):
    alias = new_alias("outside")
    outsider_lab.redis.set_alias(alias, ALICE, ttl=300)
    assert rcpt_from_outside(outsider_lab, alias)[0] == 250
    assert rcpt_from_outside(outsider_lab, ALICE)[0] == 250
    assert rcpt_from_outside(outsider_lab, new_alias("unknown"))[0] == 550


def test_only_recipients_from_redis_are_added(lab, new_alias, token):
    """Envelope and headers naming other addresses never become recipients."""
    alias = new_alias("onlyredis")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    msg = make_message(token, alias, cc="bob@real.example").replace(
        b"Subject:", b"Bcc: carol@other.example\r\nResent-To: bob@real.example\r\nSubject:", 1)
    result = lab.send([alias], msg, mail_from="bob@real.example")
    accepted_and_delivered(lab, result, ALICE, token)
    assert_nowhere(lab, token, ("bob@real.example", "carol@other.example"))
