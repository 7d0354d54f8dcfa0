"""hetmig's dump restored by hetmig's restore, and by real ``criu restore``.

The programs (counter, clock_gettime, sh pipeline, multi-threaded Python) are
dumped with hetmig's engine (``hetmig checkpoint``, killing them), restored,
and must go on counting from their last value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.programs.harness import (
    fd_positions,
    first_field,
    image_pids,
    lines,
    our_dump,
    restore_detached,
    start,
    tree_digest,
    wait_gone,
    wait_lines,
)
from tests.support.tools import BUSYBOX, criu, require
from tests.test_restore_criu import check_continues

pytestmark = pytest.mark.integration


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """Kill the whole session *proc* leads (a pipeline's children too) after a failed dump."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def dump_ours(proc: subprocess.Popen[bytes], image_dir: Path, *, leave_running: bool = False) -> list[int]:
    """Dump with hetmig; with *leave_running* the process is SIGKILLed by the test right after."""
    try:
        res = our_dump(proc.pid, image_dir, leave_running=leave_running)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        pytest.fail("hetmig dump did not finish within 60 s")
    if res.returncode != 0:
        _kill_session(proc)
        pytest.fail(f"hetmig dump failed ({res.returncode}): {res.stderr[-2000:]}")
    if leave_running:
        proc.kill()
    proc.wait(timeout=10)
    pids = image_pids(image_dir)
    wait_gone(pids)
    return pids


def test_counter_ours_to_ours(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 5)
    pids = dump_ours(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    digest = tree_digest(tmp_path / "img")
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    assert doc["root_pid"] == pids[0]
    check_continues(out, last)
    assert tree_digest(tmp_path / "img") == digest


def test_clock_ours_to_ours(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "clock.log"
    proc = start([str(programs["clock"]), str(out)])
    wait_lines(out, 5)
    dump_ours(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    got = check_continues(out, last)
    mono = [int(x.split()[1]) for x in got]
    assert mono == sorted(mono)


def test_sh_pipeline_ours_to_ours(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "pipe.log"
    proc = start([BUSYBOX, "sh", str(programs["pipeline.sh"]), str(out)])
    wait_lines(out, 6)
    pids = dump_ours(proc, tmp_path / "img")
    assert len(pids) >= 3
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.extend(doc["pids"].values())
    check_continues(out, last)


def test_threads_ours_to_ours(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "threads.log"
    proc = start([sys.executable, str(programs["threads.py"]), str(out)])
    wait_lines(out, 5)
    pids = dump_ours(proc, tmp_path / "img")
    assert len(pids) == 4
    last = [int(x) for x in lines(out)[-1].split()]
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    got = check_continues(out, last[0])
    final = [int(x) for x in got[-1].split()]
    assert all(final[i] > last[i] for i in (1, 2, 3)), (last, final)


def test_ours_dump_restored_by_real_criu(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    require("criu")
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 5)
    pids = dump_ours(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    res = criu("restore", "-D", str(tmp_path / "img"), "--restore-detached", "-o", "restore.log", check=False)
    if os.path.exists(f"/proc/{pids[0]}"):
        restored.append(pids[0])
    assert res.returncode == 0, (tmp_path / "img" / "restore.log").read_text(errors="replace")[-3000:]
    restored.append(pids[0])
    check_continues(out, last)


def test_fpu_ours_to_ours(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "fpu.log"
    proc = start([str(programs["fpu"]), str(out)])
    wait_lines(out, 4)
    dump_ours(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    check_continues(out, last, restored_count=8)


def test_unprivileged_credentials_restored(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    """A uid/gid 1000 process without capabilities comes back with exactly those credentials."""
    import shutil
    import tempfile

    setpriv = require("setpriv")
    work = Path(tempfile.mkdtemp(prefix="hetmig-uid-", dir="/tmp"))  # pytest's tmp dirs are 0700
    try:
        _unprivileged(work, tmp_path, setpriv, programs, restored)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unprivileged(work: Path, tmp_path: Path, setpriv: str, programs: dict[str, Path],
                  restored: list[int]) -> None:
    import shutil

    work.chmod(0o777)
    counter = work / "counter"
    shutil.copy2(programs["counter"], counter)
    out = work / "count.log"
    proc = start([setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups", str(counter), str(out)],
                 cwd=work)
    wait_lines(out, 3)
    dump_ours(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    check_continues(out, last)
    with open(f"/proc/{doc['root_pid']}/status") as fh:
        status = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert status["Groups"].strip() == ""
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0


def test_leave_running_dump_restored_after_the_original_is_gone(tmp_path: Path, programs: dict[str, Path],
                                                                 restored: list[int]) -> None:
    """--leave-running: the original runs on after the dump; once it is killed and its log cut back to the
    size recorded in the image (the dump instant), the restored copy continues from the dumped value."""
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    dump_ours(proc, tmp_path / "img", leave_running=True)
    size = fd_positions(tmp_path / "img")[str(out)]
    os.truncate(out, size)
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    check_continues(out, last)


def test_ours_pipeline_restored_by_real_criu(tmp_path: Path, programs: dict[str, Path],
                                             restored: list[int]) -> None:
    """A sh pipeline (a tree of >= 3 processes) dumped by ``hetmig checkpoint`` is restored by real
    ``criu restore`` and continues; every process's [vdso] pages are in our images, as CRIU dumps them."""
    require("criu")
    out = tmp_path / "pipe.log"
    proc = start([BUSYBOX, "sh", str(programs["pipeline.sh"]), str(out)])
    wait_lines(out, 6)
    pids = dump_ours(proc, tmp_path / "img")
    assert len(pids) >= 3, f"a pipeline is a tree of at least 3 processes, image has {pids}"
    last = first_field(lines(out)[-1])
    res = criu("restore", "-D", str(tmp_path / "img"), "--restore-detached", "-o", "restore.log", check=False)
    restored.extend(p for p in pids if os.path.exists(f"/proc/{p}"))
    assert res.returncode == 0, (tmp_path / "img" / "restore.log").read_text(errors="replace")[-3000:]
    restored.extend(pids)
    check_continues(out, last)
    root = pids[0]
    assert os.getpgid(root) == root and os.getsid(root) == root
