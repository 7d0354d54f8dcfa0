"""Two test "hosts" on this machine: network namespaces joined by a veth pair.

``TestHosts`` (a context manager) creates ``hetmig-test-<pid>-<rand>-a`` and
``...-b``, a veth pair between them with 10.210.0.1/24 on A and 10.210.0.2/24
on B (a private range, only ever inside these namespaces, so concurrent test
sessions cannot collide), brings up ``lo`` in both, and on exit kills every
process still inside them and deletes both namespaces (which removes the veth
pair with them). ``cleanup_stale()`` removes ``hetmig-test-*`` namespaces
whose creating process is gone; it never touches a namespace of a live test.

It refuses to run without ``ip`` (tests call ``require("ip")`` first) and
never touches namespaces it did not name.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Sequence

PREFIX = "hetmig-test-"
SUBNET = "10.210.0.0/24"
_NAME_RE = re.compile(r"^hetmig-test-(\d+)-([0-9a-f]+)-[ab]$")


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
        return ["ip", "netns", "exec", self.netns, *cmd]

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

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.base = PREFIX + tag
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

    def close(self) -> None:
        for name in reversed(self._created):
            _kill_and_delete(name)
        self._created.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
