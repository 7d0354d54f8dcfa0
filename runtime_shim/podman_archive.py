"""Podman checkpoint archives <-> hetmig's unified image directory.

Podman's ``container checkpoint --export`` archive (a tar, uncompressed or
compressed with gzip or zstd) holds, at its top level::

    checkpoint/             CRIU image files (+ descriptors.json)
    config.dump             podman's ContainerConfig (JSON)
    spec.dump               the OCI runtime spec the container ran with (JSON)
    rootfs-diff.tar         changes to the container's root file system (optional)
    deleted.files           JSON list of files deleted from the rootfs (optional)
    network.status, stats-dump, devshm-checkpoint.tar, ctr.log, artifacts/,
    volumes/, dump.log      other podman/CRIU side files (optional)

hetmig's unified directory holds the CRIU images at its top level, next to
``hetmig.json`` (spec, translation, checksums); the podman side files are
kept verbatim under ``podman/`` so that an export writes them back and real
``podman container restore --import`` accepts the result.

Import is defensive: only regular files and directories are extracted; a
member with an absolute name, a ``..`` component, a NUL, a name that is not
UTF-8, or a link, device node or FIFO is refused (BadInputError naming the
member), and the target directory must be empty, so nothing can land outside
it. Modes are reduced to rw/rx bits (no setuid/setgid/sticky). The nested
``rootfs-diff.tar`` is stored as a file, never extracted here.

Export refuses an image directory without ``config.dump``/``spec.dump``
metadata unless asked to synthesise ``spec.dump`` from hetmig.json; podman
itself needs ``config.dump``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator

from capture.errors import BadInputError, PlatformError

CHECKPOINT_DIR = "checkpoint"
CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
ROOTFS_DIFF = "rootfs-diff.tar"
DELETED_FILES = "deleted.files"
PODMAN_DIR = "podman"
HETMIG_JSON = "hetmig.json"
# top-level names podman writes besides checkpoint/ (kept verbatim under podman/)
PODMAN_SIDE_FILES = (
    CONFIG_DUMP,
    SPEC_DUMP,
    ROOTFS_DIFF,
    DELETED_FILES,
    "network.status",
    "stats-dump",
    "devshm-checkpoint.tar",
    "ctr.log",
    "dump.log",
)
PODMAN_SIDE_DIRS = ("artifacts", "volumes")
MAX_MEMBER_BYTES = 64 << 30
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


class Compression(Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


@dataclass(frozen=True, slots=True)
class ImportResult:
    directory: Path
    images: tuple[str, ...]
    podman_files: tuple[str, ...]
    container_name: str
    compression: Compression


def detect_compression(path: Path) -> Compression:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


def _safe_name(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = member.name
    if "\x00" in name:
        raise BadInputError(f"{archive}: member {name!r} contains NUL")
    p = PurePosixPath(name)
    if p.is_absolute():
        raise BadInputError(f"{archive}: member {name!r} has an absolute path (refusing path traversal)")
    parts = [x for x in p.parts if x not in ("", ".")]
    if ".." in parts:
        raise BadInputError(f"{archive}: member {name!r} contains '..' (refusing path traversal)")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _check_type(member: tarfile.TarInfo, archive: Path) -> None:
    if member.isfile() or member.isdir():
        return
    kind = (
        "symlink" if member.issym() else
        "hard link" if member.islnk() else
        "device node" if member.ischr() or member.isblk() else
        "FIFO" if member.isfifo() else f"type {member.type!r}"
    )
    raise BadInputError(f"{archive}: member {member.name!r} is a {kind} (only regular files and directories)")


def _open_tar(archive: Path) -> tuple[tarfile.TarFile, subprocess.Popen[bytes] | None, Compression]:
    comp = detect_compression(archive)
    if comp is Compression.ZSTD:
        zstd = shutil.which("zstd")
        if zstd is None:
            raise PlatformError(f"{archive}: zstd-compressed and the zstd program is not installed")
        proc = subprocess.Popen([zstd, "-q", "-dc", str(archive)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            return tarfile.open(fileobj=proc.stdout, mode="r|"), proc, comp
        except tarfile.TarError as err:  # zstd wrote nothing usable (corrupt or cut input)
            proc.stdout.close()
            proc.kill()
            proc.wait()
            raise BadInputError(f"{archive}: not a zstd-compressed tar archive ({err})") from None
    try:
        if comp is Compression.GZIP:
            return tarfile.open(str(archive), mode="r|gz"), None, comp
        return tarfile.open(str(archive), mode="r|"), None, comp
    except (tarfile.TarError, OSError, EOFError, TypeError) as err:  # TypeError: tarfile on a cut gzip header
        raise BadInputError(f"{archive}: not a tar archive ({err})") from None


def _dest_for(rel: PurePosixPath) -> PurePosixPath | None:
    """Where an archive member goes in the unified directory (None: the root itself)."""
    if rel == PurePosixPath("."):
        return None
    top = rel.parts[0]
    if top == CHECKPOINT_DIR:
        rest = rel.parts[1:]
        return PurePosixPath(*rest) if rest else None
    if top == HETMIG_JSON and len(rel.parts) == 1:
        return PurePosixPath(PODMAN_DIR, ".archive-" + HETMIG_JSON)
    return PurePosixPath(PODMAN_DIR, *rel.parts)


def _write_member(src: IO[bytes], dest: Path, size: int) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        remaining = size
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                raise BadInputError(f"{dest.name}: archive member is truncated")
            out.write(chunk)
            remaining -= len(chunk)


def import_archive(archive: Path, directory: Path) -> ImportResult:
    """Extract a podman checkpoint archive into *directory* (must be empty or absent).

    On any failure what was extracted is removed again (and *directory* too
    if this call created it).
    """
    if not archive.is_file():
        raise BadInputError(f"{archive}: no such archive")
    created = not directory.exists()
    if not created:
        if directory.is_symlink() or not directory.is_dir():
            raise BadInputError(f"-D {directory}: exists and is not a directory")
        if any(directory.iterdir()):
            raise BadInputError(f"-D {directory}: not empty")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError(f"-D {directory}: cannot create it ({err.strerror})") from None
    root = directory.resolve()
    try:
        return _import_into(archive, root)
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _import_into(archive: Path, root: Path) -> ImportResult:
    tar, proc, comp = _open_tar(archive)
    written: list[str] = []
    try:
        for member in tar:
            rel = _safe_name(member, archive)
            _check_type(member, archive)
            dest_rel = _dest_for(rel)
            if dest_rel is None:
                continue
            if dest_rel.parts[0] in (HETMIG_JSON, f".{HETMIG_JSON}.tmp"):
                raise BadInputError(f"{archive}: member {member.name!r} would land on {dest_rel} (hetmig's own file)")
            dest = root.joinpath(*dest_rel.parts)
            # parents are directories we created ourselves: no symlink can be on the way
            try:
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True, mode=0o755)
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise BadInputError(
                        f"{archive}: member {member.name!r} is {member.size} bytes (limit {MAX_MEMBER_BYTES})")
                dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                src = tar.extractfile(member)
                if src is None:
                    raise BadInputError(f"{archive}: member {member.name!r} has no data")
                _write_member(src, dest, member.size)
            except FileExistsError:
                raise BadInputError(f"{archive}: member {member.name!r} appears twice") from None
            except (NotADirectoryError, IsADirectoryError):  # a file where a directory was, or the other way
                raise BadInputError(f"{archive}: member {member.name!r} collides with an earlier member") from None
            except OSError as err:
                if err.errno == errno.ENAMETOOLONG:
                    raise BadInputError(f"{archive}: member {member.name[:80]!r}...: name too long") from None
                raise PlatformError(f"{archive}: cannot extract member {member.name!r}", errno=err.errno) from err
            os.chmod(dest, member.mode & 0o755 | 0o600)
            written.append(str(dest_rel))
    except tarfile.TarError as err:
        raise BadInputError(f"{archive}: corrupt tar archive ({err})") from None
    finally:
        tar.close()
        if proc is not None:
            proc.stdout.close() if proc.stdout else None
            if proc.wait() != 0:
                raise BadInputError(f"{archive}: zstd could not decompress it (exit {proc.returncode})")
    images = tuple(sorted(w for w in written if not w.startswith(PODMAN_DIR + "/")))
    podman_files = tuple(sorted(w for w in written if w.startswith(PODMAN_DIR + "/")))
    if "inventory.img" not in images:
        raise BadInputError(f"{archive}: no checkpoint/inventory.img (not a podman checkpoint archive)")
    spec_path = root / PODMAN_DIR / SPEC_DUMP
    config_path = root / PODMAN_DIR / CONFIG_DUMP
    for p in (spec_path, config_path):
        if not p.is_file():
            raise BadInputError(f"{archive}: no {p.name} (not a podman checkpoint archive)")
    spec = _load_json(spec_path, archive)
    config = _load_json(config_path, archive)
    name = str(config.get("name", "")) if isinstance(config, dict) else ""
    _write_hetmig_json(root, archive, spec, config)
    return ImportResult(root, images, podman_files, name, comp)


def _load_json(path: Path, archive: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: JSONDecodeError, int over the digit limit
        raise BadInputError(f"{archive}: {path.name} is not JSON ({str(err)[:200]})") from None
    except RecursionError:
        raise BadInputError(f"{archive}: {path.name} is not JSON (nested too deeply)") from None


_MTYPE_ARCH = {"X86_64": "x86_64", "ARM": "arm", "AARCH64": "aarch64", "PPC64": "ppc64le", "S390": "s390x",
               "MIPS": "mips64", "LOONGARCH64": "loongarch64", "RISCV64": "riscv64"}


def images_facts(root: Path) -> tuple[str | None, list[int]]:
    """(architecture, pids) read from pstree.img and core-PID.img with hetmig's codec.

    This also proves the imported images decode (an ImageError names the file).
    """
    from capture.images import read_image, to_dict

    for name in ("pstree.img",):
        if not (root / name).is_file():
            raise BadInputError(f"{root}: no {name} in the archive's checkpoint/ (not a CRIU checkpoint)")
    tree = to_dict(read_image(root / "pstree.img"))
    pids = [int(e["pid"]) for e in tree.get("entries", [])]
    if not pids:
        raise BadInputError(f"{root / 'pstree.img'}: no process in the checkpoint")
    core = to_dict(read_image(root / f"core-{pids[0]}.img"))
    entries = core.get("entries") or [{}]
    mtype = str(entries[0].get("mtype", ""))
    return _MTYPE_ARCH.get(mtype, mtype.lower() or None), pids


def _write_hetmig_json(root: Path, archive: Path, spec: Any, config: Any) -> None:
    from runtime_shim.backends.linux import HETMIG_JSON_VERSION, image_checksums, translate_spec

    arch, pids = images_facts(root)

    cid = str(config.get("id", "")) if isinstance(config, dict) else ""
    name = str(config.get("name", "")) if isinstance(config, dict) else ""
    doc = {
        "version": HETMIG_JSON_VERSION,
        "container_id": cid,
        "created": time.time(),
        "engine": "criu",
        "source": {"os": "linux", "arch": arch, "kernel": None, "cpu_features": [],
                   "note": "imported from a podman checkpoint archive: arch read from core-PID.img; "
                           "the source kernel and CPU features were not recorded"},
        "pids": pids,
        "origin": {"format": "podman-checkpoint", "archive": str(archive.resolve()), "name": name,
                   "image": config.get("rootfsImageName") if isinstance(config, dict) else None},
        "spec": spec if isinstance(spec, dict) else None,
        "translation": translate_spec(spec, _jail_name(name or cid)) if isinstance(spec, dict) else {"state": "pending"},
        "checksums": image_checksums(root),
    }
    tmp = root / f".{HETMIG_JSON}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / HETMIG_JSON)


def _jail_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned or "imported"


# -- export -------------------------------------------------------------------


def _iter_files(base: Path) -> Iterator[Path]:
    for path in sorted(base.rglob("*")):
        if path.is_symlink():
            raise BadInputError(f"{path}: symlink in the image directory (refusing to export it)")
        yield path


def export_archive(directory: Path, archive: Path, *, compression: Compression = Compression.NONE) -> list[str]:
    """Write *directory* (a unified image dir) as a podman checkpoint archive; return member names."""
    if not (directory / "inventory.img").is_file():
        raise BadInputError(f"-D {directory}: no inventory.img (not a checkpoint image directory)")
    podman = directory / PODMAN_DIR
    doc: dict[str, Any] = {}
    if (directory / HETMIG_JSON).is_file():
        from runtime_shim.backends.linux import verify_checksums

        doc = verify_checksums(directory)
    if not (podman / CONFIG_DUMP).is_file():
        raise BadInputError(
            f"-D {directory}: no {PODMAN_DIR}/{CONFIG_DUMP}: podman restore --import needs podman's container "
            "config, which only an imported podman checkpoint carries"
        )
    spec_bytes: bytes
    if (podman / SPEC_DUMP).is_file():
        spec_bytes = (podman / SPEC_DUMP).read_bytes()
    elif isinstance(doc.get("spec"), dict):
        spec_bytes = json.dumps(doc["spec"]).encode()
    else:
        raise BadInputError(f"-D {directory}: no {PODMAN_DIR}/{SPEC_DUMP} and no spec in {HETMIG_JSON}")
    if compression is Compression.ZSTD:
        raise BadInputError("--compress zstd is not supported for export (use gzip or none)")
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    names: list[str] = []
    try:
        tar_out = (
            tarfile.open(str(tmp), mode="w:gz", format=tarfile.PAX_FORMAT)
            if compression is Compression.GZIP
            else tarfile.open(str(tmp), mode="w", format=tarfile.PAX_FORMAT)
        )
        with tar_out as tar:
            def add_dir(arcname: str) -> None:
                info = tarfile.TarInfo(arcname)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = int(time.time())
                tar.addfile(info)
                names.append(arcname + "/")

            def add_file(src: Path, arcname: str) -> None:
                info = tarfile.TarInfo(arcname)
                st = src.stat()
                info.size = st.st_size
                info.mode = stat.S_IMODE(st.st_mode) & 0o755 | 0o600
                info.mtime = int(st.st_mtime)
                with open(src, "rb") as fh:
                    tar.addfile(info, fh)
                names.append(arcname)

            add_dir(CHECKPOINT_DIR)
            for path in _iter_files(directory):
                rel = path.relative_to(directory)
                if rel.parts[0] in (PODMAN_DIR, HETMIG_JSON) or rel.name.startswith("."):
                    continue
                arc = str(PurePosixPath(CHECKPOINT_DIR, *rel.parts))
                if path.is_dir():
                    add_dir(arc)
                elif path.is_file():
                    add_file(path, arc)
            for path in _iter_files(podman):
                rel = path.relative_to(podman)
                if rel.name.startswith(".archive-"):
                    continue
                arc = str(PurePosixPath(*rel.parts))
                if path.is_dir():
                    add_dir(arc)
                elif path.is_file() and rel.parts != (SPEC_DUMP,):
                    add_file(path, arc)
            info = tarfile.TarInfo(SPEC_DUMP)
            info.size = len(spec_bytes)
            info.mode = 0o600
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(spec_bytes))
            names.append(SPEC_DUMP)
            if (directory / HETMIG_JSON).is_file():
                add_file(directory / HETMIG_JSON, HETMIG_JSON)
        os.replace(tmp, archive)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return names
