"""Host info and the compatibility pre-check, on recorded host infos and on this host."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from capture.errors import MigrationError

from runtime_shim.migration import hostinfo
from runtime_shim.migration.hostinfo import HostInfo, Needs

DATA = Path(__file__).parent / "data" / "hostinfo"


def rec(name: str) -> HostInfo:
    return hostinfo.load_recorded(DATA / f"{name}.json")


def test_same_host_is_compatible() -> None:
    spr = rec("linux-sapphirerapids")
    v = hostinfo.check_compat(spr, spr)
    assert v.ok and v.reasons == ()


def test_avx512_source_refused_on_skylake_naming_flags_and_xsave() -> None:
    v = hostinfo.check_compat(rec("linux-sapphirerapids"), rec("linux-skylake"))
    assert not v.ok
    assert {"avx512f", "avx512bw", "amx_tile", "vaes", "gfni"} <= set(v.missing_flags)
    assert "hypervisor" not in v.missing_flags  # not an ISA flag
    assert any("AVX-512 ZMM_Hi256 (bit 6)" in x for x in v.missing_xsave)
    assert any("AMX XTILEDATA (bit 18)" in x for x in v.missing_xsave)
    assert "PKRU (bit 9)" in v.missing_xsave
    msg = v.message()
    assert "destination CPU lacks flags: " in msg and "avx512f" in msg
    assert "XCR0=0x1f" in msg and "XCR0=0x602e7" in msg


def test_skylake_source_fits_on_sapphirerapids() -> None:
    assert hostinfo.check_compat(rec("linux-skylake"), rec("linux-sapphirerapids")).ok


def test_freebsd_without_linuxulator_refused() -> None:
    v = hostinfo.check_compat(rec("linux-sapphirerapids"), rec("freebsd-no-linuxulator"))
    assert not v.ok
    assert "without the Linuxulator" in v.message() and "kldload linux64" in v.message()
    ok = hostinfo.check_compat(rec("linux-sapphirerapids"), replace(rec("freebsd-no-linuxulator"), linuxulator=True))
    assert ok.ok


def test_arch_and_resources() -> None:
    spr = rec("linux-sapphirerapids")
    arm = replace(spr, arch="aarch64", cpu_flags=(), xsave_mask=0)
    v = hostinfo.check_compat(spr, arm)
    assert "arch: source is x86_64, destination is aarch64" in v.message()
    small = replace(spr, mem_free=1 << 20, disk_free=2 << 20)
    v = hostinfo.check_compat(spr, small, Needs(memory=1 << 30, disk=4 << 20))
    assert not v.ok
    assert f"{1 << 20} bytes of free memory, the container needs {1 << 30}" in v.message()
    assert f"{2 << 20} bytes free, the migration announces {4 << 20}" in v.message()


def test_json_roundtrip_and_validation() -> None:
    spr = rec("linux-sapphirerapids")
    assert HostInfo.from_json(json.loads(json.dumps(spr.to_json()))) == spr
    bad = spr.to_json()
    bad["xsave_mask"] = "lots"
    with pytest.raises(MigrationError, match=r"hostinfo\.xsave_mask='lots' is not an integer"):
        HostInfo.from_json(bad)
    v = hostinfo.check_compat(spr, rec("linux-skylake"))
    assert hostinfo.Verdict.from_json(v.to_json()) == v


CPUINFO = """processor\t: 0
flags\t\t: fpu sse sse2 avx avx2 avx512f hypervisor constant_tsc
processor\t: 1
flags\t\t: fpu sse sse2 avx avx2 hypervisor
"""


def test_parse_cpuinfo_takes_flags_common_to_all_cpus() -> None:
    assert hostinfo.parse_cpuinfo(CPUINFO) == ("avx", "avx2", "fpu", "sse", "sse2")


def test_xsave_from_flags_matches_xgetbv_here() -> None:
    me = hostinfo.probe(Path("/tmp"))
    assert me.os == "Linux" and me.arch == "x86_64" and me.mem_free > 0 and me.disk_free > 0
    if me.xsave_source != "xgetbv":
        pytest.skip("xgetbv stub not allowed here (W^X); flags-derived mask in use")
    assert me.xsave_mask & 0x7 == 0x7  # x87, SSE, AVX on any machine with avx
    assert hostinfo.xsave_mask_from_flags(me.cpu_flags) == me.xsave_mask
    assert me.xsave_size >= 576


def test_parse_auxv_and_freebsd_sysctl() -> None:
    import struct

    raw = struct.pack("=6Q", 51, 3632, 6, 4096, 0, 0)
    assert hostinfo.parse_auxv(raw) == {51: 3632, 6: 4096}
    text = "kern.ostype: FreeBSD\nkern.osrelease: 14.1-RELEASE\nhw.machine_arch: amd64\nkern.features.linux64: 1\n"
    vals = hostinfo.parse_freebsd_sysctl(text)
    assert vals["kern.features.linux64"] == "1" and hostinfo.normalize_arch(vals["hw.machine_arch"]) == "x86_64"
