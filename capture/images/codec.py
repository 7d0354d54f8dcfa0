"""Binary image reader and writer (the grammar is in :mod:`capture.images`).

Parsing is strict: every length is checked against the bytes that are
really there, every size is bounded before anything is allocated, and any
failure becomes an :class:`~capture.errors.ImageError` naming the file, the
magic, the entry index and the byte offset. Writing is the exact inverse, so
``encode_bytes(decode_bytes(b)) == b`` for every well-formed CRIU image.

Refuses: pre-1.1 images (a magic without the IMG_COMMON/IMG_SERVICE head,
other than inventory), a head that does not fit the kind (IMG_COMMON before
a service image or the other way round), unknown magics, entries larger
than :data:`MAX_ENTRY_SIZE`, payloads larger than :data:`MAX_PAYLOAD_SIZE`,
more than :data:`MAX_ENTRIES` entries, trailing garbage shorter than a size
field, and protobuf bytes that do not parse or lack required fields.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Sequence, TypeVar, cast

from google.protobuf.message import Message

from capture.errors import ImageError
from capture.images.magic import (
    BY_MAGIC,
    IMG_COMMON_MAGIC,
    IMG_SERVICE_MAGIC,
    KINDS,
    RAW_KINDS,
    Head,
    ImageKind,
    Layout,
    image_name_for,
    kind_named,
)

#: Largest protobuf entry accepted (CRIU's biggest, core/mm of huge tasks, are far below).
MAX_ENTRY_SIZE: Final = 64 << 20
#: Largest payload after one entry (pipe data, ghost file contents, tcp queues, shm segments).
MAX_PAYLOAD_SIZE: Final = 1 << 30
#: Most entries in one image file.
MAX_ENTRIES: Final = 1 << 22

_U32: Final = struct.Struct("<I")

M = TypeVar("M", bound=Message)

_HEAD_TEXT: Final = {
    Head.NONE: "its magic alone",
    Head.COMMON: "the IMG_COMMON head",
    Head.SERVICE: "the IMG_SERVICE head",
    Head.RAW: "no magic",
}


@dataclass(frozen=True, slots=True)
class Image:
    """One decoded image file.

    ``entries`` are protobuf messages in file order; ``extra[i]`` is the raw
    bytes that follow entry ``i`` on disk (pipe data, ghost-file contents,
    TCP queues, SysV IPC contents incl. their padding) or ``None`` for
    entries without a payload. Raw images (pages-N.img, ...) have no entries
    and their whole content in ``raw``.
    """

    name: str
    magic: int
    entries: list[Message] = field(default_factory=list)
    extra: list[bytes | None] = field(default_factory=list)
    raw: bytes = b""

    @classmethod
    def new(
        cls,
        name: str,
        entries: Sequence[Message] | None = None,
        extra: Sequence[bytes | None] | None = None,
        raw: bytes = b"",
    ) -> Image:
        """An image of kind ``name`` (magic looked up); extra defaults to no payloads."""
        kind = kind_named(name)
        ents = list(entries or [])
        ext: list[bytes | None] = list(extra) if extra is not None else [None] * len(ents)
        return cls(kind.name, kind.magic, ents, ext, raw)

    @property
    def kind(self) -> ImageKind:
        return kind_named(self.name)

    def extra_at(self, index: int) -> bytes | None:
        return self.extra[index] if index < len(self.extra) else None

    def entries_as(self, cls: type[M], start: int = 0) -> list[M]:
        """``entries[start:]``, checked to be ``cls`` messages (typed for callers).

        E.g. ``read_image(p).entries_as(core_pb2.core_entry)``, or for a pagemap
        ``img.entries_as(pagemap_pb2.pagemap_entry, start=1)``. A mismatch (say,
        a PSTREE image where a CORE image was expected) is an ImageError.
        """
        out: list[M] = []
        for index in range(start, len(self.entries)):
            e = self.entries[index]
            if not isinstance(e, cls):
                raise ImageError(f"<{self.name} image>", f"entry is a {e.DESCRIPTOR.name}, "
                                 f"expected {cls.DESCRIPTOR.name}", magic=self.magic,
                                 entry=index)
            out.append(e)
        return out


class _Reader:
    """A cursor over the image bytes that refuses to read past the end."""

    __slots__ = ("data", "pos", "source", "magic", "entry")

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.magic: int | None = None
        self.entry: int | None = None

    def error(self, reason: str, offset: int | None = None) -> ImageError:
        return ImageError(
            self.source, reason, magic=self.magic, entry=self.entry,
            offset=self.pos if offset is None else offset,
        )

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def u32(self, what: str) -> int:
        if self.pos + 4 > len(self.data):
            raise self.error(f"short read: {what} needs 4 bytes, "
                             f"{len(self.data) - self.pos} left")
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def take(self, size: int, what: str, limit: int) -> bytes:
        if size > limit:
            raise self.error(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
        if self.pos + size > len(self.data):
            raise self.error(f"short read: {what} needs {size} bytes, "
                             f"{len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def message(self, cls: type[Message]) -> Message:
        start = self.pos
        size = self.u32("entry size")
        if size > MAX_ENTRY_SIZE:
            raise self.error(f"entry size {size} exceeds the limit of {MAX_ENTRY_SIZE} bytes",
                             start)
        body = self.take(size, f"{cls.DESCRIPTOR.name} entry", MAX_ENTRY_SIZE)
        msg = cls()
        try:
            msg.ParseFromString(body)
        except Exception as err:  # DecodeError, RecursionError, ... from the protobuf runtime
            raise self.error(f"{cls.DESCRIPTOR.name} does not parse: {err}", start) from None
        if not msg.IsInitialized():
            missing = ", ".join(cast(Any, msg).FindInitializationErrors())
            raise self.error(f"{cls.DESCRIPTOR.name} lacks required fields: {missing}", start)
        return msg


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _payload_size(kind: ImageKind, msg: Message, r: _Reader) -> int:
    total = 0
    for name in kind.payload_fields:
        total += int(getattr(msg, name))
    return total


_ANY: Final = -1


def _expected_payload(kind: ImageKind, index: int, msg: Message) -> int | None:
    """Payload length entry ``index`` must carry: None (none), _ANY, or a byte count."""
    layout = kind.layout
    if layout is Layout.PAYLOAD:
        return sum(int(getattr(msg, name)) for name in kind.payload_fields)
    if layout is Layout.GHOST:
        if index == 0:
            return None if getattr(msg, "chunks") else _ANY
        return int(getattr(msg, "len"))
    if layout is Layout.IPC_SHM:
        return None if getattr(msg, "in_pagemaps") else _round_up(int(getattr(msg, "size")), 4)
    if layout is Layout.IPC_SEM:
        return _round_up(2 * int(getattr(msg, "nsems")), 8)
    if layout is Layout.IPC_MSG:
        return _ANY
    return None


def _read_ipc_msgs(r: _Reader, kind: ImageKind, entry: Message) -> bytes:
    start = r.pos
    qnum = int(getattr(entry, "qnum"))
    if qnum > MAX_ENTRIES:
        raise r.error(f"ipc_msg_entry.qnum={qnum} exceeds the limit of {MAX_ENTRIES}")
    msg_cls = kind.message_class("ipc_msg")
    for _ in range(qnum):
        m = r.message(msg_cls)
        r.take(_round_up(int(getattr(m, "msize")), 8), "ipc message data", MAX_PAYLOAD_SIZE)
    return r.data[start:r.pos]


def _decode_entries(r: _Reader, kind: ImageKind) -> tuple[list[Message], list[bytes | None]]:
    entries: list[Message] = []
    extra: list[bytes | None] = []
    cls = kind.message_class()
    index = 0
    while not r.at_end():
        if index >= MAX_ENTRIES:
            raise r.error(f"more than {MAX_ENTRIES} entries")
        r.entry = index
        payload: bytes | None = None
        layout = kind.layout
        if layout is Layout.PAGEMAP:
            msg = r.message(kind.message_class("pagemap_head") if index == 0 else cls)
        elif layout is Layout.GHOST:
            if index == 0:
                msg = r.message(cls)
                if not getattr(msg, "chunks"):
                    payload = r.take(len(r.data) - r.pos, "ghost file contents", MAX_PAYLOAD_SIZE)
            else:
                msg = r.message(kind.message_class("ghost_chunk_entry"))
                payload = r.take(int(getattr(msg, "len")), "ghost chunk data", MAX_PAYLOAD_SIZE)
        else:
            msg = r.message(cls)
            if layout is Layout.PAYLOAD:
                payload = r.take(_payload_size(kind, msg, r), "payload", MAX_PAYLOAD_SIZE)
            elif layout is Layout.IPC_SHM:
                if not getattr(msg, "in_pagemaps"):
                    payload = r.take(_round_up(int(getattr(msg, "size")), 4),
                                     "shm segment", MAX_PAYLOAD_SIZE)
            elif layout is Layout.IPC_SEM:
                payload = r.take(_round_up(2 * int(getattr(msg, "nsems")), 8),
                                 "semaphore values", MAX_PAYLOAD_SIZE)
            elif layout is Layout.IPC_MSG:
                payload = _read_ipc_msgs(r, kind, msg)
        entries.append(msg)
        extra.append(payload)
        index += 1
    r.entry = None
    return entries, extra


def decode_bytes(data: bytes, source: str = "<bytes>") -> Image:
    """Decode one image file's bytes. ``source`` names it in errors.

    If ``source``'s base name is that of a raw (magic-less) image such as
    ``pages-1.img``, the bytes are returned as ``Image.raw``.
    """
    try:
        by_name = image_name_for(os.path.basename(source))
    except KeyError:
        by_name = None
    if by_name in RAW_KINDS:
        kind = RAW_KINDS[by_name]
        return Image(kind.name, kind.magic, [], [], bytes(data))
    r = _Reader(data if isinstance(data, bytes) else bytes(data), source)
    first = r.u32("magic")
    r.magic = first
    if first in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC):
        head = Head.COMMON if first == IMG_COMMON_MAGIC else Head.SERVICE
        value = r.u32("magic after the image head")
        r.magic = value
    else:
        head, value = Head.NONE, first
    found = BY_MAGIC.get(value)
    if found is None:
        raise r.error(f"unknown magic 0x{value:08x} (raw images such as pages-N.img "
                      "are recognised by file name only)", r.pos - 4)
    kind = found
    if head is not kind.head:
        raise r.error(f"{kind.name} image starts with {_HEAD_TEXT[head]}, expected "
                      f"{_HEAD_TEXT[kind.head]} (pre-1.1 image sets are not supported)", 0)
    entries, extra = _decode_entries(r, kind)
    return Image(kind.name, kind.magic, entries, extra)


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read and decode one image file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ImageError(str(p), f"cannot read: {err.strerror or err}") from err
    return decode_bytes(data, str(p))


def encode_bytes(image: Image) -> bytes:
    """Encode an image to its on-disk bytes (the inverse of :func:`decode_bytes`)."""
    try:
        kind = kind_named(image.name)
    except KeyError:
        raise ImageError("<image>", f"unknown image kind {image.name!r}") from None
    where = f"<{kind.name} image>"
    if image.magic != kind.magic:
        raise ImageError(where, f"magic 0x{image.magic:08x} does not belong to {kind.name} "
                         f"(expected 0x{kind.magic:08x})", magic=image.magic)
    if kind.layout is Layout.RAW:
        return bytes(image.raw)
    out = bytearray()
    if kind.head is Head.COMMON:
        out += _U32.pack(IMG_COMMON_MAGIC)
    elif kind.head is Head.SERVICE:
        out += _U32.pack(IMG_SERVICE_MAGIC)
    out += _U32.pack(kind.magic)
    for index, msg in enumerate(image.entries):
        try:
            body = msg.SerializeToString()
        except Exception as err:  # EncodeError: missing required fields
            raise ImageError(where, f"entry cannot be encoded: {err}",
                             magic=kind.magic, entry=index) from None
        if len(body) > MAX_ENTRY_SIZE:
            raise ImageError(where, f"entry of {len(body)} bytes exceeds the limit",
                             magic=kind.magic, entry=index)
        out += _U32.pack(len(body))
        out += body
        payload = image.extra_at(index)
        want = _expected_payload(kind, index, msg)
        have = len(payload) if payload is not None else None
        if want is None and have:
            raise ImageError(where, f"{msg.DESCRIPTOR.name} carries no payload, got {have} "
                             "bytes", magic=kind.magic, entry=index)
        if want is not None and want != _ANY and (have or 0) != want:
            raise ImageError(where, f"payload is {have or 0} bytes, {msg.DESCRIPTOR.name} "
                             f"declares {want}", magic=kind.magic, entry=index)
        if payload:
            out += payload
    return bytes(out)


def write_image(path: str | os.PathLike[str], image: Image) -> None:
    """Encode and write an image file atomically (temp file + rename)."""
    data = encode_bytes(image)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except OSError as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ImageError(str(p), f"cannot write: {err.strerror or err}") from err


__all__ = [
    "Image", "decode_bytes", "encode_bytes", "read_image", "write_image",
    "MAX_ENTRY_SIZE", "MAX_PAYLOAD_SIZE", "MAX_ENTRIES", "KINDS",
]
