"""Restore through the FreeBSD module: the counter continues (issue 8).

A real counter process is dumped through ``capture.platform.freebsd`` and
restored through ``capture.platform.freebsd_inject`` (PT_ATTACH,
PT_SC_REMOTE, PT_SETREGS, PT_SETXSTATE, PT_IO, PT_DETACH ...) whose
ptrace/waitpid/linprocfs are the FreeBSD interface double
(tests/freebsd_double); next to it the same test through the Linux module
(linux dump, linux_inject restore). The double refuses the Linux calls the
Linuxulator refuses (clone3 set_tid, PR_SET_MM_MAP, ARCH_MAP_VDSO_64, rseq,
setfsuid, capset ...): a restore that ignores the missing features runs into
them, the compatible path of :mod:`capture.restore_compat` does not.

Verified against a FreeBSD interface double built from the documented
layouts, not on a FreeBSD host.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from capture.dump import dump
from capture.errors import RestoreError, RestoreRefusedError
from capture.platform.base import Platform
from capture.platform.freebsd_inject import FreeBSDInjectionOps, seed_elf
from capture.platform.linux import LinuxPlatform
from capture.restore import InjectionOps, _linux_ops, restore
from tests.freebsd_double.engine import FreeBSDWorld
from tests.programs.harness import first_field, lines, wait_lines
# the counter process and the FreeBSD world around it, made as the dump tests make them
from tests.test_double_dump import Counter, counter, world  # noqa: F401  (fixtures)

CLONE3, PRCTL, ARCH_PRCTL, RSEQ = 435, 157, 158, 334
ENOSYS_FREEBSD = 78


def dump_counter(kind: str, counter: Counter, world: FreeBSDWorld, images: Path) -> int:
    """Dump (the counter is killed); return the last value it wrote."""
    platform: Platform = LinuxPlatform() if kind == "linux" else world.platform
    res = dump(counter.pid, images, platform=platform)
    assert res.killed
    counter.proc.wait(timeout=10)
    return first_field(lines(counter.out)[-1])


def ops_for(kind: str, world: FreeBSDWorld) -> InjectionOps:
    return _linux_ops() if kind == "linux" else cast(InjectionOps, FreeBSDInjectionOps(world.platform))


def assert_continues(out: Path, last: int) -> None:
    got = wait_lines(out, len(lines(out)) + 3)
    values = [first_field(x) for x in got]
    at = values.index(last)
    assert values[at + 1:at + 4] == [last + 1, last + 2, last + 3], "continues from its last value"


@pytest.mark.parametrize("kind", ["linux", "freebsd"])
def test_counter_dumped_and_restored_through_module_continues(kind: str, counter: Counter, world: FreeBSDWorld,
                                                              tmp_path: Path, restored: list[int]) -> None:
    images = tmp_path / "img"
    last = dump_counter(kind, counter, world, images)
    res = restore(images, ops=ops_for(kind, world))
    restored.append(res.root_pid)
    assert_continues(counter.out, last)
    if kind == "freebsd":
        used = {name for name, _ in world.kernel.calls}
        assert {"PT_ATTACH", "PT_FOLLOW_FORK", "PT_SC_REMOTE", "PT_IO", "PT_SETREGS", "PT_SETFSBASE",
                "PT_SETXSTATE", "PT_DETACH"} <= used
        # the compatible path ran into none of the Linuxulator's refusals
        assert world.kernel.refused == [], world.kernel.refused
        text = "\n".join(res.warnings)
        assert "no clone3 set_tid" in text or res.root_pid == counter.pid
        assert "PR_SET_MM_MAP" in text
    else:
        assert res.root_pid == counter.pid  # Linux keeps the pid


class _Claims:
    """FreeBSD ops that claim some of Linux's features: those steps take the plain Linux path."""

    def __init__(self, inner: FreeBSDInjectionOps, claimed: frozenset[str]) -> None:
        self._inner = inner
        self._claimed = claimed

    def features(self) -> frozenset[str]:
        return self._inner.features() | self._claimed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


SETFSGID, CAPSET = 123, 126
EINVAL_FREEBSD, EPERM_FREEBSD = 22, 1


@pytest.mark.parametrize("claimed, dumped_by, syscall, errno, message", [
    ("set_tid", "freebsd", CLONE3, ENOSYS_FREEBSD, "clone3"),
    ("mm_map", "freebsd", PRCTL, EINVAL_FREEBSD, "PR_SET_MM_MAP"),
    ("map_vdso", "freebsd", ARCH_PRCTL, EINVAL_FREEBSD, "arch_prctl"),
    ("rseq", "linux", RSEQ, ENOSYS_FREEBSD, "rseq"),
    ("fsuid", "freebsd", SETFSGID, ENOSYS_FREEBSD, "setfsgid"),
    ("caps", "linux", CAPSET, EPERM_FREEBSD, "capset"),
])
def test_plain_linux_steps_hit_the_linuxulator_refusals(claimed: str, dumped_by: str, syscall: int, errno: int,
                                                         message: str, counter: Counter, world: FreeBSDWorld,
                                                         tmp_path: Path) -> None:
    """Each feature the FreeBSD ops lack, claimed anyway: its Linux step runs into the double's
    Linuxulator refusal (and the restore fails cleanly); without the claim that step is avoided."""
    images = tmp_path / "img"
    dump_counter(dumped_by, counter, world, images)
    ops = cast(InjectionOps, _Claims(FreeBSDInjectionOps(world.platform), frozenset({claimed})))
    with pytest.raises(RestoreError, match=message):
        restore(images, ops=ops)
    assert (syscall, errno) in world.kernel.refused, world.kernel.refused


def test_linux_image_restored_through_freebsd_module_continues(counter: Counter, world: FreeBSDWorld,
                                                               tmp_path: Path, restored: list[int]) -> None:
    """An image made by the Linux module (rseq, capabilities, [vvar]) restores through the FreeBSD ops:
    what the Linuxulator cannot take is skipped with a warning, never run into."""
    images = tmp_path / "img"
    last = dump_counter("linux", counter, world, images)
    res = restore(images, ops=ops_for("freebsd", world))
    restored.append(res.root_pid)
    assert_continues(counter.out, last)
    assert world.kernel.refused == [], world.kernel.refused
    text = "\n".join(res.warnings)
    assert "rseq" in text and "capabilities" in text and "PR_SET_MM_MAP" in text, res.warnings


def test_compatible_path_refuses_a_tree_that_needs_pid_identity(programs: dict[str, Path], world: FreeBSDWorld,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "threads.log"
    proc = subprocess.Popen([sys.executable, str(programs["threads.py"]), str(out)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_lines(out, 2)
        dump(proc.pid, tmp_path / "img", leave_running=True, platform=LinuxPlatform())
    finally:
        proc.kill()
        proc.wait()
    calls = len(world.kernel.calls)
    with pytest.raises(RestoreRefusedError, match="threads"):
        restore(tmp_path / "img", ops=cast(InjectionOps, FreeBSDInjectionOps(world.platform)))
    assert len(world.kernel.calls) == calls, "refused before any process was created"


def test_compatible_path_refuses_a_child_subreaper(counter: Counter, world: FreeBSDWorld, tmp_path: Path) -> None:
    """PR_SET_CHILD_SUBREAPER is not among the Linuxulator's prctl options: an image that needs it
    is refused before anything is created, not half-way through."""
    from capture.images import read_image, write_image

    images = tmp_path / "img"
    dump_counter("linux", counter, world, images)
    core = next(images.glob("core-*.img"))
    img = read_image(core)
    entry: Any = img.entries[0]
    entry.tc.child_subreaper = True
    write_image(core, img)
    calls = len(world.kernel.calls)
    with pytest.raises(RestoreRefusedError, match="child subreaper"):
        restore(images, ops=ops_for("freebsd", world))
    assert len(world.kernel.calls) == calls, "refused before any process was created"


def test_seed_is_a_linux_branded_static_elf_that_waits(tmp_path: Path) -> None:
    """The seed FreeBSD would brand as Linux (EI_OSABI 3, linuxulator.md 1) and that sleeps in pause()."""
    elf = seed_elf()
    assert elf[:4] == b"\x7fELF" and elf[4:8] == bytes([2, 1, 1, 3])  # ELF64, LSB, v1, ELFOSABI_LINUX
    e_type, e_machine, _v, entry, phoff = struct.unpack_from("<HHIQQ", elf, 16)
    p_type, p_flags, p_off, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff)
    assert (e_type, e_machine, p_type, p_flags, p_off) == (2, 62, 1, 5, 0)  # ET_EXEC x86-64, one R+X PT_LOAD
    assert p_vaddr <= entry < p_vaddr + p_filesz == p_vaddr + len(elf)
    path = tmp_path / "seed"
    path.write_bytes(elf)
    path.chmod(0o700)
    pid = os.posix_spawn(str(path), [str(path)], {})
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/syscall") as fh:
                nr = fh.read().split()[0]
            if fields[0] == "S" and nr == "34":  # sleeping in pause()
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"seed not in pause(): state {fields[0]}, syscall {nr}")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
