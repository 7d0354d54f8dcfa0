"""Helpers shared by the restore tests: start, watch, dump and restore programs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[2]


def start(cmd: Sequence[str], *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start *cmd* as a session leader with /dev/null for stdio."""
    return subprocess.Popen(
        list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=cwd,
    )


def lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()]


def wait_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    """Wait until *path* has at least *count* complete lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = lines(path)
        if len(got) >= count:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{path} has {len(lines(path))} lines after {timeout}s, wanted {count}")


def first_field(line: str) -> int:
    return int(line.split()[0])


def wait_gone(pids: Sequence[int], timeout: float = 10.0) -> None:
    """Wait until none of *pids* exists any more (zombies reaped by their parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return
        time.sleep(0.02)
    raise AssertionError(f"pids {[p for p in pids if os.path.exists(f'/proc/{p}')]} still exist")


def image_pids(image_dir: Path) -> list[int]:
    from capture.images import read_image

    entries: list[Any] = list(read_image(image_dir / "pstree.img").entries)
    out: list[int] = []
    for e in entries:
        threads = list(e.threads)
        out.extend(threads if e.pid in threads else [e.pid])  # zombies: CRIU leaves threads garbage
    return out


def tree_digest(directory: Path) -> str:
    """A digest of every file (name, mode, content) under *directory*."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        st = p.lstat()
        h.update(str(p.relative_to(directory)).encode() + b"\0" + oct(st.st_mode).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def hetmig(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "runtime_shim.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def restore_detached(image_dir: Path, *extra: str) -> dict[str, Any]:
    res = hetmig("restore", "-D", str(image_dir), "--detach", "--json", *extra)
    if res.returncode != 0:
        raise AssertionError(f"hetmig restore failed ({res.returncode}): {res.stderr}")
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def kill_pids(pids: Sequence[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ns_pid(host_pid: int) -> list[int]:
    with open(f"/proc/{host_pid}/status") as fh:
        for line in fh:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return [host_pid]


def our_dump(pid: int, image_dir: Path, timeout: float = 60, *,
             leave_running: bool = False) -> subprocess.CompletedProcess[str]:
    """Dump *pid*'s tree with hetmig's own engine (killing it), in a child process.

    Uses ``hetmig checkpoint`` when that verb exists, else capture.dump.dump.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if (REPO / "runtime_shim" / "cli" / "checkpoint.py").exists():
        cmd = [sys.executable, "-m", "runtime_shim.cli", "checkpoint", "--pid", str(pid), "-D", str(image_dir),
               "--tree"] + (["--leave-running"] if leave_running else [])
    else:
        code = ("import sys; from capture.dump import dump; "
                "dump(int(sys.argv[1]), sys.argv[2], tree=True, leave_running=sys.argv[3] == '1')")
        cmd = [sys.executable, "-c", code, str(pid), str(image_dir), "1" if leave_running else "0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def fd_positions(image_dir: Path) -> dict[str, int]:
    """Path -> position of every regular file open in the image set."""
    from capture.images import read_image

    out: dict[str, int] = {}
    entries: list[Any] = list(read_image(image_dir / "files.img").entries)
    for fe in entries:
        if fe.HasField("reg"):
            out[fe.reg.name] = int(fe.reg.pos)
    return out
