"""Linux x86_64 ptrace primitives: seize, registers, xsave, syscall injection.

This is the one place that issues ``ptrace(2)``, ``process_vm_readv/writev``
and ``cpuid`` for the capture engine on Linux. Both the dump (reading a live
tree) and the restore (turning stub processes into the checkpointed ones) use
it; :mod:`capture.platform.linux` wraps it behind the platform Protocol.

What it provides:

- :func:`seize`, :func:`interrupt`, :func:`wait_stop`, :func:`detach`: attach
  without a visible signal (``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT``).
- :func:`get_regs` / :func:`set_regs`: ``struct user_regs_struct`` incl.
  ``fs_base``/``gs_base`` as :class:`capture.platform.base.ThreadRegs`.
- :func:`get_xstate` / :func:`set_xstate` (``NT_X86_XSTATE``),
  :func:`get_fpregs` / :func:`set_fpregs` (``NT_PRFPREG``),
  :func:`xstate_components` (component offsets from ``cpuid`` leaf 0xD).
- :class:`Injector`: runs one system call inside a stopped thread by pointing
  ``rip`` at a ``syscall`` instruction (two bytes ``0f 05`` anywhere in an
  executable mapping) and single-stepping over it; registers are restored
  afterwards unless the caller says otherwise. ``fork``/``clone``/``clone3``
  children are reported (the tracer must have set ``PTRACE_O_TRACE*``).
- :class:`RemoteScratch`: an injected anonymous mapping for arguments.
- :func:`write_memory` / :func:`read_memory` / :func:`writev_remote`:
  ``process_vm_writev`` / ``readv`` in large vectored batches.

What it refuses to do: it does not guess. A thread that does not stop, a
``ptrace`` request that fails, a stop that is not the one expected: each
raises :class:`capture.errors.PlatformError` naming the request, the tid and
the errno. It only knows x86_64 (other machines are refused on first use).
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import os
import signal
import struct
from dataclasses import dataclass, field
from typing import Callable, Final, Iterable, Sequence

from capture.errors import PlatformError
from capture.platform.base import USER_REGS_FIELDS, Rseq, ThreadRegs

# --- constants (Linux, x86_64) -------------------------------------------------

PTRACE_PEEKDATA: Final = 2
PTRACE_CONT: Final = 7
PTRACE_KILL: Final = 8
PTRACE_SINGLESTEP: Final = 9
PTRACE_GETREGS: Final = 12
PTRACE_SETREGS: Final = 13
PTRACE_DETACH: Final = 17
PTRACE_SYSCALL: Final = 24
PTRACE_SETOPTIONS: Final = 0x4200
PTRACE_GETEVENTMSG: Final = 0x4201
PTRACE_GETSIGINFO: Final = 0x4202
PTRACE_GETREGSET: Final = 0x4204
PTRACE_SETREGSET: Final = 0x4205
PTRACE_SEIZE: Final = 0x4206
PTRACE_INTERRUPT: Final = 0x4207
PTRACE_LISTEN: Final = 0x4208
PTRACE_GET_RSEQ_CONFIGURATION: Final = 0x420F

PTRACE_O_TRACESYSGOOD: Final = 0x1
PTRACE_O_TRACEFORK: Final = 0x2
PTRACE_O_TRACEVFORK: Final = 0x4
PTRACE_O_TRACECLONE: Final = 0x8
PTRACE_O_TRACEEXEC: Final = 0x10
PTRACE_O_EXITKILL: Final = 0x100000

PTRACE_EVENT_FORK: Final = 1
PTRACE_EVENT_VFORK: Final = 2
PTRACE_EVENT_CLONE: Final = 3
PTRACE_EVENT_EXEC: Final = 4
PTRACE_EVENT_EXIT: Final = 6
PTRACE_EVENT_STOP: Final = 128

NT_PRFPREG: Final = 2
NT_X86_XSTATE: Final = 0x202

WALL: Final = 0x40000000  # __WALL

#: options the restorer and the dump use: children of injected fork/clone are
#: traced from birth, and everything traced dies if the tracer dies.
TRACE_CHILDREN: Final = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL

#: Linux x86_64 system call numbers (the target OS's table, never the host's).
SYS: Final[dict[str, int]] = {
    "read": 0, "write": 1, "open": 2, "close": 3, "lseek": 8, "mmap": 9,
    "mprotect": 10, "munmap": 11, "brk": 12, "rt_sigaction": 13,
    "rt_sigprocmask": 14, "ioctl": 16, "pwrite64": 18, "mremap": 25,
    "madvise": 28, "dup": 32, "dup2": 33, "getitimer": 36, "setitimer": 38, "seccomp": 317,
    "getpid": 39, "clone": 56, "fork": 57, "exit": 60, "wait4": 61, "kill": 62,
    "fcntl": 72, "chdir": 80, "fchdir": 81, "umask": 95, "getrlimit": 97,
    "setuid": 105, "setgid": 106, "setpgid": 109, "getppid": 110,
    "getpgrp": 111, "setsid": 112, "setgroups": 116, "setresuid": 117,
    "setresgid": 119, "getpgid": 121, "setfsuid": 122, "setfsgid": 123,
    "getsid": 124, "capset": 126, "rt_sigqueueinfo": 129, "sigaltstack": 131, "personality": 135,
    "getpriority": 140, "setpriority": 141, "prctl": 157, "arch_prctl": 158,
    "setrlimit": 160, "chroot": 161, "gettid": 186, "set_tid_address": 218,
    "exit_group": 231, "openat": 257, "set_robust_list": 273, "dup3": 292,
    "rt_tgsigqueueinfo": 297,
    "pipe2": 293, "prlimit64": 302, "rseq": 334, "pidfd_open": 434,
    "clone3": 435, "close_range": 436,
}

SYSCALL_INSN: Final = b"\x0f\x05"
PAGE: Final = 4096


# --- libc ------------------------------------------------------------------------

class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _UserRegs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in USER_REGS_FIELDS]


class _RseqConfig(ctypes.Structure):
    _fields_ = [
        ("rseq_abi_pointer", ctypes.c_uint64),
        ("rseq_abi_size", ctypes.c_uint32),
        ("signature", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


def _load_libc() -> ctypes.CDLL:
    # the C library the interpreter itself runs on (no ctypes.util lookup at import)
    lib = ctypes.CDLL(None, use_errno=True)
    lib.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    lib.ptrace.restype = ctypes.c_long
    lib.process_vm_writev.argtypes = [
        ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong,
    ]
    lib.process_vm_writev.restype = ctypes.c_ssize_t
    lib.process_vm_readv.argtypes = lib.process_vm_writev.argtypes
    lib.process_vm_readv.restype = ctypes.c_ssize_t
    lib.syscall.restype = ctypes.c_long
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.mmap.restype = ctypes.c_void_p
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.munmap.restype = ctypes.c_int
    return lib


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once (refuses anything but x86_64)."""
    global _libc
    if _libc is None:
        machine = os.uname().machine
        if machine not in ("x86_64", "amd64"):
            raise PlatformError(f"ptrace injection supports x86_64 only, this host is {machine!r}")
        _libc = _load_libc()
    return _libc


def _ptrace(request: int, tid: int, addr: int | None, data: int | ctypes.c_void_p | None, what: str) -> int:
    ctypes.set_errno(0)
    res = int(libc().ptrace(request, tid, addr, data))
    if res == -1:
        err = ctypes.get_errno()
        if err:
            raise PlatformError(f"ptrace({what}) on tid {tid} failed: {os.strerror(err)}", errno=err)
    return res


# --- stops -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Stop:
    """How a traced thread stopped (decoded wait status)."""

    tid: int
    status: int

    @property
    def stopped(self) -> bool:
        return (self.status & 0xFF) == 0x7F

    @property
    def exited(self) -> bool:
        return os.WIFEXITED(self.status) or os.WIFSIGNALED(self.status)

    @property
    def signal(self) -> int:
        return (self.status >> 8) & 0xFF if self.stopped else 0

    @property
    def event(self) -> int:
        return (self.status >> 16) & 0xFFFF if self.stopped else 0

    def describe(self) -> str:
        if os.WIFEXITED(self.status):
            return f"exited with status {os.WEXITSTATUS(self.status)}"
        if os.WIFSIGNALED(self.status):
            return f"killed by signal {os.WTERMSIG(self.status)}"
        if self.stopped:
            return f"stopped by signal {self.signal} event {self.event}"
        return f"wait status 0x{self.status:x}"


def wait_stop(tid: int, *, timeout_hint: str = "") -> Stop:
    """Wait for the next state change of *tid* (any thread, __WALL)."""
    while True:
        try:
            got, status = os.waitpid(tid, WALL)
        except InterruptedError:
            continue
        except ChildProcessError as err:
            raise PlatformError(f"waitpid({tid}) failed{timeout_hint}: {err}", errno=err.errno) from err
        if got == tid:
            return Stop(tid, status)


def seize(tid: int, options: int = TRACE_CHILDREN) -> None:
    """PTRACE_SEIZE *tid* (no stop, no signal) with *options*."""
    _ptrace(PTRACE_SEIZE, tid, 0, options, "PTRACE_SEIZE")


def unshare_pid_namespace() -> None:
    """unshare(CLONE_NEWPID): this process's next child is pid 1 of a new pid namespace."""
    if libc().unshare(0x20000000) != 0:
        err = ctypes.get_errno()
        raise PlatformError(f"unshare(CLONE_NEWPID) failed: {os.strerror(err)}", errno=err)


def set_options(tid: int, options: int) -> None:
    _ptrace(PTRACE_SETOPTIONS, tid, 0, options, "PTRACE_SETOPTIONS")


def interrupt(tid: int) -> Stop:
    """Stop a seized thread and wait until it reports the (first) stop.

    Usually that is the PTRACE_EVENT_STOP of the interrupt. If a signal was
    being delivered at that moment, the first stop is that signal's
    delivery-stop instead: :attr:`Stop.signal` names it and the caller must
    pass it back when resuming (or the signal is lost).
    """
    _ptrace(PTRACE_INTERRUPT, tid, 0, 0, "PTRACE_INTERRUPT")
    stop = wait_stop(tid)
    if not stop.stopped:
        raise PlatformError(f"thread {tid} {stop.describe()} while being stopped")
    return stop


def detach(tid: int, sig: int = 0) -> None:
    """PTRACE_DETACH: the thread runs on (delivering *sig* if non-zero)."""
    _ptrace(PTRACE_DETACH, tid, 0, sig, "PTRACE_DETACH")


def resume(tid: int, sig: int = 0) -> None:
    _ptrace(PTRACE_CONT, tid, 0, sig, "PTRACE_CONT")


def singlestep(tid: int, sig: int = 0) -> None:
    _ptrace(PTRACE_SINGLESTEP, tid, 0, sig, "PTRACE_SINGLESTEP")


def event_msg(tid: int) -> int:
    val = ctypes.c_ulong(0)
    _ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(val), "PTRACE_GETEVENTMSG")
    return int(val.value)


# --- registers -------------------------------------------------------------------

def get_regs(tid: int) -> ThreadRegs:
    regs = _UserRegs()
    _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs), "PTRACE_GETREGS")
    return ThreadRegs(*(int(getattr(regs, n)) for n in USER_REGS_FIELDS))


def set_regs(tid: int, values: ThreadRegs) -> None:
    regs = _UserRegs(*(v & 0xFFFF_FFFF_FFFF_FFFF for v in values.as_tuple()))
    _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs), "PTRACE_SETREGS")


def _get_regset(tid: int, note: int, size: int, what: str) -> bytes:
    buf = ctypes.create_string_buffer(size)
    iov = _IoVec(ctypes.cast(buf, ctypes.c_void_p), size)
    _ptrace(PTRACE_GETREGSET, tid, note, ctypes.addressof(iov), what)
    return buf.raw[: iov.iov_len]


def _set_regset(tid: int, note: int, data: bytes, what: str) -> None:
    buf = ctypes.create_string_buffer(data, len(data))
    iov = _IoVec(ctypes.cast(buf, ctypes.c_void_p), len(data))
    _ptrace(PTRACE_SETREGSET, tid, note, ctypes.addressof(iov), what)


def get_xstate(tid: int) -> bytes:
    """The thread's xsave area in the kernel's (standard, uncompacted) layout."""
    return _get_regset(tid, NT_X86_XSTATE, 64 * 1024, "PTRACE_GETREGSET NT_X86_XSTATE")


def set_xstate(tid: int, data: bytes) -> None:
    _set_regset(tid, NT_X86_XSTATE, data, "PTRACE_SETREGSET NT_X86_XSTATE")


def get_fpregs(tid: int) -> bytes:
    """The 512-byte FXSAVE area (``struct user_fpregs_struct``)."""
    return _get_regset(tid, NT_PRFPREG, 512, "PTRACE_GETREGSET NT_PRFPREG")


def set_fpregs(tid: int, data: bytes) -> None:
    if len(data) != 512:
        raise PlatformError(f"NT_PRFPREG needs 512 bytes, got {len(data)}")
    _set_regset(tid, NT_PRFPREG, data, "PTRACE_SETREGSET NT_PRFPREG")


def get_rseq(tid: int) -> Rseq | None:
    """The thread's rseq registration (PTRACE_GET_RSEQ_CONFIGURATION), or None."""
    conf = _RseqConfig()
    try:
        _ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(conf), ctypes.addressof(conf),
                "PTRACE_GET_RSEQ_CONFIGURATION")
    except PlatformError as err:
        if err.errno in (errno_mod.EIO, errno_mod.EINVAL):
            return None
        raise
    if conf.rseq_abi_pointer == 0:
        return None
    return Rseq(int(conf.rseq_abi_pointer), int(conf.rseq_abi_size), int(conf.signature), int(conf.flags))


# --- cpuid and the xsave layout --------------------------------------------------

# push rbx; mov r8,rdx; mov eax,edi; mov ecx,esi; cpuid;
# mov [r8],eax; mov [r8+4],ebx; mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret
_CPUID_CODE: Final = bytes.fromhex("534989d089f889f10fa241890041895804418948084189500c5bc3")
_cpuid_fn: Callable[[int, int, int], None] | None = None
_cpuid_mem: mmap.mmap | None = None


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of the ``cpuid`` instruction on this CPU."""
    global _cpuid_fn, _cpuid_mem
    if _cpuid_fn is None:
        mem = mmap.mmap(-1, PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        mem.write(_CPUID_CODE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)
        _cpuid_fn = proto(addr)
        _cpuid_mem = mem
    out = (ctypes.c_uint32 * 4)()
    _cpuid_fn(leaf, subleaf, ctypes.addressof(out))
    return int(out[0]), int(out[1]), int(out[2]), int(out[3])


@dataclass(frozen=True, slots=True)
class XstateComponent:
    number: int
    offset: int
    size: int


_xstate_cache: tuple[XstateComponent, ...] | None = None


def xstate_components() -> tuple[XstateComponent, ...]:
    """User xsave components 2..18 this CPU supports, standard-format offsets."""
    global _xstate_cache
    if _xstate_cache is None:
        eax, _, _, edx = cpuid(0xD, 0)
        supported = eax | (edx << 32)
        comps = []
        for i in range(2, 19):
            if supported & (1 << i):
                size, offset, _ecx, _ = cpuid(0xD, i)
                if size and offset:
                    comps.append(XstateComponent(i, offset, size))
        _xstate_cache = tuple(comps)
    return _xstate_cache


# --- memory ------------------------------------------------------------------------

IOV_MAX: Final = 1024


def _vm_rw(pid: int, local: Sequence[tuple[int, int]], remote: Sequence[tuple[int, int]], write: bool) -> int:
    lib = libc()
    fn = lib.process_vm_writev if write else lib.process_vm_readv
    name = "process_vm_writev" if write else "process_vm_readv"
    total = 0
    li = 0
    ri = 0
    # local and remote lists are consumed in batches of IOV_MAX each; a
    # partial transfer advances both cursors byte-exactly.
    lq = [list(x) for x in local]
    rq = [list(x) for x in remote]
    while li < len(lq) and ri < len(rq):
        lb = lq[li : li + IOV_MAX]
        rb = rq[ri : ri + IOV_MAX]
        larr = (_IoVec * len(lb))(*[_IoVec(a, n) for a, n in lb])
        rarr = (_IoVec * len(rb))(*[_IoVec(a, n) for a, n in rb])
        want = min(sum(n for _, n in lb), sum(n for _, n in rb))
        ctypes.set_errno(0)
        got = int(fn(pid, larr, len(lb), rarr, len(rb), 0))
        if got < 0:
            err = ctypes.get_errno()
            addr = rb[0][0]
            raise PlatformError(f"{name} pid {pid} at 0x{addr:x} failed: {os.strerror(err)}", errno=err)
        if got == 0 and want > 0:
            raise PlatformError(f"{name} pid {pid} at 0x{rb[0][0]:x}: no progress (unmapped or protected)")
        total += got
        left = got
        while left and li < len(lq):
            take = min(left, lq[li][1])
            lq[li][0] += take
            lq[li][1] -= take
            left -= take
            if lq[li][1] == 0:
                li += 1
        left = got
        while left and ri < len(rq):
            take = min(left, rq[ri][1])
            rq[ri][0] += take
            rq[ri][1] -= take
            left -= take
            if rq[ri][1] == 0:
                ri += 1
        while li < len(lq) and lq[li][1] == 0:
            li += 1
        while ri < len(rq) and rq[ri][1] == 0:
            ri += 1
    return total


def writev_remote(pid: int, local: Sequence[tuple[int, int]], remote: Sequence[tuple[int, int]]) -> int:
    """process_vm_writev from local (address, length) ranges to remote ones."""
    return _vm_rw(pid, local, remote, True)


def readv_remote(pid: int, local: Sequence[tuple[int, int]], remote: Sequence[tuple[int, int]]) -> int:
    """process_vm_readv from remote (address, length) ranges into local ones."""
    return _vm_rw(pid, local, remote, False)


#: bytes of a file mapped at a time by :func:`write_file_ranges`.
FILE_WINDOW: Final = 64 * 1024 * 1024


def write_file_ranges(pid: int, fd: int, segments: Sequence[tuple[int, int, int]], *, workers: int = 0,
                      window: int = FILE_WINDOW) -> int:
    """Copy (file offset, remote address, length) segments of *fd* into *pid*.

    One copy only: windows of the file are mapped read-only (pre-faulted,
    MAP_POPULATE) and handed to ``process_vm_writev`` as large iovec
    batches; windows are unmapped as soon as they are written, so the
    caller's resident size stays at a few windows. *workers* threads (default:
    one per CPU, at most 4) write windows in parallel (ctypes drops the GIL).
    """
    import concurrent.futures

    buckets: dict[int, list[tuple[int, int, int]]] = {}
    for off, addr, length in segments:
        while length > 0:
            k = off // window
            take = min(length, (k + 1) * window - off)
            buckets.setdefault(k, []).append((off, addr, take))
            off, addr, length = off + take, addr + take, length - take
    lib = libc()
    prot_read, map_shared, map_populate = 1, 1, 0x8000

    def one(parts: list[tuple[int, int, int]]) -> int:
        start = parts[0][0] // PAGE * PAGE
        end = max(o + n for o, _, n in parts)
        size = end - start
        base = lib.mmap(None, size, prot_read, map_shared | map_populate, fd, start)
        if base is None or base == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise PlatformError(f"mmap of {size} bytes of the pages file at {start} failed: {os.strerror(err)}",
                                errno=err)
        try:
            return writev_remote(pid, [(base + o - start, n) for o, _, n in parts], [(a, n) for _, a, n in parts])
        finally:
            lib.munmap(base, size)

    jobs = [buckets[k] for k in sorted(buckets)]
    if not jobs:
        return 0
    n = workers or min(4, os.cpu_count() or 1)
    if n <= 1 or len(jobs) == 1:
        return sum(one(j) for j in jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return sum(pool.map(one, jobs))


def write_memory(pid: int, addr: int, data: bytes) -> None:
    """Write *data* at *addr* in *pid* (the pages must be writable)."""
    if not data:
        return
    buf = ctypes.create_string_buffer(data, len(data))
    writev_remote(pid, [(ctypes.addressof(buf), len(data))], [(addr, len(data))])


def read_memory(pid: int, addr: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    readv_remote(pid, [(ctypes.addressof(buf), size)], [(addr, size)])
    return buf.raw


def poke_memory(pid: int, addr: int, data: bytes) -> None:
    """Write through /proc/PID/mem (ignores page protection, like a debugger)."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    except OSError as err:
        raise PlatformError(f"open /proc/{pid}/mem: {err.strerror}", errno=err.errno) from err
    try:
        done = os.pwrite(fd, data, addr)
        if done != len(data):
            raise PlatformError(f"short write to /proc/{pid}/mem at 0x{addr:x}: {done} of {len(data)}")
    except OSError as err:
        raise PlatformError(f"write /proc/{pid}/mem at 0x{addr:x}: {err.strerror}", errno=err.errno) from err
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class MapLine:
    start: int
    end: int
    perms: str
    offset: int
    path: str


def parse_maps(text: str) -> list[MapLine]:
    """Parse /proc/PID/maps text."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = parts[0].split("-")
        out.append(MapLine(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[5].strip() if len(parts) > 5 else ""))
    return out


def read_maps(pid: int) -> list[MapLine]:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return parse_maps(fh.read())
    except OSError as err:
        raise PlatformError(f"read /proc/{pid}/maps: {err.strerror}", errno=err.errno) from err


def find_syscall_insn(pid: int) -> int:
    """Address of a ``syscall`` instruction (bytes 0f 05) in an executable mapping of *pid*.

    The vDSO is tried first (small, always present), then every other
    executable mapping.
    """
    maps = [m for m in read_maps(pid) if "x" in m.perms and m.path != "[vsyscall]"]
    maps.sort(key=lambda m: 0 if m.path == "[vdso]" else 1)
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as err:
        raise PlatformError(f"open /proc/{pid}/mem: {err.strerror}", errno=err.errno) from err
    try:
        for m in maps:
            size = min(m.end - m.start, 8 * 1024 * 1024)
            try:
                data = os.pread(fd, size, m.start)
            except OSError:
                continue
            idx = data.find(SYSCALL_INSN)
            if idx >= 0:
                return m.start + idx
    finally:
        os.close(fd)
    raise PlatformError(f"no syscall instruction found in the executable mappings of pid {pid}")


# --- syscall injection -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SyscallResult:
    value: int  # signed return value
    child: int = 0  # tracer-namespace tid of a fork/clone child (0 if none)


def _signed(v: int) -> int:
    v &= 0xFFFF_FFFF_FFFF_FFFF
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class Injector:
    """Runs system calls inside one stopped, traced thread.

    ``syscall_addr`` is the address of a ``0f 05`` pair the thread can
    execute. Each :meth:`call` sets the argument registers, single-steps over
    the instruction and reads ``rax``; the registers the thread had before
    are put back by :meth:`restore` (or at the end of each call when
    ``keep_regs`` is False). Signals that arrive meanwhile are kept in
    ``deferred_signals`` (they are not delivered; the caller re-sends them).
    """

    tid: int
    syscall_addr: int
    keep_regs: bool = True
    saved: ThreadRegs | None = None
    deferred_signals: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.saved is None:
            self.saved = get_regs(self.tid)

    def restore(self) -> None:
        """Put the registers saved at construction back."""
        if self.saved is not None:
            set_regs(self.tid, self.saved)

    def call(self, name_or_nr: str | int, *args: int, check: bool = True) -> SyscallResult:
        nr = SYS[name_or_nr] if isinstance(name_or_nr, str) else name_or_nr
        if len(args) > 6:
            raise PlatformError(f"syscall {name_or_nr}: at most 6 arguments, got {len(args)}")
        a = list(args) + [0] * (6 - len(args))
        base = self.saved
        assert base is not None
        regs = ThreadRegs(
            r15=base.r15, r14=base.r14, r13=base.r13, r12=base.r12, rbp=base.rbp, rbx=base.rbx,
            r11=base.r11, r10=a[3], r9=a[5], r8=a[4], rax=nr, rcx=base.rcx, rdx=a[2], rsi=a[1],
            rdi=a[0], orig_rax=0xFFFF_FFFF_FFFF_FFFF, rip=self.syscall_addr, cs=base.cs,
            eflags=base.eflags & ~0x100, rsp=base.rsp, ss=base.ss, fs_base=base.fs_base,
            gs_base=base.gs_base, ds=base.ds, es=base.es, fs=base.fs, gs=base.gs,
        )
        set_regs(self.tid, regs)
        child = 0
        sig = 0
        while True:
            singlestep(self.tid, sig)
            sig = 0
            stop = wait_stop(self.tid)
            if not stop.stopped:
                raise PlatformError(f"thread {self.tid} {stop.describe()} during injected syscall {name_or_nr}")
            if stop.event in (PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE):
                child = event_msg(self.tid)
                continue
            if stop.event == PTRACE_EVENT_STOP:
                continue  # group-stop or interrupt: step again
            if stop.event:
                raise PlatformError(f"thread {self.tid}: unexpected ptrace event {stop.event} in syscall {name_or_nr}")
            after = get_regs(self.tid)
            if stop.signal == signal.SIGTRAP and after.rip == self.syscall_addr + 2:
                break
            if stop.signal != signal.SIGTRAP:
                self.deferred_signals.append(stop.signal)
            if after.rip != self.syscall_addr:
                raise PlatformError(
                    f"thread {self.tid}: stopped at 0x{after.rip:x} by signal {stop.signal} while injecting "
                    f"syscall {name_or_nr} at 0x{self.syscall_addr:x}"
                )
        value = _signed(after.rax)
        if not self.keep_regs:
            self.restore()
        if check and -4096 < value < 0:
            raise PlatformError(
                f"injected syscall {name_or_nr}{tuple(args)} in tid {self.tid} failed: {os.strerror(-value)}",
                errno=-value,
            )
        return SyscallResult(value, child)

    def __call__(self, name_or_nr: str | int, *args: int, check: bool = True) -> int:
        return self.call(name_or_nr, *args, check=check).value


# --- scratch memory in the target -------------------------------------------------

PROT_READ: Final = 1
PROT_WRITE: Final = 2
PROT_EXEC: Final = 4
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_GROWSDOWN: Final = 0x100
MAP_FIXED_NOREPLACE: Final = 0x100000


def remote_mmap(inj: Injector, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """Inject ``mmap`` and return the address (PlatformError on failure)."""
    res = inj("mmap", addr, length, prot, flags, fd & 0xFFFF_FFFF_FFFF_FFFF, offset)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and res != addr:
        raise PlatformError(f"injected mmap at 0x{addr:x} in tid {inj.tid} landed at 0x{res:x}")
    return res


@dataclass
class RemoteScratch:
    """An injected anonymous RW mapping in the target used for syscall arguments.

    :meth:`put` copies bytes in and returns their remote address; the area
    is a bump allocator reset by :meth:`reset`. :meth:`close` unmaps it.
    """

    inj: Injector
    size: int = 16 * PAGE
    addr: int = 0
    used: int = 0

    def __post_init__(self) -> None:
        if self.addr == 0:
            self.addr = remote_mmap(self.inj, 0, self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)

    def reset(self) -> None:
        self.used = 0

    def put(self, data: bytes, align: int = 16) -> int:
        start = (self.used + align - 1) // align * align
        if start + len(data) > self.size:
            raise PlatformError(f"remote scratch of {self.size} bytes exhausted ({start}+{len(data)})")
        write_memory(self.inj.tid, self.addr + start, data)
        self.used = start + len(data)
        return self.addr + start

    def alloc(self, size: int, align: int = 16) -> int:
        return self.put(b"\0" * size, align)

    def get(self, addr: int, size: int) -> bytes:
        return read_memory(self.inj.tid, addr, size)

    def close(self) -> None:
        self.inj("munmap", self.addr, self.size, check=False)


def cstr(s: str | bytes) -> bytes:
    """A NUL-terminated byte string (surrogate escapes kept byte-exact)."""
    b = os.fsencode(s) if isinstance(s, str) else s
    if b"\0" in b:
        raise PlatformError(f"path {b!r} contains a NUL byte")
    return b + b"\0"


def pack_u64s(values: Iterable[int]) -> bytes:
    vals = [v & 0xFFFF_FFFF_FFFF_FFFF for v in values]
    return struct.pack(f"<{len(vals)}Q", *vals)
