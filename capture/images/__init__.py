"""The image codec: one place that knows image magics, layouts and messages.

hetmig's image format *is* CRIU 4.x's: the same files, magics and protobuf
messages (``proto/*.proto``), so real ``crit`` reads our dumps and our reader
reads CRIU's. Every ``.img`` read or written by hetmig goes through here.

On-disk grammar (all integers little-endian u32)::

    IMAGE      ::= INVENTORY_IMG | COMMON_IMG | SERVICE_IMG | RAW_IMG
    INVENTORY_IMG ::= INVENTORY_MAGIC ENTRY*          (inventory.img only)
    COMMON_IMG ::= IMG_COMMON_MAGIC  MAGIC BODY        (every other image)
    SERVICE_IMG ::= IMG_SERVICE_MAGIC MAGIC BODY       (stats-dump, stats-restore,
                                                        irmap-cache)
    RAW_IMG    ::= bytes                               (pages-N.img, ifaddr-N.img,
                                                        route*-N, iptables, tmpfs
                                                        tarballs: no magic at all)
    BODY       ::= ENTRY*                              (plain images)
                 | ENTRY(pagemap_head) ENTRY(pagemap_entry)*          (PAGEMAP)
                 | (ENTRY PAYLOAD)*                    (PIPES_DATA, FIFO_DATA:
                      payload = pipe_data_entry.bytes; SK_QUEUES: .length;
                      TCP_STREAM: inq_len + outq_len; BPFMAP_DATA:
                      keys_bytes + values_bytes)
                 | ENTRY(ghost_file_entry) CONTENTS    (GHOST_FILE, chunks unset:
                      the rest of the file)
                 | ENTRY(ghost_file_entry) (ENTRY(ghost_chunk_entry) DATA(len))*
                 | (ENTRY(ipc_shm_entry) DATA(size, padded to 4))*  (IPCNS_SHM;
                      no data when in_pagemaps)
                 | (ENTRY(ipc_sem_entry) u16[nsems] padded to 8)*   (IPCNS_SEM)
                 | (ENTRY(ipc_msg_entry) (ENTRY(ipc_msg) DATA(msize, padded
                      to 8)){qnum})*                                (IPCNS_MSG)
    ENTRY      ::= SIZE PROTOBUF                       (SIZE = u32 byte length
                                                        of PROTOBUF, <= 64 MiB)

The IMG_COMMON_MAGIC (0x54564319) / IMG_SERVICE_MAGIC (0x55105940) head
tells plain images from CRIU's service files; only inventory.img has a lone
magic. Pre-1.1 images (lone magics elsewhere) are refused. pages-N.img holds
the pages listed by pagemap-N.img's entries, in order, 4 KiB each, and is
recognised by its file name only.

Public API::

    read_image(path) -> Image             write_image(path, image) -> None
    decode_bytes(data, source) -> Image   encode_bytes(image) -> bytes
    image_name_for(filename) -> str       e.g. "core-7.img" -> "CORE"
    to_dict(image, pretty=True) -> dict   crit's JSON shape {"magic", "entries"}
    from_dict(d) -> Image                 inverse of to_dict (either shape)
    Image(name, magic, entries, extra, raw); Image.new(name, entries, extra)
    Image.entries_as(cls, start=0) -> list[cls]   typed, checked entries
    KINDS / kind_named(name) -> ImageKind  the magic table (capture.images.magic)
    capture.images.explore.explore(dir, "ps"|"fds"|"mems"|"rss") -> list[str]
                                          the lines `crit x DIR ...` prints

``Image.entries`` are generated protobuf messages (``proto.core_pb2.core_entry``
...); ``Image.extra[i]`` is the raw payload after entry ``i`` or ``None``.
Every malformed input raises :class:`capture.errors.ImageError` (file, magic
in hex, entry index, byte offset) and never anything else.
"""

from __future__ import annotations

from capture.images.codec import (
    MAX_ENTRIES,
    MAX_ENTRY_SIZE,
    MAX_PAYLOAD_SIZE,
    Image,
    decode_bytes,
    encode_bytes,
    read_image,
    write_image,
)
from capture.images.magic import (
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
from capture.images.pretty import from_dict, to_dict

__all__ = [
    "Head",
    "IMG_COMMON_MAGIC",
    "IMG_SERVICE_MAGIC",
    "Image",
    "ImageKind",
    "KINDS",
    "Layout",
    "MAX_ENTRIES",
    "MAX_ENTRY_SIZE",
    "MAX_PAYLOAD_SIZE",
    "RAW_KINDS",
    "decode_bytes",
    "encode_bytes",
    "from_dict",
    "image_name_for",
    "kind_named",
    "read_image",
    "to_dict",
    "write_image",
]
