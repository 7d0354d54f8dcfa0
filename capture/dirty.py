"""Dirty-page tracking for pre-copy: which pages did a running process write?

One interface, :class:`Tracker`, two implementations:

* :class:`UffdWpTracker` (Linux >= 6.7): inside the target a userfaultfd is
  created by syscall injection (``userfaultfd(O_CLOEXEC|O_NONBLOCK|
  UFFD_USER_MODE_ONLY)``, ``UFFDIO_API`` with ``UFFD_FEATURE_WP_ASYNC |
  UFFD_FEATURE_WP_UNPOPULATED``, ``UFFDIO_REGISTER`` with ``MODE_WP`` over
  every writable private range). From outside, ``/proc/PID/pagemap`` is
  scanned with the ``PAGEMAP_SCAN`` ioctl, flags ``PM_SCAN_WP_MATCHING |
  PM_SCAN_CHECK_WPASYNC``, category ``PAGE_IS_WRITTEN``: the first scan
  returns every page of the tracked ranges and write-protects them, later
  scans return exactly the pages written since. Writes resolve themselves in
  the kernel (async mode): the target never blocks. ``stop()`` closes the
  userfaultfd in the target (injected ``close``), which drops the
  registration, so it never appears in a dump. A process stopped by SIGSTOP
  cannot run injected code under PTRACE_SEIZE (it re-traps into the group
  stop), so a frozen target must be frozen by ptrace and :meth:`hold` tells
  the tracker so. Stopping uses the platform's seize/interrupt/release; the
  injection itself is a small private injector here (single-step over a
  ``syscall`` instruction of the target's vDSO), independent of the
  platform's and the restorer's injection helpers.
  Ranges that appear after ``start`` (new mmaps, heap growth) are reported
  entirely dirty once and registered; ranges the kernel refuses to register
  are reported entirely dirty at every scan (never silently untracked).
* :class:`HashTracker` (everywhere, the FreeBSD fallback): keeps a SHA-1
  digest per 64 KiB block and per page and reports pages whose digest
  changed, re-hashing pages only inside changed blocks. It reads the memory
  in large chunks (up to 64 MiB per read). A write that restores the
  previous bytes is invisible to it, which is harmless for migration.

Struct layouts (from the kernel uapi headers, ``include/uapi/linux/fs.h`` and
``userfaultfd.h``; the installed 6.1 headers predate PAGEMAP_SCAN):
``struct pm_scan_arg`` = 12 x u64 (size, flags, start, end, walk_end, vec,
vec_len, max_pages, category_inverted, category_mask, category_anyof_mask,
return_mask), ``PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)``;
``struct page_region`` = (start, end, categories) u64; ``struct uffdio_api``
= (api, features, ioctls) u64; ``struct uffdio_register`` = (start, len,
mode, ioctls) u64.

Refuses: tracking a process that is gone, a kernel without the features
(:class:`TrackerUnavailable`, so callers fall back to hashing).
"""

from __future__ import annotations

import ctypes
import enum
import errno as errno_mod
import fcntl
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Protocol, Sequence

from capture.errors import PlatformError

PAGE_SIZE = 4096

# syscalls (x86_64 numbers; the tracker's injection is x86_64-only)
SYS_ioctl = 16
SYS_close = 3
SYS_userfaultfd = 323
O_CLOEXEC = 0o2000000
O_NONBLOCK = 0o4000
UFFD_USER_MODE_ONLY = 1
UFFD_API = 0xAA
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1


def _iowr(kind: int, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | nr


UFFDIO_API = _iowr(0xAA, 0x3F, 24)
UFFDIO_REGISTER = _iowr(0xAA, 0x00, 32)
PM_SCAN_ARG = struct.Struct("=12Q")
PAGE_REGION = struct.Struct("=3Q")
PAGEMAP_SCAN = _iowr(ord("f"), 16, PM_SCAN_ARG.size)
PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5

PROT_WRITE = 0x2
MAP_PRIVATE = 0x02

PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SINGLESTEP = 9
WALL = 0x40000000
SIGTRAP = 5
_REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
              "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
              "es", "fs", "gs")


class _UserRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in _REG_NAMES]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(req: int, tid: int, addr: int, data: int, what: str) -> None:
    if _libc.ptrace(req, tid, ctypes.c_void_p(addr), ctypes.c_void_p(data)) == -1:
        err = ctypes.get_errno()
        raise PlatformError(f"{what} on tid {tid} failed: {os.strerror(err)}", errno=err)


class _Injector:
    """Minimal private syscall injection (x86_64) into a thread that is already in a
    ptrace-stop: registers saved, rip pointed at a ``syscall`` instruction of the
    target's vDSO, one single-step, result read, registers restored. Private to the
    tracker so it does not depend on the in-flux injection helpers of the platform
    and restore modules."""

    def __init__(self, pid: int, proc: str) -> None:
        self.pid = pid
        self.proc = proc
        self._insn: int | None = None

    def _find_insn(self) -> int:
        if self._insn is not None:
            return self._insn
        with open(f"{self.proc}/{self.pid}/maps") as f:
            lines = [ln.split() for ln in f if ln.rstrip().endswith("[vdso]")]
        if not lines:
            raise TrackerUnavailable(f"pid {self.pid} has no [vdso] mapping to borrow a syscall instruction from")
        lo, hi = (int(x, 16) for x in lines[0][0].split("-"))
        fd = os.open(f"{self.proc}/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            code = os.pread(fd, hi - lo, lo)
        finally:
            os.close(fd)
        pos = code.find(b"\x0f\x05")
        if pos < 0:
            raise TrackerUnavailable(f"no syscall instruction in the vDSO of pid {self.pid}")
        self._insn = lo + pos
        return self._insn

    def syscall(self, tid: int, nr: int, *args: int) -> int:
        insn = self._find_insn()
        saved = _UserRegs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(saved), "PTRACE_GETREGS")
        regs = _UserRegs.from_buffer_copy(saved)
        a = [x & 0xFFFFFFFFFFFFFFFF for x in (list(args) + [0] * 6)[:6]]
        regs.rax, regs.orig_rax, regs.rip = nr, 0xFFFFFFFFFFFFFFFF, insn
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = a
        regs.eflags &= ~0x100
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs), "PTRACE_SETREGS")
        try:
            _ptrace(PTRACE_SINGLESTEP, tid, 0, 0, "PTRACE_SINGLESTEP")
            _, status = os.waitpid(tid, WALL)
            if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != SIGTRAP:
                raise PlatformError(f"injected syscall {nr} in tid {tid}: unexpected stop status 0x{status:x}")
            after = _UserRegs()
            _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(after), "PTRACE_GETREGS")
            if after.rip != insn + 2:
                raise PlatformError(f"injected syscall {nr} in tid {tid} stopped at 0x{after.rip:x}, "
                                    f"expected 0x{insn + 2:x}")
            res = int(after.rax)
            return res - (1 << 64) if res >= 1 << 63 else res
        finally:
            _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(saved), "PTRACE_SETREGS")

    def rsp(self, tid: int) -> int:
        regs = _UserRegs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs), "PTRACE_GETREGS")
        return int(regs.rsp)

    def write(self, addr: int, data: bytes) -> None:
        fd = os.open(f"{self.proc}/{self.pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.pwrite(fd, data, addr) != len(data):
                raise PlatformError(f"short write of {len(data)} bytes at 0x{addr:x} in pid {self.pid}")
        except OSError as err:
            raise PlatformError(f"cannot write at 0x{addr:x} in pid {self.pid}", errno=err.errno) from err
        finally:
            os.close(fd)

Run = tuple[int, int]  # (start address, number of pages)


class TrackerKind(enum.Enum):
    UFFD_WP = "uffd-wp"
    HASH = "hash"


class TrackerUnavailable(PlatformError):
    """The kernel (or the target) cannot support this tracker; use another."""


@dataclass(frozen=True, slots=True)
class Range:
    start: int
    end: int

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE


class Tracker(Protocol):
    """Pages a running process wrote since the previous scan."""

    kind: TrackerKind

    def start(self) -> None:
        """Begin tracking (the first ``scan`` then returns every tracked page)."""

    def scan(self) -> list[Run]:
        """Runs of pages written since the previous scan (sorted, merged)."""

    def stop(self) -> None:
        """End tracking and remove every trace of it from the target."""


def merge_runs(runs: Sequence[Run]) -> list[Run]:
    out: list[Run] = []
    for addr, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] * PAGE_SIZE == addr:
            out[-1] = (out[-1][0], out[-1][1] + n)
        elif out and out[-1][0] + out[-1][1] * PAGE_SIZE > addr:
            end = max(out[-1][0] + out[-1][1] * PAGE_SIZE, addr + n * PAGE_SIZE)
            out[-1] = (out[-1][0], (end - out[-1][0]) // PAGE_SIZE)
        else:
            out.append((addr, n))
    return out


def run_pages(runs: Sequence[Run]) -> list[int]:
    """Expand runs into page addresses (for tests and small sets)."""
    return [a + i * PAGE_SIZE for a, n in runs for i in range(n)]


def writable_private_ranges(pid: int, *, proc: str = "/proc") -> list[Range]:
    """Writable private mappings of *pid* from /proc/PID/maps (no [vsyscall]/[vvar]/[vdso])."""
    try:
        with open(f"{proc}/{pid}/maps") as f:
            text = f.read()
    except OSError as err:
        raise PlatformError(f"cannot read {proc}/{pid}/maps: {err.strerror}", errno=err.errno) from err
    out: list[Range] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        perms = parts[1]
        path = parts[5].strip() if len(parts) > 5 else ""
        if perms[1] != "w" or perms[3] != "p" or perms[0] != "r":
            continue
        if path in ("[vsyscall]", "[vvar]", "[vdso]", "[vvar_vclock]", "[uprobes]"):
            continue
        out.append(Range(lo, hi))
    return out


def _subtract(ranges: Sequence[Range], covered: Sequence[Range]) -> list[Range]:
    """Parts of *ranges* not inside any of *covered*."""
    out: list[Range] = []
    cov = sorted((c.start, c.end) for c in covered)
    for r in ranges:
        pos = r.start
        for cs, ce in cov:
            if ce <= pos or cs >= r.end:
                continue
            if cs > pos:
                out.append(Range(pos, cs))
            pos = max(pos, ce)
            if pos >= r.end:
                break
        if pos < r.end:
            out.append(Range(pos, r.end))
    return out


def _intersect(ranges: Sequence[Range], within: Sequence[Range]) -> list[Range]:
    out: list[Range] = []
    for r in ranges:
        for w in within:
            lo, hi = max(r.start, w.start), min(r.end, w.end)
            if lo < hi:
                out.append(Range(lo, hi))
    return out


# -- the userfaultfd + PAGEMAP_SCAN tracker ---------------------------------------------------

class UffdWpTracker:
    """Async userfaultfd write-protect in the target, PAGEMAP_SCAN from outside."""

    kind = TrackerKind.UFFD_WP

    def __init__(self, pid: int, *, only: Sequence[Range] | None = None, proc: str = "/proc",
                 vec_len: int = 4096) -> None:
        self.pid = pid
        self.only = list(only) if only is not None else None
        self.proc = proc
        self.vec_len = vec_len
        self.uffd: int | None = None       # descriptor number inside the target
        self.registered: list[Range] = []
        self.unregistrable: list[Range] = []
        self._pending: list[Range] = []     # new ranges, reported dirty at the next scan
        self._pagemap: int | None = None
        self._vec = ctypes.create_string_buffer(PAGE_REGION.size * vec_len)
        self._held = False
        self._injector = _Injector(pid, proc)
        from capture.platform.linux import LinuxPlatform

        self._plat = LinuxPlatform(procfs=proc)

    # ranges we should track right now
    def _wanted(self) -> list[Range]:
        ranges = writable_private_ranges(self.pid, proc=self.proc)
        return _intersect(ranges, self.only) if self.only is not None else ranges

    def hold(self, held: bool) -> None:
        """Tell the tracker the caller keeps every thread of the target in a
        ptrace-stop (a ptrace freeze); it then injects without seizing."""
        self._held = held

    def _with_stopped(self, fn: "_StoppedFn") -> None:
        if self._held:
            fn(self.pid)
            return
        plat = self._plat
        tids = list(plat.list_threads(self.pid))
        seized: list[int] = []
        try:
            for tid in tids:
                plat.seize(tid)
                seized.append(tid)
            for tid in seized:
                plat.interrupt(tid)
            fn(self.pid)
        finally:
            for tid in seized:
                try:
                    plat.release(tid)
                except PlatformError:
                    pass

    def _inject(self, nr: int, *args: int) -> int:
        return self._injector.syscall(self.pid, nr, *args)

    def _scratch(self) -> int:
        return (self._injector.rsp(self.pid) - 128 - 256) & ~0xF

    def _register(self, ranges: Sequence[Range]) -> None:
        def do(_pid: int) -> None:
            scratch = self._scratch()
            for r in ranges:
                self._injector.write(scratch,
                                        struct.pack("=4Q", r.start, r.end - r.start, UFFDIO_REGISTER_MODE_WP, 0))
                res = self._inject(SYS_ioctl, self.uffd or 0, UFFDIO_REGISTER, scratch)
                if res < 0:
                    self.unregistrable.append(r)
                else:
                    self.registered.append(r)

        self._with_stopped(do)

    def start(self) -> None:
        if self.uffd is not None:
            raise PlatformError(f"tracker for pid {self.pid} already started")
        ranges = self._wanted()

        def do(_pid: int) -> None:
            fd = self._inject(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)
            if fd < 0:
                raise TrackerUnavailable(f"userfaultfd() in pid {self.pid} failed", errno=-fd)
            scratch = self._scratch()
            want = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
            self._injector.write(scratch, struct.pack("=3Q", UFFD_API, want, 0))
            res = self._inject(SYS_ioctl, fd, UFFDIO_API, scratch)
            if res < 0:
                self._inject(SYS_close, fd)
                raise TrackerUnavailable(
                    f"UFFDIO_API with WP_ASYNC|WP_UNPOPULATED refused in pid {self.pid}", errno=-res)
            self.uffd = fd

        self._with_stopped(do)
        self._register(ranges)
        try:
            self._pagemap = os.open(f"{self.proc}/{self.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            self.stop()
            raise PlatformError(f"cannot open {self.proc}/{self.pid}/pagemap: {err.strerror}",
                                errno=err.errno) from err

    def _scan_range(self, r: Range) -> tuple[list[Run], bool]:
        """(written runs, complete?) of one registered range; re-protects what it reports."""
        assert self._pagemap is not None
        out: list[Run] = []
        vec_addr = ctypes.addressof(self._vec)
        start = r.start
        while start < r.end:
            arg = ctypes.create_string_buffer(PM_SCAN_ARG.pack(
                PM_SCAN_ARG.size, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, start, r.end, 0,
                vec_addr, self.vec_len, 0, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN), PM_SCAN_ARG.size)
            try:
                n = fcntl.ioctl(self._pagemap, PAGEMAP_SCAN, arg, True)
            except OSError as err:
                if err.errno in (errno_mod.ENOTTY, errno_mod.EINVAL) and not out and start == r.start:
                    raise TrackerUnavailable(f"PAGEMAP_SCAN on pid {self.pid} failed", errno=err.errno) from err
                if err.errno == errno_mod.EPERM:  # a page without async WP (CHECK_WPASYNC)
                    return out, False
                raise PlatformError(f"PAGEMAP_SCAN on pid {self.pid} [0x{start:x}, 0x{r.end:x}) failed",
                                    errno=err.errno) from err
            walk_end = PM_SCAN_ARG.unpack(arg.raw)[4]
            raw = self._vec.raw[: n * PAGE_REGION.size]
            for i in range(n):
                lo, hi, _cat = PAGE_REGION.unpack_from(raw, i * PAGE_REGION.size)
                out.append((lo, (hi - lo) // PAGE_SIZE))
            if walk_end >= r.end:
                break
            # The kernel may stop before the end with room left in our vector (it
            # walks with an internal buffer); go on from where it stopped.
            if walk_end <= start:
                return out, False  # no progress: treat the rest as unknown (dirty)
            start = walk_end
        return out, True

    def present_pages(self, runs: Sequence[Run]) -> list[Run]:
        """The pages of *runs* that are present (kernel-side, fast on sparse mappings);
        no write protection is changed. Swapped pages are left out: the uffd-wp
        markers of never-touched pages look swapped to PAGEMAP_SCAN, and a page
        not pre-copied is simply taken from the final dump."""
        return self._query([Range(a, a + n * PAGE_SIZE) for a, n in runs], mask=PAGE_IS_PRESENT)

    def zero_pages(self) -> list[Run]:
        """Pages of the tracked ranges now mapped to the zero page.

        A page zapped by MADV_DONTNEED and then only read is not "written" for
        uffd-wp, yet its content changed to zeros; callers must not trust an
        earlier copy of such a page. No write protection is changed here.
        """
        return self._query(self.registered + self.unregistrable, mask=PAGE_IS_PFNZERO)

    def marker_pages(self) -> list[Run]:
        """Pages of the registered ranges whose entry is a swap entry. With no swap area
        active (:func:`swap_active`) these are uffd-wp markers on never-populated pages:
        zero pages, not content; a dump taken while tracking leaves them out."""
        return self._query(self.registered, mask=PAGE_IS_SWAPPED)

    @property
    def uffd_fd(self) -> int | None:
        """The userfaultfd's descriptor number inside the target (None when stopped)."""
        return self.uffd

    def abandon(self) -> None:
        """Forget the target (it is being destroyed): close our own descriptors only;
        nothing is injected into it."""
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None
        self.uffd = None
        self.registered, self.unregistrable, self._pending = [], [], []

    def _query(self, ranges: Sequence[Range], *, mask: int = 0, anyof: int = 0) -> list[Run]:
        """Pages of *ranges* matching the categories (all of *mask*, any of *anyof*)."""
        if self._pagemap is None:
            raise PlatformError(f"tracker for pid {self.pid} is not started")
        out: list[Run] = []
        vec_addr = ctypes.addressof(self._vec)
        for r in ranges:
            start = r.start
            while start < r.end:
                arg = ctypes.create_string_buffer(PM_SCAN_ARG.pack(
                    PM_SCAN_ARG.size, 0, start, r.end, 0, vec_addr, self.vec_len, 0, 0,
                    mask, anyof, mask | anyof), PM_SCAN_ARG.size)
                try:
                    n = fcntl.ioctl(self._pagemap, PAGEMAP_SCAN, arg, True)
                except OSError as err:
                    raise PlatformError(f"PAGEMAP_SCAN (query) on pid {self.pid} failed", errno=err.errno) from err
                raw = self._vec.raw[: n * PAGE_REGION.size]
                for i in range(n):
                    lo, hi, _cat = PAGE_REGION.unpack_from(raw, i * PAGE_REGION.size)
                    out.append((lo, (hi - lo) // PAGE_SIZE))
                walk_end = PM_SCAN_ARG.unpack(arg.raw)[4]
                if walk_end >= r.end or walk_end <= start:
                    break
                start = walk_end
        return merge_runs(out)

    def scan(self) -> list[Run]:
        if self.uffd is None or self._pagemap is None:
            raise PlatformError(f"tracker for pid {self.pid} is not started")
        dirty: list[Run] = [(r.start, r.pages) for r in self._pending]
        self._pending = []
        broken: list[Range] = []
        for r in self.registered:
            runs, complete = self._scan_range(r)
            dirty.extend(runs)
            if not complete:
                broken.append(r)
        for r in self.unregistrable:
            dirty.append((r.start, r.pages))
        wanted = self._wanted()
        # ranges gone from the target stop being tracked; new ones are dirty and get registered
        self.registered = [r for r in self.registered if r not in broken and _intersect([r], wanted)]
        self.unregistrable = _intersect(self.unregistrable, wanted)
        new = _subtract(wanted, self.registered + self.unregistrable)
        if broken:
            dirty.extend((r.start, r.pages) for r in _intersect(broken, wanted))
        if new:
            dirty.extend((r.start, r.pages) for r in new)
            self._register(new)
            # a first scan write-protects the new ranges; its result (every page) is
            # already in ``dirty``, and the caller reads memory only after we return
            for r in new:
                if r in self.registered:
                    self._scan_range(r)
        live = _intersect([Range(a, a + n * PAGE_SIZE) for a, n in dirty], wanted)
        return merge_runs([(r.start, r.pages) for r in live])

    def stop(self) -> None:
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None
        if self.uffd is None:
            return
        fd, self.uffd = self.uffd, None
        if not os.path.exists(f"{self.proc}/{self.pid}"):
            return

        def do(_pid: int) -> None:
            res = self._inject(SYS_close, fd)
            if res < 0:
                raise PlatformError(f"close({fd}) of the userfaultfd in pid {self.pid} failed", errno=-res)

        self._with_stopped(do)
        self.registered, self.unregistrable, self._pending = [], [], []


class _StoppedFn(Protocol):
    def __call__(self, pid: int, /) -> None: ...


# -- the hashing fallback ----------------------------------------------------------------------

class HashTracker:
    """Digests per 64 KiB block and per page; a page is dirty when its digest changed.

    A scan hashes every 16-page block (SHA-1 with the CPU's SHA extensions runs
    at about 1.4 GB/s here, BLAKE2b at 0.7) and only re-hashes the pages of
    blocks whose digest changed. The digests only detect change, they guard
    nothing: a process that crafts SHA-1 collisions in its own memory can only
    corrupt its own migration.
    """

    kind = TrackerKind.HASH
    CHUNK = 64 << 20
    BLOCK = 16 * PAGE_SIZE

    def __init__(self, pid: int, *, only: Sequence[Range] | None = None, proc: str = "/proc") -> None:
        self.pid = pid
        self.only = list(only) if only is not None else None
        self.proc = proc
        self._blocks: dict[int, bytes] = {}  # block address -> digest
        self._pages: dict[int, bytes] = {}   # page address -> digest
        self._fd: int | None = None

    def _wanted(self) -> list[Range]:
        ranges = writable_private_ranges(self.pid, proc=self.proc)
        return _intersect(ranges, self.only) if self.only is not None else ranges

    def start(self) -> None:
        try:
            self._fd = os.open(f"{self.proc}/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise PlatformError(f"cannot open {self.proc}/{self.pid}/mem: {err.strerror}", errno=err.errno) from err
        self._blocks, self._pages = {}, {}

    def scan(self) -> list[Run]:
        if self._fd is None:
            raise PlatformError(f"tracker for pid {self.pid} is not started")
        fd = self._fd
        old_blocks, old_pages = self._blocks, self._pages
        blocks: dict[int, bytes] = {}
        pages: dict[int, bytes] = {}
        dirty: list[Run] = []
        sha1 = hashlib.sha1
        buf = bytearray(self.CHUNK)
        view = memoryview(buf)
        for r in self._wanted():
            addr = r.start
            while addr < r.end:
                size = min(self.CHUNK, r.end - addr)
                try:
                    got = os.preadv(fd, [view[:size]], addr)
                except OSError:
                    got = 0
                got -= got % PAGE_SIZE
                for boff in range(0, got, self.BLOCK):
                    bend = min(boff + self.BLOCK, got)
                    baddr = addr + boff
                    bd = sha1(view[boff:bend]).digest()
                    blocks[baddr] = bd
                    if old_blocks.get(baddr) == bd and bend - boff == self.BLOCK:
                        for off in range(boff, bend, PAGE_SIZE):
                            pages[addr + off] = old_pages[addr + off]
                        continue
                    for off in range(boff, bend, PAGE_SIZE):
                        page = addr + off
                        d = sha1(view[off:off + PAGE_SIZE]).digest()
                        pages[page] = d
                        if old_pages.get(page) != d:
                            dirty.append((page, 1))
                if got < size:  # unreadable tail (e.g. guard pages): count as dirty, no digest
                    dirty.append((addr + got, (size - got) // PAGE_SIZE))
                addr += size
        self._blocks, self._pages = blocks, pages
        return merge_runs(dirty)

    def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._blocks, self._pages = {}, {}


def swap_active(proc: str = "/proc") -> bool:
    """A swap area is in use on this host (/proc/swaps lists one); True when unknown."""
    try:
        with open(f"{proc}/swaps") as f:
            return len(f.read().strip().splitlines()) > 1
    except OSError:
        return True


def make_tracker(pid: int, *, only: Sequence[Range] | None = None, prefer: TrackerKind | None = None) -> Tracker:
    """The best tracker for *pid*: uffd-wp when the kernel has it, else hashing."""
    if prefer is TrackerKind.HASH:
        h = HashTracker(pid, only=only)
        h.start()
        return h
    try:
        t = UffdWpTracker(pid, only=only)
        t.start()
        return t
    except (TrackerUnavailable, ImportError):
        if prefer is TrackerKind.UFFD_WP:
            raise
        h = HashTracker(pid, only=only)
        h.start()
        return h
