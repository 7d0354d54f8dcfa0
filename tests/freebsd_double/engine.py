"""The FreeBSD world for tests: kernel + linprocfs + tools doubles around the
real FreeBSD platform module, and the feature gate adapter for the engine.

:func:`freebsd_world` builds a :class:`capture.platform.freebsd.FreeBSDPlatform`
whose ``ptrace``/``waitpid``/``kill`` are the kernel double's, whose linprocfs
is the linprocfs double (refreshed whenever the kernel double stops or
resumes a process) and whose procstat runner is the tools double.

:class:`EngineGate` is what lets the unchanged dump engine accept the
FreeBSD module. ``capture.dump.dump`` refuses any platform lacking SEIZE,
VECTORED_READ, FDS or THREAD_EXTRAS, which the FreeBSD module truthfully
does not declare. The gate declares them and says, for each, what actually
happens instead (every substitution is a difference the contract test
allows explicitly):

* SEIZE: the engine's seize()+interrupt() map onto PT_ATTACH + waitpid for
  the SIGSTOP stop (visible to the process on FreeBSD; the double does not
  send one). Engine change that removes this: accept ``Feature.SEIZE`` *or*
  a new ``Feature.ATTACH`` ("stopping is visible").
* VECTORED_READ: read_memory_into issues one PT_IO per range; correct, only
  slower. Engine change: treat VECTORED_READ as a speed hint, not a gate.
* FDS: list_fds answers from ``procstat -f`` (no inode/device/size, no
  close-on-exec flag). Engine change: gate on a ``Feature.FDS_BASIC``.
* THREAD_EXTRAS: clear_tid_address is refused by the module (the
  Linuxulator has no PR_GET_TID_ADDRESS); the gate answers 0 ("no
  clear-tid address recorded"). Engine change: make
  ``thread_info.clear_tid_addr`` optional when THREAD_EXTRAS is missing.
* same_open_file (asked because procstat gives no inode/device, so every
  descriptor "matches" every other): the module refuses (kcmp is a
  Linuxulator dummy); the gate answers False, so descriptors sharing one
  open file description are recorded as separate files. Engine change:
  only ask when both descriptors have a known inode.

Everything else is passed through to the module unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.platform.base import Feature
from capture.platform.freebsd import FreeBSDPlatform
from tests.freebsd_double.kernel import FreeBSDKernel
from tests.freebsd_double.linprocfs import Linprocfs
from tests.freebsd_double.tools import FreeBSDTools

GATE_ADDED: frozenset[Feature] = frozenset({Feature.SEIZE, Feature.VECTORED_READ, Feature.FDS, Feature.THREAD_EXTRAS})


@dataclass
class FreeBSDWorld:
    kernel: FreeBSDKernel
    linprocfs: Linprocfs
    tools: FreeBSDTools
    platform: FreeBSDPlatform

    def close(self) -> None:
        self.kernel.close()
        self.tools.close()


def freebsd_world(tmp: Path, pids: tuple[int, ...] = ()) -> FreeBSDWorld:
    procfs = Linprocfs(tmp / "compat-linux-proc")
    procfs.add(pids)

    def changed(pid: int) -> None:
        procfs.add([pid])

    kernel = FreeBSDKernel(on_change=changed)
    tools = FreeBSDTools()
    platform = FreeBSDPlatform(linprocfs=procfs.root, ptrace=kernel.ptrace, waitpid=kernel.waitpid,
                               kill=kernel.kill, procstat_runner=tools)
    return FreeBSDWorld(kernel, procfs, tools, platform)


class EngineGate:
    """The FreeBSD module as the dump engine's feature gate wants it (see module doc)."""

    def __init__(self, inner: FreeBSDPlatform) -> None:
        self.inner = inner
        self.name = inner.name

    def features(self) -> frozenset[Feature]:
        return self.inner.features() | GATE_ADDED

    def clear_tid_address(self, tid: int) -> int:
        return 0

    def same_open_file(self, pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
        return False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)
