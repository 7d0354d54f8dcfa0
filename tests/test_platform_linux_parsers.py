"""The Linux platform's procfs parsers, on recorded /proc text (tests/data/procfs)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from capture.errors import PlatformError
from capture.platform import get_platform
from capture.platform.base import UNLIMITED, FdKind, VmaKind
from capture.platform.linux import (
    MAP_ANONYMOUS,
    MAP_GROWSDOWN,
    MAP_PRIVATE,
    MAP_SHARED,
    PME_FILE,
    PME_PRESENT,
    PME_SWAP,
    LinuxPlatform,
    parse_limits,
    parse_maps,
    parse_net_inet,
    parse_net_unix,
    parse_smaps_vmflags,
    parse_stat,
    parse_timers,
    parse_status,
    present_runs_from_pagemap,
)

DATA = Path(__file__).parent / "data" / "procfs"
PID = 4242


@pytest.fixture
def plat() -> LinuxPlatform:
    p = get_platform(procfs=DATA)
    assert isinstance(p, LinuxPlatform)
    return p


def test_stat_comm_with_spaces_and_parens() -> None:
    base = (DATA / str(PID) / "stat").read_text()
    odd = base.replace("(busybox)", "(a) b (c)")
    st = parse_stat(odd)
    assert st.comm == "a) b (c"
    assert (st.pid, st.state, st.ppid, st.pgid, st.sid) == (4242, "S", 1, 4242, 4242)
    assert st.start_code == 4198400 and st.end_code == 5785993
    assert st.start_brk == 359108608 and st.env_end == 140727260618729
    assert st.exit_signal == 17


def test_stat_refuses_garbage() -> None:
    with pytest.raises(PlatformError, match="no '\\(comm\\)'"):
        parse_stat("4242 busybox S 1")
    with pytest.raises(PlatformError, match="fields"):
        parse_stat("4242 (busybox) S 1 2 3")


def test_process_info_from_recorded_procfs(plat: LinuxPlatform) -> None:
    info = plat.process_info(PID)
    assert info.comm == "busybox" and info.pgid == 4242 and info.sid == 4242
    assert info.umask == 0o22
    assert info.cwd == "/tmp" and info.root == "/" and info.exe == "/usr/bin/busybox"
    assert info.threads == (4242,)
    assert info.creds.uid == 0 and info.creds.cap_inh == 0
    assert info.rlimits[3].cur == 8388608 and info.rlimits[3].max == UNLIMITED
    assert len(info.rlimits) == 16 and [r.resource for r in info.rlimits] == list(range(16))
    assert info.loginuid == 0xFFFF_FFFF
    assert info.personality == 0


def test_limits_missing_row_is_refused() -> None:
    text = (DATA / str(PID) / "limits").read_text()
    broken = "\n".join(ln for ln in text.splitlines() if not ln.startswith("Max open files"))
    with pytest.raises(PlatformError, match="Max open files"):
        parse_limits(broken)


def test_maps_with_vmflags(plat: LinuxPlatform) -> None:
    vmas = plat.read_maps(PID)
    kinds = [v.kind for v in vmas]
    assert kinds == [
        VmaKind.FILE, VmaKind.FILE, VmaKind.FILE, VmaKind.FILE, VmaKind.FILE, VmaKind.ANON,
        VmaKind.HEAP, VmaKind.VVAR, VmaKind.VVAR, VmaKind.VDSO, VmaKind.STACK, VmaKind.VSYSCALL,
    ]
    stack = vmas[10]
    assert stack.flags == MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN
    assert vmas[1].prot == 0x5 and vmas[1].offset == 0x1000 and vmas[1].ino == 2170897
    assert (vmas[1].dev_major, vmas[1].dev_minor) == (0xFE, 0)
    assert vmas[7].madvise == 1 << 16  # [vvar] is VM_DONTDUMP
    assert vmas[11].prot == 0x4


def test_maps_shared_anon_and_bad_line() -> None:
    text = "7f0000000000-7f0000001000 rw-s 00000000 00:01 1234   /dev/zero (deleted)\n"
    (v,) = parse_maps(text)
    assert v.kind is VmaKind.SHMEM and v.flags & MAP_SHARED
    with pytest.raises(PlatformError, match="cannot parse"):
        parse_maps("zzzz\n")
    with pytest.raises(PlatformError, match="smaps has 2 VMAs"):
        parse_maps(text, [frozenset(), frozenset()])


def test_smaps_vmflags() -> None:
    flags = parse_smaps_vmflags((DATA / str(PID) / "smaps").read_text())
    assert len(flags) == 12
    assert "gd" in flags[10]  # the stack grows down


def test_status_and_fds(plat: LinuxPlatform) -> None:
    st = parse_status((DATA / str(PID) / "status").read_text())
    assert st["Name"] == "busybox" and st["SigBlk"] == "0000000000000000"
    fds = plat.list_fds(PID)
    assert [f.fd for f in fds] == [0, 1, 2, 3]
    assert fds[0].kind is FdKind.REG and fds[0].path == "/dev/null"
    assert fds[3].path == "/etc/hostname" and fds[3].flags == 0o100000 and not fds[3].cloexec
    assert fds[3].mnt_id == 27


def test_net_tables() -> None:
    unix = parse_net_unix((DATA / str(PID) / "net" / "unix").read_text())
    assert unix[1129] == (1, 3, "")
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55501 1\n"
    )
    assert parse_net_inet(tcp) == {55501: ("127.0.0.1:8080", "0.0.0.0:0", 10)}


def _pme(*entries: int) -> bytes:
    return struct.pack(f"<{len(entries)}Q", *entries)


def test_pagemap_runs_anon() -> None:
    zero_pfn = 0x1234
    data = _pme(
        0,  # untouched
        PME_PRESENT | 10,
        PME_PRESENT | 11,
        PME_PRESENT | zero_pfn,  # the shared zero page: skipped
        PME_SWAP | 5,
        0,
        PME_PRESENT | PME_FILE | 12,  # anon mapping: file bit does not matter
    )
    runs = present_runs_from_pagemap(data, 0x10000, private_file=False, zero_pfn=zero_pfn)
    assert runs == [(0x11000, 2), (0x14000, 1), (0x16000, 1)]


def test_pagemap_runs_private_file_skips_page_cache() -> None:
    data = _pme(PME_PRESENT | PME_FILE | 1, PME_PRESENT | 2, PME_PRESENT | 3, PME_SWAP | 9)
    runs = present_runs_from_pagemap(data, 0, private_file=True, zero_pfn=None)
    assert runs == [(0x1000, 3)]


def test_pagemap_runs_large_is_fast() -> None:
    import time

    n = 1 << 18  # 1 GiB of pages
    data = _pme(PME_PRESENT | 7) * n
    t0 = time.monotonic()
    runs = present_runs_from_pagemap(data, 0, private_file=False, zero_pfn=None)
    assert runs == [(0, n)]
    assert time.monotonic() - t0 < 0.5


def test_pagemap_runs_refuses_partial_entry() -> None:
    with pytest.raises(PlatformError, match="multiple of 8"):
        present_runs_from_pagemap(b"\x00" * 12, 0, private_file=False, zero_pfn=None)


def test_missing_process_is_a_platform_error(plat: LinuxPlatform) -> None:
    with pytest.raises(PlatformError, match="cannot read"):
        plat.process_info(999999)


def test_timers() -> None:
    text = (
        "ID: 1\nsignal: 14/0000000000000000\nnotify: signal/pid.18287\nClockID: 0\n"
        "ID: 0\nsignal: 10/00007f0000001000\nnotify: thread/tid.18290\nClockID: 1\n"
    )
    t1, t0 = parse_timers(text)
    assert (t1.it_id, t1.clock_id, t1.signo, t1.sigev_notify, t1.notify_tid) == (1, 0, 14, 0, 18287)
    assert (t0.it_id, t0.sival_ptr, t0.sigev_notify, t0.notify_tid) == (0, 0x7F0000001000, 2 | 4, 18290)
    with pytest.raises(PlatformError, match="unknown notify"):
        parse_timers("ID: 0\nsignal: 1/0\nnotify: bogus/pid.1\nClockID: 0\n")
