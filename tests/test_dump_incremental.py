"""capture.dump's incremental final dump: ``skip_pages`` + ``parent_images``.

On real processes: pages named in ``skip_pages`` are recorded as CRIU's
``PE_PARENT`` and never read; only the other pages reach ``pages-N.img``;
and real ``criu restore`` of the incremental image set (``parent`` symlink to
the earlier full dump) continues a counter from the value of the *final*
dump, which fails if a dirty page were left to the parent or a parent page
were mis-addressed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from capture.dump import PE_LAZY, PE_PARENT, PE_PRESENT, dump, normalize_page_set, split_parent
from capture.errors import CheckpointError
from capture.images import read_image
from capture.platform import get_platform
from tests.programs.harness import first_field, lines, start, wait_lines
from tests.support.tools import criu, require
from tests.test_restore_criu import check_continues

PAGE = 4096

TARGET = r"""
import mmap, sys
m = mmap.mmap(-1, 4 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, 4 << 20, 4096):
    m[off:off + 4096] = bytes([off // 4096 % 251 + 1]) * 4096
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(addr, flush=True)
for line in sys.stdin:
    k = int(line)
    m[k * 4096:(k + 1) * 4096] = b"\xee" * 4096
    print("ok", flush=True)
"""



def pagemap_runs(image_dir: Path, pid: int) -> tuple[list[tuple[int, int, int]], int]:
    """(vaddr, pages, flags) entries of pid's pagemap and its pages_id."""
    img: Any = read_image(image_dir / f"pagemap-{pid}.img")
    head, *entries = img.entries
    return [(e.vaddr, e.nr_pages, e.flags) for e in entries], head.pages_id


def present_data(image_dir: Path, pid: int) -> dict[int, bytes]:
    """Page address -> contents, for every page with data in the image set."""
    runs, pages_id = pagemap_runs(image_dir, pid)
    data = (image_dir / f"pages-{pages_id}.img").read_bytes()
    out: dict[int, bytes] = {}
    off = 0
    for a, n, fl in runs:
        if fl & PE_PRESENT:
            for i in range(n):
                out[a + i * PAGE] = data[off + i * PAGE:off + (i + 1) * PAGE]
            off += n * PAGE
    assert off == len(data), f"pages file has {len(data)} bytes, PE_PRESENT entries cover {off}"
    return out


class RecordingPlatform:
    """The real platform; remembers every memory range the dump reads."""

    def __init__(self) -> None:
        self.inner = get_platform()
        self.reads: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read_memory_into(self, pid: int, iov: Sequence[tuple[int, int]], buf: memoryview) -> int:
        self.reads.extend(iov)
        got: int = self.inner.read_memory_into(pid, iov, buf)
        return got


def vdso_range(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            if line.rstrip().endswith("[vdso]"):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                return lo, (hi - lo) // PAGE
    raise AssertionError(f"pid {pid} has no [vdso]")


def overlaps(ranges: Sequence[tuple[int, int]], runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    bad = []
    for a, ln in ranges:
        for s, n in runs:
            if a < s + n * PAGE and s < a + ln:
                bad.append((a, ln))
    return bad


def test_split_parent_cuts_runs() -> None:
    runs = [(0x1000, 4, PE_PRESENT | PE_LAZY), (0x10000, 2, PE_PRESENT)]
    skip = normalize_page_set([(0x2000, 1), (0x3000, 1), (0x10000, 1)], "t")
    assert skip == [(0x2000, 2), (0x10000, 1)]
    assert split_parent(runs, skip) == [
        (0x1000, 1, PE_PRESENT | PE_LAZY), (0x2000, 2, PE_PARENT), (0x4000, 1, PE_PRESENT | PE_LAZY),
        (0x10000, 1, PE_PARENT), (0x11000, 1, PE_PRESENT),
    ]
    with pytest.raises(CheckpointError, match="not page aligned"):
        normalize_page_set([(0x1001, 1)], "skip_pages[1]")


def test_skipped_pages_are_recorded_as_parent_and_never_read(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", TARGET], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        buf = int(proc.stdout.readline())
        full = dump(proc.pid, tmp_path / "a", leave_running=True)
        assert full.parent_pages == 0
        before = present_data(tmp_path / "a", proc.pid)
        proc.stdin.write(b"7\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == b"ok"
        sent = [(a, n) for a, n, fl in pagemap_runs(tmp_path / "a", proc.pid)[0] if fl & PE_PRESENT]
        dirty = buf + 7 * PAGE
        # sent minus the page the target wrote
        skip: list[tuple[int, int]] = []
        for a, n in normalize_page_set(sent, "sent"):
            if a <= dirty < a + n * PAGE:
                if dirty > a:
                    skip.append((a, (dirty - a) // PAGE))
                if dirty + PAGE < a + n * PAGE:
                    skip.append((dirty + PAGE, (a + n * PAGE - dirty - PAGE) // PAGE))
            else:
                skip.append((a, n))
        rec = RecordingPlatform()
        inc = dump(proc.pid, tmp_path / "b", leave_running=True, platform=rec,
                   skip_pages={proc.pid: skip})
        runs, _ = pagemap_runs(tmp_path / "b", proc.pid)
        parent = [(a, n) for a, n, fl in runs if fl & PE_PARENT]
        assert all(fl in (PE_PARENT, PE_PRESENT, PE_PRESENT | PE_LAZY) for _, _, fl in runs), runs
        assert inc.parent_pages == sum(n for _, n in parent) >= 1023  # the 4 MiB buffer but the dirty page
        vdso = vdso_range(proc.pid)
        assert not overlaps([r for r in rec.reads if not overlaps([r], [vdso])], skip), \
            "the dump read pages it was told to skip"
        after = present_data(tmp_path / "b", proc.pid)
        assert after[dirty] == b"\xee" * PAGE and before[dirty] != after[dirty]
        # every page with data is outside the skip set, every parent page inside it
        # [vdso] is always dumped; every other page with data is outside the skip set
        assert not overlaps([(a, PAGE) for a in after if not overlaps([(a, PAGE)], [vdso])], skip)
        assert all(a in after for a in range(vdso[0], vdso[0] + vdso[1] * PAGE, PAGE))
        assert all(any(s <= a and a + n * PAGE <= s + m * PAGE for s, m in skip) for a, n in parent)
        assert len(after) < len(before) // 4
        assert (tmp_path / "b" / "pages-1.img").stat().st_size == len(after) * PAGE
    finally:
        proc.kill()
        proc.wait()


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not stop")


def test_incremental_dump_restored_by_real_criu_from_parent(tmp_path: Path, programs: dict[str, Path],
                                                            restored: list[int]) -> None:
    require("criu")
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    pid = proc.pid
    try:
        wait_lines(out, 3)
        _stop(pid)
        dump(pid, tmp_path / "a", leave_running=True)
        os.kill(pid, signal.SIGCONT)
        wait_lines(out, len(lines(out)) + 3)
        _stop(pid)
        # dirty = pages whose contents changed since dump a (read by the test, the process stopped)
        sent = present_data(tmp_path / "a", pid)
        clean: list[tuple[int, int]] = []
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            for a, data in sorted(sent.items()):
                if os.pread(fd, PAGE, a) == data:
                    clean.append((a, 1))
        finally:
            os.close(fd)
        assert 0 < len(clean) < len(sent), "the counter wrote some pages and left others alone"
        res = dump(pid, tmp_path / "b", skip_pages={pid: clean}, parent_images="../a")
        assert res.killed and res.parent_pages > 0
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.readlink(tmp_path / "b" / "parent") == "../a"
    last = first_field(lines(out)[-1])
    r = criu("restore", "-D", str(tmp_path / "b"), "--restore-detached", "-o", "restore.log", check=False)
    if os.path.exists(f"/proc/{pid}"):
        restored.append(pid)
    assert r.returncode == 0, (tmp_path / "b" / "restore.log").read_text(errors="replace")[-3000:]
    os.kill(pid, signal.SIGCONT)  # dumped stopped, restored stopped
    check_continues(out, last)


class HeldPlatform:
    """The real platform, except that threads the test already holds stopped are not seized again."""

    def __init__(self, held: set[int]) -> None:
        self.inner = get_platform()
        self.held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def seize(self, tid: int) -> None:
        if tid not in self.held:
            self.inner.seize(tid)

    def interrupt(self, tid: int) -> None:
        if tid not in self.held:
            self.inner.interrupt(tid)


def test_incremental_dump_restored_by_hetmig_from_parent(tmp_path: Path, programs: dict[str, Path],
                                                         restored: list[int]) -> None:
    """Same chain, restored by our restore (held with ptrace by the test instead of SIGSTOP)."""
    from tests.programs.harness import restore_detached

    plat = get_platform()
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    pid = proc.pid
    try:
        wait_lines(out, 3)
        dump(pid, tmp_path / "a", leave_running=True)
        wait_lines(out, len(lines(out)) + 3)
        plat.seize(pid)
        plat.interrupt(pid)
        sent = present_data(tmp_path / "a", pid)
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            clean = [(a, 1) for a, data in sorted(sent.items()) if os.pread(fd, PAGE, a) == data]
        finally:
            os.close(fd)
        assert 0 < len(clean) < len(sent)
        res = dump(pid, tmp_path / "b", platform=HeldPlatform({pid}),  # killed after the dump
                   skip_pages={pid: clean}, parent_images=str(tmp_path / "a"))
        assert res.killed and 0 < res.parent_pages <= len(clean)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = first_field(lines(out)[-1])
    # without its parent the set is refused before anything is created
    from capture.errors import ImageError
    from capture.restore_checks import load_image_set

    (tmp_path / "b" / "parent").rename(tmp_path / "b-parent")
    with pytest.raises(ImageError, match="no parent image directory"):
        load_image_set(tmp_path / "b")
    (tmp_path / "b-parent").rename(tmp_path / "b" / "parent")
    doc = restore_detached(tmp_path / "b")
    restored.append(doc["root_pid"])
    check_continues(out, last)
