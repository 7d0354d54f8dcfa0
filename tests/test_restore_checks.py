"""Hostile and unrestorable image sets are refused before any process exists.

Each case takes a real CRIU dump of the counter program, breaks one thing
with the image codec, and checks (a) the error class / CLI exit code and
message, (b) that the restore never forked (``os.fork`` is replaced by a
tripwire for the in-process calls).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from capture.errors import ImageError, RestoreRefusedError
from capture.images import read_image, write_image
from tests.programs.build import build_programs
from tests.programs.harness import hetmig, image_pids, start, tree_digest, wait_gone, wait_lines
from tests.support.tools import criu, require

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real CRIU dump of the counter (the process is gone afterwards)."""
    require("criu")
    base = tmp_path_factory.mktemp("hostile")
    progs = build_programs(base / "bin")
    out = base / "count.log"
    proc = start([str(progs["counter"]), str(out)])
    try:
        wait_lines(out, 2)
        images = base / "img"
        images.mkdir()
        criu("dump", "-t", str(proc.pid), "-D", str(images), "-o", "dump.log")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_gone(image_pids(images))
    return images


@pytest.fixture
def images(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "img"
    shutil.copytree(pristine, dest)
    return dest


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def tripwire(*_a: Any, **_k: Any) -> int:
        raise AssertionError("restore forked a process although the image set must be refused first")

    monkeypatch.setattr(os, "fork", tripwire)
    yield


def pid_of(images: Path) -> int:
    first: Any = read_image(images / "pstree.img").entries[0]
    return int(first.pid)


def edit(images: Path, name: str, fn: Callable[[Any], None]) -> None:
    img = read_image(images / name)
    fn(img)
    write_image(images / name, img)


def pages_outside_vmas(images: Path) -> None:
    pid = pid_of(images)
    def add(img: Any) -> None:
        e = type(img.entries[1])()
        e.vaddr = 0x1000  # below mmap_min_addr: never inside a VMA
        e.nr_pages = 1
        e.flags = 4
        img.entries.insert(1, e)
        img.extra.insert(1, None)
    edit(images, f"pagemap-{pid}.img", add)
    with open(images / "pages-1.img", "ab") as fh:
        fh.write(b"\0" * 4096)


def overlapping_vmas(images: Path) -> None:
    pid = pid_of(images)
    def widen(img: Any) -> None:
        vmas = sorted(img.entries[0].vmas, key=lambda v: v.start)
        vmas[0].end = vmas[1].start + 0x1000
    edit(images, f"mm-{pid}.img", widen)


def fd_out_of_range(images: Path) -> None:
    def big(img: Any) -> None:
        img.entries[0].fd = 1 << 22
    name = next(p.name for p in images.glob("fdinfo-*.img"))
    edit(images, name, big)


def path_escapes_root(images: Path) -> None:
    def escape(img: Any) -> None:
        for fe in img.entries:
            if fe.HasField("reg") and fe.reg.name == "/dev/null":
                fe.reg.name = "/../../../etc/shadow"
                return
        raise AssertionError("no /dev/null entry to break")
    edit(images, "files.img", escape)


def run_past_pages_file(images: Path) -> None:
    pages = images / "pages-1.img"
    pages.write_bytes(pages.read_bytes()[:-4096])


def absurd_run_length(images: Path) -> None:
    pid = pid_of(images)
    def huge(img: Any) -> None:
        img.entries[-1].nr_pages = (1 << 32) - 1
    edit(images, f"pagemap-{pid}.img", huge)


def duplicate_pid(images: Path) -> None:
    def dup(img: Any) -> None:
        e = type(img.entries[0])()
        e.CopyFrom(img.entries[0])
        e.ppid = img.entries[0].pid
        img.entries.append(e)
        img.extra.append(None)
    edit(images, "pstree.img", dup)


def vma_outside_user_space(images: Path) -> None:
    pid = pid_of(images)
    def far(img: Any) -> None:
        vmas = [v for v in img.entries[0].vmas if v.end < 0xFFFF_0000_0000_0000]
        top = max(vmas, key=lambda v: v.end)
        top.end = 0x8000_0000_0000 + 0x1000
    edit(images, f"mm-{pid}.img", far)


HOSTILE = [
    (pages_outside_vmas, "outside every VMA"),
    (overlapping_vmas, "overlaps"),
    (fd_out_of_range, "out of range"),
    (path_escapes_root, "'..'"),
    (run_past_pages_file, "file has"),
    (absurd_run_length, "outside user space"),
    (duplicate_pid, "appears twice"),
    (vma_outside_user_space, "outside user space"),
]


@pytest.mark.parametrize("breaker,message", HOSTILE, ids=[b.__name__ for b, _ in HOSTILE])
def test_hostile_image_set_refused_before_any_process(images: Path, no_fork: None,
                                                      breaker: Callable[[Path], None], message: str) -> None:
    from capture.restore import restore

    breaker(images)
    digest = tree_digest(images)
    with pytest.raises(ImageError) as info:
        restore(images)
    assert message in str(info.value)
    assert tree_digest(images) == digest


@pytest.mark.parametrize("breaker,message", HOSTILE[:4], ids=[b.__name__ for b, _ in HOSTILE[:4]])
def test_hostile_image_set_cli_exit_2(images: Path, breaker: Callable[[Path], None], message: str) -> None:
    breaker(images)
    res = hetmig("restore", "-D", str(images), "--detach")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert not os.path.exists(f"/proc/{pid_of(images)}")


def test_unrestorable_fd_kind_refused_naming_kind_fd_pid(images: Path, no_fork: None) -> None:
    from capture.restore import restore

    pid = pid_of(images)
    name = next(p.name for p in images.glob("fdinfo-*.img"))
    fds = read_image(images / name)
    target: Any = fds.entries[-1]

    def to_socket(img: Any) -> None:
        for fe in img.entries:
            if fe.id == target.id:
                fe.type = 5  # UNIXSK
    edit(images, "files.img", to_socket)
    with pytest.raises(RestoreRefusedError) as info:
        restore(images)
    msg = str(info.value)
    assert "UNIXSK" in msg and f"fd {target.fd}" in msg and f"pid {pid}" in msg
    res = hetmig("restore", "-D", str(images), "--detach")
    assert res.returncode == 3 and "UNIXSK" in res.stderr


def test_changed_mapped_file_refused(images: Path, tmp_path: Path, no_fork: None) -> None:
    """The counter binary is rebuilt bigger: its mapping no longer matches the image."""
    from capture.restore import restore

    files = read_image(images / "files.img")
    entries: list[Any] = list(files.entries)
    exe = next(fe.reg for fe in entries if fe.HasField("reg") and fe.reg.name.endswith("/counter"))
    copy = tmp_path / "counter-copy"
    shutil.copy2(exe.name, copy)
    with open(copy, "ab") as fh:
        fh.write(b"\0" * 100)

    def repoint(img: Any) -> None:
        for fe in img.entries:
            if fe.HasField("reg") and fe.reg.name == exe.name:
                fe.reg.name = str(copy)
    edit(images, "files.img", repoint)
    with pytest.raises(RestoreRefusedError) as info:
        restore(images)
    assert "size changed" in str(info.value) and str(copy) in str(info.value)


def test_truncated_image_refused(images: Path, no_fork: None) -> None:
    from capture.restore import restore

    pid = pid_of(images)
    core = images / f"core-{pid}.img"
    core.write_bytes(core.read_bytes()[:-7])
    with pytest.raises(ImageError):
        restore(images)


def test_missing_image_dir_is_bad_input(tmp_path: Path) -> None:
    res = hetmig("restore", "-D", str(tmp_path / "nope"), "--detach")
    assert res.returncode == 2
    assert "not a directory" in res.stderr


def test_root_confines_paths(images: Path, tmp_path: Path, no_fork: None) -> None:
    """With --root, every path must exist inside the root: an empty root refuses the counter."""
    from capture.restore import restore

    root = tmp_path / "emptyroot"
    root.mkdir()
    with pytest.raises(RestoreRefusedError) as info:
        restore(images, root=str(root))
    assert str(root) in str(info.value)


def test_resolve_in_root_clamps_symlinks(tmp_path: Path) -> None:
    from capture.restore_checks import resolve_in_root

    root = tmp_path / "r"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("/usr/lib")
    (root / "up").symlink_to("../../../../")
    real = os.path.realpath(root)
    assert resolve_in_root(str(root), "/lib/x.so") == os.path.join(real, "usr/lib/x.so")
    assert resolve_in_root(str(root), "/up/etc/passwd") == os.path.join(real, "etc/passwd")


def test_restore_checks_do_not_write(images: Path) -> None:
    from capture.restore_checks import load_image_set

    digest = tree_digest(images)
    iset = load_image_set(images)
    assert iset.root_process.pid == pid_of(images)
    assert iset.root_process.page_runs
    assert tree_digest(images) == digest
    _ = subprocess  # imported for type checkers of helpers
