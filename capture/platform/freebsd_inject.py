"""The restore engine's injection ops on FreeBSD: Linux binaries under the Linuxulator.

UNTESTED ON A REAL FREEBSD HOST. Written against
``reference/freebsd/tools-output.md`` (ptrace requests and structs) and
``linuxulator.md`` (what the Linuxulator implements), verified against the
FreeBSD interface double in ``tests/freebsd_double`` (FreeBSD ptrace
semantics, struct layouts and errno over real Linux processes).

:class:`FreeBSDInjectionOps` implements :class:`capture.restore.InjectionOps`
with FreeBSD requests, through a :class:`capture.platform.freebsd.FreeBSDPlatform`
(its ptrace/waitpid/linprocfs):

* attach: ``PT_ATTACH`` + ``waitpid`` for the SIGSTOP stop (other signals
  that stop it first are kept and delivered at ``PT_DETACH``), then
  ``PT_FOLLOW_FORK`` so the children of injected ``clone3`` are traced from
  birth and stop; resume/detach: ``PT_CONTINUE``/``PT_DETACH`` (whole
  process: FreeBSD traces processes, threads are its LWPs);
* system calls: ``PT_SC_REMOTE`` runs the *Linux* call (Linux numbers: the
  stub is a Linux binary, its system-call table is the Linuxulator's) in the
  stopped thread, the new stop is consumed with ``waitpid(WNOHANG)``; no
  ``syscall`` instruction and no single-stepping are needed, and the
  thread's registers are untouched. A fork-like call's return value is the
  child's pid (Linuxulator pids are FreeBSD pids);
* registers: ``PT_GETREGS``/``PT_SETREGS`` (FreeBSD ``struct reg``),
  ``PT_GET/SETFSBASE``, ``PT_GET/SETGSBASE``, ``PT_GETXSTATE``/``PT_SETXSTATE``,
  ``PT_GETFPREGS``/``PT_SETFPREGS`` (the platform module's conversions);
* memory: ``PT_IO`` (``PIOD_READ_D``/``PIOD_WRITE_D``, partial transfers
  continued); page contents of the pages file are written range by range;
* maps: linprocfs ``/compat/linux/proc/PID/maps`` (Linux format);
* the seed: :meth:`FreeBSDInjectionOps.spawn_seed` starts a 1-page static
  ELF branded ``ELFOSABI_LINUX`` (linuxulator.md 1: a static binary without
  a GNU note is run as Linux only when branded) that loops on ``pause()``.

:meth:`FreeBSDInjectionOps.features` is empty: no clone3 ``set_tid``, no
``PR_SET_MM_MAP``, no ``ARCH_MAP_VDSO_64``, no rseq, no pid namespaces, no
setfsuid/setfsgid, no capability changes (linuxulator.md 2-3), the
restorer (a native FreeBSD process) cannot be the seed, and waitpid has no
``__WALL``. :mod:`capture.restore_compat` is what the restore engine does
instead.

What it refuses (``PlatformError``): ``unshare_pid_namespace`` (a
Linuxulator dummy), rseq queries (``get_rseq`` answers None: never
registered), a ptrace request that fails (the message names the FreeBSD
errno; ``errno`` is the Linux number), a stop that is not one.
Assumed, not in the reference (said again in docs/freebsd.md): that
``PT_SC_REMOTE`` in a Linux-ABI process dispatches through the Linuxulator's
table, and that a child followed with ``PT_FOLLOW_FORK`` first stops with
SIGSTOP.
"""

from __future__ import annotations

import ctypes
import os
import struct
import tempfile
from typing import Callable, ClassVar, Final, Sequence

from capture.errors import PlatformError
from capture.platform import linux_inject as li
from capture.platform.base import ThreadRegs, Xsave
from capture.platform.freebsd import (
    FPREG_SIZE,
    IO_DESC_SIZE,
    PIOD_READ_D,
    PIOD_WRITE_D,
    PT_CONTINUE,
    PT_DETACH,
    PT_ATTACH,
    PT_FOLLOW_FORK,
    PT_GETFPREGS,
    PT_IO,
    PT_SC_REMOTE,
    PT_SETFPREGS,
    SC_REMOTE_FORMAT,
    SC_REMOTE_SIZE,
    WNOHANG,
    FreeBSDPlatform,
    freebsd_errno_to_linux,
    freebsd_signal_to_linux,
    linux_signal_to_freebsd,
    pack_io_desc,
    unpack_io_desc,
)

FREEBSD_SIGSTOP: Final = 17
LINUX_SIGSTOP: Final = 19
ELFOSABI_LINUX: Final = 3
#: Linux calls that create a process or thread (their return value is the child's pid).
_FORK_CALLS: Final = frozenset({li.SYS["clone"], li.SYS["fork"], 58, li.SYS["clone3"]})
_CLONE_THREAD: Final = 0x10000
#: largest PT_IO transfer issued at once (a pages file is written in pieces of this size).
IO_CHUNK: Final = 4 * 1024 * 1024


def seed_elf() -> bytes:
    """A static x86-64 ELF executable branded ELFOSABI_LINUX: ``for (;;) pause();``.

    One PT_LOAD (read+execute) of the file itself at 0x400000; the code is
    ``mov eax, 34; syscall; jmp back`` (Linux ``pause`` is 34).
    """
    base = 0x400000
    code = bytes.fromhex("b822000000" "0f05" "ebf7")
    ehsize, phsize = 64, 56
    entry = base + ehsize + phsize
    size = ehsize + phsize + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, ELFOSABI_LINUX]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + phdr + code


def _signed(v: int) -> int:
    v &= 0xFFFF_FFFF_FFFF_FFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def _linux_status(status: int) -> int:
    """A FreeBSD wait status with Linux signal numbers (the encodings share their layout)."""
    low = status & 0x7F
    if status & 0xFF == 0x7F:  # stopped
        return (freebsd_signal_to_linux((status >> 8) & 0xFF) << 8) | 0x7F
    if low == 0:  # exited
        return status & 0xFF00
    try:
        sig = freebsd_signal_to_linux(low)
    except ValueError:
        sig = low
    return (status & 0x80) | sig


class FreeBSDInjector(li.Injector):
    """Runs Linux system calls in a stopped thread with PT_SC_REMOTE (see module doc).

    Same constructor as :class:`capture.platform.linux_inject.Injector`;
    ``syscall_addr`` is ignored (PT_SC_REMOTE needs no instruction).
    """

    ops: ClassVar["FreeBSDInjectionOps"]

    def __post_init__(self) -> None:
        if self.saved is None:
            self.saved = self.ops.get_regs(self.tid)

    def restore(self) -> None:
        if self.saved is not None:
            self.ops.set_regs(self.tid, self.saved)

    def call(self, name_or_nr: str | int, *args: int, check: bool = True) -> li.SyscallResult:
        nr = li.SYS[name_or_nr] if isinstance(name_or_nr, str) else name_or_nr
        if len(args) > 6:
            raise PlatformError(f"syscall {name_or_nr}: at most 6 arguments, got {len(args)}")
        ret, error = self.ops.remote_syscall(self.tid, nr, args)
        if error > 0:
            try:
                value = -freebsd_errno_to_linux(error)
            except ValueError:
                value = -error
        elif error < 0:
            raise PlatformError(f"Linux syscall {name_or_nr} in thread {self.tid}: PT_SC_REMOTE reported "
                                f"ERESTART/EJUSTRETURN ({error})")
        else:
            value = _signed(ret)
        child = 0
        if nr in _FORK_CALLS and value > 0 and not self.ops.thread_clone(self.tid, nr, args):
            child = value
            self.ops.adopt(child)
        if check and -4096 < value < 0:
            raise PlatformError(
                f"injected syscall {name_or_nr}{tuple(args)} in tid {self.tid} failed: {os.strerror(-value)}",
                errno=-value,
            )
        return li.SyscallResult(value, child)


class FreeBSDInjectionOps:
    """:class:`capture.restore.InjectionOps` over FreeBSD ptrace (see module doc)."""

    Injector: type[li.Injector]

    def __init__(self, platform: FreeBSDPlatform, *,
                 spawn: Callable[[str], int] | None = None) -> None:
        self.platform = platform
        self._spawn = spawn if spawn is not None else (lambda path: os.posix_spawn(path, [path], {}))
        self._owner: dict[int, int] = {}  # tid -> pid
        self._follow: set[int] = set()  # pids whose children are traced from birth
        self._pending: dict[int, int] = {}  # pid -> FreeBSD signal that stopped it before our SIGSTOP
        self.Injector = type("BoundFreeBSDInjector", (FreeBSDInjector,), {"ops": self})

    def _pt(self, request: int, pid: int, addr: int, data: int) -> int:
        return self.platform._pt(request, pid, addr, data)  # the module's ptrace: FreeBSD errno -> PlatformError

    def _wait(self, pid: int, options: int) -> tuple[int, int]:
        try:
            return self.platform._waitpid(pid, options)
        except ChildProcessError as err:
            raise PlatformError(f"waitpid({pid}, {options}) failed: {err}", errno=err.errno) from err

    # -- what this OS offers ---------------------------------------------------
    def features(self) -> frozenset[str]:
        """None of capture.restore's FEATURE_* (linuxulator.md 2-3; module doc)."""
        return frozenset()

    def spawn_seed(self) -> int:
        """Start the Linux-branded pause() loop (:func:`seed_elf`); returns its pid."""
        with tempfile.TemporaryDirectory(prefix="hetmig-seed-") as d:
            path = os.path.join(d, "hetmig-seed")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            try:
                os.write(fd, seed_elf())
            finally:
                os.close(fd)
            return int(self._spawn(path))  # posix_spawn returns once the program runs

    # -- processes -----------------------------------------------------------------
    def _pid(self, tid: int) -> int:
        return self._owner.get(tid, tid)

    def seize(self, tid: int, options: int = li.TRACE_CHILDREN) -> None:
        pid = self._pid(tid)
        self._pt(PT_ATTACH, pid, 0, 0)
        self._owner[pid] = pid
        if options & (li.PTRACE_O_TRACEFORK | li.PTRACE_O_TRACEVFORK | li.PTRACE_O_TRACECLONE):
            self._follow.add(pid)

    def interrupt(self, tid: int) -> li.Stop:
        """Wait for the SIGSTOP of PT_ATTACH (FreeBSD cannot stop without a signal)."""
        pid = self._pid(tid)
        while True:
            _, status = self._wait(pid, 0)
            if status & 0xFF != 0x7F:
                raise PlatformError(f"pid {pid} ended while being attached (FreeBSD status 0x{status:x})")
            sig = (status >> 8) & 0xFF
            if sig == FREEBSD_SIGSTOP:
                break
            self._pending[pid] = sig  # delivered at detach
            self._pt(PT_CONTINUE, pid, 1, 0)
        if pid in self._follow:
            self._pt(PT_FOLLOW_FORK, pid, 0, 1)
        return li.Stop(tid, (LINUX_SIGSTOP << 8) | 0x7F)

    def adopt(self, child: int) -> None:
        """A child of an injected fork-like call: traced from birth (PT_FOLLOW_FORK)."""
        self._owner[child] = child

    def thread_clone(self, tid: int, nr: int, args: Sequence[int]) -> bool:
        """Whether an injected clone/clone3 created a thread (CLONE_THREAD)."""
        if nr == li.SYS["clone"]:
            return bool(args and args[0] & _CLONE_THREAD)
        if nr == li.SYS["clone3"] and args:
            flags = struct.unpack("<Q", self.read_memory(self._pid(tid), args[0], 8))[0]
            return bool(flags & _CLONE_THREAD)
        return False

    def _fb_signal(self, sig: int) -> int:
        return linux_signal_to_freebsd(sig) if sig else 0

    def detach(self, tid: int, sig: int = 0) -> None:
        pid = self._pid(tid)
        fb = self._fb_signal(sig) or self._pending.pop(pid, 0)
        self._pt(PT_DETACH, pid, 1, fb)
        self._follow.discard(pid)

    def resume(self, tid: int, sig: int = 0) -> None:
        self._pt(PT_CONTINUE, self._pid(tid), 1, self._fb_signal(sig))

    def wait_stop(self, tid: int, *, timeout_hint: str = "") -> li.Stop:
        pid = self._pid(tid)
        try:
            _, status = self._wait(pid, 0)
        except PlatformError as err:
            raise PlatformError(f"{err}{timeout_hint}", errno=err.errno) from err
        return li.Stop(tid, _linux_status(status))

    def unshare_pid_namespace(self) -> None:
        raise PlatformError("no pid namespaces under the Linuxulator (unshare is a dummy, linuxulator.md 2)")

    # -- system calls -------------------------------------------------------------------
    def remote_syscall(self, tid: int, nr: int, args: Sequence[int]) -> tuple[int, int]:
        """PT_SC_REMOTE: (sr_retval[0], sr_error as a FreeBSD errno or 0)."""
        pid = self._pid(tid)
        arr = (ctypes.c_uint64 * max(1, len(args)))(*[a & 0xFFFF_FFFF_FFFF_FFFF for a in args])
        raw = ctypes.create_string_buffer(
            struct.pack(SC_REMOTE_FORMAT, 0, 0, 0, nr, len(args), ctypes.addressof(arr)), SC_REMOTE_SIZE)
        self._pt(PT_SC_REMOTE, tid, ctypes.addressof(raw), SC_REMOTE_SIZE)
        for _ in range(8):  # consume the new stop(s) (ptrace.2: waitpid WNOHANG)
            got, _status = self._wait(pid, WNOHANG)
            if got == 0:
                break
        ret0, _, error, _, _, _ = struct.unpack(SC_REMOTE_FORMAT, raw.raw)
        return int(ret0), int(error)

    def find_syscall_insn(self, pid: int) -> int:
        return 0  # PT_SC_REMOTE needs no syscall instruction

    def remote_mmap(self, inj: li.Injector, addr: int, length: int, prot: int, flags: int, fd: int = -1,
                    offset: int = 0) -> int:
        return li.remote_mmap(inj, addr, length, prot, flags, fd, offset)

    # -- registers ------------------------------------------------------------------------
    def get_regs(self, tid: int) -> ThreadRegs:
        return self.platform.get_regs(tid)

    def set_regs(self, tid: int, values: ThreadRegs) -> None:
        self.platform.set_regs(tid, values)

    def get_xstate(self, tid: int) -> bytes:
        return self.platform.get_xsave(tid).data

    def set_xstate(self, tid: int, data: bytes) -> None:
        self.platform.set_xsave(tid, Xsave(data=data))

    def get_fpregs(self, tid: int) -> bytes:
        buf = ctypes.create_string_buffer(FPREG_SIZE)
        self._pt(PT_GETFPREGS, tid, ctypes.addressof(buf), 0)
        return buf.raw

    def set_fpregs(self, tid: int, data: bytes) -> None:
        if len(data) != FPREG_SIZE:
            raise PlatformError(f"struct fpreg needs {FPREG_SIZE} bytes, got {len(data)}")
        buf = ctypes.create_string_buffer(data, FPREG_SIZE)
        self._pt(PT_SETFPREGS, tid, ctypes.addressof(buf), 0)

    def xstate_components(self) -> tuple[li.XstateComponent, ...]:
        return li.xstate_components()  # CPUID leaf 0xD: an instruction, the same on every OS

    def get_rseq(self, tid: int) -> None:
        return None  # Linuxulator rseq always fails with ENOSYS: never registered

    # -- memory --------------------------------------------------------------------------
    def _io(self, pid: int, op: int, remote: int, local: int, length: int) -> int:
        desc = ctypes.create_string_buffer(pack_io_desc(op, remote, local, length), IO_DESC_SIZE)
        self._pt(PT_IO, pid, ctypes.addressof(desc), 0)
        return unpack_io_desc(desc.raw)[3]

    def write_memory(self, pid: int, addr: int, data: bytes) -> None:
        pid = self._pid(pid)
        src = ctypes.create_string_buffer(data, len(data))
        done = 0
        while done < len(data):
            n = min(IO_CHUNK, len(data) - done)
            moved = self._io(pid, PIOD_WRITE_D, addr + done, ctypes.addressof(src) + done, n)
            if moved <= 0:
                break
            done += moved
        if done != len(data):
            raise PlatformError(f"PT_IO write to pid {pid} at 0x{addr:x}: {done} of {len(data)} bytes")

    def read_memory(self, pid: int, addr: int, size: int) -> bytes:
        pid = self._pid(pid)
        dest = ctypes.create_string_buffer(size)
        done = 0
        while done < size:
            moved = self._io(pid, PIOD_READ_D, addr + done, ctypes.addressof(dest) + done, min(IO_CHUNK, size - done))
            if moved <= 0:
                break
            done += moved
        if done != size:
            raise PlatformError(f"PT_IO read from pid {pid} at 0x{addr:x}: {done} of {size} bytes")
        return dest.raw

    def write_file_ranges(self, pid: int, fd: int, segments: Sequence[tuple[int, int, int]], *,
                          workers: int = 0, window: int = 0) -> int:
        """(file offset, address, length) ranges of *fd* into *pid*, one PT_IO per piece."""
        total = 0
        for off, addr, length in segments:
            done = 0
            while done < length:
                n = min(IO_CHUNK, length - done)
                data = os.pread(fd, n, off + done)
                if len(data) != n:
                    raise PlatformError(f"pages file: {len(data)} of {n} bytes at offset {off + done}")
                self.write_memory(pid, addr + done, data)
                done += n
            total += length
        return total

    def read_maps(self, pid: int) -> list[li.MapLine]:
        path = self.platform.proc / str(self._pid(pid)) / "maps"
        try:
            return li.parse_maps(path.read_text(errors="surrogateescape"))
        except OSError as err:
            raise PlatformError(f"read {path}: {err.strerror}", errno=err.errno) from err
