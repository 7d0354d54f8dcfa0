"""What a host is, and whether a container from one host can run on another.

``HostInfo`` carries OS, arch, kernel release, the user-visible CPU feature
flags, the XSAVE feature mask (XCR0) and the XSAVE area size, Linuxulator
presence (FreeBSD), and free memory / disk. ``check_compat(source, dest)``
returns a ``Verdict``; a refusal names the missing CPU flags and XSAVE
components (this is what makes podman #17496, a restored process dying with
SIGILL on a CPU without AVX-512, impossible here).

How XCR0 is obtained on Linux x86_64 (documented choice):
  1. precisely, by executing ``xgetbv(0)`` and ``cpuid(0xD, 0)`` (EBX = XSAVE
     area size for the components enabled in XCR0) from a 13/12-byte machine
     code stub in an anonymous executable mapping called through ctypes;
  2. if the mapping is refused (W^X hardening), derived from the ``flags``
     line (Linux hides avx/avx512*/amx*/ospke when the kernel did not enable
     their XSAVE state) and the size from AT_MINSIGSTKSZ in /proc/self/auxv.
``xsave_source`` says which one was used.

Parsing is separate from probing: ``parse_cpuinfo`` and
``parse_freebsd_sysctl`` take text, so they are tested on recorded output.
The FreeBSD probe (sysctl kern.features.linux64, linprocfs cpuinfo) is
written against FreeBSD's documented interfaces and is untested on FreeBSD.

It refuses (``check_compat``): another arch, a FreeBSD host without the
Linuxulator for a Linux container, missing ISA flags, missing XSAVE
components, too little free memory or disk for what was announced.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from capture.errors import PlatformError

# CPU flags a user-space program can execute or observe; the rest of the
# flags line (hypervisor, constant_tsc, mitigations, ...) does not matter to
# a migrated process.
_ISA_EXACT = frozenset("""
fpu cx8 cmov mmx fxsr sse sse2 pni ssse3 sse4_1 sse4_2 sse4a cx16 popcnt movbe
aes pclmulqdq avx avx2 fma fma4 f16c bmi1 bmi2 adx abm lzcnt rdrand rdseed
sha_ni xop tbm lm lahf_lm xsave xsaveopt xsavec xsaves fsgsbase rdpid rdtscp
erms fsrm clflushopt clwb gfni vaes vpclmulqdq avx_vnni movdiri movdir64b
serialize pku ospke clzero mwaitx 3dnowprefetch prefetchw invpcid umip waitpkg
cldemote tsxldtrk avx_vnni_int8 avx_ifma avx_ne_convert cmpccxadd hle rtm
""".split())
_ISA_PREFIX = ("avx512", "amx_")

XSAVE_COMPONENTS: dict[int, str] = {
    0: "x87", 1: "SSE", 2: "AVX (YMM_Hi128)", 3: "MPX BNDREGS", 4: "MPX BNDCSR",
    5: "AVX-512 opmask", 6: "AVX-512 ZMM_Hi256", 7: "AVX-512 Hi16_ZMM",
    9: "PKRU", 11: "CET_U", 17: "AMX XTILECFG", 18: "AMX XTILEDATA", 19: "APX",
}
# Components a migrated process can depend on. Not counted: MPX (bits 3, 4;
# Linux dropped MPX support in 5.6, so no process can have live bounds state and
# BND instructions are NOPs) and CET_U (bit 11; shadow stacks are not migrated).
USER_XSAVE_MASK = sum(1 << b for b in XSAVE_COMPONENTS if b not in (3, 4, 11))

AT_MINSIGSTKSZ = 51


@dataclass(frozen=True, slots=True)
class HostInfo:
    os: str                     # "Linux" or "FreeBSD"
    arch: str                   # "x86_64" (FreeBSD amd64 normalised)
    kernel: str                 # kernel release
    cpu_flags: tuple[str, ...]  # sorted, user-visible ISA flags present on every CPU
    xsave_mask: int             # XCR0
    xsave_size: int             # bytes of the XSAVE area for xsave_mask (0 if unknown)
    xsave_source: str           # "xgetbv", "cpuinfo-flags", "none"
    linuxulator: bool           # FreeBSD: Linux ABI available; Linux: True (native)
    mem_free: int               # bytes available for new processes
    disk_free: int              # bytes free in the state directory
    cpus: int = 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        return d

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "hostinfo") -> "HostInfo":
        from runtime_shim.migration.wire import ProtocolError, get_bool, get_int, get_str, get_str_list

        if not isinstance(obj, dict):
            raise ProtocolError(f"{where} is not an object")
        return cls(
            os=get_str(obj, "os", where, max_len=32),
            arch=get_str(obj, "arch", where, max_len=32),
            kernel=get_str(obj, "kernel", where, max_len=128),
            cpu_flags=tuple(sorted(get_str_list(obj, "cpu_flags", where))),
            xsave_mask=get_int(obj, "xsave_mask", where, hi=(1 << 64) - 1),
            xsave_size=get_int(obj, "xsave_size", where, hi=1 << 20),
            xsave_source=get_str(obj, "xsave_source", where, max_len=32),
            linuxulator=get_bool(obj, "linuxulator", where),
            mem_free=get_int(obj, "mem_free", where),
            disk_free=get_int(obj, "disk_free", where),
            cpus=get_int(obj, "cpus", where, hi=1 << 20) if "cpus" in obj else 0,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()
    missing_flags: tuple[str, ...] = ()
    missing_xsave: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": list(self.reasons),
                "missing_flags": list(self.missing_flags), "missing_xsave": list(self.missing_xsave)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Verdict":
        from runtime_shim.migration.wire import get_bool, get_str_list

        return cls(ok=get_bool(obj, "ok", "verdict"),
                   reasons=tuple(get_str_list(obj, "reasons", "verdict", max_items=64, max_len=2000)),
                   missing_flags=tuple(get_str_list(obj, "missing_flags", "verdict")),
                   missing_xsave=tuple(get_str_list(obj, "missing_xsave", "verdict")))

    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "compatible"


@dataclass(frozen=True, slots=True)
class Needs:
    """What the migration needs from the destination beyond CPU compatibility."""

    memory: int = 0
    disk: int = 0
    guest_os: str = "Linux"   # ABI of the migrated processes (always Linux-shaped here)


def is_isa_flag(flag: str) -> bool:
    return flag in _ISA_EXACT or flag.startswith(_ISA_PREFIX)


def normalize_arch(machine: str) -> str:
    return {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine, machine)


def xsave_names(mask: int) -> list[str]:
    return [f"{XSAVE_COMPONENTS.get(b, 'component')} (bit {b})" for b in range(64) if mask >> b & 1]


def check_compat(src: HostInfo, dst: HostInfo, needs: Needs = Needs()) -> Verdict:
    """Can a container captured on *src* run on *dst*?"""
    reasons: list[str] = []
    if src.arch != dst.arch:
        reasons.append(f"arch: source is {src.arch}, destination is {dst.arch}")
    if dst.os == "FreeBSD" and needs.guest_os == "Linux" and not dst.linuxulator:
        reasons.append("destination is FreeBSD without the Linuxulator (kern.features.linux64 is not 1; kldload linux64)")
    have = set(dst.cpu_flags)
    missing = sorted(f for f in src.cpu_flags if is_isa_flag(f) and f not in have)
    if missing:
        reasons.append("destination CPU lacks flags: " + " ".join(missing))
    missing_x = src.xsave_mask & ~dst.xsave_mask & USER_XSAVE_MASK
    xnames = xsave_names(missing_x)
    if missing_x:
        reasons.append(f"destination XSAVE (XCR0=0x{dst.xsave_mask:x}) lacks components of the source "
                       f"(XCR0=0x{src.xsave_mask:x}): " + ", ".join(xnames))
    if needs.memory and dst.mem_free < needs.memory:
        reasons.append(f"destination has {dst.mem_free} bytes of free memory, the container needs {needs.memory}")
    if needs.disk and dst.disk_free < needs.disk:
        reasons.append(f"destination state dir has {dst.disk_free} bytes free, the migration announces {needs.disk}")
    return Verdict(ok=not reasons, reasons=tuple(reasons), missing_flags=tuple(missing),
                   missing_xsave=tuple(xnames))


# -- parsing (pure) --------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> tuple[str, ...]:
    """ISA flags present on every processor of a /proc/cpuinfo text."""
    common: set[str] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags = set(value.split())
            common = flags if common is None else common & flags
    if common is None:
        return ()
    return tuple(sorted(f for f in common if is_isa_flag(f)))


def xsave_mask_from_flags(flags: set[str] | tuple[str, ...]) -> int:
    """XCR0 as far as the flags line reveals it (see the module docstring)."""
    f = set(flags)
    mask = 0
    if "fpu" in f or "fxsr" in f:
        mask |= 1
    if "sse" in f:
        mask |= 1 << 1
    if "avx" in f:
        mask |= 1 << 2
    if "mpx" in f:
        mask |= 1 << 3 | 1 << 4
    if "avx512f" in f:
        mask |= 1 << 5 | 1 << 6 | 1 << 7
    if "ospke" in f:
        mask |= 1 << 9
    if "amx_tile" in f:
        mask |= 1 << 17 | 1 << 18
    return mask


def parse_meminfo_available(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            return int(parts[1]) * 1024
    return 0


def parse_auxv(data: bytes) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in range(0, len(data) - 15, 16):
        key, val = struct.unpack_from("=QQ", data, i)
        if key == 0:
            break
        out[key] = val
    return out


def parse_freebsd_sysctl(text: str) -> dict[str, str]:
    """``sysctl name1 name2 ...`` output (``name: value`` lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


# -- probing (touches the host) -----------------------------------------------------------------

_XGETBV = bytes.fromhex("31c9" "0f01d0" "48c1e220" "4809d0" "c3")
_CPUID_EBX = bytes.fromhex("53" "89f8" "89f1" "0fa2" "89d8" "5b" "c3")


def _xgetbv_cpuid() -> tuple[int, int]:
    """(XCR0, cpuid(0xD,0).EBX) by running two tiny stubs; raises OSError if refused."""
    mem = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        mem.write(_XGETBV + b"\x90" * (32 - len(_XGETBV)) + _CPUID_EBX)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        xgetbv = ctypes.CFUNCTYPE(ctypes.c_uint64)(base)
        cpuid_ebx = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32)(base + 32)
        xcr0 = int(xgetbv())
        size = int(cpuid_ebx(0xD, 0))
        del xgetbv, cpuid_ebx
        return xcr0, size
    finally:
        try:
            mem.close()
        except BufferError:
            pass


def probe_linux(state_dir: Path, *, proc: Path = Path("/proc")) -> HostInfo:
    uname = os.uname()
    arch = normalize_arch(uname.machine)
    try:
        cpuinfo = (proc / "cpuinfo").read_text()
        meminfo = (proc / "meminfo").read_text()
    except OSError as err:
        raise PlatformError(f"cannot read {proc}/cpuinfo or meminfo: {err}", errno=err.errno) from err
    flags = parse_cpuinfo(cpuinfo)
    xsave_source = "none"
    mask, size = 0, 0
    if arch == "x86_64" and "xsave" in flags:
        try:
            mask, size = _xgetbv_cpuid()
            xsave_source = "xgetbv"
        except (OSError, ValueError):
            mask = xsave_mask_from_flags(flags)
            try:
                size = parse_auxv((proc / "self/auxv").read_bytes()).get(AT_MINSIGSTKSZ, 0)
            except OSError:
                size = 0
            xsave_source = "cpuinfo-flags"
    return HostInfo(
        os=uname.sysname, arch=arch, kernel=uname.release, cpu_flags=flags,
        xsave_mask=mask, xsave_size=size, xsave_source=xsave_source, linuxulator=True,
        mem_free=parse_meminfo_available(meminfo), disk_free=shutil.disk_usage(state_dir).free,
        cpus=os.cpu_count() or 0,
    )


def probe_freebsd(state_dir: Path) -> HostInfo:  # pragma: no cover - FreeBSD only, untested
    """FreeBSD amd64: sysctl for OS facts, linprocfs' cpuinfo for flags (needs linprocfs)."""
    names = ["kern.ostype", "kern.osrelease", "hw.machine_arch", "hw.pagesize",
             "vm.stats.vm.v_free_count", "vm.stats.vm.v_inactive_count", "kern.features.linux64"]
    proc = subprocess.run(["sysctl", *names], capture_output=True, text=True)
    vals = parse_freebsd_sysctl(proc.stdout)  # missing names are simply absent
    page = int(vals.get("hw.pagesize", "4096"))
    free = (int(vals.get("vm.stats.vm.v_free_count", "0")) + int(vals.get("vm.stats.vm.v_inactive_count", "0"))) * page
    flags: tuple[str, ...] = ()
    cpuinfo = Path("/compat/linux/proc/cpuinfo")
    if cpuinfo.exists():
        flags = parse_cpuinfo(cpuinfo.read_text())
    return HostInfo(
        os=vals.get("kern.ostype", "FreeBSD"), arch=normalize_arch(vals.get("hw.machine_arch", "")),
        kernel=vals.get("kern.osrelease", ""), cpu_flags=flags,
        xsave_mask=xsave_mask_from_flags(flags), xsave_size=0, xsave_source="cpuinfo-flags",
        linuxulator=vals.get("kern.features.linux64") == "1", mem_free=free,
        disk_free=shutil.disk_usage(state_dir).free, cpus=os.cpu_count() or 0,
    )


def probe(state_dir: Path) -> HostInfo:
    if os.uname().sysname == "FreeBSD":  # pragma: no cover
        return probe_freebsd(state_dir)
    return probe_linux(state_dir)


def load_recorded(path: Path) -> HostInfo:
    import json

    return HostInfo.from_json(json.loads(path.read_text()), where=str(path))


