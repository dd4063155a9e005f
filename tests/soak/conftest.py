"""Fixtures for the soak test: one private lab (Redis, impalemail-milter,
Postfix from contrib/postfix) on 127.0.0.1, built with tests/e2e/lab.py.

Differences from the tests/e2e session lab, and why:
- Redis runs with `--appendonly yes --appendfsync always`: the soak test
  stops, restarts and SIGKILLs Redis, and an alias must survive that (the lab
  Redis otherwise keeps no data, so every alias would die with a restart and
  every 550 after it would be the test's fault, not a finding).  `always`
  means a DEL is on disk before its reply, so a crash never resurrects a
  revoked alias either.
- Three more mailboxes (dave, erin, frank), so aliases spread over six owners.

Run as root:  /usr/bin/python3 -m pytest -p no:cacheprovider tests/soak -v
Environment: IMPALEMAIL_MILTER (binary), IMPALEMAIL_E2E_KEEP (keep the work
directory even on success), SOAK_MESSAGES, SOAK_SENDERS (see test_soak.py).
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import lab as labmod  # noqa: E402

EXTRA_MAILBOXES = {
    "dave@real.example": "real.example/dave/",
    "erin@other.example": "other.example/erin/",
    "frank@real.example": "real.example/frank/",
}


class SoakLab:
    def __init__(self, workdir, redis, milter, postfix):
        self.workdir = workdir
        self.redis = redis
        self.milter = milter
        self.postfix = postfix

    @property
    def owners(self):
        return sorted(self.postfix.mailboxes)


@pytest.fixture(scope="session")
def soak_workdir(request):
    if os.geteuid() != 0:
        pytest.fail("the soak test must run as root (Postfix master needs it)")
    with labmod.work_directory("impalemail-soak-", "soak", lambda: request.session.testsfailed) as path:
        yield path


@pytest.fixture(scope="session")
def soak_lab(soak_workdir):
    binary = labmod.milter_binary()
    if not binary.is_file():
        pytest.fail(f"milter binary {binary} does not exist; run scripts/build.sh "
                    "or set IMPALEMAIL_MILTER", pytrace=False)
    redis = labmod.Redis(soak_workdir / "redis",
                         extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    postfix = labmod.Postfix(soak_workdir / "postfix", extra_mailboxes=EXTRA_MAILBOXES)
    milter = labmod.Milter(binary, soak_workdir / "milter", redis.port, postfix.milter_socket)
    try:
        redis.start()
        assert redis.cli("CONFIG", "GET", "appendfsync").splitlines() == ["appendfsync", "always"]
        postfix.setup()
        milter.start()
        postfix.start()
    except BaseException as e:
        for stop in (postfix.stop, milter.stop, redis.stop):
            try:
                stop()
            except Exception:  # keep stopping the rest
                pass
        pytest.fail(f"cannot start the soak lab: {e}", pytrace=False)
    yield SoakLab(soak_workdir, redis, milter, postfix)
    for stop in (postfix.stop, milter.stop, redis.stop):
        try:
            stop()
        except Exception as e:  # keep stopping the rest
            sys.stderr.write(f"[soak] teardown: {e}\n")
