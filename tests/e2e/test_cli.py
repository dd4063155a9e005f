"""The command line an admin uses: --check, --version, startup errors."""

import os
import subprocess
import tempfile
from pathlib import Path

import lab as labmod

REPO = Path(__file__).resolve().parents[2]


def run(*args, timeout=10):
    return subprocess.run([str(labmod.milter_binary()), *args], capture_output=True, text=True, timeout=timeout)


def write(tmp, text):
    path = Path(tmp) / "impalemail.yaml"
    path.write_text(text)
    return path


def test_check_accepts_the_shipped_example():
    r = run("-c", str(REPO / "contrib" / "impalemail.yaml"), "--check")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_prints_every_error_with_line_and_column():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write(tmp, "milter:\n  socket: nowhere\n  colour: blue\n"
                         "redis:\n  timeout_ms: -5\naliases:\n  domains: [\"not a domain\"]\n")
        r = run("-c", str(cfg), "--check")
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if ": error: " in l]
    assert [l.split(": error: ")[0] for l in lines] == [f"{cfg}:2:11", f"{cfg}:3:3", f"{cfg}:5:15", f"{cfg}:7:13"], r.stderr
    assert "unknown key 'colour' in 'milter'" in r.stderr


def test_unknown_config_file_is_an_error():
    r = run("-c", "/nonexistent/impalemail.yaml", "--check")
    assert r.returncode == 1
    assert "cannot open config file" in r.stderr


def test_version_and_help():
    v = run("--version")
    assert v.returncode == 0 and v.stdout.startswith("impalemail-milter ")
    h = run("--help")
    assert h.returncode == 0 and "--check" in h.stdout and "--config" in h.stdout


def test_missing_socket_directory_is_a_clear_startup_error():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write(tmp, f"milter:\n  socket: unix:{tmp}/missing/dir/milter.sock\n"
                         "aliases:\n  domains: [alias.example.org]\nlogging:\n  syslog: false\n")
        r = run("-c", str(cfg))
    assert r.returncode == 1
    assert "does not exist" in r.stderr


def test_sigterm_stops_the_milter_cleanly():
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        sock = Path(tmp) / "m.sock"
        cfg = write(tmp, f"milter:\n  socket: unix:{sock}\n"
                         "  user: nobody\naliases:\n  domains: [alias.example.org]\nlogging:\n  syslog: false\n")
        p = subprocess.Popen([str(labmod.milter_binary()), "-c", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        labmod.wait_until(lambda: labmod.unix_socket_accepts(sock), 10, "milter socket")
        p.terminate()
        out, _ = p.communicate(timeout=15)
    assert p.returncode == 0, out
    assert "stopped" in out
