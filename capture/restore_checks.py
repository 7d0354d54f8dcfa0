"""Load an image set for restore and refuse hostile or unrestorable ones.

:func:`load_image_set` reads every image the restorer needs (through the one
image codec, :mod:`capture.images`), checks it, and returns an
:class:`ImageSet` plan. It runs before any process is created, so whatever it
refuses leaves the host untouched; it never writes into the image directory.

Refused with :class:`capture.errors.ImageError` (hostile or broken input):
pages outside every VMA, overlapping or unaligned VMAs, addresses outside
user space, page runs past the end of the pages file, descriptors whose
number is out of range or duplicated, pids/tids out of range or duplicated,
a process tree with a dangling parent or a cycle, paths that are not
absolute, contain ``..`` or NUL (and so could escape the restore root),
absurd counts and sizes.

Refused with :class:`capture.errors.RestoreRefusedError` (valid, but not
restorable by this engine): descriptor kinds other than regular files,
directories, device nodes opened by path (``/dev/null``), pipes and
inherited terminals (the message names kind, fd and pid); anonymous shared
memory, SysV IPC, socket, AIO and memfd mappings; compat (32-bit) tasks;
seccomp strict mode (filter chains are read from seccomp.img, bounded:
4096 instructions per filter, 64 filters per chain); stopped tasks; a mapped file whose size or build-id
differs from the image.

Incremental image sets (pagemap entries flagged ``PE_PARENT``, as
``criu dump --prev-images-dir`` and ``capture.dump(skip_pages=...)`` write
them) are resolved through the ``parent`` directory links, up to
:data:`MAX_PARENT_DEPTH` levels; each :class:`PageRun` then names the pages
file holding its data. A PE_PARENT page without data up the chain, or a
missing ``parent`` link, is an :class:`capture.errors.ImageError`.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Sequence

from capture.elf import gnu_build_id as elf_build_id
from capture.errors import ImageError, RestoreRefusedError

PAGE: Final = 4096
#: highest user-space address on x86_64 with 4-level paging.
TASK_SIZE: Final = 0x7FFF_FFFF_F000
PID_MAX_LIMIT: Final = 4 * 1024 * 1024
MAX_PROCESSES: Final = 4096
MAX_THREADS: Final = 8192
MAX_VMAS: Final = 65536
MAX_FDS_PER_PROCESS: Final = 65536
#: fs.nr_open's default; no descriptor number can be at or above it.
MAX_FD_NUMBER: Final = 1024 * 1024
MAX_PIPE_DATA: Final = 64 * 1024 * 1024
MAX_AUXV_WORDS: Final = 128
MAX_PATH: Final = 4096

# CRIU vma_entry.status bits
VMA_AREA_REGULAR: Final = 1 << 0
VMA_AREA_STACK: Final = 1 << 1
VMA_AREA_VSYSCALL: Final = 1 << 2
VMA_AREA_VDSO: Final = 1 << 3
VMA_AREA_HEAP: Final = 1 << 5
VMA_FILE_PRIVATE: Final = 1 << 6
VMA_FILE_SHARED: Final = 1 << 7
VMA_ANON_SHARED: Final = 1 << 8
VMA_ANON_PRIVATE: Final = 1 << 9
VMA_AREA_SYSVIPC: Final = 1 << 10
VMA_AREA_SOCKET: Final = 1 << 11
VMA_AREA_VVAR: Final = 1 << 12
VMA_AREA_AIORING: Final = 1 << 13
VMA_AREA_MEMFD: Final = 1 << 14
VMA_UNSUPP: Final = 1 << 31

_UNRESTORABLE_VMA: Final = {
    VMA_ANON_SHARED: "anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS)",
    VMA_AREA_SYSVIPC: "SysV shared memory",
    VMA_AREA_SOCKET: "socket mapping (packet ring)",
    VMA_AREA_AIORING: "AIO ring",
    VMA_AREA_MEMFD: "memfd mapping",
    VMA_UNSUPP: "mapping CRIU marked unsupported",
}

# pagemap_entry.flags
PE_PARENT: Final = 1 << 0
PE_LAZY: Final = 1 << 1
PE_PRESENT: Final = 1 << 2

# fd_types (proto/fdinfo.proto)
FD_REG: Final = 1
FD_PIPE: Final = 2
FD_TTY: Final = 11
_FD_KIND_NAMES: Final = {
    0: "UND", 1: "REG", 2: "PIPE", 3: "FIFO", 4: "INETSK", 5: "UNIXSK", 6: "EVENTFD",
    7: "EVENTPOLL", 8: "INOTIFY", 9: "SIGNALFD", 10: "PACKETSK", 11: "TTY", 12: "FANOTIFY",
    13: "NETLINKSK", 14: "NS", 15: "TUNF", 16: "EXT", 17: "TIMERFD", 18: "MEMFD", 19: "BPFMAP",
    20: "PIDFD", 65534: "CTL_TTY", 65535: "AUTOFS_PIPE",
}

TASK_ALIVE: Final = 1
TASK_DEAD: Final = 2
O_ACCMODE: Final = 3
O_CREAT: Final = 0o100
O_EXCL: Final = 0o200
O_TRUNC: Final = 0o1000
O_DIRECTORY: Final = 0o200000
O_PATH: Final = 0o10000000
O_CLOEXEC: Final = 0o2000000


def fd_kind_name(kind: int) -> str:
    return _FD_KIND_NAMES.get(kind, f"type {kind}")


@dataclass(frozen=True, slots=True)
class PageRun:
    """A run of dumped pages: where they go and where they are in the pages file.

    *pages_file* is set for pages an incremental dump left in a parent image
    set (``PE_PARENT``, resolved through the ``parent`` symlinks); empty
    means the process's own :attr:`ProcessImage.pages_file`.
    """

    vaddr: int
    nr_pages: int
    file_offset: int
    pages_file: str = ""


#: longest chain of ``parent`` image sets an incremental dump may point through
MAX_PARENT_DEPTH: Final = 32


def parent_page_runs(directory: Path, pid: int, depth: int = 1) -> list[PageRun]:
    """Every page with data for *pid* in the parent image set of *directory*.

    Follows ``directory/parent`` (CRIU's incremental-dump link) and that
    set's own PE_PARENT entries further up; each returned run names its
    pages file. Refuses a missing or looping chain and runs whose data is
    not in the file.
    """
    link = directory / "parent"
    if depth > MAX_PARENT_DEPTH:
        raise ImageError(str(link), f"more than {MAX_PARENT_DEPTH} parent image sets (a loop?)")
    if not link.is_dir():
        raise ImageError(str(link), "pagemap has PE_PARENT pages but there is no parent image directory")
    d = link.resolve()
    src = str(d / f"pagemap-{pid}.img")
    pm = _read(d, f"pagemap-{pid}.img")
    if not pm.entries:
        raise ImageError(src, "no pagemap head")
    pages_file = d / f"pages-{pm.entries[0].pages_id}.img"
    try:
        size = pages_file.stat().st_size
    except OSError as err:
        raise ImageError(str(pages_file), f"cannot stat pages file: {err.strerror}") from err
    out: list[PageRun] = []
    up: list[PageRun] | None = None
    offset = 0
    for i, pe in enumerate(pm.entries[1:], start=1):
        flags = pe.flags if pe.HasField("flags") else PE_PRESENT
        if pe.HasField("in_parent") and pe.in_parent:
            flags |= PE_PARENT
        if pe.vaddr % PAGE or pe.nr_pages <= 0 or pe.vaddr + pe.nr_pages * PAGE > TASK_SIZE:
            raise ImageError(src, f"page run 0x{pe.vaddr:x}+{pe.nr_pages} not page aligned, empty or outside "
                             f"user space", entry=i)
        if flags & PE_PARENT:
            if up is None:
                up = parent_page_runs(d, pid, depth + 1)
            out.extend(cover_from_parent(up, pe.vaddr, pe.nr_pages, src, i))
        elif flags & PE_PRESENT:
            if offset + pe.nr_pages * PAGE > size:
                raise ImageError(str(pages_file), f"pagemap entry {i} needs bytes up to "
                                 f"{offset + pe.nr_pages * PAGE}, file has {size}")
            out.append(PageRun(pe.vaddr, pe.nr_pages, offset, str(pages_file)))
            offset += pe.nr_pages * PAGE
    out.sort(key=lambda r: r.vaddr)
    return out


def cover_from_parent(parent: Sequence[PageRun], vaddr: int, nr_pages: int, source: str,
                      entry: int) -> list[PageRun]:
    """The pieces of address-sorted *parent* runs holding pages vaddr..+nr_pages; all must be there."""
    out: list[PageRun] = []
    a, end = vaddr, vaddr + nr_pages * PAGE
    for r in parent:
        rs, re_ = r.vaddr, r.vaddr + r.nr_pages * PAGE
        if re_ <= a or rs >= end:
            continue
        if rs > a:
            break
        stop = min(end, re_)
        out.append(PageRun(a, (stop - a) // PAGE, r.file_offset + (a - rs), r.pages_file))
        a = stop
        if a >= end:
            break
    if a < end:
        raise ImageError(source, f"PE_PARENT page 0x{a:x} (run 0x{vaddr:x}+{nr_pages}) has no data in the "
                         f"parent image sets", entry=entry)
    return out


@dataclass(frozen=True, slots=True)
class FdPlan:
    fd: int
    file_id: int
    kind: int
    cloexec: bool


@dataclass(frozen=True, slots=True)
class FileDesc:
    """One open file description of files.img the restore will recreate."""

    id: int
    kind: int  # FD_REG, FD_PIPE, FD_TTY
    path: str = ""  # image path (absolute, normalised) for REG
    host_path: str = ""  # same path on this host (under the restore root)
    flags: int = 0  # Linux O_* status flags
    pos: int = 0
    pipe_id: int = 0
    tty_index: int = -1


@dataclass(frozen=True, slots=True)
class ThreadImage:
    tid: int
    core: Any  # proto core_entry
    #: seccomp filters (BPF program bytes, SECCOMP_FILTER_FLAG_* bits) in install order
    seccomp: tuple[tuple[bytes, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessImage:
    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: tuple[ThreadImage, ...]  # main thread first
    mm: Any  # proto mm_entry
    vmas: tuple[Any, ...]  # proto vma_entry, sorted by start
    pages_file: str
    page_runs: tuple[PageRun, ...]
    fds: tuple[FdPlan, ...]
    fs: Any  # proto fs_entry or None
    cwd: str  # image path of the cwd ("/" if unknown)
    root: str  # image path of the root ("/" if unknown)
    exe_path: str  # image path of the executable ("" if unknown)
    #: wait status of a zombie (CRIU task_state 2), None for a live process.
    zombie_status: int | None = None

    @property
    def core(self) -> Any:
        return self.threads[0].core


@dataclass(frozen=True, slots=True)
class ImageSet:
    directory: str
    root: str  # restore root on this host ("/" without --root)
    processes: tuple[ProcessImage, ...]  # parents before children
    files: dict[int, FileDesc]
    pipe_data: dict[int, tuple[bytes, int]]  # pipe_id -> (buffered bytes, pipe size or 0)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def root_process(self) -> ProcessImage:
        return self.processes[0]

    def max_fd(self) -> int:
        return max((f.fd for p in self.processes for f in p.fds), default=2)

    @property
    def live(self) -> tuple[ProcessImage, ...]:
        return tuple(p for p in self.processes if p.zombie_status is None)


# --- helpers --------------------------------------------------------------------


def _read(directory: Path, name: str, *, required: bool = True) -> Any:
    """Read one image through the codec (None if optional and missing)."""
    from capture.images import read_image

    path = directory / name
    if not path.exists():
        if required:
            raise ImageError(str(path), "missing (the image set is incomplete)")
        return None
    return read_image(path)


def clean_image_path(path: str, *, what: str, source: str) -> str:
    """An image path that cannot escape a root: absolute, no '..', no NUL."""
    if not path.startswith("/"):
        raise ImageError(source, f"{what} path {path!r} is not absolute")
    if "\0" in path or len(path) > MAX_PATH:
        raise ImageError(source, f"{what} path {path[:80]!r} contains NUL or is longer than {MAX_PATH}")
    parts = path.split("/")
    if ".." in parts:
        raise ImageError(source, f"{what} path {path!r} contains '..' (would escape the restore root)")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm != "/" else "/"


def resolve_in_root(root: str, path: str) -> str:
    """*path* (absolute, clean) as seen by a process chrooted to *root*.

    Symlinks are followed the way the kernel does inside a chroot: absolute
    link targets restart at *root*, '..' stops at *root*. The result is a
    host path under *root* (the last component may not exist).
    """
    root_real = os.path.realpath(root)
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root_real, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise ImageError(path, f"too many symlinks resolving {path!r} under {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root_real, *resolved)


def _build_id_bytes(words: Sequence[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)


def check_reg_file(desc_reg: Any, host_path: str, *, what: str, source: str) -> None:
    """Refuse if the file at *host_path* is missing or differs from the image."""
    try:
        st = os.stat(host_path)
    except OSError as err:
        raise RestoreRefusedError(
            f"{source}: {what} {desc_reg.name!r} (file id {desc_reg.id}) cannot be opened at {host_path}: "
            f"{err.strerror}"
        ) from err
    if desc_reg.HasField("mode") and stat.S_IFMT(desc_reg.mode) != stat.S_IFMT(st.st_mode):
        raise RestoreRefusedError(
            f"{source}: {what} {desc_reg.name!r}: file type changed (image mode 0o{desc_reg.mode:o}, "
            f"now 0o{st.st_mode:o})"
        )
    if desc_reg.HasField("size") and stat.S_ISREG(st.st_mode) and desc_reg.size != st.st_size:
        raise RestoreRefusedError(
            f"{source}: {what} {desc_reg.name!r}: size changed (image size={desc_reg.size}, "
            f"now {st.st_size} at {host_path})"
        )
    if len(desc_reg.build_id) and stat.S_ISREG(st.st_mode):
        want = _build_id_bytes(desc_reg.build_id)
        have = elf_build_id(host_path)
        if have is not None and have[: len(want)] != want:
            raise RestoreRefusedError(
                f"{source}: {what} {desc_reg.name!r}: content changed (build-id {have.hex()} != image "
                f"{want.hex()})"
            )


def _is_zombie(d: Path, pid: int) -> bool:
    core_img = _read(d, f"core-{pid}.img", required=False)
    if core_img is None or not core_img.entries:
        return False
    core = core_img.entries[0]
    return bool(core.HasField("tc") and core.tc.task_state == TASK_DEAD)


SIGINFO_SIZE: Final = 128
MAX_PENDING_SIGNALS: Final = 4096


def _check_siginfos(entries: Any, source: str) -> None:
    if len(entries) > MAX_PENDING_SIGNALS:
        raise ImageError(source, f"{len(entries)} pending signals (limit {MAX_PENDING_SIGNALS})")
    for i, e in enumerate(entries):
        if len(e.siginfo) != SIGINFO_SIZE:
            raise ImageError(source, f"pending signal {i}: siginfo of {len(e.siginfo)} bytes (expected "
                             f"{SIGINFO_SIZE})")
        signo = struct.unpack_from("<i", e.siginfo, 0)[0]
        if not 1 <= signo <= 64:
            raise ImageError(source, f"pending signal {i}: signal number {signo} out of range 1..64")


# --- the loader ------------------------------------------------------------------


#: ``PageRun.pages_file`` of PE_PARENT pages already in a prepared restore target's memory
IN_TARGET: Final = "<restore target>"


def _cover_from_target(held: Sequence[tuple[int, int]], vaddr: int, nr_pages: int, source: str,
                       entry: int) -> PageRun:
    """A PE_PARENT run that a prepared restore target already holds (*held*: sorted,
    merged (address, pages) runs written into it); an ImageError when it does not."""
    end = vaddr + nr_pages * PAGE
    k = bisect.bisect_right(held, vaddr, key=lambda r: r[0]) - 1
    if k >= 0 and end <= held[k][0] + held[k][1] * PAGE:
        return PageRun(vaddr, nr_pages, 0, IN_TARGET)
    raise ImageError(source, f"PE_PARENT run 0x{vaddr:x}+{nr_pages} was never written into the restore target",
                     entry=entry)


#: most BPF instructions in one filter (the kernel's BPF_MAXINSNS)
MAX_BPF_INSNS: Final = 4096
#: most filters in one thread's chain
MAX_SECCOMP_CHAIN: Final = 64
#: SECCOMP_FILTER_FLAG_* bits a restored filter keeps (LOG, SPEC_ALLOW); TSYNC is not
#: needed (each thread installs its own chain), the others change the syscall's result
SECCOMP_KEEP_FLAGS: Final = (1 << 1) | (1 << 2)


def _read_seccomp(d: Path) -> list[Any]:
    img = _read(d, "seccomp.img", required=False)
    src = str(d / "seccomp.img")
    if img is None or not img.entries:
        raise ImageError(src, "a thread runs under a seccomp filter but the image has no seccomp.img")
    filters = list(img.entries[0].seccomp_filters)
    for i, f in enumerate(filters):
        if not f.filter or len(f.filter) % 8 or len(f.filter) // 8 > MAX_BPF_INSNS:
            raise ImageError(src, f"seccomp filter {i}: {len(f.filter)} bytes is not 1..{MAX_BPF_INSNS} "
                                  f"8-byte BPF instructions")
    return filters


def _seccomp_chain(filters: list[Any], first: int, where: str) -> tuple[tuple[bytes, int], ...]:
    """The chain a thread points at (its first installed filter), following ``prev`` to
    the most recent one, as the dump writes it (see capture.dump); bounded, no loops."""
    out: list[tuple[bytes, int]] = []
    idx: int | None = first
    seen: set[int] = set()
    while idx is not None:
        if not 0 <= idx < len(filters) or idx in seen or len(out) >= MAX_SECCOMP_CHAIN:
            raise ImageError(where, f"seccomp filter chain at {first} is broken (index {idx}, "
                                    f"{len(filters)} filters, at most {MAX_SECCOMP_CHAIN} in a chain)")
        seen.add(idx)
        f = filters[idx]
        out.append((bytes(f.filter), int(f.flags) & SECCOMP_KEEP_FLAGS if f.HasField("flags") else 0))
        idx = int(f.prev) if f.HasField("prev") else None
    return tuple(out)


def load_image_set(directory: str | os.PathLike[str], *, root: str = "/", have_tty: bool = False,
                   in_target: dict[int, Sequence[tuple[int, int]]] | None = None) -> ImageSet:
    """Read and check the image set in *directory* for a restore under *root*.

    *have_tty* says whether the restorer has a terminal to hand to
    descriptors that were ttys (``--shell-job`` style). *in_target* maps an
    image pid to the (address, pages) runs a prepared restore target already
    holds (sorted, merged): that pid's PE_PARENT pages must lie inside them and
    come back as runs with ``pages_file == IN_TARGET`` (nothing to write).
    """
    d = Path(directory)
    if not d.is_dir():
        raise ImageError(str(d), "not a directory")
    warnings: list[str] = []
    inventory = _read(d, "inventory.img")
    inv = inventory.entries[0] if inventory.entries else None
    if inv is None:
        raise ImageError(str(d / "inventory.img"), "no inventory entry")

    pstree = _read(d, "pstree.img")
    entries = list(pstree.entries)
    src_tree = str(d / "pstree.img")
    if not entries:
        raise ImageError(src_tree, "empty process tree")
    if len(entries) > MAX_PROCESSES:
        raise ImageError(src_tree, f"{len(entries)} processes (limit {MAX_PROCESSES})")
    seen_ids: set[int] = set()
    pids = set()
    seccomp_filters: list[Any] | None = None  # seccomp.img, read when a thread needs it
    total_threads = 0
    for i, e in enumerate(entries):
        for v, name in ((e.pid, "pid"), (e.pgid, "pgid"), (e.sid, "sid")):
            if not 0 < v < PID_MAX_LIMIT:
                raise ImageError(src_tree, f"{name}={v} out of range (1..{PID_MAX_LIMIT - 1})", entry=i)
        if e.pid in pids:
            raise ImageError(src_tree, f"pid {e.pid} appears twice", entry=i)
        pids.add(e.pid)
        threads = list(e.threads) or [e.pid]
        if _is_zombie(d, e.pid):
            threads = [e.pid]  # CRIU leaves a zombie's thread list uninitialised
        total_threads += len(threads)
        if total_threads > MAX_THREADS:
            raise ImageError(src_tree, f"more than {MAX_THREADS} threads in total", entry=i)
        if threads[0] != e.pid and e.pid not in threads:
            raise ImageError(src_tree, f"pid {e.pid}: main thread missing from threads {threads}", entry=i)
        for t in threads:
            if not 0 < t < PID_MAX_LIMIT:
                raise ImageError(src_tree, f"pid {e.pid}: tid {t} out of range", entry=i)
            if t in seen_ids and t != e.pid:
                raise ImageError(src_tree, f"tid {t} appears twice", entry=i)
            seen_ids.add(t)
    root_entry = entries[0]
    if root_entry.ppid != 0 and root_entry.ppid in pids:
        raise ImageError(src_tree, f"root pid {root_entry.pid} has parent {root_entry.ppid} inside the tree")
    order: list[Any] = [root_entry]
    placed = {root_entry.pid}
    rest = entries[1:]
    for e in rest:
        if e.ppid not in pids:
            raise ImageError(src_tree, f"pid {e.pid}: parent {e.ppid} is not in the tree")
    # parents before children (CRIU writes them so, but do not trust it)
    progress = True
    while rest and progress:
        progress = False
        for e in list(rest):
            if e.ppid in placed:
                order.append(e)
                placed.add(e.pid)
                rest.remove(e)
                progress = True
    if rest:
        raise ImageError(src_tree, f"process tree has a cycle through pids {[e.pid for e in rest]}")

    files_img = _read(d, "files.img", required=False)
    file_entries: dict[int, Any] = {}
    if files_img is not None:
        for i, fe in enumerate(files_img.entries):
            if fe.id in file_entries:
                raise ImageError(str(d / "files.img"), f"file id {fe.id} appears twice", entry=i)
            file_entries[fe.id] = fe

    def reg_of(file_id: int, what: str, source: str) -> Any:
        fe = file_entries.get(file_id)
        if fe is None or not fe.HasField("reg"):
            raise ImageError(source, f"{what} refers to file id {file_id}, which files.img does not hold as a "
                             f"regular file")
        return fe.reg

    processes: list[ProcessImage] = []
    needed_files: dict[int, FileDesc] = {}
    for e in order:
        pid = e.pid
        tids = list(e.threads) or [pid]
        if _is_zombie(d, pid):
            tids = [pid]
        if tids[0] != pid:
            tids.remove(pid)
            tids.insert(0, pid)
        threads = []
        main_img = _read(d, f"core-{pid}.img")
        main_first = main_img.entries[0] if main_img.entries else None
        if main_first is not None and main_first.HasField("tc") and main_first.tc.task_state == TASK_DEAD:
            # a zombie: recreated only to exit again with its status
            if e is root_entry:
                raise RestoreRefusedError(f"{d / f'core-{pid}.img'}: the root process {pid} is a zombie")
            if len(tids) != 1:
                raise ImageError(str(d / f"core-{pid}.img"), f"zombie {pid} lists threads {tids}")
            if e.pid in {x.ppid for x in order}:
                raise ImageError(str(d / "pstree.img"), f"zombie {pid} has children in the tree")
            processes.append(ProcessImage(
                pid=pid, ppid=e.ppid, pgid=e.pgid, sid=e.sid, threads=(ThreadImage(pid, main_first),), mm=None,
                vmas=(), pages_file="", page_runs=(), fds=(), fs=None, cwd="/", root="/", exe_path="",
                zombie_status=main_first.tc.exit_code,
            ))
            continue
        for tid in tids:
            core_img = _read(d, f"core-{tid}.img")
            src = str(d / f"core-{tid}.img")
            chain: tuple[tuple[bytes, int], ...] = ()
            if not core_img.entries:
                raise ImageError(src, "no core entry")
            core = core_img.entries[0]
            if core.mtype != 1:
                raise RestoreRefusedError(f"{src}: machine type {core.mtype} is not X86_64 (1)")
            if not core.HasField("thread_info"):
                raise ImageError(src, "no thread_info (registers)")
            if core.thread_info.gpregs.mode != 1:
                raise RestoreRefusedError(f"{src}: pid {pid} tid {tid} is a 32-bit (compat) task")
            if tid == pid:
                if not core.HasField("tc"):
                    raise ImageError(src, "main thread has no task core (tc)")
                if core.tc.task_state != TASK_ALIVE:
                    raise RestoreRefusedError(
                        f"{src}: pid {pid} task_state={core.tc.task_state} (only live tasks, state 1, and "
                        f"zombies, state 2, are restorable)")
                if core.tc.HasField("timers") and len(core.tc.timers.posix):
                    raise RestoreRefusedError(f"{src}: pid {pid} has POSIX timers (not restorable yet)")
                if core.tc.HasField("old_seccomp_mode") and core.tc.old_seccomp_mode != 0:
                    raise RestoreRefusedError(f"{src}: pid {pid} runs under seccomp (not restorable yet)")
                if len(core.tc.sigactions) > 64:
                    raise ImageError(src, f"{len(core.tc.sigactions)} sigactions (at most 64)")
            if core.HasField("thread_core"):
                tcore = core.thread_core
                if tcore.HasField("seccomp_mode") and tcore.seccomp_mode == 2:
                    if seccomp_filters is None:
                        seccomp_filters = _read_seccomp(d)
                    chain = _seccomp_chain(seccomp_filters, tcore.seccomp_filter, f"{src}: tid {tid}")
                elif tcore.HasField("seccomp_mode") and tcore.seccomp_mode != 0:
                    raise RestoreRefusedError(f"{src}: tid {tid} runs under seccomp mode {tcore.seccomp_mode} "
                                              f"(strict mode is not restorable: nothing could be injected after it)")
                if tcore.HasField("signals_p"):
                    _check_siginfos(tcore.signals_p.signals, src)
            threads.append(ThreadImage(tid, core, chain))
        main_core = threads[0].core
        if main_core.tc.HasField("signals_s"):
            _check_siginfos(main_core.tc.signals_s.signals, str(d / f"core-{pid}.img"))

        # --- memory ---
        mm_img = _read(d, f"mm-{pid}.img")
        src_mm = str(d / f"mm-{pid}.img")
        if not mm_img.entries:
            raise ImageError(src_mm, "no mm entry")
        mm = mm_img.entries[0]
        if len(mm.vmas) > MAX_VMAS:
            raise ImageError(src_mm, f"{len(mm.vmas)} VMAs (limit {MAX_VMAS})")
        if len(mm.mm_saved_auxv) > MAX_AUXV_WORDS or len(mm.mm_saved_auxv) % 2:
            raise ImageError(src_mm, f"auxv has {len(mm.mm_saved_auxv)} words (even, at most {MAX_AUXV_WORDS})")
        vmas = sorted(mm.vmas, key=lambda v: v.start)
        prev_end = 0
        for i, v in enumerate(vmas):
            if v.start % PAGE or v.end % PAGE or v.start >= v.end:
                raise ImageError(src_mm, f"VMA 0x{v.start:x}-0x{v.end:x} is empty or not page aligned", entry=i)
            if v.status & VMA_AREA_VSYSCALL:
                continue
            if v.end > TASK_SIZE:
                raise ImageError(src_mm, f"VMA 0x{v.start:x}-0x{v.end:x} lies outside user space "
                                 f"(end > 0x{TASK_SIZE:x})", entry=i)
            if v.start < prev_end:
                raise ImageError(src_mm, f"VMA 0x{v.start:x}-0x{v.end:x} overlaps the previous one "
                                 f"(ends at 0x{prev_end:x})", entry=i)
            prev_end = v.end
            for bit, what in _UNRESTORABLE_VMA.items():
                if v.status & bit:
                    raise RestoreRefusedError(
                        f"{src_mm}: pid {pid} VMA 0x{v.start:x}-0x{v.end:x} is {what}; not restorable yet")
            if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
                reg = reg_of(v.shmid, f"VMA 0x{v.start:x}", src_mm)
                path = clean_image_path(reg.name, what="mapped file", source=src_mm)
                host = resolve_in_root(root, path)
                check_reg_file(reg, host, what=f"pid {pid} mapping 0x{v.start:x}", source=src_mm)
                if v.pgoff % PAGE:
                    raise ImageError(src_mm, f"VMA 0x{v.start:x}: file offset {v.pgoff} not page aligned", entry=i)

        pm_img = _read(d, f"pagemap-{pid}.img")
        src_pm = str(d / f"pagemap-{pid}.img")
        if not pm_img.entries:
            raise ImageError(src_pm, "no pagemap head")
        pages_id = pm_img.entries[0].pages_id
        pages_file = d / f"pages-{pages_id}.img"
        try:
            pages_size = pages_file.stat().st_size
        except OSError as err:
            raise ImageError(str(pages_file), f"cannot stat pages file: {err.strerror}") from err
        runs: list[PageRun] = []
        parent_runs: list[PageRun] | None = None
        offset = 0
        restorable = [v for v in vmas if not v.status & VMA_AREA_VSYSCALL]
        vi = 0
        last_end = 0
        for i, pe in enumerate(pm_img.entries[1:], start=1):
            flags = pe.flags if pe.HasField("flags") else PE_PRESENT
            if pe.HasField("in_parent") and pe.in_parent:
                flags |= PE_PARENT
            if pe.vaddr % PAGE or pe.nr_pages <= 0:
                raise ImageError(src_pm, f"page run 0x{pe.vaddr:x}+{pe.nr_pages} not page aligned or empty",
                                 entry=i)
            end = pe.vaddr + pe.nr_pages * PAGE
            if end > TASK_SIZE or pe.vaddr < last_end:
                raise ImageError(src_pm, f"page run 0x{pe.vaddr:x}-0x{end:x} out of order or outside user space",
                                 entry=i)
            last_end = end
            # every page must lie inside a VMA (runs may span adjacent VMAs)
            addr = pe.vaddr
            while addr < end:
                while vi < len(restorable) and restorable[vi].end <= addr:
                    vi += 1
                if vi >= len(restorable) or restorable[vi].start > addr:
                    raise ImageError(src_pm, f"page 0x{addr:x} (run 0x{pe.vaddr:x}+{pe.nr_pages}) lies outside "
                                     f"every VMA of pid {pid}", entry=i)
                addr = min(end, restorable[vi].end)
            if flags & PE_PARENT and in_target is not None and pid in in_target:
                runs.append(_cover_from_target(in_target[pid], pe.vaddr, pe.nr_pages, src_pm, i))
            elif flags & PE_PARENT:
                if parent_runs is None:
                    parent_runs = parent_page_runs(d, pid)
                runs.extend(cover_from_parent(parent_runs, pe.vaddr, pe.nr_pages, src_pm, i))
            elif flags & PE_PRESENT:
                if offset + pe.nr_pages * PAGE > pages_size:
                    raise ImageError(str(pages_file), f"pagemap entry {i} needs bytes up to "
                                     f"{offset + pe.nr_pages * PAGE}, file has {pages_size}")
                runs.append(PageRun(pe.vaddr, pe.nr_pages, offset))
                offset += pe.nr_pages * PAGE

        # --- files ---
        ids = main_core.ids if main_core.HasField("ids") else None
        if ids is None:
            ids_img = _read(d, f"ids-{pid}.img", required=False)
            ids = ids_img.entries[0] if ids_img is not None and ids_img.entries else None
        fds: list[FdPlan] = []
        if ids is not None:
            fdinfo = _read(d, f"fdinfo-{ids.files_id}.img", required=False)
            src_fd = str(d / f"fdinfo-{ids.files_id}.img")
            nofile = MAX_FD_NUMBER
            if main_core.tc.HasField("rlimits") and len(main_core.tc.rlimits.rlimits) > 7:
                nofile = min(nofile, main_core.tc.rlimits.rlimits[7].max)
            seen_fd: set[int] = set()
            for i, fi in enumerate(fdinfo.entries if fdinfo is not None else []):
                if len(fdinfo.entries) > MAX_FDS_PER_PROCESS:
                    raise ImageError(src_fd, f"{len(fdinfo.entries)} descriptors (limit {MAX_FDS_PER_PROCESS})")
                if fi.fd >= nofile:
                    raise ImageError(src_fd, f"pid {pid}: fd {fi.fd} out of range (RLIMIT_NOFILE hard limit "
                                     f"{nofile})", entry=i)
                if fi.fd in seen_fd:
                    raise ImageError(src_fd, f"pid {pid}: fd {fi.fd} appears twice", entry=i)
                seen_fd.add(fi.fd)
                fe = file_entries.get(fi.id)
                if fe is None:
                    raise ImageError(src_fd, f"pid {pid}: fd {fi.fd} refers to file id {fi.id}, missing from "
                                     f"files.img", entry=i)
                kind = fe.type
                if kind == FD_REG:
                    reg = fe.reg
                    if reg.name.endswith(" (deleted)"):
                        raise RestoreRefusedError(f"{src_fd}: pid {pid} fd {fi.fd}: file {reg.name!r} was deleted "
                                                  f"(ghost files are not restorable yet)")
                    path = clean_image_path(reg.name, what=f"pid {pid} fd {fi.fd}", source=src_fd)
                    host = resolve_in_root(root, path)
                    check_reg_file(reg, host, what=f"pid {pid} fd {fi.fd}", source=src_fd)
                    needed_files[fe.id] = FileDesc(fe.id, FD_REG, path, host, reg.flags, reg.pos)
                elif kind == FD_PIPE:
                    needed_files[fe.id] = FileDesc(fe.id, FD_PIPE, flags=fe.pipe.flags, pipe_id=fe.pipe.pipe_id)
                elif kind == FD_TTY:
                    if not have_tty:
                        raise RestoreRefusedError(
                            f"{src_fd}: pid {pid} fd {fi.fd} is a terminal (TTY, file id {fi.id}) and the restorer "
                            f"has no terminal on stdin/stdout/stderr to hand over (shell-job restore)")
                    needed_files[fe.id] = FileDesc(fe.id, FD_TTY, flags=fe.tty.flags)
                else:
                    raise RestoreRefusedError(
                        f"pid {pid} fd {fi.fd}: descriptor kind {fd_kind_name(kind)} (file id {fi.id}) is not "
                        f"restorable yet; nothing was started")
                fds.append(FdPlan(fi.fd, fi.id, kind, bool(fi.flags & 1)))

        # --- fs / exe ---
        fs_img = _read(d, f"fs-{pid}.img", required=False)
        fs = fs_img.entries[0] if fs_img is not None and fs_img.entries else None
        cwd = "/"
        proot = "/"
        if fs is not None:
            cwd = clean_image_path(reg_of(fs.cwd_id, "cwd", str(d / f"fs-{pid}.img")).name, what="cwd",
                                   source=str(d / f"fs-{pid}.img"))
            proot = clean_image_path(reg_of(fs.root_id, "root", str(d / f"fs-{pid}.img")).name, what="root",
                                     source=str(d / f"fs-{pid}.img"))
        exe_path = ""
        if mm.HasField("exe_file_id") and mm.exe_file_id in file_entries:
            exe_path = clean_image_path(reg_of(mm.exe_file_id, "exe", src_mm).name, what="exe", source=src_mm)
        processes.append(ProcessImage(
            pid=pid, ppid=e.ppid, pgid=e.pgid, sid=e.sid, threads=tuple(threads), mm=mm, vmas=tuple(vmas),
            pages_file=str(pages_file), page_runs=tuple(runs), fds=tuple(fds), fs=fs, cwd=cwd, root=proot,
            exe_path=exe_path,
        ))

    # pipe data
    pipe_data: dict[int, tuple[bytes, int]] = {}
    pd_img = _read(d, "pipes-data.img", required=False)
    if pd_img is not None:
        total = 0
        for i, pde in enumerate(pd_img.entries):
            data = pd_img.extra[i] if i < len(pd_img.extra) and pd_img.extra[i] is not None else b""
            if len(data) != pde.bytes:
                raise ImageError(str(d / "pipes-data.img"), f"pipe {pde.pipe_id}: {len(data)} bytes of data, "
                                 f"header says {pde.bytes}", entry=i)
            total += len(data)
            if total > MAX_PIPE_DATA:
                raise ImageError(str(d / "pipes-data.img"), f"more than {MAX_PIPE_DATA} bytes of pipe data")
            pipe_data[pde.pipe_id] = (bytes(data), pde.size if pde.HasField("size") else 0)
    return ImageSet(str(d), root, tuple(processes), needed_files, pipe_data, tuple(warnings))
