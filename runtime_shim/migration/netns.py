"""Two "hosts" on this machine: network namespaces joined by a veth pair (used by
``hetmig demo`` and the tests).

``TestHosts`` (a context manager) creates ``hetmig-test-<pid>-<rand>-a`` and
``...-b``, a veth pair between them with 10.210.0.1/24 on A and 10.210.0.2/24
on B (a private range, only ever inside these namespaces, so concurrent test
sessions cannot collide), brings up ``lo`` in both, and on exit kills every
process still inside them and deletes both namespaces (which removes the veth
pair with them). ``cleanup_stale()`` removes ``hetmig-test-*`` namespaces
whose creating process is gone; it never touches a namespace of a live test.

``TestHosts.container_net()`` adds a third namespace ``...-c`` for a
container on host A: a veth pair whose container end is ``eth0`` with
10.210.1.2/24 (default route via 10.210.1.1) and whose host end is in A with
10.210.1.1/24. ``make_busybox_rootfs`` writes a static busybox rootfs.

It refuses to run without ``ip`` and never touches namespaces it did not name.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Sequence

PREFIX = "hetmig-test-"
SUBNET = "10.210.0.0/24"
_NAME_RE = re.compile(r"^hetmig-(?:test|demo)-(\d+)-([0-9a-f]+)-[abc]$")
CONTAINER_ADDR = "10.210.1.2"
GATEWAY_ADDR = "10.210.1.1"
BUSYBOX = "/bin/busybox"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def list_netns() -> list[str]:
    """Names of every network namespace ``ip netns`` knows."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _kill_and_delete(name: str) -> None:
    for _ in range(50):
        pids = netns_pids(name)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    _ip("netns", "delete", name, check=False)


def cleanup_stale() -> list[str]:
    """Delete ``hetmig-test-*`` namespaces whose creator pid is dead; return their names."""
    removed: list[str] = []
    for name in list_netns():
        m = _NAME_RE.match(name)
        if not m:
            continue
        creator = int(m.group(1))
        if creator == os.getpid() or os.path.exists(f"/proc/{creator}"):
            continue
        _kill_and_delete(name)
        removed.append(name)
    return removed


@dataclass(frozen=True, slots=True)
class Host:
    """One test host: a network namespace with one address on the shared veth link."""

    netns: str
    addr: str
    ifname: str

    def argv(self, cmd: Sequence[str]) -> list[str]:
        # nsenter, not `ip netns exec`: that one mounts a fresh sysfs over /sys, which
        # hides /sys/fs/cgroup from the agent that must create the container's cgroups
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *cmd]

    def run(self, cmd: Sequence[str], *, timeout: float = 30, check: bool = False,
            input: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(cmd), capture_output=True, text=True,
                              timeout=timeout, check=check, input=input, env=env)

    def popen(self, cmd: Sequence[str], *, env: dict[str, str] | None = None,
              stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE,
              start_new_session: bool = False) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(cmd), stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=start_new_session)


class TestHosts:
    """Context manager: two hosts A and B joined by a veth pair."""

    __test__ = False  # not a pytest test class

    def __init__(self, prefix: str = PREFIX) -> None:
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.base = prefix + tag
        short = secrets.token_hex(4)
        self.a = Host(netns=self.base + "-a", addr="10.210.0.1", ifname=f"hma{short}")
        self.b = Host(netns=self.base + "-b", addr="10.210.0.2", ifname=f"hmb{short}")
        self._created: list[str] = []

    def __enter__(self) -> "TestHosts":
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        for host in (self.a, self.b):
            _ip("netns", "add", host.netns)
            self._created.append(host.netns)
        _ip("link", "add", self.a.ifname, "netns", self.a.netns,
            "type", "veth", "peer", "name", self.b.ifname, "netns", self.b.netns)
        for host in (self.a, self.b):
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.ifname)
            _ip("-n", host.netns, "link", "set", host.ifname, "up")

    def container_net(self) -> str:
        """A network namespace for a container on host A (see the module docstring); its path."""
        name = self.base + "-c"
        _ip("netns", "add", name)
        self._created.append(name)
        host_end = f"hmc{secrets.token_hex(4)}"
        _ip("link", "add", host_end, "netns", self.a.netns, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{CONTAINER_ADDR}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", self.a.netns, "addr", "add", f"{GATEWAY_ADDR}/24", "dev", host_end)
        _ip("-n", self.a.netns, "link", "set", host_end, "up")
        _ip("-n", name, "route", "add", "default", "via", GATEWAY_ADDR)
        return f"/run/netns/{name}"

    def close(self) -> None:
        for name in reversed(self._created):
            _kill_and_delete(name)
        self._created.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal rootfs: the static busybox plus its applet links."""
    if not os.path.isfile(BUSYBOX):
        raise FileNotFoundError(f"{BUSYBOX} (busybox-static) is needed for a busybox rootfs")
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "data"):
        (dest / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest
