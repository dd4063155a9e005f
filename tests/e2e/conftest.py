"""Fixtures for the Postfix end-to-end tests.

One lab per test session, in a fresh work directory on free ports:
Redis, impalemail-milter and a private Postfix built from contrib/postfix.
Run as root:  /usr/bin/python3 -m pytest tests/e2e -v

Environment:
  IMPALEMAIL_MILTER    milter binary (default build/milter/impalemail-milter)
  IMPALEMAIL_E2E_KEEP  keep the work directory even if every test passed
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as labmod  # noqa: E402

ALIAS_DOMAIN = labmod.ALIAS_DOMAIN


@pytest.fixture(scope="session")
def workdir(request):
    if os.geteuid() != 0:
        pytest.fail("the e2e tests must run as root (Postfix master needs it)")
    with labmod.work_directory("impalemail-e2e-", "e2e", lambda: request.session.testsfailed) as path:
        yield path


@pytest.fixture(scope="session")
def redis(workdir):
    r = labmod.Redis(workdir / "redis")
    r.start()
    yield r
    r.resume()          # in case a test left it SIGSTOPped
    r.stop()


@pytest.fixture(scope="session")
def postfix(workdir):
    p = labmod.Postfix(workdir / "postfix")
    with labmod.running(p, "the lab Postfix", start=lambda: (p.setup(), p.start())):
        yield p


@pytest.fixture(scope="session")
def milter(workdir, redis, postfix):
    m = labmod.Milter(labmod.milter_binary(), workdir / "milter", redis.port, postfix.milter_socket)
    with labmod.running(m, "the milter"):
        yield m
    # With IMPALEMAIL_MILTER pointing at the ASan/UBSan build, any report
    # the sanitizers wrote during the session fails it.
    log = m.log()
    reports = [marker for marker in labmod.SANITIZER_MARKERS if marker in log]
    if reports:
        pytest.fail(f"sanitizer reports in the milter log: {reports}\n{labmod.tail(log, 60)}", pytrace=False)


@pytest.fixture
def lab(redis, milter, postfix):
    """All three services, checked after each test.

    A test that stops a service on purpose must start it again itself; if
    the milter died behind a test's back (a crash), that test errors in
    teardown and the milter is restarted for the next ones.
    """
    yield Lab(redis, milter, postfix)
    problems = labmod.revive(redis, milter)
    parked = [q for q in postfix.queue()
              if any(r["address"].endswith("@hold.invalid") for r in q["recipients"])]
    if parked:
        problems.append(f"mail parked for hold.invalid (not rewritten): {parked}")
    if postfix.queue():
        postfix.delete_queue()
    if problems:
        pytest.fail("after the test: " + "; ".join(problems), pytrace=False)


class Lab:
    def __init__(self, redis, milter, postfix):
        self.redis = redis
        self.milter = milter
        self.postfix = postfix

    def send(self, rcpts, msg, mail_from="news@shop.test"):
        return labmod.send(self.postfix.port, mail_from, rcpts, msg)


@pytest.fixture
def new_alias(request):
    """new_alias('shop') -> 'shop-1a2b3c4d@alias.example.org', unique per call."""
    def make(label="a"):
        return f"{label}-{uuid.uuid4().hex[:8]}@{ALIAS_DOMAIN}"
    return make


@pytest.fixture
def token():
    """A unique marker to find this test's message in a shared Maildir."""
    return "tok" + uuid.uuid4().hex[:12]
