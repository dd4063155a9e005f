"""Started as root, the milter opens its socket, hands it to the MTA's group
with a safe mode, and then runs as the configured unprivileged user."""

import grp
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

import lab as labmod


def proc_ids(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return {int(x) for x in line.split()[1:]}
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_milter_runs_as_configured_user_with_a_group_only_socket(lab):
    nobody = pwd.getpwnam("nobody")
    assert proc_ids(lab.milter.pid, "Uid") == {nobody.pw_uid}
    assert proc_ids(lab.milter.pid, "Gid") == {nobody.pw_gid}
    st = os.stat(lab.milter.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == nobody.pw_uid
    assert st.st_gid == grp.getgrnam("postfix").gr_gid


def write_config(tmp, milter_lines):
    path = Path(tmp) / "impalemail.yaml"
    path.write_text(f"milter:\n  socket: unix:{tmp}/m.sock\n{milter_lines}"
                    "aliases:\n  domains: [alias.example.org]\nlogging:\n  syslog: false\n")
    return path


def test_refuses_to_keep_root_without_a_user():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(tmp, "")
        r = subprocess.run([str(labmod.milter_binary()), "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "refusing to run as root" in r.stderr
    assert not Path(tmp, "m.sock").exists()


def test_unknown_user_is_a_clear_error():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(tmp, "  user: no-such-user-here\n")
        r = subprocess.run([str(labmod.milter_binary()), "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "unknown user 'no-such-user-here'" in r.stderr


def test_socket_mode_open_to_others_is_refused_by_check():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(tmp, "  user: nobody\n  socket_mode: \"0666\"\n")
        r = subprocess.run([str(labmod.milter_binary()), "-c", str(cfg), "--check"],
                           capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"{cfg}:4:16: error: 'milter.socket_mode'" in r.stderr, r.stderr


def test_custom_socket_mode_and_group():
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        cfg = write_config(tmp, "  user: nobody\n  socket_mode: \"0600\"\n  socket_group: postdrop\n")
        p = subprocess.Popen([str(labmod.milter_binary()), "-c", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            labmod.wait_until(lambda: Path(tmp, "m.sock").exists() and
                              stat.S_IMODE(os.stat(Path(tmp, "m.sock")).st_mode) == 0o600, 10, "socket")
            st = os.stat(Path(tmp, "m.sock"))
            assert st.st_gid == grp.getgrnam("postdrop").gr_gid
        finally:
            p.terminate()
            p.communicate(timeout=15)
