"""Dirty-page tracking on a real process: after it writes pages 3, 100 and 777
of a 1000-page region, a scan returns exactly those (both trackers)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest

from capture import dirty
from capture.errors import PlatformError
from capture.dirty import PAGE_SIZE, HashTracker, Range, TrackerKind, UffdWpTracker

TARGET = r"""
import mmap, sys, ctypes
N = 1000
m = mmap.mmap(-1, N * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(N):
    m[i * 4096] = 1
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(addr, flush=True)
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "w":
        for w in words[1:]:
            i = int(w)
            m[i * 4096 + 7] = (m[i * 4096 + 7] + 1) % 256
    print("ok", flush=True)
"""


class Target:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TARGET], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.addr = int(self.proc.stdout.readline())
        self.region = Range(self.addr, self.addr + 1000 * PAGE_SIZE)

    def write(self, *pages: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("w " + " ".join(map(str, pages)) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def page_numbers(self, runs: list[tuple[int, int]]) -> list[int]:
        return [(a - self.addr) // PAGE_SIZE for a in dirty.run_pages(runs)]

    def fds(self) -> list[str]:
        base = f"/proc/{self.proc.pid}/fd"
        out = []
        for name in os.listdir(base):
            try:
                out.append(os.readlink(f"{base}/{name}"))
            except OSError:
                pass
        return out

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.mark.parametrize("kind", [TrackerKind.UFFD_WP, TrackerKind.HASH])
def test_scan_returns_exactly_the_written_pages(target: Target, kind: TrackerKind) -> None:
    tracker: dirty.Tracker
    if kind is TrackerKind.UFFD_WP:
        tracker = UffdWpTracker(target.proc.pid, only=[target.region])
    else:
        tracker = HashTracker(target.proc.pid, only=[target.region])
    tracker.start()
    try:
        first = tracker.scan()
        assert target.page_numbers(first) == list(range(1000))
        assert tracker.scan() == []
        target.write(3, 100, 777)
        assert target.page_numbers(tracker.scan()) == [3, 100, 777]
        assert tracker.scan() == []
        target.write(0, 999, 500, 501)
        assert target.page_numbers(tracker.scan()) == [0, 500, 501, 999]
        if kind is TrackerKind.UFFD_WP:
            assert "anon_inode:[userfaultfd]" in target.fds()
    finally:
        tracker.stop()
    # the target runs on, and no userfaultfd is left in it
    assert "anon_inode:[userfaultfd]" not in target.fds()
    target.write(5)
    assert target.proc.poll() is None


def test_uffd_tracker_whole_process_reports_new_mappings(target: Target) -> None:
    tracker = UffdWpTracker(target.proc.pid)
    tracker.start()
    try:
        first = tracker.scan()
        pages = set(dirty.run_pages(first))
        assert set(dirty.run_pages([(target.addr, 1000)])) <= pages
        target.write(42)
        second = set(dirty.run_pages(tracker.scan()))
        assert target.addr + 42 * PAGE_SIZE in second
        # everything else of the region stayed clean
        region = set(dirty.run_pages([(target.addr, 1000)]))
        assert second & region == {target.addr + 42 * PAGE_SIZE}
    finally:
        tracker.stop()
    assert "anon_inode:[userfaultfd]" not in target.fds()


def test_merge_runs() -> None:
    P = PAGE_SIZE
    assert dirty.merge_runs([(3 * P, 1), (P, 2), (10 * P, 1)]) == [(P, 3), (10 * P, 1)]
    assert dirty.merge_runs([(0, 4), (P, 1)]) == [(0, 4)]
    assert dirty.merge_runs([]) == []


def test_tracker_of_missing_process_fails_clearly() -> None:
    with pytest.raises(PlatformError, match="maps"):
        dirty.writable_private_ranges(999_999_999)
    with pytest.raises(PlatformError, match="mem"):
        HashTracker(999_999_999).start()


ZAPPER = r"""
import ctypes, mmap, sys
N = 64
m = mmap.mmap(-1, N * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(N):
    m[i * 4096] = 7
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(addr, flush=True)
libc = ctypes.CDLL(None, use_errno=True)
for line in sys.stdin:
    # MADV_DONTNEED (4) on page 5, then only read it
    assert libc.madvise(ctypes.c_void_p(addr + 5 * 4096), ctypes.c_size_t(4096), 4) == 0
    _ = m[5 * 4096]
    print("ok", flush=True)
"""


def test_zapped_then_read_page_is_reported_as_zero_page() -> None:
    proc = subprocess.Popen([sys.executable, "-c", ZAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        addr = int(proc.stdout.readline())
        t = UffdWpTracker(proc.pid, only=[Range(addr, addr + 64 * PAGE_SIZE)])
        t.start()
        try:
            t.scan()
            assert t.zero_pages() == []
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ok"
            # not "written" for uffd-wp, but its content changed: zero_pages() must say so
            assert t.zero_pages() == [(addr + 5 * PAGE_SIZE, 1)]
        finally:
            t.stop()
    finally:
        proc.kill()
        proc.wait()


BIG = r"""
import ctypes, mmap, sys
N = 16384
m = mmap.mmap(-1, N * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(N):
    m[i * 4096] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
for line in sys.stdin:
    for w in line.split():
        k = int(w) * 4096 + 9
        m[k] = (m[k] + 1) % 256
    print("ok", flush=True)
"""


@pytest.mark.parametrize("kind", [TrackerKind.UFFD_WP, TrackerKind.HASH])
def test_scattered_writes_in_a_large_region(kind: TrackerKind) -> None:
    # regression: the kernel's PAGEMAP_SCAN may stop before the end with room left in
    # the vector; the tracker must continue, not report the whole range dirty
    proc = subprocess.Popen([sys.executable, "-c", BIG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        addr = int(proc.stdout.readline())
        region = [Range(addr, addr + 16384 * PAGE_SIZE)]
        t: dirty.Tracker = (UffdWpTracker(proc.pid, only=region) if kind is TrackerKind.UFFD_WP
                            else HashTracker(proc.pid, only=region))
        t.start()
        try:
            assert sum(n for _, n in t.scan()) == 16384
            written = [i * 13 for i in range(1000)] + [16383]
            proc.stdin.write(" ".join(map(str, written)) + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ok"
            got = [(a - addr) // PAGE_SIZE for a in dirty.run_pages(t.scan())]
            assert got == sorted(written)
        finally:
            t.stop()
    finally:
        proc.kill()
        proc.wait()


SPARSE = r"""
import ctypes, mmap, sys
m = mmap.mmap(-1, 100 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in (0, 7, 8, 9, 50, 99):
    m[i * 4096] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.readline()
"""


def test_present_pages_of_a_sparse_region() -> None:
    from runtime_shim.migration.engine import present_filter

    proc = subprocess.Popen([sys.executable, "-c", SPARSE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        addr = int(proc.stdout.readline())
        region = [(addr, 100)]
        t = UffdWpTracker(proc.pid, only=[Range(addr, addr + 100 * PAGE_SIZE)])
        t.start()
        try:
            assert sum(n for _, n in t.scan()) == 100  # uffd-wp: every page of the range
            fast = t.present_pages(region)
        finally:
            t.stop()
        expect = [(addr, 1), (addr + 7 * PAGE_SIZE, 3), (addr + 50 * PAGE_SIZE, 1), (addr + 99 * PAGE_SIZE, 1)]
        assert fast == expect
        assert present_filter(proc.pid, region) == expect  # the pagemap-reading fallback agrees
    finally:
        proc.kill()
        proc.wait()
