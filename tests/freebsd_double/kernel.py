"""FreeBSD ``ptrace(2)``, ``waitpid(2)`` and ``kill(2)`` over real Linux processes.

A test double: :class:`FreeBSDKernel` answers FreeBSD requests with FreeBSD
argument structures and FreeBSD errno/signal numbers, and carries each out on
a real Linux process with Linux ptrace (``PTRACE_SEIZE``/``INTERRUPT``,
``GETREGS``, ``GETREGSET``), ``process_vm_readv`` and ``/proc/PID/mem``.
Layouts come from ``reference/freebsd/tools-output.md`` sections 5, 5.1 and
6, errno values from ``linuxulator.md`` section 5, signals from section 6.
They are literal tables in this file (never imported from
``capture.platform.freebsd``, the module under test).

What it emulates, and how (everything not in the reference is said here):

* ``PT_ATTACH`` stops every thread of the process (Linux ``PTRACE_SEIZE`` +
  ``PTRACE_INTERRUPT`` per thread) and queues the wait status a FreeBSD
  tracer sees, "stopped by SIGSTOP" (17, status ``0x117f``). No real SIGSTOP
  is sent. Attaching a process that is already traced fails with EBUSY.
* Requests other than ``PT_ATTACH`` on a process this tracer does not trace
  fail with EBUSY, on one that is traced but running with EBUSY, on a pid
  that does not exist with ESRCH; an unknown request or a wrong ``data``
  size with EINVAL. (These error choices follow ptrace.2's ERRORS section
  by memory: the reference tables do not list them.)
* ``PT_IO``: reads with ``process_vm_readv`` (one range per request), writes
  through ``/proc/PID/mem`` (a debugger may write read-only pages, as
  FreeBSD's proc_rwmem does). A transfer that stops at an unmapped page is
  returned as a short ``piod_len``; nothing at all moved is EFAULT.
* ``PT_VM_ENTRY`` walks the real ``/proc/PID/maps``; ``pve_end`` is
  inclusive; Linux pseudo-paths (``[heap]`` ...) are not vnode paths, so they
  come back without a path; the end of the list is ENOENT; a path buffer
  too small is ENAMETOOLONG with the needed ``pve_pathlen``;
  ``pve_timestamp`` is a checksum of the map (changes when it does).
* ``PT_LWPINFO``: the layout is unconfirmed in the reference; only the three
  leading ints (``pl_lwpid`` @0, ``pl_event`` @4, ``pl_flags`` @8) are
  filled, the rest of the caller's ``data`` bytes are zeroed.
* ``struct reg``: ``r_trapno`` and ``r_err`` are reported as 0 (Linux does
  not expose them); segment selectors are the Linux values (FreeBSD's GDT
  selector numbers are not in the reference).
* ``PT_GETXSTATE_INFO``: ``xsave_mask`` is the XCR0 value Linux stores in the
  FXSAVE software-reserved bytes (offset 464), ``xsave_len`` the size of
  the ``NT_X86_XSTATE`` regset. ``PT_GETXSTATE``/``PT_GETFPREGS`` return
  those software-reserved bytes (464..511) as zeros: what FreeBSD leaves
  there is not in the reference, so clients must not rely on Linux's XCR0.
* ``PT_SC_REMOTE`` runs the *Linux* system call (the target is a Linux
  binary, as under the Linuxulator) by injection, and queues a "stopped by
  SIGTRAP" status to be consumed with ``waitpid(WNOHANG)``; a Linux error is
  returned in ``sr_error`` as the FreeBSD errno. Calls the reference says
  the Linuxulator refuses are refused *without running them*
  (:func:`linuxulator_refusal`: its DUMMY/unimplemented calls and rseq ->
  ENOSYS, prctl options outside linuxulator.md 3 and unlisted arch_prctl
  codes -> EINVAL, a growing mremap -> ENOMEM, clone3 with set_tid,
  CLONE_NEWTIME or CLONE_INTO_CGROUP -> ENOSYS, capset of any capability
  -> EPERM); calls whose status the reference does not give run as on
  Linux. After a map-changing call (mmap, mprotect, munmap, brk, mremap,
  arch_prctl, execve) the linprocfs snapshot is refreshed (linprocfs maps
  are live on FreeBSD); a stale syscall-instruction address (unmapped by
  the call before) is looked up again.
* ``PT_FOLLOW_FORK``: Linux ``PTRACE_O_TRACEFORK/VFORK/CLONE`` on the
  process's threads; the child of a remote fork-like call is then traced
  and its first stop is reported as SIGSTOP (ptrace.2's PTRACE_FORK by
  memory: the reference only lists the request); a new thread joins its
  process's LWP list, stopped with it.

What it refuses: requests the module does not need (``PT_READ_*``,
``PT_STEP``, ``PT_GETDBREGS``, ``PT_GETREGSET`` ...) fail with EINVAL and are
listed in :attr:`FreeBSDKernel.unsupported`; they are not emulated.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as lx_errno
import os
import signal as lx_signal
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Final

from capture.errors import PlatformError
from capture.platform import linux_inject as li
from capture.platform.base import ThreadRegs

# --- FreeBSD numbers (tools-output.md 5) -----------------------------------------

PT: Final[dict[str, int]] = {
    "PT_TRACE_ME": 0, "PT_READ_I": 1, "PT_READ_D": 2, "PT_WRITE_I": 4, "PT_WRITE_D": 5,
    "PT_CONTINUE": 7, "PT_KILL": 8, "PT_STEP": 9, "PT_ATTACH": 10, "PT_DETACH": 11, "PT_IO": 12,
    "PT_LWPINFO": 13, "PT_GETNUMLWPS": 14, "PT_GETLWPLIST": 15, "PT_FOLLOW_FORK": 23, "PT_GETREGS": 33, "PT_SETREGS": 34,
    "PT_GETFPREGS": 35, "PT_SETFPREGS": 36, "PT_VM_TIMESTAMP": 40, "PT_VM_ENTRY": 41,
    "PT_SC_REMOTE": 44, "PT_GETXSTATE_INFO": 68, "PT_GETXSTATE": 69, "PT_SETXSTATE": 70,
    "PT_GETFSBASE": 71, "PT_SETFSBASE": 72, "PT_GETGSBASE": 73, "PT_SETGSBASE": 74,
}
PIOD_READ_D: Final = 1
PIOD_WRITE_D: Final = 2
PIOD_READ_I: Final = 3
PIOD_WRITE_I: Final = 4
PL_EVENT_NONE: Final = 0
PL_EVENT_SIGNAL: Final = 1
VM_PROT_READ, VM_PROT_WRITE, VM_PROT_EXECUTE = 1, 2, 4  # not in the reference (FreeBSD vm.h)
WNOHANG: Final = 1  # FreeBSD sys/wait.h (not in the reference)

# amd64 struct reg (tools-output.md 6): name, offset, struct code
REG_FIELDS: Final[tuple[tuple[str, int, str], ...]] = (
    ("r_r15", 0, "q"), ("r_r14", 8, "q"), ("r_r13", 16, "q"), ("r_r12", 24, "q"),
    ("r_r11", 32, "q"), ("r_r10", 40, "q"), ("r_r9", 48, "q"), ("r_r8", 56, "q"),
    ("r_rdi", 64, "q"), ("r_rsi", 72, "q"), ("r_rbp", 80, "q"), ("r_rbx", 88, "q"),
    ("r_rdx", 96, "q"), ("r_rcx", 104, "q"), ("r_rax", 112, "q"), ("r_trapno", 120, "I"),
    ("r_fs", 124, "H"), ("r_gs", 126, "H"), ("r_err", 128, "I"), ("r_es", 132, "H"),
    ("r_ds", 134, "H"), ("r_rip", 136, "q"), ("r_cs", 144, "q"), ("r_rflags", 152, "q"),
    ("r_rsp", 160, "q"), ("r_ss", 168, "q"),
)
REG_SIZE: Final = 176
#: FreeBSD field -> Linux user_regs_struct field (None: no Linux counterpart)
REG_TO_LINUX: Final[dict[str, str | None]] = {
    "r_r15": "r15", "r_r14": "r14", "r_r13": "r13", "r_r12": "r12", "r_r11": "r11", "r_r10": "r10",
    "r_r9": "r9", "r_r8": "r8", "r_rdi": "rdi", "r_rsi": "rsi", "r_rbp": "rbp", "r_rbx": "rbx",
    "r_rdx": "rdx", "r_rcx": "rcx", "r_rax": "rax", "r_trapno": None, "r_fs": "fs", "r_gs": "gs",
    "r_err": None, "r_es": "es", "r_ds": "ds", "r_rip": "rip", "r_cs": "cs", "r_rflags": "eflags",
    "r_rsp": "rsp", "r_ss": "ss",
}
# struct ptrace_io_desc (5.1): op int @0, offs ptr @8, addr ptr @16, len size_t @24; 32 bytes
IO_DESC: Final = struct.Struct("<i4xQQQ")
# struct ptrace_vm_entry (5.1): 64 bytes
VM_ENTRY: Final = struct.Struct("<iiQQQIIqI4xQ")
# struct ptrace_xstate_info {uint64 xsave_mask; uint32 xsave_len}: 16 bytes with tail padding
XSTATE_INFO: Final = struct.Struct("<QI4x")
# struct ptrace_sc_remote (5.1): sr_retval[2] @0, sr_error @16, pscr_syscall @24, nargs @28, args @32
SC_REMOTE: Final = struct.Struct("<qqi4xIIQ")
FPREG_SIZE: Final = 512
LWPINFO_HEAD: Final = struct.Struct("<iii")

# errno (linuxulator.md 5): FreeBSD numbers where they differ from Linux; the rest are equal
_LINUX_TO_FREEBSD_ERRNO: Final[dict[int, int]] = {
    11: 35, 35: 11, 36: 63, 37: 77, 38: 78, 39: 66, 40: 62, 42: 83, 43: 82, 75: 84, 84: 86,
    88: 38, 89: 39, 90: 40, 91: 41, 92: 42, 93: 43, 94: 44, 95: 45, 97: 47, 98: 48, 99: 49,
    100: 50, 101: 51, 103: 53, 104: 54, 105: 55, 106: 56, 107: 57, 110: 60, 111: 61, 113: 65,
    114: 37, 115: 36, 116: 70, 122: 69, 125: 85, 130: 96, 131: 95, 61: 87,
}
EBUSY, EINVAL, ESRCH, EFAULT, ENOENT, ENAMETOOLONG, ECHILD = 16, 22, 3, 14, 2, 63, 10

# signals (linuxulator.md 6): Linux -> FreeBSD where they differ (1-6, 8, 9, 11, 13-15, 21, 22, 24-28 equal)
_LINUX_TO_FREEBSD_SIG: Final[dict[int, int]] = {
    7: 10, 10: 30, 12: 31, 16: 10, 17: 20, 18: 19, 19: 17, 20: 18, 23: 16, 29: 23, 30: 98, 31: 12,
}
_FREEBSD_TO_LINUX_SIG: Final[dict[int, int]] = {
    10: 7, 30: 10, 31: 12, 20: 17, 19: 18, 17: 19, 18: 20, 16: 23, 23: 29, 98: 30, 12: 31, 7: 0, 29: 0,
}


def linux_errno_to_freebsd(err: int) -> int:
    return _LINUX_TO_FREEBSD_ERRNO.get(err, err)


def linux_sig_to_freebsd(sig: int) -> int:
    if 32 <= sig <= 64:
        return 65 + (sig - 32)
    return _LINUX_TO_FREEBSD_SIG.get(sig, sig)


_SAME_SIGNALS: Final = frozenset({1, 2, 3, 4, 5, 6, 8, 9, 11, 13, 14, 15, 21, 22, 24, 25, 26, 27, 28})


def freebsd_sig_to_linux(sig: int) -> int:
    """0 where Linux has no such signal (SIGEMT, SIGINFO, SIGTHR, SIGLIBRT, RT above 97)."""
    if 65 <= sig <= 97:
        return 32 + (sig - 65)
    if sig in _SAME_SIGNALS:
        return sig
    return _FREEBSD_TO_LINUX_SIG.get(sig, 0)


def stopped_status(freebsd_sig: int) -> int:
    """FreeBSD WIFSTOPPED status: 0x7f in the low byte, the signal above."""
    return (freebsd_sig << 8) | 0x7F


class FreeBSDError(OSError):
    """A FreeBSD errno from the double (OSError like the real syscall wrapper)."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, what)


def _fail(err: int, what: str) -> FreeBSDError:
    return FreeBSDError(err, what)


@dataclass
class _Proc:
    pid: int
    tids: list[int]
    stopped: bool = True
    statuses: deque[int] = field(default_factory=deque)
    syscall_insn: int = 0
    last_sig: int = 0  # FreeBSD signal of the last reported stop
    follow_fork: bool = False


def _tgid(tid: int) -> int | None:
    try:
        with open(f"/proc/{tid}/status") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _tasks(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


class FreeBSDKernel:
    """The FreeBSD ptrace/waitpid/kill double. Pass :meth:`ptrace`,
    :meth:`waitpid` and :meth:`kill` to ``FreeBSDPlatform``.

    ``on_stop`` is called with the pid whenever a process becomes stopped
    or runs again (the linprocfs double refreshes itself there).
    """

    unsupported: Final = ("PT_TRACE_ME", "PT_READ_I", "PT_READ_D", "PT_WRITE_I", "PT_WRITE_D", "PT_STEP",
                          "PT_GETDBREGS", "PT_SETDBREGS", "PT_GETREGSET", "PT_SETREGSET", "PT_COREDUMP")

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self.procs: dict[int, _Proc] = {}
        self.calls: list[tuple[str, int]] = []
        self.refused: list[tuple[int, int]] = []  # (Linux syscall, FreeBSD errno) refused like the Linuxulator
        self.on_change = on_change
        self._handlers: dict[int, Callable[[int, int, int], int]] = {
            PT["PT_ATTACH"]: self._attach, PT["PT_DETACH"]: self._detach, PT["PT_CONTINUE"]: self._continue,
            PT["PT_KILL"]: self._kill_req, PT["PT_IO"]: self._io, PT["PT_LWPINFO"]: self._lwpinfo,
            PT["PT_GETNUMLWPS"]: self._numlwps, PT["PT_GETLWPLIST"]: self._lwplist,
            PT["PT_FOLLOW_FORK"]: self._follow_fork,
            PT["PT_GETREGS"]: self._getregs, PT["PT_SETREGS"]: self._setregs,
            PT["PT_GETFPREGS"]: self._getfpregs, PT["PT_SETFPREGS"]: self._setfpregs,
            PT["PT_VM_TIMESTAMP"]: self._vm_timestamp, PT["PT_VM_ENTRY"]: self._vm_entry,
            PT["PT_SC_REMOTE"]: self._sc_remote, PT["PT_GETXSTATE_INFO"]: self._xstate_info,
            PT["PT_GETXSTATE"]: self._getxstate, PT["PT_SETXSTATE"]: self._setxstate,
            PT["PT_GETFSBASE"]: self._getfsbase, PT["PT_SETFSBASE"]: self._setfsbase,
            PT["PT_GETGSBASE"]: self._getgsbase, PT["PT_SETGSBASE"]: self._setgsbase,
        }
        self._names = {v: k for k, v in PT.items()}

    # -- the three system calls ----------------------------------------------
    def ptrace(self, request: int, pid: int, addr: int, data: int) -> int:
        """``int ptrace(int request, pid_t pid, caddr_t addr, int data)``; raises
        :class:`FreeBSDError` (an OSError) with a FreeBSD errno."""
        self.calls.append((self._names.get(request, str(request)), pid))
        handler = self._handlers.get(request)
        if handler is None:
            raise _fail(EINVAL, f"request {request} is not emulated by the double")
        try:
            return handler(pid, addr, data)
        except PlatformError as err:
            raise _fail(linux_errno_to_freebsd(err.errno or lx_errno.EIO), str(err)) from err

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        """FreeBSD ``waitpid``: statuses in FreeBSD encoding (signal numbers translated)."""
        p = self.procs.get(pid)
        if p is not None and p.statuses:
            status = p.statuses.popleft()
            return pid, status
        if options & WNOHANG:
            return 0, 0
        if p is None or p.stopped:
            raise ChildProcessError(ECHILD, f"waitpid({pid}): no state change to report")
        stop = _wait_any(p.tids)
        if stop.stopped:
            p.stopped = True
            p.last_sig = linux_sig_to_freebsd(stop.signal)
            for t in p.tids:  # FreeBSD stops the whole process
                if t != stop.tid:
                    li.interrupt(t)
            self._changed(pid)
            return pid, stopped_status(p.last_sig)
        del self.procs[pid]
        if os.WIFEXITED(stop.status):
            return pid, os.WEXITSTATUS(stop.status) << 8
        return pid, linux_sig_to_freebsd(os.WTERMSIG(stop.status))

    def kill(self, pid: int, sig: int) -> None:
        """FreeBSD ``kill`` with a FreeBSD signal number."""
        lx = freebsd_sig_to_linux(sig)
        if lx == 0 and sig != 0:
            raise _fail(EINVAL, f"FreeBSD signal {sig} has no Linux counterpart")
        try:
            os.kill(pid, lx)
        except ProcessLookupError:
            raise _fail(ESRCH, f"kill({pid})") from None

    def close(self) -> None:
        """Detach whatever is still traced (test teardown)."""
        for pid in list(self.procs):
            try:
                self._detach(pid, 1, 0)
            except (OSError, PlatformError):
                self.procs.pop(pid, None)

    # -- helpers ----------------------------------------------------------------
    def _changed(self, pid: int) -> None:
        if self.on_change is not None:
            self.on_change(pid)

    def _proc(self, pid: int, *, stopped: bool = True) -> _Proc:
        owner = pid if pid in self.procs else _tgid(pid)
        if owner is None:
            raise _fail(ESRCH, f"no process {pid}")
        p = self.procs.get(owner)
        if p is None:
            raise _fail(EBUSY, f"process {owner} is not traced by this tracer")
        if stopped and not p.stopped:
            raise _fail(EBUSY, f"process {owner} is not stopped")
        return p

    def _thread(self, tid: int) -> tuple[_Proc, int]:
        """A thread request: a pid picks the leader (an "arbitrary thread")."""
        p = self._proc(tid)
        t = tid if tid in p.tids else p.pid
        if t not in p.tids:
            raise _fail(ESRCH, f"thread {tid} is not in process {p.pid}")
        return p, t

    @staticmethod
    def _get(addr: int, size: int) -> bytes:
        if addr == 0:
            raise _fail(EFAULT, "NULL argument pointer")
        return ctypes.string_at(addr, size)

    @staticmethod
    def _put(addr: int, data: bytes) -> None:
        if addr == 0:
            raise _fail(EFAULT, "NULL argument pointer")
        ctypes.memmove(addr, data, len(data))

    # -- attach / detach ----------------------------------------------------------
    def _attach(self, pid: int, addr: int, data: int) -> int:
        if pid in self.procs:
            raise _fail(EBUSY, f"process {pid} is already traced")
        if _tgid(pid) != pid:
            raise _fail(ESRCH, f"no process {pid}")
        tids: list[int] = []
        try:
            while True:
                new = [t for t in _tasks(pid) if t not in tids]
                if not new:
                    break
                for t in new:
                    li.seize(t, 0)
                    tids.append(t)
                    li.interrupt(t)
        except PlatformError:
            for t in tids:
                try:
                    li.detach(t)
                except PlatformError:
                    pass
            raise
        p = _Proc(pid, tids)
        p.statuses.append(stopped_status(17))  # FreeBSD SIGSTOP
        p.last_sig = 17
        self.procs[pid] = p
        self._changed(pid)
        return 0

    def _detach(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid, stopped=False)
        if addr != 1:
            t = p.pid
            regs = li.get_regs(t)
            li.set_regs(t, _replace(regs, rip=addr))
        sig = freebsd_sig_to_linux(data) if data else 0
        for t in p.tids:
            li.detach(t, sig if t == p.pid else 0)
        del self.procs[p.pid]
        self._changed(p.pid)
        return 0

    def _continue(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        if p.statuses:
            return 0  # stops still queued for the tracer: it stays stopped (emulation)
        sig = freebsd_sig_to_linux(data) if data else 0
        for t in p.tids:
            li.resume(t, sig if t == p.pid else 0)
        p.stopped = False
        self._changed(p.pid)
        return 0

    def _kill_req(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid, stopped=False)
        os.kill(p.pid, lx_signal.SIGKILL)
        return 0

    def _follow_fork(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        opts = li.PTRACE_O_TRACEFORK | li.PTRACE_O_TRACEVFORK | li.PTRACE_O_TRACECLONE if data else 0
        for t in p.tids:
            li.set_options(t, opts)
        p.follow_fork = bool(data)
        return 0

    def _adopt(self, parent: _Proc, child: int) -> None:
        """A child of a remote fork-like call under PT_FOLLOW_FORK: traced, its first stop
        a SIGSTOP (not in the reference: ptrace.2's PTRACE_FORK by memory). A new thread
        (CLONE_THREAD) joins its process's LWP list, stopped with it."""
        li.wait_stop(child)  # the Linux auto-attach stop
        if _tgid(child) == parent.pid:
            parent.tids.append(child)
            return
        p = _Proc(child, [child], follow_fork=parent.follow_fork)
        p.statuses.append(stopped_status(17))
        p.last_sig = 17
        self.procs[child] = p
        self._changed(child)

    # -- threads ----------------------------------------------------------------------
    def _numlwps(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        return len(p.tids)

    def _lwplist(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        if data < 0:
            raise _fail(EINVAL, "negative array length")
        n = min(data, len(p.tids))
        self._put(addr, struct.pack(f"<{n}i", *p.tids[:n]))
        return n

    def _lwpinfo(self, pid: int, addr: int, data: int) -> int:
        p, t = self._thread(pid)
        if data < LWPINFO_HEAD.size:
            raise _fail(EINVAL, f"struct ptrace_lwpinfo size {data} too small")
        event = PL_EVENT_SIGNAL if p.last_sig else PL_EVENT_NONE
        self._put(addr, LWPINFO_HEAD.pack(t, event, 0) + bytes(data - LWPINFO_HEAD.size))
        return 0

    # -- registers ----------------------------------------------------------------------
    def _getregs(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        regs = li.get_regs(t)
        buf = bytearray(REG_SIZE)
        for name, off, code in REG_FIELDS:
            lx = REG_TO_LINUX[name]
            value = getattr(regs, lx) if lx is not None else 0
            bits = struct.calcsize(code) * 8
            value &= (1 << bits) - 1
            if code == "q" and value >= 1 << 63:
                value -= 1 << 64
            struct.pack_into("<" + code, buf, off, value)
        self._put(addr, bytes(buf))
        return 0

    def _setregs(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        raw = self._get(addr, REG_SIZE)
        regs = li.get_regs(t)
        changes: dict[str, int] = {}
        for name, off, code in REG_FIELDS:
            lx = REG_TO_LINUX[name]
            if lx is not None:
                changes[lx] = struct.unpack_from("<" + code, raw, off)[0] & 0xFFFF_FFFF_FFFF_FFFF
        li.set_regs(t, _replace(regs, **changes))
        return 0

    def _getfpregs(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        # struct fpreg (fpr_env[4], fpr_acc[8][16], fpr_xacc[16][16], fpr_spare[12]) is the
        # 512-byte FXSAVE image, byte for byte the Linux NT_PRFPREG regset
        self._put(addr, _fxsave_for_freebsd(li.get_fpregs(t)[:FPREG_SIZE]))
        return 0

    def _setfpregs(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        li.set_fpregs(t, self._get(addr, FPREG_SIZE))
        return 0

    def _xstate(self, t: int) -> bytes:
        return li.get_xstate(t)

    def _xstate_info(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        if data != XSTATE_INFO.size:
            raise _fail(EINVAL, f"PT_GETXSTATE_INFO data {data} != sizeof(struct ptrace_xstate_info)")
        xs = self._xstate(t)
        mask = struct.unpack_from("<Q", xs, 464)[0]  # Linux stores XCR0 in sw_reserved[0]
        self._put(addr, XSTATE_INFO.pack(mask, len(xs)))
        return 0

    def _getxstate(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        xs = self._xstate(t)
        if not 512 + 64 <= data <= len(xs):
            raise _fail(EINVAL, f"PT_GETXSTATE size {data} outside 576..{len(xs)}")
        self._put(addr, _fxsave_for_freebsd(xs[:data]))
        return 0

    def _setxstate(self, pid: int, addr: int, data: int) -> int:
        _, t = self._thread(pid)
        xs = self._xstate(t)
        if not 512 + 64 <= data <= len(xs):
            raise _fail(EINVAL, f"PT_SETXSTATE size {data} outside 576..{len(xs)}")
        li.set_xstate(t, self._get(addr, data) + xs[data:])
        return 0

    def _base(self, pid: int, addr: int, which: str, write: bool) -> int:
        _, t = self._thread(pid)
        regs = li.get_regs(t)
        if write:
            value = struct.unpack("<Q", self._get(addr, 8))[0]
            li.set_regs(t, _replace(regs, **{which: value}))
        else:
            self._put(addr, struct.pack("<Q", getattr(regs, which)))
        return 0

    def _getfsbase(self, pid: int, addr: int, data: int) -> int:
        return self._base(pid, addr, "fs_base", False)

    def _setfsbase(self, pid: int, addr: int, data: int) -> int:
        return self._base(pid, addr, "fs_base", True)

    def _getgsbase(self, pid: int, addr: int, data: int) -> int:
        return self._base(pid, addr, "gs_base", False)

    def _setgsbase(self, pid: int, addr: int, data: int) -> int:
        return self._base(pid, addr, "gs_base", True)

    # -- memory -------------------------------------------------------------------------
    def _io(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        op, offs, local, length = IO_DESC.unpack(self._get(addr, IO_DESC.size))
        if op in (PIOD_READ_D, PIOD_READ_I):
            moved = _vm_read(p.pid, offs, local, length)
        elif op in (PIOD_WRITE_D, PIOD_WRITE_I):
            moved = _mem_write(p.pid, offs, local, length)
        else:
            raise _fail(EINVAL, f"piod_op {op} is not a PIOD_* operation")
        if moved == 0 and length > 0:
            raise _fail(EFAULT, f"PT_IO at 0x{offs:x}: nothing transferable")
        self._put(addr, IO_DESC.pack(op, offs, local, moved))
        return 0

    @staticmethod
    def _maps(pid: int) -> tuple[str, list[li.MapLine]]:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                text = fh.read()
        except OSError:
            raise _fail(ESRCH, f"no process {pid}") from None
        return text, li.parse_maps(text)

    def _vm_timestamp(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        return zlib.crc32(self._maps(p.pid)[0].encode()) & 0x7FFF_FFFF

    def _vm_entry(self, pid: int, addr: int, data: int) -> int:
        p = self._proc(pid)
        e = list(VM_ENTRY.unpack(self._get(addr, VM_ENTRY.size)))
        index, bufsize, path_ptr = e[0], e[6], e[9]
        text, maps = self._maps(p.pid)
        maps = [m for m in maps if m.path != "[vsyscall]"]  # not a map entry on FreeBSD
        if index < 0 or index >= len(maps):
            raise _fail(ENOENT, f"PT_VM_ENTRY: no entry after {index}")
        m = maps[index]
        # only vnode mappings have a path; an unlinked file's path cannot be resolved
        path = m.path if m.path.startswith("/") and not m.path.endswith(" (deleted)") else ""
        prot = ((VM_PROT_READ if "r" in m.perms else 0) | (VM_PROT_WRITE if "w" in m.perms else 0)
                | (VM_PROT_EXECUTE if "x" in m.perms else 0))
        ino, fsid = _map_ids(text, m.start)
        out = [index + 1, zlib.crc32(text.encode()) & 0x7FFF_FFFF, m.start, m.end - 1,
               m.offset if path else 0, prot, 0, ino if path else 0, fsid if path else 0, path_ptr]
        if path:
            raw = os.fsencode(path) + b"\0"
            out[6] = len(raw)
            if bufsize < len(raw) or path_ptr == 0:
                self._put(addr, VM_ENTRY.pack(*out))
                raise _fail(ENAMETOOLONG, f"PT_VM_ENTRY path needs {len(raw)} bytes, buffer {bufsize}")
            self._put(path_ptr, raw)
        self._put(addr, VM_ENTRY.pack(*out))
        return 0

    # -- remote system calls ----------------------------------------------------------
    def _sc_remote(self, pid: int, addr: int, data: int) -> int:
        p, t = self._thread(pid)
        if data != SC_REMOTE.size:
            raise _fail(EINVAL, f"PT_SC_REMOTE data {data} != sizeof(struct ptrace_sc_remote)")
        _, _, _, nr, nargs, args_ptr = SC_REMOTE.unpack(self._get(addr, SC_REMOTE.size))
        if nargs > 6:
            raise _fail(EINVAL, f"pscr_nargs {nargs} > 6 (Linux system calls take at most 6)")
        args = struct.unpack(f"<{nargs}Q", self._get(args_ptr, 8 * nargs)) if nargs else ()
        refusal = linuxulator_refusal(p.pid, nr, args)
        if refusal is not None:
            out = SC_REMOTE.pack(0, 0, refusal, nr, nargs, args_ptr)
            self._put(addr, out)
            p.statuses.append(stopped_status(5))
            self.refused.append((nr, refusal))
            return 0
        if p.syscall_insn == 0 or not _is_syscall_insn(p.pid, p.syscall_insn):
            p.syscall_insn = li.find_syscall_insn(p.pid)  # (again after the old one was unmapped)
        # a fresh injector each time: it restores the registers the thread has *now*
        inj = li.Injector(t, p.syscall_insn, keep_regs=False)
        result = inj.call(nr, *args, check=False)
        res = result.value
        if result.child:
            self._adopt(p, result.child)
        if nr in _MAP_CHANGING:
            self._changed(p.pid)  # linprocfs maps are live on FreeBSD: the snapshot follows
        if -4096 < res < 0:
            out = SC_REMOTE.pack(0, 0, linux_errno_to_freebsd(-res), nr, nargs, args_ptr)
        else:
            out = SC_REMOTE.pack(res, 0, 0, nr, nargs, args_ptr)
        self._put(addr, out)
        p.statuses.append(stopped_status(5))  # FreeBSD SIGTRAP: the new stop, for waitpid(WNOHANG)
        return 0


# --- the Linuxulator's system-call table, as far as linuxulator.md 2-3 states it ---------
# Linux x86-64 numbers of the calls the reference lists as DUMMY (ENOSYS + log), unimplemented
# (nosys) or always failing (rseq).
LINUXULATOR_ENOSYS: Final[dict[int, str]] = {
    205: "set_thread_area", 211: "get_thread_area", 219: "restart_syscall", 334: "rseq",
    324: "membarrier", 434: "pidfd_open", 424: "pidfd_send_signal", 438: "pidfd_getfd", 437: "openat2",
    425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register", 322: "execveat", 289: "signalfd4",
    308: "setns", 272: "unshare", 155: "pivot_root", 310: "process_vm_readv", 311: "process_vm_writev",
    312: "kcmp", 323: "userfaultfd", 325: "mlock2", 327: "preadv2", 328: "pwritev2", 329: "pkey_mprotect",
    330: "pkey_alloc", 331: "pkey_free", 298: "perf_event_open", 321: "bpf", 254: "inotify_add_watch",
    255: "inotify_rm_watch", 294: "inotify_init1", 300: "fanotify_init", 301: "fanotify_mark",
    428: "open_tree", 429: "move_mount", 430: "fsopen", 431: "fsconfig", 432: "fsmount", 433: "fspick",
    442: "mount_setattr", 444: "landlock_create_ruleset", 445: "landlock_add_rule",
    446: "landlock_restrict_self", 449: "futex_waitv", 452: "fchmodat2", 154: "modify_ldt", 173: "ioperm",
    206: "io_setup", 207: "io_destroy", 208: "io_getevents", 209: "io_submit", 210: "io_cancel",
    240: "mq_open", 241: "mq_unlink", 242: "mq_timedsend", 243: "mq_timedreceive", 244: "mq_notify",
    245: "mq_getsetattr", 187: "readahead", 453: "map_shadow_stack", 122: "setfsuid", 123: "setfsgid",
    153: "vhangup", 159: "adjtimex", 305: "clock_adjtime",
}
#: prctl options the Linuxulator handles (linuxulator.md 3); every other option is EINVAL
LINUXULATOR_PRCTL: Final = frozenset({1, 2, 3, 4, 7, 8, 15, 16, 38})
#: arch_prctl codes it handles (linuxulator.md 2); anything else is EINVAL
LINUXULATOR_ARCH_PRCTL: Final = frozenset({0x1001, 0x1002, 0x1003, 0x1004, 0x3001})
ENOSYS_FB, ENOMEM_FB, EPERM_FB = 78, 12, 1
#: Linux calls after which the linprocfs double's maps snapshot is refreshed
#: (mmap, mprotect, munmap, brk, mremap, arch_prctl, execve)
_MAP_CHANGING: Final = frozenset({9, 10, 11, 12, 25, 158, 59})


def _is_syscall_insn(pid: int, addr: int) -> bool:
    try:
        return li.read_memory(pid, addr, 2) == li.SYSCALL_INSN
    except PlatformError:
        return False


def linuxulator_refusal(pid: int, nr: int, args: tuple[int, ...]) -> int | None:
    """The FreeBSD errno the Linuxulator answers Linux call *nr* with, when the
    reference says it refuses it; None when the call runs (for real, on Linux).
    Calls whose Linuxulator status the reference does not give run as on Linux."""
    a = list(args) + [0] * 6
    if nr in LINUXULATOR_ENOSYS:
        return ENOSYS_FB
    if nr == 157 and a[0] not in LINUXULATOR_PRCTL:  # prctl
        return EINVAL
    if nr == 158 and a[0] not in LINUXULATOR_ARCH_PRCTL:  # arch_prctl
        return EINVAL
    if nr == 25 and a[2] > a[1]:  # mremap: never grows (ENOMEM)
        return ENOMEM_FB
    if nr == 126 and a[1]:  # capset: setting any capability -> EPERM (linuxulator.md 3)
        try:
            sets = li.read_memory(pid, a[1], 24)
        except PlatformError:
            return EFAULT
        if any(sets):
            return EPERM_FB
    if nr == 435:  # clone3: set_tid, CLONE_NEWTIME, CLONE_INTO_CGROUP -> ENOSYS
        try:
            raw = li.read_memory(pid, a[0], 88) if a[0] else b""
        except PlatformError:
            return EFAULT
        if len(raw) >= 80:
            flags = struct.unpack_from("<Q", raw, 0)[0]
            set_tid, set_tid_size = struct.unpack_from("<QQ", raw, 64)
            if set_tid or set_tid_size or flags & (0x80 | 0x2_0000_0000):
                return ENOSYS_FB
    return None


def _fxsave_for_freebsd(area: bytes) -> bytes:
    """Zero the FXSAVE software-reserved bytes 464..511: Linux puts XCR0 there
    for ptrace, FreeBSD's content is not in the reference, so a client must
    not find Linux's value there."""
    return area[:464] + bytes(48) + area[512:]


def _wait_any(tids: list[int]) -> li.Stop:
    """The next state change of any of *tids* (__WALL, polled)."""
    while True:
        for t in tids:
            try:
                got, status = os.waitpid(t, 0x40000000 | os.WNOHANG)
            except ChildProcessError:
                continue
            if got == t:
                return li.Stop(t, status)
        time.sleep(0.002)


def _replace(regs: ThreadRegs, **changes: int) -> ThreadRegs:
    return dataclasses.replace(regs, **changes)


def _map_ids(text: str, start: int) -> tuple[int, int]:
    """(inode, device as major<<8|minor) of the maps line starting at *start*."""
    key = f"{start:x}-"
    for line in text.splitlines():
        if line.startswith(key) or line.lstrip("0").startswith(key):
            f = line.split()
            major, _, minor = f[3].partition(":")
            return int(f[4]), (int(major, 16) << 8) | int(minor, 16)
    return 0, 0


def _vm_read(pid: int, remote: int, local: int, length: int) -> int:
    if length == 0:
        return 0
    lib = li.libc()
    ctypes.set_errno(0)
    liov = (li._IoVec * 1)(li._IoVec(local, length))
    riov = (li._IoVec * 1)(li._IoVec(remote, length))
    got = int(lib.process_vm_readv(pid, liov, 1, riov, 1, 0))
    if got < 0:
        err = ctypes.get_errno()
        if err in (lx_errno.EFAULT, lx_errno.EIO, lx_errno.ENOMEM):
            return 0
        raise PlatformError(f"process_vm_readv pid {pid}: {os.strerror(err)}", errno=err)
    return got


def _mem_write(pid: int, remote: int, local: int, length: int) -> int:
    if length == 0:
        return 0
    data = ctypes.string_at(local, length)
    fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    try:
        done = 0
        while done < length:
            try:
                n = os.pwrite(fd, data[done:], remote + done)
            except OSError:
                break
            if n <= 0:
                break
            done += n
        return done
    finally:
        os.close(fd)
