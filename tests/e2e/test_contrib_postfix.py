"""The contrib/postfix configuration on its own, with no milter attached.

These run even before the milter is built. They check the safety net the
snippet promises (alias mail the milter did not rewrite is parked in the
deferred queue: neither delivered nor bounced) and the header_checks rule
that removes "for <alias>" from Postfix's own Received header.
"""

import pytest

import lab as labmod
from lab import raw_headers

ALICE = "alice@real.example"


@pytest.fixture(scope="module")
def bare_postfix(workdir):
    """The lab Postfix with smtpd_milters emptied: as if the milter were skipped."""
    p = labmod.Postfix(workdir / "postfix-nomilter")

    def start():
        p.setup()
        p.postconf("smtpd_milters =")
        p.start()

    with labmod.running(p, "the lab Postfix", start=start):
        yield p
        p.delete_queue()


def message(token, to):
    return (f"From: <news@shop.test>\r\nTo: <{to}>\r\nSubject: {token}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{token}@shop.test>\r\n"
            f"\r\nbody {token}\r\n").encode()


def test_lab_postfix_delivers_to_maildir(bare_postfix):
    res = labmod.send(bare_postfix.port, "news@shop.test", [ALICE], message("tokselftest", ALICE))
    assert res.data is not None and res.data.code == 250, str(res)
    (got,) = bare_postfix.wait_for_delivery(ALICE, 1, match="tokselftest")
    assert bare_postfix.wait_settled(res.queue_id) is None
    received = [t for n, t in raw_headers(got) if n == "Received"]
    assert len(received) == 1 and f"for <{ALICE}>" in received[0], received


@pytest.mark.parametrize("alias", ["parked-1@alias.example.org", "Parked-2@Alias.Example.ORG"])
def test_unrewritten_alias_mail_is_parked_not_delivered(bare_postfix, alias):
    token = "tok" + alias.split("@")[0].lower()
    res = labmod.send(bare_postfix.port, "news@shop.test", [alias], message(token, alias))

    # The catch-all makes every alias a valid recipient for smtpd ...
    assert res.rcpts[alias].code == 250, str(res)
    assert res.data.code == 250, str(res)
    # ... and without the milter's rewrite it waits in the deferred queue.
    entry = bare_postfix.wait_settled(res.queue_id)
    assert entry is not None and entry["queue_name"] == "deferred", entry
    assert [r["address"] for r in entry["recipients"]] == ["unrewritten@hold.invalid"]
    assert "alias not rewritten" in entry["recipients"][0]["delay_reason"]
    for mailbox in labmod.MAILBOXES:
        assert not bare_postfix.messages(mailbox, token)
    assert f"{res.queue_id}: to=<unrewritten@hold.invalid>, orig_to=<{alias}>" in bare_postfix.log()

    # contrib's header_checks dropped "for <alias>" from Postfix's own
    # Received header (a folded, multi-line header), whatever the case.
    queued = bare_postfix.postcat(res.queue_id)
    head = queued.split("\n\n", 1)[0]
    (received,) = [t for n, t in raw_headers(head.encode()) if n == "Received"]
    assert "by mx.test (Postfix)" in received
    assert "for <" not in received and alias.lower() not in received.lower(), received
    # The rest of the header must still be a well-formed, folded header.
    for line in received.split("\n")[1:]:
        assert line[:1] in (" ", "\t"), f"broken continuation line {line!r} in {received!r}"
