"""The migration protocol's framing and the checks on what a peer may send:
limits enforced before allocation, run validation, image names, hostile tars."""

from __future__ import annotations

import io
import struct
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_shim.migration import safety, wire
from runtime_shim.migration.wire import PAGE_SIZE, Limits, MsgType, ProtocolError


class RecordingStream:
    """A byte stream that records how many bytes were asked for and delivered."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.sent = bytearray()
        self.max_request = 0

    def recv_into(self, buf: memoryview, n: int = 0) -> int:
        n = n or len(buf)
        self.max_request = max(self.max_request, n)
        chunk = self.data[self.pos:self.pos + n]
        buf[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def sendall(self, data: bytes | memoryview) -> None:
        self.sent += bytes(data)


def frame(mtype: int, payload: bytes, flags: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHI", mtype, flags, len(payload) if length is None else length) + payload


def test_json_roundtrip() -> None:
    s = RecordingStream(b"")
    wire.send_json(s, MsgType.HELLO, {"version": 1, "nonce": "ab" * 16})
    got = wire.read_frame(RecordingStream(bytes(s.sent)), Limits())
    assert got.mtype is MsgType.HELLO and got.json() == {"version": 1, "nonce": "ab" * 16}


def test_oversized_frame_refused_after_reading_only_the_header() -> None:
    lim = Limits()
    s = RecordingStream(frame(MsgType.HELLO, b"", length=0xFFFFFFFF) + b"x" * 100)
    with pytest.raises(ProtocolError, match=r"frame HELLO length=4294967295 exceeds the limit 1048576"):
        wire.read_frame(s, lim)
    assert s.pos == 8 and s.max_request == 8  # nothing of the payload was read or allocated


def test_oversized_data_chunk_refused() -> None:
    s = RecordingStream(frame(MsgType.FILE_DATA, b"", length=(4 << 20) + 1))
    with pytest.raises(ProtocolError, match="FILE_DATA length=4194305 exceeds"):
        wire.read_frame(s, Limits())


def test_unknown_type_refused() -> None:
    with pytest.raises(ProtocolError, match=r"frame type=999 is unknown"):
        wire.read_frame(RecordingStream(frame(999, b"{}")), Limits())


def test_pages_roundtrip() -> None:
    s = RecordingStream(b"")
    runs = [(0x7f0000000000, 2), (0x7f0000010000, 1)]
    data = bytes(range(256)) * (3 * PAGE_SIZE // 256)
    wire.send_pages(s, 42, runs, data, round_no=3)
    f = wire.read_frame(RecordingStream(bytes(s.sent)), Limits())
    assert f.mtype is MsgType.PAGES and f.flags == 3
    pid, got_runs, got_data = wire.decode_pages(f.payload, Limits())
    assert (pid, got_runs, bytes(got_data)) == (42, runs, data)


def _pages_frame(runs: list[tuple[int, int]], n_runs: int | None = None, data_pages: int | None = None,
                 length: int | None = None) -> bytes:
    table = b"".join(struct.pack(">QI", a, n) for a, n in runs)
    pages = sum(n for _, n in runs) if data_pages is None else data_pages
    payload = struct.pack(">II", 1, len(runs) if n_runs is None else n_runs) + table + b"\0" * (pages * PAGE_SIZE)
    return frame(MsgType.PAGES, payload, length=length)


def test_page_batch_count_refused_before_reading_data() -> None:
    lim = Limits(max_batch_pages=16)
    s = RecordingStream(_pages_frame([(0x10000, 17)], data_pages=0,
                                     length=8 + 12 + 16 * PAGE_SIZE))
    with pytest.raises(ProtocolError, match=r"PAGES total pages=17 exceeds the limit 16"):
        wire.read_frame(s, lim)
    assert s.pos == 8 + 8 + 12  # header, pid/count, run table; no page data


def test_too_many_runs_refused_before_reading_the_table() -> None:
    lim = Limits(max_batch_runs=4)
    s = RecordingStream(_pages_frame([], n_runs=1000, length=8 + 12))
    with pytest.raises(ProtocolError, match=r"PAGES n_runs=1000 exceeds the limit 4"):
        wire.read_frame(s, lim)
    assert s.pos == 16


@pytest.mark.parametrize("runs, message", [
    ([(0x10001, 1)], r"run\[0\]\.addr=0x10001 is not page-aligned"),
    ([(0x10000, 0)], r"run\[0\]\.n_pages=0"),
    ([((1 << 57) - PAGE_SIZE, 2)], r"ends above"),
])
def test_bad_runs_refused(runs: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        wire.read_frame(RecordingStream(_pages_frame(runs)), Limits())


def test_pages_length_must_match_runs() -> None:
    data = _pages_frame([(0x10000, 1)], data_pages=2)
    with pytest.raises(ProtocolError, match="disagrees with its runs"):
        wire.read_frame(RecordingStream(data), Limits())


def test_truncated_stream_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="connection closed while reading HELLO payload"):
        wire.read_frame(RecordingStream(frame(MsgType.HELLO, b'{"a":1}')[:-2]), Limits())


@pytest.mark.parametrize("payload, message", [
    (b"\xff\xfe", "not valid JSON"),
    (b"[1,2]", "is list, expected a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_bad_json_refused(payload: bytes, message: str) -> None:
    f = wire.read_frame(RecordingStream(frame(MsgType.CHECK, payload)), Limits())
    with pytest.raises(ProtocolError, match=message):
        f.json()


def test_typed_accessors_name_field_and_value() -> None:
    with pytest.raises(ProtocolError, match=r"begin\.announced_bytes='9' is not an integer"):
        wire.get_int({"announced_bytes": "9"}, "announced_bytes", "begin")
    with pytest.raises(ProtocolError, match=r"hello\.nonce='zz' does not match"):
        wire.get_str({"nonce": "zz"}, "nonce", "hello", pattern=wire.NONCE_RE)
    with pytest.raises(ProtocolError, match=r"x\.n=-1 is out of range"):
        wire.get_int({"n": -1}, "n", "x")
    with pytest.raises(ProtocolError, match=r"x\.b=1 is not a boolean"):
        wire.get_bool({"b": 1}, "b", "x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data: bytes) -> None:
    s = RecordingStream(data)
    try:
        f = wire.read_frame(s, Limits(max_control=1024, max_batch_pages=4, max_chunk=1024))
        if f.mtype is MsgType.PAGES:
            wire.decode_pages(f.payload, Limits(max_batch_pages=4))
        elif f.mtype not in wire.RAW_TYPES:
            f.json()
    except ProtocolError:
        pass
    assert s.max_request <= max(8, 1024 * 12 + 8, 4 * PAGE_SIZE)


# -- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("../etc/passwd", "not a single path component"),
    ("..", "not a single path component"),
    (".", "not a single path component"),
    ("a/b", "not a single path component"),
    ("x..img", "contains '..'"),
    ("pages\x00.img", "contains NUL"),
    ("core 1.img", r"outside \[A-Za-z0-9._-\]"),
    ("", r"outside \[A-Za-z0-9._-\]"),
    ("a" * 129, "longer than 128"),
    (7, "is not a string"),
])
def test_bad_image_names_refused(name: object, message: str) -> None:
    with pytest.raises(safety.UnsafeInputError, match=message):
        safety.check_image_name(name)


def test_good_image_names() -> None:
    for name in ("core-1.img", "pages-1.img", "inventory.img", "hetmig.json", "A_b.c-d"):
        assert safety.check_image_name(name) == name


def test_create_file_in_refuses_existing_and_symlinks(tmp_path: Path) -> None:
    import os

    d = tmp_path / "m"
    d.mkdir()
    (tmp_path / "outside").write_text("secret")
    os.symlink(tmp_path / "outside", d / "core-1.img")
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safety.UnsafeInputError, match="already exists"):
            safety.create_file_in(dfd, "core-1.img")
        fd = safety.create_file_in(dfd, "mm-1.img")
        os.close(fd)
        with pytest.raises(safety.UnsafeInputError, match="already exists"):
            safety.create_file_in(dfd, "mm-1.img")
    finally:
        os.close(dfd)
    assert (tmp_path / "outside").read_text() == "secret"


# -- tar -------------------------------------------------------------------------------------

def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w") as tar:
        for m in members:
            body = data.get(m.name)
            if body is not None:
                m.size = len(body)
                tar.addfile(m, io.BytesIO(body))
            else:
                tar.addfile(m)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    if kind == tarfile.DIRTYPE:
        m.mode = 0o755
    return m


@pytest.mark.parametrize("members, message", [
    ([_member("../evil")], r"'\.\.' component"),
    ([_member("a/../../evil")], r"'\.\.' component"),
    ([_member("/etc/passwd")], "absolute path"),
    ([_member("link", tarfile.SYMTYPE, "../../etc")], "points outside the tree"),
    ([_member("a/link", tarfile.SYMTYPE, "../../x")], "points outside the tree"),
    ([_member("abs", tarfile.SYMTYPE, "/../../etc/shadow")], "points outside the root"),
    ([_member("dev", tarfile.SYMTYPE, "/etc")], "where the agent itself works"),
    ([_member("dev/null", tarfile.SYMTYPE, "/etc/passwd")], "where the agent itself works"),
    ([_member("proc", tarfile.SYMTYPE, "etc")], "where the agent itself works"),
    ([_member("dev/sda", tarfile.BLKTYPE)], "device node"),
    ([_member("dev/null", tarfile.CHRTYPE)], "device node"),
    ([_member("fifo", tarfile.FIFOTYPE)], "FIFO"),
    ([_member("hard", tarfile.LNKTYPE, "../outside")], "hard link target"),
    ([_member("d", tarfile.SYMTYPE, "sub"), _member("d/x")], "lies below the symlink 'd'"),
])
def test_hostile_tar_refused(tmp_path: Path, members: list[tarfile.TarInfo], message: str) -> None:
    path = _tar(tmp_path / "delta.tar", members)
    with pytest.raises(safety.UnsafeInputError, match=message):
        safety.extract_tar(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil").exists()


def test_good_tar_extracts(tmp_path: Path) -> None:
    members = [_member("etc", tarfile.DIRTYPE), _member("etc/hostname"),
               _member("etc/alias", tarfile.SYMTYPE, "hostname"), _member("bin", tarfile.DIRTYPE),
               _member("bin/sh", tarfile.SYMTYPE, "../etc/hostname"),
               _member("etc/mtab", tarfile.SYMTYPE, "/proc/mounts")]  # podman puts this one in
    path = _tar(tmp_path / "delta.tar", members, {"etc/hostname": b"b\n"})
    assert safety.extract_tar(path, tmp_path / "out") == 6
    assert (tmp_path / "out/etc/alias").read_text() == "b\n"
    # an absolute symlink is kept as it is (the container resolves it in its root);
    # the agent never follows it
    assert os.readlink(tmp_path / "out/etc/mtab") == "/proc/mounts"


def test_tar_limits(tmp_path: Path) -> None:
    path = _tar(tmp_path / "delta.tar", [_member(f"f{i}") for i in range(5)])
    with pytest.raises(safety.UnsafeInputError, match="more than 3 members"):
        safety.check_tar(path, safety.TarLimits(max_members=3))
    (tmp_path / "junk.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(safety.UnsafeInputError, match="not a valid tar"):
        safety.check_tar(tmp_path / "junk.tar")
