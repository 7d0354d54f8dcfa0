"""The one ELF reader of the capture engine: the GNU build-id note.

Reads only an ELF64 little-endian file's program headers and PT_NOTE
segments, with bounded sizes (at most 256 program headers, notes of at most
64 KiB). Refuses nothing loudly: anything that is not such a file, or has no
build-id, gives None. Used by the dump (CRIU's ``build_id`` of file-backed
mappings) and by the restore checks (a mapped file must still match).
"""

from __future__ import annotations

import struct

_PT_NOTE = 4
_NT_GNU_BUILD_ID = 3
_MAX_PHNUM = 256
_MAX_NOTE = 1 << 16


def gnu_build_id(path: str) -> bytes | None:
    """The descriptor of *path*'s NT_GNU_BUILD_ID note, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            if phnum > _MAX_PHNUM or phentsize < 56:
                return None
            fh.seek(phoff)
            phdrs = fh.read(phentsize * phnum)
            if len(phdrs) < phentsize * phnum:
                return None
            for i in range(phnum):
                p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", phdrs, i * phentsize)
                if p_type != _PT_NOTE or p_filesz > _MAX_NOTE:
                    continue
                fh.seek(p_offset)
                notes = fh.read(p_filesz)
                off = 0
                while off + 12 <= len(notes):
                    namesz, descsz, ntype = struct.unpack_from("<III", notes, off)
                    off += 12
                    name = notes[off : off + namesz]
                    off += (namesz + 3) & ~3
                    desc = notes[off : off + descsz]
                    off += (descsz + 3) & ~3
                    if ntype == _NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
                        return desc
    except OSError:
        return None
    return None


def build_id_words(desc: bytes) -> list[int]:
    """A build-id as CRIU stores it: little-endian u32 words, zero-padded."""
    desc += b"\x00" * (-len(desc) % 4)
    return list(struct.unpack(f"<{len(desc) // 4}I", desc))
