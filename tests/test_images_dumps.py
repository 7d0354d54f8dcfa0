"""Real CRIU dumps (recorded once per test session) and batched real crit runs.

Shared by tests/test_images_criu.py and tests/test_image_cli.py. Scenarios:

- ``sleep``: a busybox ``sleep`` in its own session, stdio on /dev/null.
- ``pipeline``: ``busybox sh`` with fd 3 on a regular file (O_APPEND) running
  ``yes | sleep`` (the pipe is full, so pipes-data.img carries 64 KiB).
- ``threads``: a Python process with three extra threads.
- ``rich``: a Python process holding a unix socketpair with queued data, a
  bound unix datagram socket, eventfd, epoll, a deleted file (ghost file),
  a FIFO with data, a memfd, shared anonymous memory, a pipe with data,
  a signal handler and a blocked signal, a pty pair with unread input,
  inotify, signalfd and timerfd.

``criu dump`` (without --leave-running) kills each tree after dumping it; the
recorder kills whatever is left (by process group id) if anything fails.
This module has no tests of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.support.tools import BUSYBOX, CRIU_ROOT, criu, require

SCENARIOS = ("sleep", "pipeline", "threads", "rich")

_RICH = r"""
import mmap, os, select, signal, socket, sys, time
work = sys.argv[1]
a, b = socket.socketpair()
a.send(b"queued-bytes")
us = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
us.bind(os.path.join(work, "sock"))
efd = os.eventfd(7)
ep = select.epoll()
ep.register(efd, select.EPOLLIN)
g = open(os.path.join(work, "ghost"), "w+")
g.write("ghost contents\n")
g.flush()
os.unlink(g.name)
fifo = os.path.join(work, "fifo")
os.mkfifo(fifo)
fr = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
os.write(fr, b"fifo data")
m = os.memfd_create("hetmig-memfd")
os.write(m, b"memfd data")
mp = mmap.mmap(-1, 8192, flags=mmap.MAP_SHARED)
mp[:5] = b"hello"
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
r, w = os.pipe()
os.write(w, b"x" * 100)
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
mfd, sfd = os.openpty()
os.write(mfd, b"typed\n")
ino = libc.inotify_init1(0)
assert ino >= 0 and libc.inotify_add_watch(ino, work.encode(), 0x300) >= 0
sigmask = ctypes.c_uint64(1 << (signal.SIGUSR2 - 1))
assert libc.signalfd(-1, ctypes.byref(sigmask), 0) >= 0
tfd = libc.timerfd_create(1, 0)
spec = ctypes.create_string_buffer(struct.pack("llll", 5, 0, 100, 0))
assert tfd >= 0 and libc.timerfd_settime(tfd, 0, spec, None) == 0
open(os.path.join(work, "ready"), "w").close()
time.sleep(1000)
"""

_THREADS = (
    "import threading, time\n"
    "for _ in range(3):\n"
    "    threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n"
    "time.sleep(1000)\n"
)


@dataclass(frozen=True, slots=True)
class Dump:
    name: str
    dir: Path
    root_pid: int

    def image_files(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.is_file())


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _start(argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _record(name: str, base: Path) -> Dump:
    work = base / f"{name}-work"
    work.mkdir()
    images = base / name
    images.mkdir()
    if name == "sleep":
        proc = _start([BUSYBOX, "sleep", "1000"], work)
        ready: Callable[[], bool] = lambda: True  # noqa: E731
    elif name == "pipeline":
        script = (f"exec 3>>{work}/out.txt; echo hello >&3; "
                  f"{BUSYBOX} yes | {BUSYBOX} sleep 1000")
        proc = _start([BUSYBOX, "sh", "-c", script], work)
        ready = lambda: len(_children(proc.pid)) == 2  # noqa: E731
    elif name == "threads":
        proc = _start([sys.executable, "-c", _THREADS], work)
        ready = lambda: _threads(proc.pid) == 4  # noqa: E731
    else:
        proc = _start([sys.executable, "-c", _RICH, str(work)], work)
        ready = lambda: (work / "ready").exists()  # noqa: E731
    try:
        _wait_for(ready, f"{name} scenario to start")
        if name == "pipeline":
            time.sleep(0.3)  # let `yes` fill the pipe
        time.sleep(0.05)
        res = criu("dump", "-t", str(proc.pid), "-D", str(images),
                   "-o", str(base / f"{name}-dump.log"), check=False)
        if res.returncode != 0:
            log = (base / f"{name}-dump.log").read_text(errors="replace")
            raise AssertionError(f"criu dump of {name} failed:\n{log[-3000:]}")
        proc.wait(timeout=10)
        return Dump(name, images, proc.pid)
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


_dumps: dict[str, Dump] = {}
_crit_cache: dict[tuple[str, str], dict[str, str]] = {}


def get_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dump]:
    """Every scenario dumped by real criu, recorded once per session."""
    require("criu")
    if not _dumps:
        base = tmp_path_factory.mktemp("criu-dumps")
        for name in SCENARIOS:
            _dumps[name] = _record(name, base)
    return _dumps


def crit_batch(image_dir: Path, per_file: list[str], files: list[str]) -> dict[str, str]:
    """``crit <per_file...> FILE`` for each of ``files`` (names in image_dir), one chroot.

    ``per_file`` may contain ``{}`` for the file's path inside the chroot.
    Returns file name -> stdout. Results are cached per (dir, command).
    """
    require("crit")
    key = (str(image_dir), " ".join(per_file))
    cached = _crit_cache.get(key)
    if cached is not None and all(f in cached for f in files):
        return cached
    rel = Path("tmp") / f"hetmig-crit-{uuid.uuid4().hex}"
    dest = CRIU_ROOT / rel
    shutil.copytree(image_dir, dest)
    try:
        inner = "/" + str(rel)
        cmd = " ".join(f'"{a}"' if a != "{}" else '"$d/$f"' for a in per_file)
        script = f'd={inner}; for f in "$@"; do crit {cmd} || exit 1; printf "\\000"; done'
        res = subprocess.run(["chroot", str(CRIU_ROOT), "sh", "-c", script, "sh", *files],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise AssertionError(f"crit {' '.join(per_file)} failed: {res.stderr}")
        outs = res.stdout.split("\0")[:-1]
        assert len(outs) == len(files), (len(outs), len(files))
        result = dict(zip(files, outs))
        _crit_cache[key] = result
        return result
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def crit_x(image_dir: Path, what: str) -> str:
    """``crit x DIR what`` stdout."""
    require("crit")
    rel = Path("tmp") / f"hetmig-crit-{uuid.uuid4().hex}"
    dest = CRIU_ROOT / rel
    shutil.copytree(image_dir, dest)
    try:
        res = subprocess.run(["chroot", str(CRIU_ROOT), "crit", "x", "/" + str(rel), what],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"crit x {what} failed: {res.stderr}")
        return res.stdout
    finally:
        shutil.rmtree(dest, ignore_errors=True)
