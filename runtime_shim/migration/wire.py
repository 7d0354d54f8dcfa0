"""The migration protocol's framing, message types, limits and payload codecs.

Grammar (all integers big-endian):

    frame      = header payload
    header     = type:u16 flags:u16 length:u32          (8 bytes)
    payload    = length bytes: UTF-8 JSON object for control types,
                 raw bytes for PAGES / FILE_DATA / ROOTFS_DATA
    PAGES      = pid:u32 n_runs:u32 run{n_runs} data     (pid: the address space)
    run        = addr:u64 n_pages:u32                    (12 bytes)
    data       = sum(n_pages) * PAGE_SIZE bytes, runs in order

Every limit is checked on the header (or on the fixed-size run table) BEFORE
the payload is read, so a peer cannot make us allocate more than
``Limits.max_frame`` bytes at once. Control JSON is decoded with size and depth
bounded by the frame size and validated by typed accessors that name the
field and value on error (:class:`ProtocolError`).

It refuses: unknown message types, a frame longer than its type allows, runs
that are unaligned, empty, overlapping the top of the address space, more
runs or pages than allowed, and payloads whose length disagrees with the runs.
"""

from __future__ import annotations

import enum
import json
import socket
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from capture.errors import MigrationError

PAGE_SIZE = 4096
HEADER = struct.Struct(">HHI")
RUN = struct.Struct(">QI")
COUNT = struct.Struct(">I")
PAGES_HEAD = struct.Struct(">II")  # pid, n_runs
PROTOCOL_VERSION = 1
ADDR_LIMIT = 1 << 57  # above any user address on x86_64 (5-level paging)


class ProtocolError(MigrationError):
    """A peer sent something malformed, too large or out of order."""


class MsgType(enum.IntEnum):
    HELLO = 1            # source -> agent: version, nonce, migration_id
    HELLO_REPLY = 2      # agent -> source: version, nonce, echoed nonce, host info
    CHECK = 3            # source -> agent: requirements (host info of the source / image)
    VERDICT = 4          # agent -> source: ok, reasons, missing_flags, missing_xsave
    BEGIN = 5            # source -> agent: migration_id, container_id, spec, announced_bytes
    PAGES = 6            # raw page batch (flags = pre-copy round number)
    ROUND_END = 7        # source -> agent: round, pages, bytes
    FILE_BEGIN = 8       # name, size
    FILE_DATA = 9        # raw chunk
    FILE_END = 10        # sha256
    ROOTFS_BEGIN = 11    # size
    ROOTFS_DATA = 12     # raw chunk
    ROOTFS_END = 13      # sha256
    COMMIT = 14          # source -> agent: restore now (source is frozen)
    CONFIRM = 15         # agent -> source: restored and running
    FINISH = 16          # source -> agent: source destroyed, migration complete
    ABORT = 17           # either side: give up, roll back
    ERROR = 18           # either side: code, message
    ACK = 19             # agent -> source: generic acknowledgement
    PAGES_IMAGE = 20     # source -> agent: build pages-N.img from pre-copied pages (name, pid, size)
    STATUS = 21          # source -> agent, first message of a new connection: migration_id
    LAYOUT = 22          # source -> agent: pid, private anonymous areas, other busy spans (restore target)


RAW_TYPES = frozenset({MsgType.PAGES, MsgType.FILE_DATA, MsgType.ROOTFS_DATA})


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard bounds on everything a peer may announce or send."""

    max_control: int = 1 << 20          # one JSON control message
    max_chunk: int = 4 << 20            # one FILE_DATA / ROOTFS_DATA frame
    max_batch_pages: int = 1024         # pages in one PAGES frame (4 MiB of data)
    max_batch_runs: int = 1024          # runs in one PAGES frame
    max_image_file: int = 256 << 20     # one image file
    max_image_files: int = 4096         # image files per migration
    max_rootfs_delta: int = 4 << 30     # the rootfs-delta tar
    max_total: int = 64 << 30           # bytes announced for one migration
    reserve_free: int = 64 << 20        # state-dir free space that must remain
    max_layout_areas: int = 8192        # areas (and busy spans) in one LAYOUT message

    def max_payload(self, mtype: MsgType) -> int:
        if mtype == MsgType.PAGES:
            return PAGES_HEAD.size + self.max_batch_runs * RUN.size + self.max_batch_pages * PAGE_SIZE
        if mtype in (MsgType.FILE_DATA, MsgType.ROOTFS_DATA):
            return self.max_chunk
        return self.max_control


class Stream(Protocol):
    def sendall(self, data: bytes | memoryview, /) -> Any: ...
    def recv_into(self, buffer: memoryview, nbytes: int = ..., /) -> int: ...


@dataclass(frozen=True, slots=True)
class Frame:
    mtype: MsgType
    flags: int
    payload: bytes

    def json(self) -> dict[str, Any]:
        return decode_json(self.mtype, self.payload)


def _recv_exact(sock: Stream, n: int, what: str) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], n - got)
        except (OSError, socket.timeout) as err:
            raise ProtocolError(f"connection failed while reading {what}: {err}") from err
        if k == 0:
            raise ProtocolError(f"connection closed while reading {what} ({got} of {n} bytes)")
        got += k
    return bytes(buf)


def read_header(sock: Stream, limits: Limits) -> tuple[MsgType, int, int]:
    """Read and check one header; nothing of the payload is read or allocated."""
    raw = _recv_exact(sock, HEADER.size, "frame header")
    type_num, flags, length = HEADER.unpack(raw)
    try:
        mtype = MsgType(type_num)
    except ValueError:
        raise ProtocolError(f"frame type={type_num} is unknown (expected 1..{max(MsgType)})") from None
    limit = limits.max_payload(mtype)
    if length > limit:
        raise ProtocolError(f"frame {mtype.name} length={length} exceeds the limit {limit}")
    return mtype, flags, length


def read_frame(sock: Stream, limits: Limits) -> Frame:
    mtype, flags, length = read_header(sock, limits)
    if mtype == MsgType.PAGES:
        return Frame(mtype, flags, _read_pages_payload(sock, length, limits))
    return Frame(mtype, flags, _recv_exact(sock, length, f"{mtype.name} payload"))


def _read_pages_payload(sock: Stream, length: int, limits: Limits) -> bytes:
    # Read the run table first and check it against the header before the data.
    if length < PAGES_HEAD.size:
        raise ProtocolError(f"PAGES length={length} is shorter than its pid and run count")
    head = _recv_exact(sock, PAGES_HEAD.size, "PAGES pid and run count")
    _pid, n_runs = PAGES_HEAD.unpack(head)
    if n_runs > limits.max_batch_runs:
        raise ProtocolError(f"PAGES n_runs={n_runs} exceeds the limit {limits.max_batch_runs}")
    table = _recv_exact(sock, n_runs * RUN.size, "PAGES run table")
    runs = _parse_runs(table, n_runs, limits)
    total = sum(n for _, n in runs)
    expected = PAGES_HEAD.size + n_runs * RUN.size + total * PAGE_SIZE
    if expected != length:
        raise ProtocolError(f"PAGES length={length} disagrees with its runs ({total} pages need {expected})")
    data = _recv_exact(sock, total * PAGE_SIZE, "PAGES data")
    return head + table + data


def _parse_runs(table: bytes, n_runs: int, limits: Limits) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    total = 0
    for i in range(n_runs):
        addr, n = RUN.unpack_from(table, i * RUN.size)
        if addr % PAGE_SIZE:
            raise ProtocolError(f"PAGES run[{i}].addr=0x{addr:x} is not page-aligned")
        if n == 0:
            raise ProtocolError(f"PAGES run[{i}].n_pages=0 (expected >= 1)")
        if addr + n * PAGE_SIZE > ADDR_LIMIT:
            raise ProtocolError(f"PAGES run[{i}] 0x{addr:x}+{n} pages ends above 0x{ADDR_LIMIT:x}")
        total += n
        if total > limits.max_batch_pages:
            raise ProtocolError(f"PAGES total pages={total} exceeds the limit {limits.max_batch_pages}")
        runs.append((addr, n))
    return runs


def decode_pages(payload: bytes, limits: Limits) -> tuple[int, list[tuple[int, int]], memoryview]:
    """(pid, runs, data) of a PAGES payload read by :func:`read_frame`."""
    if len(payload) < PAGES_HEAD.size:
        raise ProtocolError(f"PAGES length={len(payload)} is shorter than its pid and run count")
    pid, n_runs = PAGES_HEAD.unpack_from(payload, 0)
    if n_runs > limits.max_batch_runs:
        raise ProtocolError(f"PAGES n_runs={n_runs} exceeds the limit {limits.max_batch_runs}")
    table_end = PAGES_HEAD.size + n_runs * RUN.size
    if len(payload) < table_end:
        raise ProtocolError(f"PAGES length={len(payload)} is shorter than its run table")
    runs = _parse_runs(payload[PAGES_HEAD.size:table_end], n_runs, limits)
    data = memoryview(payload)[table_end:]
    if len(data) != sum(n for _, n in runs) * PAGE_SIZE:
        raise ProtocolError("PAGES data length disagrees with its runs")
    return pid, runs, data


def encode_pages_header(pid: int, runs: list[tuple[int, int]]) -> bytes:
    return PAGES_HEAD.pack(pid, len(runs)) + b"".join(RUN.pack(a, n) for a, n in runs)


def send_frame(sock: Stream, mtype: MsgType, payload: bytes | memoryview = b"", flags: int = 0,
               limits: Limits | None = None) -> None:
    lim = limits or Limits()
    if len(payload) > lim.max_payload(mtype):
        raise ProtocolError(f"refusing to send {mtype.name} of {len(payload)} bytes (limit {lim.max_payload(mtype)})")
    try:
        sock.sendall(HEADER.pack(int(mtype), flags & 0xFFFF, len(payload)))
        if len(payload):
            sock.sendall(payload)
    except OSError as err:  # ssl.SSLError is an OSError
        raise ProtocolError(f"connection failed while sending {mtype.name}: {err}") from err


def send_pages(sock: Stream, pid: int, runs: list[tuple[int, int]], data: bytes | memoryview, *,
               round_no: int, limits: Limits | None = None) -> None:
    head = encode_pages_header(pid, runs)
    lim = limits or Limits()
    length = len(head) + len(data)
    if length > lim.max_payload(MsgType.PAGES):
        raise ProtocolError(f"refusing to send PAGES of {length} bytes")
    try:
        sock.sendall(HEADER.pack(int(MsgType.PAGES), round_no & 0xFFFF, length) + head)
        sock.sendall(data)
    except OSError as err:
        raise ProtocolError(f"connection failed while sending PAGES: {err}") from err


def send_json(sock: Stream, mtype: MsgType, obj: dict[str, Any], flags: int = 0) -> None:
    if mtype in RAW_TYPES:
        raise ProtocolError(f"{mtype.name} carries raw bytes, not JSON")
    send_frame(sock, mtype, json.dumps(obj, separators=(",", ":")).encode(), flags)


def decode_json(mtype: MsgType, payload: bytes) -> dict[str, Any]:
    if mtype in RAW_TYPES:
        raise ProtocolError(f"{mtype.name} carries raw bytes, not JSON")
    try:
        obj = json.loads(payload.decode("utf-8")) if payload else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProtocolError(f"{mtype.name} payload is not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{mtype.name} payload is {type(obj).__name__}, expected a JSON object")
    return obj


# -- typed accessors for control messages -------------------------------------------------

def get_str(msg: dict[str, Any], key: str, where: str, *, max_len: int = 256,
            pattern: str | None = None) -> str:
    val = msg.get(key)
    if not isinstance(val, str):
        raise ProtocolError(f"{where}.{key}={val!r:.80} is not a string")
    if len(val) > max_len:
        raise ProtocolError(f"{where}.{key} has {len(val)} characters (limit {max_len})")
    if pattern is not None:
        import re

        if not re.fullmatch(pattern, val):
            raise ProtocolError(f"{where}.{key}={val!r:.80} does not match {pattern}")
    return val


def get_int(msg: dict[str, Any], key: str, where: str, *, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    val = msg.get(key)
    if not isinstance(val, int) or isinstance(val, bool):
        raise ProtocolError(f"{where}.{key}={val!r:.80} is not an integer")
    if not lo <= val <= hi:
        raise ProtocolError(f"{where}.{key}={val} is out of range [{lo}, {hi}]")
    return val


def get_bool(msg: dict[str, Any], key: str, where: str) -> bool:
    val = msg.get(key)
    if not isinstance(val, bool):
        raise ProtocolError(f"{where}.{key}={val!r:.80} is not a boolean")
    return val


def get_dict(msg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    val = msg.get(key)
    if not isinstance(val, dict):
        raise ProtocolError(f"{where}.{key}={val!r:.80} is not an object")
    return val


def get_str_list(msg: dict[str, Any], key: str, where: str, *, max_items: int = 4096,
                 max_len: int = 64) -> list[str]:
    val = msg.get(key)
    if not isinstance(val, list) or len(val) > max_items:
        raise ProtocolError(f"{where}.{key} is not a list of at most {max_items} strings")
    for i, item in enumerate(val):
        if not isinstance(item, str) or len(item) > max_len:
            raise ProtocolError(f"{where}.{key}[{i}]={item!r:.80} is not a string of <= {max_len} chars")
    return list(val)


NONCE_RE = r"[0-9a-f]{32}"
MIGRATION_ID_RE = r"[0-9a-f]{32}"
CONTAINER_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"


def expect(frame: Frame, *types: MsgType) -> Frame:
    """*frame* if its type is one of *types*; ERROR/ABORT become exceptions."""
    if frame.mtype in types:
        return frame
    if frame.mtype in (MsgType.ERROR, MsgType.ABORT):
        msg = frame.json()
        raise RemoteError(str(msg.get("code", "error"))[:64], str(msg.get("message", ""))[:2000])
    names = "/".join(t.name for t in types)
    raise ProtocolError(f"expected {names}, got {frame.mtype.name}")


class RemoteError(MigrationError):
    """The peer reported an error (its code and message are kept)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.remote_message = message
        super().__init__(f"peer error {code}: {message}")


#: MAP_* flags a LAYOUT area may carry: MAP_PRIVATE, MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_NORESERVE
LAYOUT_FLAGS = 0x02 | 0x20 | 0x0100 | 0x4000


def get_spans(msg: dict[str, Any], key: str, where: str, *, width: int, max_items: int) -> list[tuple[int, ...]]:
    """A list of [start, end, ...] integer lists: page-aligned, 0 < start < end <= ADDR_LIMIT,
    sorted and not overlapping, at most *max_items*; *width* integers each."""
    raw = msg.get(key)
    if not isinstance(raw, list):
        raise ProtocolError(f"{where}.{key} must be a list, got {type(raw).__name__}")
    if len(raw) > max_items:
        raise ProtocolError(f"{where}.{key} has {len(raw)} items, the limit is {max_items}")
    out: list[tuple[int, ...]] = []
    last = 0
    for i, item in enumerate(raw):
        if (not isinstance(item, list) or len(item) != width
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in item)):
            raise ProtocolError(f"{where}.{key}[{i}] must be {width} non-negative integers, got {item!r:.100}")
        start, end = item[0], item[1]
        if start % PAGE_SIZE or end % PAGE_SIZE or not start < end <= ADDR_LIMIT or start < last:
            raise ProtocolError(f"{where}.{key}[{i}] = [0x{start:x}, 0x{end:x}) is not a page-aligned span in "
                                f"user space after the previous one")
        last = end
        out.append(tuple(item))
    return out
