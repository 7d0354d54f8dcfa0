"""The platform interface of the capture engine, and the data it speaks.

Every OS call the dump and the restore make goes through one object that
satisfies :class:`Platform` (chosen once by :func:`capture.platform.get_platform`).
The data classes here are Linux-shaped on every host: registers use the field
names of Linux's ``struct user_regs_struct`` (x86_64), flags are Linux values
(``O_*``, ``PROT_*``, ``MAP_*``), signal numbers are Linux numbers. A FreeBSD
backend translates its native answers into these shapes (the migrated
processes are Linux binaries under the Linuxulator there).

What this module refuses to do: it holds no OS code at all, and it does not
guess. A backend that cannot answer a question raises
:class:`capture.errors.PlatformError`; what a backend can answer at all is
declared by :meth:`Platform.features`, and the engine checks features instead
of catching errors by accident.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Protocol, Sequence, runtime_checkable

#: Linux's ``RLIM_INFINITY`` as stored in CRIU images (an explicit sentinel,
#: never a bare -1 or 0).
UNLIMITED: Final[int] = 0xFFFF_FFFF_FFFF_FFFF

PAGE_SIZE: Final[int] = 4096

#: field order of Linux x86_64 ``struct user_regs_struct`` (27 unsigned longs).
USER_REGS_FIELDS: Final[tuple[str, ...]] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)


class Feature(enum.Enum):
    """Capabilities a platform backend declares (and a contract test checks)."""

    #: attach without a visible SIGSTOP (PTRACE_SEIZE + PTRACE_INTERRUPT).
    SEIZE = "seize"
    #: stop and attach a process at all, possibly visibly (FreeBSD PT_ATTACH
    #: sends SIGSTOP, which the backend consumes); SEIZE implies it.
    ATTACH = "attach"
    #: general registers incl. fs_base/gs_base of every thread.
    GP_REGS = "gp-regs"
    #: the full xsave area (FPU, SSE, AVX, ...) of every thread.
    XSAVE = "xsave"
    #: per-page presence (Linux /proc/PID/pagemap); without it every page of
    #: a private mapping is treated as touched.
    PAGE_PRESENCE = "page-presence"
    #: vectored reads of another process's memory into a caller buffer.
    VECTORED_READ = "vectored-read"
    #: writes into another process's memory (restore, injection scratch).
    MEMORY_WRITE = "memory-write"
    #: open descriptors with kind, position and flags.
    FDS = "fds"
    #: open descriptors with kind, path, position and access flags only (no
    #: inode/device/size/close-on-exec: FreeBSD ``procstat -f``); FDS implies it.
    FDS_BASIC = "fds-basic"
    #: sockets described (family, type, state, addresses).
    SOCKET_INFO = "socket-info"
    #: signal handlers of a process (may need syscall injection).
    SIGACTIONS = "sigactions"
    #: sigaltstack, clear_tid address and the like (needs injection).
    THREAD_EXTRAS = "thread-extras"
    #: rseq registration of a thread (Linux PTRACE_GET_RSEQ_CONFIGURATION).
    RSEQ = "rseq"
    #: seccomp mode of a thread.
    SECCOMP = "seccomp"
    #: namespace identities (inode numbers) of a process.
    NAMESPACES = "namespaces"
    #: buffered pipe contents can be read without disturbing the pipe.
    PIPE_DATA = "pipe-data"
    #: monotonic/boottime clocks for a time namespace image.
    CLOCKS = "clocks"


class VmaKind(enum.Enum):
    """What backs a mapping, as far as the dump cares."""

    ANON = "anon"
    FILE = "file"
    HEAP = "heap"
    STACK = "stack"
    VDSO = "vdso"
    VVAR = "vvar"
    VSYSCALL = "vsyscall"
    SHMEM = "shmem"  # MAP_SHARED|MAP_ANONYMOUS, SysV shm, memfd
    OTHER = "other"  # special mappings we record but cannot restore


class FdKind(enum.Enum):
    """The kind of an open descriptor (CRIU's file types, roughly)."""

    REG = "reg"  # regular file, directory, /dev/null-like character device
    PIPE = "pipe"
    FIFO = "fifo"
    TTY = "tty"
    CHR = "chr"  # other character device
    UNIX_SOCKET = "unix-socket"
    INET_SOCKET = "inet-socket"
    OTHER_SOCKET = "other-socket"
    EVENTFD = "eventfd"
    EVENTPOLL = "eventpoll"
    SIGNALFD = "signalfd"
    INOTIFY = "inotify"
    FANOTIFY = "fanotify"
    TIMERFD = "timerfd"
    MEMFD = "memfd"
    NSFS = "nsfs"
    ANON_OTHER = "anon-other"  # anon_inode kinds we do not model


@dataclass(frozen=True, slots=True)
class ThreadRegs:
    """x86_64 general registers, Linux ``struct user_regs_struct`` names."""

    r15: int
    r14: int
    r13: int
    r12: int
    rbp: int
    rbx: int
    r11: int
    r10: int
    r9: int
    r8: int
    rax: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    orig_rax: int
    rip: int
    cs: int
    eflags: int
    rsp: int
    ss: int
    fs_base: int
    gs_base: int
    ds: int
    es: int
    fs: int
    gs: int

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, n) for n in USER_REGS_FIELDS)

    @classmethod
    def from_sequence(cls, values: Sequence[int]) -> "ThreadRegs":
        if len(values) != 27:
            raise ValueError(f"user_regs_struct has 27 fields, got {len(values)}")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Xsave:
    """A thread's xsave area as the kernel's NT_X86_XSTATE regset returns it.

    ``data`` is the raw buffer (legacy 512-byte FXSAVE region, 64-byte xsave
    header, extended components at the offsets CPUID describes);
    ``component_offsets`` maps component number -> (offset, size) for this
    CPU so the dump can cut out YMM/opmask/ZMM/PKRU without a CPUID call.
    """

    data: bytes
    component_offsets: tuple[tuple[int, int, int], ...] = ()  # (component, offset, size)
    #: the CPU has CET shadow stacks (CRIU then records a cet entry, zero
    #: while the thread has no shadow stack enabled)
    cet_supported: bool = False


@dataclass(frozen=True, slots=True)
class SigAltStack:
    ss_sp: int
    ss_size: int
    ss_flags: int


@dataclass(frozen=True, slots=True)
class Rseq:
    abi_pointer: int
    abi_size: int
    signature: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """Per-thread state readable without stopping the thread."""

    tid: int
    comm: str
    state: str  # one letter of /proc/PID/stat (R, S, D, T, t, Z ...)
    sigblocked: int  # mask, bit (signo-1)
    sigpending: int
    sched_policy: int
    sched_nice: int
    seccomp_mode: int  # 0 disabled, 1 strict, 2 filter
    vtid: int = 0  # tid in the process's own pid namespace (0: same as tid)
    shadow_stack: bool = False  # x86 CET shadow stack enabled for the thread
    #: BPF programs (raw struct sock_filter arrays) of the thread's seccomp
    #: filter chain, first installed first. Only read while the thread
    #: is stopped under our ptrace; empty otherwise or without filters.
    seccomp_filters: tuple[bytes, ...] = ()
    #: queued signals (raw 128-byte Linux siginfo_t each), read like the
    #: filters only while the thread is stopped under our ptrace: the
    #: thread's own queue and the process-wide (shared) queue
    pending_siginfo: tuple[bytes, ...] = ()
    shared_siginfo: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Creds:
    uid: int
    euid: int
    suid: int
    fsuid: int
    gid: int
    egid: int
    sgid: int
    fsgid: int
    groups: tuple[int, ...]
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    secbits: int = 0
    no_new_privs: bool = False


@dataclass(frozen=True, slots=True)
class Rlimit:
    """One resource limit; ``UNLIMITED`` means RLIM_INFINITY."""

    resource: int  # Linux RLIMIT_* number
    cur: int
    max: int


@dataclass(frozen=True, slots=True)
class SigAction:
    """One signal's disposition (Linux ``struct kernel_sigaction``)."""

    signo: int
    handler: int  # 0 = SIG_DFL, 1 = SIG_IGN, else an address
    flags: int
    restorer: int
    mask: int


@dataclass(frozen=True, slots=True)
class MmInfo:
    """Address-space summary (Linux /proc/PID/stat fields + auxv)."""

    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    brk: int
    start_stack: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    auxv: tuple[int, ...]  # raw unsigned longs, pairs (type, value), AT_NULL last
    dumpable: int
    exe: str
    thp_disabled: bool = False
    #: a host path through which the executable can be opened/stat'ed even if
    #: it is unlinked or in another mount namespace ("" = use ``exe``)
    exe_open_path: str = ""


@dataclass(frozen=True, slots=True)
class Vma:
    """One mapping. ``prot`` uses Linux PROT_* bits, ``flags`` MAP_* bits."""

    start: int
    end: int
    prot: int
    flags: int  # MAP_PRIVATE or MAP_SHARED, | MAP_ANONYMOUS | MAP_GROWSDOWN
    offset: int
    path: str  # "" for anonymous mappings; "[heap]", "[stack]" ... kept verbatim
    dev_major: int
    dev_minor: int
    ino: int
    kind: VmaKind
    madvise: int = 0  # CRIU's madv bitmask (1 << MADV_*) where known
    open_path: str = ""  # host path to open/stat the mapped file ("" = use ``path``)

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class SocketInfo:
    family: int  # AF_*
    type: int  # SOCK_*
    protocol: int
    state: int
    ino: int
    local: str = ""  # path for unix, "addr:port" for inet
    peer: str = ""
    peer_ino: int = 0


@dataclass(frozen=True, slots=True)
class Termios:
    """Kernel ``struct termios`` (Linux layout): four flag words, line, 19 control chars."""

    iflag: int
    oflag: int
    cflag: int
    lflag: int
    line: int
    cc: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TtyInfo:
    """A terminal descriptor's device state (only pseudo-terminal slaves so far)."""

    index: int  # pty number (N of /dev/pts/N)
    rdev: int  # Linux new_encode_dev of the device
    dev: int  # Linux new_encode_dev of the devpts filesystem
    uid: int
    gid: int
    termios: Termios
    termios_locked: Termios
    winsize: tuple[int, int, int, int]  # rows, cols, xpixel, ypixel
    exclusive: bool
    sid: int  # session whose controlling terminal it is for the owner (0: none)
    pgrp: int  # its foreground process group (0: none)


@dataclass(frozen=True, slots=True)
class FdInfo:
    """One open descriptor of a process."""

    fd: int
    kind: FdKind
    path: str  # readlink of /proc/PID/fd/N (or the backend's equivalent)
    pos: int
    flags: int  # Linux O_* flags of the open file (incl. access mode)
    cloexec: bool
    mode: int  # st_mode of the target
    ino: int
    dev: int  # st_dev of the target, Linux encoding
    rdev: int
    size: int
    mnt_id: int = -1
    pipe_id: int = 0  # pipe inode (both ends share it)
    socket: SocketInfo | None = None
    tty: TtyInfo | None = None
    # raw "key: value" lines the backend saw (eventfd count, inotify wds ...)
    extra: tuple[tuple[str, str], ...] = ()
    open_path: str = ""  # host path to open/stat the same file ("" = use ``path``)


@dataclass(frozen=True, slots=True)
class PipeData:
    """Bytes buffered in a pipe (peeked, not consumed) and its capacity."""

    data: bytes
    capacity: int


@dataclass(frozen=True, slots=True)
class FsInfo:
    cwd: str
    root: str
    umask: int
    cwd_open_path: str = ""  # host paths to stat cwd/root ("" = use ``cwd``/``root``)
    root_open_path: str = ""


@dataclass(frozen=True, slots=True)
class NamespaceIds:
    """Namespace identities (inode numbers); 0 where the OS has none."""

    pid: int = 0
    net: int = 0
    ipc: int = 0
    uts: int = 0
    mnt: int = 0
    user: int = 0
    cgroup: int = 0
    time: int = 0


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """Per-process identity and state."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    state: str
    flags: int  # PF_* from /proc/PID/stat
    exit_signal: int
    personality: int
    creds: Creds
    umask: int
    sigblocked: int
    sigignored: int
    sigcaught: int
    rlimits: tuple[Rlimit, ...]
    cwd: str
    root: str
    exe: str
    threads: tuple[int, ...]
    oom_score_adj: int = 0
    exit_code: int = 0  # wait status of a zombie
    shared_pending: int = 0  # signals pending for the whole process (mask)
    posix_timers: int = 0  # number of timer_create() timers
    # ids in the process's own pid namespace (0: same as the global ones)
    vpid: int = 0
    vpgid: int = 0
    vsid: int = 0
    loginuid: int = 0xFFFF_FFFF
    child_subreaper: bool = False


@dataclass(frozen=True, slots=True)
class ITimer:
    """One interval timer (getitimer), seconds and microseconds."""

    isec: int
    iusec: int
    vsec: int
    vusec: int


@dataclass(frozen=True, slots=True)
class PosixTimer:
    """One timer_create() timer: identity, notification and current setting."""

    it_id: int
    clock_id: int
    signo: int
    sigev_notify: int  # Linux SIGEV_* (| SIGEV_THREAD_ID 4)
    sival_ptr: int
    notify_tid: int  # target thread for SIGEV_THREAD_ID, else the process
    overrun: int
    isec: int  # interval
    insec: int
    vsec: int  # time to next expiry
    vnsec: int


@dataclass(frozen=True, slots=True)
class TaskExtras:
    """Per-process state only the task itself can report (read by injection)."""

    securebits: int
    dumpable: int
    thp_disabled: bool
    child_subreaper: bool
    itimers: tuple[ITimer, ITimer, ITimer]  # real, virtual, prof
    posix_timers: tuple[PosixTimer, ...] = ()  # by it_id


@dataclass(frozen=True, slots=True)
class CgroupMembership:
    """One line of /proc/PID/cgroup: hierarchy controllers and path."""

    controllers: str  # "cpu,cpuacct", "name=systemd", "" for cgroup2
    path: str


@dataclass(frozen=True, slots=True)
class UtsInfo:
    nodename: str
    domainname: str


@dataclass(frozen=True, slots=True)
class Clocks:
    monotonic_ns: int
    boottime_ns: int


@runtime_checkable
class Platform(Protocol):
    """What the capture engine needs from an OS.

    All pids/tids are the OS's own numbers. Methods raise
    :class:`capture.errors.PlatformError` on failure (with errno), never
    ``OSError``.
    """

    name: str  # "linux", "freebsd"

    def features(self) -> frozenset[Feature]: ...

    # -- discovery (no stop needed) -------------------------------------
    def list_threads(self, pid: int) -> tuple[int, ...]: ...

    def list_children(self, pid: int) -> tuple[int, ...]: ...

    def process_info(self, pid: int) -> ProcessInfo: ...

    def thread_info(self, pid: int, tid: int) -> ThreadInfo: ...

    def read_maps(self, pid: int) -> tuple[Vma, ...]: ...

    def prime_vmflags(self, pid: int) -> None:
        """Read now what the next :meth:`read_maps` of *pid* would read slowly (Linux:
        smaps VmFlags, reused while /proc/PID/maps is unchanged); may do nothing."""
        ...

    def mm_info(self, pid: int) -> MmInfo: ...

    def list_fds(self, pid: int) -> tuple[FdInfo, ...]: ...

    def fs_info(self, pid: int) -> FsInfo: ...

    def creds(self, pid: int) -> Creds: ...

    def rlimits(self, pid: int) -> tuple[Rlimit, ...]: ...

    def namespaces(self, pid: int) -> NamespaceIds: ...

    def uts(self, pid: int) -> UtsInfo: ...

    def clocks(self) -> Clocks: ...

    def cgroups(self, pid: int) -> tuple[CgroupMembership, ...]: ...

    def same_open_file(self, pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
        """Whether two descriptors share one open file description (kcmp)."""
        ...

    # -- memory ------------------------------------------------------------
    def present_runs(self, pid: int, vma: Vma) -> list[tuple[int, int]]:
        """(address, page count) runs of *vma* whose pages must be dumped.

        Linux: present or swapped pages that are private to the process
        (anonymous or copied-on-write). Without ``PAGE_PRESENCE`` the whole
        range of a writable private mapping is returned.
        """
        ...

    def read_memory_into(self, pid: int, iov: Sequence[tuple[int, int]], buf: memoryview) -> int:
        """Read the remote ranges *iov* (address, length), back to back, into *buf*."""
        ...

    def write_memory(self, pid: int, addr: int, data: bytes) -> None: ...

    def read_pipe_data(self, pid: int, fd: int, limit: int) -> PipeData:
        """Buffered bytes of the pipe at *fd* (without consuming them) and its capacity."""
        ...

    # -- stopping and thread state ----------------------------------------
    def seize(self, tid: int) -> None:
        """Attach to *tid* without stopping it (no signal visible to it)."""
        ...

    def interrupt(self, tid: int) -> None:
        """Stop a seized thread and wait until it is stopped."""
        ...

    def request_stop(self, tid: int) -> None:
        """Ask a seized thread to stop without waiting (it may be frozen by a cgroup
        freezer and stop only once thawed); :meth:`wait_stopped` collects the stop."""
        ...

    def wait_stopped(self, tid: int) -> None:
        """Wait until a thread asked by :meth:`request_stop` is stopped."""
        ...

    def release(self, tid: int) -> None:
        """Detach; the thread runs on as if nothing happened."""
        ...

    def get_regs(self, tid: int) -> ThreadRegs: ...

    def set_regs(self, tid: int, regs: ThreadRegs) -> None: ...

    def get_xsave(self, tid: int) -> Xsave: ...

    def set_xsave(self, tid: int, xsave: Xsave) -> None: ...

    def rseq(self, tid: int) -> Rseq | None: ...

    def sigactions(self, pid: int, tid: int) -> tuple[SigAction, ...]:
        """Handlers of signals 1..64 (tid must be seized and stopped)."""
        ...

    def sigaltstack(self, tid: int) -> SigAltStack: ...

    def clear_tid_address(self, tid: int) -> int: ...

    def robust_list(self, tid: int) -> tuple[int, int]:
        """(head address, length) of the thread's robust futex list."""
        ...

    def task_extras(self, pid: int, tid: int) -> TaskExtras:
        """Securebits, dumpable, THP, subreaper, itimers (tid seized and stopped)."""
        ...

    def kill(self, pid: int, signo: int) -> None: ...
