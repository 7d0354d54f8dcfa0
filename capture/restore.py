"""The restore engine: turn an image set back into a running process tree.

Design (no CRIU code involved): the restorer forks one *seed* process (a copy
of itself), seizes it with ptrace and, by injecting system calls into it
(:mod:`capture.platform.linux_inject`), builds every process of the image in
place:

1. The seed maps a small *trampoline* region (one ``syscall`` instruction,
   the code of a pid-namespace init, and scratch space for arguments) at an
   address no image process uses, blocks all signals and drops its rseq.
2. Processes are created by injected ``clone3`` with ``set_tid`` (the dumped
   pid, also in a fresh pid namespace with ``--pidns``); parents before
   children, ``setsid`` in session leaders before their children are forked,
   ``setpgid`` once everybody exists. All open file descriptions (regular
   files at their offset, both ends of every pipe with its buffered data,
   the inherited terminal) are opened in the root process *before* it forks,
   above every descriptor number the image uses, so descriptions shared
   between processes stay shared; each process later ``dup3``\\ s the ones it
   had and closes the rest. Zombies are recreated and die again with their
   exit status (or killing signal) for their restored parent to reap.
3. Each process then unmaps everything but the trampoline, gets its exe link,
   brk and mm_* fields and auxv (``prctl(PR_SET_MM, PR_SET_MM_MAP)``, while
   the old exe is unmapped), the running kernel's vDSO (``--vdso map``: at
   the dumped address via ``arch_prctl(ARCH_MAP_VDSO_64)``, vvar sized for
   *this* kernel; ``--vdso proxy``: the dumped vDSO bytes stay at their
   address and each exported function jumps into this kernel's vDSO mapped
   elsewhere, for a move to another kernel; ``auto`` compares the symbol
   tables), maps every VMA at its address (file mappings reopened from
   their paths, checked beforehand), receives its pages (64 MiB pre-faulted
   read-only windows of the pages file handed to parallel
   ``process_vm_writev`` batches: one copy, no per-page loop), gets its final
   protections, cwd, umask, signal handlers, itimers, rlimits (lowered only:
   raising a hard limit needs CAP_SYS_RESOURCE; what could not be set is
   reported).
4. Threads are created by injected ``clone3(CLONE_THREAD, set_tid)``; each
   thread gets its robust list, clear-tid address, rseq, sigaltstack, name,
   credentials, blocked mask and its pending signals (re-queued with their
   siginfo); the trampoline is unmapped last.
5. Every thread gets its registers (incl. fs/gs base) and xsave area; then
   all are detached at once.

Incremental image sets (a final dump made with ``capture.dump(skip_pages=...,
parent_images=...)`` or ``criu dump --prev-images-dir``) restore like full
ones: PE_PARENT pages are read from the parent set's pages file
(:mod:`capture.restore_checks` resolves the chain).

NOT IMPLEMENTED -- design note for the incremental restore *target* (issue 6
item 4: downtime must not grow with memory size). Nothing below exists yet;
the migration must keep using :func:`restore` on a complete image set.

- API (keyword-only, off unless used): ``prepare_incremental(image_dir, *,
  root, pidns, vdso, ops) -> IncrementalTarget`` from a *preliminary* image
  set (pre-copy round 1); ``target.write_pages(pid, runs, data)`` while the
  source still runs (``runs`` = (address, pages) in image pids, ``data`` the
  concatenated pages: straight ``process_vm_writev`` into the held stub, no
  pages file on the destination); ``target.cut_over(final_dir) ->
  RestoreResult`` (same ``hold`` semantics as :func:`restore`);
  ``target.abort()`` kills the stubs.
- prepare: seed + trampoline as today; processes created from the
  preliminary pstree (clone3 set_tid, sessions, groups) but *without*
  descriptors; per process ``_unmap_all``, vDSO placement, every VMA mapped
  writable (prot fixed at cut-over), preliminary pages written. All stubs
  stay stopped and traced (EXITKILL).
- cut_over(final): ``load_image_set(final)`` (its ``parent`` = the
  preliminary set, so PE_PARENT pages are already in the stubs and are not
  written again). Compatibility check, refusing with RestoreRefusedError so
  the caller falls back to a full :func:`restore` (after ``abort()``): the
  pstree must be identical (pids, parents, pgid/sid); a file-backed VMA must
  be unchanged (start, end, flags, file, pgoff); anonymous VMAs may appear,
  vanish, grow or shrink (mmap/munmap/mremap injected). Sent pages missing
  from the final pagemap get ``MADV_DONTNEED``. Then today's steps in
  order: final pages (PE_PRESENT runs only), mprotect to the final
  protections, descriptors (the root opens every description; the others
  take theirs with ``pidfd_getfd`` from the root, since they were forked
  before any descriptor existed, so shared descriptions stay shared),
  ``_set_mm_map``, ``restore_task``, threads, registers, hold/detach.
- What the dump side already provides: ``skip_pages`` (PE_PARENT, pages not
  read) so the final dump reads and writes only the dirty pages.

Any failure kills every process created so far (they are traced with
``PTRACE_O_EXITKILL`` too) and raises :class:`capture.errors.RestoreError`;
the image directory is only ever read. Everything refusable is refused by
:mod:`capture.restore_checks` before the first process exists.

What it refuses to do: restore descriptor kinds other than regular files,
pipes and the inherited terminal; shared anonymous memory; seccomp strict
mode (filters are installed again, oldest first, in each thread before its
credentials are set, so the calls after it must pass them); POSIX timers; raise hard rlimits; pretend: anything it could not restore exactly is
listed in :attr:`RestoreResult.warnings`. Not restored: scheduling policies
and a set loginuid (both warned), time namespaces and cgroup membership (the
tree joins the restorer's cgroups and time namespace, like ``criu restore
--manage-cgroups=ignore`` outside a container). The OS calls go through
:mod:`capture.platform.linux_inject` (Linux x86_64 ptrace), or
:mod:`capture.platform.freebsd_inject` (PT_* requests, Linux binaries under
the Linuxulator): features the ops lack (:func:`ops_features`) select the
compatible steps of :mod:`capture.restore_compat`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_mod
import os
import resource
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, Sequence

from capture import spans
from capture.errors import HetmigError, RestoreError
from capture.platform import linux_inject as li
from capture.platform.base import ThreadRegs
from capture.restore_checks import (
    FD_PIPE,
    FD_REG,
    FD_TTY,
    O_ACCMODE,
    O_CLOEXEC,
    O_CREAT,
    O_EXCL,
    O_TRUNC,
    PAGE,
    TASK_SIZE,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_ANON_PRIVATE,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
    IN_TARGET,
    VMA_FILE_SHARED,
    ImageSet,
    ProcessImage,
    load_image_set,
)

# --- Linux constants (the target OS's values) --------------------------------------

CLONE_VM: Final = 0x100
CLONE_FS: Final = 0x200
CLONE_FILES: Final = 0x400
CLONE_SIGHAND: Final = 0x800
CLONE_THREAD: Final = 0x10000
CLONE_SYSVSEM: Final = 0x40000
CLONE_NEWPID: Final = 0x20000000
SIGCHLD: Final = 17
THREAD_FLAGS: Final = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM

AT_FDCWD: Final = -100
F_DUPFD: Final = 0
F_SETFL: Final = 4
F_SETPIPE_SZ: Final = 1031
SETFL_MASK: Final = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000  # APPEND NONBLOCK ASYNC DIRECT NOATIME
SIG_SETMASK: Final = 2
SS_DISABLE: Final = 2
SS_AUTODISARM: Final = 1 << 31
RSEQ_FLAG_UNREGISTER: Final = 1
PR_SET_PDEATHSIG: Final = 1
PR_SET_DUMPABLE: Final = 4
PR_SET_KEEPCAPS: Final = 8
PR_SET_NAME: Final = 15
PR_CAPBSET_DROP: Final = 24
PR_SET_SECUREBITS: Final = 28
PR_SET_MM: Final = 35
PR_SET_MM_MAP: Final = 14
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_THP_DISABLE: Final = 41
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_RAISE: Final = 2
ARCH_MAP_VDSO_64: Final = 0x2003
MADV_DONTNEED: Final = 4
SECCOMP_SET_MODE_FILTER: Final = 1
MADV_DONTFORK: Final = 10
MADV_DOFORK: Final = 11
#: MAP_* flags of an anonymous area a restore target keeps (MAP_GROWSDOWN, MAP_NORESERVE)
MAP_KEEP_FLAGS: Final = 0x0100 | 0x4000
LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
RLIM_INFINITY: Final = 0xFFFF_FFFF_FFFF_FFFF
U64: Final = 0xFFFF_FFFF_FFFF_FFFF

#: the trampoline region: page 0 = code, the rest = argument scratch.
TRAMPOLINE_PAGES: Final = 32
TRAMPOLINE_SIZE: Final = TRAMPOLINE_PAGES * PAGE
INIT_CODE_OFFSET: Final = 0x100
#: pid-namespace init (hand-assembled, position independent): loop on
#: wait4(-1, &status, __WALL); remember the status of the pid stored at
#: +0x68; on ECHILD exit_group() with that process's exit code (128+signal
#: if it was killed).
INIT_CODE: Final = bytes.fromhex(
    "b83d00000048c7c7ffffffff488d3559000000ba000000404531d20f054883f8f6741c4883f8007cd73b0539000000"
    "75cf8b0d35000000890d33000000ebc18b3d2b00000089f883e07f7409058000000089c7eb09c1ef0881e7ff000000"
    "b8e70000000f05f4669000000000000000000000000000"
)
INIT_ROOTPID_OFFSET: Final = 0x68

#: CRIU dumps 62 sigactions: signals 1..64 without SIGKILL (9) and SIGSTOP (19).
SIGACTION_SIGNALS: Final = tuple(s for s in range(1, 65) if s not in (9, 19))


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore produced: host pids of the image's pids, and warnings."""

    root_pid: int  # host pid of the restored root process
    pids: dict[int, int]  # image pid -> host pid
    init_pid: int  # host pid of the pid-namespace init (0 without --pidns)
    seconds: float
    warnings: tuple[str, ...]
    stages: dict[str, float] = field(default_factory=dict)
    #: with ``hold=True``: (host tid, signal to deliver) of every thread, all
    #: still stopped and traced by the calling thread; see :func:`release`.
    held: tuple[tuple[int, int], ...] = ()


def release(result: RestoreResult, ops: "InjectionOps | None" = None) -> None:
    """Let a tree restored with ``hold=True`` run (call from the restoring thread, with the
    same injection ops as the restore)."""
    detach = ops.detach if ops is not None else li.detach
    for tid, sig in result.held:
        detach(tid, sig)


def kill_held(result: RestoreResult, ops: "InjectionOps | None" = None) -> None:
    """Kill a tree restored with ``hold=True`` and collect its exit (restoring thread only)."""
    wall = li.WALL
    if ops is not None and hasattr(ops, "features") and FEATURE_WALL not in ops.features():
        wall = 0  # waitpid without Linux's __WALL (the Linuxulator's host)
    pids = ([result.init_pid] if result.init_pid else []) + list(result.pids.values())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # a traced group leader reports its death after its other threads have
    # been reaped, and a namespace init after every process of its namespace:
    # threads first, then leaders, the init last
    def order(held: tuple[int, int]) -> int:
        tid = held[0]
        return 2 if tid == result.init_pid else 1 if tid in result.pids.values() else 0

    for tid, _sig in sorted(result.held, key=order):
        try:
            os.waitpid(tid, wall)
        except ChildProcessError:
            pass


# --- the OS primitives ----------------------------------------------------------


class InjectionOps(Protocol):
    """What the engine needs from the OS to build processes by injection.

    Everything is Linux-shaped (x86_64 ``user_regs_struct``, Linux syscall
    numbers and wait statuses): on Linux this is the module
    :mod:`capture.platform.linux_inject` itself; for Linux binaries under
    FreeBSD's Linuxulator it is
    :class:`capture.platform.freebsd_inject.FreeBSDInjectionOps` (PT_*
    requests), which also has ``features()`` and ``spawn_seed()`` (see
    :func:`ops_features`).
    """

    @property
    def Injector(self) -> type[li.Injector]: ...  # noqa: N802 (the class, as linux_inject names it)

    def seize(self, tid: int, options: int = ...) -> None: ...

    def interrupt(self, tid: int) -> li.Stop: ...

    def detach(self, tid: int, sig: int = ...) -> None: ...

    def resume(self, tid: int, sig: int = ...) -> None: ...

    def wait_stop(self, tid: int, *, timeout_hint: str = ...) -> li.Stop: ...

    def get_regs(self, tid: int) -> ThreadRegs: ...

    def set_regs(self, tid: int, values: ThreadRegs) -> None: ...

    def get_xstate(self, tid: int) -> bytes: ...

    def set_xstate(self, tid: int, data: bytes) -> None: ...

    def get_fpregs(self, tid: int) -> bytes: ...

    def set_fpregs(self, tid: int, data: bytes) -> None: ...

    def xstate_components(self) -> tuple[li.XstateComponent, ...]: ...

    def get_rseq(self, tid: int) -> Any: ...

    def find_syscall_insn(self, pid: int) -> int: ...

    def remote_mmap(self, inj: li.Injector, addr: int, length: int, prot: int, flags: int, fd: int = ...,
                    offset: int = ...) -> int: ...

    def write_memory(self, pid: int, addr: int, data: bytes) -> None: ...

    def read_memory(self, pid: int, addr: int, size: int) -> bytes: ...

    def write_file_ranges(self, pid: int, fd: int, segments: Sequence[tuple[int, int, int]], *,
                          workers: int = ..., window: int = ...) -> int: ...

    def read_maps(self, pid: int) -> list[li.MapLine]: ...

    def unshare_pid_namespace(self) -> None: ...


def _linux_ops() -> InjectionOps:
    ops: InjectionOps = li  # the module implements the protocol
    return ops


# --- what the OS under the ops offers (Linuxulator-compatible restore) ---------------

#: clone3 with set_tid: every process and thread gets its dumped pid/tid.
FEATURE_SET_TID: Final = "set_tid"
#: prctl(PR_SET_MM, PR_SET_MM_MAP): brk, code/data/stack/arg/env bounds, auxv, exe link.
FEATURE_MM_MAP: Final = "mm_map"
#: arch_prctl(ARCH_MAP_VDSO_64): this kernel's vDSO mapped where the restorer wants it.
FEATURE_MAP_VDSO: Final = "map_vdso"
#: rseq(2) registrations.
FEATURE_RSEQ: Final = "rseq"
#: pid namespaces (unshare(CLONE_NEWPID) in the seed).
FEATURE_PIDNS: Final = "pidns"
#: setfsuid/setfsgid.
FEATURE_FSUID: Final = "fsuid"
#: capability sets can be set (capset, PR_CAPBSET_DROP, ambient capabilities).
FEATURE_CAPS: Final = "caps"
#: the seed may be a fork of the restorer itself (the restorer runs under the
#: ABI of the restored tree); without it the ops provide ``spawn_seed()``.
FEATURE_FORK_SEED: Final = "fork_seed"
#: waitpid accepts Linux's __WALL flag.
FEATURE_WALL: Final = "wall"
#: prctl(PR_SET_CHILD_SUBREAPER) (the Linuxulator refuses it: images that need it are refused up front).
FEATURE_SUBREAPER: Final = "subreaper"
#: what Linux offers: ops without a ``features()`` method (linux_inject) have all of it.
LINUX_FEATURES: Final = frozenset({FEATURE_SET_TID, FEATURE_MM_MAP, FEATURE_MAP_VDSO, FEATURE_RSEQ, FEATURE_PIDNS,
                                   FEATURE_FSUID, FEATURE_CAPS, FEATURE_FORK_SEED, FEATURE_WALL, FEATURE_SUBREAPER})


def ops_features(ops: object) -> frozenset[str]:
    """The feature names *ops* reports (``ops.features()``); all of Linux's without the method.

    A missing feature selects the Linuxulator-compatible path of the step
    that needs it (:mod:`capture.restore_compat`); unknown names are ignored.
    """
    fn = getattr(ops, "features", None)
    if fn is None:
        return LINUX_FEATURES
    return frozenset(str(f) for f in fn())


# --- the stub: one traced thread we inject into -----------------------------------


@dataclass
class _Stub:
    """A stopped, traced thread running on the trampoline."""

    host_tid: int
    tramp: int
    inj: li.Injector
    ops: "InjectionOps"
    used: int = 0

    def __call__(self, name: str | int, *args: int, check: bool = True) -> int:
        return self.inj(name, *[a & U64 for a in args], check=check)

    def call(self, name: str | int, *args: int, check: bool = True) -> li.SyscallResult:
        return self.inj.call(name, *[a & U64 for a in args], check=check)

    # scratch area: trampoline pages 1..N-1
    def reset(self) -> None:
        self.used = 0

    def put(self, data: bytes, align: int = 16) -> int:
        start = (self.used + align - 1) // align * align
        if start + len(data) > TRAMPOLINE_SIZE - PAGE:
            self.used = 0
            start = 0
            if len(data) > TRAMPOLINE_SIZE - PAGE:
                raise RestoreError(f"argument of {len(data)} bytes does not fit the scratch area")
        addr = self.tramp + PAGE + start
        self.ops.write_memory(self.host_tid, addr, data)
        self.used = start + len(data)
        return addr

    def path(self, p: str) -> int:
        return self.put(li.cstr(p))


def _regs_from_image(gp: Any) -> ThreadRegs:
    return ThreadRegs(
        r15=gp.r15, r14=gp.r14, r13=gp.r13, r12=gp.r12, rbp=gp.bp, rbx=gp.bx, r11=gp.r11, r10=gp.r10,
        r9=gp.r9, r8=gp.r8, rax=gp.ax, rcx=gp.cx, rdx=gp.dx, rsi=gp.si, rdi=gp.di,
        orig_rax=U64,  # never let the kernel "restart" a syscall on our final resume
        rip=gp.ip, cs=gp.cs, eflags=gp.flags & ~0x100, rsp=gp.sp, ss=gp.ss, fs_base=gp.fs_base,
        gs_base=gp.gs_base, ds=gp.ds, es=gp.es, fs=gp.fs, gs=gp.gs,
    )


def _u32s(values: Any, count: int) -> bytes:
    vals = list(values)[:count]
    vals += [0] * (count - len(vals))
    return struct.pack(f"<{count}I", *[v & 0xFFFFFFFF for v in vals])


def _u64s(values: Any, count: int) -> bytes:
    vals = list(values)[:count]
    vals += [0] * (count - len(vals))
    return struct.pack(f"<{count}Q", *[v & U64 for v in vals])


XFEATURE_NAMES: Final = {2: "AVX (YMM)", 3: "MPX BNDREGS", 4: "MPX BNDCSR", 5: "AVX-512 opmask",
                         6: "AVX-512 ZMM_Hi256", 7: "AVX-512 Hi16_ZMM", 9: "PKRU"}


def build_xstate(fp: Any, template: bytes, host_xfeatures: int,
                 components: "Sequence[li.XstateComponent] | None" = None) -> bytes:
    """An NT_X86_XSTATE buffer for this CPU from an image's user_x86_fpregs_entry.

    *template* is the buffer the kernel returned for the target thread (its
    size and software-reserved bytes are kept). Components the image holds but
    this CPU lacks are dropped if they are in their initial (zero) state and
    refused otherwise.
    """
    buf = bytearray(template)
    struct.pack_into("<HHHHQQII", buf, 0, fp.cwd & 0xFFFF, fp.swd & 0xFFFF, fp.twd & 0xFFFF, fp.fop & 0xFFFF,
                     fp.rip, fp.rdp, fp.mxcsr, fp.mxcsr_mask)
    buf[32:160] = _u32s(fp.st_space, 32)
    buf[160:416] = _u32s(fp.xmm_space, 64)
    xs = fp.xsave
    bv = xs.xstate_bv
    comps = {c.number: c for c in (components if components is not None else li.xstate_components())}
    pieces: dict[int, bytes] = {
        2: _u32s(xs.ymmh_space, 64),
        3: _u64s(xs.bndreg_state, 8),
        4: _u64s(xs.bndcsr_state, 8)[:16],
        5: _u64s(xs.opmask_reg, 8),
        6: _u64s(xs.zmm_upper, 64),
        7: _u64s(xs.hi16_zmm, 128),
        9: _u32s(xs.pkru, 2),
    }
    out_bv = bv & 0x3
    for num, data in pieces.items():
        if not bv & (1 << num):
            continue
        comp = comps.get(num)
        if comp is None or not host_xfeatures & (1 << num) or comp.offset + comp.size > len(buf):
            if any(data):
                raise RestoreError(
                    f"the image uses xsave component {num} ({XFEATURE_NAMES.get(num, '?')}) which this CPU "
                    f"does not provide")
            continue
        chunk = data[: comp.size].ljust(comp.size, b"\0")
        buf[comp.offset : comp.offset + comp.size] = chunk
        out_bv |= 1 << num
    # components CRIU does not carry (AMX, CET ...) restore to their init state
    buf[512:576] = b"\0" * 64
    struct.pack_into("<Q", buf, 512, out_bv)
    return bytes(buf)


def _host_xfeatures(template: bytes, components: "Sequence[li.XstateComponent]") -> int:
    magic1, _ext, xfeatures = struct.unpack_from("<IIQ", template, 464)
    if magic1 == 0x46505853:
        return int(xfeatures)
    mask = 0x3
    for c in components:
        mask |= 1 << c.number
    return mask


def _vdso_layout(maps: list[li.MapLine]) -> tuple[int, int, int] | None:
    """(vvar start, vdso start, vdso end) in *maps*, or None."""
    vdso = [m for m in maps if m.path == "[vdso]"]
    if not vdso:
        return None
    vvars = [m for m in maps if m.path.startswith("[vvar")]
    vvar_start = min((m.start for m in vvars), default=vdso[0].start)
    return vvar_start, vdso[0].start, vdso[0].end


#: ``jmp *0(%rip)`` followed by the 8-byte absolute target.
_JUMP: Final = b"\xff\x25\x00\x00\x00\x00"


def vdso_symbols(image: bytes) -> dict[str, int]:
    """Exported function symbols of a vDSO image -> offset from its start.

    Reads the ELF64 dynamic symbol table through the section headers (every
    Linux vDSO has them); an unreadable image gives an empty dict.
    """
    try:
        if image[:4] != b"\x7fELF" or image[4] != 2:
            return {}
        phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
        base = None
        for i in range(phnum):
            p_type, _fl, _off, p_vaddr = struct.unpack_from("<IIQQ", image, phoff + i * phentsize)
            if p_type == 1:  # PT_LOAD
                base = p_vaddr if base is None else min(base, p_vaddr)
        if base is None:
            return {}
        sections = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
        out: dict[str, int] = {}
        for sh in sections:
            if sh[1] != 11:  # SHT_DYNSYM
                continue
            sym_off, sym_size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 24
            str_off = sections[link][4]
            for k in range(sym_size // entsize):
                st_name, st_info, _other, st_shndx, st_value, _sz = struct.unpack_from(
                    "<IBBHQQ", image, sym_off + k * entsize)
                if st_shndx == 0 or (st_info & 0xF) != 2:  # defined STT_FUNC only
                    continue
                end = image.index(b"\0", str_off + st_name)
                out[image[str_off + st_name : end].decode("ascii", "replace")] = st_value - base
        return out
    except (struct.error, ValueError, IndexError):
        return {}


def _anon_private(v: Any) -> bool:
    """A private anonymous VMA (heap and stack included) of an image."""
    special = VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL | VMA_FILE_PRIVATE | VMA_FILE_SHARED
    return bool(v.status & VMA_ANON_PRIVATE) and not v.status & special and not v.flags & li.MAP_SHARED


def _free_in(ranges: list[tuple[int, int]], start: int, size: int) -> bool:
    return all(start + size <= lo or start >= hi for lo, hi in ranges)


def _choose_trampoline(iset: ImageSet | None, host_vvar_size: int, own: list[li.MapLine],
                       extra: Sequence[tuple[int, int]] = ()) -> int:
    busy: list[tuple[int, int]] = [(m.start, m.end) for m in own]
    busy += [(lo - PAGE, hi + PAGE) for lo, hi in extra]
    for p in iset.processes if iset is not None else ():
        for v in p.vmas:
            if v.status & VMA_AREA_VSYSCALL:
                continue
            lo = v.start
            if v.status & VMA_AREA_VDSO:
                lo = v.start - host_vvar_size - PAGE
            busy.append((lo, v.end + PAGE))
    candidates = [0x10000 * k for k in range(16, 4096)]  # 1 MiB .. 256 MiB
    candidates += [0x1000_0000_0000 + 0x100_0000 * k for k in range(256)]
    for c in candidates:
        if _free_in(busy, c, TRAMPOLINE_SIZE):
            return c
    raise RestoreError("no free address for the restore trampoline in the image's address space")


# --- the engine --------------------------------------------------------------------


@dataclass
class _Proc:
    img: ProcessImage
    host_pid: int
    stub: _Stub
    threads: dict[int, _Stub] = field(default_factory=dict)  # image tid -> stub (main included)


class _Restorer:
    def __init__(self, iset: ImageSet | None, *, pidns: bool, root: str, tty_fd: int | None,
                 vdso_mode: str = "auto", ops: "InjectionOps | None" = None, hold: bool = False) -> None:
        self.ops: InjectionOps = ops if ops is not None else _linux_ops()
        self.features = ops_features(self.ops)
        self.wall = li.WALL if FEATURE_WALL in self.features else 0
        self.hold = hold
        self.held: list[tuple[int, int]] = []
        if vdso_mode not in ("auto", "map", "proxy"):
            raise RestoreError(f"vdso mode {vdso_mode!r} (expected auto, map or proxy)")
        self.vdso_mode = vdso_mode
        self.iset: ImageSet = iset  # type: ignore[assignment]  # None only until a prepared target cuts over
        self.pidns = pidns
        self.root = root
        self.tty_fd = tty_fd
        self.warnings: list[str] = list(iset.warnings) if iset is not None else []
        #: a prepared restore target's root process (see :class:`RestoreTarget`)
        self.prepared: _Stub | None = None
        self.prepared_pid = 0                    # its image pid
        self.target_mapped: list[tuple[int, int]] = []   # (start, end) anonymous ranges mapped in it
        self.target_written: list[tuple[int, int]] = []  # (address, pages) written into it, merged
        self.created: list[int] = []  # host pids to kill on failure
        self.thread_tids: list[int] = []  # host tids of the extra threads created
        self.seed = 0
        self.init_pid = 0
        self.procs: dict[int, _Proc] = {}
        self.tramp = 0
        self.fd_base = 0
        self.file_slot: dict[int, int] = {}
        self.stages: dict[str, float] = {}
        # the restorer's own maps and vDSO; without a forked seed, the spawned seed's (restore_compat)
        own = self.ops.read_maps(os.getpid()) if FEATURE_FORK_SEED in self.features else []
        layout = _vdso_layout(own)
        self.host_vdso = layout
        self.host_vvar_size = (layout[1] - layout[0]) if layout else 0
        self.host_vdso_bytes = b""
        if layout:
            self.host_vdso_bytes = ctypes.string_at(layout[1], layout[2] - layout[1])
        self.own_maps = own

    # -- bookkeeping --------------------------------------------------------------
    def _stage(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.stages[name] = self.stages.get(name, 0.0) + now - t0
        return now

    def kill_all(self) -> None:
        for pid in reversed(self.created):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5.0
        # threads before their leaders, processes before the namespace init
        for pid in self.thread_tids + list(reversed(self.created)):
            try:
                while time.monotonic() < deadline:
                    got, _ = os.waitpid(pid, self.wall | os.WNOHANG)
                    if got == 0:
                        time.sleep(0.001)
                        continue
                    break
            except ChildProcessError:
                pass

    def has(self, feature: str) -> bool:
        """Whether the ops offer *feature* (``FEATURE_*``); without it the compatible path runs."""
        return feature in self.features

    # -- step 1: the seed ---------------------------------------------------------
    def make_seed(self, busy: Sequence[tuple[int, int]] = ()) -> _Stub:
        if self.features != LINUX_FEATURES:
            if self.iset is None:
                raise RestoreError("a restore target prepared before its image exists needs the Linux "
                                   f"injection features (these ops lack {sorted(LINUX_FEATURES - self.features)})")
            from capture import restore_compat

            restore_compat.check_image(self)  # refusals come before the first process exists
            if not self.has(FEATURE_FORK_SEED):
                return restore_compat.spawned_seed(self)
        self.tramp = _choose_trampoline(self.iset, self.host_vvar_size, self.own_maps, busy)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(rfd)
                if self.pidns:
                    try:
                        self.ops.unshare_pid_namespace()
                    except HetmigError:
                        os._exit(3)
                os.write(wfd, b"x")
                while True:
                    signal.pause()
            finally:
                os._exit(0)
        os.close(wfd)
        self.seed = pid
        self.created.append(pid)
        got = os.read(rfd, 1)
        os.close(rfd)
        if got != b"x":
            raise RestoreError("the seed process could not create a pid namespace (unshare CLONE_NEWPID failed)")
        self.ops.seize(pid, li.TRACE_CHILDREN)
        self.ops.interrupt(pid)
        seed = self.trampoline_stub(pid)
        rs = self.ops.get_rseq(pid)
        if rs is not None:
            seed("rseq", rs.abi_pointer, rs.abi_size, RSEQ_FLAG_UNREGISTER, rs.signature)
        return seed

    def trampoline_stub(self, pid: int) -> _Stub:
        """The seed *pid* (seized, stopped) with the trampoline mapped at ``self.tramp``
        (syscall instruction, init code, scratch) and every signal blocked."""
        boot = self.ops.Injector(pid, self.ops.find_syscall_insn(pid), keep_regs=True)
        self.ops.remote_mmap(boot, self.tramp, TRAMPOLINE_SIZE, li.PROT_READ | li.PROT_WRITE | li.PROT_EXEC,
                             li.MAP_PRIVATE | li.MAP_ANONYMOUS | li.MAP_FIXED_NOREPLACE)
        code = bytearray(PAGE)
        code[0:3] = b"\x0f\x05\xcc"
        code[INIT_CODE_OFFSET : INIT_CODE_OFFSET + len(INIT_CODE)] = INIT_CODE
        self.ops.write_memory(pid, self.tramp, bytes(code))
        seed = _Stub(pid, self.tramp, self.ops.Injector(pid, self.tramp, saved=boot.saved), self.ops)
        # all signals blocked in every stub until the very end
        seed("rt_sigprocmask", SIG_SETMASK, seed.put(struct.pack("<Q", U64)), 0, 8)
        return seed

    def clone_process(self, parent: _Stub, pid: int, *, flags: int = 0, exit_signal: int = SIGCHLD) -> _Stub:
        """Inject clone3(set_tid=[pid]) into *parent*; return the new, stopped child."""
        if not self.has(FEATURE_SET_TID):
            from capture import restore_compat

            return restore_compat.clone_without_set_tid(self, parent, pid, flags=flags, exit_signal=exit_signal)
        parent.reset()
        tid_arr = parent.put(struct.pack("<i", pid), align=8)
        args = struct.pack("<11Q", flags, 0, 0, 0, exit_signal, 0, 0, 0, tid_arr, 1, 0)
        addr = parent.put(args, align=8)
        res = parent.call("clone3", addr, len(args), check=False)
        if res.value < 0:
            if -res.value == errno_mod.EEXIST:
                raise RestoreError(
                    f"pid {pid} is already in use on this host; restore into a new pid namespace (--pidns) or "
                    f"free the pid")
            raise RestoreError(f"clone3(set_tid={pid}) failed: {os.strerror(-res.value)}")
        if res.child == 0:
            raise RestoreError(f"clone3(set_tid={pid}) returned {res.value} but no child was reported by ptrace")
        if flags & CLONE_THREAD:
            self.thread_tids.append(res.child)
        else:
            self.created.append(res.child)
        stop = self.ops.wait_stop(res.child)
        if not stop.stopped:
            raise RestoreError(f"new process for pid {pid} {stop.describe()}")
        got = _innermost_pid(res.child)
        if got != pid:
            raise RestoreError(f"clone3 asked for pid {pid} but the kernel gave {got} (host pid {res.child})")
        return _Stub(res.child, self.tramp, self.ops.Injector(res.child, self.tramp, saved=parent.inj.saved),
                     self.ops)

    # -- step 2: files opened in the root before it forks ---------------------------
    def open_files(self, stub: _Stub) -> None:
        iset = self.iset
        self.fd_base = max(3, iset.max_fd() + 1)
        # room for every description above every image fd
        need = self.fd_base + len(iset.files) + 8
        cur, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if need > hard:
            raise RestoreError(f"the image needs descriptors up to {need}, RLIMIT_NOFILE hard limit here is {hard}")
        stub.reset()
        stub("prlimit64", 0, 7, stub.put(struct.pack("<QQ", max(need, cur), hard)), 0)
        # keep 0/1/2 for a terminal hand-over, close everything else hetmig had
        stub("close_range", 3, 0xFFFFFFFF, 0)
        slot = self.fd_base
        pipes: dict[int, list[Any]] = {}
        for desc in sorted(iset.files.values(), key=lambda f: f.id):
            if desc.kind == FD_TTY:
                src = self.tty_fd if self.tty_fd is not None else 0
                stub("fcntl", src, F_DUPFD, slot)
                stub("fcntl", slot, F_SETFL, desc.flags & SETFL_MASK)
                self.file_slot[desc.id] = slot
                slot += 1
        stub("close_range", 0, 2, 0)
        for desc in sorted(iset.files.values(), key=lambda f: f.id):
            stub.reset()
            if desc.kind == FD_REG:
                flags = desc.flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)
                fd = stub("openat", AT_FDCWD, stub.path(desc.path), flags, 0, check=False)
                if fd < 0:
                    raise RestoreError(f"cannot open {desc.path!r} (file id {desc.id}) with flags 0o{flags:o}: "
                                       f"{os.strerror(-fd)}")
                stub("dup3", fd, slot, 0)
                stub("close", fd)
                if desc.pos:
                    stub("lseek", slot, desc.pos, 0)
                self.file_slot[desc.id] = slot
                slot += 1
            elif desc.kind == FD_PIPE:
                pipes.setdefault(desc.pipe_id, []).append(desc)
        for pipe_id, descs in sorted(pipes.items()):
            stub.reset()
            arr = stub.put(b"\0" * 8, align=8)
            stub("pipe2", arr, 0)
            rfd, wfd = struct.unpack("<ii", self.ops.read_memory(stub.host_tid, arr, 8))
            data, size = self.iset.pipe_data.get(pipe_id, (b"", 0))
            if size:
                stub("fcntl", wfd, F_SETPIPE_SZ, size, check=False)
            off = 0
            while off < len(data):
                stub.reset()
                chunk = data[off : off + (TRAMPOLINE_SIZE - 2 * PAGE)]
                n = stub("write", wfd, stub.put(chunk), len(chunk))
                if n <= 0:
                    raise RestoreError(f"pipe {pipe_id}: could not refill buffered data ({n})")
                off += n
            ends = {"r": rfd, "w": wfd}
            for desc in descs:
                end = "w" if (desc.flags & O_ACCMODE) == 1 else "r"
                stub("dup3", ends[end], slot, 0)
                stub("fcntl", slot, F_SETFL, desc.flags & SETFL_MASK)
                self.file_slot[desc.id] = slot
                slot += 1
            stub("close", rfd)
            stub("close", wfd)

    # -- step 3: the tree ---------------------------------------------------------
    def make_root(self, seed: _Stub, root_pid: int, root_root: str) -> _Stub:
        """The tree's root process (below a pid-namespace init when one is needed), in its root."""
        parent = seed
        if self.pidns and root_pid != 1:
            init = self.clone_process(seed, 1)
            self.init_pid = init.host_tid
            init("close_range", 0, 0xFFFFFFFF, 0)
            init("prctl", PR_SET_NAME, init.put(b"hetmig-init\0"), 0, 0, 0)
            self._unmap_all(init)
            self.ops.write_memory(init.host_tid, self.tramp + INIT_CODE_OFFSET + INIT_ROOTPID_OFFSET,
                            struct.pack("<i", root_pid))
            self.init_stub = init
            parent = init
        rstub = self.clone_process(parent, root_pid)
        if self.root != "/" or root_root != "/":
            rstub.reset()
            target = os.path.join(self.root, root_root.lstrip("/")) if self.root != "/" else root_root
            rstub("chroot", rstub.path(target))
            rstub("chdir", rstub.path("/"))
        return rstub

    def build_tree(self, seed: _Stub | None) -> None:
        iset = self.iset
        root = iset.root_process
        if self.prepared is not None:
            if root.pid != self.prepared_pid or root.root != "/":
                raise RestoreError(f"the restore target was prepared for pid {self.prepared_pid} under root /, "
                                   f"the image's root process is pid {root.pid} under root {root.root!r}")
            rstub = self.prepared
        else:
            assert seed is not None
            rstub = self.make_root(seed, root.pid, root.root)
        self.procs[root.pid] = _Proc(root, rstub.host_tid, rstub, {root.pid: rstub})
        if root.sid == root.pid:
            rstub("setsid")
        else:
            self.warnings.append(f"pid {root.pid}: session {root.sid} is outside the image; the restored tree "
                                 f"joins the restorer's session (shell-job)")
        self.open_files(rstub)
        bounds = {_caps(t.core.thread_core.creds.cap_bnd) for p in iset.live for t in p.threads
                  if t.core.HasField("thread_core") and t.core.thread_core.HasField("creds")}
        if len(bounds) == 1 and len(iset.processes) > 1:
            # one bounding set for all: dropped once here, inherited by every process forked below
            self._drop_bounding(rstub, bounds.pop())
        # a prepared root already holds its memory: its children must not copy (and then
        # unmap) it -- page tables of a GiB cost tens of ms each way
        unshared = list(self.target_mapped) if self.prepared is not None and len(iset.processes) > 1 else []
        for lo, hi in unshared:
            rstub("madvise", lo, hi - lo, MADV_DONTFORK)
        for p in iset.processes[1:]:
            par = self.procs[p.ppid]
            child = self.clone_process(par.stub, p.pid)
            self.procs[p.pid] = _Proc(p, child.host_tid, child, {p.pid: child})
            if p.sid == p.pid:
                child("setsid")
            elif p.sid != par.img.sid:
                self.warnings.append(f"pid {p.pid}: session {p.sid} differs from its parent's ({par.img.sid}); "
                                     f"it keeps its parent's session")
        for lo, hi in unshared:
            rstub("madvise", lo, hi - lo, MADV_DOFORK)  # the image's own madvise bits come later
        # process groups: leaders first, then members
        pids = set(self.procs)
        for leaders_first in (True, False):
            for p in iset.processes:
                if (p.pgid == p.pid) != leaders_first:
                    continue
                st = self.procs[p.pid].stub
                if p.pgid == p.pid:
                    if p.sid != p.pid:
                        st("setpgid", 0, 0)
                elif p.pgid in pids:
                    st("setpgid", 0, p.pgid)
                else:
                    self.warnings.append(f"pid {p.pid}: process group {p.pgid} is outside the image; kept the "
                                         f"inherited group")

    # -- step 4: one process's state ---------------------------------------------
    def _unmap_all(self, st: _Stub) -> None:
        if not self.has(FEATURE_MAP_VDSO):
            from capture import restore_compat

            return restore_compat.unmap_keeping_vdso(self, st)
        t = self.tramp
        st("munmap", 0, t)
        st("munmap", t + TRAMPOLINE_SIZE, TASK_SIZE - (t + TRAMPOLINE_SIZE))
        left = [m for m in self.ops.read_maps(st.host_tid) if m.path != "[vsyscall]" and m.start != t]
        if left:
            raise RestoreError(f"stub {st.host_tid}: mappings left after unmapping: "
                               f"{[hex(m.start) + ' ' + m.path for m in left]}")

    def make_zombie(self, pr: _Proc) -> None:
        """Let a dumped zombie die again with its status; its parent reaps it later."""
        st = pr.stub
        status = pr.img.zombie_status or 0
        st("close_range", 0, 0xFFFFFFFF, 0)
        sig = status & 0x7F
        base = st.inj.saved
        assert base is not None
        if sig:
            st("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)  # no core file from the re-enacted death
            st.reset()
            st("rt_sigaction", sig, st.put(struct.pack("<QQQQ", 0, 0, 0, 0), align=8), 0, 8)
            st("rt_sigprocmask", SIG_SETMASK, st.put(struct.pack("<Q", 0), align=8), 0, 8)
            regs = dataclasses.replace(base, rax=li.SYS["kill"], rdi=pr.img.pid, rsi=sig, orig_rax=U64,
                                       rip=self.tramp)
        else:
            regs = dataclasses.replace(base, rax=li.SYS["exit_group"], rdi=(status >> 8) & 0xFF, orig_rax=U64,
                                       rip=self.tramp)
        self.ops.set_regs(pr.host_pid, regs)
        deliver = 0
        for _ in range(16):
            self.ops.resume(pr.host_pid, deliver)
            stop = self.ops.wait_stop(pr.host_pid)
            if stop.exited:
                return
            deliver = stop.signal if stop.signal == sig and not stop.event else 0
        raise RestoreError(f"zombie {pr.img.pid} did not die again with status 0x{status:x}")

    def restore_files(self, pr: _Proc) -> None:
        st = pr.stub
        for f in pr.img.fds:
            slot = self.file_slot[f.file_id]
            st("dup3", slot, f.fd, O_CLOEXEC if f.cloexec else 0)
        st("close_range", self.fd_base, 0xFFFFFFFF, 0)

    def restore_mm(self, pr: _Proc) -> None:
        img = pr.img
        st = pr.stub
        t0 = time.perf_counter()
        prepared = self.prepared is not None and st is self.prepared
        if prepared:
            self._reconcile_target(pr)
        else:
            self._unmap_all(st)
        vdso = [v for v in img.vmas if v.status & VMA_AREA_VDSO]
        if vdso:
            self._place_vdso(pr, vdso[0])
        # the exe link can only change while the old exe is not mapped: now
        self._set_mm_map(pr)
        t0 = self._stage("unmap+vdso+mm", t0)
        # map every VMA
        open_fds: dict[tuple[int, int], int] = {}
        fix_prot: list[Any] = []
        page_vmas = self._vmas_with_pages(img)
        for v in img.vmas:
            if v.status & (VMA_AREA_VSYSCALL | VMA_AREA_VDSO | VMA_AREA_VVAR):
                continue
            length = v.end - v.start
            if prepared and _anon_private(v):
                # mapped read-write since pre-copy (see _reconcile_target): final protections last
                if v.prot != li.PROT_READ | li.PROT_WRITE:
                    fix_prot.append(v)
                self._madvise(st, img.pid, v)
                continue
            flags = (v.flags & ~(li.MAP_FIXED | li.MAP_FIXED_NOREPLACE)) | li.MAP_FIXED
            prot = v.prot
            shared = bool(v.flags & li.MAP_SHARED)
            if not shared and v.start in page_vmas and not prot & li.PROT_WRITE:
                prot |= li.PROT_WRITE
                fix_prot.append(v)
            if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
                acc = 2 if shared and v.prot & li.PROT_WRITE else 0
                key = (v.shmid, acc)
                fd = open_fds.get(key)
                if fd is None:
                    path = self._file_path(v.shmid)
                    st.reset()
                    fd = st("openat", AT_FDCWD, st.path(path), acc | O_CLOEXEC, 0, check=False)
                    if fd < 0:
                        raise RestoreError(f"pid {img.pid}: cannot open {path!r} to map 0x{v.start:x}: "
                                           f"{os.strerror(-fd)}")
                    open_fds[key] = fd
                res = st("mmap", v.start, length, prot, flags & ~li.MAP_ANONYMOUS, fd, v.pgoff, check=False)
            else:
                res = st("mmap", v.start, length, prot, flags | li.MAP_ANONYMOUS, -1, 0, check=False)
            if res != v.start:
                err = os.strerror(-res) if res < 0 else f"landed at 0x{res:x}"
                raise RestoreError(f"pid {img.pid}: mmap of VMA 0x{v.start:x}-0x{v.end:x} prot={v.prot} "
                                   f"flags=0x{v.flags:x} failed: {err}")
            self._madvise(st, img.pid, v)
        for fd in open_fds.values():
            st("close", fd)
        t0 = self._stage("mmap", t0)
        self._write_pages(pr)
        t0 = self._stage("pages", t0)
        for v in fix_prot:
            st("mprotect", v.start, v.end - v.start, v.prot)
        self._stage("mprotect", t0)

    def _madvise(self, st: _Stub, pid: int, v: Any) -> None:
        if v.HasField("madv") and v.madv:
            for bit in range(64):
                if v.madv & (1 << bit):
                    if st("madvise", v.start, v.end - v.start, bit, check=False) < 0:
                        self.warnings.append(f"pid {pid}: madvise({bit}) on 0x{v.start:x} failed")

    # -- a prepared target ----------------------------------------------------------
    def map_target(self, layout: Sequence[tuple[int, int, int]]) -> None:
        """Map the parts of *layout* ((start, end, MAP_* flags) private anonymous areas)
        that the prepared target lacks, read-write; what is mapped stays."""
        st = self.prepared
        assert st is not None
        for start, end, flags in layout:
            for lo, hi in spans.subtract([(start, end)], self.target_mapped):
                fl = li.MAP_PRIVATE | li.MAP_ANONYMOUS | li.MAP_FIXED_NOREPLACE | (flags & MAP_KEEP_FLAGS)
                res = st("mmap", lo, hi - lo, li.PROT_READ | li.PROT_WRITE, fl, -1, 0, check=False)
                if res != lo:
                    err = os.strerror(-res) if res < 0 else f"landed at 0x{res:x}"
                    raise RestoreError(f"restore target: mmap of 0x{lo:x}-0x{hi:x} failed: {err}")
                self.target_mapped = spans.union(self.target_mapped, [(lo, hi)])

    def _reconcile_target(self, pr: _Proc) -> None:
        """Make the prepared target's anonymous areas those of the final image: unmap what
        the image no longer has (with its pages), map what is new, zap pages written
        during pre-copy that the final image does not hold (zero now)."""
        st = pr.stub
        img = pr.img
        t = self.tramp
        for v in img.vmas:
            if not v.status & VMA_AREA_VSYSCALL and v.start < t + TRAMPOLINE_SIZE and v.end > t:
                raise RestoreError(f"pid {img.pid}: VMA 0x{v.start:x}-0x{v.end:x} of the final image covers the "
                                   f"restore target's trampoline at 0x{t:x}")
        anon = [v for v in img.vmas if _anon_private(v)]
        final = spans.union([], [(v.start, v.end) for v in anon])
        for lo, hi in spans.subtract(self.target_mapped, final):
            st("munmap", lo, hi - lo)
        self.target_mapped = spans.intersect(self.target_mapped, final)
        self.map_target([(v.start, v.end, v.flags) for v in anon])
        keep = spans.union([], [(r.vaddr, r.vaddr + r.nr_pages * PAGE) for r in img.page_runs])
        written = [(a, a + n * PAGE) for a, n in self.target_written]
        for lo, hi in spans.subtract(spans.intersect(written, final), keep):
            st("madvise", lo, hi - lo, MADV_DONTNEED)

    def _vmas_with_pages(self, img: ProcessImage) -> set[int]:
        out: set[int] = set()
        vmas = [v for v in img.vmas if not v.status & VMA_AREA_VSYSCALL]
        i = 0
        for run in img.page_runs:
            end = run.vaddr + run.nr_pages * PAGE
            while i < len(vmas) and vmas[i].end <= run.vaddr:
                i += 1
            j = i
            while j < len(vmas) and vmas[j].start < end:
                out.add(vmas[j].start)
                j += 1
        return out

    def _file_path(self, file_id: int) -> str:
        """The image path of files.img entry *file_id* (as seen inside the stub's root)."""
        path = self._reg_paths.get(file_id)
        if path is None:
            raise RestoreError(f"file id {file_id} has no path in files.img")
        return path

    def _place_vdso(self, pr: _Proc, vdso: Any) -> None:
        """Give the process this kernel's vDSO where its code expects the dumped one.

        ``map``: this kernel's vDSO text lands exactly at the dumped vDSO
        address (its vvar area, sized for this kernel, just below); right when
        both vDSOs export the same symbols at the same offsets. ``proxy``: the
        dumped vDSO bytes are put back at their address and every exported
        function is patched with a jump to the same-named function of this
        kernel's vDSO, mapped elsewhere (a move to a different kernel).
        ``auto`` picks ``map`` when the symbol layouts agree.
        """
        if not self.has(FEATURE_MAP_VDSO):
            from capture import restore_compat

            return restore_compat.redirect_to_kept_vdso(self, pr, vdso)
        if self.host_vdso is None:
            raise RestoreError("the image has a vDSO but this kernel maps none (vdso=0?)")
        size = vdso.end - vdso.start
        old = self._read_image_pages(pr.img, vdso.start, vdso.end)
        host_syms = vdso_symbols(self.host_vdso_bytes)
        mode = self.vdso_mode
        old_syms: dict[str, int] = {}
        if old is not None:
            old_syms = vdso_symbols(old)
        if mode == "auto":
            same = old is None or old == self.host_vdso_bytes or (
                len(old) == len(self.host_vdso_bytes) and old_syms == host_syms)
            mode = "map" if same else "proxy"
            if old is None and size != len(self.host_vdso_bytes):
                self.warnings.append(f"pid {pr.img.pid}: dumped vDSO is {size} bytes, this kernel's is "
                                     f"{len(self.host_vdso_bytes)}, and the image holds no vDSO pages to redirect")
        if mode == "proxy":
            if old is None or not old_syms:
                raise RestoreError(f"pid {pr.img.pid}: cannot redirect the dumped vDSO at 0x{vdso.start:x}: the "
                                   f"image holds no readable copy of it")
            self._proxy_vdso(pr, vdso, old, old_syms, host_syms)
            return
        target = vdso.start - self.host_vvar_size
        for v in pr.img.vmas:
            if v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL):
                continue
            if v.start < vdso.start and v.end > target:
                raise RestoreError(
                    f"pid {pr.img.pid}: this kernel's vvar area ({self.host_vvar_size} bytes) before the vDSO at "
                    f"0x{vdso.start:x} would overlap VMA 0x{v.start:x}-0x{v.end:x}")
        self._map_host_vdso(pr, target)

    def _map_host_vdso(self, pr: _Proc, vvar_start: int) -> int:
        pr.stub("arch_prctl", ARCH_MAP_VDSO_64, vvar_start)
        layout = _vdso_layout(self.ops.read_maps(pr.host_pid))
        want = vvar_start + self.host_vvar_size
        if layout is None or layout[1] != want:
            got = f"0x{layout[1]:x}" if layout else "nowhere"
            raise RestoreError(f"pid {pr.img.pid}: vDSO placed at {got}, wanted 0x{want:x}")
        return want

    def _proxy_vdso(self, pr: _Proc, vdso: Any, old: bytes, old_syms: dict[str, int],
                    host_syms: dict[str, int]) -> None:
        need = self.host_vvar_size + len(self.host_vdso_bytes)
        busy = [(v.start, v.end) for v in pr.img.vmas if not v.status & VMA_AREA_VSYSCALL]
        busy.append((self.tramp, self.tramp + TRAMPOLINE_SIZE))
        base = 0
        for k in range(1, 4096):
            cand = (vdso.start & ~0xFFFFF) - k * 0x100000
            if cand > 0x10000000 and _free_in(busy, cand - PAGE, need + 2 * PAGE):
                base = cand
                break
        if not base:
            raise RestoreError(f"pid {pr.img.pid}: no free room for this kernel's vDSO near 0x{vdso.start:x}")
        new_text = self._map_host_vdso(pr, base)
        done, missing = self._write_redirected_vdso(pr, vdso, old, old_syms, host_syms, new_text)
        if missing:
            self.warnings.append(f"pid {pr.img.pid}: this kernel's vDSO lacks {missing}; calls to them "
                                 f"in the dumped vDSO are not redirected")
        self.warnings.append(f"pid {pr.img.pid}: dumped vDSO at 0x{vdso.start:x} redirected to this kernel's at "
                             f"0x{new_text:x} ({done} entry points)")

    def _write_redirected_vdso(self, pr: _Proc, vdso: Any, old: bytes, old_syms: dict[str, int],
                               host_syms: dict[str, int], text_base: int) -> tuple[int, list[str]]:
        """Put the dumped vDSO bytes back at their address, every exported function
        patched with a jump to the same-named function of the vDSO at *text_base*;
        returns (entry points redirected, names that vDSO lacks)."""
        patched = bytearray(old)
        done: set[int] = set()
        missing: set[str] = set()
        for name, off in sorted(old_syms.items(), key=lambda kv: kv[1]):
            if off in done:
                continue
            target = host_syms.get(name)
            if target is None:
                missing.add(name)
                continue
            if off + len(_JUMP) + 8 > len(patched):
                raise RestoreError(f"pid {pr.img.pid}: vDSO symbol {name} at +0x{off:x} too close to the end")
            patched[off : off + len(_JUMP) + 8] = _JUMP + struct.pack("<Q", text_base + target)
            done.add(off)
        size = vdso.end - vdso.start
        pr.stub("mmap", vdso.start, size, li.PROT_READ | li.PROT_WRITE,
                li.MAP_PRIVATE | li.MAP_ANONYMOUS | li.MAP_FIXED, -1, 0)
        self.ops.write_memory(pr.host_pid, vdso.start, bytes(patched))
        pr.stub("mprotect", vdso.start, size, vdso.prot)
        return len(done), sorted(missing)

    def _read_image_pages(self, img: ProcessImage, start: int, end: int) -> bytes | None:
        chunks = []
        for run in img.page_runs:
            rs, re_ = run.vaddr, run.vaddr + run.nr_pages * PAGE
            if re_ <= start or rs >= end:
                continue
            if rs > start or re_ < end or run.pages_file == IN_TARGET:
                return None
            with open(run.pages_file or img.pages_file, "rb") as fh:
                fh.seek(run.file_offset + (start - rs))
                chunks.append(fh.read(end - start))
        return b"".join(chunks) if chunks else None

    def _write_pages(self, pr: _Proc) -> None:
        img = pr.img
        skip = [(v.start, v.end) for v in img.vmas if v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL)]
        by_file: dict[str, list[tuple[int, int, int]]] = {}
        for run in img.page_runs:
            lo, hi = run.vaddr, run.vaddr + run.nr_pages * PAGE
            if any(not (hi <= s or lo >= e) for s, e in skip):
                continue
            if run.pages_file == IN_TARGET:
                continue  # written into the prepared target during pre-copy
            # parent runs (incremental image sets) name their own pages file
            by_file.setdefault(run.pages_file or img.pages_file, []).append((run.file_offset, lo, hi - lo))
        for path, segments in by_file.items():
            segments.sort()
            fd = os.open(path, os.O_RDONLY)
            try:
                self.ops.write_file_ranges(pr.host_pid, fd, segments)
            finally:
                os.close(fd)

    def _set_mm_map(self, pr: _Proc) -> None:
        if not self.has(FEATURE_MM_MAP):
            from capture import restore_compat

            return restore_compat.skip_mm_map(self, pr)
        mm = pr.img.mm
        st = pr.stub
        st.reset()
        auxv = list(mm.mm_saved_auxv)
        auxv_addr = st.put(li.pack_u64s(auxv), align=8) if auxv else 0
        exe_fd = -1
        if pr.img.exe_path:
            exe_fd = st("openat", AT_FDCWD, st.path(pr.img.exe_path), O_CLOEXEC, 0, check=False)
            if exe_fd < 0:
                self.warnings.append(f"pid {pr.img.pid}: exe {pr.img.exe_path!r} not openable; exe link not set")
                exe_fd = -1
        data = struct.pack(
            "<11QQII", mm.mm_start_code, mm.mm_end_code, mm.mm_start_data, mm.mm_end_data, mm.mm_start_brk,
            mm.mm_brk, mm.mm_start_stack, mm.mm_arg_start, mm.mm_arg_end, mm.mm_env_start, mm.mm_env_end,
            auxv_addr, len(auxv) * 8, exe_fd & 0xFFFFFFFF,
        )
        addr = st.put(data, align=8)
        res = st("prctl", PR_SET_MM, PR_SET_MM_MAP, addr, len(data), 0, check=False)
        if exe_fd >= 0:
            st("close", exe_fd)
        if res < 0:
            raise RestoreError(f"pid {pr.img.pid}: prctl(PR_SET_MM_MAP) failed: {os.strerror(-res)} (brk "
                               f"0x{mm.mm_brk:x}, code 0x{mm.mm_start_code:x}-0x{mm.mm_end_code:x})")
        if mm.HasField("dumpable") and mm.dumpable in (0, 1):
            st("prctl", PR_SET_DUMPABLE, mm.dumpable, 0, 0, 0, check=False)
        if mm.HasField("thp_disabled") and mm.thp_disabled:
            st("prctl", PR_SET_THP_DISABLE, 1, 0, 0, 0, check=False)

    def restore_task(self, pr: _Proc) -> None:
        img = pr.img
        st = pr.stub
        tc = img.core.tc
        if img.fs is not None:
            st.reset()
            res = st("chdir", st.path(img.cwd), check=False)
            if res < 0:
                raise RestoreError(f"pid {img.pid}: chdir({img.cwd!r}) failed: {os.strerror(-res)}")
            if img.fs.HasField("umask"):
                st("umask", img.fs.umask)
        # signal handlers (process-wide); a signal the stub leaves at SIG_DFL that the image
        # has at SIG_DFL with nothing else set needs no call (SIGCHLD always gets one)
        stub_set = _status_bits(pr.host_pid, ("SigIgn:", "SigCgt:"))
        for signo, sa in zip(SIGACTION_SIGNALS, tc.sigactions):
            if (signo != SIGCHLD and not stub_set >> (signo - 1) & 1
                    and not (sa.sigaction or sa.flags or sa.restorer or sa.mask)):
                continue
            st.reset()
            act = struct.pack("<QQQQ", sa.sigaction, sa.flags, sa.restorer, sa.mask)
            res = st("rt_sigaction", signo, st.put(act, align=8), 0, 8, check=False)
            if res < 0:
                raise RestoreError(f"pid {img.pid}: rt_sigaction({signo}) failed: {os.strerror(-res)}")
        if tc.HasField("timers"):
            for which, it in enumerate((tc.timers.real, tc.timers.virt, tc.timers.prof)):
                if it.isec or it.iusec or it.vsec or it.vusec:
                    st.reset()
                    st("setitimer", which, st.put(struct.pack("<4Q", it.isec, it.iusec, it.vsec, it.vusec)), 0)
        if tc.HasField("rlimits"):
            self._restore_rlimits(pr)
        if tc.personality:
            st("personality", tc.personality, check=False)
        if tc.HasField("child_subreaper") and tc.child_subreaper:
            st("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if tc.HasField("loginuid") and tc.loginuid != 0xFFFFFFFF:
            self.warnings.append(f"pid {img.pid}: loginuid={tc.loginuid} not restored")
        if tc.HasField("oom_score_adj"):
            try:
                with open(f"/proc/{pr.host_pid}/oom_score_adj", "w") as fh:
                    fh.write(str(tc.oom_score_adj))
            except OSError as err:
                self.warnings.append(f"pid {img.pid}: oom_score_adj={tc.oom_score_adj} not set: {err.strerror}")

    def _restore_rlimits(self, pr: _Proc) -> None:
        st = pr.stub
        now = _proc_limits(pr.host_pid)
        for res_no, rl in enumerate(pr.img.core.tc.rlimits.rlimits):
            st.reset()
            if res_no < len(now):
                cur_now, max_now = now[res_no]
            else:
                out = st.put(b"\0" * 16, align=8)
                st("prlimit64", 0, res_no, 0, out)
                cur_now, max_now = struct.unpack("<QQ", self.ops.read_memory(pr.host_pid, out, 16))
            want_cur, want_max = rl.cur, rl.max
            if (want_cur, want_max) == (cur_now, max_now):
                continue
            r = st("prlimit64", 0, res_no, st.put(struct.pack("<QQ", want_cur, want_max), align=8), 0, check=False)
            if r == 0:
                continue
            # cannot raise a hard limit without CAP_SYS_RESOURCE: lower only
            new_max = min(want_max, max_now)
            new_cur = min(want_cur, new_max)
            st("prlimit64", 0, res_no, st.put(struct.pack("<QQ", new_cur, new_max), align=8), 0, check=False)
            self.warnings.append(f"pid {pr.img.pid}: rlimit {res_no} wanted cur={_lim(want_cur)} max={_lim(want_max)}"
                                 f", set cur={_lim(new_cur)} max={_lim(new_max)} (raising needs CAP_SYS_RESOURCE)")

    def make_threads(self, pr: _Proc) -> None:
        for t in pr.img.threads[1:]:
            child = self.clone_process(pr.stub, t.tid, flags=THREAD_FLAGS, exit_signal=0)
            pr.threads[t.tid] = child

    def restore_thread(self, pr: _Proc, tid: int, core: Any) -> None:
        st = pr.threads[tid]
        ti = core.thread_info
        tcore = core.thread_core if core.HasField("thread_core") else None
        st.reset()
        st("set_tid_address", ti.clear_tid_addr)
        if tcore is not None:
            if tcore.futex_rla and tcore.futex_rla_len:
                st("set_robust_list", tcore.futex_rla, tcore.futex_rla_len, check=False)
            if tcore.HasField("sas"):
                sas = tcore.sas
                fl = sas.ss_flags & (SS_DISABLE | SS_AUTODISARM)
                buf = struct.pack("<QiiQ", sas.ss_sp if not fl & SS_DISABLE else 0, fl, 0,
                                  sas.ss_size if not fl & SS_DISABLE else 0)
                res = st("sigaltstack", st.put(buf, align=8), 0, check=False)
                if res < 0:
                    raise RestoreError(f"tid {tid}: sigaltstack failed: {os.strerror(-res)}")
            else:
                st("sigaltstack", st.put(struct.pack("<QiiQ", 0, SS_DISABLE, 0, 0), align=8), 0)
            if tcore.HasField("rseq_entry") and tcore.rseq_entry.rseq_abi_pointer and not self.has(FEATURE_RSEQ):
                self.warnings.append(f"tid {tid}: rseq area at 0x{tcore.rseq_entry.rseq_abi_pointer:x} not "
                                     f"re-registered (no rseq here)")
            elif tcore.HasField("rseq_entry") and tcore.rseq_entry.rseq_abi_pointer:
                rs = tcore.rseq_entry
                res = st("rseq", rs.rseq_abi_pointer, rs.rseq_abi_size, 0, rs.signature, check=False)
                if res < 0:
                    raise RestoreError(f"tid {tid}: rseq re-registration at 0x{rs.rseq_abi_pointer:x} failed: "
                                       f"{os.strerror(-res)}")
            if tcore.HasField("pdeath_sig") and tcore.pdeath_sig:
                st("prctl", PR_SET_PDEATHSIG, tcore.pdeath_sig, 0, 0, 0)
            if tcore.HasField("sched_nice") and tcore.sched_nice:
                st("setpriority", 0, 0, tcore.sched_nice, check=False)
            if tcore.HasField("sched_policy") and tcore.sched_policy:
                self.warnings.append(f"tid {tid}: scheduling policy {tcore.sched_policy} not restored")
        comm = (tcore.comm if tcore is not None and tcore.HasField("comm") else "") or (
            pr.img.core.tc.comm if tid == pr.img.pid else "")
        if comm:
            st.reset()
            st("prctl", PR_SET_NAME, st.put(comm.encode()[:15] + b"\0"), 0, 0, 0)
        chain = next((t.seccomp for t in pr.img.threads if t.tid == tid), ())
        if chain:
            # while the stub still has CAP_SYS_ADMIN (no no_new_privs needed); the calls that
            # follow in this thread (credentials, masks, queued signals, the trampoline's
            # munmap) must then pass the filter, as they do for the usual container profiles
            self._install_seccomp(st, tid, chain)
        if tcore is not None and tcore.HasField("creds"):
            self._restore_creds(pr, st, tid, tcore.creds)

    def _install_seccomp(self, st: _Stub, tid: int, chain: Sequence[tuple[bytes, int]]) -> None:
        """seccomp(SECCOMP_SET_MODE_FILTER) of each filter of the thread's chain, oldest first."""
        for i, (prog, flags) in enumerate(chain):
            st.reset()
            insns = st.put(prog, align=8)
            fprog = st.put(struct.pack("<H6xQ", len(prog) // 8, insns), align=8)
            res = st("seccomp", SECCOMP_SET_MODE_FILTER, flags, fprog, check=False)
            if res < 0:
                raise RestoreError(f"tid {tid}: installing seccomp filter {i + 1} of {len(chain)} "
                                   f"({len(prog) // 8} instructions, flags 0x{flags:x}) failed: {os.strerror(-res)}")

    def _drop_bounding(self, st: _Stub, bnd: int) -> None:
        """Drop from *st*'s bounding set what *bnd* lacks (only what it still has)."""
        have = _status_bits(st.host_tid, ("CapBnd:",), task=True)
        for cap in range(_cap_last_cap() + 1):
            if have & (1 << cap) and not bnd & (1 << cap):
                st("prctl", PR_CAPBSET_DROP, cap, 0, 0, 0, check=False)

    def _restore_creds(self, pr: _Proc, st: _Stub, tid: int, cr: Any) -> None:
        if not (self.has(FEATURE_FSUID) and self.has(FEATURE_CAPS)):
            from capture import restore_compat

            return restore_compat.restore_creds(self, pr, st, tid, cr)
        st.reset()
        last_cap = _cap_last_cap()
        self._drop_bounding(st, _caps(cr.cap_bnd))
        groups = list(cr.groups)
        st("setgroups", len(groups), st.put(struct.pack(f"<{len(groups)}I", *groups), align=4) if groups else 0)
        if cr.uid or cr.euid or cr.suid:
            st("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
        st("setresgid", cr.gid, cr.egid, cr.sgid)
        st("setfsgid", cr.fsgid)
        st("setresuid", cr.uid, cr.euid, cr.suid)
        st("setfsuid", cr.fsuid)
        eff, prm, inh = _caps(cr.cap_eff), _caps(cr.cap_prm), _caps(cr.cap_inh)
        hdr = st.put(struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, 0), align=8)
        data = st.put(struct.pack("<6I", eff & 0xFFFFFFFF, prm & 0xFFFFFFFF, inh & 0xFFFFFFFF,
                                  eff >> 32, prm >> 32, inh >> 32), align=8)
        res = st("capset", hdr, data, check=False)
        if res < 0:
            raise RestoreError(f"tid {tid}: capset(eff=0x{eff:x} prm=0x{prm:x} inh=0x{inh:x}) failed: "
                               f"{os.strerror(-res)}")
        amb = _caps(cr.cap_amb)
        for cap in range(last_cap + 1):
            if amb & (1 << cap):
                st("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0, check=False)
        if cr.secbits or cr.uid or cr.euid or cr.suid:
            st("prctl", PR_SET_SECUREBITS, cr.secbits, 0, 0, 0, check=False)
        if cr.HasField("no_new_privs") and cr.no_new_privs:
            st("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    def finish_thread(self, pr: _Proc, tid: int, core: Any) -> None:
        """Blocked mask (last syscall but the trampoline unmap), then registers."""
        st = pr.threads[tid]
        tcore = core.thread_core if core.HasField("thread_core") else None
        if tcore is not None and tcore.HasField("blk_sigset"):
            mask = tcore.blk_sigset
        elif tid == pr.img.pid:
            mask = pr.img.core.tc.blk_sigset
        else:
            mask = 0
        st.reset()
        st("rt_sigprocmask", SIG_SETMASK, st.put(struct.pack("<Q", mask), align=8), 0, 8)
        # pending signals go back on the queues they were on (a process may
        # queue any siginfo to itself); unblocked ones arrive on resume
        pending: list[tuple[str, bytes]] = []
        if tcore is not None and tcore.HasField("signals_p"):
            pending += [("thread", e.siginfo) for e in tcore.signals_p.signals]
        if tid == pr.img.pid and pr.img.core.tc.HasField("signals_s"):
            pending += [("process", e.siginfo) for e in pr.img.core.tc.signals_s.signals]
        for queue, info in pending:
            st.reset()
            signo = struct.unpack_from("<i", info, 0)[0]
            addr = st.put(info, align=8)
            if queue == "thread":
                res = st("rt_tgsigqueueinfo", pr.img.pid, tid, signo, addr, check=False)
            else:
                res = st("rt_sigqueueinfo", pr.img.pid, signo, addr, check=False)
            if res < 0:
                self.warnings.append(f"tid {tid}: pending signal {signo} not re-queued: {os.strerror(-res)}")

    def set_thread_regs(self, pr: _Proc, tid: int, core: Any) -> None:
        st = pr.threads[tid]
        ti = core.thread_info
        fp = ti.fpregs if ti.HasField("fpregs") else None
        if fp is not None:
            if fp.HasField("xsave"):
                template = self.ops.get_xstate(st.host_tid)
                self.ops.set_xstate(st.host_tid, build_xstate(fp, template, _host_xfeatures(template, self.ops.xstate_components()),
                                                         self.ops.xstate_components()))
            else:
                buf = bytearray(self.ops.get_fpregs(st.host_tid))
                struct.pack_into("<HHHHQQII", buf, 0, fp.cwd, fp.swd, fp.twd, fp.fop, fp.rip, fp.rdp, fp.mxcsr,
                                 fp.mxcsr_mask)
                buf[32:160] = _u32s(fp.st_space, 32)
                buf[160:416] = _u32s(fp.xmm_space, 64)
                self.ops.set_fpregs(st.host_tid, bytes(buf))
        self.ops.set_regs(st.host_tid, _regs_from_image(ti.gpregs))

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> RestoreResult:
        t_start = time.perf_counter()
        self._reg_paths = self._collect_reg_paths()
        try:
            seed = self.make_seed() if self.prepared is None else None
            t0 = self._stage("seed", t_start)
            self.build_tree(seed)
            # the seed goes before any pdeath_sig is armed in its children
            self._drop_seed()
            t0 = self._stage("tree", t0)
            for pr in self.procs.values():
                if pr.img.zombie_status is not None:
                    self.make_zombie(pr)
            for pr in self.procs.values():
                if pr.img.zombie_status is not None:
                    continue
                self.restore_files(pr)
                t0 = self._stage("files", t0)
                self.restore_mm(pr)
                t0 = time.perf_counter()
                self.restore_task(pr)
                self.make_threads(pr)
                for t in pr.img.threads:
                    self.restore_thread(pr, t.tid, t.core)
                for t in pr.img.threads:
                    self.finish_thread(pr, t.tid, t.core)
                # the trampoline goes last: single-step over munmap leaves the
                # thread stopped right after the syscall instruction
                pr.stub("munmap", self.tramp, TRAMPOLINE_SIZE)
                for t in pr.img.threads:
                    self.set_thread_regs(pr, t.tid, t.core)
                t0 = self._stage("task", t0)
            if self.init_pid:
                init = self.init_stub
                regs = init.inj.saved
                assert regs is not None
                self.ops.set_regs(init.host_tid,
                                  dataclasses.replace(regs, orig_rax=U64, rip=self.tramp + INIT_CODE_OFFSET))
            # everything is in place: let it run (or hand it over still stopped)
            for pr in self.procs.values():
                if pr.img.zombie_status is not None:
                    continue
                for stt in pr.threads.values():
                    sig = stt.inj.deferred_signals[0] if stt.inj.deferred_signals else 0
                    self.held.append((stt.host_tid, sig))
            if self.init_pid:
                self.held.append((self.init_pid, 0))
            if not self.hold:
                for tid, sig in self.held:
                    self.ops.detach(tid, sig)
            self._drop_seed()
            self._stage("detach", t0)
        except HetmigError as err:
            self.kill_all()
            if isinstance(err, RestoreError):
                raise
            raise RestoreError(f"restore failed, everything half-restored was killed: {err}") from err
        except BaseException:
            self.kill_all()
            raise
        root = self.iset.root_process
        return RestoreResult(
            root_pid=self.procs[root.pid].host_pid,
            pids={p: pr.host_pid for p, pr in self.procs.items()},
            init_pid=self.init_pid,
            seconds=time.perf_counter() - t_start,
            warnings=tuple(self.warnings),
            stages=dict(self.stages),
            held=tuple(self.held) if self.hold else (),
        )

    def _collect_reg_paths(self) -> dict[int, str]:
        from capture.images import read_image

        out: dict[int, str] = {}
        path = os.path.join(self.iset.directory, "files.img")
        if os.path.exists(path):
            entries: list[Any] = list(read_image(path).entries)
            for fe in entries:
                if fe.HasField("reg"):
                    out[fe.id] = fe.reg.name
        return out

    def _drop_seed(self) -> None:
        if self.seed:
            try:
                os.kill(self.seed, signal.SIGKILL)
                os.waitpid(self.seed, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            if self.seed in self.created:
                self.created.remove(self.seed)
            self.seed = 0


def _innermost_pid(host_tid: int) -> int:
    """The pid of *host_tid* in its own (innermost) pid namespace (NSpid's last field)."""
    try:
        with open(f"/proc/{host_tid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError) as err:
        raise RestoreError(f"cannot read NSpid of host pid {host_tid}: {err}") from err
    return host_tid


def _status_bits(pid: int, keys: tuple[str, ...], *, task: bool = False) -> int:
    """OR of the hex masks on the /proc/PID/status lines starting with *keys* (0 if unreadable).
    *task*: PID is a thread id (its own status, for per-thread masks such as CapBnd)."""
    path = f"/proc/{pid}/task/{pid}/status" if task else f"/proc/{pid}/status"
    bits = 0
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(keys):
                    bits |= int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return (1 << 64) - 1  # unknown: treat everything as set (the caller then asks)
    return bits


#: /proc/PID/limits rows in RLIMIT_* order (Linux)
_LIMIT_ROWS: Final = ("Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
                      "Max resident set", "Max processes", "Max open files", "Max locked memory",
                      "Max address space", "Max file locks", "Max pending signals", "Max msgqueue size",
                      "Max nice priority", "Max realtime priority", "Max realtime timeout")


def _proc_limits(pid: int) -> list[tuple[int, int]]:
    """(soft, hard) of every rlimit of *pid*, in RLIMIT_* order, from /proc/PID/limits;
    [] when it cannot be read or parsed (the caller asks the process instead)."""
    out: list[tuple[int, int]] = []
    try:
        with open(f"/proc/{pid}/limits") as fh:
            rows = fh.read().splitlines()[1:]
        for want, row in zip(_LIMIT_ROWS, rows):
            if not row.startswith(want):
                return []
            soft, hard = row[len(want):].split()[:2]
            out.append((RLIM_INFINITY if soft == "unlimited" else int(soft),
                        RLIM_INFINITY if hard == "unlimited" else int(hard)))
    except (OSError, ValueError):
        return []
    return out if len(out) == len(_LIMIT_ROWS) else []


def _caps(words: Any) -> int:
    w = list(words) + [0, 0]
    return int(w[0] & 0xFFFFFFFF) | (int(w[1] & 0xFFFFFFFF) << 32)


def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 40


def _lim(v: int) -> str:
    return "unlimited" if v == RLIM_INFINITY else str(v)


def _pick_tty() -> int | None:
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return fd
        except OSError:
            continue
    return None


def restore(image_dir: str | os.PathLike[str], *, root: str | None = None, pidns: bool = False,
            vdso: str = "auto", ops: InjectionOps | None = None, hold: bool = False) -> RestoreResult:
    """Restore the image set in *image_dir*; return when the tree runs.

    The restored root process is a child of nothing the caller owns (its
    parent, the seed, is gone); callers that want its exit status set
    PR_SET_CHILD_SUBREAPER first (the CLI does without ``--detach``).

    With *hold* the whole tree is handed back fully restored but still
    stopped and traced (with EXITKILL) by the calling thread: a migration
    agent lets it run with :func:`release` once the source is gone, or
    kills it with :func:`kill_held`.
    """
    root_dir = os.path.realpath(root) if root else "/"
    if root and not os.path.isdir(root_dir):
        raise RestoreError(f"--root {root!r} is not a directory")
    tty = _pick_tty()
    iset = load_image_set(image_dir, root=root_dir, have_tty=tty is not None)
    restorer = _Restorer(iset, pidns=pidns, root=root_dir, tty_fd=tty, vdso_mode=vdso, ops=ops, hold=hold)
    return restorer.run()


def preload() -> None:
    """Import what a restore imports lazily (image readers' generated modules): the
    migration agent calls this when a migration begins, not inside its downtime."""
    from capture.images import magic

    magic.preload_modules()


class RestoreTarget:
    """A restore prepared while the source still runs (live migration's pre-copy).

    The memory of a large process is written into its restored copy *before*
    the cut-over, so that the frozen part of a migration does not grow with the
    memory size:

    * ``prepare(layout)`` once the private anonymous areas of the process to
      come are known ((start, end, MAP_* flags), e.g. from the source's
      /proc/PID/maps): the seed, the pid-namespace init (``pidns``) and the
      root process (clone3 with the image pid, chroot into *root*) exist; the
      root's address space holds only those areas, read-write, and the
      injection trampoline (placed away from every span of *busy*);
    * ``add_layout(layout)`` maps areas that appeared since (never unmaps);
    * ``split(runs)`` tells which (address, pages) runs lie inside mapped
      areas, ``write_pages(runs, data)`` writes them straight into the target;
    * ``cut_over(image_dir)`` restores the final image set with the prepared
      root process: its PE_PARENT pages must be pages written here (checked
      by :func:`capture.restore_checks.load_image_set`), anonymous areas are
      reconciled with the image's (unmapped, mapped, stale pages zapped),
      everything else is restored exactly as :func:`restore` does;
    * ``abort()`` kills whatever exists.

    Every call must come from the same thread (the ptrace tracer). Only the
    root process of the tree is prepared; the others are made at cut-over.
    """

    def __init__(self, image_pid: int, *, root: str | None = None, pidns: bool = False, vdso: str = "auto",
                 ops: InjectionOps | None = None, hold: bool = False) -> None:
        self.root_dir = os.path.realpath(root) if root else "/"
        if root and not os.path.isdir(self.root_dir):
            raise RestoreError(f"restore target: root {root!r} is not a directory")
        self.image_pid = image_pid
        self._tty = _pick_tty()
        self._r = _Restorer(None, pidns=pidns, root=self.root_dir, tty_fd=self._tty, vdso_mode=vdso, ops=ops,
                            hold=hold)
        self.state = "new"  # -> prepared -> restored | dead
        self.pages_written = 0

    @property
    def host_pid(self) -> int:
        return self._r.prepared.host_tid if self._r.prepared is not None else 0

    def prepare(self, layout: Sequence[tuple[int, int, int]], busy: Sequence[spans.Span] = (), *,
                cap_bnd: int | None = None) -> None:
        """*cap_bnd*: the source process's capability bounding set now; the final image's
        can only be a subset, so it is dropped here already (not inside the downtime)."""
        if self.state != "new":
            raise RestoreError(f"restore target for pid {self.image_pid} is {self.state}, not new")
        r = self._r
        try:
            seed = r.make_seed([*busy, *((lo, hi) for lo, hi, _ in layout)])
            root = r.make_root(seed, self.image_pid, "/")
            r._drop_seed()
            # nothing of the caller's stays open in it while it waits (sockets, the state dir)
            root("close_range", 3, 0xFFFFFFFF, 0)
            if cap_bnd is not None:
                r._drop_bounding(root, cap_bnd)
            r._unmap_all(root)
            r.prepared, r.prepared_pid = root, self.image_pid
            r.map_target(layout)
        except BaseException as err:
            self.state = "dead"
            r.kill_all()
            if isinstance(err, HetmigError) and not isinstance(err, RestoreError):
                raise RestoreError(f"restore target for pid {self.image_pid}: {err}") from err
            raise
        self.state = "prepared"

    def _live(self) -> _Restorer:
        if self.state != "prepared":
            raise RestoreError(f"restore target for pid {self.image_pid} is {self.state}, not prepared")
        return self._r

    def add_layout(self, layout: Sequence[tuple[int, int, int]]) -> None:
        r = self._live()
        try:
            r.map_target(layout)
        except BaseException:
            self.abort()
            raise

    def split(self, runs: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(runs inside the target's areas, runs outside), page runs cut at area edges."""
        want = [(a, a + n * PAGE) for a, n in runs]
        mapped = self._r.target_mapped
        return spans.to_runs(spans.intersect(want, mapped)), spans.to_runs(spans.subtract(want, mapped))

    def covers(self, addr: int, pages: int) -> bool:
        """The run lies inside one of the target's mapped areas."""
        return spans.covers(self._r.target_mapped, addr, addr + pages * PAGE)

    def write_pages(self, pieces: Sequence[tuple[int, int, int]], data: bytes | memoryview) -> None:
        """Write (address, pages, offset in *data*) pieces, all inside the target's areas."""
        r = self._live()
        pid = self.host_pid
        try:
            writev = getattr(r.ops, "writev_remote", None)
            if writev is not None:  # one vectored write per IOV_MAX pieces (a dirty round is scattered)
                buf = (ctypes.c_char * len(data)).from_buffer_copy(data)
                base = ctypes.addressof(buf)
                writev(pid, [(base + off, n * PAGE) for _, n, off in pieces], [(a, n * PAGE) for a, n, _ in pieces])
            else:
                for addr, n, off in pieces:
                    r.ops.write_memory(pid, addr, bytes(data[off:off + n * PAGE]))
        except BaseException:
            self.abort()
            raise
        r.target_written = spans.union(r.target_written, [(a, a + n * PAGE) for a, n, _ in pieces])
        self.pages_written += sum(n for _, n, _ in pieces)

    def written(self) -> list[tuple[int, int]]:
        """(address, pages) runs written so far, sorted and merged."""
        return spans.to_runs(self._r.target_written)

    def cut_over(self, image_dir: str | os.PathLike[str]) -> RestoreResult:
        r = self._live()
        try:
            iset = load_image_set(image_dir, root=self.root_dir, have_tty=self._tty is not None,
                                  in_target={self.image_pid: self.written()})
        except BaseException:
            self.abort()
            raise
        r.iset = iset
        r.warnings = list(iset.warnings) + r.warnings
        self.state = "dead"  # run() kills everything itself on failure
        result = r.run()
        self.state = "restored"
        return result

    def abort(self) -> None:
        if self.state in ("prepared", "new"):
            self._r.kill_all()
        self.state = "dead"
