"""The dump engine against real processes, real CRIU 4.1 and real crit.

For each workload: dump with ours (--leave-running), then with ``criu dump``;
every image of ours decodes with ``crit decode``; ``crit x DIR ps|fds|mems``
prints the same on both image sets. Plus: failure leaves the tree running and
untraced; a dump without --leave-running kills the tree; ``criu restore``
continues a counter from our images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from capture.dump import DumpResult, dump
from capture.errors import CheckpointError, PlatformError
from capture.images import read_image
from capture.platform.linux import LinuxPlatform
from tests.support.tools import BUSYBOX, crit, criu, require

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

MT_PY = r"""
import threading, time, sys
blob = bytearray(4 << 20)
for i in range(0, len(blob), 4096):
    blob[i] = i & 0xFF
def worker():
    while True:
        time.sleep(0.02)
for _ in range(3):
    threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def start(spawn: list[subprocess.Popen[bytes]], argv: Sequence[str], wait_line: bool = False) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if wait_line else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    spawn.append(p)
    if wait_line:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"ready"
    else:
        time.sleep(0.3)
    return p


def entries(path: Path) -> list[Any]:
    """Decoded entries of one image (generated protobuf classes are untyped)."""
    return list(read_image(path).entries)


def tree_pids(root: int) -> list[int]:
    out = [root]
    i = 0
    while i < len(out):
        for t in os.listdir(f"/proc/{out[i]}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{out[i]}/task/{t}/children").read_text().split()]
            except FileNotFoundError:
                pass
        i += 1
    return out


def kill_tree(root: int) -> None:
    try:
        os.killpg(root, 9)
    except ProcessLookupError:
        pass


def wait_gone(pids: Sequence[int], timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} still exists"


def assert_running_untraced(pids: Sequence[int]) -> None:
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        assert "TracerPid:\t0\n" in status, status
        state = status.split("State:\t", 1)[1][0]
        assert state in "RSZ", f"pid {pid} in state {state}"  # never left stopped (t/T)


def crit_decodes_all(d: Path) -> None:
    for img in sorted(d.glob("*.img")):
        if img.name.startswith("pages-"):
            continue
        out = json.loads(crit(d, "decode", "-i", str(img)))
        assert out["entries"] is not None, img.name


def compare_with_criu(ours: Path, theirs: Path) -> None:
    for what in ("ps", "fds", "mems"):
        a = crit(ours, "x", str(ours), what)
        b = crit(theirs, "x", str(theirs), what)
        assert a.strip(), f"crit x {what} printed nothing"
        assert a == b, f"crit x {what} differs:\n--- ours\n{a}\n--- criu\n{b}"


def ours_then_criu(root: int, tmp_path: Path, tree: bool = True) -> tuple[Path, Path, DumpResult]:
    require("criu")
    require("crit")
    ours, theirs = tmp_path / "ours", tmp_path / "criu"
    res = dump(root, ours, leave_running=True, tree=tree)
    assert_running_untraced(res.pids)
    theirs.mkdir()
    criu("dump", "-t", str(root), "-D", str(theirs), "--leave-running", "-o", "dump.log")
    return ours, theirs, res


def test_busybox_sleep_matches_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [BUSYBOX, "sleep", "1000"])
    ours, theirs, res = ours_then_criu(p.pid, tmp_path)
    assert res.pids == (p.pid,) and res.threads == 1 and res.pages > 0 and not res.killed
    crit_decodes_all(ours)
    compare_with_criu(ours, theirs)
    # field-level agreement on what both dumpers must see the same way
    for name in ("pstree.img", f"mm-{p.pid}.img", f"fs-{p.pid}.img", f"ids-{p.pid}.img"):
        a, b = read_image(ours / name), read_image(theirs / name)
        assert a.entries[0].ListFields() == b.entries[0].ListFields(), name
    core_a, core_b = entries(ours / f"core-{p.pid}.img")[0], entries(theirs / f"core-{p.pid}.img")[0]
    assert core_a.tc.rlimits == core_b.tc.rlimits
    assert list(core_a.tc.sigactions) == list(core_b.tc.sigactions)
    assert core_a.thread_core.creds == core_b.thread_core.creds
    assert core_a.thread_core.rseq_entry == core_b.thread_core.rseq_entry
    assert core_a.thread_info.clear_tid_addr == core_b.thread_info.clear_tid_addr
    assert core_a.thread_info.gpregs.fs_base == core_b.thread_info.gpregs.fs_base
    assert core_a.thread_info.fpregs.xsave.xstate_bv == core_b.thread_info.fpregs.xsave.xstate_bv
    assert list(core_a.thread_info.fpregs.xsave.ymmh_space) == list(core_b.thread_info.fpregs.xsave.ymmh_space)
    xa, xb = core_a.thread_info.fpregs.xsave, core_b.thread_info.fpregs.xsave
    assert [f.name for f, _ in xa.ListFields()] == [f.name for f, _ in xb.ListFields()]  # same components
    assert core_a.thread_info.fpregs.mxcsr == core_b.thread_info.fpregs.mxcsr
    assert list(core_a.thread_info.tls) == list(core_b.thread_info.tls)
    assert [f.name for f, _ in core_a.tc.ListFields()] == [f.name for f, _ in core_b.tc.ListFields()]
    assert [f.name for f, _ in core_a.thread_core.ListFields()] == [f.name for f, _ in core_b.thread_core.ListFields()]


def test_sh_pipeline_with_regular_file_fd(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    script = f"exec 3>>{log}; echo started >&3; {BUSYBOX} sleep 1000 | {BUSYBOX} cat"
    p = start(spawn, [BUSYBOX, "sh", "-c", script])
    pids = tree_pids(p.pid)
    assert len(pids) == 3
    ours, theirs, res = ours_then_criu(p.pid, tmp_path)
    assert sorted(res.pids) == sorted(pids)
    crit_decodes_all(ours)
    compare_with_criu(ours, theirs)
    files = entries(ours / "files.img")
    reg = [f.reg for f in files if f.HasField("reg") and f.reg.name == str(log)]
    assert reg and reg[0].pos == len("started\n") and reg[0].flags & 0o2000  # O_APPEND
    pipes = [f.pipe for f in files if f.HasField("pipe")]
    assert len({pp.pipe_id for pp in pipes}) == 1 and sorted(pp.flags & 3 for pp in pipes) == [0, 1]
    kill_tree(p.pid)


def test_multithreaded_python(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [sys.executable, "-c", MT_PY], wait_line=True)
    ours, theirs, res = ours_then_criu(p.pid, tmp_path)
    assert res.threads == 4
    assert len(entries(ours / "pstree.img")[0].threads) == 4
    assert len(list(ours.glob("core-*.img"))) == 4
    crit_decodes_all(ours)
    compare_with_criu(ours, theirs)
    assert res.pages >= 1024  # the 4 MiB blob


def test_pipe_data_is_recorded(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    code = "import os,sys,time\nr,w=os.pipe()\nos.write(w,b'in the pipe')\nprint('ready',flush=True)\ntime.sleep(100)"
    p = start(spawn, [sys.executable, "-c", code], wait_line=True)
    res = dump(p.pid, tmp_path / "d", leave_running=True)
    img = read_image(tmp_path / "d" / "pipes-data.img")
    ents: list[Any] = list(img.entries)
    full = [(e, x) for e, x in zip(ents, img.extra) if e.bytes]
    assert len(full) == 1 and len(img.entries) == 2  # the buffered pipe and the (drained) stdout pipe
    assert full[0][0].bytes == len(b"in the pipe") and full[0][1] == b"in the pipe"
    assert json.loads(crit(tmp_path / "d", "decode", "-i", str(tmp_path / "d" / "pipes-data.img")))["entries"]
    assert_running_untraced(res.pids)


class FailingPlatform(LinuxPlatform):
    """Fails in the middle of reading memory (after every thread was stopped)."""

    def read_memory_into(self, pid: int, iov: Sequence[tuple[int, int]], buf: memoryview) -> int:
        raise PlatformError("injected failure while reading memory")


def counter_script(path: Path) -> str:
    return f"i=0; while :; do i=$((i+1)); echo $i > {path}.tmp; mv {path}.tmp {path}; {BUSYBOX} sleep 0.1; done"


def read_counter(path: Path) -> int:
    for _ in range(50):
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"no counter in {path}")


def test_failure_leaves_tree_running(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    counter = tmp_path / "count"
    p = start(spawn, [BUSYBOX, "sh", "-c", counter_script(counter)])
    time.sleep(0.3)
    out = tmp_path / "images"
    with pytest.raises(CheckpointError, match="injected failure") as err:
        dump(p.pid, out, tree=True, platform=FailingPlatform())
    assert "released and running" in str(err.value)
    assert_running_untraced([p.pid])
    before = read_counter(counter)
    time.sleep(0.5)
    assert read_counter(counter) > before
    assert not out.exists()  # nothing half-written left behind (the directory was ours)
    out.mkdir()
    with pytest.raises(CheckpointError, match="injected failure"):
        dump(p.pid, out, tree=True, platform=FailingPlatform())
    assert list(out.iterdir()) == []  # an existing directory stays, empty
    kill_tree(p.pid)


def test_dump_without_leave_running_kills(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [BUSYBOX, "sh", "-c", f"{BUSYBOX} sleep 1000 | {BUSYBOX} cat"])
    pids = tree_pids(p.pid)
    res = dump(p.pid, tmp_path / "d", tree=True)
    assert res.killed and sorted(res.pids) == sorted(pids)
    wait_gone(pids)
    crit_decodes_all(tmp_path / "d")


def test_dump_kills_multithreaded_process(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [sys.executable, "-c", MT_PY], wait_line=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "runtime_shim.cli", "checkpoint", "--pid", str(p.pid), "-D", str(tmp_path / "d")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert p.wait(timeout=10) == -9
    assert len(list((tmp_path / "d").glob("core-*.img"))) == 4


def test_cli_checkpoint_json_and_bad_input(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [BUSYBOX, "sleep", "1000"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "runtime_shim.cli", "checkpoint", "--pid", str(p.pid), "-D", str(tmp_path / "d")]
    res = subprocess.run([*cmd, "--leave-running", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["pids"] == [p.pid] and summary["killed"] is False and "inventory.img" in summary["images"]
    assert_running_untraced([p.pid])
    bad = subprocess.run([*cmd[:4], "--pid", "999999999", "-D", str(tmp_path / "x")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "no such process" in bad.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    wait_gone([p.pid])


def test_criu_restores_our_dump(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require("criu")
    counter = tmp_path / "count"
    p = start(spawn, [BUSYBOX, "sh", "-c", counter_script(counter)])
    time.sleep(0.5)
    res = dump(p.pid, tmp_path / "d", tree=True)
    last = read_counter(counter)
    assert last >= 3
    wait_gone(res.pids)
    try:
        r = criu("restore", "-D", str(tmp_path / "d"), "-d", "-o", "restore.log", check=False)
        assert r.returncode == 0, (tmp_path / "d" / "restore.log").read_text()[-3000:]
        time.sleep(0.6)
        now = read_counter(counter)
        assert now > last and now < last + 20, (last, now)  # went on from where it stopped
    finally:
        kill_tree(p.pid)
    wait_gone([p.pid])


PATTERN_PY = r"""
import ctypes, mmap, struct, time
n = 4096  # 16 MiB: both reader threads get a share
m = mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(n):
    if i % 7 != 3:  # leave holes: never-touched pages are not dumped
        m[i * 4096:i * 4096 + 16] = struct.pack("<QQ", 0xC0FFEE, i)
print("ready", ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize("job", [None, 1 << 20], ids=["default", "1MiB-jobs"])
def test_page_contents_and_holes(spawn: list[subprocess.Popen[bytes]], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, job: int | None) -> None:
    """Every page lands at its pagemap offset; with 1 MiB jobs and 256 KiB reads, the two readers
    share many pieces that start and end inside runs."""
    import struct

    import capture.dump

    if job is not None:
        monkeypatch.setattr(capture.dump, "JOB", job)
        monkeypatch.setattr(capture.dump, "CHUNK", 256 << 10)
        monkeypatch.setattr(capture.dump, "READERS", 2)

    p = subprocess.Popen([sys.executable, "-c", PATTERN_PY], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    spawn.append(p)
    assert p.stdout is not None
    word, addr_s = p.stdout.readline().split()
    assert word == b"ready"
    base = int(addr_s)
    d = tmp_path / "d"
    dump(p.pid, d, leave_running=True)
    pm = entries(d / f"pagemap-{p.pid}.img")
    pages = (d / f"pages-{pm[0].pages_id}.img").read_bytes()
    assert len(pages) == sum(e.nr_pages for e in pm[1:]) * 4096
    seen: set[int] = set()
    off = 0
    for e in pm[1:]:
        for k in range(e.nr_pages):
            va = e.vaddr + k * 4096
            if base <= va < base + 4096 * 4096:
                i = (va - base) // 4096
                assert struct.unpack_from("<QQ", pages, off) == (0xC0FFEE, i), hex(va)
                seen.add(i)
            off += 4096
    assert seen == {i for i in range(4096) if i % 7 != 3}


def test_zombie_in_tree_like_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [BUSYBOX, "sh", "-c", f"{BUSYBOX} true & exec {BUSYBOX} sleep 1000"])
    (zombie,) = tree_pids(p.pid)[1:]
    assert Path(f"/proc/{zombie}/stat").read_text().split(") ")[1][0] == "Z"
    ours, theirs, res = ours_then_criu(p.pid, tmp_path)
    assert zombie in res.pids
    core = entries(ours / f"core-{zombie}.img")[0]
    assert core.tc.task_state == 2 and not core.HasField("thread_info")  # TASK_DEAD
    assert core.tc == entries(theirs / f"core-{zombie}.img")[0].tc
    assert crit(ours, "x", str(ours), "ps") == crit(theirs, "x", str(theirs), "ps")
    kill_tree(p.pid)


def test_pid_namespace_uses_virtual_pids(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require("unshare")
    p = start(spawn, ["unshare", "--pid", "--fork", BUSYBOX, "setsid", BUSYBOX, "sh", "-c",
                      f"{BUSYBOX} sleep 1000 & {BUSYBOX} sleep 1000"])
    time.sleep(0.3)
    init = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
    try:
        ours, theirs, res = ours_then_criu(init, tmp_path)
        tree = entries(ours / "pstree.img")
        assert [(e.pid, e.ppid, e.pgid, e.sid) for e in tree] == [(1, 0, 1, 1), (2, 1, 1, 1)]
        assert (ours / "core-1.img").exists() and (ours / "mm-2.img").exists()
        assert [list(e.threads) for e in tree] == [[1], [2]]
        compare_with_criu(ours, theirs)
    finally:
        os.kill(init, 9)  # the namespace's init: takes the rest of the namespace with it
        wait_gone([init])
        kill_tree(p.pid)


def test_session_leader_outside_pid_namespace_is_refused(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require("unshare")
    p = start(spawn, ["unshare", "--pid", "--fork", BUSYBOX, "sleep", "1000"])
    time.sleep(0.3)
    init = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
    with pytest.raises(CheckpointError, match="outside its pid namespace"):
        dump(init, tmp_path / "d", tree=True)
    assert_running_untraced([init])
    kill_tree(p.pid)


def test_posix_timers_like_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    code = (
        "import ctypes, signal, struct, time\n"
        "signal.signal(signal.SIGALRM, lambda *a: None)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "t1, t2 = ctypes.c_void_p(), ctypes.c_void_p()\n"
        "assert libc.timer_create(1, None, ctypes.byref(t1)) == 0\n"
        "assert libc.timer_settime(t1, 0, ctypes.c_char_p(struct.pack('<qqqq', 5, 0, 100, 0)), None) == 0\n"
        "assert libc.timer_create(0, None, ctypes.byref(t2)) == 0\n"
        "print('ready', flush=True)\n"
        "time.sleep(1000)\n"
    )
    p = start(spawn, [sys.executable, "-c", code], wait_line=True)
    ours, theirs, _ = ours_then_criu(p.pid, tmp_path, tree=False)
    a = list(entries(ours / f"core-{p.pid}.img")[0].tc.timers.posix)
    b = list(entries(theirs / f"core-{p.pid}.img")[0].tc.timers.posix)
    assert [(t.it_id, t.clock_id, t.si_signo, t.it_sigev_notify, t.isec, t.insec) for t in a] == [
        (t.it_id, t.clock_id, t.si_signo, t.it_sigev_notify, t.isec, t.insec) for t in b] == [
        (0, 1, 14, 0, 5, 0), (1, 0, 14, 0, 0, 0)]
    assert 98 <= a[0].vsec <= 100 and a[1].vsec == a[1].vnsec == 0  # armed / disarmed


def test_pending_signals_like_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    code = (
        "import signal, os, threading, time\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2])\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"  # process-wide queue
        "signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)\n"  # the thread's own queue
        "print('ready', flush=True)\n"
        "time.sleep(1000)\n"
    )
    p = start(spawn, [sys.executable, "-c", code], wait_line=True)
    ours, theirs, _ = ours_then_criu(p.pid, tmp_path, tree=False)
    a, b = entries(ours / f"core-{p.pid}.img")[0], entries(theirs / f"core-{p.pid}.img")[0]
    assert len(a.tc.signals_s.signals) == 1 and len(a.thread_core.signals_p.signals) == 1
    assert a.tc.signals_s == b.tc.signals_s and a.thread_core.signals_p == b.thread_core.signals_p
    assert a.tc.blk_sigset == b.tc.blk_sigset == (1 << 9) | (1 << 11)
    # the signals are still pending in the running process (peeking consumed nothing)
    status = Path(f"/proc/{p.pid}/status").read_text()
    assert "ShdPnd:\t0000000000000800" in status and "SigPnd:\t0000000000000200" in status


def test_pty_stdio_like_criu_shell_job(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    import pty

    require("criu")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BUSYBOX, "sleep", "1000"], stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
        spawn.append(p)
        time.sleep(0.3)
        ours, theirs = tmp_path / "ours", tmp_path / "criu"
        dump(p.pid, ours, leave_running=True)
        theirs.mkdir()
        criu("dump", "-t", str(p.pid), "-D", str(theirs), "--leave-running", "--shell-job", "-o", "dump.log")
    finally:
        os.close(slave)
        os.close(master)
    crit_decodes_all(ours)
    assert crit(ours, "x", str(ours), "fds") == crit(theirs, "x", str(theirs), "fds")
    a, b = entries(ours / "tty-info.img")[0], entries(theirs / "tty-info.img")[0]
    for fld in ("type", "rdev", "dev", "sid", "pgrp", "winsize", "pty", "uid", "gid", "exclusive"):
        assert getattr(a, fld) == getattr(b, fld), fld
    assert a.termios.c_lflag == b.termios.c_lflag and a.termios.c_cflag == b.termios.c_cflag
    # c_cc: the 19 control bytes, packed the way CRIU packs them (5 meaningful words)
    assert list(a.termios.c_cc)[:4] == list(b.termios.c_cc)[:4] and len(a.termios.c_cc) == 19
    files = {f.id: f for f in entries(ours / "files.img")}
    ttys = [f.tty for f in files.values() if f.HasField("tty")]
    assert len(ttys) == 1 and files[ttys[0].regf_id].reg.name.startswith("/dev/pts/")


SECCOMP_C = r"""
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void) {
    struct sock_filter f1[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_filter f2[] = { BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_fprog p1 = { 1, f1 }, p2 = { 2, f2 };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p1)
        || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p2))
        return 1;
    for (;;) pause();
}
"""


def test_seccomp_filters_like_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    gcc = require("gcc")
    src, exe = tmp_path / "sc.c", tmp_path / "sc"
    src.write_text(SECCOMP_C)
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True)
    p = start(spawn, [str(exe)])
    assert "Seccomp:\t2" in Path(f"/proc/{p.pid}/status").read_text()
    ours, theirs, _ = ours_then_criu(p.pid, tmp_path, tree=False)
    sa, sb = entries(ours / "seccomp.img")[0], entries(theirs / "seccomp.img")[0]
    assert list(sa.seccomp_filters) == list(sb.seccomp_filters) and len(sa.seccomp_filters) == 2
    ca, cb = entries(ours / f"core-{p.pid}.img")[0], entries(theirs / f"core-{p.pid}.img")[0]
    assert (ca.thread_core.seccomp_mode, ca.thread_core.seccomp_filter) == (
        cb.thread_core.seccomp_mode, cb.thread_core.seccomp_filter) == (2, 1)
    assert ca.thread_core.creds.no_new_privs == cb.thread_core.creds.no_new_privs == 1
    crit_decodes_all(ours)


def test_runc_container_like_runc_checkpoint(busybox_rootfs: Path, tmp_path: Path) -> None:
    import uuid

    runc = require("runc")
    require("criu")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/sh", "-c", "sleep 1000 & wait"]
    cfg["root"] = {"path": str(busybox_rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(cfg))
    name = f"hetmig-dump-{uuid.uuid4().hex[:8]}"
    # the container inherits runc's stdio: /dev/null (no pipe to wait on, nothing external for CRIU)
    log = tmp_path / "runc.log"
    started = subprocess.run([runc, "--log", str(log), "run", "-d", "--pid-file", str(tmp_path / "pid"), name],
                             cwd=bundle, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=60)
    assert started.returncode == 0, log.read_text() if log.exists() else "runc run failed"
    try:
        init = int((tmp_path / "pid").read_text())
        time.sleep(0.3)
        ours, theirs = tmp_path / "ours", tmp_path / "runc"
        res = dump(init, ours, tree=True, leave_running=True)
        assert_running_untraced(res.pids)
        subprocess.run([runc, "checkpoint", "--leave-running", "--image-path", str(theirs), name], check=True,
                       capture_output=True, timeout=120)
        crit_decodes_all(ours)
        compare_with_criu(ours, theirs)
        assert [(e.pid, e.ppid) for e in entries(ours / "pstree.img")] == [(1, 0), (entries(ours / "pstree.img")[1].pid, 1)]
        assert entries(ours / "utsns-12.img") == entries(theirs / "utsns-12.img")
        assert entries(ours / "ids-1.img") == entries(theirs / "ids-1.img")  # same namespace numbering
        assert list(entries(ours / "cgroup.img")[0].sets) == list(entries(theirs / "cgroup.img")[0].sets)
        assert entries(ours / "core-1.img")[0].thread_core.cg_set == entries(theirs / "core-1.img")[0].thread_core.cg_set
        sa, sb = entries(ours / "seccomp.img")[0], entries(theirs / "seccomp.img")[0]
        assert list(sa.seccomp_filters) == list(sb.seccomp_filters)
    finally:
        subprocess.run([runc, "delete", "-f", name], capture_output=True, timeout=60)


def test_unlinked_file_is_dumped_as_ghost_like_criu(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    victim = tmp_path / "gone.txt"
    code = (
        f"import os, time\nf = open({str(victim)!r}, 'w')\nf.write('ghost data\\n' * 3)\nf.flush()\n"
        f"os.unlink({str(victim)!r})\nprint('ready', flush=True)\ntime.sleep(1000)\n"
    )
    p = start(spawn, [sys.executable, "-c", code], wait_line=True)
    ours, theirs, _ = ours_then_criu(p.pid, tmp_path, tree=False)
    crit_decodes_all(ours)
    compare_with_criu(ours, theirs)
    assert entries(ours / "remap-fpath.img") == entries(theirs / "remap-fpath.img")
    ga, gb = read_image(ours / "ghost-file-1.img"), read_image(theirs / "ghost-file-1.img")
    assert ga.extra[0] == gb.extra[0] == b"ghost data\n" * 3
    ea: Any = ga.entries[0]
    eb: Any = gb.entries[0]
    assert (ea.uid, ea.gid, ea.mode, ea.dev, ea.ino, ea.mtim) == (eb.uid, eb.gid, eb.mode, eb.dev, eb.ino, eb.mtim)
    reg = [f.reg for f in entries(ours / "files.img") if f.HasField("reg") and f.reg.name == str(victim)]
    assert len(reg) == 1 and reg[0].size == 33 and reg[0].pos == 33


def test_big_ghost_and_shared_memory_are_refused(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    victim = tmp_path / "big.bin"
    code = (
        f"import os, time\nf = open({str(victim)!r}, 'wb')\nf.write(b'x' * (2 << 20))\nf.flush()\n"
        f"os.unlink({str(victim)!r})\nprint('ready', flush=True)\ntime.sleep(1000)\n"
    )
    p = start(spawn, [sys.executable, "-c", code], wait_line=True)
    with pytest.raises(CheckpointError, match="ghost files above"):
        dump(p.pid, tmp_path / "a", leave_running=True)
    assert_running_untraced([p.pid])
    code = "import mmap, time\nm = mmap.mmap(-1, 1 << 20)\nm[0] = 1\nprint('ready', flush=True)\ntime.sleep(1000)\n"
    q = start(spawn, [sys.executable, "-c", code], wait_line=True)
    with pytest.raises(CheckpointError, match="shmem memory"):
        dump(q.pid, tmp_path / "b", leave_running=True)
    assert_running_untraced([q.pid])
    assert not (tmp_path / "a").exists()


CHURN_PY = r"""
import threading, time
def w():
    time.sleep(0.001)
print("ready", flush=True)
while True:
    ts = [threading.Thread(target=w) for _ in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
"""


def test_threads_coming_and_going(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    p = start(spawn, [sys.executable, "-c", CHURN_PY], wait_line=True)
    for i in range(8):
        res = dump(p.pid, tmp_path / f"d{i}", leave_running=True)
        assert res.threads >= 1
        assert len(entries(tmp_path / f"d{i}" / "pstree.img")[0].threads) == res.threads
        assert_running_untraced([p.pid])


MT_COUNTER_PY = r"""
import sys, threading, time
path = sys.argv[1]
ticks = [0]
def worker():
    while True:
        ticks[0] += 1
        time.sleep(0.01)
for _ in range(3):
    threading.Thread(target=worker, daemon=True).start()
i = 0
while True:
    i += 1
    with open(path + ".tmp", "w") as f:
        f.write(str(i))
    import os
    os.replace(path + ".tmp", path)
    time.sleep(0.1)
"""


def test_criu_restores_our_threaded_python_dump(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    require("criu")
    counter = tmp_path / "count"
    p = start(spawn, [sys.executable, "-c", MT_COUNTER_PY, str(counter)])
    time.sleep(0.5)
    res = dump(p.pid, tmp_path / "d")
    assert res.threads == 4
    last = read_counter(counter)
    wait_gone(res.pids)
    try:
        r = criu("restore", "-D", str(tmp_path / "d"), "-d", "-o", "restore.log", check=False)
        assert r.returncode == 0, (tmp_path / "d" / "restore.log").read_text()[-3000:]
        time.sleep(0.6)
        assert last < read_counter(counter) < last + 20
        assert len(os.listdir(f"/proc/{p.pid}/task")) == 4
    finally:
        try:
            os.kill(p.pid, 9)
        except ProcessLookupError:
            pass
    wait_gone([p.pid])
