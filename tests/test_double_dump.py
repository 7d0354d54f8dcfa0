"""The FreeBSD platform module drives the capture engine over the FreeBSD double.

A real Linux process is dumped through ``capture.platform.freebsd`` whose
ptrace/waitpid/kill, linprocfs and procstat are the FreeBSD interface double
(tests/freebsd_double). The engine (capture.dump) takes the module as it is
(it accepts PT_ATTACH for a seize and procstat's descriptors, see
tests/freebsd_double/engine.py). The restores here are the Linux restore
engine on images made through the FreeBSD module (they restore and
continue); restore *through* the FreeBSD module is tests/test_double_restore.py.

Verified against a FreeBSD interface double, not on a FreeBSD host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, cast

import pytest
from google.protobuf.json_format import MessageToDict

from capture.dump import dump
from capture.errors import CheckpointError
from capture.images import read_image
from capture.images.explore import explore
from capture.platform.base import Feature, Platform, ThreadRegs
from capture.platform.linux import LinuxPlatform
from tests.freebsd_double.engine import FreeBSDWorld, freebsd_world
from tests.programs.build import build_programs
from tests.programs.harness import first_field, kill_pids, lines, restore_detached, wait_lines

PAGE = 4096
U64 = (1 << 64) - 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_AREA_VVAR = 1 << 12
VMA_AREA_VDSO = 1 << 3
O_LARGEFILE = 0o100000

#: Every way the FreeBSD module's image set may differ from the Linux
#: module's for the same stopped process, and why (the contract test allows
#: nothing else).
ALLOWED_DIFFERENCES: dict[str, str] = {
    "inventory.dump_criu_run_id": "a random id per dump (CRIU does the same)",
    "timens-0.img": "clock readings taken at dump time",
    "core.tc.flags": "linprocfs reports the stat flags field as 0 (linuxulator.md 7)",
    "core.thread_core.creds.cap_{inh,prm,eff,bnd,amb}": "the Linuxulator reports every capability set as 0 "
                                                        "(linuxulator.md 3)",
    "core.thread_core.rseq_entry": "absent: Linuxulator rseq always fails with ENOSYS (linuxulator.md 2); "
                                   "the double's process is a real Linux process that has one",
    "core.thread_info.clear_tid_addr": "0: the Linuxulator has no PR_GET_TID_ADDRESS (without THREAD_EXTRAS the engine records 0)",
    "core.thread_info.gpregs.orig_ax": "struct reg has no orig_rax (tools-output.md 6): always -1",
    "core.thread_info.gpregs.{ax,ip} of a restartable call": "the FreeBSD module cannot restart an "
                                                             "interrupted call (no orig_rax): it returns EINTR "
                                                             "where the Linux module re-executes the call",
    "mm.mm_start_stack": "linprocfs reports startstack as 0 (linuxulator.md 7): the module uses arg_start, "
                         "which lies in the same [stack] mapping",
    "mm.vmas[vvar]": "absent: FreeBSD keeps its time data in the shared page linprocfs labels [vdso]",
    "mm.vmas[vsyscall]": "absent: FreeBSD emulates vsyscall by trapping, no map entry (linuxulator.md 1)",
    "mm.vmas.madv": "absent: linprocfs has no smaps VmFlags",
    "mm.vmas.status heap bit": "linprocfs has no [heap] label (linuxulator.md 7)",
    "pagemap/pages": "no page presence on FreeBSD: whole private anonymous/writable/non-exec ranges are "
                     "dumped; every page the Linux dump has is there with the same bytes, every extra page "
                     "holds its file's bytes or zeros (dead stack below rsp-128, used as injection scratch by "
                     "both modules, excepted)",
    "rseq area bytes": "the kernel rewrites the registered rseq area's cpu fields whenever the thread "
                       "returns to user mode, i.e. after every injected call of the first dump",
    "files/fdinfo/fs ids": "procstat -f has no inode/device and kcmp is a Linuxulator dummy: descriptors "
                           "sharing one open file description become separate files, so file ids shift",
    "files.reg.flags O_LARGEFILE": "procstat's flag letters have no O_LARGEFILE (tools-output.md 4)",
    "files.reg.mode permission bits": "procstat gives the vnode type only",
    "files.reg.size": "procstat gives no file size",
    "fdinfo.flags close-on-exec": "procstat shows no close-on-exec flag",
}


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_programs(tmp_path_factory.mktemp("programs"))


class Counter:
    def __init__(self, binary: Path, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen([str(binary), str(out)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid


@pytest.fixture
def counter(programs: dict[str, Path], tmp_path: Path) -> Iterator[Counter]:
    c = Counter(programs["counter"], tmp_path / "count.txt")
    wait_lines(c.out, 3)
    yield c
    if c.proc.poll() is None:
        c.proc.kill()
    c.proc.wait()


@pytest.fixture
def world(tmp_path: Path, counter: Counter) -> Iterator[FreeBSDWorld]:
    w = freebsd_world(tmp_path / "freebsd", (counter.pid,))  # linprocfs lists the counter
    yield w
    w.close()


def platform_for(kind: str, world: FreeBSDWorld) -> Platform:
    return LinuxPlatform() if kind == "linux" else world.platform


class _CannotAttach:
    """The FreeBSD module without PT_ATTACH (as if security.bsd.allow_ptrace=0)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    def features(self) -> frozenset[Feature]:
        return frozenset(self.inner.features() - {Feature.ATTACH})

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def test_engine_refuses_a_module_that_cannot_stop_and_leaves_the_process_alone(
        counter: Counter, world: FreeBSDWorld, tmp_path: Path) -> None:
    assert Feature.SEIZE not in world.platform.features()  # PT_ATTACH is not a seize ...
    with pytest.raises(CheckpointError, match="lacks feature seize or attach"):
        dump(counter.pid, tmp_path / "img", leave_running=True, platform=cast(Platform, _CannotAttach(world.platform)))
    assert world.kernel.calls == [] and not list((tmp_path / "img").glob("*")) if (tmp_path / "img").exists() else True
    n = len(lines(counter.out))
    wait_lines(counter.out, n + 2)


def test_dump_through_freebsd_module_leaves_process_running(counter: Counter, world: FreeBSDWorld,
                                                            tmp_path: Path) -> None:
    res = dump(counter.pid, tmp_path / "img", leave_running=True, platform=world.platform)
    assert res.pids == (counter.pid,) and res.threads == 1 and res.pages > 0
    used = {name for name, _ in world.kernel.calls}
    # the module really went through the FreeBSD requests
    assert {"PT_ATTACH", "PT_GETLWPLIST", "PT_GETREGS", "PT_GETFSBASE", "PT_GETXSTATE_INFO", "PT_GETXSTATE",
            "PT_IO", "PT_SC_REMOTE", "PT_DETACH"} <= used
    assert ("procstat", "-f", str(counter.pid)) in world.tools.calls
    assert explore(tmp_path / "img", "ps")[1].split()[0] == str(counter.pid)
    n = len(lines(counter.out))
    wait_lines(counter.out, n + 2)  # released and running on
    assert world.kernel.procs == {}


def test_threads_dumped_through_freebsd_module_restore_and_all_continue(
        programs: dict[str, Path], world: FreeBSDWorld, tmp_path: Path) -> None:
    out = tmp_path / "threads.log"
    proc = subprocess.Popen([sys.executable, str(programs["threads.py"]), str(out)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_lines(out, 3)
        world.linprocfs.add([proc.pid])
        res = dump(proc.pid, tmp_path / "img", platform=world.platform)
        assert res.threads == 4 and len([c for c in world.kernel.calls if c[0] == "PT_GETREGS"]) >= 4
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = [int(x) for x in lines(out)[-1].split()]
    doc = restore_detached(tmp_path / "img")
    try:
        got = wait_lines(out, len(lines(out)) + 5)
        final = [int(x) for x in got[-1].split()]
        assert final[0] > last[0] and all(final[i] > last[i] for i in (1, 2, 3)), (last, final)
        assert len(os.listdir(f"/proc/{doc['root_pid']}/task")) == 4
    finally:
        kill_pids([doc["root_pid"]])


@pytest.mark.parametrize("kind", ["linux", "freebsd"])
def test_counter_dump_then_restore_continues(kind: str, counter: Counter, world: FreeBSDWorld,
                                            tmp_path: Path) -> None:
    images = tmp_path / "img"
    res = dump(counter.pid, images, platform=platform_for(kind, world))
    assert res.killed
    counter.proc.wait(timeout=10)
    last = first_field(lines(counter.out)[-1])
    doc = restore_detached(images)
    try:
        got = wait_lines(counter.out, len(lines(counter.out)) + 3)
        values = [first_field(x) for x in got]
        at = values.index(last)
        assert values[at + 1:at + 4] == [last + 1, last + 2, last + 3], "continues from its last value"
        assert os.readlink(f"/proc/{doc['root_pid']}/exe").endswith("counter")
    finally:
        kill_pids([doc["root_pid"]])


# --- the contract: same stopped process, both modules ----------------------------------

def entries(d: Path, name: str) -> list[dict[str, Any]]:
    return [MessageToDict(e, preserving_proto_field_name=True) for e in read_image(d / name).entries]


def files_by_id(d: Path) -> dict[int, dict[str, Any]]:
    return {int(e["id"]): e for e in entries(d, "files.img")}


def reg_view(f: dict[str, Any]) -> tuple[Any, ...]:
    r = f["reg"]
    return (f["type"], r["name"], int(r.get("pos", 0)), r["flags"] & ~O_LARGEFILE, r["mode"] & 0o170000)


def pages_of(d: Path, pid: int) -> dict[int, bytes]:
    pm = entries(d, f"pagemap-{pid}.img")
    data = (d / f"pages-{pm[0]['pages_id']}.img").read_bytes()
    out: dict[int, bytes] = {}
    pos = 0
    for e in pm[1:]:
        for i in range(e["nr_pages"]):
            out[int(e["vaddr"]) + i * PAGE] = data[pos:pos + PAGE]
            pos += PAGE
    return out


def own_vdso_bytes() -> bytes:
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith("[vdso]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            with open("/proc/self/mem", "rb") as mem:
                mem.seek(lo)
                return mem.read(hi - lo)
    raise AssertionError("no [vdso] in our own maps")


def test_contract_same_stopped_process_through_both_modules(counter: Counter, world: FreeBSDWorld,
                                                            tmp_path: Path) -> None:
    os.kill(counter.pid, signal.SIGSTOP)
    time.sleep(0.1)
    lx, fb = tmp_path / "linux", tmp_path / "freebsd-img"
    dump(counter.pid, lx, leave_running=True, platform=LinuxPlatform())
    dump(counter.pid, fb, leave_running=True, platform=world.platform)
    pid = counter.pid
    assert sorted(os.listdir(lx)) == sorted(os.listdir(fb)), "the same image files"

    # crit-x-style views: processes and descriptors identical
    assert explore(lx, "ps") == explore(fb, "ps")
    assert explore(lx, "fds") == explore(fb, "fds")
    for name in ("pstree.img", "seccomp.img", f"ids-{pid}.img"):
        assert entries(lx, name) == entries(fb, name), name
    inv_l, inv_f = entries(lx, "inventory.img")[0], entries(fb, "inventory.img")[0]
    assert inv_l.pop("dump_criu_run_id") != inv_f.pop("dump_criu_run_id")
    assert inv_l == inv_f

    # descriptors: compared by what they point at, not by file id
    fl, ff = files_by_id(lx), files_by_id(fb)
    fdl = {int(e["fd"]): (e["type"], reg_view(fl[int(e["id"])]), e["flags"]) for e in entries(lx, "fdinfo-2.img")}
    fdf = {int(e["fd"]): (e["type"], reg_view(ff[int(e["id"])]), e["flags"]) for e in entries(fb, "fdinfo-2.img")}
    assert fdf == {fd: (t, v, 0) for fd, (t, v, _) in fdl.items()}
    fsl, fsf = entries(lx, f"fs-{pid}.img")[0], entries(fb, f"fs-{pid}.img")[0]
    assert fsl["umask"] == fsf["umask"]
    for key in ("cwd_id", "root_id"):
        assert fl[int(fsl[key])]["reg"]["name"] == ff[int(fsf[key])]["reg"]["name"]

    # core: everything equal but the listed fields
    cl, cf = entries(lx, f"core-{pid}.img")[0], entries(fb, f"core-{pid}.img")[0]
    assert cf["tc"].pop("flags", 0) == 0
    cl["tc"].pop("flags", None)
    for cap in ("cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"):
        assert cf["thread_core"]["creds"].pop(cap) == [0, 0]
        cl["thread_core"]["creds"].pop(cap)
    assert "rseq_entry" not in cf["thread_core"]
    rseq = cl["thread_core"].pop("rseq_entry", None)
    assert int(cf["thread_info"].pop("clear_tid_addr")) == 0
    cl["thread_info"].pop("clear_tid_addr")
    gl, gf = cl["thread_info"]["gpregs"], cf["thread_info"]["gpregs"]
    assert int(gf.pop("orig_ax")) == U64
    gl.pop("orig_ax")
    if (gl["ax"], gl["ip"]) != (gf["ax"], gf["ip"]):  # Linux restarts the call, FreeBSD module: EINTR
        assert int(gf.pop("ax")) == (-4) & U64 and int(gf.pop("ip")) == int(gl.pop("ip")) + 2
        gl.pop("ax")
    assert cl == cf

    # mm: the listed vma and field differences only
    ml, mf = entries(lx, f"mm-{pid}.img")[0], entries(fb, f"mm-{pid}.img")[0]
    stack_l = next(v for v in ml["vmas"] if int(v["start"]) <= int(ml["mm_start_stack"]) < int(v["end"]))
    ss = int(mf.pop("mm_start_stack"))
    ml.pop("mm_start_stack")
    assert int(stack_l["start"]) <= ss < int(stack_l["end"])

    def vmas(m: dict[str, Any], files: dict[int, dict[str, Any]], linux: bool) -> list[tuple[Any, ...]]:
        out = []
        for v in m.pop("vmas"):
            if linux and v["status"] & (VMA_AREA_VVAR | VMA_AREA_VSYSCALL):
                continue
            name = files[int(v["shmid"])]["reg"]["name"] if int(v.get("shmid", 0)) else ""
            out.append((v["start"], v["end"], v["prot"], v["flags"], v["pgoff"], v["status"] & ~VMA_AREA_HEAP,
                        name, v.get("fdflags", 0)))
        return out

    vl, vf = vmas(ml, fl, True), vmas(mf, ff, False)
    assert vl == vf
    ml.pop("exe_file_id")
    mf.pop("exe_file_id")
    assert ml == mf

    # pages: no page presence on FreeBSD, the same bytes wherever both have a page
    pl, pf = pages_of(lx, pid), pages_of(fb, pid)
    rsp = int(gl["sp"])
    dead = (int(stack_l["start"]), rsp - 128)
    assert set(pl) <= set(pf)
    def masked(addr: int, data: bytes) -> bytes:
        """The registered rseq area's cpu fields are rewritten by the kernel whenever the
        thread returns to user mode (after every injected call): not process state."""
        if rseq is None:
            return data
        lo = int(rseq["rseq_abi_pointer"]) - addr
        hi = lo + int(rseq["rseq_abi_size"])
        if hi <= 0 or lo >= PAGE:
            return data
        lo, hi = max(lo, 0), min(hi, PAGE)
        return data[:lo] + bytes(hi - lo) + data[hi:]

    for addr, data in pl.items():
        if not dead[0] <= addr < dead[1]:
            assert masked(addr, pf[addr]) == masked(addr, data), f"page 0x{addr:x} in {[v for v in vl if int(v[0]) <= addr < int(v[1])]}"
    extra = sorted(set(pf) - set(pl))
    assert extra, "the FreeBSD dump has whole ranges (no page presence)"
    by_start = [(int(v[0]), int(v[1]), v) for v in vf]
    own_vdso = own_vdso_bytes()
    for addr in extra:
        if dead[0] <= addr < dead[1]:
            continue
        start, end, v = next(x for x in by_start if x[0] <= addr < x[1])
        if v[5] & VMA_AREA_VDSO:  # the kernel's vDSO image: the same in every process, ours included
            want = own_vdso[addr - start:addr - start + PAGE]
        elif v[5] & VMA_FILE_PRIVATE:
            with open(v[6], "rb") as fh:
                fh.seek(int(v[4]) + addr - start)
                want = fh.read(PAGE).ljust(PAGE, b"\0")
        else:
            want = bytes(PAGE)
        assert pf[addr] == want, f"extra page 0x{addr:x} of {v[6] or 'anonymous'}"
    os.kill(counter.pid, signal.SIGCONT)
    n = len(lines(counter.out))
    wait_lines(counter.out, n + 2)  # both dumps left it able to run on


def test_rewind_in_place_through_the_freebsd_module(counter: Counter, world: FreeBSDWorld, tmp_path: Path) -> None:
    """The restore-side calls of the FreeBSD module (PT_IO writes, PT_SETREGS, PT_SETFSBASE/
    PT_SETGSBASE, PT_SETXSTATE) put a dumped state back into the same live process: the
    counter goes on from the dumped value again. (A full restore through the FreeBSD module
    does not exist: capture.restore creates processes with clone3 set_tid and sets the mm with
    PR_SET_MM_MAP, both refused by the Linuxulator; see test_double_ptrace.)"""
    pid = counter.pid
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.1)
    images = tmp_path / "img"
    dump(pid, images, leave_running=True, platform=world.platform)
    last = first_field(lines(counter.out)[-1])
    os.kill(pid, signal.SIGCONT)
    moved = wait_lines(counter.out, len(lines(counter.out)) + 3)
    assert first_field(moved[-1]) >= last + 3
    plat = world.platform
    core: Any = read_image(images / f"core-{pid}.img").entries[0]
    gp = core.thread_info.gpregs
    mm: Any = read_image(images / f"mm-{pid}.img").entries[0]
    vdso = [(int(v.start), int(v.end)) for v in mm.vmas if v.status & VMA_AREA_VDSO]
    plat.seize(pid)
    plat.interrupt(pid)
    n = len(lines(counter.out))  # stopped: nothing more is written until release
    try:
        for addr, data in pages_of(images, pid).items():
            if not any(lo <= addr < hi for lo, hi in vdso):
                plat.write_memory(pid, addr, data)
        plat.set_regs(pid, ThreadRegs(
            r15=gp.r15, r14=gp.r14, r13=gp.r13, r12=gp.r12, rbp=gp.bp, rbx=gp.bx, r11=gp.r11, r10=gp.r10,
            r9=gp.r9, r8=gp.r8, rax=gp.ax, rcx=gp.cx, rdx=gp.dx, rsi=gp.si, rdi=gp.di, orig_rax=U64,
            rip=gp.ip, cs=gp.cs, eflags=gp.flags, rsp=gp.sp, ss=gp.ss, fs_base=gp.fs_base,
            gs_base=gp.gs_base, ds=gp.ds, es=gp.es, fs=gp.fs, gs=gp.gs))
        assert plat.get_regs(pid).rip == gp.ip and plat.get_regs(pid).fs_base == gp.fs_base
        plat.set_xsave(pid, plat.get_xsave(pid))  # PT_SETXSTATE round trip
    finally:
        plat.release(pid)
    used = {name for name, _ in world.kernel.calls}
    assert {"PT_IO", "PT_SETREGS", "PT_SETFSBASE", "PT_SETGSBASE", "PT_SETXSTATE"} <= used
    got = [first_field(x) for x in wait_lines(counter.out, n + 3)[n:]]
    assert got[:3] == [last + 1, last + 2, last + 3], "rewound to the dumped value"


def test_pipe_is_refused_by_name_and_the_tree_runs_on(programs: dict[str, Path], world: FreeBSDWorld,
                                                      tmp_path: Path) -> None:
    """Buffered pipe data cannot be read on FreeBSD without consuming it: the dump of a
    pipeline refuses, naming the call, and leaves every process running untouched."""
    out = tmp_path / "pipe.log"
    proc = subprocess.Popen(["/bin/busybox", "sh", str(programs["pipeline.sh"]), str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_lines(out, 3)
        kids = [int(x) for x in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        world.linprocfs.add([proc.pid, *kids])
        with pytest.raises(CheckpointError, match="read_pipe_data"):
            dump(proc.pid, tmp_path / "img", tree=True, leave_running=True, platform=world.platform)
        assert world.kernel.procs == {}, "everything detached"
        assert not (tmp_path / "img").exists() or not any((tmp_path / "img").iterdir())
        n = len(lines(out))
        wait_lines(out, n + 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_module_registers_match_linux_and_a_layout_mistake_is_caught(
        counter: Counter, world: FreeBSDWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The double is independent of the module: the module's registers equal Linux's own
    view (but orig_rax), and a swapped struct reg field in the module shows at once."""
    from capture.platform import freebsd as fbmod
    from capture.platform import linux_inject as li

    plat = world.platform
    plat.seize(counter.pid)
    plat.interrupt(counter.pid)
    try:
        linux = li.get_regs(counter.pid)
        mine = plat.get_regs(counter.pid)
        fields = [f for f in linux.__slots__ if f not in ("orig_rax", "rax")]
        assert [getattr(mine, f) for f in fields] == [getattr(linux, f) for f in fields]
        wrong = tuple(("r_rbx" if n == "r_rbp" else "r_rbp" if n == "r_rbx" else n, o, c)
                      for n, o, c in fbmod.REG_LAYOUT)
        monkeypatch.setattr(fbmod, "REG_LAYOUT", wrong)
        bad = plat.get_regs(counter.pid)
        assert (bad.rbp, bad.rbx) == (linux.rbx, linux.rbp) != (linux.rbp, linux.rbx)
    finally:
        plat.release(counter.pid)
