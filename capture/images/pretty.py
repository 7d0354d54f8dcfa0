"""Images as JSON-ready dicts, in the shape ``crit decode`` prints.

``to_dict(image, pretty=True)`` gives ``{"magic": "CORE", "entries": [...]}``
where each entry is the message's set fields in field-number order. With
``pretty`` the field options from ``proto/opts.proto`` apply as crit applies
them: ``(criu).hex`` fields (and every integer below a hex-marked message
field) as ``"0x..."``, ``(criu).dev`` as ``"major:minor"``, ``(criu).flags``
as ``"PROT_READ | PROT_WRITE"``, ``(criu).dict`` as names, ``(criu).ipadd``
as IPv4/IPv6 text. Bytes are base64 (``base64.encodebytes``: 76-column lines,
trailing newline); ``(criu).conv = "unix_name"`` bytes are quoted-printable.
Payloads appear as the entry's ``"extra"`` key the way crit shows them.

``from_dict`` is the inverse and accepts both the pretty and the plain shape.
Image data is decoded with the target's (Linux x86_64) conventions written
out here, never with the host's ``os.major`` or byte order.

Refuses (ImageError): raw images (they have no JSON form), unknown magics,
fields or enum names, values of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import quopri
import struct
from typing import Any, Final, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from capture.errors import ImageError
from capture.images.codec import Image
from capture.images.magic import KINDS, ImageKind, Layout
from proto import opts_pb2

# Flag tables crit uses for (criu).flags fields (Linux values).
_MMAP_PROT: Final = (("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4))
_MMAP_FLAGS: Final = (
    ("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_ANON", 0x20), ("MAP_GROWSDOWN", 0x100),
)
_MMAP_STATUS: Final = (
    ("VMA_AREA_NONE", 0), ("VMA_AREA_REGULAR", 1 << 0), ("VMA_AREA_STACK", 1 << 1),
    ("VMA_AREA_VSYSCALL", 1 << 2), ("VMA_AREA_VDSO", 1 << 3), ("VMA_AREA_HEAP", 1 << 5),
    ("VMA_FILE_PRIVATE", 1 << 6), ("VMA_FILE_SHARED", 1 << 7), ("VMA_ANON_SHARED", 1 << 8),
    ("VMA_ANON_PRIVATE", 1 << 9), ("VMA_AREA_SYSVIPC", 1 << 10), ("VMA_AREA_SOCKET", 1 << 11),
    ("VMA_AREA_VVAR", 1 << 12), ("VMA_AREA_AIORING", 1 << 13), ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_AREA_SHSTK", 1 << 15), ("VMA_UNSUPP", 1 << 31),
)
_RFILE_FLAGS: Final = (
    ("O_WRONLY", 0o1), ("O_RDWR", 0o2), ("O_CREAT", 0o100), ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000), ("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000), ("FASYNC", 0o20000), ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000), ("O_DIRECTORY", 0o200000), ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000),
)
_SEALS_FLAGS: Final = (
    ("F_SEAL_SEAL", 0x1), ("F_SEAL_SHRINK", 0x2), ("F_SEAL_GROW", 0x4),
    ("F_SEAL_WRITE", 0x8), ("F_SEAL_FUTURE_WRITE", 0x10),
)
_PMAP_FLAGS: Final = (("PE_PARENT", 1 << 0), ("PE_LAZY", 1 << 1), ("PE_PRESENT", 1 << 2))

FLAG_TABLES: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "mmap.prot": _MMAP_PROT,
    "mmap.flags": _MMAP_FLAGS,
    "mmap.status": _MMAP_STATUS,
    "rfile.flags": _RFILE_FLAGS,
    "pmap.flags": _PMAP_FLAGS,
    "seals.flags": _SEALS_FLAGS,
}

# (criu).dict tables: table -> field name -> value -> name.
DICT_TABLES: Final[dict[str, dict[str, dict[int, str]]]] = {
    "gen": {"task_state": {1: "Alive", 3: "Zombie", 6: "Stopped"}},
    "sk": {
        "family": {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"},
        "type": {1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"},
        "state": {
            1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
            6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
        },
        "proto": {0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE"},
    },
}

_KERN_MINORBITS: Final = 20  # the kernel's internal dev_t: major << 20 | minor

_INT_TYPES: Final = frozenset({
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64,
})

_opts_cache: dict[str, opts_pb2.CRIU_Opts] = {}


def _opts(field: FieldDescriptor) -> opts_pb2.CRIU_Opts:
    cached = _opts_cache.get(field.full_name)
    if cached is None:
        cached = cast(Any, field.GetOptions().Extensions)[opts_pb2.criu]
        _opts_cache[field.full_name] = cached
    return cached


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ImageError("<json>", f"{what}: expected base64 text, got {type(text).__name__}")
    try:
        return base64.decodebytes(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as err:
        raise ImageError("<json>", f"{what}: invalid base64: {err}") from None


def map_flags(value: int, table: tuple[tuple[str, int], ...]) -> str:
    """``"A | B | 0x40"``: the names of the set bits, then the unknown rest in hex."""
    names = [name for name, bit in table if value & bit]
    rest = value & ~sum(bit for _, bit in table)
    if rest:
        names.append(f"0x{rest:x}")
    return " | ".join(names)


def unmap_flags(text: str, table: tuple[tuple[str, int], ...], what: str) -> int:
    if text == "":
        return 0
    bits = dict(table)
    total = 0
    for part in (p.strip() for p in text.split("|")):
        if part in bits:
            total += bits[part]
        else:
            total += _parse_int(part, what)
    return total


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ImageError("<json>", f"{what}={text!r} is not a number") from None


def _dev_text(opts: opts_pb2.CRIU_Opts, value: int) -> str:
    if opts.odev:  # glibc's dev_t layout (what os.major/os.minor decode on Linux)
        major = ((value >> 8) & 0xFFF) | ((value >> 32) & ~0xFFF)
        minor = (value & 0xFF) | ((value >> 12) & ~0xFF)
        return f"{major}:{minor}"
    return f"{value >> _KERN_MINORBITS}:{value & ((1 << _KERN_MINORBITS) - 1)}"


def _dev_value(opts: opts_pb2.CRIU_Opts, text: str, what: str) -> int:
    parts = text.split(":")
    if len(parts) != 2:
        raise ImageError("<json>", f"{what}={text!r} is not major:minor")
    major, minor = (_parse_int(p, what) for p in parts)
    if opts.odev:
        return ((major & 0xFFF) << 8) | ((major & ~0xFFF) << 32) | (minor & 0xFF) | (
            (minor & ~0xFF) << 12)
    return (major << _KERN_MINORBITS) | minor


def _ip_text(values: list[int]) -> str:
    raw = b"".join(struct.pack("<I", v) for v in values)  # u32s hold network-order bytes
    if len(values) == 1:
        return ipaddress.IPv4Address(raw).compressed
    return ipaddress.IPv6Address(raw[:16].ljust(16, b"\0")).compressed


def _ip_values(text: str, what: str) -> list[int]:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ImageError("<json>", f"{what}={text!r} is not an IP address") from None
    raw = addr.packed
    return [struct.unpack_from("<I", raw, i)[0] for i in range(0, len(raw), 4)]


def _scalar(field: FieldDescriptor, value: Any, pretty: bool, is_hex: bool) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value, pretty, is_hex)
    opts = _opts(field)
    if t == FieldDescriptor.TYPE_BYTES:
        if opts.conv == "unix_name":
            return quopri.encodestring(value).decode("ascii")
        return _b64(value)
    if t == FieldDescriptor.TYPE_ENUM:
        enum_values = field.enum_type.values_by_number if field.enum_type else {}
        ev = enum_values.get(value)
        return ev.name if ev is not None else int(value)
    if t in _INT_TYPES:
        value = int(value)
        if pretty:
            if is_hex:
                return f"0x{value:x}"
            if opts.dev:
                return _dev_text(opts, value)
            if opts.flags:
                table = FLAG_TABLES.get(opts.flags)
                return map_flags(value, table) if table is not None else f"0x{value:x}"
            if opts.dict:
                return DICT_TABLES.get(opts.dict, {}).get(field.name, {}).get(value, value)
        return value
    return value  # bool, str, float/double


def message_to_dict(msg: Message, pretty: bool = True, is_hex: bool = False) -> dict[str, Any]:
    """One message as crit's pb2dict renders it."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        field_hex = is_hex or _opts(field).hex
        if field.is_repeated:
            if pretty and _opts(field).ipadd:
                out[field.name] = [_ip_text(list(value))]
            else:
                out[field.name] = [_scalar(field, v, pretty, field_hex) for v in value]
        else:
            out[field.name] = _scalar(field, value, pretty, field_hex)
    return out


def _from_scalar(field: FieldDescriptor, value: Any, what: str) -> Any:
    t = field.type
    opts = _opts(field)
    if t == FieldDescriptor.TYPE_BYTES:
        if opts.conv == "unix_name":
            if not isinstance(value, str):
                raise ImageError("<json>", f"{what}: expected quoted-printable text")
            return quopri.decodestring(value.encode("latin-1"))
        return _unb64(value, what)
    if t == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        by_name = field.enum_type.values_by_name if field.enum_type else {}
        ev = by_name.get(value) if isinstance(value, str) else None
        if ev is None:
            choices = ", ".join(by_name)
            raise ImageError("<json>", f"{what}={value!r} is not one of {choices}")
        return ev.number
    if t in _INT_TYPES:
        if isinstance(value, bool):
            raise ImageError("<json>", f"{what}={value!r} is not an integer")
        if isinstance(value, int):
            return value
        if not isinstance(value, str):
            raise ImageError("<json>", f"{what}={value!r} is not an integer")
        if opts.dev and ":" in value:
            return _dev_value(opts, value, what)
        if opts.flags and opts.flags in FLAG_TABLES:
            return unmap_flags(value, FLAG_TABLES[opts.flags], what)
        if opts.dict:
            names = {n: v for v, n in DICT_TABLES.get(opts.dict, {}).get(field.name, {}).items()}
            if value in names:
                return names[value]
        return _parse_int(value, what)
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ImageError("<json>", f"{what}={value!r} is not a boolean")
        return value
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise ImageError("<json>", f"{what}={value!r} is not a string")
        return value
    return value


def dict_to_message(d: Any, msg: Message, path: str = "") -> Message:
    """Fill ``msg`` from a dict produced by :func:`message_to_dict` (either shape)."""
    desc: Any = msg.DESCRIPTOR
    if not isinstance(d, dict):
        raise ImageError("<json>", f"{path or desc.name}: expected an object, got "
                         f"{type(d).__name__}")
    for key, value in d.items():
        field = desc.fields_by_name.get(key)
        what = f"{path}.{key}" if path else f"{desc.name}.{key}"
        if field is None:
            if key == "extra" and not path:
                continue
            raise ImageError("<json>", f"{what}: {desc.name} has no such field")
        if field.is_repeated:
            if not isinstance(value, list):
                raise ImageError("<json>", f"{what}: expected a list")
            target = getattr(msg, key)
            if value and isinstance(value[0], str) and _opts(field).ipadd:
                target.extend(_ip_values(value[0], what))
                continue
            if field.type != FieldDescriptor.TYPE_MESSAGE and not _opts(field).ipadd and \
                    value and not isinstance(value[0], (int, str, bool)):
                raise ImageError("<json>", f"{what}: expected a list of scalars")
            for i, v in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    dict_to_message(v, target.add(), f"{what}[{i}]")
                else:
                    item = _from_scalar(field, v, f"{what}[{i}]")
                    try:
                        target.append(item)
                    except (TypeError, ValueError) as err:
                        raise ImageError("<json>", f"{what}[{i}]={v!r}: {err}") from None
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, key)
            sub.SetInParent()
            dict_to_message(value, sub, what)
        else:
            try:
                setattr(msg, key, _from_scalar(field, value, what))
            except (TypeError, ValueError) as err:
                raise ImageError("<json>", f"{what}={value!r}: {err}") from None
    return msg


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _extra_to_json(kind: ImageKind, index: int, msg: Message, payload: bytes | None) -> Any:
    data = payload or b""
    if kind.name == "TCP_STREAM":
        inq = int(getattr(msg, "inq_len"))
        return {"inq": _b64(data[:inq]), "outq": _b64(data[inq:])}
    if kind.layout is Layout.IPC_SHM:
        return _b64(data[: int(getattr(msg, "size"))])
    if kind.layout is Layout.IPC_SEM:
        n = int(getattr(msg, "nsems"))
        return list(struct.unpack_from(f"<{n}H", data)) if n else []
    if kind.layout is Layout.IPC_MSG:
        out: list[Any] = []
        msg_cls = kind.message_class("ipc_msg")
        pos = 0
        for _ in range(int(getattr(msg, "qnum"))):
            (size,) = struct.unpack_from("<I", data, pos)
            m = msg_cls()
            m.ParseFromString(data[pos + 4:pos + 4 + size])
            pos += 4 + size
            msize = int(getattr(m, "msize"))
            out.append(message_to_dict(m, pretty=False))
            out.append(_b64(data[pos:pos + msize]))
            pos += _round_up(msize, 8)
        return out
    return _b64(data)


def _has_extra(kind: ImageKind, index: int, msg: Message) -> bool:
    if kind.layout is Layout.GHOST:
        return index > 0 or not getattr(msg, "chunks")
    return kind.layout in (Layout.PAYLOAD, Layout.IPC_SHM, Layout.IPC_SEM, Layout.IPC_MSG)


def to_dict(image: Image, pretty: bool = True) -> dict[str, Any]:
    """``{"magic": NAME, "entries": [...]}`` as ``crit decode [--pretty]`` prints it."""
    kind = image.kind
    if kind.layout is Layout.RAW:
        raise ImageError(f"<{kind.name} image>", "raw images have no JSON form "
                         "(they carry no magic and no entries)")
    entries: list[dict[str, Any]] = []
    for index, msg in enumerate(image.entries):
        d = message_to_dict(msg, pretty)
        if _has_extra(kind, index, msg):
            d["extra"] = _extra_to_json(kind, index, msg, image.extra_at(index))
        entries.append(d)
    return {"magic": kind.name, "entries": entries}


def _extra_from_json(kind: ImageKind, msg: Message, value: Any, what: str) -> bytes:
    if kind.name == "TCP_STREAM":
        if not isinstance(value, dict):
            raise ImageError("<json>", f"{what}: expected {{'inq': ..., 'outq': ...}}")
        return _unb64(value.get("inq", ""), what + ".inq") + _unb64(value.get("outq", ""),
                                                                   what + ".outq")
    if kind.layout is Layout.IPC_SHM:
        data = _unb64(value, what)
        size = int(getattr(msg, "size"))
        return data[:size].ljust(_round_up(size, 4), b"\0")
    if kind.layout is Layout.IPC_SEM:
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise ImageError("<json>", f"{what}: expected a list of semaphore values")
        n = int(getattr(msg, "nsems"))
        if len(value) != n:
            raise ImageError("<json>", f"{what}: {len(value)} values, nsems={n}")
        raw = struct.pack(f"<{n}H", *value)
        return raw.ljust(_round_up(len(raw), 8), b"\0")
    if kind.layout is Layout.IPC_MSG:
        if not isinstance(value, list) or len(value) % 2:
            raise ImageError("<json>", f"{what}: expected [msg, data, msg, data, ...]")
        out = bytearray()
        msg_cls = kind.message_class("ipc_msg")
        for i in range(0, len(value), 2):
            m = dict_to_message(value[i], msg_cls(), f"{what}[{i}]")
            body = m.SerializeToString()
            msize = int(getattr(m, "msize"))
            out += struct.pack("<I", len(body)) + body
            out += _unb64(value[i + 1], f"{what}[{i + 1}]")[:msize].ljust(
                _round_up(msize, 8), b"\0")
        return bytes(out)
    return _unb64(value, what)


def from_dict(d: Any) -> Image:
    """Rebuild an :class:`Image` from :func:`to_dict`'s output (pretty or not)."""
    if not isinstance(d, dict) or not isinstance(d.get("magic"), str) or not isinstance(
            d.get("entries"), list):
        raise ImageError("<json>", 'expected {"magic": NAME, "entries": [...]}')
    kind = KINDS.get(d["magic"])
    if kind is None:
        raise ImageError("<json>", f"magic={d['magic']!r} is not a known image kind")
    entries: list[Message] = []
    extra: list[bytes | None] = []
    for index, ed in enumerate(d["entries"]):
        what = f"entries[{index}]"
        if kind.layout is Layout.PAGEMAP and index == 0:
            cls = kind.message_class("pagemap_head")
        elif kind.layout is Layout.GHOST and index > 0:
            cls = kind.message_class("ghost_chunk_entry")
        else:
            cls = kind.message_class()
        msg = dict_to_message(ed, cls(), "")
        if not msg.IsInitialized():
            missing = ", ".join(cast(Any, msg).FindInitializationErrors())
            raise ImageError("<json>", f"{what}: required fields missing: {missing}")
        payload: bytes | None = None
        if isinstance(ed, dict) and "extra" in ed and _has_extra(kind, index, msg):
            payload = _extra_from_json(kind, msg, ed["extra"], f"{what}.extra")
            if kind.layout is Layout.IPC_SHM and getattr(msg, "in_pagemaps"):
                payload = None
        entries.append(msg)
        extra.append(payload)
    return Image(kind.name, kind.magic, entries, extra)


__all__ = ["to_dict", "from_dict", "message_to_dict", "dict_to_message", "FLAG_TABLES",
           "DICT_TABLES", "map_flags"]
