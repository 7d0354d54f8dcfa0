"""The FreeBSD world for tests: kernel + linprocfs + tools doubles around the
real FreeBSD platform module.

:func:`freebsd_world` builds a :class:`capture.platform.freebsd.FreeBSDPlatform`
whose ``ptrace``/``waitpid``/``kill`` are the kernel double's, whose linprocfs
is the linprocfs double (refreshed whenever the kernel double stops or
resumes a process, or runs a map-changing call in it) and whose procstat
runner is the tools double. The capture engine takes that module as it is:
the dump accepts ``Feature.ATTACH`` (PT_ATTACH's visible SIGSTOP) for a
seize and ``Feature.FDS_BASIC`` (``procstat -f``) for descriptors, treats
vectored reads as a speed hint, records no clear-tid address without
``Feature.THREAD_EXTRAS`` and asks ``same_open_file`` only for descriptors
with a known inode; the restore runs through
:class:`capture.platform.freebsd_inject.FreeBSDInjectionOps` on the same
module (no adapter left: the former ``EngineGate`` is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from capture.platform.freebsd import FreeBSDPlatform
from tests.freebsd_double.kernel import FreeBSDKernel
from tests.freebsd_double.linprocfs import Linprocfs
from tests.freebsd_double.tools import FreeBSDTools


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
