"""The Linux platform backend: procfs, ptrace and process_vm_readv.

Reads process state from a procfs root (``/proc`` by default; tests point
it at recorded snippets under ``tests/data/procfs``), stops threads with
``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT`` (the process never sees a SIGSTOP),
reads registers (``PTRACE_GETREGS``) and the xsave area
(``PTRACE_GETREGSET NT_X86_XSTATE``), reads memory with ``process_vm_readv``
straight into a caller's buffer (an mmap of the output file), and finds the
pages to dump from ``/proc/PID/pagemap`` in bulk (byte slicing and
``bytes.translate``/``find``; no per-page Python loop).

What needs the target's own context (signal handlers, sigaltstack,
clear_tid address, itimers, securebits) is read by injecting one system call
at a time into a stopped thread: its registers are saved, ``rip`` points at
a ``syscall`` instruction (vDSO first), one ``PTRACE_SINGLESTEP`` runs it,
and the saved registers are put back (``orig_rax`` -1 while injecting so
the kernel's syscall-restart logic leaves the injected ``rip`` alone).
Output buffers live below the thread's red zone on its own stack. The
single-step machinery is :mod:`capture.platform.linux_inject`'s ``Injector``;
xsave component offsets come from its ``cpuid``.

Refuses: anything but x86_64; PTRACE_ATTACH (it would show the target a
SIGSTOP); guessing a value procfs does not give.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_mod
import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Sequence

from capture.errors import PlatformError
from capture.platform import linux_inject
from capture.platform.base import (
    PAGE_SIZE,
    UNLIMITED,
    USER_REGS_FIELDS,
    CgroupMembership,
    Clocks,
    ITimer,
    TaskExtras,
    Creds,
    FdInfo,
    FdKind,
    Feature,
    FsInfo,
    MmInfo,
    NamespaceIds,
    PipeData,
    PosixTimer,
    ProcessInfo,
    Rlimit,
    Rseq,
    SigAction,
    SigAltStack,
    SocketInfo,
    ThreadInfo,
    Termios,
    ThreadRegs,
    TtyInfo,
    UtsInfo,
    Vma,
    VmaKind,
    Xsave,
)

# --- Linux constants (target facts, not the host's) ------------------------
PTRACE_CONT: Final = 7
PTRACE_SINGLESTEP: Final = 9
PTRACE_GETREGS: Final = 12
PTRACE_SETREGS: Final = 13
PTRACE_DETACH: Final = 17
PTRACE_GETREGSET: Final = 0x4204
PTRACE_SETREGSET: Final = 0x4205
PTRACE_SEIZE: Final = 0x4206
PTRACE_INTERRUPT: Final = 0x4207
PTRACE_GET_RSEQ_CONFIGURATION: Final = 0x420F
PTRACE_SECCOMP_GET_FILTER: Final = 0x420C
PTRACE_PEEKSIGINFO: Final = 0x4209
PTRACE_EVENT_STOP: Final = 128
NT_X86_XSTATE: Final = 0x202
WALL: Final = 0x40000000

PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4
MAP_SHARED: Final = 0x01

# PAGEMAP_SCAN (Linux 6.7+): page categories of a range, walked in the kernel
PM_SCAN_ARG: Final = struct.Struct("=12Q")
PAGE_REGION: Final = struct.Struct("=3Q")
PAGEMAP_SCAN: Final = (3 << 30) | (PM_SCAN_ARG.size << 16) | (ord("f") << 8) | 16
PM_SCAN_WP_MATCHING: Final = 1 << 0
PM_SCAN_CHECK_WPASYNC: Final = 1 << 1
PAGE_IS_WRITTEN: Final = 1 << 1
PAGE_IS_FILE: Final = 1 << 2
PAGE_IS_PRESENT: Final = 1 << 3
PAGE_IS_SWAPPED: Final = 1 << 4
PAGE_IS_PFNZERO: Final = 1 << 5
MAP_PRIVATE: Final = 0x02
MAP_ANONYMOUS: Final = 0x20
MAP_GROWSDOWN: Final = 0x0100
MAP_LOCKED: Final = 0x2000
MAP_NORESERVE: Final = 0x4000

# smaps VmFlags -> madvise bit numbers (CRIU keeps 1 << MADV_*)
_MADV_FROM_VMFLAG: Final[dict[str, int]] = {
    "sr": 2,  # MADV_SEQUENTIAL
    "rr": 1,  # MADV_RANDOM
    "dc": 10,  # MADV_DONTFORK
    "dd": 16,  # MADV_DONTDUMP
    "mg": 12,  # MADV_MERGEABLE
    "hg": 14,  # MADV_HUGEPAGE
    "nh": 15,  # MADV_NOHUGEPAGE
    "wf": 18,  # MADV_WIPEONFORK
}

SYS_RT_SIGACTION: Final = 13
SYS_GETITIMER: Final = 36
SYS_SIGALTSTACK: Final = 131
SYS_PRCTL: Final = 157
SYS_GET_ROBUST_LIST: Final = 274
SYS_TGKILL: Final = 234
SYS_TIMER_GETTIME: Final = 224
SYS_TIMER_GETOVERRUN: Final = 225
PR_GET_DUMPABLE: Final = 3
PR_GET_SECUREBITS: Final = 27
SYS_KCMP: Final = 312
KCMP_FILE: Final = 0
PR_GET_CHILD_SUBREAPER: Final = 37
PR_GET_TID_ADDRESS: Final = 40
PR_GET_THP_DISABLE: Final = 42

# pagemap entry bits
PME_PRESENT: Final = 1 << 63
PME_SWAP: Final = 1 << 62
PME_FILE: Final = 1 << 61
PME_PFN_MASK: Final = (1 << 55) - 1

RLIMIT_NAMES: Final[tuple[str, ...]] = (
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
)

# xsave standard-format component offsets/sizes (x86 architectural facts)
XSAVE_COMPONENTS: Final[tuple[tuple[int, int, int], ...]] = (
    (2, 576, 256),  # YMM_Hi128
    (3, 960, 64),  # BNDREGS
    (4, 1024, 64),  # BNDCSR
    (5, 1088, 64),  # opmask
    (6, 1152, 512),  # ZMM_Hi256
    (7, 1664, 1024),  # Hi16_ZMM
    (9, 2688, 8),  # PKRU
)

# character-device majors that are terminals
_TTY_MAJORS: Final = frozenset({4, 5, 136, 137, 138, 139, 140, 141, 142, 143})
# majors whose devices CRIU dumps as ordinary files (mem: null, zero, random ...)
_MEM_MAJOR: Final = 1

_libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_Iovec),
    ctypes.c_ulong,
    ctypes.POINTER(_Iovec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = _libc.process_vm_readv.argtypes
_libc.process_vm_writev.restype = ctypes.c_ssize_t
_libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
_libc.tee.restype = ctypes.c_ssize_t
_libc.syscall.restype = ctypes.c_long

IOV_MAX: Final = 1024


class _UserRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulong) for n in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
    )]


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """One ptrace call through python-ptrace's binding; errors -> PlatformError."""
    from ptrace.binding.func import ptrace as raw_ptrace  # type: ignore[import-untyped]
    from ptrace.error import PtraceError  # type: ignore[import-untyped]

    try:
        result: int = raw_ptrace(request, pid, addr, data)
        return result
    except PtraceError as err:
        raise PlatformError(
            f"ptrace(request=0x{request:x}, pid={pid}) failed: {err}", errno=err.errno
        ) from err


def _encode_dev(major: int, minor: int) -> int:
    """Linux new_encode_dev (the dev_t layout in /proc/PID/stat and CRIU images)."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _u64(v: int) -> int:
    return v & 0xFFFF_FFFF_FFFF_FFFF


def _s64(v: int) -> int:
    v &= 0xFFFF_FFFF_FFFF_FFFF
    return v - (1 << 64) if v >> 63 else v


# ---------------------------------------------------------------------------
# pure parsers (tested on recorded procfs text)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatFields:
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    flags: int
    nice: int
    num_threads: int
    start_code: int
    end_code: int
    start_stack: int
    exit_signal: int
    policy: int
    start_data: int
    end_data: int
    start_brk: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    exit_code: int


def parse_stat(text: str) -> StatFields:
    """Parse /proc/PID/stat (comm may hold spaces and parentheses)."""
    lpar = text.find("(")
    rpar = text.rfind(")")
    if lpar < 0 or rpar < lpar:
        raise PlatformError(f"/proc stat: no '(comm)' in {text[:80]!r}")
    pid = int(text[:lpar].strip())
    comm = text[lpar + 1 : rpar]
    rest = text[rpar + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3]
    if len(rest) < 50:
        raise PlatformError(f"/proc/{pid}/stat: {len(rest) + 2} fields, expected >= 52")

    def f(n: int) -> int:
        return int(rest[n - 3])

    return StatFields(
        pid=pid, comm=comm, state=rest[0], ppid=f(4), pgid=f(5), sid=f(6), flags=f(9),
        nice=f(19), num_threads=f(20), start_code=f(26), end_code=f(27), start_stack=f(28),
        exit_signal=f(38), policy=f(41), start_data=f(45), end_data=f(46), start_brk=f(47),
        arg_start=f(48), arg_end=f(49), env_start=f(50), env_end=f(51),
        exit_code=f(52) if len(rest) >= 50 else 0,
    )


def parse_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _status_int(st: dict[str, str], key: str, base: int = 10, default: int | None = None) -> int:
    if key not in st:
        if default is not None:
            return default
        raise PlatformError(f"/proc status: field {key!r} missing")
    return int(st[key].split()[0], base)


def _ns_last(st: dict[str, str], key: str) -> int:
    """Innermost id of an NSpid/NSpgid/NSsid line (the process's own pid namespace)."""
    vals = st.get(key, "").split()
    return int(vals[-1]) if vals else 0


def creds_from_status(st: dict[str, str]) -> Creds:
    uids = [int(x) for x in st["Uid"].split()]
    gids = [int(x) for x in st["Gid"].split()]
    groups = tuple(int(x) for x in st.get("Groups", "").split())
    return Creds(
        uid=uids[0], euid=uids[1], suid=uids[2], fsuid=uids[3],
        gid=gids[0], egid=gids[1], sgid=gids[2], fsgid=gids[3],
        groups=groups,
        cap_inh=int(st["CapInh"], 16), cap_prm=int(st["CapPrm"], 16),
        cap_eff=int(st["CapEff"], 16), cap_bnd=int(st["CapBnd"], 16),
        cap_amb=int(st.get("CapAmb", "0"), 16),
        no_new_privs=st.get("NoNewPrivs", "0") == "1",
    )


def parse_limits(text: str) -> tuple[Rlimit, ...]:
    """Parse /proc/PID/limits into Linux RLIMIT_* order."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        for idx, name in enumerate(RLIMIT_NAMES):
            if line.startswith(name):
                cols = line[len(name) :].split()
                vals = [UNLIMITED if c == "unlimited" else int(c) for c in cols[:2]]
                found[name] = (vals[0], vals[1])
    out = []
    for idx, name in enumerate(RLIMIT_NAMES):
        if name not in found:
            raise PlatformError(f"/proc limits: row {name!r} missing")
        cur, mx = found[name]
        out.append(Rlimit(resource=idx, cur=cur, max=mx))
    return tuple(out)


_MAPS_RE = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)\s*(.*)$"
)


def parse_maps(text: str, vmflags: Sequence[frozenset[str]] | None = None) -> tuple[Vma, ...]:
    """Parse /proc/PID/maps (optionally with per-VMA smaps VmFlags)."""
    vmas: list[Vma] = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if vmflags is not None and len(vmflags) != len(lines):
        raise PlatformError(f"smaps has {len(vmflags)} VMAs, maps {len(lines)}")
    for i, line in enumerate(lines):
        m = _MAPS_RE.match(line)
        if m is None:
            raise PlatformError(f"/proc maps: cannot parse line {line!r}")
        start, end = int(m.group(1), 16), int(m.group(2), 16)
        prot = (PROT_READ if m.group(3) == "r" else 0) | (PROT_WRITE if m.group(4) == "w" else 0)
        prot |= PROT_EXEC if m.group(5) == "x" else 0
        shared = m.group(6) == "s"
        offset = int(m.group(7), 16)
        major, minor, ino = int(m.group(8), 16), int(m.group(9), 16), int(m.group(10))
        path = m.group(11)
        flags = MAP_SHARED if shared else MAP_PRIVATE
        vf = vmflags[i] if vmflags is not None else frozenset()
        madv = 0
        for tok, bit in _MADV_FROM_VMFLAG.items():
            if tok in vf:
                madv |= 1 << bit
        if "gd" in vf:
            flags |= MAP_GROWSDOWN
        if "lo" in vf:
            flags |= MAP_LOCKED
        if "nr" in vf:
            flags |= MAP_NORESERVE
        if path == "[vdso]":
            kind = VmaKind.VDSO
        elif path == "[vvar]" or path == "[vvar_vclock]":
            kind = VmaKind.VVAR
        elif path == "[vsyscall]":
            kind = VmaKind.VSYSCALL
        elif path == "[heap]":
            kind = VmaKind.HEAP
        elif path.startswith("[stack"):
            kind = VmaKind.STACK
        elif ino == 0 and (path == "" or path.startswith("[anon")):
            kind = VmaKind.ANON
        elif shared and (path.startswith("/dev/zero") or path.startswith("/SYSV") or path.startswith("/memfd:")):
            kind = VmaKind.SHMEM
        elif path.startswith("/"):
            kind = VmaKind.FILE
        else:
            kind = VmaKind.OTHER
        if kind in (VmaKind.ANON, VmaKind.HEAP, VmaKind.STACK, VmaKind.VDSO, VmaKind.VVAR, VmaKind.VSYSCALL):
            flags |= MAP_ANONYMOUS
        if kind is VmaKind.ANON and shared:
            kind = VmaKind.SHMEM
        vmas.append(Vma(start=start, end=end, prot=prot, flags=flags, offset=offset, path=path,
                        dev_major=major, dev_minor=minor, ino=ino, kind=kind, madvise=madv))
    return tuple(vmas)


def parse_smaps_vmflags(text: str) -> list[frozenset[str]]:
    out: list[frozenset[str]] = []
    for line in text.splitlines():
        if line.startswith("VmFlags:"):
            out.append(frozenset(line[8:].split()))
    return out


def parse_fdinfo(text: str) -> dict[str, str]:
    return parse_status(text)


def parse_timers(text: str) -> list[PosixTimer]:
    """/proc/PID/timers -> timers (identity and notification; times are zero)."""
    out: list[PosixTimer] = []
    cur: dict[str, str] = {}

    def flush() -> None:
        if not cur:
            return
        signo, _, sival = cur["signal"].partition("/")
        how, _, target = cur["notify"].partition("/")
        notify = {"signal": 0, "none": 1, "thread": 2}.get(how)
        if notify is None:
            raise PlatformError(f"/proc timers: unknown notify {cur['notify']!r}")
        kind, _, who = target.partition(".")
        if kind == "tid":
            notify |= 4
        out.append(PosixTimer(
            it_id=int(cur["ID"]), clock_id=int(cur["ClockID"]), signo=int(signo), sigev_notify=notify,
            sival_ptr=int(sival, 16), notify_tid=int(who or 0), overrun=0, isec=0, insec=0, vsec=0, vnsec=0,
        ))
        cur.clear()

    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key == "ID":
            flush()
        cur[key.strip()] = value.strip()
    flush()
    return out


def parse_net_unix(text: str) -> dict[int, tuple[int, int, str]]:
    """/proc/net/unix -> {inode: (type, state, path)}."""
    out: dict[int, tuple[int, int, str]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 7:
            continue
        path = cols[7] if len(cols) > 7 else ""
        out[int(cols[6])] = (int(cols[4], 16), int(cols[5], 16), path)
    return out


def _inet_addr(hexaddr: str) -> str:
    ip, _, port = hexaddr.partition(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        addr = ".".join(str(b) for b in raw[::-1])
    else:
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        flat = b"".join(words)
        addr = ":".join(flat[i : i + 2].hex() for i in range(0, 16, 2))
    return f"{addr}:{int(port, 16)}"


def parse_net_inet(text: str) -> dict[int, tuple[str, str, int]]:
    """/proc/net/{tcp,udp}[6] -> {inode: (local, remote, state)}."""
    out: dict[int, tuple[str, str, int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        out[int(cols[9])] = (_inet_addr(cols[1]), _inet_addr(cols[2]), int(cols[3], 16))
    return out


def present_runs_from_pagemap(
    data: bytes, base: int, *, private_file: bool, zero_pfn: int | None
) -> list[tuple[int, int]]:
    """Runs (address, pages) of pages to dump, from raw pagemap entries.

    ``data`` holds one little-endian u64 per page starting at ``base``.
    A page is dumped when swapped, or present and (for private file
    mappings) not a page-cache page, and not the shared zero page.
    Works on the entries' top bytes with C-level slicing and searching.
    """
    if len(data) % 8:
        raise PlatformError(f"pagemap chunk of {len(data)} bytes is not a multiple of 8")
    top = bytearray(data[7::8])
    # bit 63 present (0x80), 62 swapped (0x40), 61 file/shared (0x20)
    table = bytearray(256)
    for b in range(256):
        present, swapped, filep = b & 0x80, b & 0x40, b & 0x20
        if swapped or (present and not (private_file and filep)):
            table[b] = 1
    marks = bytearray(top.translate(table))
    if zero_pfn is not None:
        needle = struct.pack("<Q", PME_PRESENT | zero_pfn)
        pos = data.find(needle)
        while pos >= 0:
            if pos % 8 == 0:
                marks[pos // 8] = 0
            pos = data.find(needle, pos + 1)
    runs: list[tuple[int, int]] = []
    n = len(marks)
    i = marks.find(1)
    while 0 <= i < n:
        j = marks.find(0, i)
        if j < 0:
            j = n
        runs.append((base + i * PAGE_SIZE, j - i))
        i = marks.find(1, j)
    return runs


# ---------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------


#: (procfs root, pid) -> (/proc/PID/maps text, its smaps VmFlags), see LinuxPlatform.prime_vmflags
_PRIMED_VMFLAGS: dict[tuple[str, int], tuple[str, list[frozenset[str]]]] = {}


class LinuxPlatform:
    """:class:`capture.platform.base.Platform` for Linux x86_64."""

    name = "linux"

    def __init__(self, procfs: str | os.PathLike[str] = "/proc") -> None:
        self.proc = Path(procfs)
        self._zero_pfn: int | None | bool = False  # False = not probed yet
        self._syscall_insn: dict[int, int] = {}
        self._xstate: tuple[tuple[tuple[int, int, int], ...], bool] | None = None

    # -- helpers -------------------------------------------------------
    def _read(self, rel: str) -> str:
        try:
            return (self.proc / rel).read_text(errors="surrogateescape")
        except OSError as err:
            raise PlatformError(f"cannot read {self.proc / rel}: {err.strerror}", errno=err.errno) from err

    def _readlink(self, rel: str) -> str:
        try:
            return os.readlink(self.proc / rel)
        except OSError as err:
            raise PlatformError(f"cannot readlink {self.proc / rel}: {err.strerror}", errno=err.errno) from err

    def features(self) -> frozenset[Feature]:
        self._xstate_layout()  # callers ask this first: do the CPUID work before anything is stopped
        # and load python-ptrace now: importing it on the first seize would
        # run while the tree is stopped and the page readers need the CPU
        import ptrace.binding.func  # type: ignore[import-untyped]  # noqa: F401
        import ptrace.error  # noqa: F401
        return frozenset(Feature)

    # -- discovery -----------------------------------------------------
    def list_threads(self, pid: int) -> tuple[int, ...]:
        try:
            names = os.listdir(self.proc / str(pid) / "task")
        except OSError as err:
            raise PlatformError(f"cannot list threads of pid {pid}: {err.strerror}", errno=err.errno) from err
        return tuple(sorted(int(n) for n in names if n.isdigit()))

    def list_children(self, pid: int) -> tuple[int, ...]:
        kids: list[int] = []
        for tid in self.list_threads(pid):
            try:
                text = self._read(f"{pid}/task/{tid}/children")
            except PlatformError:
                continue
            kids.extend(int(x) for x in text.split())
        return tuple(sorted(set(kids)))

    def process_info(self, pid: int) -> ProcessInfo:
        st = parse_stat(self._read(f"{pid}/stat"))
        status = parse_status(self._read(f"{pid}/status"))
        dead = st.state in ("Z", "X")

        def link(rel: str) -> str:
            # a zombie has no cwd, root or exe any more
            if dead:
                try:
                    return os.readlink(self.proc / rel)
                except OSError:
                    return ""
            return self._readlink(rel)

        try:
            timers = sum(1 for ln in self._read(f"{pid}/timers").splitlines() if ln.startswith("ID:"))
        except PlatformError:
            timers = 0
        try:
            oom = int(self._read(f"{pid}/oom_score_adj").strip())
        except PlatformError:
            oom = 0
        try:
            loginuid = int(self._read(f"{pid}/loginuid").strip())
        except PlatformError:
            loginuid = 0xFFFF_FFFF
        return ProcessInfo(
            pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, comm=st.comm, state=st.state,
            flags=st.flags, exit_signal=st.exit_signal,
            personality=int(self._read(f"{pid}/personality").strip() or "0", 16) if not dead else 0,
            creds=creds_from_status(status),
            umask=_status_int(status, "Umask", 8, 0o22),
            sigblocked=_status_int(status, "SigBlk", 16),
            sigignored=_status_int(status, "SigIgn", 16),
            sigcaught=_status_int(status, "SigCgt", 16),
            rlimits=parse_limits(self._read(f"{pid}/limits")),
            cwd=link(f"{pid}/cwd"), root=link(f"{pid}/root"),
            exe=link(f"{pid}/exe"), threads=self.list_threads(pid),
            oom_score_adj=oom, loginuid=loginuid, exit_code=st.exit_code,
            shared_pending=_status_int(status, "ShdPnd", 16, 0), posix_timers=timers,
            vpid=_ns_last(status, "NSpid"), vpgid=_ns_last(status, "NSpgid"), vsid=_ns_last(status, "NSsid"),
        )

    def thread_info(self, pid: int, tid: int) -> ThreadInfo:
        st = parse_stat(self._read(f"{pid}/task/{tid}/stat"))
        status = parse_status(self._read(f"{pid}/task/{tid}/status"))
        return ThreadInfo(
            tid=tid, comm=st.comm, state=st.state,
            sigblocked=_status_int(status, "SigBlk", 16),
            sigpending=_status_int(status, "SigPnd", 16),
            sched_policy=st.policy, sched_nice=st.nice,
            seccomp_mode=_status_int(status, "Seccomp", 10, 0),
            vtid=_ns_last(status, "NSpid"),
            shadow_stack="shstk" in status.get("x86_Thread_features", "").split(),
            seccomp_filters=self._seccomp_filters(tid) if _status_int(status, "Seccomp", 10, 0) == 2 else (),
            pending_siginfo=self._peek_siginfo(tid, False) if _status_int(status, "SigPnd", 16, 0) else (),
            shared_siginfo=self._peek_siginfo(tid, True) if _status_int(status, "ShdPnd", 16, 0) else (),
        )

    def _peek_siginfo(self, tid: int, shared: bool) -> tuple[bytes, ...]:
        """PTRACE_PEEKSIGINFO: the queued siginfo_t's (empty unless we hold tid stopped)."""
        out: list[bytes] = []
        batch = 32
        buf = ctypes.create_string_buffer(128 * batch)
        while True:
            args = struct.pack("<QIi", len(out), 1 if shared else 0, batch)  # off, flags, nr
            cargs = ctypes.create_string_buffer(args, len(args))
            try:
                n = _ptrace(PTRACE_PEEKSIGINFO, tid, ctypes.addressof(cargs), ctypes.addressof(buf))
            except PlatformError as err:
                if err.errno in (errno_mod.ESRCH, errno_mod.EPERM, errno_mod.EACCES) and not out:
                    return ()
                raise
            out.extend(buf.raw[i * 128 : (i + 1) * 128] for i in range(n))
            if n < batch:
                return tuple(out)

    def _seccomp_filters(self, tid: int) -> tuple[bytes, ...]:
        """PTRACE_SECCOMP_GET_FILTER for index 0 (the first installed), 1, ...

        Empty unless we hold *tid* stopped under ptrace.
        """
        out: list[bytes] = []
        for index in range(1024):
            try:
                n = _ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, 0)
            except PlatformError as err:
                if err.errno == errno_mod.ENOENT:
                    break
                if err.errno in (errno_mod.ESRCH, errno_mod.EPERM, errno_mod.EACCES) and index == 0:
                    return ()
                raise
            buf = ctypes.create_string_buffer(n * 8)
            got = _ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, ctypes.addressof(buf))
            out.append(buf.raw[: got * 8])
        return tuple(out)

    def prime_vmflags(self, pid: int) -> None:
        """Read *pid*'s smaps VmFlags now, for the next :meth:`read_maps` of it.

        smaps walks every page table (about 10 ms per GiB); a live migration reads it
        just before freezing, and the frozen dump reuses it when /proc/PID/maps is
        unchanged since (same areas, permissions, files). Caveat: a madvise() covering
        whole areas in between changes VmFlags without changing maps; it goes unseen.
        """
        maps = self._read(f"{pid}/maps")
        flags = parse_smaps_vmflags(self._read(f"{pid}/smaps"))
        if self._read(f"{pid}/maps") == maps:  # no change while smaps was read
            _PRIMED_VMFLAGS[(str(self.proc), pid)] = (maps, flags)

    def read_maps(self, pid: int) -> tuple[Vma, ...]:
        import dataclasses

        primed = _PRIMED_VMFLAGS.pop((str(self.proc), pid), None)
        maps = self._read(f"{pid}/maps") if primed is not None else ""
        if primed is not None and primed[0] == maps:
            flags = primed[1]
        else:  # smaps first, then maps (as always before priming existed)
            flags = parse_smaps_vmflags(self._read(f"{pid}/smaps"))
            maps = self._read(f"{pid}/maps")
        mf = self.proc / str(pid) / "map_files"
        return tuple(
            dataclasses.replace(v, open_path=str(mf / f"{v.start:x}-{v.end:x}")) if v.kind is VmaKind.FILE else v
            for v in parse_maps(maps, flags)
        )

    def mm_info(self, pid: int) -> MmInfo:
        st = parse_stat(self._read(f"{pid}/stat"))
        try:
            raw = (self.proc / str(pid) / "auxv").read_bytes()
        except OSError as err:
            raise PlatformError(f"cannot read auxv of pid {pid}: {err.strerror}", errno=err.errno) from err
        auxv = struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])
        # trim after the first AT_NULL pair
        words = list(auxv)
        for i in range(0, len(words) - 1, 2):
            if words[i] == 0:
                words = words[: i + 2]
                break
        brk = st.start_brk
        for vma in parse_maps(self._read(f"{pid}/maps")):
            if vma.kind is VmaKind.HEAP:
                brk = vma.end
        status = parse_status(self._read(f"{pid}/status"))
        dumpable = 1
        thp = status.get("THP_enabled", "1") == "0"
        return MmInfo(
            start_code=st.start_code, end_code=st.end_code, start_data=st.start_data,
            end_data=st.end_data, start_brk=st.start_brk, brk=brk, start_stack=st.start_stack,
            arg_start=st.arg_start, arg_end=st.arg_end, env_start=st.env_start, env_end=st.env_end,
            auxv=tuple(words), dumpable=dumpable, exe=self._readlink(f"{pid}/exe"),
            exe_open_path=str(self.proc / str(pid) / "exe"),
            thp_disabled=thp,
        )

    def _unix_peers(self, pid: int) -> dict[int, int]:
        """unix socket inode -> peer inode, from NETLINK_SOCK_DIAG (only for our own
        network namespace; empty for another one or when the kernel refuses)."""
        import socket

        try:
            if os.stat(self.proc / str(pid) / "ns" / "net").st_ino != os.stat("/proc/self/ns/net").st_ino:
                return {}
            sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
        except OSError:
            return {}
        peers: dict[int, int] = {}
        try:
            # unix_diag_req: family, protocol, pad, states, ino, show (UDIAG_SHOW_PEER), cookie[2]
            req = struct.pack("<BBHIIIII", 1, 0, 0, 0xFFFF_FFFF, 0, 4, 0, 0)
            # nlmsghdr: len, type SOCK_DIAG_BY_FAMILY, flags NLM_F_REQUEST|NLM_F_DUMP, seq, pid
            sk.sendto(struct.pack("<IHHII", 16 + len(req), 20, 0x301, 1, 0) + req, (0, 0))
            while True:
                data = sk.recv(1 << 16)
                if not data:
                    return peers
                off = 0
                while off + 16 <= len(data):
                    mlen, mtype = struct.unpack_from("<IH", data, off)
                    if mtype == 3:  # NLMSG_DONE
                        return peers
                    if mtype == 2 or mlen < 16:  # NLMSG_ERROR
                        return peers
                    body = off + 16
                    ino = struct.unpack_from("<I", data, body + 4)[0]  # unix_diag_msg.udiag_ino
                    a = body + 16
                    while a + 4 <= off + mlen:
                        alen, atype = struct.unpack_from("<HH", data, a)
                        if alen < 4:
                            break
                        if atype == 2 and alen >= 8:  # UNIX_DIAG_PEER
                            peers[ino] = struct.unpack_from("<I", data, a + 4)[0]
                        a += (alen + 3) & ~3
                    off += (mlen + 3) & ~3
        except OSError:
            return peers
        finally:
            sk.close()

    def _socket_table(self, pid: int) -> tuple[dict[int, tuple[int, int, str]], dict[int, tuple[int, str, str, int, int]]]:
        """Socket tables of *pid*'s network namespace (/proc/PID/net/...)."""
        unix: dict[int, tuple[int, int, str]] = {}
        inet: dict[int, tuple[int, str, str, int, int]] = {}
        try:
            unix = parse_net_unix(self._read(f"{pid}/net/unix"))
        except PlatformError:
            pass
        for name, fam, typ, proto in (("tcp", 2, 1, 6), ("tcp6", 10, 1, 6), ("udp", 2, 2, 17), ("udp6", 10, 2, 17)):
            try:
                for ino, (loc, rem, state) in parse_net_inet(self._read(f"{pid}/net/{name}")).items():
                    inet[ino] = (fam, loc, rem, state, typ * 256 + proto)
            except PlatformError:
                pass
        return unix, inet

    def list_fds(self, pid: int) -> tuple[FdInfo, ...]:
        fd_dir = self.proc / str(pid) / "fd"
        try:
            fds = sorted(int(n) for n in os.listdir(fd_dir) if n.isdigit())
        except OSError as err:
            raise PlatformError(f"cannot list fds of pid {pid}: {err.strerror}", errno=err.errno) from err
        tables: tuple[dict[int, tuple[int, int, str]], dict[int, tuple[int, str, str, int, int]]] | None = None
        peers: dict[int, int] | None = None
        out: list[FdInfo] = []
        for fd in fds:
            try:
                link = os.readlink(fd_dir / str(fd))
                st = os.stat(fd_dir / str(fd))
                info = parse_fdinfo(self._read(f"{pid}/fdinfo/{fd}"))
            except FileNotFoundError:
                continue  # closed meanwhile (only possible while running)
            except OSError as err:
                raise PlatformError(f"cannot inspect fd {fd} of pid {pid}: {err.strerror}", errno=err.errno) from err
            flags = int(info.get("flags", "0"), 8)
            cloexec = bool(flags & 0o2000000)
            flags &= ~0o2000000
            mode = st.st_mode
            kind: FdKind
            sock: SocketInfo | None = None
            pipe_id = 0
            if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                kind = FdKind.MEMFD if link.startswith("/memfd:") else FdKind.REG
            elif stat.S_ISCHR(mode):
                major = os.major(st.st_rdev)
                if major in _TTY_MAJORS:
                    kind = FdKind.TTY
                elif major == _MEM_MAJOR:
                    kind = FdKind.REG
                else:
                    kind = FdKind.CHR
            elif stat.S_ISFIFO(mode):
                if link.startswith("pipe:["):
                    kind = FdKind.PIPE
                    pipe_id = st.st_ino
                else:
                    kind = FdKind.FIFO
                    pipe_id = st.st_ino
            elif stat.S_ISSOCK(mode):
                if tables is None:
                    tables = self._socket_table(pid)
                unix, inet = tables
                ino = st.st_ino
                if ino in unix:
                    typ, state, path = unix[ino]
                    kind = FdKind.UNIX_SOCKET
                    if peers is None:
                        peers = self._unix_peers(pid)
                    sock = SocketInfo(family=1, type=typ, protocol=0, state=state, ino=ino, local=path,
                                      peer_ino=peers.get(ino, 0))
                elif ino in inet:
                    fam, loc, rem, state, tp = inet[ino]
                    kind = FdKind.INET_SOCKET
                    sock = SocketInfo(family=fam, type=tp // 256, protocol=tp % 256, state=state,
                                      ino=ino, local=loc, peer=rem)
                else:
                    kind = FdKind.OTHER_SOCKET
                    sock = SocketInfo(family=0, type=0, protocol=0, state=0, ino=ino)
            elif link.startswith("anon_inode:"):
                what = link[len("anon_inode:") :].strip("[]")
                kind = {
                    "eventfd": FdKind.EVENTFD, "eventpoll": FdKind.EVENTPOLL,
                    "signalfd": FdKind.SIGNALFD, "inotify": FdKind.INOTIFY,
                    "fanotify": FdKind.FANOTIFY, "timerfd": FdKind.TIMERFD,
                }.get(what, FdKind.ANON_OTHER)
            elif link.startswith(("net:[", "mnt:[", "pid:[", "uts:[", "ipc:[", "user:[", "cgroup:[", "time:[")):
                kind = FdKind.NSFS
            else:
                kind = FdKind.ANON_OTHER
            tty = self._tty_info(pid, fd, st) if kind is FdKind.TTY else None
            extra = tuple((k, v) for k, v in info.items() if k not in ("pos", "flags", "mnt_id", "ino"))
            out.append(FdInfo(
                fd=fd, kind=kind, path=link, pos=int(info.get("pos", "0")), flags=flags,
                cloexec=cloexec, mode=mode, ino=st.st_ino, dev=st.st_dev, rdev=st.st_rdev,
                size=st.st_size, mnt_id=int(info.get("mnt_id", "-1")), pipe_id=pipe_id,
                socket=sock, tty=tty, extra=extra, open_path=str(fd_dir / str(fd)),
            ))
        return tuple(out)

    def _tty_info(self, pid: int, fd: int, st: os.stat_result) -> TtyInfo | None:
        """Termios, window size and ownership of a pty slave (None for other terminals)."""
        import fcntl

        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if not 136 <= major <= 143:
            return None
        try:
            tfd = os.open(self.proc / str(pid) / "fd" / str(fd), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as err:
            raise PlatformError(f"cannot open tty fd {fd} of pid {pid}: {err.strerror}", errno=err.errno) from err
        try:
            def termios(req: int) -> Termios:
                raw = fcntl.ioctl(tfd, req, b"\0" * 36)
                i, o, c, lf = struct.unpack_from("<IIII", raw)
                return Termios(iflag=i, oflag=o, cflag=c, lflag=lf, line=raw[16], cc=tuple(raw[17:36]))

            tios = termios(0x5401)  # TCGETS
            locked = termios(0x5456)  # TIOCGLCKTRMIOS
            ws = struct.unpack("<HHHH", fcntl.ioctl(tfd, 0x5413, b"\0" * 8))  # TIOCGWINSZ
            excl = struct.unpack("<i", fcntl.ioctl(tfd, 0x80045440, b"\0" * 4))[0] != 0  # TIOCGEXCL
            node = os.stat(os.readlink(self.proc / str(pid) / "fd" / str(fd)))
        except OSError as err:
            raise PlatformError(f"cannot query tty fd {fd} of pid {pid}: {err.strerror}", errno=err.errno) from err
        finally:
            os.close(tfd)
        stat_text = parse_stat(self._read(f"{pid}/stat"))
        fields = self._read(f"{pid}/stat").rsplit(")", 1)[1].split()
        tty_nr, tpgid = int(fields[4]), int(fields[5])
        is_ctty = tty_nr == _encode_dev(major, minor)
        return TtyInfo(
            index=(major - 136) * 256 + minor, rdev=_encode_dev(major, minor),
            dev=_encode_dev(os.major(node.st_dev), os.minor(node.st_dev)), uid=node.st_uid, gid=node.st_gid,
            termios=tios, termios_locked=locked, winsize=(ws[0], ws[1], ws[2], ws[3]), exclusive=excl,
            sid=stat_text.sid if is_ctty else 0, pgrp=max(tpgid, 0) if is_ctty else 0,
        )

    def fs_info(self, pid: int) -> FsInfo:
        status = parse_status(self._read(f"{pid}/status"))
        return FsInfo(cwd=self._readlink(f"{pid}/cwd"), root=self._readlink(f"{pid}/root"),
                      umask=_status_int(status, "Umask", 8, 0o22),
                      cwd_open_path=str(self.proc / str(pid) / "cwd"),
                      root_open_path=str(self.proc / str(pid) / "root"))

    def creds(self, pid: int) -> Creds:
        return creds_from_status(parse_status(self._read(f"{pid}/status")))

    def rlimits(self, pid: int) -> tuple[Rlimit, ...]:
        return parse_limits(self._read(f"{pid}/limits"))

    def namespaces(self, pid: int) -> NamespaceIds:
        vals: dict[str, int] = {}
        for ns in ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"):
            try:
                vals[ns] = os.stat(self.proc / str(pid) / "ns" / ns).st_ino
            except OSError:
                vals[ns] = 0
        return NamespaceIds(**vals)

    def uts(self, pid: int) -> UtsInfo:
        mine = os.stat("/proc/self/ns/uts").st_ino
        theirs = self.namespaces(pid).uts
        if theirs in (0, mine):
            u = os.uname()
            dom = Path("/proc/sys/kernel/domainname").read_text().strip()
            return UtsInfo(nodename=u.nodename, domainname=dom)
        import subprocess

        cmd = ["nsenter", "-t", str(pid), "-u", "cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise PlatformError("cannot read uts names", command=cmd, stderr=res.stderr)
        lines = res.stdout.splitlines()
        return UtsInfo(nodename=lines[0], domainname=lines[1] if len(lines) > 1 else "")

    def clocks(self) -> Clocks:
        return Clocks(monotonic_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC),
                      boottime_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME))

    # -- memory ----------------------------------------------------------
    def _zero_page_pfn(self) -> int | None:
        """PFN of the kernel's shared zero page (None if PFNs are hidden)."""
        if self._zero_pfn is False:
            import mmap

            m = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            try:
                _ = m[0]  # a read fault maps the shared zero page
                holder = ctypes.c_char.from_buffer(m)
                addr = ctypes.addressof(holder)
                del holder
                with open("/proc/self/pagemap", "rb") as f:
                    f.seek(addr // PAGE_SIZE * 8)
                    (pme,) = struct.unpack("<Q", f.read(8))
                pfn = pme & PME_PFN_MASK
                self._zero_pfn = pfn if (pme & PME_PRESENT and pfn) else None
            finally:
                m.close()
        return self._zero_pfn if isinstance(self._zero_pfn, int) and not isinstance(self._zero_pfn, bool) else None

    def present_runs(self, pid: int, vma: Vma) -> list[tuple[int, int]]:
        if vma.kind in (VmaKind.VVAR, VmaKind.VSYSCALL, VmaKind.SHMEM, VmaKind.OTHER):
            return []
        if vma.flags & MAP_SHARED:
            return []
        private_file = vma.kind is VmaKind.FILE
        if self._scan_ok:
            try:
                return self._present_by_scan(pid, vma, private_file)
            except OSError as err:
                if err.errno not in (errno_mod.ENOTTY, errno_mod.EINVAL, errno_mod.EOPNOTSUPP):
                    raise PlatformError(f"PAGEMAP_SCAN of pid {pid} failed: {err.strerror}", errno=err.errno) from err
                self._scan_ok = False  # an older kernel: the pagemap file, read in Python
        return self._present_by_pagemap(pid, vma, private_file)

    _scan_ok = True
    _scan_vec: ctypes.Array[ctypes.c_char] | None = None

    def _present_by_scan(self, pid: int, vma: Vma, private_file: bool) -> list[tuple[int, int]]:
        """Pages to dump by one PAGEMAP_SCAN walk: present or swapped, not the zero page,
        not (in a private file mapping) a page-cache page -- what
        :func:`present_runs_from_pagemap` decides from raw entries."""
        import fcntl

        vec_len = 4096
        if self._scan_vec is None:
            self._scan_vec = ctypes.create_string_buffer(PAGE_REGION.size * vec_len)
        vec = self._scan_vec
        excluded = PAGE_IS_PFNZERO | (PAGE_IS_FILE if private_file else 0)
        wanted = PAGE_IS_PRESENT | PAGE_IS_SWAPPED
        runs: list[tuple[int, int]] = []
        fd = os.open(self.proc / str(pid) / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            start = vma.start
            while start < vma.end:
                arg = ctypes.create_string_buffer(PM_SCAN_ARG.pack(
                    PM_SCAN_ARG.size, 0, start, vma.end, 0, ctypes.addressof(vec), vec_len, 0,
                    excluded, excluded, wanted, wanted), PM_SCAN_ARG.size)
                n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg, True)
                raw = vec.raw[: n * PAGE_REGION.size]
                for i in range(n):
                    lo, hi, _cat = PAGE_REGION.unpack_from(raw, i * PAGE_REGION.size)
                    last = runs[-1][0] + runs[-1][1] * PAGE_SIZE if runs else 0
                    lo = max(lo, last)  # a walk resumed at walk_end may report its last region again
                    if lo >= hi:
                        continue
                    if runs and last == lo:
                        runs[-1] = (runs[-1][0], runs[-1][1] + (hi - lo) // PAGE_SIZE)
                    else:
                        runs.append((lo, (hi - lo) // PAGE_SIZE))
                walk_end = PM_SCAN_ARG.unpack(arg.raw)[4]
                if walk_end >= vma.end or walk_end <= start:
                    break
                start = walk_end
        finally:
            os.close(fd)
        return runs

    def _present_by_pagemap(self, pid: int, vma: Vma, private_file: bool) -> list[tuple[int, int]]:
        zero = self._zero_page_pfn()
        runs: list[tuple[int, int]] = []
        chunk_pages = 1 << 16  # 512 KiB of pagemap per read
        try:
            fd = os.open(self.proc / str(pid) / "pagemap", os.O_RDONLY)
        except OSError as err:
            raise PlatformError(f"cannot open pagemap of pid {pid}: {err.strerror}", errno=err.errno) from err
        try:
            addr = vma.start
            while addr < vma.end:
                n = min(chunk_pages, (vma.end - addr) // PAGE_SIZE)
                data = os.pread(fd, n * 8, addr // PAGE_SIZE * 8)
                if len(data) != n * 8:
                    raise PlatformError(f"short pagemap read for pid {pid} at 0x{addr:x}")
                for start, cnt in present_runs_from_pagemap(data, addr, private_file=private_file, zero_pfn=zero):
                    if runs and runs[-1][0] + runs[-1][1] * PAGE_SIZE == start:
                        runs[-1] = (runs[-1][0], runs[-1][1] + cnt)
                    else:
                        runs.append((start, cnt))
                addr += n * PAGE_SIZE
        except OSError as err:
            raise PlatformError(f"cannot read pagemap of pid {pid}: {err.strerror}", errno=err.errno) from err
        finally:
            os.close(fd)
        return runs

    def read_memory_into(self, pid: int, iov: Sequence[tuple[int, int]], buf: memoryview) -> int:
        total = sum(n for _, n in iov)
        if total > len(buf):
            raise PlatformError(f"buffer of {len(buf)} bytes too small for {total} bytes")
        if total == 0:
            return 0
        cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
        base = ctypes.addressof(cbuf)
        done = 0
        idx = 0
        skip = 0  # bytes already read of iov[idx]
        try:
            while idx < len(iov):
                batch = iov[idx : idx + IOV_MAX]
                remote = (_Iovec * len(batch))()
                want = 0
                for k, (a, n) in enumerate(batch):
                    off = skip if k == 0 else 0
                    remote[k].base = a + off
                    remote[k].len = n - off
                    want += n - off
                local = _Iovec(base + done, want)
                got = _libc.process_vm_readv(pid, ctypes.byref(local), 1, remote, len(batch), 0)
                if got <= 0:
                    # unreadable for process_vm_readv (PROT_NONE, exec-only):
                    # /proc/PID/mem reads with FOLL_FORCE, one range at a time
                    a, n = iov[idx]
                    got = self._read_mem_file(pid, a + skip, buf[done : done + n - skip])
                done += got
                # advance idx/skip by got bytes
                while got > 0 and idx < len(iov):
                    left = iov[idx][1] - skip
                    if got >= left:
                        got -= left
                        idx += 1
                        skip = 0
                    else:
                        skip += got
                        got = 0
        finally:
            del cbuf
        return done

    def _read_mem_file(self, pid: int, addr: int, dest: memoryview) -> int:
        try:
            fd = os.open(self.proc / str(pid) / "mem", os.O_RDONLY)
            try:
                got = os.preadv(fd, [dest], addr)
            finally:
                os.close(fd)
        except OSError as err:
            raise PlatformError(f"cannot read {len(dest)} bytes at 0x{addr:x} of pid {pid}: {err.strerror}",
                                errno=err.errno) from err
        if got <= 0:
            raise PlatformError(f"read of pid {pid} memory at 0x{addr:x} returned nothing")
        return got

    def write_memory(self, pid: int, addr: int, data: bytes) -> None:
        if not data:
            return
        src = ctypes.create_string_buffer(data, len(data))
        local = _Iovec(ctypes.addressof(src), len(data))
        remote = _Iovec(addr, len(data))
        got = _libc.process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got != len(data):
            # read-only mappings: fall back to /proc/PID/mem (ptrace access)
            try:
                fd = os.open(self.proc / str(pid) / "mem", os.O_WRONLY)
                try:
                    if os.pwrite(fd, data, addr) != len(data):
                        raise PlatformError(f"short write of {len(data)} bytes at 0x{addr:x} in pid {pid}")
                finally:
                    os.close(fd)
            except OSError as err:
                raise PlatformError(f"cannot write {len(data)} bytes at 0x{addr:x} in pid {pid}: "
                                    f"{err.strerror}", errno=err.errno) from err

    def read_pipe_data(self, pid: int, fd: int, limit: int) -> PipeData:
        """Peek a pipe's buffer with tee(2) into a pipe of ours (nothing consumed)."""
        try:
            src = os.open(self.proc / str(pid) / "fd" / str(fd), os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            raise PlatformError(f"cannot open pipe fd {fd} of pid {pid}: {err.strerror}", errno=err.errno) from err
        r, w = os.pipe()
        try:
            import fcntl

            capacity = fcntl.fcntl(src, 1032)  # F_GETPIPE_SZ
            fcntl.fcntl(w, 1031, max(capacity, PAGE_SIZE))  # F_SETPIPE_SZ
            n = _libc.tee(src, w, min(limit, capacity), 2)  # SPLICE_F_NONBLOCK
            if n < 0:
                e = ctypes.get_errno()
                if e == errno_mod.EAGAIN:
                    return PipeData(data=b"", capacity=capacity)
                raise PlatformError(f"tee from pipe fd {fd} of pid {pid} failed: {os.strerror(e)}", errno=e)
            chunks = []
            left = n
            while left > 0:
                c = os.read(r, left)
                if not c:
                    break
                chunks.append(c)
                left -= len(c)
            return PipeData(data=b"".join(chunks), capacity=capacity)
        finally:
            os.close(src)
            os.close(r)
            os.close(w)

    # -- stopping ----------------------------------------------------------
    def seize(self, tid: int) -> None:
        _ptrace(PTRACE_SEIZE, tid, 0, 0)

    def interrupt(self, tid: int) -> None:
        _ptrace(PTRACE_INTERRUPT, tid, 0, 0)
        self._wait_stop(tid)

    def request_stop(self, tid: int) -> None:
        """PTRACE_INTERRUPT without waiting (a cgroup-frozen thread stops once thawed);
        :meth:`wait_stopped` collects the stop."""
        _ptrace(PTRACE_INTERRUPT, tid, 0, 0)

    def wait_stopped(self, tid: int) -> None:
        self._wait_stop(tid)

    def _wait_stop(self, tid: int) -> None:
        while True:
            try:
                _, status = os.waitpid(tid, WALL)
            except ChildProcessError as err:
                raise PlatformError(f"waitpid({tid}) failed: {err}", errno=err.errno) from err
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise PlatformError(f"thread {tid} exited while being stopped", errno=errno_mod.ESRCH)
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            event = status >> 16
            if event == PTRACE_EVENT_STOP:
                return
            if sig == 5 and event == 0:  # SIGTRAP from singlestep
                return
            # a signal arrived first: let it through and stop again
            _ptrace(PTRACE_CONT, tid, 0, sig)
            _ptrace(PTRACE_INTERRUPT, tid, 0, 0)

    def release(self, tid: int) -> None:
        _ptrace(PTRACE_DETACH, tid, 0, 0)

    def get_regs(self, tid: int) -> ThreadRegs:
        regs = _UserRegs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
        return ThreadRegs.from_sequence([int(getattr(regs, n)) for n in USER_REGS_FIELDS])

    def set_regs(self, tid: int, regs: ThreadRegs) -> None:
        raw = _UserRegs(*[_u64(v) for v in regs.as_tuple()])
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(raw))

    def get_xsave(self, tid: int) -> Xsave:
        buf = ctypes.create_string_buffer(16384)
        iov = _Iovec(ctypes.addressof(buf), len(buf))
        _ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))
        data = buf.raw[: iov.len]
        comps, cet = self._xstate_layout()
        return Xsave(data=data, component_offsets=comps, cet_supported=cet)

    def _xstate_layout(self) -> tuple[tuple[tuple[int, int, int], ...], bool]:
        """xsave component offsets (CPUID leaf 0xD) and CET_SS support, asked once."""
        if self._xstate is None:
            comps = tuple((c.number, c.offset, c.size) for c in linux_inject.xstate_components())
            cet = bool(linux_inject.cpuid(7, 0)[2] & (1 << 7))  # CPUID.7.0:ECX.CET_SS
            self._xstate = (comps or XSAVE_COMPONENTS, cet)
        return self._xstate

    def set_xsave(self, tid: int, xsave: Xsave) -> None:
        buf = ctypes.create_string_buffer(xsave.data, len(xsave.data))
        iov = _Iovec(ctypes.addressof(buf), len(xsave.data))
        _ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))

    def rseq(self, tid: int) -> Rseq | None:
        buf = ctypes.create_string_buffer(24)
        try:
            _ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, 24, ctypes.addressof(buf))
        except PlatformError as err:
            if err.errno in (errno_mod.EIO, errno_mod.EINVAL):
                return None
            raise
        ptr, size, sig, flags = struct.unpack("<QIII", buf.raw[:20])
        if ptr == 0:
            return None
        return Rseq(abi_pointer=ptr, abi_size=size, signature=sig, flags=flags)

    def robust_list(self, tid: int) -> tuple[int, int]:
        head = ctypes.c_ulong(0)
        length = ctypes.c_size_t(0)
        r = _libc.syscall(SYS_GET_ROBUST_LIST, tid, ctypes.byref(head), ctypes.byref(length))
        if r != 0:
            e = ctypes.get_errno()
            raise PlatformError(f"get_robust_list({tid}) failed: {os.strerror(e)}", errno=e)
        return head.value, length.value

    # -- syscall injection --------------------------------------------------
    def _inject_syscall(self, pid: int, tid: int, nr: int, *args: int) -> int:
        """Run one system call in stopped thread *tid*; returns its (signed) result.

        Uses :class:`capture.platform.linux_inject.Injector` (single step over a
        ``syscall`` instruction, registers restored); a signal that arrived
        meanwhile is sent to the thread again so it is not lost.
        """
        if pid not in self._syscall_insn:
            self._syscall_insn[pid] = linux_inject.find_syscall_insn(pid)
        inj = linux_inject.Injector(tid, self._syscall_insn[pid], keep_regs=False)
        try:
            return inj(nr, *args, check=False)
        finally:
            for sig in inj.deferred_signals:
                _libc.syscall(SYS_TGKILL, pid, tid, sig)

    def _scratch(self, tid: int, size: int) -> int:
        regs = self.get_regs(tid)
        return (regs.rsp - 128 - size - 64) & ~0xF

    def _set_dispositions(self, pid: int) -> int:
        """Bit (sig - 1) set for every signal *pid* ignores or catches (/proc status)."""
        bits = 0
        for line in self._read(f"{pid}/status").splitlines():
            if line.startswith(("SigIgn:", "SigCgt:")):
                bits |= int(line.split()[1], 16)
        return bits

    def sigactions(self, pid: int, tid: int) -> tuple[SigAction, ...]:
        """Every signal's sigaction. Only signals the process ignores or catches (and
        SIGCHLD, whose SA_NOCLD* flags matter with SIG_DFL too) are asked by injection;
        the others are SIG_DFL, reported with zero flags, mask and restorer (exec leaves
        them so; a program that reset one with flags differs only in those flags)."""
        out: list[SigAction] = []
        buf_addr = self._scratch(tid, 32)
        raw = bytearray(32)
        if pid not in self._syscall_insn:
            self._syscall_insn[pid] = linux_inject.find_syscall_insn(pid)
        wanted = self._set_dispositions(pid) | 1 << (17 - 1)
        # one injector for all calls: registers saved once and put back once
        inj = linux_inject.Injector(tid, self._syscall_insn[pid], keep_regs=True)
        try:
            for sig in range(1, 65):
                if sig in (9, 19) or not wanted >> (sig - 1) & 1:
                    out.append(SigAction(signo=sig, handler=0, flags=0, restorer=0, mask=0))
                    continue
                r = inj(SYS_RT_SIGACTION, sig, 0, buf_addr, 8, check=False)
                if r < 0:
                    raise PlatformError(f"rt_sigaction({sig}) in pid {pid} failed", errno=-r)
                self.read_memory_into(pid, [(buf_addr, 32)], memoryview(raw))
                handler, flags, restorer, mask = struct.unpack("<QQQQ", raw)
                out.append(SigAction(signo=sig, handler=handler, flags=flags, restorer=restorer, mask=mask))
        finally:
            inj.restore()
            for sig in inj.deferred_signals:  # not lost: sent to the thread again
                _libc.syscall(SYS_TGKILL, pid, tid, sig)
        return tuple(out)

    def sigaltstack(self, tid: int) -> SigAltStack:
        pid = self._tgid(tid)
        addr = self._scratch(tid, 24)
        r = self._inject_syscall(pid, tid, SYS_SIGALTSTACK, 0, addr)
        if r < 0:
            raise PlatformError(f"sigaltstack in tid {tid} failed", errno=-r)
        raw = bytearray(24)
        self.read_memory_into(pid, [(addr, 24)], memoryview(raw))
        sp, flags, size = struct.unpack("<Qi4xQ", raw)
        return SigAltStack(ss_sp=sp, ss_size=size, ss_flags=flags)

    def clear_tid_address(self, tid: int) -> int:
        pid = self._tgid(tid)
        addr = self._scratch(tid, 8)
        r = self._inject_syscall(pid, tid, SYS_PRCTL, PR_GET_TID_ADDRESS, addr)
        if r < 0:
            raise PlatformError(f"prctl(PR_GET_TID_ADDRESS) in tid {tid} failed", errno=-r)
        raw = bytearray(8)
        self.read_memory_into(pid, [(addr, 8)], memoryview(raw))
        value: int = struct.unpack("<Q", raw)[0]
        return value

    def task_extras(self, pid: int, tid: int) -> TaskExtras:
        addr = self._scratch(tid, 32)
        raw = bytearray(32)
        timers: list[ITimer] = []
        for which in (0, 1, 2):
            r = self._inject_syscall(pid, tid, SYS_GETITIMER, which, addr)
            if r < 0:
                raise PlatformError(f"getitimer({which}) in pid {pid} failed", errno=-r)
            self.read_memory_into(pid, [(addr, 32)], memoryview(raw))
            isec, iusec, vsec, vusec = struct.unpack("<qqqq", raw)
            timers.append(ITimer(isec=isec, iusec=iusec, vsec=vsec, vusec=vusec))
        r = self._inject_syscall(pid, tid, SYS_PRCTL, PR_GET_CHILD_SUBREAPER, addr)
        if r < 0:
            raise PlatformError(f"prctl(PR_GET_CHILD_SUBREAPER) in pid {pid} failed", errno=-r)
        self.read_memory_into(pid, [(addr, 4)], memoryview(raw)[:4])
        subreaper = struct.unpack("<i", raw[:4])[0] != 0
        ptimers = []
        for t in parse_timers(self._read(f"{pid}/timers")):
            r = self._inject_syscall(pid, tid, SYS_TIMER_GETTIME, t.it_id, addr)
            if r < 0:
                raise PlatformError(f"timer_gettime({t.it_id}) in pid {pid} failed", errno=-r)
            self.read_memory_into(pid, [(addr, 32)], memoryview(raw))
            isec, insec, vsec, vnsec = struct.unpack("<qqqq", raw)
            over = self._inject_syscall(pid, tid, SYS_TIMER_GETOVERRUN, t.it_id)
            if over < 0:
                raise PlatformError(f"timer_getoverrun({t.it_id}) in pid {pid} failed", errno=-over)
            ptimers.append(dataclasses.replace(t, overrun=over, isec=isec, insec=insec, vsec=vsec, vnsec=vnsec))
        return TaskExtras(
            posix_timers=tuple(sorted(ptimers, key=lambda t: t.it_id)),
            securebits=self._prctl_value(pid, tid, PR_GET_SECUREBITS),
            dumpable=self._prctl_value(pid, tid, PR_GET_DUMPABLE),
            thp_disabled=self._prctl_value(pid, tid, PR_GET_THP_DISABLE) != 0,
            child_subreaper=subreaper,
            itimers=(timers[0], timers[1], timers[2]),
        )

    def _prctl_value(self, pid: int, tid: int, option: int) -> int:
        r = self._inject_syscall(pid, tid, SYS_PRCTL, option)
        if r < 0:
            raise PlatformError(f"prctl({option}) in pid {pid} failed", errno=-r)
        return r

    def cgroups(self, pid: int) -> tuple[CgroupMembership, ...]:
        out = []
        for line in self._read(f"{pid}/cgroup").splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                out.append(CgroupMembership(controllers=parts[1], path=parts[2]))
        return tuple(out)

    def same_open_file(self, pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
        r = _libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2)
        if r < 0:
            e = ctypes.get_errno()
            raise PlatformError(f"kcmp({pid1}:{fd1}, {pid2}:{fd2}) failed: {os.strerror(e)}", errno=e)
        return bool(r == 0)

    def _tgid(self, tid: int) -> int:
        status = parse_status(self._read(f"{tid}/status"))
        return _status_int(status, "Tgid")

    def kill(self, pid: int, signo: int) -> None:
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass
        except OSError as err:
            raise PlatformError(f"kill({pid}, {signo}) failed: {err.strerror}", errno=err.errno) from err
