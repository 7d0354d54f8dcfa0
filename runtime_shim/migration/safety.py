"""What a peer may name and write: image-file names, files under a migration
directory, and the rootfs-delta tar archive.

Rules:
  * an image-file name is one path component of 1..128 characters from
    ``[A-Za-z0-9._-]``, not ``.`` or ``..``, with no NUL and no ``/``;
  * files are created with ``openat(dirfd, name, O_CREAT|O_EXCL|O_NOFOLLOW)``
    relative to the per-migration directory, so neither an existing file nor
    a symlink planted there is ever followed or overwritten;
  * a rootfs-delta tar is checked member by member before anything is
    extracted: no absolute names, no ``..`` components, no NUL, no device
    nodes or FIFOs, no hard links out of the tree, no symlink whose target
    (absolute targets resolved against the rootfs root, as inside the
    container) leaves the tree, no member below an earlier symlink, no
    symlink where the agent itself works in the tree (``dev``, ``dev/*``,
    ``proc``), bounded member count and total size. Everything but symlinks
    is extracted with tarfile's ``tar`` filter as a second layer; symlinks
    (absolute ones are normal in a rootfs: ``etc/mtab -> /proc/mounts``)
    are created last, with ``symlinkat`` below parents opened with
    O_NOFOLLOW, and are never followed by the agent.

Every refusal is a :class:`UnsafeInputError` naming the field or member and
the value.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from capture.errors import MigrationError

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class UnsafeInputError(MigrationError):
    """A peer tried to name or write something outside what it may touch."""


def check_image_name(name: object, *, field: str = "name") -> str:
    if not isinstance(name, str):
        raise UnsafeInputError(f"{field}={name!r:.80} is not a string")
    if "\x00" in name:
        raise UnsafeInputError(f"{field}={name!r:.80} contains NUL")
    if "/" in name or name in (".", ".."):
        raise UnsafeInputError(f"{field}={name!r:.80} is not a single path component")
    if ".." in name:
        raise UnsafeInputError(f"{field}={name!r:.80} contains '..'")
    if not _NAME_RE.fullmatch(name):
        raise UnsafeInputError(f"{field}={name!r:.80} has characters outside [A-Za-z0-9._-] or is longer than 128")
    return name


def create_file_in(dir_fd: int, name: str, *, readable: bool = False) -> int:
    """O_EXCL|O_NOFOLLOW create of *name* (already checked) relative to *dir_fd*."""
    check_image_name(name)
    try:
        return os.open(name, (os.O_RDWR if readable else os.O_WRONLY) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise UnsafeInputError(f"name={name!r} already exists in the migration directory") from None


@dataclass(frozen=True, slots=True)
class TarLimits:
    max_members: int = 200_000
    max_total: int = 4 << 30


def check_tar(path: Path, limits: TarLimits = TarLimits()) -> list[tarfile.TarInfo]:
    """Members of the tar at *path* if every one is safe; UnsafeInputError otherwise."""
    members: list[tarfile.TarInfo] = []
    symlinks: set[str] = set()
    total = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for index, m in enumerate(tar):
                if index >= limits.max_members:
                    raise UnsafeInputError(f"rootfs delta has more than {limits.max_members} members")
                where = f"rootfs delta member[{index}] {m.name!r:.200}"
                _check_member_name(m.name, where)
                norm = posixpath.normpath(m.name.lstrip("./") or ".")
                parts = norm.split("/")
                for i in range(1, len(parts)):
                    if "/".join(parts[:i]) in symlinks:
                        raise UnsafeInputError(f"{where}: lies below the symlink {'/'.join(parts[:i])!r}")
                if m.ischr() or m.isblk():
                    raise UnsafeInputError(f"{where}: device node (type {m.type!r}) is not allowed")
                if m.isfifo():
                    raise UnsafeInputError(f"{where}: FIFO is not allowed")
                if m.issym():
                    _check_link_target(norm, m.linkname, where, symlink=True)
                    symlinks.add(norm)
                elif m.islnk():
                    _check_link_target(norm, m.linkname, where, symlink=False)
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeInputError(f"{where}: member type {m.type!r} is not allowed")
                total += max(m.size, 0)
                if total > limits.max_total:
                    raise UnsafeInputError(f"rootfs delta unpacks to more than {limits.max_total} bytes")
                members.append(m)
    except tarfile.TarError as err:
        raise UnsafeInputError(f"rootfs delta {path.name}: not a valid tar archive: {err}") from None
    return members


def _check_member_name(name: str, where: str) -> None:
    if "\x00" in name:
        raise UnsafeInputError(f"{where}: name contains NUL")
    if name.startswith("/"):
        raise UnsafeInputError(f"{where}: absolute path is not allowed")
    if ".." in name.split("/"):
        raise UnsafeInputError(f"{where}: '..' component is not allowed")


def _check_link_target(member: str, target: str, where: str, *, symlink: bool) -> None:
    if "\x00" in target:
        raise UnsafeInputError(f"{where}: link target contains NUL")
    if not symlink:
        if target.startswith("/") or ".." in target.split("/"):
            raise UnsafeInputError(f"{where}: hard link target {target!r:.200} leaves the tree")
        return
    if member in AGENT_PATHS or member.startswith("dev/"):
        raise UnsafeInputError(f"{where}: a symlink is not allowed where the agent itself works in the "
                               f"tree (dev, dev/*, proc)")
    if target.startswith("/"):
        resolved = posixpath.normpath(target.lstrip("/"))  # resolved inside the rootfs, as the container does
        if resolved.startswith(".."):
            raise UnsafeInputError(f"{where}: symlink target {target!r:.200} points outside the root")
        return
    base = posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise UnsafeInputError(f"{where}: symlink target {target!r:.200} points outside the tree")


#: top-level paths the agent creates, binds or mounts on in a restored rootfs
AGENT_PATHS = frozenset({"dev", "proc"})


def _symlink_in(dest: Path, name: str, target: str) -> None:
    """symlinkat(*target*, parent, leaf) with every parent component of *name* opened
    with O_NOFOLLOW below *dest*: nothing already in the tree is followed."""
    parts = name.split("/")
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.symlink(target, parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def extract_tar(path: Path, dest: Path, limits: TarLimits = TarLimits()) -> int:
    """Check, then extract into *dest* (created, must be empty); returns member count."""
    members = check_tar(path, limits)
    dest.mkdir(mode=0o700)
    links = [m for m in members if m.issym()]
    with tarfile.open(path, "r:") as tar:
        try:
            tar.extractall(dest, members=[m for m in members if not m.issym()], filter="tar")
            for m in links:
                _symlink_in(dest, posixpath.normpath(m.name.lstrip("./")), m.linkname)
        except (tarfile.TarError, OSError) as err:
            raise UnsafeInputError(f"rootfs delta {path.name}: extraction refused: {err}") from None
    return len(members)


def overlay_tree(src: Path, dest: Path) -> int:
    """Move every entry of the checked, extracted tree *src* over *dest*; returns the count.

    Directories are merged, anything else replaces what is there. Each target's
    parent is resolved and must stay inside *dest* (a symlinked directory in
    *dest* cannot redirect a write outside it); a directory replacing a file or a
    file replacing a directory is refused.
    """
    root = os.path.realpath(dest)
    moved = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = os.path.realpath(os.path.join(root, rel)) if rel != "." else root
        if target_dir != root and not target_dir.startswith(root + os.sep):
            raise UnsafeInputError(f"rootfs changes: {rel!r} resolves outside the root filesystem")
        for name in dirnames:
            t = os.path.join(target_dir, name)
            if os.path.islink(os.path.join(dirpath, name)):
                os.replace(os.path.join(dirpath, name), t)
                moved += 1
            elif not os.path.lexists(t):
                os.mkdir(t, 0o755)
            elif not os.path.isdir(t) or os.path.islink(t):
                raise UnsafeInputError(f"rootfs changes: directory {os.path.join(rel, name)!r} replaces a non-directory")
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            t = os.path.join(target_dir, name)
            if os.path.isdir(t) and not os.path.islink(t):
                raise UnsafeInputError(f"rootfs changes: file {os.path.join(rel, name)!r} replaces a directory")
            os.replace(os.path.join(dirpath, name), t)
            moved += 1
    return moved
