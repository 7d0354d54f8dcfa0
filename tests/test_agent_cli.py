"""``hetmig agent`` and ``hetmig migrate`` command lines: outputs, exit codes, messages."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def hetmig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime_shim.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_init_prints_fingerprint_and_refuses_overwrite(tmp_path: Path) -> None:
    r = hetmig("agent", "init", "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    fp = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert (tmp_path / "s" / "key.pem").stat().st_mode & 0o777 == 0o600
    again = hetmig("agent", "init", "--state-dir", str(tmp_path / "s"))
    assert again.returncode == 2 and "an identity already exists (refusing to overwrite)" in again.stderr
    shown = hetmig("agent", "fingerprint", "--state-dir", str(tmp_path / "s"), "--json")
    assert json.loads(shown.stdout)["fingerprint"] == fp


def test_trust_validates_fingerprint_and_cert(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fa = hetmig("agent", "init", "--state-dir", str(a)).stdout.strip()
    hetmig("agent", "init", "--state-dir", str(b))
    bad = hetmig("agent", "trust", "xyz", "--state-dir", str(b))
    assert bad.returncode == 2 and "fingerprint='xyz' is not a SHA-256 fingerprint" in bad.stderr
    wrong = hetmig("agent", "trust", "ab" * 32, "--cert", str(a / "cert.pem"), "--state-dir", str(b))
    assert wrong.returncode == 2 and f"fingerprint {fa} does not match the pinned {'ab' * 32}" in wrong.stderr
    colons = ":".join(fa[i:i + 2].upper() for i in range(0, 64, 2))
    ok = hetmig("agent", "trust", colons, "--cert", str(a / "cert.pem"), "--state-dir", str(b))
    assert ok.returncode == 0 and ok.stdout.strip() == fa
    assert fa in (b / "trusted-peers").read_text()
    assert (b / "peers" / f"{fa}.pem").read_text() == (a / "cert.pem").read_text()
    assert hetmig("agent", "trust", fa, "--state-dir", str(b)).returncode == 0
    assert (b / "trusted-peers").read_text().count(fa) == 1


def test_agent_needs_listen_and_identity(tmp_path: Path) -> None:
    r = hetmig("agent", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and "--listen HOST:PORT is required" in r.stderr
    r = hetmig("agent", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and "no identity" in r.stderr and "hetmig agent init" in r.stderr
    r = hetmig("agent", "--listen", "nonsense", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and "--listen='nonsense' is not HOST:PORT" in r.stderr


def test_migrate_argument_errors(tmp_path: Path) -> None:
    r = hetmig("migrate", "--to", "127.0.0.1:1", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and "give exactly one of CONTAINER or --pid PID" in r.stderr
    r = hetmig("migrate", "c1", "--pid", "1", "--to", "127.0.0.1:1")
    assert r.returncode == 2
    r = hetmig("migrate", "--pid", "1", "--to", "127.0.0.1:1", "--precopy-rounds", "0")
    assert r.returncode == 2 and "--precopy-rounds=0 must be >= 1" in r.stderr
    r = hetmig("migrate", "--pid", "999999999", "--to", "127.0.0.1:1")
    assert r.returncode == 1 and "--pid 999999999: no such process" in r.stderr


def test_migrate_unreachable_agent_is_a_clear_failure(tmp_path: Path) -> None:
    hetmig("agent", "init", "--state-dir", str(tmp_path))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        r = hetmig("migrate", "--pid", str(target.pid), "--to", f"127.0.0.1:{port}", "--state-dir", str(tmp_path),
                   "--trust", "ab" * 32)
        assert r.returncode == 1 and f"cannot connect to 127.0.0.1:{port}" in r.stderr
        assert "Traceback" not in r.stderr
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()


def test_migrate_without_pins_refused(tmp_path: Path) -> None:
    hetmig("agent", "init", "--state-dir", str(tmp_path))
    r = hetmig("migrate", "--pid", "1", "--to", "127.0.0.1:9", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "no pinned agent fingerprints" in r.stderr


@pytest.mark.parametrize("verb", ["agent", "migrate"])
def test_help_runs(verb: str) -> None:
    r = hetmig(verb, "--help")
    assert r.returncode == 0 and "usage: hetmig " + verb in r.stdout
