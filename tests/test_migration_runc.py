"""Real runc containers through ``hetmig migrate`` between two network-namespace hosts.

A counter container (busybox, its own netns with 10.210.1.2 behind a veth, memory /
pids / CPU limits) goes A -> B -> A through agents over TCP + mutual TLS; a restore
failure on B leaves it running on A. Everything is removed afterwards (checked).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from runtime_shim.migration import container, netns
from runtime_shim.migration.lab import Lab
from tests.support.tools import require


@pytest.fixture
def lab() -> Iterator[Lab]:
    for tool in ("runc", "ip", "nsenter", "ping"):
        require(tool)
    netns.cleanup_stale()
    with Lab(memory_mib=4, prefix="hetmig-test-") as lab_:
        yield lab_
    _assert_nothing_left(lab_)


def _assert_nothing_left(lab_: Lab) -> None:
    assert not lab_.tmp.exists()
    assert not [n for n in netns.list_netns() if lab_.hosts.base in n or lab_.cid in n]
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not (base.is_dir() and [d for d in base.iterdir() if d.name.startswith(lab_.cid)])
    for ctrl in container.CONTROLLERS:  # the shared parent is removed with its last child
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not base.exists() or [d for d in base.iterdir() if d.is_dir()]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert lab_.cid not in ps and str(lab_.tmp) not in ps


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _advancing(lab_: Lab, host: str, floor: int) -> int:
    """The counter on *host* moves past *floor* (and never showed less than it)."""
    deadline = time.monotonic() + 10
    while True:
        v = lab_.read_counter(host)
        assert v >= floor, f"counter on {host} went back: {v} < {floor}"
        if v > floor:
            return v
        assert time.monotonic() < deadline, f"counter on {host} stays at {v}"
        time.sleep(0.05)


def _hop(lab_: Lab, src: str, dst: str, seen: int) -> int:
    before = lab_.read_counter(src)
    assert before >= seen
    t0 = time.monotonic()
    r = lab_.migrate(src, dst)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    done = [e for e in _events(r.stdout) if e["event"] == "done"]
    assert done and done[0]["outcome"] == "migrated"
    # frozen through the container's cgroup freezer (runc's on A, the agent's on B), and
    # the memory was in the destination's restore target before the freeze
    assert done[0]["freeze"] == "cgroup-freezer+ptrace"
    assert done[0]["target"]["used"] is True and done[0]["target"]["skipped_pages"] > 0
    after = lab_.read_counter(dst)
    ticks = (time.monotonic() - t0) / 0.1 + 5  # at most one per 100 ms went by
    assert before <= after <= before + ticks, (before, after, ticks)  # continued, not restarted
    assert lab_.where() == ("agent", dst)
    return _advancing(lab_, dst, after)


def test_counter_container_a_to_b_to_a(lab: Lab) -> None:
    lab.start_container()
    seen = _advancing(lab, "a", lab.read_counter("a"))
    limits_a = lab.limits()
    assert limits_a["pids.max"] == "64" and limits_a["cpu.cfs_quota_us"] == "50000"
    assert lab.ping("a") and not lab.ping("b")
    lab.start_agent("b")
    lab.start_agent("a")

    seen = _hop(lab, "a", "b", seen)
    assert lab.ping("b"), "the container's address does not answer on B"
    assert not lab.ping("a"), "the container's address still answers on A"
    assert lab.limits() == limits_a
    state = subprocess.run(["runc", "--root", str(lab.runc_root), "list", "-q"], capture_output=True, text=True)
    assert lab.cid not in state.stdout  # the runc container on A is gone
    pid_b = lab.container_pid()
    assert open(f"/proc/{pid_b}/cmdline").read().startswith("sh\0-c\0")
    ns_b = container.read_record(lab.state["b"], lab.cid)["isolation"]
    assert subprocess.run(["nsenter", "-t", str(pid_b), "-u", "hostname"], capture_output=True,
                          text=True).stdout.strip() == "counter"
    assert Path(f"/proc/{pid_b}/ns/net").resolve() != Path("/proc/self/ns/net").resolve()

    seen = _hop(lab, "b", "a", seen)
    assert lab.ping("a") and not lab.ping("b")
    assert lab.limits() == limits_a
    assert not (container.cgroup_root() / "memory" / "hetmig" / ns_b["name"]).exists()  # B's copy removed
    assert ns_b["netns"] not in netns.list_netns()
    assert container.list_records(lab.state["b"]) == []


def test_restore_failure_on_b_leaves_the_container_running_on_a(lab: Lab) -> None:
    lab.start_container()
    seen = _advancing(lab, "a", lab.read_counter("a"))
    lab.start_agent("b", fault="fail-restore")
    r = lab.migrate("a", "b")
    assert r.returncode == 1 and "restore refused" in r.stderr, r.stderr[-2000:]
    kinds = [e["event"] for e in _events(r.stdout)]
    assert "frozen" in kinds and "rolled-back" in kinds and "done" not in kinds
    assert lab.where() == ("runc", "a")
    _advancing(lab, "a", max(seen, lab.read_counter("a")))
    assert lab.ping("a") and not lab.ping("b")
    assert container.list_records(lab.state["b"]) == []
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not (base.is_dir() and [d for d in base.iterdir() if d.name.startswith(lab.cid)])
    assert not [n for n in netns.list_netns() if lab.cid in n]
    [mdir] = sorted((lab.state["b"] / "migrations").iterdir())
    status = json.loads((mdir / "status.json").read_text())
    assert status["phase"] == "aborted" and status["container_id"] == lab.cid
    assert not (mdir / "rootfs").exists()


def test_unknown_container_is_a_clear_error(tmp_path: Path) -> None:
    require("runc")
    r = subprocess.run([sys.executable, "-m", "runtime_shim.cli", "migrate", "no-such-ctr", "--to", "127.0.0.1:1",
                        "--runc-root", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "runc state failed" in r.stderr and "Traceback" not in r.stderr
