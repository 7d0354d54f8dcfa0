"""The dump engine: a stopped process tree -> a CRIU-compatible image set.

``dump(pid, images_dir, ...)`` seizes every thread of the process (with
``tree=True`` of its whole subtree) through the platform interface, stops
them, reads everything the restore needs and writes an image set that CRIU
4.1's ``crit`` decodes and ``criu restore`` reads:

``inventory.img``, ``pstree.img``, per process ``core-TID.img`` (one per
thread), ``mm-PID.img``, ``pagemap-PID.img`` + ``pages-N.img``,
``fdinfo-N.img``, ``fs-PID.img``, ``ids-PID.img``; shared ``files.img``,
``pipes-data.img`` (one entry per pipe), ``seccomp.img`` (filter chains),
``timens-0.img``, ``utsns-N.img`` (when the tree has its own UTS namespace),
``cgroup.img`` (when the tree is not in the dumper's cgroups),
``tty-info.img`` (pty slaves, recorded as ``criu --shell-job`` does),
``remap-fpath.img`` + ``ghost-file-N.img`` (unlinked files up to 1 MiB).
Zombies get a TASK_DEAD core; a tree in its own pid namespace is recorded
with the namespace's pids (file names, pstree), as CRIU does.

What is recorded but not restorable by CRIU from our images: unix socket
peers (not looked up; sockets are records only), cgroup controller
properties (only the cgroup sets are written), mount/net/ipc namespaces of
a container (only their ids; ``utsns`` is written).

Every image is written through :mod:`capture.images`; pages are read with
large vectored reads (``process_vm_readv``) into small cache-resident buffers
and written with ``pwrite`` in file order, by two reader threads that take
16 MiB pieces of ``pages-N.img`` from one queue; the copy runs in the background
while descriptors and threads are read, and the dump waits for it before
anything is released or killed.

Incremental final dump (live migration; keyword-only, off by default):
``skip_pages={pid: [(addr, pages), ...]}`` names pages the destination
already holds unchanged; they are recorded in the pagemap as ``PE_PARENT``
(CRIU's flag for pages in the parent image set) without reading them, so the
dump reads and writes only the dirty and never-sent pages;
``parent_images=DIR`` writes the ``parent`` symlink ``criu restore`` follows
to find them. See :func:`dump`.

Success without ``leave_running`` kills the tree. Any failure releases every
seized thread untouched (running, never left stopped), removes the images
this dump wrote, and raises :class:`capture.errors.CheckpointError`.

Refuses (CheckpointError naming pid, fd/address and kind): shared anonymous
or SysV memory, descriptor kinds it cannot record (terminals other than pty
slaves, memfds, named FIFOs, epoll/signalfd/inotify/timerfd), CET shadow stacks, nested pid namespaces, a session
leader outside the tree's pid namespace, non-x86_64 tasks.
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import signal
import stat
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from capture.elf import build_id_words, gnu_build_id
from capture.errors import CheckpointError, HetmigError, PlatformError
from capture.platform.base import (
    PAGE_SIZE,
    CgroupMembership,
    FdInfo,
    FdKind,
    Feature,
    NamespaceIds,
    PipeData,
    Platform,
    ProcessInfo,
    ThreadRegs,
    TtyInfo,
    Vma,
    VmaKind,
    Xsave,
)

log = logging.getLogger(__name__)

# --- CRIU facts -------------------------------------------------------------
VMA_AREA_REGULAR = 1 << 0
VMA_AREA_STACK = 1 << 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_VDSO = 1 << 3
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_FILE_SHARED = 1 << 7
VMA_ANON_SHARED = 1 << 8
VMA_ANON_PRIVATE = 1 << 9
VMA_AREA_VVAR = 1 << 12

PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2

TASK_ALIVE = 0x1
TASK_DEAD = 0x2
TASK_STOPPED = 0x3

MAP_SHARED = 0x01
MAP_ANONYMOUS = 0x20
PROT_WRITE = 0x2
O_RDWR = 0o2
O_LARGEFILE = 0o100000

# Linux -ERESTART* codes (syscall-restart fixup of dumped registers)
ERESTARTSYS = 512
ERESTARTNOINTR = 513
ERESTARTNOHAND = 514
ERESTART_RESTARTBLOCK = 516
EINTR = 4

#: bytes one reader copies per vectored read + pwrite (fits in the CPU cache)
CHUNK = 1 << 20
#: bytes of the pages file per piece of work the reader threads share
JOB = 16 << 20
#: threads copying one window (process_vm_readv releases the GIL)
READERS = min(2, os.cpu_count() or 1)

_ZERO_ITIMER = {"isec": 0, "iusec": 0, "vsec": 0, "vusec": 0}


@dataclass(frozen=True, slots=True)
class DumpResult:
    """What a dump wrote."""

    pids: tuple[int, ...]
    threads: int
    pages: int
    images: tuple[str, ...]
    seconds: float
    frozen_seconds: float
    killed: bool
    #: pages recorded as PE_PARENT (``skip_pages``): in the pagemap, not read, not written
    parent_pages: int = 0

    def as_json(self) -> str:
        return json.dumps(
            {
                "pids": list(self.pids),
                "threads": self.threads,
                "pages": self.pages,
                "bytes": self.pages * PAGE_SIZE,
                "images": list(self.images),
                "seconds": round(self.seconds, 6),
                "frozen_seconds": round(self.frozen_seconds, 6),
                "killed": self.killed,
                "parent_pages": self.parent_pages,
            }
        )


@dataclass
class _Ids:
    """Counters CRIU keeps for ids (files, kernel objects, namespaces)."""

    next_file: int = 1
    next_kobj: int = 2  # 1 is the dumper's own (root_ids)
    ns: dict[tuple[str, int], int] = field(default_factory=dict)
    next_ns: int = 1
    files_by_key: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def ns_id(self, kind: str, ino: int) -> int:
        key = (kind, ino)
        if key not in self.ns:
            self.ns[key] = self.next_ns
            self.next_ns += 1
        return self.ns[key]

    def file_id(self) -> int:
        fid = self.next_file
        self.next_file += 1
        return fid


def _pb(module: str) -> Any:
    import importlib

    return importlib.import_module(f"proto.{module}")


def preload() -> None:
    """Import everything a dump imports lazily (tens of ms on first use): a live
    migration calls this before it freezes anything, so the frozen dump does not pay."""
    from capture.images import magic

    magic.preload_modules()
    for name in ("fown_pb2", "ghost_file_pb2", "remap_file_path_pb2", "sk_opts_pb2", "core_x86_pb2"):
        _pb(name)  # used for sub-messages only, not named by any image kind


class _Images:
    """Writes images through capture.images and remembers what it wrote."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.written: list[str] = []

    def write(self, name: str, entries: Sequence[Any], payloads: Sequence[bytes] | None = None) -> None:
        from capture.images import Image, image_name_for, write_image

        self.written.append(name)
        extra: list[bytes | None] | None = list(payloads) if payloads is not None else None
        write_image(self.dir / name, Image.new(image_name_for(name), list(entries), extra))

    def raw_path(self, name: str) -> Path:
        self.written.append(name)
        return self.dir / name

    def remove_all(self) -> None:
        for name in self.written:
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------------
# pure conversions (tested without a process)
# ---------------------------------------------------------------------------


def fix_syscall_restart(regs: ThreadRegs) -> ThreadRegs:
    """Registers as they must be restored for a thread stopped in a syscall.

    Same rule as the kernel's restart logic: -ERESTARTSYS/NOINTR/NOHAND
    re-execute the call (ax = orig_ax, ip -= 2); -ERESTART_RESTARTBLOCK
    becomes -EINTR (the restart block does not survive a restore).
    """
    if regs.orig_rax >> 63:
        return regs
    ax = regs.rax & 0xFFFF_FFFF
    err = -(ax - (1 << 32)) if ax >> 31 else None
    if err in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
        return _replace_regs(regs, rax=regs.orig_rax, rip=regs.rip - 2)
    if err == ERESTART_RESTARTBLOCK:
        return _replace_regs(regs, rax=(-EINTR) & 0xFFFF_FFFF_FFFF_FFFF)
    return regs


def _replace_regs(regs: ThreadRegs, **changes: int) -> ThreadRegs:
    import dataclasses

    return dataclasses.replace(regs, **changes)


def gpregs_entry(regs: ThreadRegs) -> dict[str, int]:
    return {
        "r15": regs.r15, "r14": regs.r14, "r13": regs.r13, "r12": regs.r12, "bp": regs.rbp,
        "bx": regs.rbx, "r11": regs.r11, "r10": regs.r10, "r9": regs.r9, "r8": regs.r8,
        "ax": regs.rax, "cx": regs.rcx, "dx": regs.rdx, "si": regs.rsi, "di": regs.rdi,
        "orig_ax": regs.orig_rax, "ip": regs.rip, "cs": regs.cs, "flags": regs.eflags,
        "sp": regs.rsp, "ss": regs.ss, "fs_base": regs.fs_base, "gs_base": regs.gs_base,
        "ds": regs.ds, "es": regs.es, "fs": regs.fs, "gs": regs.gs,
    }


def _u32s(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def _u64s(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def fpregs_fields(xs: Xsave) -> dict[str, Any]:
    """user_x86_fpregs_entry fields from a raw NT_X86_XSTATE buffer."""
    d = xs.data
    if len(d) < 576:
        raise CheckpointError(f"xsave area of {len(d)} bytes is shorter than the 576-byte legacy+header part")
    cwd, swd, twd, fop, rip, rdp, mxcsr, mxcsr_mask = struct.unpack_from("<HHHHQQII", d, 0)
    out: dict[str, Any] = {
        "cwd": cwd, "swd": swd, "twd": twd, "fop": fop, "rip": rip, "rdp": rdp,
        "mxcsr": mxcsr, "mxcsr_mask": mxcsr_mask,
        "st_space": _u32s(d[32:160]), "xmm_space": _u32s(d[160:416]),
    }
    (xfeatures,) = struct.unpack_from("<Q", d, 464)  # XCR0, where ptrace puts it in sw_reserved
    (xstate_bv,) = struct.unpack_from("<Q", d, 512)
    xsave: dict[str, Any] = {"xstate_bv": xstate_bv}
    names = {2: ("ymmh_space", _u32s), 3: ("bndreg_state", _u64s), 4: ("bndcsr_state", _u64s),
             5: ("opmask_reg", _u64s), 6: ("zmm_upper", _u64s), 7: ("hi16_zmm", _u64s), 9: ("pkru", _u32s)}
    for comp, off, size in xs.component_offsets:
        if comp in names and xfeatures & (1 << comp) and off + size <= len(d):
            fname, conv = names[comp]
            xsave[fname] = conv(d[off : off + size])
    out["xsave"] = xsave
    return out


def vma_status(vma: Vma) -> int:
    """CRIU's VMA_AREA_* status bits for one mapping."""
    if vma.kind is VmaKind.VSYSCALL:
        return VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE
    st = VMA_AREA_REGULAR
    if vma.kind is VmaKind.HEAP:
        st |= VMA_AREA_HEAP
    if vma.kind is VmaKind.VDSO:
        st |= VMA_AREA_VDSO
    if vma.kind is VmaKind.VVAR:
        st |= VMA_AREA_VVAR
    if vma.kind is VmaKind.FILE:
        st |= VMA_FILE_SHARED if vma.flags & MAP_SHARED else VMA_FILE_PRIVATE
    elif vma.flags & MAP_SHARED:
        st |= VMA_ANON_SHARED
    else:
        st |= VMA_ANON_PRIVATE
    return st


def merge_vvar(vmas: Sequence[Vma]) -> list[Vma]:
    """Merge adjacent [vvar] and [vvar_vclock] into one VVAR area (as CRIU does)."""
    import dataclasses

    out: list[Vma] = []
    for v in vmas:
        if out and v.kind is VmaKind.VVAR and out[-1].kind is VmaKind.VVAR and out[-1].end == v.start:
            out[-1] = dataclasses.replace(out[-1], end=v.end)
        else:
            out.append(v)
    return out


def page_flags(vma: Vma) -> int:
    lazy = vma.kind in (VmaKind.ANON, VmaKind.HEAP, VmaKind.STACK) and not vma.flags & MAP_SHARED
    return PE_PRESENT | (PE_LAZY if lazy else 0)


def merge_runs(runs: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge address-ordered (addr, pages, flags) runs that touch and share flags."""
    out: list[tuple[int, int, int]] = []
    for addr, n, fl in runs:
        if out and out[-1][2] == fl and out[-1][0] + out[-1][1] * PAGE_SIZE == addr:
            out[-1] = (out[-1][0], out[-1][1] + n, fl)
        else:
            out.append((addr, n, fl))
    return out


def normalize_page_set(runs: Iterable[tuple[int, int]], what: str) -> list[tuple[int, int]]:
    """Sorted, merged (address, pages) runs; refuses unaligned, empty or negative runs."""
    out: list[tuple[int, int]] = []
    for addr, n in sorted(runs):
        if addr % PAGE_SIZE or n <= 0 or addr < 0:
            raise CheckpointError(f"{what}: run 0x{addr:x}+{n} pages is not page aligned or is empty "
                                  f"(expected a page-aligned address and a positive page count)")
        if out and out[-1][0] + out[-1][1] * PAGE_SIZE >= addr:
            end = max(out[-1][0] + out[-1][1] * PAGE_SIZE, addr + n * PAGE_SIZE)
            out[-1] = (out[-1][0], (end - out[-1][0]) // PAGE_SIZE)
        else:
            out.append((addr, n))
    return out


def _cut(runs: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """(address, pages) runs without the pages in [start, end)."""
    out: list[tuple[int, int]] = []
    for a, n in runs:
        e = a + n * PAGE_SIZE
        if e <= start or a >= end:
            out.append((a, n))
            continue
        if a < start:
            out.append((a, (start - a) // PAGE_SIZE))
        if e > end:
            out.append((end, (e - end) // PAGE_SIZE))
    return out


def split_parent(runs: Sequence[tuple[int, int, int]], skip: Sequence[tuple[int, int]]
                 ) -> list[tuple[int, int, int]]:
    """Cut address-ordered (addr, pages, flags) runs by the normalized *skip* runs.

    Pages inside *skip* become ``PE_PARENT`` runs (CRIU's flag for pages an
    incremental dump leaves in the parent image set: recorded, not dumped);
    the others keep their flags. A run's ``PE_LAZY``/``PE_PRESENT`` bits are
    dropped on its parent pieces, as CRIU writes parent holes. Returns merged
    runs in address order.
    """
    out: list[tuple[int, int, int]] = []
    k = 0
    for addr, n, fl in runs:
        end = addr + n * PAGE_SIZE
        a = addr
        while a < end:
            while k < len(skip) and skip[k][0] + skip[k][1] * PAGE_SIZE <= a:
                k += 1
            if k < len(skip) and skip[k][0] <= a:
                stop = min(end, skip[k][0] + skip[k][1] * PAGE_SIZE)
                out.append((a, (stop - a) // PAGE_SIZE, PE_PARENT))
            else:
                stop = min(end, skip[k][0]) if k < len(skip) else end
                out.append((a, (stop - a) // PAGE_SIZE, fl))
            a = stop
    return merge_runs(out)


DELETED = " (deleted)"
#: largest unlinked file whose contents are dumped (CRIU's default --ghost-limit)
GHOST_LIMIT = 1 << 20


def _undeleted(path: str) -> str:
    return path[: -len(DELETED)] if path.endswith(DELETED) else path


def _stat(path: str, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        raise CheckpointError(f"cannot stat {what} ({path}): {err.strerror}") from err


def pack_cc(cc: Sequence[int]) -> list[int]:
    """termios c_cc as CRIU stores it: the 19 raw bytes packed little-endian into
    u32 words (CRIU memcpy()s between u8[19] and its u32 field), 19 words."""
    raw = bytes(cc) + b"\0" * (-len(cc) % 4)
    words = list(struct.unpack(f"<{len(raw) // 4}I", raw))
    return words + [0] * (len(cc) - len(words))


def _cap_pair(v: int) -> list[int]:
    return [v & 0xFFFF_FFFF, (v >> 32) & 0xFFFF_FFFF]


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------


class _Tree:
    """Seized threads of the tree; releases them on request."""

    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.seized: dict[int, list[int]] = {}  # pid -> tids
        self.stopped: set[int] = set()
        self.gone: set[int] = set()  # threads that exited while we were stopping them

    def seize_process(self, pid: int) -> None:
        tids = self.seized.setdefault(pid, [])
        while True:
            new = [t for t in self.p.list_threads(pid) if t not in tids and t not in self.gone]
            if not new:
                break
            for t in new:
                try:
                    self.p.seize(t)
                except PlatformError as err:
                    if err.errno == errno.ESRCH and t != pid:
                        self.gone.add(t)  # the thread exited meanwhile
                        continue
                    raise
                tids.append(t)
        for t in list(tids):
            if t not in self.stopped:
                try:
                    self.p.interrupt(t)
                except PlatformError as err:
                    if err.errno == errno.ESRCH and t != pid:
                        tids.remove(t)  # the thread exited before it stopped
                        self.gone.add(t)
                        continue
                    raise
                self.stopped.add(t)
        # threads created between listing and stopping
        late = [t for t in self.p.list_threads(pid) if t not in tids and t not in self.gone]
        if late:
            self.seize_process(pid)

    def release_all(self) -> None:
        for pid, tids in self.seized.items():
            for t in tids:
                try:
                    self.p.release(t)
                except PlatformError as err:
                    if err.errno != errno.ESRCH:  # a thread that is gone needs no release
                        log.warning("cannot release tid %d of pid %d: %s", t, pid, err)

    def kill_all(self) -> None:
        for pid in self.seized:
            self.p.kill(pid, signal.SIGKILL)
        for pid, tids in self.seized.items():
            # a traced group leader reports its death only after the tracer
            # has reaped every other thread: leader last
            for t in sorted(tids, key=lambda t: t == pid):
                try:
                    os.waitpid(t, 0x40000000)  # __WALL: collect the tracee's exit
                except ChildProcessError:
                    pass


class Dumper:
    """One dump of one tree into one directory."""

    def __init__(self, platform: Platform, images_dir: Path,
                 skip_pages: dict[int, list[tuple[int, int]]] | None = None) -> None:
        self.skip_pages: dict[int, list[tuple[int, int]]] = skip_pages or {}
        self.parent_pages = 0
        self.p = platform
        #: the platform reads clear-tid addresses (else 0 is recorded); set by dump()
        self.thread_extras = True
        self.out = _Images(images_dir)
        self.ids = _Ids()
        self.files: list[Any] = []  # file_entry messages
        self.pipe_data: dict[int, PipeData] = {}
        self.tty_infos: list[Any] = []
        self.seccomp_filters: list[Any] = []
        self.ghosts: list[tuple[Any, bytes, Any]] = []  # (ghost_file_entry, contents, remap entry)
        self.copying: Any = None  # the background page-copy thread
        self.switch_interval: float | None = None  # the interpreter's, while we lower it
        self.copy_errors: list[BaseException] = []
        self.seccomp_chains: dict[tuple[bytes, ...], int] = {}
        self.tty_ids: dict[int, int] = {}  # rdev -> tty_info id
        self.cg_sets: dict[tuple[CgroupMembership, ...], int] = {}
        self.pages_id = 0
        self.total_pages = 0
        self.threads = 0
        self.feats = platform.features()
        self.vids: dict[int, int] = {}  # global pid/tid -> id in the tree's pid namespace

    def v(self, pid: int) -> int:
        return self.vids.get(pid, pid)

    def cg_set_of(self, pid: int) -> int:
        """cgroup set id of *pid*: 1 is the dumper's own membership (as in CRIU)."""
        if not self.cg_sets:
            self.cg_sets[tuple(self.p.cgroups(os.getpid()))] = 1
        key = tuple(self.p.cgroups(pid))
        if key not in self.cg_sets:
            self.cg_sets[key] = len(self.cg_sets) + 1
        return self.cg_sets[key]

    def dump_zombie(self, pid: int, info: ProcessInfo) -> None:
        """A zombie is only its pstree entry and a core with its exit code (CRIU's shape)."""
        core_pb = _pb("core_pb2")
        c = core_pb.core_entry()
        c.mtype = core_pb.core_entry.X86_64
        tc = c.tc
        tc.task_state = TASK_DEAD
        tc.exit_code = info.exit_code
        tc.personality = 0
        tc.flags = 0
        tc.blk_sigset = 0
        tc.comm = info.comm
        self.out.write(f"core-{self.v(pid)}.img", [c])

    # -- helpers ---------------------------------------------------------
    def _fown(self) -> Any:
        fown = _pb("fown_pb2").fown_entry()
        fown.uid = fown.euid = fown.signum = fown.pid_type = fown.pid = 0
        return fown

    def _reg_file(self, name: str, flags: int, pos: int, mode: int, size: int | None,
                  key: tuple[Any, ...] | None = None, elf: str | None = None) -> int:
        if key is not None and key in self.ids.files_by_key:
            return self.ids.files_by_key[key]
        fd_pb = _pb("fdinfo_pb2")
        fid = self.ids.file_id()
        fe = fd_pb.file_entry()
        fe.type = fd_pb.REG
        fe.id = fid
        fe.reg.id = fid
        fe.reg.flags = flags
        fe.reg.pos = pos
        fe.reg.fown.CopyFrom(self._fown())
        fe.reg.name = name
        if size is not None:
            fe.reg.size = size
        fe.reg.mode = mode
        if elf is not None:
            bid = elf_build_id(elf)
            if bid:
                fe.reg.build_id.extend(bid)
        self.files.append(fe)
        if key is not None:
            self.ids.files_by_key[key] = fid
        return fid

    # -- per process -----------------------------------------------------
    def dump_process(self, pid: int, info: ProcessInfo, tids: Sequence[int], own_ns: NamespaceIds) -> None:
        if info.state in ("Z", "X"):
            raise CheckpointError(f"pid {pid} is a zombie (state {info.state}); cannot dump it")
        vmas = merge_vvar(self.p.read_maps(pid))
        self._check_vmas(pid, vmas)
        mm = self.p.mm_info(pid)
        vma_file_ids: dict[int, int] = {}
        exe_id = self._mapped_file(mm.exe, mm.exe_open_path or mm.exe, 0)
        for v in vmas:
            if v.kind is VmaKind.FILE:
                rw = bool(v.flags & MAP_SHARED and v.prot & PROT_WRITE)
                vma_file_ids[v.start] = self._mapped_file(v.path, v.open_path or v.path, O_RDWR if rw else 0)
        # pages are copied in the background while descriptors and threads are read
        self._write_mm_and_pages(pid, mm, vmas, vma_file_ids, exe_id)
        files_id = self.ids.next_kobj
        fdinfos = self._dump_fds(pid)
        fs = self.p.fs_info(pid)
        cwd_id = self._reg_file(fs.cwd, 0, 0, _stat(fs.cwd_open_path or fs.cwd, "cwd").st_mode, None)
        root_id = self._reg_file(fs.root, 0, 0, _stat(fs.root_open_path or fs.root, "root").st_mode, None)
        self.out.write(f"fdinfo-{files_id}.img", fdinfos)
        fs_e = _pb("fs_pb2").fs_entry()
        fs_e.cwd_id, fs_e.root_id, fs_e.umask = cwd_id, root_id, fs.umask
        self.out.write(f"fs-{self.v(pid)}.img", [fs_e])
        ids_e = self._kobj_ids(pid, files_id)
        self.out.write(f"ids-{self.v(pid)}.img", [ids_e])
        self._write_cores(pid, info, tids)

    def _fill_ns_ids(self, msg: Any, ns: Any) -> None:
        """Set a task_kobj_ids_entry's *_ns_id fields from the namespace inodes in *ns*."""
        for kind in ("pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"):
            setattr(msg, f"{kind}_ns_id", self.ids.ns_id(kind, getattr(ns, kind)))

    def _kobj_ids(self, pid: int, kobj: int) -> Any:
        e = _pb("core_pb2").task_kobj_ids_entry()
        e.vm_id = e.files_id = e.fs_id = e.sighand_id = kobj
        self.ids.next_kobj += 1
        ns = self.p.namespaces(pid)
        self._fill_ns_ids(e, ns)
        return e

    def _mapped_file(self, path: str, open_path: str, flags: int) -> int:
        """files.img id of a mapped file (the exe shares it with its mappings)."""
        st = _stat(open_path, path)
        key = ("map", st.st_dev, st.st_ino, flags)
        if key in self.ids.files_by_key:
            return self.ids.files_by_key[key]
        fid = self._reg_file(_undeleted(path), flags, 0, st.st_mode, st.st_size, key=key, elf=open_path)
        if path.endswith(DELETED):
            self._ghost(fid, open_path, st)
        return fid

    def _ghost(self, fid: int, open_path: str, st: os.stat_result) -> None:
        """Record an unlinked file's contents (CRIU's remap-fpath + ghost-file images)."""
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"unlinked {open_path} is not a regular file (mode 0o{st.st_mode:o})")
        if st.st_size > GHOST_LIMIT:
            raise CheckpointError(f"unlinked file behind {open_path} has {st.st_size} bytes; ghost files above "
                                  f"{GHOST_LIMIT} bytes are not dumped (as CRIU's --ghost-limit)")
        try:
            with open(open_path, "rb") as f:
                data = f.read(GHOST_LIMIT + 1)
        except OSError as err:
            raise CheckpointError(f"cannot read unlinked file behind {open_path}: {err.strerror}") from err
        gid = len(self.ghosts) + 1
        g = _pb("ghost_file_pb2").ghost_file_entry()
        g.uid, g.gid, g.mode = st.st_uid, st.st_gid, st.st_mode
        g.dev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)  # kernel dev_t, as CRIU stores it
        g.ino = st.st_ino
        g.atim.tv_sec, g.atim.tv_usec = st.st_atime_ns // 10**9, st.st_atime_ns % 10**9 // 1000
        g.mtim.tv_sec, g.mtim.tv_usec = st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9 // 1000
        r = _pb("remap_file_path_pb2").remap_file_path_entry()
        r.orig_id, r.remap_id, r.remap_type = fid, gid, _pb("remap_file_path_pb2").GHOST
        self.ghosts.append((g, data, r))

    def _check_vmas(self, pid: int, vmas: Sequence[Vma]) -> None:
        for v in vmas:
            if v.kind in (VmaKind.SHMEM, VmaKind.OTHER):
                raise CheckpointError(
                    f"pid {pid}: mapping 0x{v.start:x}-0x{v.end:x} {v.path or '(anonymous)'} is "
                    f"{v.kind.value} memory, which this dumper cannot record yet")
            if v.kind is VmaKind.ANON and v.flags & MAP_SHARED:
                raise CheckpointError(f"pid {pid}: shared anonymous mapping 0x{v.start:x}-0x{v.end:x} "
                                      "is not supported")

    def _dump_fds(self, pid: int) -> list[Any]:
        fd_pb = _pb("fdinfo_pb2")
        out = []
        fds = self.p.list_fds(pid)
        for f in fds:
            fid = self._file_for_fd(pid, f)
            e = fd_pb.fdinfo_entry()
            e.id = fid
            e.flags = 1 if f.cloexec else 0
            e.type = self._fd_type(f)
            e.fd = f.fd
            out.append(e)
        return out

    def _fd_type(self, f: FdInfo) -> int:
        fd_pb = _pb("fdinfo_pb2")
        return int({
            FdKind.REG: fd_pb.REG, FdKind.PIPE: fd_pb.PIPE, FdKind.FIFO: fd_pb.FIFO,
            FdKind.TTY: fd_pb.TTY, FdKind.UNIX_SOCKET: fd_pb.UNIXSK, FdKind.INET_SOCKET: fd_pb.INETSK,
            FdKind.EVENTFD: fd_pb.EVENTFD, FdKind.MEMFD: fd_pb.MEMFD,
        }[f.kind])

    def _shared_with(self, pid: int, f: FdInfo) -> int | None:
        """The file id of an already dumped descriptor sharing f's open file."""
        for (kind, *rest), fid in self.ids.files_by_key.items():
            if kind != "fd":
                continue
            opid, ofd, oino, odev = rest
            if (f.ino or f.dev) and oino == f.ino and odev == f.dev and self.p.same_open_file(opid, ofd, pid, f.fd):
                return fid
        return None

    def _file_for_fd(self, pid: int, f: FdInfo) -> int:
        fd_pb = _pb("fdinfo_pb2")
        if f.kind not in (FdKind.REG, FdKind.PIPE, FdKind.FIFO, FdKind.TTY, FdKind.UNIX_SOCKET,
                          FdKind.INET_SOCKET, FdKind.EVENTFD, FdKind.MEMFD):
            raise CheckpointError(f"pid {pid}: fd {f.fd} is a {f.kind.value} ({f.path}), which this "
                                  "dumper cannot record")
        if f.kind is FdKind.MEMFD or (f.kind is FdKind.TTY and f.tty is None):
            raise CheckpointError(f"pid {pid}: fd {f.fd} is a {f.kind.value} ({f.path}); dumping memfds and "
                                  "terminals other than pseudo-terminal slaves is not implemented")
        shared = self._shared_with(pid, f)
        if shared is not None:
            return shared
        fid = self.ids.file_id()
        fe = fd_pb.file_entry()
        fe.id = fid
        fe.type = self._fd_type(f)
        if f.kind is FdKind.REG:
            r = fe.reg
            r.id, r.flags, r.pos, r.name, r.mode = fid, f.flags, f.pos, _undeleted(f.path), f.mode
            r.fown.CopyFrom(self._fown())
            ghost = f.path.endswith(DELETED) and stat.S_ISREG(f.mode)
            if stat.S_ISREG(f.mode) and (f.flags & 0o3 == 0 or ghost):
                r.size = f.size  # CRIU records the size of read-only and of unlinked regular files
            if ghost:
                self._ghost(fid, f.open_path or f.path, _stat(f.open_path or f.path, f.path))
            elif f.path.endswith(DELETED):
                raise CheckpointError(f"pid {pid}: fd {f.fd} is an unlinked {f.path}, not a regular file")
        elif f.kind in (FdKind.PIPE, FdKind.FIFO):
            if f.kind is FdKind.FIFO:
                raise CheckpointError(f"pid {pid}: fd {f.fd} is a named FIFO ({f.path}); not supported")
            fe.pipe.id, fe.pipe.pipe_id, fe.pipe.flags = fid, f.pipe_id, f.flags
            fe.pipe.fown.CopyFrom(self._fown())
            if f.pipe_id not in self.pipe_data:
                self.pipe_data[f.pipe_id] = self.p.read_pipe_data(pid, f.fd, 1 << 20)
        elif f.kind is FdKind.TTY:
            assert f.tty is not None
            regf = self._reg_file(f.path, f.flags, 0, f.mode, None)
            fe.tty.id, fe.tty.tty_info_id, fe.tty.flags = fid, self._tty_info_id(f.tty), f.flags
            fe.tty.fown.CopyFrom(self._fown())
            fe.tty.regf_id = regf
        elif f.kind is FdKind.EVENTFD:
            fe.efd.id, fe.efd.flags = fid, f.flags
            fe.efd.fown.CopyFrom(self._fown())
            fe.efd.counter = int(dict(f.extra).get("eventfd-count", "0"), 16)
        elif f.kind is FdKind.UNIX_SOCKET:
            self._unix_sk(fe, fid, pid, f)
        elif f.kind is FdKind.INET_SOCKET:
            self._inet_sk(fe, fid, pid, f)
        self.files.append(fe)
        self.ids.files_by_key[("fd", pid, f.fd, f.ino, f.dev)] = fid
        return fid

    def _seccomp_chain(self, filters: Sequence[bytes]) -> int:
        """Add a thread's filter chain (first installed first) to seccomp.img in CRIU's
        layout: most recent filter first, each next entry linked to the one
        before by ``prev``; the thread points at the last (first installed) one."""
        key = tuple(filters)
        if key in self.seccomp_chains:
            return self.seccomp_chains[key]
        sc_pb = _pb("seccomp_pb2")
        for i, prog in enumerate(reversed(filters)):
            f = sc_pb.seccomp_filter()
            f.filter = prog
            if i:
                f.prev = len(self.seccomp_filters) - 1
            f.flags = 1  # SECCOMP_FILTER_FLAG_TSYNC, as CRIU records it
            self.seccomp_filters.append(f)
        self.seccomp_chains[key] = len(self.seccomp_filters) - 1
        return len(self.seccomp_filters) - 1

    def _tty_info_id(self, t: TtyInfo) -> int:
        """tty-info.img entry of one terminal (one per device), CRIU's PTY shape."""
        if t.rdev in self.tty_ids:
            return self.tty_ids[t.rdev]
        tty_pb = _pb("tty_pb2")
        e = tty_pb.tty_info_entry()
        e.id = len(self.tty_infos)
        e.type = tty_pb.PTY
        e.locked, e.exclusive, e.packet_mode = False, t.exclusive, False
        e.sid, e.pgrp, e.rdev = t.sid, t.pgrp, t.rdev
        for dst, src in ((e.termios, t.termios), (e.termios_locked, t.termios_locked)):
            dst.c_iflag, dst.c_oflag, dst.c_cflag, dst.c_lflag = src.iflag, src.oflag, src.cflag, src.lflag
            dst.c_line, dst.c_ispeed, dst.c_ospeed = src.line, 0, 0
            dst.c_cc.extend(pack_cc(src.cc))
        e.winsize.ws_row, e.winsize.ws_col, e.winsize.ws_xpixel, e.winsize.ws_ypixel = t.winsize
        e.pty.index = t.index
        e.dev, e.uid, e.gid = t.dev, t.uid, t.gid
        self.tty_infos.append(e)
        self.tty_ids[t.rdev] = e.id
        return int(e.id)

    def _sk_opts(self) -> Any:
        o = _pb("sk_opts_pb2").sk_opts_entry()
        o.so_sndbuf = 212992
        o.so_rcvbuf = 212992
        o.so_snd_tmo_sec = o.so_snd_tmo_usec = o.so_rcv_tmo_sec = o.so_rcv_tmo_usec = 0
        return o

    def _unix_sk(self, fe: Any, fid: int, pid: int, f: FdInfo) -> None:
        assert f.socket is not None
        u = fe.usk
        u.id, u.ino, u.type, u.state = fid, f.socket.ino, f.socket.type, f.socket.state
        u.flags, u.uflags, u.backlog, u.peer = f.flags, 0, 0, f.socket.peer_ino
        u.fown.CopyFrom(self._fown())
        u.opts.CopyFrom(self._sk_opts())
        u.name = f.socket.local.encode()

    def _inet_sk(self, fe: Any, fid: int, pid: int, f: FdInfo) -> None:
        assert f.socket is not None
        s = fe.isk
        s.id, s.ino, s.family, s.type, s.proto = fid, f.socket.ino, f.socket.family, f.socket.type, f.socket.protocol
        s.state, s.flags, s.backlog = f.socket.state, f.flags, 0
        laddr, _, lport = f.socket.local.rpartition(":")
        raddr, _, rport = f.socket.peer.rpartition(":")
        s.src_port, s.dst_port = int(lport or 0), int(rport or 0)
        s.src_addr.extend(_addr_words(laddr))
        s.dst_addr.extend(_addr_words(raddr))
        s.fown.CopyFrom(self._fown())
        s.opts.CopyFrom(self._sk_opts())

    # -- memory ------------------------------------------------------------
    def _write_mm_and_pages(self, pid: int, mm: Any, vmas: Sequence[Vma], vma_file_ids: dict[int, int],
                            exe_id: int) -> None:
        mm_pb = _pb("mm_pb2")
        vma_pb = _pb("vma_pb2")
        e = mm_pb.mm_entry()
        e.mm_start_code, e.mm_end_code = mm.start_code, mm.end_code
        e.mm_start_data, e.mm_end_data = mm.start_data, mm.end_data
        e.mm_start_stack, e.mm_start_brk, e.mm_brk = mm.start_stack, mm.start_brk, mm.brk
        e.mm_arg_start, e.mm_arg_end = mm.arg_start, mm.arg_end
        e.mm_env_start, e.mm_env_end = mm.env_start, mm.env_end
        e.exe_file_id = exe_id
        auxv = list(mm.auxv)
        if len(auxv) >= 2 and auxv[-2] == 0:
            auxv = auxv[:-2]
        e.mm_saved_auxv.extend(auxv)
        runs: list[tuple[int, int, int]] = []
        for v in vmas:
            ve = vma_pb.vma_entry()
            ve.start, ve.end = v.start, v.end
            ve.pgoff = v.offset if v.kind is VmaKind.FILE else 0
            ve.shmid = vma_file_ids.get(v.start, 0)
            ve.prot, ve.flags, ve.status, ve.fd = v.prot, v.flags, vma_status(v), -1
            if v.madvise:
                ve.madv = v.madvise
            if v.kind is VmaKind.FILE:
                ve.fdflags = O_RDWR if (v.flags & MAP_SHARED and v.prot & PROT_WRITE) else 0
            e.vmas.append(ve)
            fl = page_flags(v)
            if v.kind is VmaKind.VDSO:
                # CRIU's should_dump_page: every [vdso] page is dumped, present
                # or not (a forked child has not faulted them in); restore
                # parses the dumped ELF to build its vDSO proxy
                runs.append((v.start, (v.end - v.start) // PAGE_SIZE, fl))
                continue
            for addr, n in self.p.present_runs(pid, v):
                runs.append((addr, n, fl))
        e.dumpable = mm.dumpable
        e.thp_disabled = mm.thp_disabled
        self.out.write(f"mm-{self.v(pid)}.img", [e])
        merged = merge_runs(runs)
        skip = self.skip_pages.get(pid)
        for v in vmas:  # [vdso] pages are always dumped (restore parses them)
            if skip and v.kind is VmaKind.VDSO:
                skip = _cut(skip, v.start, v.end)
        if skip:
            merged = split_parent(merged, skip)
            self.parent_pages += sum(n for _, n, fl in merged if fl & PE_PARENT)
        self._write_pages(pid, merged)

    def _write_pages(self, pid: int, runs: list[tuple[int, int, int]]) -> None:
        pm_pb = _pb("pagemap_pb2")
        self.pages_id += 1
        head = pm_pb.pagemap_head()
        head.pages_id = self.pages_id
        entries: list[Any] = [head]
        for addr, n, fl in runs:
            pe = pm_pb.pagemap_entry()
            pe.vaddr, pe.nr_pages, pe.flags = addr, n, fl
            entries.append(pe)
        runs = [r for r in runs if r[2] & PE_PRESENT]  # PE_PARENT runs have no data here
        total = sum(n for _, n, _ in runs) * PAGE_SIZE
        path = self.out.raw_path(f"pages-{self.pages_id}.img")
        self.finish_copy()  # one tree member's pages at a time
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        def job() -> None:
            try:
                self._read_runs_into(pid, fd, runs, total)
            except BaseException as err:  # re-raised by finish_copy in the dumping thread
                self.copy_errors.append(err)
            finally:
                os.close(fd)

        import threading

        if self.switch_interval is None:
            # the readers need the GIL for a moment per chunk: do not let the
            # dumping thread's Python work hold it for the default 5 ms
            self.switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(0.0002)
        self.copying = threading.Thread(target=job, name=f"pages-{self.pages_id}")
        self.copying.start()
        self.out.write(f"pagemap-{self.v(pid)}.img", entries)
        self.total_pages += total // PAGE_SIZE

    def finish_copy(self, raise_errors: bool = True) -> None:
        """Wait for the background page copy; re-raise its failure."""
        if self.copying is not None:
            self.copying.join()
            self.copying = None
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
            self.switch_interval = None
        if self.copy_errors and raise_errors:
            raise self.copy_errors[0]

    def _read_runs_into(self, pid: int, fd: int, runs: list[tuple[int, int, int]], total: int) -> None:
        """Copy every run into the pages file at its offset.

        The file is cut into JOB-byte pieces (in file order) that READERS
        threads take from one shared queue, so a reader the scheduler
        delays on a loaded machine does not leave the other idle at the
        end; each piece is copied with vectored reads of up to CHUNK bytes
        into a small (cache-resident) buffer and one pwrite per read. Full
        page writes let the page cache skip zeroing; the copy releases the GIL.
        """
        if total == 0:
            return
        readers = READERS if total >= 8 << 20 else 1
        jobs: list[list[tuple[int, int, int]]] = [[]]
        fo = 0
        for a, n, _ in runs:
            ln = n * PAGE_SIZE
            while ln:
                room = JOB - fo % JOB
                take = min(ln, room)
                jobs[-1].append((a, take, fo))
                a, ln, fo = a + take, ln - take, fo + take
                if fo % JOB == 0 and fo < total:
                    jobs.append([])
        queue = iter([j for j in jobs if j])  # next() on a list iterator is atomic under the GIL
        errors: list[BaseException] = []

        def work() -> None:
            try:
                self._copy_share(pid, fd, (seg for job in queue if not errors for seg in job))
            except BaseException as err:  # re-raised in the calling thread
                errors.append(err)

        import threading

        threads = [threading.Thread(target=work) for _ in range(readers - 1)]
        for t in threads:
            t.start()
        work()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _copy_share(self, pid: int, fd: int, part: Iterable[tuple[int, int, int]]) -> None:
        """Copy (address, length, file offset) segments, CHUNK bytes per read+pwrite, one buffer."""
        buf = mmap.mmap(-1, CHUNK)
        mv = memoryview(buf)
        iov: list[tuple[int, int]] = []
        filled = 0
        start = 0

        def flush() -> None:
            with mv[:filled] as view:
                got = self.p.read_memory_into(pid, iov, view)
                if got != filled:
                    raise CheckpointError(f"pid {pid}: read {got} of {filled} bytes of memory")
                done = 0
                while done < filled:
                    with view[done:] as rest:
                        done += os.pwrite(fd, rest, start + done)

        try:
            for a, ln, fo in part:
                while ln:
                    if filled == CHUNK or (iov and fo != start + filled):
                        flush()
                        iov, filled = [], 0
                    if not iov:
                        start = fo
                    take = min(ln, CHUNK - filled)
                    iov.append((a, take))
                    filled += take
                    a, ln, fo = a + take, ln - take, fo + take
            if filled:
                flush()
        finally:
            mv.release()
            buf.close()

    # -- threads -------------------------------------------------------------
    def _write_cores(self, pid: int, info: ProcessInfo, tids: Sequence[int]) -> None:
        core_pb = _pb("core_pb2")
        leader = pid
        sigacts = self.p.sigactions(pid, leader)
        extras = self.p.task_extras(pid, leader)
        for tid in tids:
            ti = self.p.thread_info(pid, tid)
            if ti.sigpending and not ti.pending_siginfo:
                raise CheckpointError(f"pid {pid} tid {tid}: pending signals 0x{ti.sigpending:x} cannot be read")
            if tid == leader and info.shared_pending and not ti.shared_siginfo:
                raise CheckpointError(f"pid {pid}: process-wide pending signals 0x{info.shared_pending:x} "
                                      "cannot be read")
            if ti.shadow_stack:
                raise CheckpointError(f"pid {pid} tid {tid}: a CET shadow stack is enabled; not supported")
            if ti.seccomp_mode == 2 and not ti.seccomp_filters:
                raise CheckpointError(f"pid {pid} tid {tid}: seccomp filter mode but its filters cannot be read")
            regs = fix_syscall_restart(self.p.get_regs(tid))
            if regs.cs != 0x33:
                raise CheckpointError(f"pid {pid} tid {tid}: cs=0x{regs.cs:x}, only 64-bit tasks (0x33) are supported")
            c = core_pb.core_entry()
            c.mtype = core_pb.core_entry.X86_64
            t = c.thread_info
            t.clear_tid_addr = self.p.clear_tid_address(tid) if self.thread_extras else 0
            for k, v in gpregs_entry(regs).items():
                setattr(t.gpregs, k, v)
            t.gpregs.mode = _pb("core_x86_pb2").NATIVE
            xsave = self.p.get_xsave(tid)
            fp = fpregs_fields(xsave)
            xs = fp.pop("xsave")
            for k, v in fp.items():
                if isinstance(v, list):
                    getattr(t.fpregs, k).extend(v)
                else:
                    setattr(t.fpregs, k, v)
            t.fpregs.xsave.xstate_bv = xs.pop("xstate_bv")
            for k, v in xs.items():
                getattr(t.fpregs.xsave, k).extend(v)
            if xsave.cet_supported:
                t.fpregs.xsave.cet.cet = 0  # no shadow stack enabled (checked in thread_info)
                t.fpregs.xsave.cet.ssp = 0
            for n in (12, 13, 14):
                d = t.tls.add()
                d.entry_number, d.base_addr, d.limit = n, 0, 0
                d.seg_32bit = d.contents_h = d.contents_l = False
                d.read_exec_only, d.limit_in_pages, d.seg_not_present, d.usable = True, False, True, False
            th = c.thread_core
            head, length = self.p.robust_list(tid)
            th.futex_rla, th.futex_rla_len = head, length
            th.sched_nice, th.sched_policy = ti.sched_nice, ti.sched_policy
            sas = self.p.sigaltstack(tid)
            th.sas.ss_sp, th.sas.ss_size, th.sas.ss_flags = sas.ss_sp, sas.ss_size, sas.ss_flags
            th.signals_p.SetInParent()
            for raw in ti.pending_siginfo:
                th.signals_p.signals.add().siginfo = raw
            cr = info.creds
            ce = th.creds
            ce.uid, ce.gid, ce.euid, ce.egid = cr.uid, cr.gid, cr.euid, cr.egid
            ce.suid, ce.sgid, ce.fsuid, ce.fsgid = cr.suid, cr.sgid, cr.fsuid, cr.fsgid
            ce.cap_inh.extend(_cap_pair(cr.cap_inh))
            ce.cap_prm.extend(_cap_pair(cr.cap_prm))
            ce.cap_eff.extend(_cap_pair(cr.cap_eff))
            ce.cap_bnd.extend(_cap_pair(cr.cap_bnd))
            ce.secbits = extras.securebits
            ce.groups.extend(cr.groups)
            ce.cap_amb.extend(_cap_pair(cr.cap_amb))
            if cr.no_new_privs:
                ce.no_new_privs = 1
            th.comm = ti.comm
            rs = self.p.rseq(tid)
            if rs is not None:
                th.rseq_entry.rseq_abi_pointer = rs.abi_pointer
                th.rseq_entry.rseq_abi_size = rs.abi_size
                th.rseq_entry.signature = rs.signature
            th.cg_set = self.cg_set_of(pid)
            if ti.seccomp_mode:
                th.seccomp_mode = ti.seccomp_mode
            if ti.seccomp_mode == 2:
                th.seccomp_filter = self._seccomp_chain(ti.seccomp_filters)
            if tid == leader:
                tc = c.tc
                tc.task_state = TASK_STOPPED if info.state == "T" else TASK_ALIVE
                tc.exit_code = 0
                tc.personality = info.personality
                tc.flags = info.flags
                tc.blk_sigset = ti.sigblocked
                tc.comm = info.comm
                for name, it in zip(("real", "virt", "prof"), extras.itimers):
                    te = getattr(tc.timers, name)
                    te.isec, te.iusec, te.vsec, te.vusec = it.isec, it.iusec, it.vsec, it.vusec
                if len(extras.posix_timers) != info.posix_timers:
                    raise CheckpointError(f"pid {pid}: {info.posix_timers} POSIX timers, read "
                                          f"{len(extras.posix_timers)}")
                for pt in extras.posix_timers:
                    pe = tc.timers.posix.add()
                    pe.it_id, pe.clock_id, pe.si_signo = pt.it_id, pt.clock_id, pt.signo
                    pe.it_sigev_notify, pe.sival_ptr, pe.overrun = pt.sigev_notify, pt.sival_ptr, pt.overrun
                    pe.isec, pe.insec, pe.vsec, pe.vnsec = pt.isec, pt.insec, pt.vsec, pt.vnsec
                    if pt.sigev_notify & 4:  # SIGEV_THREAD_ID
                        pe.notify_thread_id = self.v(pt.notify_tid)
                for rl in info.rlimits:
                    r = tc.rlimits.rlimits.add()
                    r.cur, r.max = rl.cur, rl.max
                tc.signals_s.SetInParent()
                for raw in ti.shared_siginfo:
                    tc.signals_s.signals.add().siginfo = raw
                tc.loginuid = info.loginuid
                tc.oom_score_adj = info.oom_score_adj
                for sa in sigacts:
                    if sa.signo in (signal.SIGKILL, signal.SIGSTOP):
                        continue  # CRIU keeps 62 entries: no KILL/STOP
                    s = tc.sigactions.add()
                    s.sigaction, s.flags, s.restorer, s.mask = sa.handler, sa.flags, sa.restorer, sa.mask
                    s.compat_sigaction = False
                tc.child_subreaper = extras.child_subreaper
            else:
                th.blk_sigset = ti.sigblocked
            self.out.write(f"core-{self.v(tid)}.img", [c])
            self.threads += 1

    # -- shared images ------------------------------------------------------
    def write_shared(self, root_pid: int, pstree: list[Any], own_ns: NamespaceIds, target_ns: NamespaceIds) -> None:
        inv_pb = _pb("inventory_pb2")
        inv = inv_pb.inventory_entry()
        inv.img_version = 2
        inv.fdinfo_per_id = True
        r = inv.root_ids
        r.vm_id = r.files_id = r.fs_id = r.sighand_id = 1
        self._fill_ns_ids(r, own_ns)
        inv.ns_per_id = True
        inv.root_cg_set = 1
        inv.lsmtype = inv_pb.NO_LSM
        inv.network_lock_method = 0
        inv.plugins_entry.SetInParent()
        import uuid  # only here: importing it costs the CLI a few ms at start

        inv.dump_criu_run_id = str(uuid.uuid4())
        self.out.write("inventory.img", [inv])
        self.out.write("pstree.img", pstree)
        self.out.write("files.img", self.files)
        if self.pipe_data:
            pd_pb = _pb("pipe_data_pb2")
            entries, payloads = [], []
            for pipe_id, pd in self.pipe_data.items():
                e = pd_pb.pipe_data_entry()
                e.pipe_id, e.bytes, e.size = pipe_id, len(pd.data), pd.capacity
                entries.append(e)
                payloads.append(pd.data)
            self.out.write("pipes-data.img", entries, payloads)
        if self.ghosts:
            for g, data, r in self.ghosts:
                self.out.write(f"ghost-file-{r.remap_id}.img", [g], [data])
            self.out.write("remap-fpath.img", [r for _, _, r in self.ghosts])
        if self.tty_infos:
            self.out.write("tty-info.img", self.tty_infos)
        sc = _pb("seccomp_pb2").seccomp_entry()
        sc.seccomp_filters.extend(self.seccomp_filters)
        self.out.write("seccomp.img", [sc])
        clocks = self.p.clocks()
        tn = _pb("timens_pb2").timens_entry()
        tn.monotonic.tv_sec, tn.monotonic.tv_nsec = divmod(clocks.monotonic_ns, 10**9)
        tn.boottime.tv_sec, tn.boottime.tv_nsec = divmod(clocks.boottime_ns, 10**9)
        self.out.write("timens-0.img", [tn])
        if target_ns.uts != own_ns.uts:
            u = self.p.uts(root_pid)
            ue = _pb("utsns_pb2").utsns_entry()
            ue.nodename, ue.domainname = u.nodename, u.domainname
            self.out.write(f"utsns-{self.ids.ns_id('uts', target_ns.uts)}.img", [ue])
        if len(self.cg_sets) > 1:
            cg_pb = _pb("cgroup_pb2")
            ce = cg_pb.cgroup_entry()
            for members, set_id in sorted(self.cg_sets.items(), key=lambda kv: kv[1]):
                if set_id == 1:
                    continue  # the dumper's own set: CRIU does not write it either
                cs = ce.sets.add()
                cs.id = set_id
                for m in sorted(members, key=lambda m: m.controllers):
                    ctl = cs.ctls.add()
                    ctl.name = m.controllers
                    ctl.path = m.path
            self.out.write("cgroup.img", [ce])


def elf_build_id(path: str) -> list[int] | None:
    """The NT_GNU_BUILD_ID of an ELF64 little-endian file as u32 words (CRIU's build_id)."""
    desc = gnu_build_id(path)
    return None if desc is None else build_id_words(desc)


def _addr_words(addr: str) -> list[int]:
    import ipaddress

    if not addr:
        return []
    raw = ipaddress.ip_address(addr).packed
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def collect_tree(platform: Platform, pid: int, tree: bool) -> list[int]:
    """*pid* and (with *tree*) its descendants, parents before children (a snapshot, not frozen)."""
    pids = [pid]
    if tree:
        i = 0
        while i < len(pids):
            for c in platform.list_children(pids[i]):
                if c not in pids:
                    pids.append(c)
            i += 1
    return pids


def _gone_or_dead(platform: Platform, p: int) -> str | None:
    """"gone" if process *p* no longer exists, "dead" if it is a zombie, else None."""
    try:
        state = platform.process_info(p).state
    except PlatformError as err:
        if err.errno in (errno.ENOENT, errno.ESRCH):
            return "gone"
        raise
    return "dead" if state in ("Z", "X") else None


def seize_tree(platform: Platform, pid: int, tree: bool, seized: _Tree, zombies: set[int]) -> list[int]:
    """Stop *pid* and (with *tree*) its descendants top-down, like CRIU.

    A process's children are listed only once all its threads are stopped, so
    it can fork no more and cannot reap them: a child listed then is either
    seized or recorded as a zombie. Short-lived children of a still running
    parent (a shell's ``sleep``) that exit and are reaped before the parent
    stops are simply never seen. Returns the pids, parents before children.
    """
    pids = [pid]
    i = 0
    while i < len(pids):
        p = pids[i]
        state = _gone_or_dead(platform, p)
        if state == "gone" and p != pid:
            pids.pop(i)  # reaped (or auto-reaped) before we got to it
            continue
        if state == "gone":
            raise CheckpointError(f"pid {pid} does not exist")
        if state == "dead":
            zombies.add(p)  # cannot be seized; recorded as dead
        else:
            try:
                seized.seize_process(p)
            except PlatformError:
                after = _gone_or_dead(platform, p) if p != pid else None
                if after is None:
                    raise
                for t in seized.seized.pop(p, []):  # it exited while being stopped
                    try:
                        platform.release(t)
                    except PlatformError:
                        pass
                if after == "gone":
                    pids.pop(i)
                    continue
                zombies.add(p)
        if tree:
            for c in platform.list_children(p):
                if c not in pids:
                    pids.append(c)
        i += 1
    return pids


def dump(
    pid: int,
    images_dir: str | os.PathLike[str],
    *,
    leave_running: bool = False,
    tree: bool = False,
    platform: Platform | None = None,
    skip_pages: Mapping[int, Iterable[tuple[int, int]]] | None = None,
    parent_images: str | os.PathLike[str] | None = None,
) -> DumpResult:
    """Dump process *pid* (and with *tree* its subtree) into *images_dir*.

    Incremental (final) dump, both keyword-only and off by default:

    - *skip_pages* maps a host pid of the tree to (address, pages) runs whose
      current contents the destination already holds (sent earlier and not
      written since: the caller passes "sent minus dirty"). Pages the dump
      would write that lie in those runs are recorded in ``pagemap-PID.img``
      with CRIU's ``PE_PARENT`` flag and are neither read from the process
      nor written to ``pages-N.img``; every other page (dirty, never sent)
      is dumped as usual. Pages in a run that are no longer present are not
      recorded at all (they read as zero after restore, as in CRIU).
      ``[vdso]`` pages are always dumped. Pids not in the map dump fully.
    - *parent_images*, when given, is written as the ``parent`` symlink in
      *images_dir* (CRIU's ``--prev-images-dir``: relative paths are relative
      to *images_dir*), so that ``criu restore`` finds the PE_PARENT pages.
    """
    skip_map: dict[int, list[tuple[int, int]]] = {}
    for p, runs in (skip_pages or {}).items():
        skip_map[p] = normalize_page_set(runs, f"skip_pages[{p}]")
    if platform is None:
        from capture.platform import get_platform

        platform = get_platform()
    feats = platform.features()
    # (VECTORED_READ is a speed hint, not needed; without THREAD_EXTRAS no clear-tid address is recorded)
    for need in ((Feature.SEIZE, Feature.ATTACH), (Feature.GP_REGS,), (Feature.XSAVE,),
                 (Feature.FDS, Feature.FDS_BASIC), (Feature.SIGACTIONS,)):
        if not any(n in feats for n in need):
            raise CheckpointError(f"platform {platform.name} lacks feature {' or '.join(n.value for n in need)}, "
                                  f"needed to dump")
    # import what the dump needs before anything is stopped (imports hold the GIL
    # the page readers need, and they are not the tree's downtime)
    for mod in ("core_pb2", "core_x86_pb2", "mm_pb2", "vma_pb2", "pagemap_pb2", "pstree_pb2", "fdinfo_pb2",
                "fown_pb2", "fs_pb2", "inventory_pb2", "pipe_data_pb2", "seccomp_pb2", "timens_pb2"):
        _pb(mod)
    import capture.images  # noqa: F401
    import threading  # noqa: F401

    out_dir = Path(images_dir)
    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    seized = _Tree(platform)
    dumper = Dumper(platform, out_dir, skip_map)
    dumper.thread_extras = Feature.THREAD_EXTRAS in feats
    t_frozen = 0.0
    try:
        zombies: set[int] = set()
        pids = seize_tree(platform, pid, tree, seized, zombies)
        t_frozen = time.monotonic()
        own_ns = platform.namespaces(os.getpid())
        target_ns = platform.namespaces(pid)
        # namespace ids: the dumper's own first (CRIU numbers them this way)
        for kind in ("pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"):
            dumper.ids.ns_id(kind, getattr(own_ns, kind))
        infos = {p: platform.process_info(p) for p in pids}
        for p in pids:
            if p not in zombies and platform.namespaces(p).pid != target_ns.pid:
                raise CheckpointError(f"pid {p} is in a nested pid namespace below the one of pid {pid}; "
                                      "not supported")
            dumper.vids[p] = infos[p].vpid or p
            if target_ns.pid != own_ns.pid and (infos[p].vpgid == 0 or infos[p].vsid == 0):
                raise CheckpointError(f"the session or process group leader of pid {p} is outside its pid "
                                      "namespace (start the tree with setsid inside the namespace)")
            for t in seized.seized.get(p, []):
                dumper.vids[t] = platform.thread_info(p, t).vtid or t
        pstree_pb = _pb("pstree_pb2")
        pstree = []
        for p in pids:
            info = infos[p]
            e = pstree_pb.pstree_entry()
            e.pid = dumper.v(p)
            e.ppid = dumper.v(info.ppid) if p != pid else 0
            e.pgid, e.sid = info.vpgid or info.pgid, info.vsid or info.sid
            if p in zombies:
                e.threads.append(dumper.v(p))
                pstree.append(e)
                dumper.dump_zombie(p, info)
                continue
            e.threads.extend(dumper.v(t) for t in seized.seized[p])
            pstree.append(e)
            dumper.dump_process(p, info, seized.seized[p], own_ns)
        dumper.finish_copy()
        dumper.write_shared(pid, pstree, own_ns, target_ns)
        if parent_images is not None:
            link = dumper.out.raw_path("parent")
            if link.is_symlink():
                link.unlink()
            os.symlink(os.fspath(parent_images), link)
    except BaseException as err:
        dumper.finish_copy(raise_errors=False)  # never release while our readers still run
        seized.release_all()
        dumper.out.remove_all()
        if created_dir:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        if isinstance(err, CheckpointError):
            raise
        if isinstance(err, (PlatformError, HetmigError, OSError)):
            raise CheckpointError(f"dump of pid {pid} failed, tree released and running: {err}") from err
        raise
    frozen = time.monotonic() - t_frozen
    killed = False
    if leave_running:
        seized.release_all()
    else:
        seized.kill_all()
        killed = True
    return DumpResult(
        pids=tuple(pids), threads=dumper.threads, pages=dumper.total_pages,
        images=tuple(sorted(set(dumper.out.written))), seconds=time.monotonic() - t0,
        frozen_seconds=frozen, killed=killed, parent_pages=dumper.parent_pages,
    )
