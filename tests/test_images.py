"""Unit, malformed-input and property tests of the image codec (no CRIU needed).

Images are built from our own messages; tests/test_images_criu.py checks the
same code against real CRIU dumps and real crit.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.errors import ImageError
from capture.images import (
    IMG_COMMON_MAGIC,
    IMG_SERVICE_MAGIC,
    KINDS,
    MAX_ENTRY_SIZE,
    Image,
    decode_bytes,
    encode_bytes,
    from_dict,
    image_name_for,
    read_image,
    to_dict,
    write_image,
)
from proto import (
    core_pb2,
    core_x86_pb2,
    ipc_desc_pb2,
    fdinfo_pb2,
    ghost_file_pb2,
    ipc_msg_pb2,
    ipc_sem_pb2,
    ipc_shm_pb2,
    mm_pb2,
    pagemap_pb2,
    pipe_data_pb2,
    pstree_pb2,
    sk_inet_pb2,
    stats_pb2,
    tcp_stream_pb2,
)

U32 = struct.Struct("<I")
CORE_MAGIC = 0x55053847


def _core() -> core_pb2.core_entry:
    c = core_pb2.core_entry(mtype=core_pb2.core_entry.X86_64)
    ti = c.thread_info
    ti.clear_tid_addr = 0x7F0000001000
    g = ti.gpregs
    for i, name in enumerate(("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
                              "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp",
                              "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")):
        setattr(g, name, 0x1000 + i)
    g.mode = core_x86_pb2.NATIVE
    f = ti.fpregs
    f.cwd, f.swd, f.twd, f.fop, f.rip, f.rdp, f.mxcsr, f.mxcsr_mask = 0x37F, 0, 0, 0, 0, 0, 0x1F80, 0xFFFF
    f.st_space.extend(range(32))
    f.xmm_space.extend(range(64))
    c.tc.task_state = 1
    c.tc.exit_code = 0
    c.tc.personality = 0
    c.tc.flags = 0x400000
    c.tc.blk_sigset = 0x1000
    c.tc.comm = "sleep"
    c.thread_core.futex_rla = 0
    c.thread_core.futex_rla_len = 24
    c.thread_core.creds.uid = 0
    for name in ("gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid", "secbits"):
        setattr(c.thread_core.creds, name, 0)
    c.thread_core.creds.cap_eff.extend([0xFFFFFFFF, 0x1FF])
    return c


def _core_image() -> Image:
    return Image.new("CORE", [_core()])


def _pagemap_image() -> Image:
    head = pagemap_pb2.pagemap_head(pages_id=1)
    entries = [pagemap_pb2.pagemap_entry(vaddr=0x400000 + i * 0x3000, nr_pages=i + 1, flags=4)
               for i in range(3)]
    return Image.new("PAGEMAP", [head, *entries])


def _pipes_data_image() -> Image:
    e = pipe_data_pb2.pipe_data_entry(pipe_id=77, bytes=5, size=65536)
    e2 = pipe_data_pb2.pipe_data_entry(pipe_id=78, bytes=0)
    return Image.new("PIPES_DATA", [e, e2], [b"hello", b""])


def _stats_image() -> Image:
    s = stats_pb2.stats_entry()
    d = s.dump
    d.freezing_time, d.frozen_time, d.memdump_time, d.memwrite_time = 1, 2, 3, 4
    d.pages_scanned, d.pages_skipped_parent, d.pages_written, d.pages_lazy = 5, 0, 5, 0
    return Image.new("STATS", [s])


SEEDS = {
    "core-1.img": _core_image,
    "pagemap-1.img": _pagemap_image,
    "pipes-data.img": _pipes_data_image,
    "stats-dump": _stats_image,
}


# --- the magic table and file names -------------------------------------------------------

@pytest.mark.parametrize(("filename", "name"), [
    ("inventory.img", "INVENTORY"), ("core-123.img", "CORE"), ("pagemap-123.img", "PAGEMAP"),
    ("pagemap-shmem-4096.img", "PAGEMAP"), ("pages-1.img", "PAGES"), ("mm-5.img", "MM"),
    ("fdinfo-2.img", "FDINFO"), ("files.img", "FILES"), ("fs-9.img", "FS"), ("ids-9.img", "IDS"),
    ("creds-9.img", "CREDS"), ("sigacts-9.img", "SIGACT"), ("pipes-data.img", "PIPES_DATA"),
    ("seccomp.img", "SECCOMP"), ("cgroup.img", "CGROUP"), ("utsns-11.img", "UTSNS"),
    ("ipcns-var-11.img", "IPC_VAR"), ("ipcns-shm-11.img", "IPCNS_SHM"),
    ("timens-0.img", "TIMENS"), ("tty-info.img", "TTY_INFO"), ("stats-dump", "STATS"),
    ("stats-restore", "STATS"), ("stats-dump.img", "STATS"), ("irmap-cache", "IRMAP_CACHE"),
    ("ghost-file-1a.img", "GHOST_FILE"), ("tcp-stream-2f.img", "TCP_STREAM"),
    ("mountpoints-12.img", "MNTS"), ("netns-3.img", "NETNS"), ("netns-ct-3.img", "NETNF_CT"),
    ("route6-3.img", "ROUTE6"), ("tmpfs-dev-7.tar.gz.img", "TMPFS_DEV"),
    ("/some/dir/core-7.img", "CORE"), ("remap-fpath.img", "REMAP_FPATH"), ("memfd.img", "MEMFD_INODE"),
])
def test_image_name_for(filename: str, name: str) -> None:
    assert image_name_for(filename) == name


@pytest.mark.parametrize("filename", ["core.img", "core-x.img", "random.txt", "pages-.img", ""])
def test_image_name_for_refuses_unknown_names(filename: str) -> None:
    with pytest.raises(KeyError):
        image_name_for(filename)


def test_magic_table_is_consistent() -> None:
    assert len({k.magic for k in KINDS.values()}) == len(KINDS)
    for kind in KINDS.values():
        cls = kind.message_class()
        assert cls.DESCRIPTOR.name == kind.message
    assert KINDS["INVENTORY"].magic == 0x58313116
    assert KINDS["CORE"].magic == CORE_MAGIC
    assert KINDS["STATS"].head.value == "service" and KINDS["IRMAP_CACHE"].head.value == "service"


# --- the grammar -----------------------------------------------------------------------------

def test_core_image_layout_is_head_magic_size_message() -> None:
    img = _core_image()
    data = encode_bytes(img)
    body = _core().SerializeToString()
    assert data == U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(len(body)) + body
    back = decode_bytes(data, "core-1.img")
    assert back.name == "CORE" and back.magic == CORE_MAGIC
    assert back.entries == img.entries and back.extra == [None]


def test_inventory_has_lone_magic_and_stats_the_service_head() -> None:
    from proto import inventory_pb2

    inv = Image.new("INVENTORY", [inventory_pb2.inventory_entry(img_version=2)])
    assert encode_bytes(inv)[:4] == U32.pack(0x58313116)
    assert encode_bytes(inv)[4:8] == U32.pack(2)  # the entry size right after the magic
    assert encode_bytes(_stats_image())[:8] == U32.pack(IMG_SERVICE_MAGIC) + U32.pack(0x57093306)


def test_pipes_data_payload_follows_entry() -> None:
    data = encode_bytes(_pipes_data_image())
    img = decode_bytes(data, "pipes-data.img")
    assert img.extra == [b"hello", b""]
    assert data.endswith(b"hello" + U32.pack(len(img.entries[1].SerializeToString()))
                         + img.entries[1].SerializeToString())


def test_pages_are_raw(tmp_path: Path) -> None:
    p = tmp_path / "pages-1.img"
    p.write_bytes(b"\xab" * 8192)
    img = read_image(p)
    assert img.name == "PAGES" and img.magic == 0 and img.raw == b"\xab" * 8192
    write_image(tmp_path / "pages-2.img", img)
    assert (tmp_path / "pages-2.img").read_bytes() == p.read_bytes()
    with pytest.raises(ImageError, match="raw images have no JSON form"):
        to_dict(img)


def test_write_image_is_atomic_and_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "core-1.img"
    write_image(p, _core_image())
    assert read_image(p).entries == _core_image().entries
    assert [x.name for x in tmp_path.iterdir()] == ["core-1.img"]


def test_special_layouts_round_trip() -> None:
    ghost = ghost_file_pb2.ghost_file_entry(uid=0, gid=0, mode=0o100644, chunks=True, size=10)
    chunks = [ghost_file_pb2.ghost_chunk_entry(len=3, off=0),
              ghost_file_pb2.ghost_chunk_entry(len=2, off=8)]
    images = [
        Image.new("GHOST_FILE", [ghost, *chunks], [None, b"abc", b"xy"]),
        Image.new("GHOST_FILE", [ghost_file_pb2.ghost_file_entry(uid=1, gid=1, mode=0o100600)],
                  [b"whole file\n"]),
        Image.new("TCP_STREAM", [tcp_stream_pb2.tcp_stream_entry(
            inq_len=3, inq_seq=1, outq_len=2, outq_seq=2, opt_mask=5, snd_wscale=7,
            mss_clamp=1460)], [b"in!ou"]),
        Image.new("IPCNS_SEM", [ipc_sem_pb2.ipc_sem_entry(desc=_ipc_desc(), nsems=3)],
                  [struct.pack("<3H", 1, 2, 3) + b"\0\0"]),
        Image.new("IPCNS_SHM", [ipc_shm_pb2.ipc_shm_entry(desc=_ipc_desc(), size=5)],
                  [b"hello\0\0\0"]),
        Image.new("IPCNS_MSG", [ipc_msg_pb2.ipc_msg_entry(desc=_ipc_desc(), qbytes=100, qnum=2)],
                  [_ipc_msgs([(1, b"abc"), (2, b"0123456789")])]),
    ]
    for img in images:
        data = encode_bytes(img)
        back = decode_bytes(data, "x")
        assert back.entries == img.entries and back.extra == img.extra, img.name
        assert encode_bytes(from_dict(to_dict(back))) == data, img.name
        assert encode_bytes(from_dict(to_dict(back, pretty=False))) == data, img.name
    d = to_dict(images[2])
    assert d["entries"][0]["extra"] == {"inq": base64.encodebytes(b"in!").decode(),
                                        "outq": base64.encodebytes(b"ou").decode()}
    assert to_dict(images[3])["entries"][0]["extra"] == [1, 2, 3]
    msgs = to_dict(images[5])["entries"][0]["extra"]
    assert msgs[0] == {"mtype": 1, "msize": 3} and base64.decodebytes(msgs[3].encode()) == b"0123456789"


def _ipc_desc() -> ipc_desc_pb2.ipc_desc_entry:
    return ipc_desc_pb2.ipc_desc_entry(key=1, uid=0, gid=0, cuid=0, cgid=0, mode=0o600, id=7)


def _ipc_msgs(msgs: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for mtype, data in msgs:
        body = ipc_msg_pb2.ipc_msg(mtype=mtype, msize=len(data)).SerializeToString()
        out += U32.pack(len(body)) + body + data.ljust((len(data) + 7) // 8 * 8, b"\0")
    return out


# --- crit-shaped dicts -----------------------------------------------------------------------

def test_to_dict_pretty_renders_like_crit() -> None:
    d = to_dict(_core_image())
    assert d["magic"] == "CORE"
    e = d["entries"][0]
    assert e["mtype"] == "X86_64"
    assert e["thread_info"]["clear_tid_addr"] == "0x7f0000001000"
    # hex propagates to every integer inside a hex-marked message field
    assert e["thread_info"]["gpregs"]["r15"] == "0x1000"
    assert e["thread_info"]["gpregs"]["mode"] == "NATIVE"
    assert e["thread_info"]["fpregs"]["cwd"] == 0x37F
    assert e["tc"]["task_state"] == "Alive"
    assert e["tc"]["blk_sigset"] == "0x1000"
    plain = to_dict(_core_image(), pretty=False)["entries"][0]
    assert plain["tc"]["task_state"] == 1 and plain["thread_info"]["gpregs"]["r15"] == 0x1000


def test_to_dict_flags_dev_and_ip() -> None:
    mm = mm_pb2.mm_entry(exe_file_id=3)
    for name in ("mm_start_code", "mm_end_code", "mm_start_data", "mm_end_data",
                 "mm_start_stack", "mm_start_brk", "mm_brk", "mm_arg_start", "mm_arg_end",
                 "mm_env_start", "mm_env_end"):
        setattr(mm, name, 0x400000)
    v = mm.vmas.add(start=0x1000, end=0x3000, pgoff=0, shmid=0, prot=3, flags=0x22,
                    status=(1 << 0) | (1 << 9) | (1 << 20), fd=-1)
    e = to_dict(Image.new("MM", [mm]))["entries"][0]["vmas"][0]
    assert e["prot"] == "PROT_READ | PROT_WRITE"
    assert e["flags"] == "MAP_PRIVATE | MAP_ANON"
    assert e["status"] == "VMA_AREA_REGULAR | VMA_ANON_PRIVATE | 0x100000"
    assert e["start"] == "0x1000" and e["fd"] == -1
    assert v.fd == -1
    isk = sk_inet_pb2.inet_sk_entry(id=1, ino=2, family=2, type=1, proto=6, state=10,
                                    src_port=80, dst_port=0, flags=2, backlog=4)
    isk.src_addr.append(struct.unpack("<I", bytes([127, 0, 0, 1]))[0])
    isk.dst_addr.extend(struct.unpack("<4I", bytes(16)))
    fe = fdinfo_pb2.file_entry(type=fdinfo_pb2.INETSK, id=1)
    fe.isk.CopyFrom(isk)
    _fill_required(fe.isk)
    d = to_dict(Image.new("FILES", [fe]))["entries"][0]["isk"]
    assert d["family"] == "INET" and d["type"] == "STREAM" and d["proto"] == "TCP"
    assert d["state"] == "LISTEN" and d["src_addr"] == ["127.0.0.1"] and d["dst_addr"] == ["::"]
    back = from_dict(to_dict(Image.new("FILES", [fe])))
    assert back.entries == [fe]
    from proto import fh_pb2

    irmap = fh_pb2.irmap_cache_entry(dev=(8 << 8) | 1, inode=5, path="/x")
    assert to_dict(Image.new("IRMAP_CACHE", [irmap]))["entries"][0]["dev"] == "8:1"
    from proto import fsnotify_pb2

    wd = fsnotify_pb2.inotify_wd_entry(id=1, i_ino=2, mask=0x100, ignored_mask=0,
                                       s_dev=(259 << 20) | 3, wd=1)
    wd.f_handle.bytes, wd.f_handle.type = 8, 1
    assert to_dict(Image.new("INOTIFY_WD", [wd]))["entries"][0]["s_dev"] == "259:3"
    assert from_dict(to_dict(Image.new("INOTIFY_WD", [wd]))).entries == [wd]


def _fill_required(isk: sk_inet_pb2.inet_sk_entry) -> None:
    isk.fown.uid = isk.fown.euid = isk.fown.signum = isk.fown.pid_type = isk.fown.pid = 0
    o = isk.opts
    o.so_sndbuf = o.so_rcvbuf = 4096
    o.so_snd_tmo_sec = o.so_snd_tmo_usec = o.so_rcv_tmo_sec = o.so_rcv_tmo_usec = 0


@pytest.mark.parametrize(("doc", "message"), [
    ({"magic": "NOPE", "entries": []}, "not a known image kind"),
    ({"entries": []}, "expected"),
    ({"magic": "PSTREE", "entries": [{"pid": 1}]}, "required fields missing"),
    ({"magic": "PSTREE", "entries": [{"pid": "x", "ppid": 0, "pgid": 1, "sid": 1}]},
     "PSTREE|pid"),
    ({"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "bogus": 1}]},
     "no such field"),
    ({"magic": "CORE", "entries": [{"mtype": "VAX"}]}, "not one of"),
    ({"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 1, "extra": 5}]}, "base64"),
])
def test_from_dict_refuses_bad_documents(doc: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        from_dict(doc)


# --- malformed input -------------------------------------------------------------------------

def test_error_names_file_magic_entry_offset() -> None:
    data = encode_bytes(_pagemap_image())
    with pytest.raises(ImageError) as ei:
        decode_bytes(data[:-3], "pagemap-9.img")
    err = ei.value
    assert err.file == "pagemap-9.img" and err.magic == KINDS["PAGEMAP"].magic
    assert err.entry == 3 and err.offset is not None and err.offset > 8
    text = str(err)
    assert text.startswith("pagemap-9.img magic=0x56084025 entry=3 offset=")
    assert "short read" in text


def test_every_truncation_is_refused_or_a_clean_prefix() -> None:
    img = _pagemap_image()
    data = encode_bytes(img)
    boundaries = {8}
    pos = 8
    for e in img.entries:
        pos += 4 + len(e.SerializeToString())
        boundaries.add(pos)
    refused = 0
    for cut in range(len(data)):
        if cut in boundaries:
            back = decode_bytes(data[:cut], "pagemap-1.img")
            assert back.entries == img.entries[:len(back.entries)]
        else:
            with pytest.raises(ImageError, match="short read"):
                decode_bytes(data[:cut], "pagemap-1.img")
            refused += 1
    assert refused == len(data) - len([b for b in boundaries if b < len(data)]) > 40


@pytest.mark.parametrize(("data", "message"), [
    (b"", "short read: magic"),
    (U32.pack(IMG_COMMON_MAGIC), "short read: magic after the image head"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(0xDEADBEEF), "unknown magic 0xdeadbeef"),
    (U32.pack(0x12345678), "unknown magic 0x12345678"),
    (U32.pack(CORE_MAGIC) + U32.pack(0), "starts with its magic alone, expected the IMG_COMMON"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(0x57093306), "STATS image starts with the IMG_COMMON"),
    (U32.pack(IMG_SERVICE_MAGIC) + U32.pack(CORE_MAGIC), "CORE image starts with the IMG_SERVICE"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(0x58313116), "INVENTORY image starts with the IMG_C"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(0xFFFFFFFF),
     "entry size 4294967295 exceeds the limit of 67108864"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(MAX_ENTRY_SIZE + 1),
     "exceeds the limit"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(100) + b"\0" * 10,
     "short read: core_entry entry needs 100 bytes, 10 left"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(3) + b"\xff\xff\xff",
     "core_entry does not parse"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + U32.pack(0),
     "core_entry lacks required fields: mtype"),
    (U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC) + b"\x01\x00",
     "short read: entry size needs 4 bytes, 2 left"),
])
def test_malformed_images_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_bytes(data, "core-1.img")


def _with_entry(name: str, msg: Message, tail: bytes = b"") -> bytes:
    kind = KINDS[name]
    body = msg.SerializeToString()
    return U32.pack(IMG_COMMON_MAGIC) + U32.pack(kind.magic) + U32.pack(len(body)) + body + tail


@pytest.mark.parametrize(("data", "message"), [
    (_with_entry("PIPES_DATA", pipe_data_pb2.pipe_data_entry(pipe_id=1, bytes=0xFFFFFFFF)),
     "payload of 4294967295 bytes exceeds the limit"),
    (_with_entry("PIPES_DATA", pipe_data_pb2.pipe_data_entry(pipe_id=1, bytes=10), b"abc"),
     "short read: payload needs 10 bytes, 3 left"),
    (_with_entry("GHOST_FILE", ghost_file_pb2.ghost_file_entry(uid=0, gid=0, mode=0, chunks=True))
     + U32.pack(4) + ghost_file_pb2.ghost_chunk_entry(len=1 << 40, off=0).SerializeToString()[:4],
     "short read|does not parse"),
    (_with_entry("IPCNS_MSG", ipc_msg_pb2.ipc_msg_entry(desc=_ipc_desc(), qbytes=0, qnum=1 << 30)),
     "qnum=1073741824 exceeds the limit"),
    (_with_entry("IPCNS_SEM", ipc_sem_pb2.ipc_sem_entry(desc=_ipc_desc(), nsems=4)),
     "short read: semaphore values needs 8 bytes, 0 left"),
])
def test_malformed_payloads_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_bytes(data, "x.img")


def test_encode_refuses_incomplete_messages() -> None:
    with pytest.raises(ImageError, match="cannot be encoded"):
        encode_bytes(Image.new("PSTREE", [pstree_pb2.pstree_entry(pid=1)]))
    with pytest.raises(ImageError, match="does not belong to CORE"):
        encode_bytes(Image("CORE", 0x1234, [_core()], [None]))
    with pytest.raises(ImageError, match="unknown image kind"):
        encode_bytes(Image("NOPE", 0, [], []))


@pytest.mark.parametrize(("image", "message"), [
    (lambda: Image.new("PIPES_DATA", [pipe_data_pb2.pipe_data_entry(pipe_id=1, bytes=5)],
                       [b"abc"]), "payload is 3 bytes, pipe_data_entry declares 5"),
    (lambda: Image.new("PIPES_DATA", [pipe_data_pb2.pipe_data_entry(pipe_id=1, bytes=5)]),
     "payload is 0 bytes, pipe_data_entry declares 5"),
    (lambda: Image.new("PSTREE", [pstree_pb2.pstree_entry(pid=1, ppid=0, pgid=1, sid=1)],
                       [b"x"]), "pstree_entry carries no payload, got 1 bytes"),
    (lambda: Image.new("IPCNS_SEM", [ipc_sem_pb2.ipc_sem_entry(desc=_ipc_desc(), nsems=3)],
                       [b"\0" * 6]), "payload is 6 bytes, ipc_sem_entry declares 8"),
])
def test_encode_refuses_payloads_that_contradict_entries(image: Any, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        encode_bytes(image())


def test_read_image_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "core-1.img")


# --- property tests --------------------------------------------------------------------------

def _decode_or_image_error(data: bytes, source: str) -> None:
    try:
        img = decode_bytes(data, source)
    except ImageError:
        return
    # Whatever decodes also re-encodes and renders without other exceptions.
    try:
        encode_bytes(img)
        to_dict(img)
        to_dict(img, pretty=False)
    except ImageError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from(list(SEEDS)))
def test_fuzz_random_bytes_raise_only_image_error(data: bytes, source: str) -> None:
    _decode_or_image_error(data, source)
    heads = U32.pack(IMG_COMMON_MAGIC) + U32.pack(CORE_MAGIC)
    _decode_or_image_error(heads + data, source)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(encode_bytes(SEEDS[name]()))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "u32"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "u32" and len(data) >= pos + 4:
            data[pos:pos + 4] = U32.pack(draw(st.sampled_from(
                [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, MAX_ENTRY_SIZE, MAX_ENTRY_SIZE + 1, 1 << 20])))
    return name, bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_fuzz_mutated_images_raise_only_image_error(case: tuple[str, bytes]) -> None:
    name, data = case
    _decode_or_image_error(data, name)


_u32 = st.integers(0, 2**32 - 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_u32, _u32, _u32, _u32, st.lists(_u32, max_size=4)), max_size=6))
def test_property_pstree_round_trip(rows: list[tuple[int, int, int, int, list[int]]]) -> None:
    entries = [pstree_pb2.pstree_entry(pid=a, ppid=b, pgid=c, sid=d, threads=t)
               for a, b, c, d, t in rows]
    img = Image.new("PSTREE", entries)
    data = encode_bytes(img)
    assert decode_bytes(data, "pstree.img").entries == entries
    assert encode_bytes(from_dict(to_dict(img))) == data
    assert encode_bytes(from_dict(to_dict(img, pretty=False))) == data


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_u32, st.binary(max_size=64)), max_size=5))
def test_property_pipes_data_round_trip(rows: list[tuple[int, bytes]]) -> None:
    entries = [pipe_data_pb2.pipe_data_entry(pipe_id=p, bytes=len(b)) for p, b in rows]
    img = Image.new("PIPES_DATA", entries, [b for _, b in rows])
    data = encode_bytes(img)
    back = decode_bytes(data, "pipes-data.img")
    assert back.entries == entries and back.extra == [b for _, b in rows]
    assert encode_bytes(from_dict(to_dict(img))) == data


@settings(max_examples=100, deadline=None)
@given(_u32, st.lists(st.tuples(st.integers(0, 2**64 - 1), _u32, st.sampled_from([0, 1, 2, 4, 6, 9])),
                      max_size=8))
def test_property_pagemap_round_trip(pages_id: int, rows: list[tuple[int, int, int]]) -> None:
    head = pagemap_pb2.pagemap_head(pages_id=pages_id)
    ents = [pagemap_pb2.pagemap_entry(vaddr=v, nr_pages=n, flags=f) for v, n, f in rows]
    img = Image.new("PAGEMAP", [head, *ents])
    data = encode_bytes(img)
    assert decode_bytes(data, "pagemap-1.img").entries == [head, *ents]
    assert encode_bytes(from_dict(to_dict(img))) == data


def test_entries_as_types_and_checks() -> None:
    img = _pagemap_image()
    assert isinstance(img.entries[0], pagemap_pb2.pagemap_head)
    ents = img.entries_as(pagemap_pb2.pagemap_entry, start=1)
    assert [e.nr_pages for e in ents] == [1, 2, 3]
    with pytest.raises(ImageError, match="entry is a pagemap_head, expected pagemap_entry") as ei:
        img.entries_as(pagemap_pb2.pagemap_entry)
    assert ei.value.entry == 0
    with pytest.raises(ImageError, match="expected core_entry"):
        _pipes_data_image().entries_as(core_pb2.core_entry)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.sampled_from(["0x10", "1:2", "PROT_READ | 0x8", "Alive", "X86_64", "::1", "=00ab"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)


def _paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, prefix + (i,))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SEEDS)), st.booleans(), st.data())
def test_fuzz_from_dict_raises_only_image_error(name: str, pretty: bool, data: st.DataObject) -> None:
    import copy

    doc = to_dict(SEEDS[name](), pretty=pretty)
    mutated = copy.deepcopy(doc)
    paths = [p for p in _paths(mutated) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = mutated
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = data.draw(_json_values)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        img = from_dict(mutated)
    except ImageError:
        return
    try:
        encode_bytes(img)
    except ImageError:
        pass
