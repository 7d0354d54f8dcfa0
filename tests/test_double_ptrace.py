"""The FreeBSD ptrace double, pinned to the reference and exercised on a real process.

Every layout and number below is a literal table copied from
reference/freebsd/tools-output.md (sections 5, 5.1, 6) and linuxulator.md
(sections 5, 6) *in this file*; structs are packed and unpacked here from
those tables, never with the double's or the FreeBSD module's own constants,
so a mistake shared by the module and the double cannot pass unnoticed.
The target is a real Linux process; the truth for registers and memory is
Linux's own ptrace/procfs view of it.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from capture.platform import linux_inject as li
from capture.platform.base import USER_REGS_FIELDS
from tests.freebsd_double import kernel as kd
from tests.freebsd_double.kernel import FreeBSDError, FreeBSDKernel

# --- the reference, written out (tools-output.md 5) -------------------------------
REQUESTS = {
    "PT_CONTINUE": 7, "PT_KILL": 8, "PT_ATTACH": 10, "PT_DETACH": 11, "PT_IO": 12, "PT_LWPINFO": 13,
    "PT_GETNUMLWPS": 14, "PT_GETLWPLIST": 15, "PT_GETREGS": 33, "PT_SETREGS": 34, "PT_GETFPREGS": 35,
    "PT_SETFPREGS": 36, "PT_VM_TIMESTAMP": 40, "PT_VM_ENTRY": 41, "PT_SC_REMOTE": 44,
    "PT_GETXSTATE_INFO": 68, "PT_GETXSTATE": 69, "PT_SETXSTATE": 70, "PT_GETFSBASE": 71,
    "PT_SETFSBASE": 72, "PT_GETGSBASE": 73, "PT_SETGSBASE": 74,
}
PIOD = {"PIOD_READ_D": 1, "PIOD_WRITE_D": 2, "PIOD_READ_I": 3, "PIOD_WRITE_I": 4}
# (field, offset, size, signed) -- section 6, struct reg (176 bytes)
STRUCT_REG = [
    ("r_r15", 0, 8), ("r_r14", 8, 8), ("r_r13", 16, 8), ("r_r12", 24, 8), ("r_r11", 32, 8),
    ("r_r10", 40, 8), ("r_r9", 48, 8), ("r_r8", 56, 8), ("r_rdi", 64, 8), ("r_rsi", 72, 8),
    ("r_rbp", 80, 8), ("r_rbx", 88, 8), ("r_rdx", 96, 8), ("r_rcx", 104, 8), ("r_rax", 112, 8),
    ("r_trapno", 120, 4), ("r_fs", 124, 2), ("r_gs", 126, 2), ("r_err", 128, 4), ("r_es", 132, 2),
    ("r_ds", 134, 2), ("r_rip", 136, 8), ("r_cs", 144, 8), ("r_rflags", 152, 8), ("r_rsp", 160, 8),
    ("r_ss", 168, 8),
]
STRUCT_REG_SIZE = 176
# section 5.1
IO_DESC = [("piod_op", 0, 4), ("piod_offs", 8, 8), ("piod_addr", 16, 8), ("piod_len", 24, 8)]
IO_DESC_SIZE = 32
VM_ENTRY = [("pve_entry", 0, 4), ("pve_timestamp", 4, 4), ("pve_start", 8, 8), ("pve_end", 16, 8),
            ("pve_offset", 24, 8), ("pve_prot", 32, 4), ("pve_pathlen", 36, 4), ("pve_fileid", 40, 8),
            ("pve_fsid", 48, 4), ("pve_path", 56, 8)]
VM_ENTRY_SIZE = 64
SC_REMOTE = [("sr_retval0", 0, 8), ("sr_retval1", 8, 8), ("sr_error", 16, 4), ("pscr_syscall", 24, 4),
             ("pscr_nargs", 28, 4), ("pscr_args", 32, 8)]
SC_REMOTE_SIZE = 40
XSTATE_INFO = [("xsave_mask", 0, 8), ("xsave_len", 8, 4)]
XSTATE_INFO_SIZE = 16
# linuxulator.md 5: (name, Linux, FreeBSD) for every row that differs
ERRNO_DIFFERS = [
    ("EAGAIN", 11, 35), ("EDEADLK", 35, 11), ("ENAMETOOLONG", 36, 63), ("ENOLCK", 37, 77), ("ENOSYS", 38, 78),
    ("ENOTEMPTY", 39, 66), ("ELOOP", 40, 62), ("ENOMSG", 42, 83), ("EIDRM", 43, 82), ("EOVERFLOW", 75, 84),
    ("EILSEQ", 84, 86), ("ENOTSOCK", 88, 38), ("EDESTADDRREQ", 89, 39), ("EMSGSIZE", 90, 40),
    ("EPROTOTYPE", 91, 41), ("ENOPROTOOPT", 92, 42), ("EPROTONOSUPPORT", 93, 43), ("ESOCKTNOSUPPORT", 94, 44),
    ("EOPNOTSUPP", 95, 45), ("EAFNOSUPPORT", 97, 47), ("EADDRINUSE", 98, 48), ("EADDRNOTAVAIL", 99, 49),
    ("ENETDOWN", 100, 50), ("ENETUNREACH", 101, 51), ("ECONNABORTED", 103, 53), ("ECONNRESET", 104, 54),
    ("ENOBUFS", 105, 55), ("EISCONN", 106, 56), ("ENOTCONN", 107, 57), ("ETIMEDOUT", 110, 60),
    ("ECONNREFUSED", 111, 61), ("EHOSTUNREACH", 113, 65), ("EALREADY", 114, 37), ("EINPROGRESS", 115, 36),
    ("ESTALE", 116, 70), ("EDQUOT", 122, 69), ("ECANCELED", 125, 85), ("EOWNERDEAD", 130, 96),
    ("ENOTRECOVERABLE", 131, 95),
]
ERRNO_SAME = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
              29, 30, 31, 32, 33, 34]
# linuxulator.md 6: (Linux, FreeBSD)
SIGNALS = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 10), (8, 8), (9, 9), (10, 30), (11, 11),
           (12, 31), (13, 13), (14, 14), (15, 15), (17, 20), (18, 19), (19, 17), (20, 18), (21, 21), (22, 22),
           (23, 16), (24, 24), (25, 25), (26, 26), (27, 27), (28, 28), (29, 23), (31, 12), (32, 65), (64, 97)]
LINUX_REGS_BY_FREEBSD = {  # tools-output.md 6, the two orders side by side
    "r_r15": "r15", "r_r14": "r14", "r_r13": "r13", "r_r12": "r12", "r_r11": "r11", "r_r10": "r10",
    "r_r9": "r9", "r_r8": "r8", "r_rdi": "rdi", "r_rsi": "rsi", "r_rbp": "rbp", "r_rbx": "rbx",
    "r_rdx": "rdx", "r_rcx": "rcx", "r_rax": "rax", "r_rip": "rip", "r_cs": "cs", "r_rflags": "eflags",
    "r_rsp": "rsp", "r_ss": "ss",
}

PAGE = 4096
TARGET = r"""
import ctypes, mmap, threading, time
m = mmap.mmap(-1, 3 * 4096)
m[:] = bytes(range(256)) * 48
a = ctypes.addressof(ctypes.c_char.from_buffer(m))
libc = ctypes.CDLL(None)
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.munmap(a + 2 * 4096, 4096)
threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
print(hex(a), flush=True)
while True:
    time.sleep(0.05)
"""


def pack(table: list[tuple[str, int, int]], size: int, **values: int) -> bytearray:
    buf = bytearray(size)
    for name, off, width in table:
        v = values.get(name, 0) & ((1 << (8 * width)) - 1)
        buf[off:off + width] = v.to_bytes(width, "little")
    return buf


def unpack(table: list[tuple[str, int, int]], raw: bytes) -> dict[str, int]:
    return {name: int.from_bytes(raw[off:off + width], "little") for name, off, width in table}


def signed32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


class Target:
    def __init__(self, proc: subprocess.Popen[str], addr: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.addr = addr


@pytest.fixture
def target() -> Iterator[Target]:
    proc = subprocess.Popen([sys.executable, "-c", TARGET], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    addr = int(proc.stdout.readline(), 16)
    tasks = [int(x) for x in os.listdir(f"/proc/{proc.pid}/task")]
    yield Target(proc, addr)
    proc.kill()
    for t in tasks:  # threads still traced after a failed test are reaped by us (__WALL)
        if t != proc.pid:
            try:
                os.waitpid(t, 0x40000000)
            except ChildProcessError:
                pass
    proc.wait(timeout=10)


@pytest.fixture
def k(target: Target) -> Iterator[FreeBSDKernel]:  # torn down (detached) before the target is killed
    kern = FreeBSDKernel()
    yield kern
    kern.close()


def call(k: FreeBSDKernel, req: str, pid: int, addr: int = 0, data: int = 0) -> int:
    return k.ptrace(REQUESTS[req], pid, addr, data)


def attached(k: FreeBSDKernel, t: Target) -> None:
    call(k, "PT_ATTACH", t.pid)
    got, status = k.waitpid(t.pid, 0)
    assert (got, status) == (t.pid, (17 << 8) | 0x7F), "stopped by FreeBSD SIGSTOP (17)"


# --- tables of the double vs the reference ------------------------------------------

def test_double_tables_are_the_reference() -> None:
    for name, value in REQUESTS.items():
        assert kd.PT[name] == value, name
    assert (kd.PIOD_READ_D, kd.PIOD_WRITE_D, kd.PIOD_READ_I, kd.PIOD_WRITE_I) == tuple(PIOD.values())
    assert [(n, o, struct.calcsize(c)) for n, o, c in kd.REG_FIELDS] == STRUCT_REG
    assert kd.REG_SIZE == STRUCT_REG_SIZE == STRUCT_REG[-1][1] + STRUCT_REG[-1][2]
    assert kd.IO_DESC.size == IO_DESC_SIZE and kd.VM_ENTRY.size == VM_ENTRY_SIZE
    assert kd.SC_REMOTE.size == SC_REMOTE_SIZE and kd.XSTATE_INFO.size == XSTATE_INFO_SIZE
    # the double's packers put each field where the reference says (sentinel per field)
    for table, st in ((IO_DESC, kd.IO_DESC), (VM_ENTRY, kd.VM_ENTRY), (SC_REMOTE, kd.SC_REMOTE),
                      (XSTATE_INFO, kd.XSTATE_INFO)):
        values = [0x11 * (i + 1) for i in range(len(table))]
        assert unpack(table, st.pack(*values)) == {n: v for (n, _, _), v in zip(table, values)}
    for name, lx, fb in ERRNO_DIFFERS:
        assert kd.linux_errno_to_freebsd(lx) == fb, name
    for e in ERRNO_SAME:
        assert kd.linux_errno_to_freebsd(e) == e
    for lx, fb in SIGNALS:
        assert kd.linux_sig_to_freebsd(lx) == fb and kd.freebsd_sig_to_linux(fb) == lx
    assert kd.linux_sig_to_freebsd(30) == 98 and kd.freebsd_sig_to_linux(98) == 30  # SIGPWR emulated
    assert kd.stopped_status(17) == 0x117F


# --- the double over a real process ---------------------------------------------------

def test_attach_lwps_errors_and_detach(k: FreeBSDKernel, target: Target) -> None:
    with pytest.raises(FreeBSDError) as e:
        call(k, "PT_GETNUMLWPS", target.pid)
    assert e.value.errno == 16  # EBUSY: not traced by us
    attached(k, target)
    with pytest.raises(FreeBSDError) as e:
        call(k, "PT_ATTACH", target.pid)
    assert e.value.errno == 16  # EBUSY: already traced
    tasks = sorted(int(x) for x in os.listdir(f"/proc/{target.pid}/task"))
    assert len(tasks) == 2 and call(k, "PT_GETNUMLWPS", target.pid) == 2
    arr = (ctypes.c_int32 * 4)()
    assert call(k, "PT_GETLWPLIST", target.pid, ctypes.addressof(arr), 4) == 2
    assert sorted(arr[:2]) == tasks
    one = (ctypes.c_int32 * 1)()
    assert call(k, "PT_GETLWPLIST", target.pid, ctypes.addressof(one), 1) == 1  # data = array length
    for t in tasks:  # every thread is stopped under ptrace
        assert Path(f"/proc/{t}/stat").read_text().split(")")[1].split()[0] == "t"
    lwp = ctypes.create_string_buffer(64)
    call(k, "PT_LWPINFO", target.pid, ctypes.addressof(lwp), 64)
    assert struct.unpack_from("<ii", lwp.raw) == (target.pid, 1)  # pl_lwpid @0, pl_event PL_EVENT_SIGNAL @4
    with pytest.raises(FreeBSDError) as e:
        k.ptrace(3, target.pid, 0, 0)  # removed PT_READ_U
    assert e.value.errno == 22
    with pytest.raises(FreeBSDError) as e:
        call(k, "PT_ATTACH", 0x3FFFFFF0)
    assert e.value.errno == 3  # ESRCH
    assert k.waitpid(target.pid, kd.WNOHANG) == (0, 0)
    call(k, "PT_DETACH", target.pid, 1, 0)
    time.sleep(0.05)
    for t in tasks:
        assert Path(f"/proc/{t}/stat").read_text().split(")")[1].split()[0] in "SR"


def test_struct_reg_field_order_and_setregs(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    raw = ctypes.create_string_buffer(STRUCT_REG_SIZE)
    call(k, "PT_GETREGS", target.pid, ctypes.addressof(raw))
    fields = unpack(STRUCT_REG, raw.raw)
    linux = li.get_regs(target.pid)
    for fb, lx in LINUX_REGS_BY_FREEBSD.items():
        assert fields[fb] == getattr(linux, lx), fb
    assert fields["r_fs"] == linux.fs & 0xFFFF and fields["r_ds"] == linux.ds & 0xFFFF
    base = ctypes.c_uint64()
    call(k, "PT_GETFSBASE", target.pid, ctypes.addressof(base))
    assert base.value == linux.fs_base != 0  # TLS pointer: not in struct reg
    # PT_SETREGS: change r_rbx (offset 88) and r_r11 (offset 32) in the raw bytes
    new = pack(STRUCT_REG, STRUCT_REG_SIZE, **{**fields, "r_rbx": 0x1122334455667788, "r_r11": 0x99})
    buf = ctypes.create_string_buffer(bytes(new), STRUCT_REG_SIZE)
    call(k, "PT_SETREGS", target.pid, ctypes.addressof(buf))
    after = li.get_regs(target.pid)
    assert (after.rbx, after.r11, after.rip, after.rsp) == (0x1122334455667788, 0x99, linux.rip, linux.rsp)
    assert after.orig_rax == linux.orig_rax  # no orig_rax in struct reg: untouched
    li.set_regs(target.pid, linux)
    call(k, "PT_DETACH", target.pid, 1, 0)


def test_fpregs_and_xstate(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    info = ctypes.create_string_buffer(XSTATE_INFO_SIZE)
    with pytest.raises(FreeBSDError) as e:
        call(k, "PT_GETXSTATE_INFO", target.pid, ctypes.addressof(info), 12)
    assert e.value.errno == 22  # data must be sizeof(struct ptrace_xstate_info)
    call(k, "PT_GETXSTATE_INFO", target.pid, ctypes.addressof(info), XSTATE_INFO_SIZE)
    xi = unpack(XSTATE_INFO, info.raw)
    real = li.get_xstate(target.pid)
    assert xi["xsave_len"] == len(real) and xi["xsave_mask"] & 0x3 == 0x3  # x87 + SSE always enabled
    xs = ctypes.create_string_buffer(xi["xsave_len"])
    call(k, "PT_GETXSTATE", target.pid, ctypes.addressof(xs), xi["xsave_len"])
    assert xs.raw[:464] == real[:464] and xs.raw[464:512] == bytes(48) and xs.raw[512:] == real[512:]
    fp = ctypes.create_string_buffer(512)
    call(k, "PT_GETFPREGS", target.pid, ctypes.addressof(fp))
    # struct fpreg: fpr_env[4] @0 (mxcsr is the 7th u32), fpr_acc[8][16] @32, fpr_xacc[16][16] @160
    assert fp.raw[:416] == real[:416]
    assert struct.unpack_from("<I", fp.raw, 24)[0] == struct.unpack_from("<I", real, 24)[0]
    # PT_SETFPREGS: change xmm15's first byte (fpr_xacc[15] at 160 + 15*16)
    changed = bytearray(fp.raw)
    changed[160 + 15 * 16] ^= 0xFF
    buf = ctypes.create_string_buffer(bytes(changed), 512)
    call(k, "PT_SETFPREGS", target.pid, ctypes.addressof(buf))
    assert li.get_fpregs(target.pid)[160 + 15 * 16] == changed[160 + 15 * 16]
    li.set_fpregs(target.pid, fp.raw)
    call(k, "PT_DETACH", target.pid, 1, 0)


def io(k: FreeBSDKernel, pid: int, op: int, remote: int, local: int, length: int) -> int:
    desc = ctypes.create_string_buffer(bytes(pack(IO_DESC, IO_DESC_SIZE, piod_op=op, piod_offs=remote,
                                                   piod_addr=local, piod_len=length)), IO_DESC_SIZE)
    call(k, "PT_IO", pid, ctypes.addressof(desc))
    out = unpack(IO_DESC, desc.raw)
    assert (out["piod_op"], out["piod_offs"], out["piod_addr"]) == (op, remote, local)
    return out["piod_len"]


def test_pt_io_reads_writes_and_partial_transfers(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    buf = ctypes.create_string_buffer(3 * PAGE)
    assert io(k, target.pid, PIOD["PIOD_READ_D"], target.addr + 10, ctypes.addressof(buf), 100) == 100
    assert buf.raw[:100] == bytes((10 + i) % 256 for i in range(100))
    # starts in mapped memory, runs into the unmapped third page: short piod_len
    got = io(k, target.pid, PIOD["PIOD_READ_D"], target.addr + PAGE + 100, ctypes.addressof(buf), 2 * PAGE)
    assert got == PAGE - 100
    assert buf.raw[:got] == (bytes(range(256)) * 48)[PAGE + 100:2 * PAGE]
    with pytest.raises(FreeBSDError) as e:  # nothing transferable
        io(k, target.pid, PIOD["PIOD_READ_D"], target.addr + 2 * PAGE, ctypes.addressof(buf), 16)
    assert e.value.errno == 14  # EFAULT
    src = ctypes.create_string_buffer(b"hetmig-freebsd", 14)
    assert io(k, target.pid, PIOD["PIOD_WRITE_D"], target.addr + 5, ctypes.addressof(src), 14) == 14
    assert li.read_memory(target.pid, target.addr + 5, 14) == b"hetmig-freebsd"
    with pytest.raises(FreeBSDError) as e:
        io(k, target.pid, 9, target.addr, ctypes.addressof(buf), 1)
    assert e.value.errno == 22
    call(k, "PT_DETACH", target.pid, 1, 0)


def vm_entries(k: FreeBSDKernel, pid: int, bufsize: int = 4096) -> list[tuple[dict[str, int], str]]:
    out: list[tuple[dict[str, int], str]] = []
    entry = 0
    path = ctypes.create_string_buffer(bufsize)
    while True:
        raw = ctypes.create_string_buffer(bytes(pack(VM_ENTRY, VM_ENTRY_SIZE, pve_entry=entry, pve_pathlen=bufsize,
                                                     pve_path=ctypes.addressof(path))), VM_ENTRY_SIZE)
        try:
            call(k, "PT_VM_ENTRY", pid, ctypes.addressof(raw))
        except FreeBSDError as err:
            assert err.errno == 2  # ENOENT ends the walk
            return out
        e = unpack(VM_ENTRY, raw.raw)
        out.append((e, path.raw[:max(0, e["pve_pathlen"] - 1)].decode()))
        entry = e["pve_entry"]


def test_vm_entry_walk_is_inclusive_and_matches_proc_maps(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    entries = vm_entries(k, target.pid)
    real = [m for m in li.read_maps(target.pid) if m.path != "[vsyscall]"]
    assert [(e["pve_start"], e["pve_end"] + 1) for e, _ in entries] == [(m.start, m.end) for m in real]
    assert len({e["pve_timestamp"] for e, _ in entries}) == 1
    for (e, name), m in zip(entries, real):
        assert name == (m.path if m.path.startswith("/") and not m.path.endswith(" (deleted)") else "")
        assert e["pve_prot"] == (("r" in m.perms) * 1 | ("w" in m.perms) * 2 | ("x" in m.perms) * 4)
        if name:
            assert e["pve_offset"] == m.offset and e["pve_pathlen"] == len(name) + 1
            assert e["pve_fileid"] == os.stat(name).st_ino
    mine = next(e for e, _ in entries if e["pve_start"] == target.addr)
    assert mine["pve_end"] == target.addr + 2 * PAGE - 1  # inclusive end, third page unmapped
    # a path buffer too small: ENAMETOOLONG, pve_pathlen tells the size needed
    first_file = next(i for i, (_, p) in enumerate(entries) if p)
    path = ctypes.create_string_buffer(4)
    raw = ctypes.create_string_buffer(bytes(pack(VM_ENTRY, VM_ENTRY_SIZE, pve_entry=first_file, pve_pathlen=4,
                                                 pve_path=ctypes.addressof(path))), VM_ENTRY_SIZE)
    with pytest.raises(FreeBSDError) as too_small:
        call(k, "PT_VM_ENTRY", target.pid, ctypes.addressof(raw))
    assert too_small.value.errno == 63  # FreeBSD ENAMETOOLONG (Linux 36)
    assert unpack(VM_ENTRY, raw.raw)["pve_pathlen"] == len(entries[first_file][1]) + 1
    call(k, "PT_DETACH", target.pid, 1, 0)


def sc_remote(k: FreeBSDKernel, pid: int, nr: int, *args: int) -> dict[str, int]:
    arr = (ctypes.c_uint64 * max(1, len(args)))(*args)
    raw = ctypes.create_string_buffer(bytes(pack(SC_REMOTE, SC_REMOTE_SIZE, pscr_syscall=nr, pscr_nargs=len(args),
                                                 pscr_args=ctypes.addressof(arr))), SC_REMOTE_SIZE)
    call(k, "PT_SC_REMOTE", pid, ctypes.addressof(raw), SC_REMOTE_SIZE)
    assert k.waitpid(pid, kd.WNOHANG) == (pid, (5 << 8) | 0x7F)  # the new stop, consumed
    return unpack(SC_REMOTE, raw.raw)


def test_sc_remote_runs_linux_calls_and_reports_freebsd_errno(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    before = li.get_regs(target.pid)
    assert sc_remote(k, target.pid, 39)["sr_retval0"] == target.pid  # Linux getpid
    r = sc_remote(k, target.pid, 3, 0xFFFF_FFFF_FFFF_FFFF)  # close(-1)
    assert signed32(r["sr_error"]) == 9  # EBADF: same number on both
    r = sc_remote(k, target.pid, 1000)  # no such Linux system call
    assert r["sr_error"] == 78  # ENOSYS is FreeBSD 78 (Linux 38)
    after = li.get_regs(target.pid)
    assert after == before, "registers put back after each remote call"
    call(k, "PT_DETACH", target.pid, 1, 0)
    assert target.proc.poll() is None


def test_waitpid_and_kill_speak_freebsd_signals(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    call(k, "PT_CONTINUE", target.pid, 1, 0)
    k.kill(target.pid, 30)  # FreeBSD SIGUSR1 (30) = Linux SIGUSR1 (10)
    got, status = k.waitpid(target.pid, 0)
    assert got == target.pid and status & 0xFF == 0x7F and status >> 8 == 30
    call(k, "PT_DETACH", target.pid, 1, 0)  # drop the signal
    time.sleep(0.1)
    assert target.proc.poll() is None  # SIGUSR1 was not delivered (it would have killed Python)
    with pytest.raises(FreeBSDError) as e:
        k.kill(target.pid, 32)  # SIGTHR: no Linux counterpart
    assert e.value.errno == 22


def test_user_regs_field_list_is_the_reference_linux_order() -> None:
    # the Linux side of the conversion (tools-output.md 6, last paragraph)
    assert USER_REGS_FIELDS == (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")


# linuxulator.md 2-3: what a restorer injecting Linux calls would meet under the Linuxulator
RESTORE_CALLS_REFUSED = [
    ("prctl(PR_SET_MM, PR_SET_MM_MAP)", 157, (35, 14, 0, 0), 22),
    ("arch_prctl(ARCH_MAP_VDSO_64)", 158, (0x2003, 0), 22),
    ("rseq", 334, (0, 32, 0, 0), 78),
    ("process_vm_writev (dummy)", 311, (1, 0, 0, 0, 0, 0), 78),
    ("set_thread_area (unimplemented)", 205, (0,), 78),
    ("mremap growing", 25, (0x1000, 4096, 8192, 0), 12),
]


def test_sc_remote_refuses_what_the_linuxulator_refuses(k: FreeBSDKernel, target: Target) -> None:
    attached(k, target)
    for what, nr, call_args, errno in RESTORE_CALLS_REFUSED:
        assert signed32(sc_remote(k, target.pid, nr, *call_args)["sr_error"]) == errno, what
    # clone3 with set_tid (how capture.restore keeps pids): ENOSYS; struct clone_args in the target
    args = bytearray(88)  # struct clone_args (Linux): flags @0 ... set_tid @64, set_tid_size @72
    struct.pack_into("<QQ", args, 64, 0x1000, 1)  # set_tid (refused before it is ever read), size 1
    src = ctypes.create_string_buffer(bytes(args), 88)
    assert io(k, target.pid, PIOD["PIOD_WRITE_D"], target.addr + 1024, ctypes.addressof(src), 88) == 88
    assert sc_remote(k, target.pid, 435, target.addr + 1024, 88)["sr_error"] == 78
    # what the FreeBSD module itself injects at dump time is allowed
    assert sc_remote(k, target.pid, 157, 3)["sr_retval0"] == 1  # prctl(PR_GET_DUMPABLE)
    assert [nr for nr, _ in k.refused] == [157, 158, 334, 311, 205, 25, 435]
    call(k, "PT_DETACH", target.pid, 1, 0)
    time.sleep(0.05)
    assert target.proc.poll() is None
