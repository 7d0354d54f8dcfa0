"""The restore target: a restore prepared before the dump exists (live migration).

A real counter program is frozen the way ``hetmig migrate`` freezes a source;
its private anonymous memory is written into a :class:`RestoreTarget` built
from its /proc maps; the final dump leaves exactly those pages out
(PE_PARENT); the cut-over finishes the restore and the counter goes on from
where it stopped. The target is also given what a real pre-copy leaves
behind -- an area the process no longer has and a stale page the final image
does not hold -- and the cut-over must clean both up.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from capture import spans
from capture.errors import ImageError, RestoreError
from capture.images import read_image, write_image
from capture.platform import get_platform
from capture.platform import linux_inject as li
from capture.platform.base import VmaKind
from capture.restore import RestoreTarget, kill_held, release
from proto import pagemap_pb2
from runtime_shim.migration.engine import ProcessSource
from tests.programs.harness import first_field, lines, start, wait_gone, wait_lines

pytestmark = pytest.mark.integration

PAGE = 4096
STALE_AREA = (0x7E00_0000_0000, 0x7E00_0010_0000)  # mapped in the target only


def _anon_present(pid: int) -> list[tuple[int, int]]:
    plat = get_platform()
    runs: list[tuple[int, int]] = []
    for v in plat.read_maps(pid):
        if v.kind in (VmaKind.ANON, VmaKind.HEAP, VmaKind.STACK) and not v.flags & 0x01:
            runs += plat.present_runs(pid, v)
    return spans.to_runs(spans.from_runs(runs))


def _read(pid: int, runs: list[tuple[int, int]]) -> bytes:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return b"".join(os.pread(fd, n * PAGE, a) for a, n in runs)
    finally:
        os.close(fd)


def _prepared(pid: int, extra_area: bool = True) -> tuple[RestoreTarget, list[tuple[int, int]], int]:
    """A target for the frozen *pid* holding its anonymous pages; (target, sent runs, stale page)."""
    areas, busy = ProcessSource(pid).layout()[pid]
    stack = next(a for a in areas if a[2] & 0x0100)  # MAP_GROWSDOWN: [stack]
    target = RestoreTarget(pid, pidns=True, hold=True)
    target.prepare([*areas, (*STALE_AREA, 0x22)] if extra_area else areas, busy)
    sent = _anon_present(pid)
    data = _read(pid, sent)
    pieces, off = [], 0
    for a, n in sent:
        pieces.append((a, n, off))
        off += n * PAGE
    target.write_pages(pieces, data)
    # a page pre-copy wrote that the process no longer holds (zapped since): the lowest
    # stack page, never touched by a small program
    stale = stack[0]
    assert not spans.contains(spans.from_runs(sent), stale)
    target.write_pages([(stale, 1, 0)], b"\xaa" * PAGE)
    if extra_area:
        target.write_pages([(STALE_AREA[0], 1, 0)], b"\xbb" * PAGE)
    return target, sent, stale


def test_cut_over_continues_the_counter_and_cleans_up(programs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "count.txt"
    proc = start([str(programs["counter"]), str(out)])
    src = ProcessSource(proc.pid)
    target: RestoreTarget | None = None
    try:
        wait_lines(out, 3)
        src.freeze()
        target, sent, stale = _prepared(proc.pid)
        assert target.pages_written == sum(n for _, n in sent) + 2
        images = tmp_path / "images"
        images.mkdir()
        src.dump_final(images, skip_pages={proc.pid: sent})
        src._kill_held()  # the source is gone (killed and reaped by us, its tracer)
        proc.wait(timeout=10)
        last = first_field(lines(out)[-1])
        # the final image names the pre-copied pages without their data
        pm = read_image(images / f"pagemap-{proc.pid}.img")
        parent = [e for e in pm.entries_as(pagemap_pb2.pagemap_entry, start=1) if e.flags & 1]
        assert sum(e.nr_pages for e in parent) == sum(n for _, n in sent)
        result = target.cut_over(images)
    except BaseException:
        if target is not None:
            target.abort()
        proc.kill()
        raise
    try:
        pid = result.root_pid
        assert result.held and result.init_pid
        assert li.read_memory(pid, stale, PAGE) == bytes(PAGE)  # zapped: zero again
        maps = (Path(f"/proc/{pid}/maps")).read_text()
        assert f"{STALE_AREA[0]:x}-" not in maps  # the area the image lacks is gone
        release(result)
        got = wait_lines(out, len(lines(out)) + 5)
        values = [first_field(x) for x in got]
        assert values == list(range(1, len(values) + 1))  # never restarted, never skipped
        assert values[-1] >= last + 5
    finally:
        for p in (result.root_pid, result.init_pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class Frozen:
    """A counter program frozen the way ``hetmig migrate`` freezes a source."""

    proc: subprocess.Popen[bytes]
    out: Path
    src: ProcessSource
    images: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture
def frozen(programs: dict[str, Path], tmp_path: Path) -> Iterator[Frozen]:
    """Started, counting, frozen; thawed and killed at teardown whatever the test did."""
    out = tmp_path / "count.txt"
    proc = start([str(programs["counter"]), str(out)])
    src = ProcessSource(proc.pid)
    images = tmp_path / "images"
    images.mkdir()
    try:
        wait_lines(out, 2)
        src.freeze()
        yield Frozen(proc, out, src, images)
    finally:
        src.thaw()
        proc.kill()
        proc.wait(timeout=10)


def test_parent_pages_the_target_never_got_are_refused(frozen: Frozen) -> None:
    areas, busy = frozen.src.layout()[frozen.pid]
    target = RestoreTarget(frozen.pid, pidns=True, hold=True)
    target.prepare(areas, busy)
    stub = target.host_pid
    # the dump claims every anonymous page is in the target; none was written
    frozen.src.dump_final(frozen.images, skip_pages={frozen.pid: _anon_present(frozen.pid)})
    with pytest.raises(ImageError, match="never written into the restore target"):
        target.cut_over(frozen.images)
    assert target.state == "dead"
    with pytest.raises(ChildProcessError):
        os.waitpid(stub, li.WALL | os.WNOHANG)  # the prepared stub was killed and reaped


def test_a_final_image_over_the_trampoline_is_refused(frozen: Frozen) -> None:
    """An area the process mapped after the target was prepared may land where the
    restore's trampoline sits: refused (the migration rolls back), never overwritten."""
    target, sent, _ = _prepared(frozen.pid, extra_area=False)
    tramp = target._r.tramp
    frozen.src.dump_final(frozen.images, skip_pages={frozen.pid: sent})
    # what a process that mapped memory there since would look like in its image
    mm_path = frozen.images / f"mm-{frozen.pid}.img"
    mm = read_image(mm_path)
    entry: Any = mm.entries[0]
    vma = entry.vmas.add()
    vma.start, vma.end, vma.pgoff, vma.shmid = tramp, tramp + PAGE, 0, 0
    vma.prot, vma.flags, vma.status, vma.fd = 3, 0x22, (1 << 0) | (1 << 9), -1
    vmas = sorted(entry.vmas, key=lambda v: v.start)
    del entry.vmas[:]
    entry.vmas.extend(vmas)
    write_image(mm_path, mm)
    with pytest.raises(RestoreError, match="trampoline"):
        target.cut_over(frozen.images)


def test_kill_held_after_cut_over_leaves_nothing(frozen: Frozen) -> None:
    target, sent, _ = _prepared(frozen.pid, extra_area=False)
    frozen.src.dump_final(frozen.images, skip_pages={frozen.pid: sent})
    result = target.cut_over(frozen.images)
    # the source was never destroyed: it runs on, the restored copy is dropped
    frozen.src.thaw()
    kill_held(result)
    wait_gone([result.root_pid, result.init_pid])  # dead, reaped by us (tracer) and their parent
    wait_lines(frozen.out, len(lines(frozen.out)) + 2)
