"""The codec against real CRIU 4.1 dumps and real crit.

For every file of every recorded dump (tests/test_images_dumps.py): our
reader decodes it, our writer re-encodes it byte for byte, and ``to_dict``
equals ``crit decode`` (pretty and plain) parsed. The dumps are checked to
contain the image kinds each scenario must produce, so nothing passes on an
empty directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capture.images import decode_bytes, encode_bytes, from_dict, image_name_for, read_image, to_dict
from proto import core_pb2, fdinfo_pb2, pipe_data_pb2, pstree_pb2
from tests.test_images_dumps import Dump, crit_batch, get_dumps

pytestmark = pytest.mark.integration

# Image kinds each scenario's dump must contain (besides the usual set).
COMMON_KINDS = {"INVENTORY", "PSTREE", "CORE", "MM", "PAGEMAP", "PAGES", "FILES", "FDINFO",
                "FS", "IDS", "STATS"}
EXPECTED = {
    "sleep": COMMON_KINDS,
    "pipeline": COMMON_KINDS | {"PIPES_DATA"},
    "threads": COMMON_KINDS,
    "rich": COMMON_KINDS | {"PIPES_DATA", "FIFO_DATA", "GHOST_FILE", "SK_QUEUES",
                            "MEMFD_INODE", "REMAP_FPATH", "TTY_INFO", "TTY_DATA"},
}


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dump]:
    return get_dumps(tmp_path_factory)


def _structured(d: Dump) -> list[Path]:
    return [p for p in d.image_files() if image_name_for(p.name) != "PAGES"]


@pytest.mark.parametrize("scenario", ["sleep", "pipeline", "threads", "rich"])
def test_reader_decodes_every_file_and_writer_is_byte_identical(
        dumps: dict[str, Dump], scenario: str) -> None:
    d = dumps[scenario]
    kinds = set()
    for path in d.image_files():
        data = path.read_bytes()
        img = read_image(path)
        kinds.add(img.name)
        assert img.name == image_name_for(path.name), path.name
        if img.name != "PAGES":
            assert img.entries, f"{path.name}: no entries decoded"
        assert encode_bytes(img) == data, f"{path.name}: re-encoding differs"
        assert decode_bytes(data, path.name).entries == img.entries
    missing = EXPECTED[scenario] - kinds
    assert not missing, f"{scenario} dump lacks {sorted(missing)} (has {sorted(kinds)})"


def test_scenario_contents(dumps: dict[str, Dump]) -> None:
    # threads: four core images for one task, each thread's registers present.
    t = dumps["threads"]
    cores = sorted(t.dir.glob("core-*.img"))
    assert len(cores) == 4
    tree = read_image(t.dir / "pstree.img").entries_as(pstree_pb2.pstree_entry)
    assert len(tree) == 1 and len(tree[0].threads) == 4
    for c in cores:
        core = read_image(c).entries_as(core_pb2.core_entry)[0]
        assert core.thread_info.gpregs.ip != 0
        assert core.thread_info.fpregs.HasField("xsave")
    # pipeline: three tasks, 64 KiB of `yes` output in the pipe, fd 3 on the file.
    p = dumps["pipeline"]
    assert len(read_image(p.dir / "pstree.img").entries) == 3
    pd = read_image(p.dir / "pipes-data.img")
    assert pd.entries_as(pipe_data_pb2.pipe_data_entry)[0].bytes == len(pd.extra[0] or b"") > 0
    assert set((pd.extra[0] or b"")[:64]) <= set(b"y\n")
    files = read_image(p.dir / "files.img").entries_as(fdinfo_pb2.file_entry)
    regs = [f.reg.name for f in files if f.HasField("reg")]
    assert any(name.endswith("/out.txt") for name in regs), regs
    # rich: ghost contents and queued socket bytes are the payloads.
    r = dumps["rich"]
    ghost = read_image(next(r.dir.glob("ghost-file-*.img")))
    assert b"ghost contents\n" in b"".join(e or b"" for e in ghost.extra)
    q = read_image(r.dir / "sk-queues.img")
    assert b"queued-bytes" in b"".join(e or b"" for e in q.extra)
    kinds = {fdinfo_pb2.fd_types.Name(f.type)
             for f in read_image(r.dir / "files.img").entries_as(fdinfo_pb2.file_entry)}
    assert {"REG", "PIPE", "FIFO", "UNIXSK", "EVENTFD", "EVENTPOLL", "INOTIFY", "SIGNALFD",
            "TIMERFD", "TTY", "MEMFD"} <= kinds, kinds


@pytest.mark.parametrize("scenario", ["sleep", "pipeline", "threads", "rich"])
@pytest.mark.parametrize("pretty", [True, False], ids=["pretty", "plain"])
def test_to_dict_equals_crit_decode(dumps: dict[str, Dump], scenario: str, pretty: bool) -> None:
    d = dumps[scenario]
    files = [p.name for p in _structured(d)]
    assert len(files) >= 10
    cmd = ["decode", "--pretty", "-i", "{}"] if pretty else ["decode", "-i", "{}"]
    theirs = crit_batch(d.dir, cmd, files)
    for name in files:
        ours = to_dict(read_image(d.dir / name), pretty=pretty)
        assert ours == json.loads(theirs[name]), name


@pytest.mark.parametrize("scenario", ["sleep", "pipeline", "threads", "rich"])
def test_from_dict_inverts_to_dict_byte_for_byte(dumps: dict[str, Dump], scenario: str) -> None:
    for path in _structured(dumps[scenario]):
        img = read_image(path)
        for pretty in (True, False):
            back = from_dict(json.loads(json.dumps(to_dict(img, pretty=pretty))))
            assert encode_bytes(back) == path.read_bytes(), (path.name, pretty)
