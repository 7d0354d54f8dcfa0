"""Images written by real ``criu dump`` restored by hetmig's engine.

Every test runs a real program, dumps it with CRIU 4.1 (which kills it),
restores it with ``hetmig restore`` and checks that it goes on from where it
stopped: the numbers it appends continue from the last dumped value.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.programs.harness import (
    first_field,
    hetmig,
    image_pids,
    lines,
    ns_pid,
    restore_detached,
    start,
    tree_digest,
    wait_gone,
    wait_lines,
)
from tests.support.tools import BUSYBOX, criu, require

pytestmark = pytest.mark.integration


def criu_dump(proc: subprocess.Popen[bytes], image_dir: Path) -> list[int]:
    """Dump *proc*'s tree with real CRIU (killing it); return the image's pids once they are gone."""
    require("criu")
    image_dir.mkdir(parents=True, exist_ok=True)
    res = criu("dump", "-t", str(proc.pid), "-D", str(image_dir), "-o", "dump.log", check=False)
    if res.returncode != 0:
        log = (image_dir / "dump.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"criu dump failed: {res.stderr}\n{log}")
    proc.wait(timeout=10)
    pids = image_pids(image_dir)
    wait_gone(pids)
    return pids


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def check_continues(out: Path, last: int, restored_count: int = 5) -> list[str]:
    """The file goes on with last+1, last+2 ... (never back to 1).

    *last* is the last value written before the dump; every line after it
    must count on from there.
    """
    current = lines(out)
    assert [first_field(x) for x in current].count(last) == 1, f"value {last} written twice: restarted"
    before = max(i for i, x in enumerate(current) if first_field(x) == last) + 1
    got = wait_lines(out, before + restored_count)
    new = got[before:]
    assert first_field(new[0]) == last + 1, f"restored program restarted: last dumped {last}, then {new[:3]}"
    values = [first_field(x) for x in new]
    assert values == list(range(last + 1, last + 1 + len(values)))
    return got


def test_counter_criu_dump_hetmig_restore(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 5)
    images = tmp_path / "img"
    pids = criu_dump(proc, images)
    last = first_field(lines(out)[-1])
    assert last >= 5
    digest = tree_digest(images)
    doc = restore_detached(images)
    restored.append(doc["root_pid"])
    assert doc["pids"] == {str(pids[0]): pids[0]}, "without --pidns the dumped pid is reused on the host"
    check_continues(out, last)
    # the restored process is the same program, same fds, same cwd
    assert os.readlink(f"/proc/{doc['root_pid']}/exe") == str(programs["counter"])
    assert os.readlink(f"/proc/{doc['root_pid']}/fd/3") == str(out)
    assert tree_digest(images) == digest, "restore modified the image directory"


def test_clock_gettime_program_keeps_working(tmp_path: Path, programs: dict[str, Path],
                                             restored: list[int]) -> None:
    out = tmp_path / "clock.log"
    proc = start([str(programs["clock"]), str(out)])
    wait_lines(out, 5)
    criu_dump(proc, tmp_path / "img")
    last = lines(out)[-1].split()
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    got = check_continues(out, int(last[0]))
    mono = [int(x.split()[1]) for x in got]
    assert mono == sorted(mono), "CLOCK_MONOTONIC went backwards across the restore"
    assert int(got[-1].split()[1]) > int(last[1])
    assert os.path.exists(f"/proc/{doc['root_pid']}"), "the program exited (vDSO broken?)"
    with open(f"/proc/{doc['root_pid']}/maps") as fh:
        assert "[vdso]" in fh.read()


def test_threads_python_program(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "threads.log"
    proc = start([sys.executable, str(programs["threads.py"]), str(out)])
    wait_lines(out, 5)
    pids = criu_dump(proc, tmp_path / "img")
    assert len(pids) == 4, f"expected a main thread and 3 workers, image has {pids}"
    last = [int(x) for x in lines(out)[-1].split()]
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    got = check_continues(out, last[0])
    final = [int(x) for x in got[-1].split()]
    for i in (1, 2, 3):
        assert final[i] > last[i], f"worker thread {i - 1} did not run after the restore: {last} -> {final}"
    assert sorted(int(t) for t in os.listdir(f"/proc/{doc['root_pid']}/task")) == sorted(pids)


def test_sh_pipeline(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "pipe.log"
    proc = start([BUSYBOX, "sh", str(programs["pipeline.sh"]), str(out)])
    wait_lines(out, 6)
    pids = criu_dump(proc, tmp_path / "img")
    assert len(pids) >= 3, f"a pipeline is a tree of at least 3 processes, image has {pids}"
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.extend(doc["pids"].values())
    check_continues(out, last)
    root = doc["root_pid"]
    assert os.getpgid(root) == root and os.getsid(root) == root
    for host in doc["pids"].values():
        if os.path.exists(f"/proc/{host}"):
            assert os.getsid(host) == root


def test_pidns_keeps_pids(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    pids = criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img", "--pidns")
    restored.extend([doc["root_pid"], doc["init_pid"]])
    assert ns_pid(doc["root_pid"])[-1] == pids[0], "pid inside the new namespace differs from the dumped pid"
    assert len(ns_pid(doc["root_pid"])) == 2
    assert ns_pid(doc["init_pid"])[-1] == 1
    check_continues(out, last)


def test_failed_restore_kills_everything(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    criu_dump(proc, tmp_path / "img")
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    # the pid is taken now: a second restore must fail and leave nothing
    res = hetmig("restore", "-D", str(tmp_path / "img"), "--detach")
    assert res.returncode == 1, res.stderr
    assert "already in use" in res.stderr
    marker = str(tmp_path / "img")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            assert marker not in cmd, f"process {entry} ({cmd!r}) left behind by the failed restore"


def test_restore_without_detach_waits_for_exit_status(tmp_path: Path, programs: dict[str, Path],
                                                     restored: list[int]) -> None:
    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    criu_dump(proc, tmp_path / "img")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    waiter = subprocess.Popen([sys.executable, "-m", "runtime_shim.cli", "restore", "-D", str(tmp_path / "img")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert waiter.stdout is not None
        pid = int(waiter.stdout.readline())
        restored.append(pid)
        last = first_field(lines(out)[-1])
        wait_lines(out, len(lines(out)) + 2)
        assert first_field(lines(out)[-1]) > last
        os.kill(pid, 9)
        assert waiter.wait(timeout=10) == 128 + 9
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_fpu_registers_survive(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    """ymm15 holds a pattern across the restore (xsave SSE + AVX state restored)."""
    # the program really notices a lost register: clobber ymm15 in a live copy
    probe_out = tmp_path / "probe.log"
    probe = start([str(programs["fpu"]), str(probe_out)])
    wait_lines(probe_out, 2)
    from capture.platform import linux_inject as li

    li.seize(probe.pid, li.PTRACE_O_EXITKILL)
    li.interrupt(probe.pid)
    xs = bytearray(li.get_xstate(probe.pid))
    xs[160 + 15 * 16 : 160 + 16 * 16] = b"\0" * 16  # xmm15 := 0
    li.set_xstate(probe.pid, bytes(xs))
    li.detach(probe.pid)
    assert probe.wait(timeout=5) == 4, "fpu.c did not notice a clobbered ymm15: the test would be vacuous"

    out = tmp_path / "fpu.log"
    proc = start([str(programs["fpu"]), str(out)])
    wait_lines(out, 4)
    criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    check_continues(out, last, restored_count=8)
    assert os.path.exists(f"/proc/{doc['root_pid']}")


def test_restore_with_root(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    """--root ROOTFS: every path of the image is opened inside ROOTFS and the tree is chrooted there."""
    import shutil
    import stat

    from capture.images import read_image

    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)], cwd=tmp_path)
    wait_lines(out, 3)
    criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    host_lines = len(lines(out))
    rootfs = tmp_path / "rootfs"
    entries: list[object] = list(read_image(tmp_path / "img" / "files.img").entries)
    for fe in entries:
        reg = getattr(fe, "reg")
        if not getattr(fe, "HasField")("reg"):
            continue
        src = Path(reg.name)
        dest = rootfs / reg.name.lstrip("/")
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif stat.S_ISCHR(os.stat(src).st_mode):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.mknod(dest, 0o666 | stat.S_IFCHR, os.stat(src).st_rdev)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    doc = restore_detached(tmp_path / "img", "--root", str(rootfs))
    restored.append(doc["root_pid"])
    inner = rootfs / str(out).lstrip("/")
    check_continues(inner, last)
    assert len(lines(out)) == host_lines, "the restored process wrote outside its root"
    assert os.readlink(f"/proc/{doc['root_pid']}/root") == str(rootfs)


def test_shell_job_terminal_handed_over(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    """A process whose stdio was a terminal gets the restorer's terminal (criu --shell-job style)."""
    import json
    import pty

    master, slave = pty.openpty()
    out = tmp_path / "count.log"
    try:
        proc = subprocess.Popen([str(programs["counter"]), str(out)], stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
        wait_lines(out, 3)
        images = tmp_path / "img"
        images.mkdir()
        res = criu("dump", "-t", str(proc.pid), "-D", str(images), "-o", "dump.log", "--shell-job", check=False)
        assert res.returncode == 0, res.stderr
        proc.wait(timeout=10)
        wait_gone(image_pids(images))
    finally:
        os.close(slave)
        os.close(master)
    last = first_field(lines(out)[-1])
    # no terminal on the restorer's stdio: refused, nothing started
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "runtime_shim.cli", "restore", "-D", str(images), "--detach", "--json"]
    res2 = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    assert res2.returncode == 3 and "terminal" in res2.stderr, res2.stderr
    master2, slave2 = pty.openpty()
    try:
        res3 = subprocess.run(cmd, stdin=slave2, capture_output=True, text=True, env=env)
        assert res3.returncode == 0, res3.stderr
        pid = json.loads(res3.stdout)["root_pid"]
        restored.append(pid)
        check_continues(out, last)
        tty = os.ttyname(slave2)
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == tty
    finally:
        os.close(slave2)
        os.close(master2)


def test_vdso_proxy_redirects_old_entry_points(tmp_path: Path, programs: dict[str, Path],
                                               restored: list[int]) -> None:
    """--vdso proxy (what a move to another kernel needs): the dumped vDSO stays at its address with its
    entry points jumping into this kernel's vDSO mapped elsewhere; clock_gettime keeps working."""
    from capture.images import read_image

    out = tmp_path / "clock.log"
    proc = start([str(programs["clock"]), str(out)])
    wait_lines(out, 3)
    pids = criu_dump(proc, tmp_path / "img")
    mm: object = read_image(tmp_path / "img" / f"mm-{pids[0]}.img").entries[0]
    old_vdso = next(v.start for v in getattr(mm, "vmas") if v.status & (1 << 3))
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img", "--vdso", "proxy")
    restored.append(doc["root_pid"])
    assert any("redirected" in w for w in doc["warnings"])
    check_continues(out, last, restored_count=8)
    with open(f"/proc/{doc['root_pid']}/maps") as fh:
        maps = fh.read().splitlines()
    new_vdso = next(int(m.split("-")[0], 16) for m in maps if m.endswith("[vdso]"))
    assert new_vdso != old_vdso
    assert any(m.startswith(f"{old_vdso:x}-") and " r-xp " in m for m in maps)


def test_pending_signals_requeued(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    out = tmp_path / "pending.log"
    proc = start([sys.executable, str(programs["pending.py"]), str(out)])
    got = wait_lines(out, 3)
    assert got[-1].split()[1] == "10,12"
    criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    after = check_continues(out, last)
    assert after[-1].split()[1] == "10,12", f"pending SIGUSR1/SIGUSR2 lost: {after[-1]}"
    with open(f"/proc/{doc['root_pid']}/status") as fh:
        status = fh.read()
    assert "ShdPnd:\t0000000000000200" in status and "SigPnd:\t0000000000000800" in status


def test_container_style_pid1_image_with_pidns(tmp_path: Path, programs: dict[str, Path],
                                               restored: list[int]) -> None:
    """An image whose root is pid 1 (a container's init) becomes pid 1 of a new pid namespace."""
    from capture.images import read_image, write_image

    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    images = tmp_path / "img"
    pids = criu_dump(proc, images)
    old = pids[0]
    tree = read_image(images / "pstree.img")
    entry: object = tree.entries[0]
    for name in ("pid", "pgid", "sid"):
        setattr(entry, name, 1)
    del getattr(entry, "threads")[:]
    getattr(entry, "threads").append(1)
    write_image(images / "pstree.img", tree)
    for kind in ("core", "mm", "pagemap", "fs", "ids"):
        if (images / f"{kind}-{old}.img").exists():
            (images / f"{kind}-{old}.img").rename(images / f"{kind}-1.img")
    last = first_field(lines(out)[-1])
    res = hetmig("restore", "-D", str(images), "--detach")
    assert res.returncode == 1 and "already in use" in res.stderr, res.stderr
    doc = restore_detached(images, "--pidns")
    restored.append(doc["root_pid"])
    assert doc["init_pid"] == 0, "the image's own pid 1 is the namespace init"
    assert ns_pid(doc["root_pid"])[-1] == 1
    check_continues(out, last)


def test_failure_mid_restore_kills_the_half_restored_tree(tmp_path: Path, programs: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the tree exists and memory is restored kills every process created so far."""
    from capture import restore as restore_mod
    from capture.errors import RestoreError

    out = tmp_path / "pipe.log"
    proc = start([BUSYBOX, "sh", str(programs["pipeline.sh"]), str(out)])
    wait_lines(out, 4)
    pids = criu_dump(proc, tmp_path / "img")
    digest = tree_digest(tmp_path / "img")
    seen: list[int] = []
    real = restore_mod._Restorer.restore_task

    def failing(self: "restore_mod._Restorer", pr: "restore_mod._Proc") -> None:
        real(self, pr)
        seen.extend(p.host_pid for p in self.procs.values())
        if pr.img.pid != self.iset.root_process.pid:
            raise RestoreError("injected failure for the test")

    monkeypatch.setattr(restore_mod._Restorer, "restore_task", failing)
    children_before = _children(os.getpid())
    with pytest.raises(RestoreError, match="injected failure"):
        restore_mod.restore(tmp_path / "img")
    assert set(seen) >= set(pids[:1]) and len(set(seen)) >= 3, "the failure came too early to prove anything"
    wait_gone(sorted(set(seen)))
    assert _children(os.getpid()) <= children_before, "a seed or stub was left as our child"
    assert tree_digest(tmp_path / "img") == digest


def test_zombies_restored_and_reaped_with_their_status(tmp_path: Path, programs: dict[str, Path],
                                                       restored: list[int]) -> None:
    out = tmp_path / "z.log"
    proc = start([sys.executable, str(programs["zombies.py"]), str(out)])
    wait_lines(out, 3)
    pids = criu_dump(proc, tmp_path / "img")
    assert len(pids) == 3
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.extend(doc["pids"].values())
    check_continues(out, last, restored_count=3)
    for p in pids[1:]:
        with open(f"/proc/{p}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        assert fields[0] == "Z" and int(fields[1]) == pids[0], f"pid {p} is not a zombie child of {pids[0]}"
    Path(str(out) + ".reap").touch()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(x.startswith("reaped") for x in lines(out)):
        time.sleep(0.05)
    assert "reaped 7 -10" in lines(out)


def test_rlimits_restored_and_unraisable_hard_limit_reported(tmp_path: Path, programs: dict[str, Path],
                                                              restored: list[int]) -> None:
    """Lower limits are restored exactly; a hard limit above this host's (CAP_SYS_RESOURCE is absent here)
    is clamped and reported, never silently dropped."""
    from capture.images import read_image, write_image

    prlimit = require("prlimit")
    out = tmp_path / "count.log"
    proc = start([prlimit, "--nofile=256:512", "--stack=4194304:8388608", "--", str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    pids = criu_dump(proc, tmp_path / "img")
    core_path = tmp_path / "img" / f"core-{pids[0]}.img"
    core = read_image(core_path)
    entry: object = core.entries[0]
    rl = getattr(entry, "tc").rlimits.rlimits
    assert (rl[7].cur, rl[7].max) == (256, 512)
    hard_here = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard_here != resource.RLIM_INFINITY
    rl[7].max = hard_here + 4096  # above what this host lets anybody without CAP_SYS_RESOURCE set
    write_image(core_path, core)
    last = first_field(lines(out)[-1])
    doc = restore_detached(tmp_path / "img")
    restored.append(doc["root_pid"])
    check_continues(out, last)
    limits = Path(f"/proc/{doc['root_pid']}/limits").read_text()
    nofile = next(x for x in limits.splitlines() if x.startswith("Max open files")).split()
    assert nofile[3:5] == ["256", str(hard_here)]
    stack = next(x for x in limits.splitlines() if x.startswith("Max stack size")).split()
    assert stack[3:5] == ["4194304", "8388608"]
    assert any("rlimit 7" in w and "CAP_SYS_RESOURCE" in w for w in doc["warnings"]), doc["warnings"]


def test_engine_goes_through_its_injection_ops(tmp_path: Path, programs: dict[str, Path],
                                               restored: list[int]) -> None:
    """The restore engine reaches the OS only through the InjectionOps it is given (the seam a
    Linuxulator port plugs into): a recording wrapper around linux_inject sees every primitive."""
    from typing import Any, cast

    from capture import restore as restore_mod
    from capture.platform import linux_inject as li

    calls: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            target = getattr(li, name)
            if name == "Injector" or not callable(target):
                return target

            def wrapper(*a: Any, **k: Any) -> Any:
                calls.append(name)
                return target(*a, **k)
            return wrapper

    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    res = restore_mod.restore(tmp_path / "img", ops=cast(restore_mod.InjectionOps, Recording()))
    restored.append(res.root_pid)
    check_continues(out, last)
    for needed in ("seize", "interrupt", "set_regs", "set_xstate", "write_file_ranges", "detach", "read_maps"):
        assert needed in calls, f"{needed} did not go through the ops object"


def test_hold_then_release_or_kill(tmp_path: Path, programs: dict[str, Path], restored: list[int]) -> None:
    """hold=True hands the tree back stopped (a migration lets it run only once the source is gone)."""
    from capture import restore as restore_mod

    out = tmp_path / "count.log"
    proc = start([str(programs["counter"]), str(out)])
    wait_lines(out, 3)
    criu_dump(proc, tmp_path / "img")
    last = first_field(lines(out)[-1])
    res = restore_mod.restore(tmp_path / "img", hold=True)
    restored.append(res.root_pid)
    assert res.held and {t for t, _ in res.held} == {res.root_pid}
    time.sleep(0.4)
    assert first_field(lines(out)[-1]) == last, "a held tree must not run"
    with open(f"/proc/{res.root_pid}/stat") as fh:
        assert fh.read().rsplit(")", 1)[1].split()[0] == "t"
    restore_mod.release(res)
    check_continues(out, last)
    # and the other way: held, then killed
    os.kill(res.root_pid, 9)
    wait_gone([res.root_pid])
    res2 = restore_mod.restore(tmp_path / "img", hold=True, pidns=True)
    restored.append(res2.root_pid)
    restore_mod.kill_held(res2)
    wait_gone([res2.root_pid, res2.init_pid])
