"""Podman checkpoint-archive interop with real podman and real CRIU.

* An archive made by ``podman container checkpoint --export`` (podman's
  default zstd compression) is imported by ``hetmig import``: CRIU images at
  the top of the directory, podman's files under podman/, hetmig.json with
  the spec, translation and checksums; real crit reads the imported images.
* ``hetmig export`` of that directory is accepted by real
  ``podman container restore --import``, and the restored counter continues.
* Hostile archives (path traversal, symlinks, device nodes) are refused and
  nothing is written outside the target directory.

podman restore --import pulls the container's image (it cannot restore a
``--rootfs`` container), so the busybox rootfs is imported as a local image
first (no registry involved) and removed at the end.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tools import crit, require
from tests.test_hook_common import hetmig, unique, wait_for

pytestmark = pytest.mark.integration

COUNTER = (
    "echo kept > /root/marker; rm /etc/group; "  # rootfs changes: rootfs-diff.tar and deleted.files
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done"
)


def podman(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([require("podman"), *args], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


@pytest.fixture(scope="module")
def busybox_image(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require("podman")
    tarball = tmp_path_factory.mktemp("img") / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    name = f"localhost/{unique('hetmig-bb')}:latest"
    podman("import", str(tarball), name)
    yield name
    podman("rmi", "-f", name, check=False)


@pytest.fixture
def names() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for n in created:
        podman("rm", "-f", "-t", "0", n, check=False)


def counter(name: str) -> int:
    res = podman("exec", name, "cat", "/tmp/counter", check=False)
    text = res.stdout.strip()
    return int(text) if text.isdigit() else 0


def test_podman_export_import_export_restore(
    tmp_path: Path, busybox_image: str, names: list[str]
) -> None:
    require("criu")
    src, dst = unique("hetmig-src"), unique("hetmig-dst")
    names += [src, dst]
    podman("run", "-d", "--name", src, "--network", "none", busybox_image, "sh", "-c", COUNTER)
    wait_for(lambda: counter(src) >= 5, what="counter to start")
    seen_before = counter(src)
    podman_archive = tmp_path / "podman.tar.zst"
    podman("container", "checkpoint", "--export", str(podman_archive), src)
    assert podman_archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # podman's default: zstd

    image_dir = tmp_path / "unified"
    out = json.loads(hetmig("import", str(podman_archive), "-D", str(image_dir), "--json").stdout)
    assert out["container_name"] == src and out["compression"] == "zstd"
    for img in ("inventory.img", "pstree.img", "descriptors.json"):
        assert (image_dir / img).is_file()
    for side in ("config.dump", "spec.dump", "rootfs-diff.tar", "deleted.files"):
        assert (image_dir / "podman" / side).is_file(), side
    doc = json.loads((image_dir / "hetmig.json").read_text())
    assert doc["spec"]["process"]["args"][-1] == COUNTER
    assert doc["origin"]["image"] == busybox_image
    assert doc["source"]["arch"] == "x86_64" and doc["pids"][0] == 1  # read with hetmig's own image codec
    assert doc["translation"]["state"] in ("ok", "failed", "pending")
    assert "inventory.img" in doc["checksums"]
    # real crit decodes the imported images
    assert "entries" in json.loads(crit(image_dir, "decode", "-i", str(image_dir / "pstree.img")))

    ours = tmp_path / "hetmig-export.tar.gz"
    hetmig("export", "-D", str(image_dir), "-o", str(ours))
    with tarfile.open(ours) as tar:
        members = set(tar.getnames())
    assert {"checkpoint/inventory.img", "config.dump", "spec.dump", "rootfs-diff.tar", "deleted.files",
            "hetmig.json"} <= members
    # and hetmig reads its own (gzip) export back: the same images, byte for byte
    again = tmp_path / "again"
    assert json.loads(hetmig("import", str(ours), "-D", str(again), "--json").stdout)["compression"] == "gzip"
    doc2 = json.loads((again / "hetmig.json").read_text())
    assert {k: v for k, v in doc2["checksums"].items() if not k.startswith("podman/")} == {
        k: v for k, v in doc["checksums"].items() if not k.startswith("podman/")
    }

    podman("rm", "-f", "-t", "0", src)
    podman("container", "restore", "--import", str(ours), "--name", dst)
    info = json.loads(podman("inspect", dst).stdout)[0]
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["State"].get("RestoredAt", "").startswith(("1", "2"))  # podman marks it restored
    first = wait_for(lambda: counter(dst), what="restored counter")
    assert first >= seen_before  # restored from the checkpoint, not started afresh at 1
    time.sleep(0.3)
    assert counter(dst) > first  # and it keeps counting
    # the rootfs changes came along
    assert podman("exec", dst, "cat", "/root/marker").stdout.strip() == "kept"
    assert podman("exec", dst, "ls", "/etc/group", check=False).returncode != 0


def _hostile(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / f"hostile-{unique('a')}.tar"
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("checkpoint/inventory.img")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    "kind,expect",
    [
        ("traversal", "contains '..' (refusing path traversal)"),
        ("absolute", "has an absolute path (refusing path traversal)"),
        ("symlink", "is a symlink (only regular files and directories)"),
        ("device", "is a device node (only regular files and directories)"),
        ("hardlink", "is a hard link (only regular files and directories)"),
    ],
)
def test_import_refuses_hostile_archives(tmp_path: Path, kind: str, expect: str) -> None:
    if kind == "traversal":
        m = tarfile.TarInfo("checkpoint/../../escape.txt")
        archive = _hostile(tmp_path, m, b"owned")
    elif kind == "absolute":
        m = tarfile.TarInfo(str(tmp_path / "abs-escape.txt"))
        archive = _hostile(tmp_path, m, b"owned")
    elif kind == "symlink":
        m = tarfile.TarInfo("checkpoint/link")
        m.type = tarfile.SYMTYPE
        m.linkname = "/etc/passwd"
        archive = _hostile(tmp_path, m)
    elif kind == "device":
        m = tarfile.TarInfo("checkpoint/null")
        m.type = tarfile.CHRTYPE
        m.devmajor, m.devminor = 1, 3
        archive = _hostile(tmp_path, m)
    else:
        m = tarfile.TarInfo("checkpoint/hard")
        m.type = tarfile.LNKTYPE
        m.linkname = "checkpoint/inventory.img"
        archive = _hostile(tmp_path, m)
    target = tmp_path / "out" / "dir"
    res = hetmig("import", str(archive), "-D", str(target), check=False)
    assert res.returncode == 2, res.stderr
    assert expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "abs-escape.txt").exists()
    assert not (tmp_path / "out" / "escape.txt").exists()
    assert not target.exists()  # what was extracted before the bad member is gone again


def test_import_refuses_non_empty_dir_and_export_needs_podman_config(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "keep").write_text("x")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("checkpoint/inventory.img")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    res = hetmig("import", str(archive), "-D", str(target), check=False)
    assert res.returncode == 2 and "not empty" in res.stderr
    images = tmp_path / "images"
    images.mkdir()
    (images / "inventory.img").write_bytes(b"x")
    res = hetmig("export", "-D", str(images), "-o", str(tmp_path / "o.tar"), check=False)
    assert res.returncode == 2 and "podman restore --import needs podman's container config" in res.stderr
    assert not (tmp_path / "o.tar").exists()


def test_import_refuses_incomplete_archives(tmp_path: Path) -> None:
    def archive(*members: str) -> Path:
        path = tmp_path / f"{unique('inc')}.tar"
        with tarfile.open(path, "w") as tar:
            for name in members:
                data = b"{}" if name.endswith(".dump") else b"x"
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    res = hetmig("import", str(archive("config.dump", "spec.dump")), "-D", str(tmp_path / "a"), check=False)
    assert res.returncode == 2 and "no checkpoint/inventory.img (not a podman checkpoint archive)" in res.stderr
    res = hetmig("import", str(archive("checkpoint/inventory.img", "config.dump")), "-D", str(tmp_path / "b"),
                 check=False)
    assert res.returncode == 2 and "no spec.dump (not a podman checkpoint archive)" in res.stderr
    res = hetmig("import", str(archive("checkpoint/inventory.img", "config.dump", "spec.dump")),
                 "-D", str(tmp_path / "c"), check=False)
    assert res.returncode == 2 and "no pstree.img" in res.stderr
    assert not any((tmp_path / d).exists() for d in "abc")
