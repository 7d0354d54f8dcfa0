"""The two-namespace test hosts: they talk over the veth pair and leave nothing behind."""

from __future__ import annotations

import os
import subprocess

from tests.support import netns
from tests.support.tools import require


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_two_hosts_ping_and_cleanup() -> None:
    require("ip")
    before_ns = set(netns.list_netns())
    before_links = _links()
    with netns.TestHosts() as hosts:
        assert {hosts.a.netns, hosts.b.netns} <= set(netns.list_netns())
        r = hosts.a.run(["ping", "-c", "1", "-W", "2", hosts.b.addr])
        assert r.returncode == 0, r.stdout + r.stderr
        # the host's own namespace has no route into the test subnet
        assert hosts.b.ifname not in _links()
        addr = hosts.b.run(["ip", "-o", "-4", "addr", "show", "dev", hosts.b.ifname]).stdout
        assert "10.210.0.2/24" in addr
        sleeper = hosts.b.popen(["sleep", "60"])
        assert sleeper.pid in netns.netns_pids(hosts.b.netns) or sleeper.poll() is None
    assert sleeper.wait(timeout=5) != 0  # killed by the cleanup
    assert set(netns.list_netns()) == before_ns
    assert _links() == before_links


def test_cleanup_stale_removes_only_dead_creators() -> None:
    require("ip")
    # a namespace named as if created by a dead process (pid beyond pid_max is never alive)
    dead = "hetmig-test-999999999-abcdef-a"
    mine = f"hetmig-test-{os.getpid()}-fedcba-a"
    subprocess.run(["ip", "netns", "add", dead], check=True)
    subprocess.run(["ip", "netns", "add", mine], check=True)
    try:
        removed = netns.cleanup_stale()
        assert dead in removed
        assert mine not in removed
        names = netns.list_netns()
        assert dead not in names and mine in names
    finally:
        subprocess.run(["ip", "netns", "delete", mine], check=False)
        subprocess.run(["ip", "netns", "delete", dead], check=False, capture_output=True)
