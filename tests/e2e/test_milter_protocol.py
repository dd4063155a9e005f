"""The milter protocol, driven by miltertest (an independent milter client)
against the milter built with ASan + UBSan and a real Redis.

Checks what a Postfix run cannot show directly: the negotiated protocol
steps and actions, the exact argument of each recipient deletion, and that
state never leaks from one transaction into the next. At the end, the
sanitizer must not have reported anything.
"""

import os
from pathlib import Path

import pytest

import lab as labmod

SANITIZER_MARKERS = labmod.SANITIZER_MARKERS


def sanitized_binary():
    path = os.environ.get("IMPALEMAIL_MILTER_ASAN")
    return Path(path) if path else labmod.milter_binary()


@pytest.fixture(scope="module")
def protocol_lab(request):
    with labmod.work_directory("impalemail-mt-", "milter-protocol",
                               lambda: request.session.testsfailed) as workdir:
        redis = labmod.Redis(workdir / "redis")
        redis.start()
        binary = sanitized_binary()
        if not binary.is_file():
            pytest.fail(f"milter binary {binary} does not exist; run scripts/build.sh --sanitize", pytrace=False)
        milter = labmod.Milter(binary, workdir / "milter", redis.port, workdir / "milter" / "milter.sock")
        old_asan = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = "detect_leaks=1:halt_on_error=1"
        try:
            milter.start()
            redis.cli("SET", "alias:shop@alias.example.org", "alice@real.example", "EX", "600")
            redis.cli("SET", "alias:corrupt@alias.example.org", "a@b.example c@d.example", "EX", "600")
            yield milter
        finally:
            milter.stop()
            redis.stop()
            if old_asan is None:
                os.environ.pop("ASAN_OPTIONS", None)
            else:
                os.environ["ASAN_OPTIONS"] = old_asan
        log = milter.log()
        reports = [m for m in SANITIZER_MARKERS if m in log]
        assert not reports, f"sanitizer reported {reports}:\n{labmod.tail(log, 60)}"


@pytest.mark.parametrize("script", ["negotiation", "rewrite", "refusals", "abort"])
def test_miltertest_script(protocol_lab, script):
    run = labmod.miltertest(protocol_lab, script)
    assert run.returncode == 0 and "ok" in run.stdout, (
        f"miltertest {script}.lua failed (rc={run.returncode}):\n{run.stdout}{run.stderr}\n"
        f"milter log:\n{labmod.tail(protocol_lab.log(), 20)}")


def test_log_names_corrupt_key_but_not_value(protocol_lab):
    log = protocol_lab.log()
    assert "key=alias:corrupt@alias.example.org" in log
    assert "b.example" not in log and "d.example" not in log
    assert "alice@real.example" not in log
