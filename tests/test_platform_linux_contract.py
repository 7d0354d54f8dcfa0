"""Contract: the Linux backend implements the whole Platform protocol, and
every feature it declares works on a real process."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

from capture.platform import get_platform
from capture.platform import base
from capture.platform.base import Feature, FdKind, Platform, VmaKind
from capture.platform.linux import LinuxPlatform

CHILD = r"""
import ctypes, mmap, os, signal, socket, sys, time
signal.signal(signal.SIGUSR1, lambda *a: None)
buf = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, 64 * 4096, 8192):
    buf[i] = 0x5A  # every other page touched
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
r, w = os.pipe()
os.write(w, b"buffered bytes")
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sys.stdout.write(f"{addr} {w} {srv.fileno()} {u.fileno()} {srv.getsockname()[1]}\n"); sys.stdout.flush()
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def child(spawn: list[subprocess.Popen[bytes]]) -> Iterator[tuple[int, int, int, int, int, int]]:
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    spawn.append(p)
    assert p.stdout is not None
    addr, wfd, tcp_fd, unix_fd, port = (int(x) for x in p.stdout.readline().split())
    yield p.pid, addr, wfd, tcp_fd, unix_fd, port


def protocol_methods() -> list[str]:
    return [n for n, v in vars(Platform).items() if callable(v) and not n.startswith("_")]


def test_implements_every_protocol_method() -> None:
    plat = get_platform()
    assert isinstance(plat, Platform)
    assert isinstance(plat, LinuxPlatform) and plat.name == "linux"
    names = protocol_methods()
    assert len(names) >= 30
    for name in names:
        impl = getattr(type(plat), name)
        want = inspect.signature(getattr(Platform, name))
        got = inspect.signature(impl)
        assert list(got.parameters) == list(want.parameters), name


def test_no_linux_only_public_api() -> None:
    public = {n for n in dir(LinuxPlatform) if not n.startswith("_")} | {"proc"}
    assert public == {n for n in dir(Platform) if not n.startswith("_")} | {"name", "proc"}


def test_base_dataclasses_are_frozen_and_slotted() -> None:
    import dataclasses

    for obj in vars(base).values():
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            assert obj.__dataclass_params__.frozen, obj  # type: ignore[attr-defined]
            assert hasattr(obj, "__slots__"), obj


def test_features_tell_the_truth(child: tuple[int, int, int, int, int, int]) -> None:
    pid, addr, wfd, tcp_fd, unix_fd, port = child
    plat = get_platform()
    feats = plat.features()
    assert feats == frozenset(Feature)  # Linux declares everything: check each one

    # discovery needs no stop
    assert Feature.NAMESPACES in feats
    ns = plat.namespaces(pid)
    assert ns.pid == os.stat("/proc/self/ns/pid").st_ino and ns.mnt and ns.user
    assert Feature.FDS in feats and Feature.SOCKET_INFO in feats
    fds = {f.fd: f for f in plat.list_fds(pid)}
    assert fds[wfd].kind is FdKind.PIPE and fds[wfd].pipe_id == os.stat(f"/proc/{pid}/fd/{wfd}").st_ino
    tcp, unix = fds[tcp_fd].socket, fds[unix_fd].socket
    assert fds[tcp_fd].kind is FdKind.INET_SOCKET and tcp is not None
    assert tcp.local == f"127.0.0.1:{port}" and tcp.state == 10  # TCP_LISTEN
    assert fds[unix_fd].kind is FdKind.UNIX_SOCKET and unix is not None
    assert unix.type == socket.SOCK_DGRAM
    assert Feature.PIPE_DATA in feats
    pd = plat.read_pipe_data(pid, wfd, 1 << 16)
    assert pd.data == b"buffered bytes" and pd.capacity >= 4096
    assert plat.read_pipe_data(pid, wfd, 1 << 16).data == b"buffered bytes"  # not consumed
    assert Feature.CLOCKS in feats and plat.clocks().boottime_ns >= plat.clocks().monotonic_ns - 10**9

    # page presence: exactly the touched pages of the child's buffer
    assert Feature.PAGE_PRESENCE in feats
    vma = next(v for v in plat.read_maps(pid) if v.start <= addr < v.end)
    assert vma.kind is VmaKind.ANON
    runs = [r for r in plat.present_runs(pid, vma) if addr <= r[0] < addr + 64 * 4096]
    assert runs == [(addr + i * 8192, 1) for i in range(32)]

    assert Feature.VECTORED_READ in feats
    out = bytearray(3 * 4096)
    got = plat.read_memory_into(pid, [(addr, 4096), (addr + 8192, 4096), (addr + 4096, 4096)], memoryview(out))
    assert got == len(out) and out[0] == 0x5A and out[4096] == 0x5A and out[8192] == 0

    tids = plat.list_threads(pid)
    assert tids == (pid,)
    assert Feature.SEIZE in feats
    plat.seize(pid)
    try:
        plat.interrupt(pid)
        status = open(f"/proc/{pid}/status").read()
        assert "\nState:\tt (tracing stop)" in status
        assert Feature.GP_REGS in feats
        regs = plat.get_regs(pid)
        assert regs.cs == 0x33 and regs.fs_base != 0
        assert Feature.XSAVE in feats
        xs = plat.get_xsave(pid)
        assert len(xs.data) >= 576
        plat.set_xsave(pid, xs)
        assert Feature.MEMORY_WRITE in feats
        plat.write_memory(pid, addr + 4096, b"written")
        check = bytearray(7)
        plat.read_memory_into(pid, [(addr + 4096, 7)], memoryview(check))
        assert bytes(check) == b"written"
        assert Feature.SIGACTIONS in feats
        acts = {a.signo: a for a in plat.sigactions(pid, pid)}
        assert len(acts) == 64
        assert acts[10].handler > 1  # SIGUSR1: a Python-level handler installs the C one
        assert acts[13].handler == 1  # Python ignores SIGPIPE
        assert Feature.THREAD_EXTRAS in feats
        sas = plat.sigaltstack(pid)
        assert sas.ss_flags in (0, 2)  # SS_DISABLE or on
        assert plat.clear_tid_address(pid) != 0
        head, length = plat.robust_list(pid)
        assert head != 0 and length == 24
        ex = plat.task_extras(pid, pid)
        assert ex.dumpable == 1 and ex.securebits == 0 and not ex.child_subreaper
        assert Feature.RSEQ in feats
        rs = plat.rseq(pid)
        assert rs is None or rs.abi_size >= 32
        assert Feature.SECCOMP in feats
        assert plat.thread_info(pid, pid).seccomp_mode == 0
        assert plat.get_regs(pid) == regs  # injection restored every register
    finally:
        plat.release(pid)
    time.sleep(0.1)
    status = open(f"/proc/{pid}/status").read()
    assert "TracerPid:\t0\n" in status and "(tracing stop)" not in status
    assert plat.cgroups(pid) == plat.cgroups(os.getpid())


def test_unix_socketpair_peers() -> None:
    a, b = socket.socketpair()
    try:
        fds = {f.fd: f for f in get_platform().list_fds(os.getpid())}
        sa, sb = fds[a.fileno()].socket, fds[b.fileno()].socket
        assert sa is not None and sb is not None
        assert sa.peer_ino == os.fstat(b.fileno()).st_ino and sb.peer_ino == os.fstat(a.fileno()).st_ino
    finally:
        a.close()
        b.close()


def test_same_open_file(child: tuple[int, int, int, int, int, int]) -> None:
    pid, _addr, wfd, tcp_fd, _u, _p = child
    plat = get_platform()
    assert plat.same_open_file(pid, wfd, pid, wfd)
    assert not plat.same_open_file(pid, wfd, pid, tcp_fd)
