"""Soak: the Lab's runc counter container hops A -> B -> A -> ... through the two agents.

Hops: ``HETMIG_SOAK_HOPS`` (default 6, enough for CI). A 100-hop run was done with

    HETMIG_SOAK_HOPS=100 PYTHONPATH=$PWD .venv/bin/python -m pytest -q -rA tests/test_soak_container.py

(numbers in docs/security.md). Across every hop the counter never restarts and
never goes back, and the copy runs on exactly the host it was moved to. The
two agents' RSS (VmRSS of /proc/PID/status) and open descriptors
(/proc/PID/fd) are taken after the first A -> B -> A round trip (warm: both
agents have restored once and imported what they need) and after the last
hop: the descriptor counts must be equal, RSS may grow by at most
RSS_GROWTH_BYTES. Afterwards nothing the run made is left: mounts, network
namespaces, hetmig cgroups, processes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable


from runtime_shim.migration import container, netns
from runtime_shim.migration.lab import Lab
from tests.support.tools import require

HOPS = int(os.environ.get("HETMIG_SOAK_HOPS", "6"))
RSS_GROWTH_BYTES = 8 << 20   # allowed agent RSS growth from the warm measure to the end
WARM_HOPS = 2                # A -> B -> A before the first measure


def _agent_stats(pid: int) -> tuple[int, int]:
    """(VmRSS in bytes, open descriptors) of *pid*."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _mounts() -> set[str]:
    with open("/proc/mounts") as f:
        return {line.split()[1] for line in f}


def _hetmig_cgroups() -> set[str]:
    out: set[str] = set()
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        if base.is_dir():
            out |= {str(d) for d in base.iterdir() if d.is_dir()}
    return out


def _processes_mentioning(needle: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def _advance(read: Callable[[], int], above: int, timeout: float = 10.0) -> int:
    """A counter value > *above*, never seeing one below the previous read."""
    deadline = time.monotonic() + timeout
    seen = read()
    assert seen >= above, f"the counter went back: {seen} after {above}"
    while seen <= above:
        assert time.monotonic() < deadline, f"the counter does not go on past {above}"
        time.sleep(0.05)
        v = read()
        assert v >= seen, f"the counter went back: {v} after {seen}"
        seen = v
    return seen


def test_soak_back_and_forth(record_property: Callable[[str, object], None]) -> None:
    for tool in ("runc", "ip", "nsenter"):
        require(tool)
    assert HOPS >= WARM_HOPS + 2, f"HETMIG_SOAK_HOPS={HOPS}: at least {WARM_HOPS + 2} hops are needed"
    netns.cleanup_stale()
    mounts0, nets0, cgroups0 = _mounts(), set(netns.list_netns()), _hetmig_cgroups()
    t0 = time.monotonic()
    stats: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    downtimes: list[float] = []
    with Lab(memory_mib=2, prefix="hetmig-soak-") as lab:
        tmp = str(lab.tmp)
        lab.start_container()
        agents = {h: lab.start_agent(h) for h in ("a", "b")}
        last = _advance(lambda: lab.read_counter("a"), 0)
        first_measure: dict[str, tuple[int, int]] = {}
        for hop in range(HOPS):
            src, dst = ("a", "b") if hop % 2 == 0 else ("b", "a")
            before = lab.read_counter(src)
            assert before >= last, f"hop {hop}: the counter went back on {src.upper()}: {before} < {last}"
            r = lab.migrate(src, dst)
            assert r.returncode == 0, f"hop {hop} {src}->{dst}: {r.stderr[-3000:]}"
            report = json.loads(r.stdout.strip().splitlines()[-1])
            downtimes.append(float(report["downtime_ms"]))
            assert lab.where() == ("agent", dst), f"hop {hop}: runs at {lab.where()}, expected agent on {dst}"
            assert container.list_records(lab.state[src]) == [], f"hop {hop}: a copy is left on {src.upper()}"
            # continuity: the first value on the destination is at least the last on the source
            last = _advance(lambda: lab.read_counter(dst), before)
            for h, agent in agents.items():
                assert agent.proc.poll() is None, f"agent {h.upper()} died at hop {hop}"
                stats[h].append(_agent_stats(agent.proc.pid))
            if hop + 1 == WARM_HOPS:
                first_measure = {h: stats[h][-1] for h in agents}
        final = {h: stats[h][-1] for h in agents}
        lab_pids = _processes_mentioning(tmp)
    elapsed = time.monotonic() - t0
    lines = [f"{HOPS} hops in {elapsed:.1f} s, downtime median {sorted(downtimes)[len(downtimes) // 2]:.0f} ms "
             f"max {max(downtimes):.0f} ms"]
    for h in ("a", "b"):
        (r0, f0), (r1, f1) = first_measure[h], final[h]
        lines.append(f"agent {h.upper()}: RSS {r0 / 2**20:.1f} -> {r1 / 2**20:.1f} MiB, fds {f0} -> {f1} "
                     f"(after hop {WARM_HOPS} -> after hop {HOPS})")
        record_property("table:container soak (agent RSS / fds, warm -> last)",
                        {"agent": h.upper(), "hops": HOPS, "RSS MiB": f"{r0 / 2**20:.1f} -> {r1 / 2**20:.1f}",
                         "fds": f"{f0} -> {f1}", "downtime ms (median/max)":
                         f"{sorted(downtimes)[len(downtimes) // 2]:.0f}/{max(downtimes):.0f}"})
    print("\n".join(lines))
    for h in ("a", "b"):
        (r0, f0), (r1, f1) = first_measure[h], final[h]
        assert f1 == f0, f"agent {h.upper()}: open descriptors {f0} -> {f1}"
        assert r1 - r0 <= RSS_GROWTH_BYTES, f"agent {h.upper()}: RSS grew {(r1 - r0) / 2**20:.1f} MiB (> 8 MiB)"
    # nothing left behind
    assert lab_pids, "no process of the lab was seen while it ran: the leftover check below would test nothing"
    assert _processes_mentioning(tmp) == []
    assert not Path(tmp).exists()
    # (other runs may use this machine at the same time: only what this one named counts)
    ours = (tmp, lab.hosts.base, lab.cid)
    assert {m for m in _mounts() - mounts0 if any(o in m for o in ours)} == set()
    assert {n for n in set(netns.list_netns()) - nets0 if any(o in n for o in ours)} == set()
    assert {c for c in _hetmig_cgroups() - cgroups0 if lab.cid in c} == set()
    assert not Path(tmp).exists()  # (a runc call with the lab's --root would recreate it)
