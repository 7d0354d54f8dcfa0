"""The dump engine's pure conversions (no process needed)."""

from __future__ import annotations

import struct
from pathlib import Path

from capture.dump import (
    PE_LAZY,
    PE_PRESENT,
    VMA_ANON_PRIVATE,
    VMA_AREA_HEAP,
    VMA_AREA_REGULAR,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
    elf_build_id,
    fix_syscall_restart,
    fpregs_fields,
    gpregs_entry,
    merge_runs,
    merge_vvar,
    page_flags,
    vma_status,
)
from capture.platform.base import USER_REGS_FIELDS, ThreadRegs, Vma, VmaKind, Xsave
from capture.platform.linux import XSAVE_COMPONENTS


def regs(**kw: int) -> ThreadRegs:
    vals = {n: 0 for n in USER_REGS_FIELDS}
    vals.update(cs=0x33, rip=0x401002)
    vals.update(kw)
    return ThreadRegs(**vals)


def u64(v: int) -> int:
    return v & 0xFFFF_FFFF_FFFF_FFFF


def test_restart_rules() -> None:
    # -ERESTARTSYS: re-execute the call
    r = fix_syscall_restart(regs(orig_rax=7, rax=u64(-512)))
    assert (r.rax, r.rip) == (7, 0x401000)
    # -ERESTART_RESTARTBLOCK: becomes -EINTR, ip unchanged
    r = fix_syscall_restart(regs(orig_rax=230, rax=u64(-516)))
    assert (r.rax, r.rip) == (u64(-4), 0x401002)
    # not in a syscall, or an ordinary result: untouched
    assert fix_syscall_restart(regs(orig_rax=u64(-1), rax=u64(-512))) == regs(orig_rax=u64(-1), rax=u64(-512))
    assert fix_syscall_restart(regs(orig_rax=0, rax=5)).rax == 5


def test_gpregs_use_criu_names() -> None:
    e = gpregs_entry(regs(rbp=1, rbx=2, eflags=0x202, fs_base=0x1234))
    assert e["bp"] == 1 and e["bx"] == 2 and e["flags"] == 0x202 and e["fs_base"] == 0x1234
    assert len(e) == 27


def test_fpregs_from_xsave_buffer() -> None:
    data = bytearray(2696)
    struct.pack_into("<HHHHQQII", data, 0, 0x37F, 1, 2, 3, 4, 5, 0x1F80, 0xFFFF)
    struct.pack_into("<I", data, 160, 0xAABBCCDD)  # xmm0 low word
    struct.pack_into("<Q", data, 464, (1 << 0) | (1 << 1) | (1 << 2) | (1 << 9))  # XCR0: x87 SSE AVX PKRU
    struct.pack_into("<Q", data, 512, 0x207)  # xstate_bv
    struct.pack_into("<I", data, 576, 0x11223344)  # ymmh0
    struct.pack_into("<I", data, 2688, 0x55555554)  # pkru
    f = fpregs_fields(Xsave(data=bytes(data), component_offsets=XSAVE_COMPONENTS))
    assert (f["cwd"], f["swd"], f["twd"], f["fop"], f["rip"], f["rdp"]) == (0x37F, 1, 2, 3, 4, 5)
    assert f["mxcsr"] == 0x1F80 and f["mxcsr_mask"] == 0xFFFF
    assert len(f["st_space"]) == 32 and len(f["xmm_space"]) == 64 and f["xmm_space"][0] == 0xAABBCCDD
    xs = f["xsave"]
    assert xs["xstate_bv"] == 0x207
    assert len(xs["ymmh_space"]) == 64 and xs["ymmh_space"][0] == 0x11223344
    assert xs["pkru"] == [0x55555554, 0]
    assert "zmm_upper" not in xs and "opmask_reg" not in xs  # not in XCR0


def vma(kind: VmaKind, flags: int = 0x22, path: str = "") -> Vma:
    return Vma(start=0x1000, end=0x3000, prot=3, flags=flags, offset=0, path=path, dev_major=0,
               dev_minor=0, ino=0, kind=kind)


def test_vma_status_bits_like_criu() -> None:
    assert vma_status(vma(VmaKind.ANON)) == VMA_AREA_REGULAR | VMA_ANON_PRIVATE
    assert vma_status(vma(VmaKind.HEAP)) == VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE
    assert vma_status(vma(VmaKind.VDSO)) == VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE
    assert vma_status(vma(VmaKind.VVAR)) == VMA_AREA_REGULAR | VMA_AREA_VVAR | VMA_ANON_PRIVATE
    assert vma_status(vma(VmaKind.VSYSCALL)) == VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE
    assert vma_status(vma(VmaKind.FILE, 0x2, "/x")) == VMA_AREA_REGULAR | VMA_FILE_PRIVATE
    assert vma_status(vma(VmaKind.FILE, 0x1, "/x")) == VMA_AREA_REGULAR | VMA_FILE_SHARED
    # the numeric values crit prints as names
    assert (VMA_AREA_REGULAR, VMA_AREA_HEAP, VMA_FILE_PRIVATE, VMA_ANON_PRIVATE, VMA_AREA_VVAR) == (
        1, 32, 64, 512, 4096)


def test_page_flags_lazy_only_for_private_anon() -> None:
    assert page_flags(vma(VmaKind.ANON)) == PE_PRESENT | PE_LAZY
    assert page_flags(vma(VmaKind.STACK)) == PE_PRESENT | PE_LAZY
    assert page_flags(vma(VmaKind.VDSO)) == PE_PRESENT
    assert page_flags(vma(VmaKind.FILE, 0x2, "/x")) == PE_PRESENT


def test_merge_runs_and_vvar() -> None:
    assert merge_runs([(0x1000, 1, 4), (0x2000, 2, 4), (0x4000, 1, 6), (0x5000, 1, 6), (0x7000, 1, 6)]) == [
        (0x1000, 3, 4), (0x4000, 2, 6), (0x7000, 1, 6)]
    a = Vma(0x1000, 0x5000, 1, 0x22, 0, "[vvar]", 0, 0, 0, VmaKind.VVAR)
    b = Vma(0x5000, 0x7000, 1, 0x22, 0, "[vvar_vclock]", 0, 0, 0, VmaKind.VVAR)
    c = Vma(0x7000, 0x9000, 5, 0x22, 0, "[vdso]", 0, 0, 0, VmaKind.VDSO)
    merged = merge_vvar([a, b, c])
    assert [(v.start, v.end, v.kind) for v in merged] == [(0x1000, 0x7000, VmaKind.VVAR), (0x7000, 0x9000, VmaKind.VDSO)]


def test_elf_build_id(tmp_path: Path) -> None:
    import sys

    bid = elf_build_id(sys.executable)
    assert bid is None or (len(bid) == 5 and all(0 <= w < 2**32 for w in bid))
    busybox = Path("/bin/busybox")
    if busybox.exists():
        got = elf_build_id(str(busybox))
        assert got is not None and len(got) == 5
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\x00" * 10)
    assert elf_build_id(str(junk)) is None
    assert elf_build_id(str(tmp_path / "missing")) is None
