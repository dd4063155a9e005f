"""The .deb built by CPack: installed on this machine with apt, it puts the
binaries, man pages, example config and systemd unit in place, creates the
service user, and the installed milter works end to end through Postfix."""

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

import lab as labmod
from test_postfix import ALICE, accepted_and_delivered, make_message

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed():
    debs = sorted((REPO / "build-deb").glob("impalemail_*.deb"))
    if not debs:
        pytest.fail("no package in build-deb/: run scripts/build.sh --deb (scripts/test.sh does)", pytrace=False)
    run = subprocess.run(["apt-get", "install", "-y", "--allow-downgrades", "--reinstall", str(debs[-1])],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert run.returncode == 0, run.stdout + run.stderr
    return debs[-1]


def test_files_are_in_place(installed):
    for path in ("/usr/sbin/impalemail-milter", "/usr/bin/impalectl"):
        assert os.access(path, os.X_OK), path
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and "0." in out.stdout, out
    for page in ("impalemail-milter", "impalemail.yaml", "impalectl"):
        out = subprocess.run(["man", "-w", page], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, f"man page {page}: {out.stderr}"
    unit = Path("/lib/systemd/system/impalemail-milter.service").read_text()
    assert "ExecStart=/usr/sbin/impalemail-milter" in unit and "User=impalemail" in unit
    assert Path("/usr/share/doc/impalemail/contrib/postfix/main.cf.snippet").is_file()


def test_service_user_and_config_permissions(installed):
    user = pwd.getpwnam("impalemail")
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    assert "postfix" in grp.getgrnam("impalemail").gr_mem
    st = os.stat("/etc/impalemail/impalemail.yaml")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == grp.getgrnam("impalemail").gr_gid
    out = subprocess.run(["/usr/sbin/impalemail-milter", "-c", "/etc/impalemail/impalemail.yaml", "--check"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr


def test_installed_milter_delivers_through_postfix(installed, lab, new_alias, token):
    """The packaged binary, started as root like the init system would, as
    its service user impalemail, in place of the build-tree milter."""
    alias = new_alias("pkg")
    lab.redis.set_alias(alias, ALICE, ttl=300)
    lab.milter.stop()
    packaged = labmod.Milter("/usr/sbin/impalemail-milter", lab.milter.workdir.parent / "packaged-milter",
                             lab.redis.port, lab.milter.socket_path)
    packaged.user = "impalemail"
    try:
        packaged.start()
        assert pwd.getpwuid(os.stat(f"/proc/{packaged.pid}").st_uid).pw_name == "impalemail"
        result = lab.send([alias], make_message(token, alias))
        accepted_and_delivered(lab, result, ALICE, token)
    finally:
        packaged.stop()
        lab.milter.start()
