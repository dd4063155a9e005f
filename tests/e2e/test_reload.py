"""SIGUSR1 reloads the configuration without dropping connections: a valid
new config serves new connections, open ones finish on theirs; an invalid
one is refused with its errors logged and the running one kept."""

import signal
import smtplib

import pytest

import lab as labmod
from test_postfix import ALICE, make_message


def session(lab):
    smtp = smtplib.SMTP("127.0.0.1", lab.postfix.port, timeout=30)
    smtp.ehlo("client.sender.test")
    assert smtp.mail("news@shop.test")[0] == 250
    return smtp


def reload_with(lab, text, expect):
    offset = lab.milter.log_offset()
    lab.milter.config.write_text(text)
    lab.milter._signal(signal.SIGUSR1)
    labmod.wait_until(lambda: expect in lab.milter.log(offset), 10, f"'{expect}' in the milter log",
                      detail=lambda: lab.milter.log(offset))
    return lab.milter.log(offset)


@pytest.fixture
def original_config(lab):
    text = lab.milter.config.read_text()
    yield text
    reload_with(lab, text, "reloaded")


def test_reload_applies_to_new_connections_only(lab, new_alias, token, original_config):
    alias = new_alias("reload")
    lab.redis.set_alias(alias, ALICE, ttl=300)             # alias:<alias>
    pid = lab.milter.pid
    before = session(lab)                                   # its milter connection pins the old config
    try:
        reload_with(lab, original_config.replace('key_prefix: "alias:"', 'key_prefix: "v2:"'), "reloaded")
        # A new connection looks up v2:<alias>, which does not exist yet.
        assert lab.send([alias], make_message("n" + token[::-1], alias)).rcpts[alias].code == 550
        lab.redis.set_alias(alias, ALICE, ttl=300, prefix="v2:")
        assert lab.send([alias], make_message("m" + token[::-1], alias)).rcpts[alias].code == 250
        # The connection opened before the reload still uses alias:<alias>.
        lab.redis.cli("DEL", f"v2:{alias}")
        code, text = before.rcpt(alias)
        assert code == 250, text
        code, _ = before.data(labmod._crlf(make_message(token, alias)))
        assert code == 250
        assert len(lab.postfix.wait_for_delivery(ALICE, 1, match=token)) == 1
    finally:
        before.close()
    assert lab.milter.pid == pid


def test_invalid_config_is_refused_and_the_running_one_kept(lab, new_alias, token, original_config):
    alias = new_alias("keep")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    pid = lab.milter.pid
    broken = original_config.replace("redis:\n", "redis:\n  colour: blue\n", 1).replace(
        "aliases:\n", "aliases:\n  domains_typo: []\n", 1)
    log = reload_with(lab, broken, "reload refused")
    assert "unknown key 'colour' in 'redis'" in log and f"{lab.milter.config}:" in log, log
    assert "unknown key 'domains_typo'" in log
    result = lab.send([alias], make_message(token, alias))
    assert result.rcpts[alias].code == 250
    assert len(lab.postfix.wait_for_delivery(ALICE, 1, match=token)) == 1
    assert lab.milter.pid == pid


def test_settings_bound_at_start_need_a_restart(lab, original_config):
    text = original_config.replace("socket: unix:", "socket: unix:/nonexistent-dir", 1)
    log = reload_with(lab, text, "reloaded")
    assert "milter.socket changed; it takes effect at the next restart" in log
    assert labmod.unix_socket_accepts(lab.milter.socket_path)
