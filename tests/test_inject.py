"""capture.platform.linux_inject against real processes (no fakes).

A `busybox sleep` (or a forked copy of the test process) is seized, stopped,
made to run injected system calls, has its registers and xsave area written
and read back, and is released to run on unharmed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from capture.errors import PlatformError
from capture.platform import linux_inject as li
from tests.support.tools import BUSYBOX


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([BUSYBOX, "sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def stopped(sleeper: subprocess.Popen[bytes]) -> Iterator[int]:
    li.seize(sleeper.pid, li.PTRACE_O_EXITKILL)
    stop = li.interrupt(sleeper.pid)
    assert stop.stopped and stop.event == li.PTRACE_EVENT_STOP
    yield sleeper.pid
    if sleeper.poll() is None:
        try:
            li.detach(sleeper.pid)
        except PlatformError:
            pass


def test_inject_getpid_and_release(stopped: int, sleeper: subprocess.Popen[bytes]) -> None:
    before = li.get_regs(stopped)
    inj = li.Injector(stopped, li.find_syscall_insn(stopped))
    assert inj("getpid") == stopped
    assert inj("gettid") == stopped
    inj.restore()
    assert li.get_regs(stopped) == before
    li.detach(stopped)
    time.sleep(0.1)
    assert sleeper.poll() is None, "the sleeper died after injection"


def test_injected_error_is_platform_error_with_errno(stopped: int) -> None:
    inj = li.Injector(stopped, li.find_syscall_insn(stopped))
    with pytest.raises(PlatformError) as info:
        inj("close", 12345)
    assert info.value.errno == 9  # EBADF
    assert inj("close", 12345, check=False) == -9
    inj.restore()


def test_remote_scratch_and_vectored_io(stopped: int) -> None:
    inj = li.Injector(stopped, li.find_syscall_insn(stopped))
    scratch = li.RemoteScratch(inj, size=64 * 4096)
    try:
        # more iovecs than IOV_MAX, uneven sizes, through one call
        chunks = [bytes([i % 251]) * (1 + (i * 37) % 97) for i in range(2500)]
        remote, local_bufs, off = [], [], 0
        for c in chunks:
            remote.append((scratch.addr + off, len(c)))
            off += len(c) + 3
            local_bufs.append(ctypes.create_string_buffer(c, len(c)))
        local = [(ctypes.addressof(b), len(c)) for b, c in zip(local_bufs, chunks)]
        assert li.writev_remote(stopped, local, remote) == sum(map(len, chunks))
        back = [ctypes.create_string_buffer(len(c)) for c in chunks]
        li.readv_remote(stopped, [(ctypes.addressof(b), len(c)) for b, c in zip(back, chunks)], remote)
        assert [b.raw for b in back] == chunks
        addr = scratch.put(b"hetmig\0")
        fd = inj("openat", -100 & 0xFFFF_FFFF_FFFF_FFFF, scratch.put(b"/dev/null\0"), 1, 0)
        assert fd >= 0
        assert inj("write", fd, addr, 6) == 6
        inj("close", fd)
    finally:
        scratch.close()
        inj.restore()


def test_regs_roundtrip_and_fs_base(stopped: int) -> None:
    regs = li.get_regs(stopped)
    assert regs.fs_base != 0, "glibc/busybox set a TLS base"
    changed = dataclasses.replace(regs, r12=0x1122334455667788, r13=0xDEADBEEF)
    li.set_regs(stopped, changed)
    assert li.get_regs(stopped).r12 == 0x1122334455667788
    li.set_regs(stopped, regs)
    assert li.get_regs(stopped) == regs


def test_xstate_roundtrip(stopped: int) -> None:
    data = li.get_xstate(stopped)
    assert len(data) >= 576
    comps = {c.number: c for c in li.xstate_components()}
    buf = bytearray(data)
    buf[160:176] = bytes(range(16))  # xmm0
    struct.pack_into("<Q", buf, 512, struct.unpack_from("<Q", buf, 512)[0] | 0x2)  # SSE state present
    if 2 in comps:
        o = comps[2].offset
        buf[o : o + 16] = b"\xab" * 16  # upper half of ymm0
        struct.pack_into("<Q", buf, 512, struct.unpack_from("<Q", buf, 512)[0] | 0x4)
    li.set_xstate(stopped, bytes(buf))
    back = li.get_xstate(stopped)
    assert back[160:176] == bytes(range(16))
    if 2 in comps:
        assert back[comps[2].offset : comps[2].offset + 16] == b"\xab" * 16
    fx = li.get_fpregs(stopped)
    assert len(fx) == 512 and fx[160:176] == bytes(range(16))
    li.set_xstate(stopped, data)


def test_cpuid_and_components() -> None:
    eax, ebx, ecx, edx = li.cpuid(0)
    vendor = struct.pack("<III", ebx, edx, ecx)
    assert vendor in (b"GenuineIntel", b"AuthenticAMD", b"HygonGenuine") or vendor.isascii()
    comps = li.xstate_components()
    for c in comps:
        assert c.offset >= 576 and c.size > 0
    if any(c.number == 2 for c in comps):
        assert next(c for c in comps if c.number == 2).offset == 576  # YMM is architecturally at 576


def test_rseq_config_of_glibc_thread() -> None:
    """A glibc program registers rseq; python-started children do too."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            signal.pause()
        finally:
            os._exit(0)
    try:
        li.seize(pid, li.PTRACE_O_EXITKILL)
        li.interrupt(pid)
        rs = li.get_rseq(pid)
        assert rs is None or (rs.abi_pointer and rs.abi_size >= 32)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_fork_child_reported(tmp_path: Path) -> None:
    """An injected fork() under TRACEFORK hands back the traced child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            signal.pause()
        finally:
            os._exit(0)
    child = 0
    try:
        li.seize(pid, li.TRACE_CHILDREN)
        li.interrupt(pid)
        inj = li.Injector(pid, li.find_syscall_insn(pid))
        res = inj.call("fork")
        child = res.child
        assert res.value > 0 and child == res.value
        stop = li.wait_stop(child)
        assert stop.stopped
        with open(f"/proc/{child}/status") as fh:
            assert f"PPid:\t{pid}" in fh.read()
    finally:
        for p in (child, pid):
            if p:
                os.kill(p, signal.SIGKILL)
        for p in (child, pid):
            if p:
                try:
                    os.waitpid(p, li.WALL)
                except ChildProcessError:
                    pass


def test_seize_missing_pid_is_platform_error() -> None:
    with pytest.raises(PlatformError) as info:
        li.seize(0x3FFFFF)
    assert info.value.errno == 3  # ESRCH


def test_parse_maps_recorded_text() -> None:
    text = (
        "55d0c0a00000-55d0c0a01000 r--p 00000000 fe:00 123   /usr/bin/x\n"
        "7ffd1d9f4000-7ffd1d9f6000 r-xp 00000000 00:00 0                          [vdso]\n"
        "7f00000000-7f00001000 rw-p 00000000 00:00 0 \n"
    )
    maps = li.parse_maps(text)
    assert [m.path for m in maps] == ["/usr/bin/x", "[vdso]", ""]
    assert maps[1].start == 0x7FFD1D9F4000 and maps[1].perms == "r-xp"


def test_write_file_ranges_across_windows(stopped: int, tmp_path: Path) -> None:
    """Segments split across file windows land byte-exactly, with 1 and 2 workers."""
    data = bytes((i * 7 + i // 4096) % 256 for i in range(40 * 4096))
    src = tmp_path / "pages.img"
    src.write_bytes(data)
    inj = li.Injector(stopped, li.find_syscall_insn(stopped))
    scratch = li.RemoteScratch(inj, size=64 * 4096)
    try:
        # file pages 0..9 -> remote 20..29, 10..39 -> remote 30..59 (windows of 3 pages)
        segs = [(0, scratch.addr + 20 * 4096, 10 * 4096), (10 * 4096, scratch.addr + 30 * 4096, 30 * 4096)]
        fd = os.open(src, os.O_RDONLY)
        try:
            for workers in (1, 2):
                li.write_memory(stopped, scratch.addr + 20 * 4096, b"\0" * 40 * 4096)
                assert li.write_file_ranges(stopped, fd, segs, workers=workers, window=3 * 4096) == 40 * 4096
                assert li.read_memory(stopped, scratch.addr + 20 * 4096, 40 * 4096) == data
        finally:
            os.close(fd)
    finally:
        scratch.close()
        inj.restore()
