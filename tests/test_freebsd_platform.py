"""FreeBSD platform module: layouts pinned to the reference, fake-ptrace runs.

Untested on a real FreeBSD host. The fake kernel below implements the
ptrace(2) requests with the struct layouts written out *literally* from
reference/freebsd/tools-output.md (its own offsets, never the module's
constants), so a layout mistake in capture.platform.freebsd cannot be hidden
by the same mistake in the fake. linprocfs files are composed from
linuxulator.md section 7.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import PlatformError
from capture.platform import freebsd as fb
from capture.platform.base import (
    UNLIMITED, USER_REGS_FIELDS, FdKind, Feature, NamespaceIds, Platform, ThreadRegs, VmaKind, Xsave,
)
from capture.platform.freebsd import FreeBSDPlatform
from runtime_shim.backends.freebsd_parsers import parse_procstat_vm
from runtime_shim.backends.runner import RecordingRunner

DATA = Path(__file__).parent / "data" / "freebsd"

# ---- literal reference tables (tools-output.md) -----------------------------

REF_REQUESTS = {
    "PT_TRACE_ME": 0, "PT_READ_I": 1, "PT_READ_D": 2, "PT_WRITE_I": 4, "PT_WRITE_D": 5,
    "PT_CONTINUE": 7, "PT_KILL": 8, "PT_STEP": 9, "PT_ATTACH": 10, "PT_DETACH": 11, "PT_IO": 12,
    "PT_LWPINFO": 13, "PT_GETNUMLWPS": 14, "PT_GETLWPLIST": 15, "PT_CLEARSTEP": 16, "PT_SETSTEP": 17,
    "PT_SUSPEND": 18, "PT_RESUME": 19, "PT_TO_SCE": 20, "PT_TO_SCX": 21, "PT_SYSCALL": 22,
    "PT_FOLLOW_FORK": 23, "PT_LWP_EVENTS": 24, "PT_GET_EVENT_MASK": 25, "PT_SET_EVENT_MASK": 26,
    "PT_GET_SC_ARGS": 27, "PT_GET_SC_RET": 28, "PT_COREDUMP": 29, "PT_GETREGS": 33, "PT_SETREGS": 34,
    "PT_GETFPREGS": 35, "PT_SETFPREGS": 36, "PT_GETDBREGS": 37, "PT_SETDBREGS": 38,
    "PT_VM_TIMESTAMP": 40, "PT_VM_ENTRY": 41, "PT_GETREGSET": 42, "PT_SETREGSET": 43,
    "PT_SC_REMOTE": 44, "PT_FIRSTMACH": 64, "PT_GETXSTATE_INFO": 68, "PT_GETXSTATE": 69,
    "PT_SETXSTATE": 70, "PT_GETFSBASE": 71, "PT_SETFSBASE": 72, "PT_GETGSBASE": 73, "PT_SETGSBASE": 74,
    "PIOD_READ_D": 1, "PIOD_WRITE_D": 2, "PIOD_READ_I": 3, "PIOD_WRITE_I": 4,
    "PTRACE_EXEC": 0x01, "PTRACE_SCE": 0x02, "PTRACE_SCX": 0x04, "PTRACE_SYSCALL": 0x06,
    "PTRACE_FORK": 0x08, "PTRACE_LWP": 0x10, "PTRACE_VFORK": 0x20,
}
# struct reg: (field, offset, size) — section 6
REF_REG = [
    ("r_r15", 0, 8), ("r_r14", 8, 8), ("r_r13", 16, 8), ("r_r12", 24, 8), ("r_r11", 32, 8),
    ("r_r10", 40, 8), ("r_r9", 48, 8), ("r_r8", 56, 8), ("r_rdi", 64, 8), ("r_rsi", 72, 8),
    ("r_rbp", 80, 8), ("r_rbx", 88, 8), ("r_rdx", 96, 8), ("r_rcx", 104, 8), ("r_rax", 112, 8),
    ("r_trapno", 120, 4), ("r_fs", 124, 2), ("r_gs", 126, 2), ("r_err", 128, 4), ("r_es", 132, 2),
    ("r_ds", 134, 2), ("r_rip", 136, 8), ("r_cs", 144, 8), ("r_rflags", 152, 8), ("r_rsp", 160, 8),
    ("r_ss", 168, 8),
]
REF_REG_SIZE = 176
REF_IO_DESC = {"piod_op": (0, 4), "piod_offs": (8, 8), "piod_addr": (16, 8), "piod_len": (24, 8)}
REF_VM_ENTRY = {
    "pve_entry": (0, 4), "pve_timestamp": (4, 4), "pve_start": (8, 8), "pve_end": (16, 8),
    "pve_offset": (24, 8), "pve_prot": (32, 4), "pve_pathlen": (36, 4), "pve_fileid": (40, 8),
    "pve_fsid": (48, 4), "pve_path": (56, 8),
}
_CODE = {2: "H", 4: "I", 8: "Q"}


def ref_pack(layout: dict[str, tuple[int, int]], size: int, values: dict[str, int]) -> bytes:
    buf = bytearray(size)
    for name, (off, n) in layout.items():
        struct.pack_into("<" + _CODE[n], buf, off, values.get(name, 0) & ((1 << (8 * n)) - 1))
    return bytes(buf)


def ref_unpack(layout: dict[str, tuple[int, int]], raw: bytes) -> dict[str, int]:
    return {name: struct.unpack_from("<" + _CODE[n], raw, off)[0] for name, (off, n) in layout.items()}


REG_LAYOUT_REF = {name: (off, n) for name, off, n in REF_REG}

# ---- the fake FreeBSD kernel --------------------------------------------------

ESRCH, EFAULT, EBUSY, ENOENT, EINVAL, ENOSYS_FB = 3, 14, 16, 2, 22, 78
SIGSTOP_FB = 17
SIGTRAP_FB = 5
STACK_BASE = 0x7FFFFFFDF000
STACK_TOP = STACK_BASE + 4096
# ptrace_sc_remote (tools-output.md 5.1): pscr_ret{sr_retval[2] @0 @8, sr_error @16},
# pscr_syscall @24, pscr_nargs @28, pscr_args @32; 40 bytes
REF_SC_REMOTE = {"sr_retval0": (0, 8), "sr_retval1": (8, 8), "sr_error": (16, 4), "pscr_syscall": (24, 4),
                 "pscr_nargs": (28, 4), "pscr_args": (32, 8)}


@dataclass
class FakeProc:
    pid: int
    lwps: list[int]
    memory: dict[int, bytearray]
    regs: dict[int, dict[str, int]] = field(default_factory=dict)
    fsbase: dict[int, int] = field(default_factory=dict)
    gsbase: dict[int, int] = field(default_factory=dict)
    xsave: bytes = bytes(range(256)) * 4  # 1024 bytes
    xsave_mask: int = 0x7
    attached: bool = False
    stopped: bool = False
    stop_queue: list[int] = field(default_factory=list)  # FreeBSD stop signals to report
    detached_with: list[int] = field(default_factory=list)
    paths: dict[int, str] = field(default_factory=dict)
    # Linux-side state answered by the fake's "Linux syscalls" (PT_SC_REMOTE)
    sigactions: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    altstack: tuple[int, int, int] = (0, 2, 0)  # sp, flags (SS_DISABLE), size
    robust: tuple[int, int] = (0, 0)
    umask: int = 0o027
    itimers: tuple[tuple[int, int, int, int], ...] = ((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0))
    remote_calls: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    blocked: int = 1 << 9  # Linux SIGUSR1 (10) blocked


class FakeKernel:
    """ptrace/waitpid/kill with FreeBSD semantics over in-memory processes."""

    def __init__(self) -> None:
        self.procs: dict[int, FakeProc] = {}
        self.calls: list[tuple[int, int, int, int]] = []
        self.killed: list[tuple[int, int]] = []

    def add(self, proc: FakeProc) -> FakeProc:
        self.procs[proc.pid] = proc
        for i, lwp in enumerate(proc.lwps):
            proc.regs[lwp] = {
                name: (0x1111 * (k + 1) + lwp * (i + 1)) & ((1 << (8 * n)) - 1) for k, (name, _, n) in enumerate(REF_REG)
            }
            proc.regs[lwp]["r_rsp"] = STACK_TOP - 512 - 64 * i
            proc.regs[lwp]["r_cs"] = 0x43
            proc.regs[lwp]["r_ss"] = 0x3B
            proc.fsbase[lwp] = 0x7F0000001000 + i
            proc.gsbase[lwp] = 0
        return proc

    def _find(self, pid: int) -> tuple[FakeProc, int]:
        if pid in self.procs:
            p = self.procs[pid]
            return p, p.lwps[0]
        for p in self.procs.values():
            if pid in p.lwps:
                return p, pid
        raise OSError(ESRCH, "ESRCH")

    def _mem(self, p: FakeProc, addr: int, n: int) -> tuple[int, int, int] | None:
        for base, seg in p.memory.items():
            if base <= addr < base + len(seg):
                return base, addr - base, min(n, base + len(seg) - addr)
        return None

    def ptrace(self, req: int, pid: int, addr: int, data: int) -> int:
        self.calls.append((req, pid, addr, data))
        p, lwp = self._find(pid)
        if req == 10:  # PT_ATTACH
            if p.attached:
                raise OSError(EBUSY, "EBUSY")
            p.attached = True
            p.stop_queue.append(SIGSTOP_FB)
            return 0
        if not p.attached:
            raise OSError(EBUSY, "EBUSY")
        if req == 11:  # PT_DETACH
            assert addr == 1
            p.attached = p.stopped = False
            p.detached_with.append(data)
            return 0
        if req == 7:  # PT_CONTINUE
            p.stopped = False
            return 0
        if not p.stopped:
            raise OSError(EBUSY, "EBUSY")
        if req == 14:
            return len(p.lwps)
        if req == 15:
            n = min(data, len(p.lwps))
            arr = (ctypes.c_int32 * n)(*p.lwps[:n])
            ctypes.memmove(addr, arr, 4 * n)
            return n
        if req == 33:  # PT_GETREGS
            raw = ref_pack(REG_LAYOUT_REF, REF_REG_SIZE, p.regs[lwp])
            ctypes.memmove(addr, raw, len(raw))
            return 0
        if req == 34:  # PT_SETREGS
            p.regs[lwp] = ref_unpack(REG_LAYOUT_REF, ctypes.string_at(addr, REF_REG_SIZE))
            return 0
        if req in (71, 73):
            val = (p.fsbase if req == 71 else p.gsbase)[lwp]
            ctypes.memmove(addr, struct.pack("<Q", val), 8)
            return 0
        if req in (72, 74):
            (p.fsbase if req == 72 else p.gsbase)[lwp] = struct.unpack("<Q", ctypes.string_at(addr, 8))[0]
            return 0
        if req == 35:  # PT_GETFPREGS: struct fpreg, 512 bytes
            ctypes.memmove(addr, p.xsave[:512], 512)
            return 0
        if req == 36:
            p.xsave = ctypes.string_at(addr, 512) + p.xsave[512:]
            return 0
        if req == 68:  # PT_GETXSTATE_INFO
            if not p.xsave_mask:
                raise OSError(EINVAL, "EINVAL")  # no XSAVE on this CPU
            if data != 16:
                raise OSError(EINVAL, "EINVAL")
            ctypes.memmove(addr, struct.pack("<QI", p.xsave_mask, len(p.xsave)), 12)
            return 0
        if req == 69:
            if data != len(p.xsave):
                raise OSError(EINVAL, "EINVAL")
            ctypes.memmove(addr, p.xsave, len(p.xsave))
            return 0
        if req == 70:
            p.xsave = ctypes.string_at(addr, data)
            return 0
        if req == 12:  # PT_IO
            d = ref_unpack(REF_IO_DESC, ctypes.string_at(addr, 32))
            where = self._mem(p, d["piod_offs"], d["piod_len"])
            if where is None:
                raise OSError(EFAULT, "EFAULT")
            base, off, n = where
            if d["piod_op"] == 1:
                ctypes.memmove(d["piod_addr"], bytes(p.memory[base][off:off + n]), n)
            elif d["piod_op"] == 2:
                p.memory[base][off:off + n] = ctypes.string_at(d["piod_addr"], n)
            else:
                raise OSError(EINVAL, "EINVAL")
            d["piod_len"] = n
            ctypes.memmove(addr, ref_pack(REF_IO_DESC, 32, d), 32)
            return 0
        if req == 44:  # PT_SC_REMOTE
            assert data == 40
            d = ref_unpack(REF_SC_REMOTE, ctypes.string_at(addr, 40))
            args = struct.unpack(f"<{d['pscr_nargs']}Q", ctypes.string_at(d["pscr_args"], 8 * d["pscr_nargs"]))
            p.remote_calls.append((d["pscr_syscall"], args))
            ret, err = self._linux_syscall(p, d["pscr_syscall"], args)
            d.update(sr_retval0=ret, sr_retval1=0, sr_error=err)
            ctypes.memmove(addr, ref_pack(REF_SC_REMOTE, 40, d), 40)
            p.stop_queue.append(SIGTRAP_FB)  # the new stop the tracer must consume
            return 0
        if req == 41:  # PT_VM_ENTRY
            e = ref_unpack(REF_VM_ENTRY, ctypes.string_at(addr, 64))
            bases = sorted(p.memory)
            idx = e["pve_entry"]
            if idx >= len(bases):
                raise OSError(ENOENT, "ENOENT")
            base = bases[idx]
            path = p.paths.get(base, "").encode()
            e.update(pve_entry=idx + 1, pve_start=base, pve_end=base + len(p.memory[base]) - 1,
                     pve_offset=0x1000 if path else 0, pve_prot=3, pve_fileid=42 if path else 0)
            if path:
                n = min(len(path) + 1, e["pve_pathlen"])
                ctypes.memmove(e["pve_path"], path + b"\0", n)
            e["pve_pathlen"] = len(path) + 1 if path else 0
            ctypes.memmove(addr, ref_pack(REF_VM_ENTRY, 64, e), 64)
            return 0
        raise OSError(EINVAL, "EINVAL")

    def _store(self, p: FakeProc, addr: int, data: bytes) -> None:
        where = self._mem(p, addr, len(data))
        if where is None or where[2] != len(data):
            raise AssertionError(f"syscall output at 0x{addr:x} is outside the process's memory")
        base, off, _ = where
        p.memory[base][off:off + len(data)] = data

    def _linux_syscall(self, p: FakeProc, nr: int, args: tuple[int, ...]) -> tuple[int, int]:
        """(return value, FreeBSD errno) of the few Linux syscalls the module injects."""
        if nr == 13:  # rt_sigaction(sig, NULL, old, 8)
            assert args[1] == 0 and args[3] == 8
            self._store(p, args[2], struct.pack("<QQQQ", *p.sigactions.get(args[0], (0, 0, 0, 0))))
            return 0, 0
        if nr == 131:  # sigaltstack(NULL, old)
            sp, flags, size = p.altstack
            self._store(p, args[1], struct.pack("<Qi4xQ", sp, flags, size))
            return 0, 0
        if nr == 274:  # get_robust_list(0, &head, &len)
            self._store(p, args[1], struct.pack("<Q", p.robust[0]))
            self._store(p, args[2], struct.pack("<Q", p.robust[1]))
            return 0, 0
        if nr == 95:  # umask(new) -> old
            old, p.umask = p.umask, args[0]
            return old, 0
        if nr == 36:  # getitimer(which, out)
            self._store(p, args[1], struct.pack("<qqqq", *p.itimers[args[0]]))
            return 0, 0
        if nr == 157 and args[0] == 3:  # prctl(PR_GET_DUMPABLE)
            return 1, 0
        if nr == 14:  # rt_sigprocmask(how, NULL, old, 8)
            assert args[1] == 0 and args[3] == 8
            self._store(p, args[2], struct.pack("<Q", p.blocked))
            return 0, 0
        if nr == 127:  # rt_sigpending(set, 8)
            self._store(p, args[0], struct.pack("<Q", 0))
            return 0, 0
        if nr == 145:  # sched_getscheduler(0)
            return 0, 0
        if nr == 140:  # getpriority(PRIO_PROCESS, 0): 20 - nice
            return 20 - 5, 0
        return 0, ENOSYS_FB

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        p = self.procs.get(pid)
        if p is None:
            raise ChildProcessError(10, "ECHILD")
        if not p.stop_queue and options & 1:  # WNOHANG
            return 0, 0
        if not p.stop_queue:
            raise AssertionError(f"waitpid({pid}) would block forever")
        sig = p.stop_queue.pop(0)
        p.stopped = True
        return pid, (sig << 8) | 0x7F

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append((pid, sig))


PID = 4242
LWPS = [100101, 100102]


@pytest.fixture
def kernel() -> FakeKernel:
    k = FakeKernel()
    k.add(FakeProc(PID, list(LWPS), {0x400000: bytearray(b"A" * 8192), STACK_BASE: bytearray(range(256)) * 16},
                   paths={0x400000: "/bin/busybox"}))
    return k


@pytest.fixture
def plat(kernel: FakeKernel, tmp_path: Path) -> FreeBSDPlatform:
    return FreeBSDPlatform(linprocfs=tmp_path, ptrace=kernel.ptrace, waitpid=kernel.waitpid, kill=kernel.kill)


# ---- pinned layouts -------------------------------------------------------------

def test_request_numbers_match_reference() -> None:
    for name, value in REF_REQUESTS.items():
        assert getattr(fb, name) == value, name


def test_struct_reg_layout_is_the_reference_table() -> None:
    assert fb.REG_SIZE == REF_REG_SIZE
    assert [(n, off, struct.calcsize(code)) for n, off, code in fb.REG_LAYOUT] == REF_REG
    values = {name: 0x0101010101010101 * (k + 1) for k, (name, _, _) in enumerate(REF_REG)}
    raw = fb.pack_reg(values)
    assert len(raw) == 176
    back = ref_unpack(REG_LAYOUT_REF, raw)
    for name, off, n in REF_REG:
        assert back[name] == values[name] & ((1 << (8 * n)) - 1), name
    assert fb.unpack_reg(raw) == back


def test_io_desc_and_vm_entry_layouts() -> None:
    raw = fb.pack_io_desc(2, 0x1122334455667788, 0x99AABBCCDDEEFF00, 4096)
    assert len(raw) == fb.IO_DESC_SIZE == 32
    assert ref_unpack(REF_IO_DESC, raw) == {
        "piod_op": 2, "piod_offs": 0x1122334455667788, "piod_addr": 0x99AABBCCDDEEFF00, "piod_len": 4096
    }
    e = fb.PtraceVmEntry(7, 9, 0x400000, 0x400FFF, 0x1000, 5, 1024, 123456789, 77, 0xDEADBEEF)
    raw = fb.pack_vm_entry(e)
    assert len(raw) == fb.VM_ENTRY_SIZE == 64
    assert ref_unpack(REF_VM_ENTRY, raw) == {
        "pve_entry": 7, "pve_timestamp": 9, "pve_start": 0x400000, "pve_end": 0x400FFF, "pve_offset": 0x1000,
        "pve_prot": 5, "pve_pathlen": 1024, "pve_fileid": 123456789, "pve_fsid": 77, "pve_path": 0xDEADBEEF,
    }
    assert fb.unpack_vm_entry(raw) == e
    assert struct.calcsize(fb.XSTATE_INFO_FORMAT) == fb.XSTATE_INFO_SIZE == 16
    raw = struct.pack(fb.SC_REMOTE_FORMAT, 11, 12, -2, 13, 6, 0xABCDEF)
    assert len(raw) == fb.SC_REMOTE_SIZE == 40
    assert ref_unpack(REF_SC_REMOTE, raw) == {
        "sr_retval0": 11, "sr_retval1": 12, "sr_error": 0xFFFFFFFE, "pscr_syscall": 13, "pscr_nargs": 6,
        "pscr_args": 0xABCDEF,
    }


def test_reg_conversion_by_name_both_ways() -> None:
    fields = {name: 0x100 + k for k, (name, _, _) in enumerate(REF_REG)}
    regs = fb.reg_to_linux(fields, fs_base=0xF5, gs_base=0x65)
    # FreeBSD order r15 r14 r13 r12 r11 r10 r9 r8 rdi rsi rbp rbx rdx rcx rax ...;
    # Linux order r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss ...
    assert regs.as_tuple() == (
        0x100, 0x101, 0x102, 0x103, 0x10A, 0x10B, 0x104, 0x105, 0x106, 0x107, 0x10E, 0x10D, 0x10C,
        0x109, 0x108, 0xFFFFFFFFFFFFFFFF, 0x115, 0x116, 0x117, 0x118, 0x119, 0xF5, 0x65, 0x114, 0x113,
        0x110, 0x111,
    )
    assert fb.linux_to_reg(regs, fields) == fields
    # selectors are kept by default, copied on request; trapno/err always kept
    other = ThreadRegs(*[7] * 27)
    kept = fb.linux_to_reg(other, fields)
    assert kept["r_cs"] == fields["r_cs"] and kept["r_rip"] == 7 and kept["r_trapno"] == fields["r_trapno"]
    assert fb.linux_to_reg(other, fields, keep_selectors=False)["r_cs"] == 7
    assert len(USER_REGS_FIELDS) == 27


def test_errno_table() -> None:
    cases = {1: 1, 2: 2, 35: 11, 11: 35, 63: 36, 77: 37, 78: 38, 66: 39, 62: 40, 45: 95, 48: 98, 61: 111,
             60: 110, 36: 115, 37: 114, 96: 130, 95: 131, 67: 11, 79: 9, 72: 6, 80: 6, 87: 61, 88: 22,
             93: 1, 94: 1, 97: 22}
    for freebsd, linux in cases.items():
        assert fb.freebsd_errno_to_linux(freebsd) == linux, freebsd
    with pytest.raises(ValueError):
        fb.freebsd_errno_to_linux(500)


def test_signal_tables() -> None:
    l2f = {1: 1, 6: 6, 7: 10, 8: 8, 9: 9, 10: 30, 11: 11, 12: 31, 15: 15, 16: 10, 17: 20, 18: 19, 19: 17,
           20: 18, 21: 21, 23: 16, 28: 28, 29: 23, 30: 98, 31: 12, 32: 65, 40: 73, 64: 97}
    for lx, fbsd in l2f.items():
        assert fb.linux_signal_to_freebsd(lx) == fbsd, lx
    f2l = {10: 7, 30: 10, 31: 12, 20: 17, 19: 18, 17: 19, 18: 20, 16: 23, 23: 29, 12: 31, 98: 30, 65: 32,
           97: 64, 7: 0, 29: 0}
    for fbsd, lx in f2l.items():
        assert fb.freebsd_signal_to_linux(fbsd) == lx, fbsd
    for bad in (32, 33):
        with pytest.raises(ValueError):
            fb.freebsd_signal_to_linux(bad)


def test_open_flag_translation_avoids_the_numeric_traps() -> None:
    # Linux O_WRONLY|O_CREAT|O_TRUNC = 0o1101 -> FreeBSD 0x1|0x200|0x400
    assert fb.linux_open_flags_to_freebsd(0o1101) == 0x601
    # Linux O_CREAT 0x40 must not become FreeBSD O_ASYNC 0x40
    assert fb.linux_open_flags_to_freebsd(0x40) == 0x200
    assert fb.linux_open_flags_to_freebsd(0o2000000 | 0o4000 | 2) == 0x00100000 | 0x4 | 2
    assert fb.freebsd_open_flags_to_linux(0x00100000 | 0x8 | 1) == 0o2000000 | 0o2000 | 1
    # LINUX_O_SYNC bit (010000) -> FreeBSD O_FSYNC 0x80; O_LARGEFILE/O_NOATIME ignored
    assert fb.linux_open_flags_to_freebsd(0o10000 | 0o100000 | 0o1000000) == 0x80


# ---- the platform over the fake kernel -------------------------------------------

def test_protocol_is_implemented_and_features_tell_the_truth(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    assert isinstance(plat, Platform)
    for name in [n for n in dir(Platform) if not n.startswith("_")]:
        assert callable(getattr(plat, name)) or name == "name", name
    public = {n for n in dir(plat) if not n.startswith("_")}
    assert public == {n for n in dir(Platform) if not n.startswith("_")} | {"name", "proc"}, "no FreeBSD-only public API"
    feats = plat.features()
    assert feats == {Feature.ATTACH, Feature.GP_REGS, Feature.XSAVE, Feature.MEMORY_WRITE, Feature.FDS_BASIC,
                     Feature.SIGACTIONS}
    # declared features work ...
    plat.seize(PID)
    plat.interrupt(PID)
    assert plat.get_regs(LWPS[0]).fs_base == 0x7F0000001000
    assert len(plat.get_xsave(LWPS[0]).data) == 1024
    plat.write_memory(PID, 0x400010, b"xyz")
    # ... and undeclared ones refuse by name, or answer "none" truthfully
    assert len(plat.sigactions(PID, LWPS[0])) == 64
    for call, args in (("read_pipe_data", (PID, 3, 10)), ("clear_tid_address", (LWPS[0],)),
                       ("same_open_file", (PID, 1, PID, 2)), ("uts", (PID,))):
        with pytest.raises(PlatformError, match=call):
            getattr(plat, call)(*args)
    assert plat.rseq(LWPS[0]) is None
    clocks = plat.clocks()  # CLOCK_MONOTONIC for both (no time namespaces on FreeBSD)
    assert clocks.monotonic_ns > 0 and clocks.boottime_ns == clocks.monotonic_ns
    assert plat.namespaces(PID) == NamespaceIds()
    assert plat.cgroups(PID) == ()
    # seize is not a seize: the target was sent SIGSTOP via PT_ATTACH
    assert Feature.SEIZE not in feats and kernel.calls[0][0] == 10
    plat.release(PID)


def test_attach_regs_roundtrip_and_detach(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    tids = plat.list_threads(PID)  # transient attach: stop, list, detach
    assert tids == tuple(LWPS)
    assert [c[0] for c in kernel.calls] == [10, 14, 15, 11]
    assert not kernel.procs[PID].attached
    for t in tids:
        plat.seize(t)
    for t in tids:
        plat.interrupt(t)
    assert [c[0] for c in kernel.calls[4:]] == [10, 14, 15], "one PT_ATTACH for the whole process"
    before = {t: dict(kernel.procs[PID].regs[t]) for t in tids}
    regs = plat.get_regs(LWPS[1])
    assert regs.rbp == before[LWPS[1]]["r_rbp"] and regs.eflags == before[LWPS[1]]["r_rflags"]
    assert regs.orig_rax == 0xFFFFFFFFFFFFFFFF
    plat.set_regs(LWPS[1], regs)
    assert kernel.procs[PID].regs[LWPS[1]] == before[LWPS[1]], "get -> set must be the identity"
    changed = ThreadRegs(**{**{n: getattr(regs, n) for n in USER_REGS_FIELDS}, "rip": 0x401234, "fs_base": 0x5000, "cs": 0x33})
    plat.set_regs(LWPS[1], changed)
    assert kernel.procs[PID].regs[LWPS[1]]["r_rip"] == 0x401234
    assert kernel.procs[PID].regs[LWPS[1]]["r_cs"] == 0x43, "FreeBSD selector kept"
    assert kernel.procs[PID].fsbase[LWPS[1]] == 0x5000
    plat.release(LWPS[0])
    assert kernel.procs[PID].attached, "still attached until every LWP is released"
    plat.release(LWPS[1])
    assert not kernel.procs[PID].attached and kernel.procs[PID].detached_with == [0, 0]


def test_other_signal_first_is_redelivered_at_detach(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    kernel.procs[PID].stop_queue.append(30)  # FreeBSD SIGUSR1 arrives before our SIGSTOP
    plat.seize(PID)
    kernel.procs[PID].stop_queue.append(SIGSTOP_FB)
    plat.interrupt(PID)
    plat.release(PID)
    assert kernel.procs[PID].detached_with == [30]


def test_memory_io_partial_and_errors(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    plat.seize(PID)
    plat.interrupt(PID)
    buf = bytearray(300)
    n = plat.read_memory_into(PID, [(0x400000, 4), (0x7FFFFFFDF000 + 250, 6), (0x7FFFFFFDF000 + 4090, 100)], memoryview(buf))
    assert n == 4 + 6 + 6, "third range runs off the mapping: partial transfer"
    assert bytes(buf[:16]) == b"AAAA" + bytes(range(250, 256)) + bytes(range(250, 256))
    plat.write_memory(PID, 0x400100, b"hello")
    assert bytes(kernel.procs[PID].memory[0x400000][0x100:0x105]) == b"hello"
    with pytest.raises(PlatformError) as exc:
        plat.read_memory_into(PID, [(0x10, 8)], memoryview(bytearray(8)))
    assert exc.value.errno == 14 and "PT_IO" in str(exc.value) and "EFAULT" in str(exc.value)
    with pytest.raises(PlatformError) as exc2:
        plat.get_regs(999999)
    assert exc2.value.errno == 3 and "ESRCH" in str(exc2.value)


def test_vm_entries_and_procstat_to_vma(plat: FreeBSDPlatform) -> None:
    plat.seize(PID)
    plat.interrupt(PID)
    entries = list(plat._vm_entries(PID))
    assert [(e.start, e.end, p) for e, p in entries] == [
        (0x400000, 0x401FFF, "/bin/busybox"), (0x7FFFFFFDF000, 0x7FFFFFFDFFFF, "")
    ]
    vmas = fb.vmas_from_vm_entries([e for e, _ in entries], [p for _, p in entries])
    assert vmas[0].end == 0x402000 and vmas[0].offset == 0x1000 and vmas[0].kind is VmaKind.FILE
    procstat = parse_procstat_vm((DATA / "procstat_v.txt").read_text())
    with pytest.raises(PlatformError, match="no file offset"):
        fb.vmas_from_procstat(procstat)
    offsets = {e.start: 0 for e in procstat if e.type == "vn"}
    vm = fb.vmas_from_procstat(procstat, offsets)
    assert vm[4].kind is VmaKind.ANON and vm[4].flags == fb.MAP_PRIVATE | fb.MAP_ANONYMOUS
    assert vm[5].kind is VmaKind.STACK and vm[5].flags & fb.MAP_GROWSDOWN
    assert vm[1].prot == fb.PROT_READ | fb.PROT_EXEC and vm[1].kind is VmaKind.FILE
    assert vm[6].kind is VmaKind.OTHER


def test_xsave_roundtrip(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    plat.seize(PID)
    plat.interrupt(PID)
    assert plat._xstate_info(LWPS[0]) == (0x7, 1024)
    x = plat.get_xsave(LWPS[0])
    plat.set_xsave(LWPS[0], Xsave(data=bytes(reversed(x.data))))
    assert kernel.procs[PID].xsave == bytes(reversed(x.data))
    with pytest.raises(PlatformError, match="exceed"):
        plat.set_xsave(LWPS[0], Xsave(data=bytes(2048)))


def test_kill_translates_linux_signal(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    plat.kill(PID, 10)  # Linux SIGUSR1
    plat.kill(PID, 9)
    plat.kill(PID, 34)  # Linux SIGRTMIN+2
    assert kernel.killed == [(PID, 30), (PID, 9), (PID, 67)]


# ---- linprocfs ----------------------------------------------------------------------

STATUS = """Name:\tbusybox
State:\tS (sleeping)
Tgid:\t4242
Pid:\t4242
PPid:\t4200
TracerPid:\t0
Uid:\t1001\t1001\t1001\t1001
Gid:\t1002\t1002\t1002\t1002
Groups:\t1002 5
VmSize:\t    1180 kB
VmLck:\t       0 kB
VmRSS:\t     744 kB
SigPnd:\t0000000000000000
SigBlk:\t0000000000000000
SigIgn:\t0000000000001000
SigCgt:\t0000000000004002
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
"""
STAT = "4242 (busybox) S 4200 4242 4200 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 1208320 186 0 4194304 4978688 140737488349184 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 5013504 5046272 5050368 140737488350000 140737488350020 140737488350020 140737488351200 0\n"
LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max file size             unlimited            unlimited            bytes
Max data size             34359738368          34359738368          bytes
Max stack size            8388608              536870912            bytes
Max core file size        unlimited            unlimited            bytes
Max resident set          unlimited            unlimited            bytes
Max processes             5734                 5734                 processes
Max open files            1024                 4096                 files
Max locked memory         65536                65536                bytes
Max address space         unlimited            unlimited            bytes
Max file locks            unlimited            unlimited            locks
Max pending signals       5734                 5734                 signals
Max msgqueue size         819200               819200               bytes
Max nice priority         0                    0
Max realtime priority     0                    0
Max realtime timeout      unlimited            unlimited            us
"""


def make_linprocfs(root: Path) -> None:
    d = root / str(PID)
    d.mkdir(parents=True)
    (d / "status").write_text(STATUS)
    (d / "stat").write_text(STAT)
    (d / "limits").write_text(LIMITS)
    (d / "maps").write_text((DATA / "linprocfs_maps.txt").read_text())
    (d / "oom_score_adj").write_text("0\n")
    (d / "auxv").write_bytes(struct.pack("<6Q", 6, 4096, 25, 0x7FFFFFFFE010, 0, 0))
    os.symlink("/jails/web/root", d / "cwd")
    os.symlink("/jails/web", d / "root")
    os.symlink("/jails/web/bin/busybox", d / "exe")
    kid = root / "4300"
    kid.mkdir()
    (kid / "stat").write_text("4300 (sleep) S 4242 4242 4200 0\n")
    (root / "self").mkdir()


def test_linprocfs_process_info_maps_mm(plat: FreeBSDPlatform, tmp_path: Path) -> None:
    make_linprocfs(tmp_path)
    info = plat.process_info(PID)
    assert (info.pid, info.ppid, info.pgid, info.sid, info.comm, info.state) == (PID, 4200, 4242, 4200, "busybox", "S")
    assert info.creds.uid == 1001 and info.creds.egid == 1002 and info.creds.groups == (1002, 5)
    assert info.creds.cap_eff == 0 and info.sigignored == 0x1000 and info.sigcaught == 0x4002
    assert info.rlimits[7].cur == 1024 and info.rlimits[7].max == 4096 and info.rlimits[0].cur == UNLIMITED
    assert (info.cwd, info.root, info.exe) == ("/jails/web/root", "/jails/web", "/jails/web/bin/busybox")
    assert info.threads == tuple(LWPS)
    assert plat.list_children(PID) == (4300,)
    vmas = plat.read_maps(PID)
    assert [v.kind for v in vmas] == [VmaKind.FILE, VmaKind.FILE, VmaKind.FILE, VmaKind.ANON, VmaKind.SHMEM,
                                      VmaKind.VDSO, VmaKind.STACK]
    assert vmas[1].prot == fb.PROT_READ | fb.PROT_EXEC and vmas[1].offset == 0x1000 and vmas[1].ino == 1234567
    assert vmas[6].flags == fb.MAP_PRIVATE | fb.MAP_ANONYMOUS | fb.MAP_GROWSDOWN
    mm = plat.mm_info(PID)
    assert mm.auxv == (6, 4096, 25, 0x7FFFFFFFE010, 0, 0) and mm.exe == "/jails/web/bin/busybox"
    assert (mm.start_code, mm.end_code, mm.start_data) == (4194304, 4978688, 5013504)
    assert plat.fs_info(PID).umask == 0o022


def test_present_runs_without_page_presence(plat: FreeBSDPlatform, tmp_path: Path) -> None:
    make_linprocfs(tmp_path)
    vmas = plat.read_maps(PID)
    runs = [plat.present_runs(PID, v) for v in vmas]
    assert runs[0] == [(0x400000, 1)], "read-only private file mapping (RELRO-like) is dumped"
    assert runs[1] == [], "private executable text is not"
    assert runs[2] == [(0x4CD000, 4)] and runs[3] == [(0x4D1000, 0x23)]
    assert runs[4] == [], "shared mappings are not dumped"
    assert runs[5] == [(vmas[5].start, vmas[5].size // 4096)], "the vdso is dumped whole (as Linux/CRIU do)"
    assert runs[6] == [(0x7FFFFFFDF000, 0x1F)]


def test_list_fds_from_procstat(tmp_path: Path, kernel: FakeKernel) -> None:
    r = RecordingRunner(strict=True)
    r.reply(["procstat", "-f", str(PID)], stdout=(DATA / "procstat_f.txt").read_text())
    plat = FreeBSDPlatform(linprocfs=tmp_path, ptrace=kernel.ptrace, waitpid=kernel.waitpid, procstat_runner=r)
    fds = plat.list_fds(PID)
    assert [f.fd for f in fds] == [0, 1, 3, 4, 5]
    by = {f.fd: f for f in fds}
    # /dev/null is recorded as a regular file (like Linux mem-major devices), mode still S_IFCHR
    assert by[0].kind is FdKind.REG and by[0].path == "/dev/null" and by[0].flags == 2 and by[0].mode == 0o020000
    assert by[1].kind is FdKind.PIPE and by[1].path == ""
    assert by[3].kind is FdKind.REG and by[3].pos == 8192 and by[3].flags == 0
    assert by[4].kind is FdKind.INET_SOCKET and by[4].flags == 2 | 0o4000
    assert by[5].kind is FdKind.UNIX_SOCKET
    with pytest.raises(PlatformError, match="list_fds"):
        FreeBSDPlatform(linprocfs=tmp_path, ptrace=kernel.ptrace).list_fds(PID)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=26, max_size=26))
def test_struct_reg_pack_unpack_property(values: list[int]) -> None:
    fields = {name: v & ((1 << (8 * n)) - 1) for (name, _, n), v in zip(REF_REG, values)}
    raw = fb.pack_reg(fields)
    assert fb.unpack_reg(raw) == fields == ref_unpack(REG_LAYOUT_REF, raw)
    regs = fb.reg_to_linux(fields, values[0], values[1])
    assert fb.linux_to_reg(regs, fields) == fields


@given(st.integers(1, 64))
def test_signal_mapping_roundtrip_property(sig: int) -> None:
    assert fb.freebsd_signal_to_linux(fb.linux_signal_to_freebsd(sig)) == (sig if sig != 16 else 7)


def test_engine_refuses_to_dump_through_freebsd_cleanly(plat: FreeBSDPlatform, kernel: FakeKernel, tmp_path: Path) -> None:
    """features() is honest, so the dump engine refuses before touching the target."""
    from capture.dump import dump
    from capture.errors import CheckpointError

    class NoXsave:  # the module minus one feature the engine needs
        name = plat.name

        def features(self) -> frozenset[Feature]:
            return plat.features() - {Feature.XSAVE}

        def __getattr__(self, attr: str) -> Any:
            return getattr(plat, attr)

    with pytest.raises(CheckpointError, match="lacks feature xsave"):
        dump(PID, tmp_path / "images", platform=cast(Platform, NoXsave()))
    assert kernel.calls == [] and not (tmp_path / "images").exists()


def test_fxsave_only_cpu_uses_fpregs(plat: FreeBSDPlatform, kernel: FakeKernel) -> None:
    kernel.procs[PID].xsave_mask = 0
    plat.seize(PID)
    plat.interrupt(PID)
    x = plat.get_xsave(LWPS[0])
    assert x.data == kernel.procs[PID].xsave[:512]
    plat.set_xsave(LWPS[0], Xsave(data=bytes(512)))
    assert kernel.procs[PID].xsave[:512] == bytes(512)
    assert [c[0] for c in kernel.calls if c[0] in (35, 36, 69, 70)] == [35, 36]


def test_remote_syscalls_through_pt_sc_remote(plat: FreeBSDPlatform, kernel: FakeKernel, tmp_path: Path) -> None:
    p = kernel.procs[PID]
    p.sigactions = {2: (0x401000, 0x04000000, 0x401FF0, 1 << 14), 10: (1, 0, 0, 0)}
    p.altstack = (0x7F0000200000, 0, 65536)
    p.robust = (0x7F0000001AB0, 24)
    p.itimers = ((1, 500000, 2, 0), (0, 0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(PlatformError, match="not attached and stopped"):
        plat.sigaltstack(LWPS[0])
    plat.seize(PID)
    plat.interrupt(PID)
    acts = plat.sigactions(PID, LWPS[0])
    assert [a.signo for a in acts] == list(range(1, 65))
    assert (acts[1].handler, acts[1].flags, acts[1].restorer, acts[1].mask) == p.sigactions[2]
    assert acts[9].handler == 1 and acts[8].handler == 0 and acts[18].handler == 0
    assert 9 not in [c[1][0] for c in p.remote_calls] and 19 not in [c[1][0] for c in p.remote_calls]
    alt = plat.sigaltstack(LWPS[1])
    assert (alt.ss_sp, alt.ss_flags, alt.ss_size) == (0x7F0000200000, 0, 65536)
    assert plat.robust_list(LWPS[0]) == (0x7F0000001AB0, 24)
    extras = plat.task_extras(PID, LWPS[0])
    assert extras.itimers[0].isec == 1 and extras.itimers[0].iusec == 500000 and extras.itimers[0].vsec == 2
    assert (extras.dumpable, extras.securebits, extras.child_subreaper, extras.thp_disabled) == (1, 0, False, False)
    make_linprocfs(tmp_path)
    assert plat.fs_info(PID).umask == 0o027 and p.umask == 0o027, "umask read and put back"
    ti = plat.thread_info(PID, LWPS[1])
    assert (ti.tid, ti.comm, ti.state, ti.sigblocked, ti.sigpending, ti.sched_policy, ti.sched_nice, ti.seccomp_mode) == (
        LWPS[1], "busybox", "S", 1 << 9, 0, 0, 5, 0
    )
    # scratch stays below the red zone of the thread's own stack
    sizes = {13: 32, 131: 24, 274: 16, 36: 32, 14: 16}
    red_zones = [p.regs[t]["r_rsp"] - 128 for t in LWPS]
    for nr, args in p.remote_calls:
        if nr in sizes:
            out = args[2] if nr in (13, 14) else args[1]
            assert STACK_BASE <= out and any(out + sizes[nr] <= rz and rz - out < 64 for rz in red_zones), (nr, out)
    # every PT_SC_REMOTE stop was consumed with waitpid(WNOHANG)
    assert p.stop_queue == []
    # a failing remote call names the syscall and converts the errno
    with pytest.raises(PlatformError) as exc:
        plat._remote_syscall(LWPS[0], 999)
    assert exc.value.errno == 38 and "ENOSYS" in str(exc.value)
    plat.release(PID)
