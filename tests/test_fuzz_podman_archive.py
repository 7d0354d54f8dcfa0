"""Fuzzing podman checkpoint archive import (``hetmig import ARCHIVE -D DIR``).

A minimal valid archive (CRIU inventory/pstree/core images written with
hetmig's codec, config.dump, spec.dump) is the mutation base. Examples add
hostile members (absolute names, ``..``, symlinks, hard links, device nodes,
FIFOs, duplicates, a file where a directory goes and back, names colliding
with hetmig's own files), replace the JSON side files with hostile JSON,
flip and cut bytes of the tar, or are random bytes (plain or gzip). Asserted
per example: a result or a :class:`HetmigError`; nothing appears outside DIR
(the parent is listed before and after); DIR holds only regular files and
directories, no set-id bits; and after a refusal DIR is empty again.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import BadInputError
from capture.images import encode_bytes, from_dict
from runtime_shim.cli import main as hetmig_main
from runtime_shim.podman_archive import import_archive
from tests.test_fuzz_support import FUZZ, json_trees, listing, nested_json, outcome, time_limit

SPEC = {"ociVersion": "1.0.2", "root": {"path": "/var/lib/containers/x/merged"}, "process": {"args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "pid"}]}}
CONFIG = {"id": "0123abcd", "name": "fuzzy", "rootfsImageName": "busybox"}


def _img(d: dict[str, Any]) -> bytes:
    return encode_bytes(from_dict(d))


BASE: list[tuple[str, str, bytes]] = [  # (name, kind, data); kinds: file dir sym lnk chr blk fifo
    ("checkpoint", "dir", b""),
    ("checkpoint/inventory.img", "file", _img({"magic": "INVENTORY", "entries": [{"img_version": 2}]})),
    ("checkpoint/pstree.img", "file", _img({"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}]})),
    ("checkpoint/core-1.img", "file", _img({"magic": "CORE", "entries": [{"mtype": "X86_64"}]})),
    ("config.dump", "file", json.dumps(CONFIG).encode()),
    ("spec.dump", "file", json.dumps(SPEC).encode()),
]
HOSTILE_NAMES = ["/etc/x", "../x", "checkpoint/../../x", "checkpoint/../..", "./../x", "a/./../../x", "checkpoint",
                 "checkpoint/inventory.img", "checkpoint/inventory.img/x", "config.dump", "hetmig.json",
                 "checkpoint/hetmig.json", "checkpoint/.hetmig.json.tmp", "podman", "podman/config.dump",
                 "checkpoint/podman", "checkpoint/podman/spec.dump", ".", "", "a" * 300, "é/ü", "x\\y",
                 "checkpoint/core-1.img/..", "volumes/v/../../../x", "artifacts"]
KINDS = ["file", "dir", "sym", "lnk", "chr", "blk", "fifo"]
MEMBERS = st.tuples(
    st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)),
    st.sampled_from(KINDS),
    st.binary(max_size=64),
)


def build_tar(members: list[tuple[str, str, bytes]], *, mode_bits: int = 0o644) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mode = mode_bits
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "lnk"):
                info.linkname = "/etc/passwd" if kind == "sym" else "config.dump"
            if kind in ("chr", "blk"):
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
    return buf.getvalue()


class Sandbox:
    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.archive = parent / "in" / "ckpt.tar"
        self.target = parent / "out" / "image"
        self.archive.parent.mkdir()
        self.target.parent.mkdir()
        (parent / "neighbour").mkdir()
        (parent / "neighbour" / "keep").write_text("x")

    def run(self, data: bytes, *, cli: bool = False) -> str:
        shutil.rmtree(self.target, ignore_errors=True)
        self.archive.write_bytes(data)
        before = listing(self.parent)
        if cli:
            with time_limit():
                code = hetmig_main(["import", str(self.archive), "-D", str(self.target)])
            assert code in (0, 2), code
            result = "ok" if code == 0 else "BadInputError"
        else:
            result = outcome(lambda: import_archive(self.archive, self.target))
        after = listing(self.parent)
        stray = [p for p in after - before if not p.startswith("out/image")]
        assert not stray, f"written outside -D: {stray}"
        assert before - after <= {"out/image"}, f"removed: {before - after}"
        if result != "ok":
            assert not self.target.exists() or not any(self.target.iterdir()), "refusal left files behind"
        elif self.target.exists():
            for p in self.target.rglob("*"):
                st_ = p.lstat()
                assert stat.S_ISREG(st_.st_mode) or stat.S_ISDIR(st_.st_mode), f"{p} is not a file or directory"
                assert not st_.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), f"{p} mode {st_.st_mode:o}"
        return result


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def test_base_archive_imports(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    """The mutation base imports (hetmig.json written), so the hostile variants are refused for their own sake."""
    assert sandbox.run(build_tar(BASE)) == "ok"
    doc = json.loads((sandbox.target / "hetmig.json").read_text())
    assert doc["pids"] == [1] and doc["source"]["arch"] == "x86_64"
    assert sandbox.run(gzip.compress(build_tar(BASE)), cli=True) == "ok"
    capsys.readouterr()


@FUZZ
@given(extra=st.lists(MEMBERS, min_size=1, max_size=4), at=st.integers(0, len(BASE)),
       mode=st.sampled_from([0o644, 0o4755, 0o2755, 0o1777, 0o7777, 0o000]))
def test_hostile_members(sandbox: Sandbox, extra: list[tuple[str, str, bytes]], at: int, mode: int) -> None:
    sandbox.run(build_tar(BASE[:at] + extra + BASE[at:], mode_bits=mode))


@FUZZ
@given(which=st.sampled_from(["config.dump", "spec.dump"]),
       doc=st.one_of(json_trees(20).map(lambda t: json.dumps(t).encode()),
                     st.sampled_from([nested_json(100_000).encode(), b"9" * 5000, b"[" + b"9" * 5000 + b"]",
                                      b"\xff\xfe", b"", b'{"name": ' + nested_json(900).encode() + b"}"]),
                     st.binary(max_size=100)))
def test_hostile_side_files(sandbox: Sandbox, which: str, doc: bytes) -> None:
    members = [(n, k, doc if n == which else d) for n, k, d in BASE]
    sandbox.run(build_tar(members))


@FUZZ
@given(data=st.data(), compress=st.booleans())
def test_flipped_and_cut_bytes(sandbox: Sandbox, data: st.DataObject, compress: bool) -> None:
    raw = bytearray(build_tar(BASE))
    if compress:
        raw = bytearray(gzip.compress(bytes(raw)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    sandbox.run(bytes(raw[:cut]))


@FUZZ
@given(raw=st.binary(max_size=600), compress=st.booleans())
def test_random_bytes(sandbox: Sandbox, raw: bytes, compress: bool) -> None:
    sandbox.run(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize(
    "members",
    [
        [("checkpoint/a", "file", b"x"), ("checkpoint/a", "dir", b"")],
        [("checkpoint/a", "file", b"x"), ("checkpoint/a/b", "file", b"y")],
        [("checkpoint/.hetmig.json.tmp", "dir", b"")],
        [("checkpoint/hetmig.json", "file", b"{}")],
        [("checkpoint/a", "dir", b""), ("checkpoint/a", "file", b"x")],
        [("checkpoint/" + "a" * 300, "file", b"x")],
        [("checkpoint/" + "a" * 300, "dir", b"")],
    ],
    ids=["file-then-dir", "file-as-parent", "dir-on-hetmig-tmp", "file-on-hetmig-json", "dir-then-file",
         "name-too-long", "dir-name-too-long"],
)
def test_name_collisions_are_bad_input(sandbox: Sandbox, members: list[tuple[str, str, bytes]]) -> None:
    """These escaped as FileExistsError / NotADirectoryError / IsADirectoryError (OSError) once
    (checkpoint/hetmig.json was silently replaced by ours)."""
    assert sandbox.run(build_tar(BASE + members)) == "BadInputError"


@pytest.mark.parametrize("doc", [nested_json(100_000).encode(), b"[" + b"9" * 5000 + b"]"], ids=["deep", "bigint"])
def test_hostile_spec_dump_is_bad_input(sandbox: Sandbox, doc: bytes) -> None:
    members = [(n, k, doc if n == "spec.dump" else d) for n, k, d in BASE]
    with pytest.raises(BadInputError, match="spec.dump is not JSON"):
        import_archive(_write(sandbox, build_tar(members)), sandbox.target)


def _write(sandbox: Sandbox, data: bytes) -> Path:
    sandbox.archive.write_bytes(data)
    return sandbox.archive


@pytest.mark.parametrize("case", ["hostile-member", "garbage", "cut"])
def test_zstd_archives(sandbox: Sandbox, case: str) -> None:
    """zstd archives go through a zstd child process: refusals still come out as HetmigError."""
    import subprocess

    from tests.support.tools import require

    require("zstd")
    plain = build_tar(BASE + [("checkpoint/x", "sym", b"")]) if case == "hostile-member" else build_tar(BASE)
    comp = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True, timeout=30).stdout
    if case == "garbage":
        comp = comp[:4] + bytes(range(256)) * 4
    elif case == "cut":
        comp = comp[: len(comp) // 2]
    assert sandbox.run(comp) == "BadInputError"


@pytest.mark.parametrize("where", ["file/sub", "/proc/hetmig-no-such-dir"], ids=["below-a-file", "uncreatable"])
def test_uncreatable_target_is_bad_input(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """-D below a regular file or in /proc escaped as NotADirectoryError / FileNotFoundError."""
    (sandbox.parent / "file").write_text("x")
    sandbox.archive.write_bytes(build_tar(BASE))
    target = where if where.startswith("/") else str(sandbox.parent / where)
    with time_limit():
        assert hetmig_main(["import", str(sandbox.archive), "-D", target]) == 2
    assert "cannot create it" in capsys.readouterr().err


@pytest.mark.parametrize("cut", [2, 3, 5, 9, 11], ids=lambda n: f"gzip-cut-at-{n}")
def test_cut_gzip_header_is_bad_input(sandbox: Sandbox, cut: int) -> None:
    """A gzip archive cut inside its 10-byte header escaped as TypeError from tarfile (found by a long run)."""
    assert sandbox.run(gzip.compress(build_tar(BASE))[:cut]) == "BadInputError"
