"""Human-readable summaries of an image directory, line for line as ``crit x``.

``explore(dir, what)`` returns the lines ``crit x DIR ps|fds|mems|rss``
prints for the same images (same columns, widths and row order; crit reads
the images without pretty conversion, and so does this). The views:

- ``ps``: the process tree (PID, PGID, SID, indented COMM) from pstree.img
  and each task's core-PID.img.
- ``fds``: per task, its descriptors (fdinfo-<files_id>.img, resolved
  through files.img) then cwd and root (fs-PID.img).
- ``mems``: per task, the executable and every VMA with its protection and
  backing (mm-PID.img); shared/IPC/packet mappings are numbered in order of
  first appearance across the whole tree.
- ``rss``: per task, each pagemap entry (pagemap-PID.img) beside the VMAs it
  covers.

Reads only; refuses (ImageError) an image directory that lacks pstree.img
or a task's images. Data is rendered, never interpreted with host facts.
"""

from __future__ import annotations

import enum
import quopri
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message

from capture.errors import ImageError
from capture.images.codec import read_image
from proto import core_pb2, fdinfo_pb2, fs_pb2, mm_pb2, pagemap_pb2, pstree_pb2

M = TypeVar("M", bound=Message)

# vma_entry.status bits (CRIU's VMA_* flags) used by the views.
_VMA_AREA_REGULAR = 1 << 0
_VMA_AREA_STACK = 1 << 1
_VMA_AREA_VSYSCALL = 1 << 2
_VMA_AREA_VDSO = 1 << 3
_VMA_FILE_PRIVATE = 1 << 6
_VMA_FILE_SHARED = 1 << 7
_VMA_ANON_SHARED = 1 << 8
_VMA_AREA_SYSVIPC = 1 << 10
_VMA_AREA_SOCKET = 1 << 11
_MAP_GROWSDOWN = 0x100
_PAGE_SHIFT = 12


class View(enum.Enum):
    PS = "ps"
    FDS = "fds"
    MEMS = "mems"
    RSS = "rss"


def _entries(path: Path, cls: type[M], start: int = 0) -> list[M]:
    """The entries of an image that must hold ``cls`` messages (from ``start`` on)."""
    img = read_image(path)
    try:
        return img.entries_as(cls, start)
    except ImageError as err:
        raise ImageError(str(path), err.reason, magic=err.magic, entry=err.entry) from None


def _first(path: Path, cls: type[M]) -> M:
    entries = _entries(path, cls)
    if not entries:
        raise ImageError(str(path), "has no entries")
    return entries[0]


def _tasks(d: Path) -> list[pstree_pb2.pstree_entry]:
    return _entries(d / "pstree.img", pstree_pb2.pstree_entry)


@dataclass(slots=True)
class _Files:
    """Resolves (type, id) to crit's text for a file, with crit's caching."""

    dir: Path
    files: list[Any] | None = None
    legacy: dict[str, list[Any]] = field(default_factory=dict)
    cache: dict[tuple[str, int], str] = field(default_factory=dict)

    def _files(self) -> list[Any]:
        if self.files is None:
            try:
                self.files = list(read_image(self.dir / "files.img").entries)
            except ImageError:
                self.files = []
        return self.files

    def _find(self, fid: int, sub: str, legacy_img: str) -> Any:
        files = self._files()
        if files:
            for f in files:
                if f.id == fid:
                    return getattr(f, sub) if f.HasField(sub) else None
        if legacy_img not in self.legacy:
            self.legacy[legacy_img] = list(read_image(self.dir / legacy_img).entries)
        for f in self.legacy[legacy_img]:
            if f.id == fid:
                return f
        return None

    def text(self, ftype: str, fid: int) -> str:
        key = (ftype, fid)
        if key not in self.cache:
            self.cache[key] = self._render(ftype, fid)
        return self.cache[key]

    def _render(self, ftype: str, fid: int) -> str:
        if ftype == "REG":
            rf = self._find(fid, "reg", "reg-files.img")
            return rf.name if rf is not None and rf.name else "unknown path"
        if ftype == "PIPE":
            p = self._find(fid, "pipe", "pipes.img")
            return f"pipe[{p.pipe_id}]" if p is not None else "pipe[?]"
        if ftype == "UNIXSK":
            ux = self._find(fid, "usk", "unixsk.img")
            if ux is None:
                return "unix[?]"
            name = quopri.encodestring(ux.name).decode("ascii")
            shown = f" {name}" if name else ""
            return f"unix[{ux.ino} ({ux.peer}){shown}]"
        return f"{ftype}.{fid}"


def _ps(d: Path) -> list[str]:
    tasks = _tasks(d)
    comm: dict[int, str] = {}
    kids: dict[int, list[pstree_pb2.pstree_entry]] = {}
    root: pstree_pb2.pstree_entry | None = None
    for t in tasks:
        comm[t.pid] = _first(d / f"core-{t.pid}.img", core_pb2.core_entry).tc.comm
        kids.setdefault(t.pid, [])
    for t in tasks:
        if t.ppid == 0:
            root = t
            continue
        if t.ppid not in kids:
            raise ImageError(str(d / "pstree.img"), f"task {t.pid} has parent {t.ppid} "
                             "which is not in the tree")
        kids[t.ppid].append(t)
    lines = [f"{'PID':>7}{'PGID':>7}{'SID':>7}   COMM"]

    def walk(t: pstree_pb2.pstree_entry, depth: int) -> None:
        lines.append(f"{t.pid:7d}{t.pgid:7d}{t.sid:7d}   {' ' * (4 * depth)}{comm[t.pid]}")
        for k in kids[t.pid]:
            walk(k, depth + 1)

    if root is None:
        raise ImageError(str(d / "pstree.img"), "no root task (ppid 0)")
    walk(root, 0)
    return lines


def _fds(d: Path) -> list[str]:
    files = _Files(d)
    lines: list[str] = []
    for t in _tasks(d):
        files_id = _first(d / f"ids-{t.pid}.img", core_pb2.task_kobj_ids_entry).files_id
        lines.append(f"{t.pid}")
        for fd in _entries(d / f"fdinfo-{files_id}.img", fdinfo_pb2.fdinfo_entry):
            try:
                ftype = fdinfo_pb2.fd_types.Name(fd.type)
            except ValueError:
                ftype = str(fd.type)
            lines.append(f"\t{fd.fd:7d}: {files.text(ftype, fd.id)}")
        fs = _first(d / f"fs-{t.pid}.img", fs_pb2.fs_entry)
        lines.append(f"\t{'cwd':>7}: {files.text('REG', fs.cwd_id)}")
        lines.append(f"\t{'root':>7}: {files.text('REG', fs.root_id)}")
    return lines


def _mems(d: Path) -> list[str]:
    files = _Files(d)
    shared_ids: dict[int, int] = {}

    def shared(shmid: int) -> int:
        if shmid not in shared_ids:
            shared_ids[shmid] = len(shared_ids) + 1
        return shared_ids[shmid]

    lines: list[str] = []
    for t in _tasks(d):
        mm = _first(d / f"mm-{t.pid}.img", mm_pb2.mm_entry)
        lines.append(f"{t.pid}")
        lines.append(f"\t{'exe':<36}    {files.text('REG', mm.exe_file_id)}")
        for vma in mm.vmas:
            st = vma.status
            if st & _VMA_AREA_SYSVIPC:
                fn = f" ips[{shared(vma.shmid):x}]"
            elif st & _VMA_ANON_SHARED:
                fn = f" shmem[{shared(vma.shmid):x}]"
            elif st & _VMA_AREA_SOCKET:
                fn = f" packet[{shared(vma.shmid):x}]"
            elif st & (_VMA_FILE_PRIVATE | _VMA_FILE_SHARED):
                fn = " " + files.text("REG", vma.shmid)
                if vma.pgoff:
                    fn += f" + {vma.pgoff:#x}"
                if st & _VMA_FILE_SHARED:
                    fn += " (s)"
            elif st & _VMA_AREA_STACK:
                fn = " [stack]"
            elif st & _VMA_AREA_VSYSCALL:
                fn = " [vsyscall]"
            elif st & _VMA_AREA_VDSO:
                fn = " [vdso]"
            elif vma.flags & _MAP_GROWSDOWN:
                fn = " [stack?]"
            else:
                fn = ""
            if not st & _VMA_AREA_REGULAR:
                fn += " *"
            prot = ("r" if vma.prot & 1 else "-") + ("w" if vma.prot & 2 else "-") + (
                "x" if vma.prot & 4 else "-")
            addr = f"{vma.start:08x}-{vma.end:08x}"
            lines.append(f"\t{addr:<36}{prot}{fn}")
    return lines


def _rss(d: Path) -> list[str]:
    files = _Files(d)
    lines: list[str] = []
    for t in _tasks(d):
        vmas = list(_first(d / f"mm-{t.pid}.img", mm_pb2.mm_entry).vmas)
        pagemap = _entries(d / f"pagemap-{t.pid}.img", pagemap_pb2.pagemap_entry, start=1)
        lines.append(f"{t.pid}")
        vi = 0
        last_shown = -1
        for pm in pagemap:
            left = f"\t{pm.vaddr:x} / {pm.nr_pages:<8d}"
            while vi < len(vmas) and vmas[vi].end <= pm.vaddr:
                vi += 1
            pm_end = pm.vaddr + (pm.nr_pages << _PAGE_SHIFT)
            right = ""
            while vi < len(vmas) and vmas[vi].start < pm_end:
                vma = vmas[vi]
                if vi == last_shown:
                    right += " ~"
                else:
                    right += f" {vma.start:08x} / {(vma.end - vma.start) >> _PAGE_SHIFT:<8d}"
                    if vma.status & (_VMA_FILE_PRIVATE | _VMA_FILE_SHARED):
                        right += " " + files.text("REG", vma.shmid)
                    last_shown = vi
                right += "\n\t" + " " * 23
                vi += 1
            vi -= 1
            lines.extend(f"{left:<24}{right}".split("\n"))
    return lines


def explore(image_dir: str | Path, what: str | View) -> list[str]:
    """The lines ``crit x image_dir what`` prints (without line terminators)."""
    view = View(what)
    d = Path(image_dir)
    if not (d / "pstree.img").is_file():
        raise ImageError(str(d), "not an image directory (no pstree.img)")
    if view is View.PS:
        return _ps(d)
    if view is View.FDS:
        return _fds(d)
    if view is View.MEMS:
        return _mems(d)
    return _rss(d)


__all__ = ["View", "explore"]
