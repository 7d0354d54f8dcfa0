"""Two real agents-side processes in two network namespaces, talking TLS over the veth.

Host A runs the source (``hetmig migrate``), host B runs ``hetmig agent``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import netns
from tests.support.tools import require

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "hostinfo"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

COUNTER = r"""
import mmap, sys, time
m = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, len(m), 4096):
    m[i] = 0x5a
n = 0
while True:
    n += 1
    m[(n * 4096) % len(m)] = n % 256
    if n % 50 == 0:
        print(n, flush=True)
        time.sleep(0.005)
"""


def hetmig(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime_shim.cli", *args]


def state(path: Path) -> str:
    return (path / "status.json").read_text()


class Agents:
    def __init__(self, hosts: netns.TestHosts, tmp: Path, hostinfo_file: Path | None = None,
                 fault: str | None = None, agent_args: tuple[str, ...] = ()) -> None:
        self.hosts = hosts
        self.src = tmp / "src"
        self.dst = tmp / "dst"
        subprocess.run(hetmig("agent", "init", "--state-dir", str(self.src)), env=ENV, check=True, capture_output=True)
        fp_b = subprocess.run(hetmig("agent", "init", "--state-dir", str(self.dst)), env=ENV, check=True,
                              capture_output=True, text=True).stdout.strip()
        fp_a = subprocess.run(hetmig("agent", "fingerprint", "--state-dir", str(self.src)), env=ENV, check=True,
                              capture_output=True, text=True).stdout.strip()
        subprocess.run(hetmig("agent", "trust", fp_b, "--state-dir", str(self.src)), env=ENV, check=True,
                       capture_output=True)
        subprocess.run(hetmig("agent", "trust", fp_a, "--cert", str(self.src / "cert.pem"), "--state-dir",
                              str(self.dst)), env=ENV, check=True, capture_output=True)
        extra = ["--hostinfo-file", str(hostinfo_file)] if hostinfo_file else []
        extra += ["--inject-fault", fault] if fault else []
        extra += list(agent_args)
        self.agent = hosts.b.popen(hetmig("agent", "--listen", f"{hosts.b.addr}:0", "--state-dir", str(self.dst),
                                          "--json", *extra), env=ENV)
        assert self.agent.stdout is not None
        line = self.agent.stdout.readline().decode()
        assert line, self.agent.stderr.read().decode() if self.agent.stderr else ""
        info = json.loads(line)
        assert info["fingerprint"] == fp_b
        self.address = info["listening"]
        assert self.address.startswith("10.210.0.2:")

    def migrate(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.hosts.a.run(hetmig("migrate", "--to", self.address, "--state-dir", str(self.src), "--json",
                                       *args), env=ENV, timeout=timeout)

    def migrations(self) -> list[Path]:
        return sorted((self.dst / "migrations").iterdir())

    def close(self) -> str:
        self.agent.terminate()
        try:
            _, err = self.agent.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            _, err = self.agent.communicate()
        return err.decode()


@pytest.fixture
def hosts() -> Iterator[netns.TestHosts]:
    require("ip")
    netns.cleanup_stale()
    with netns.TestHosts() as h:
        yield h


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return -1


def test_precheck_refusal_exits_3_with_reason_and_freezes_nothing(hosts: netns.TestHosts, tmp_path: Path) -> None:
    agents = Agents(hosts, tmp_path, hostinfo_file=DATA / "linux-skylake.json")
    target = hosts.a.popen([sys.executable, "-c", COUNTER])
    try:
        assert target.stdout is not None
        target.stdout.readline()
        r = agents.migrate("--pid", str(target.pid))
        assert r.returncode == 3, r.stderr
        here = set(open("/proc/cpuinfo").read().split())
        if "avx512f" in here:
            assert "destination CPU lacks flags:" in r.stderr and "avx512f" in r.stderr
            assert "AVX-512 ZMM_Hi256 (bit 6)" in r.stderr
        refused = [e for e in _events(r.stdout) if e["event"] == "refused"]
        assert refused and refused[0]["reasons"]
        assert agents.migrations() == []  # refused before BEGIN: nothing created on B
        assert target.poll() is None and _proc_state(target.pid) in ("R", "S") and _tracer(target.pid) == 0
        before = int(target.stdout.readline())
        assert int(target.stdout.readline()) > before
    finally:
        target.kill()
        target.wait()
        log = agents.close()
    assert "compatibility check from 10.210.0.1" in log


def _last_value(path: Path) -> int:
    lines = path.read_text().split()
    return int(lines[-1]) if lines else 0


def _values(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()[:-1]]  # the last line may be half-written


@pytest.mark.parametrize("use_target", [True, False], ids=["restore-target", "page-store"])
def test_live_migration_over_veth(hosts: netns.TestHosts, tmp_path: Path, use_target: bool) -> None:
    """Both destination paths: pages written into a restore target during pre-copy (the
    default), and pages kept in the page store with everything restored at cut-over."""
    agents = Agents(hosts, tmp_path, agent_args=() if use_target else ("--no-restore-target",))
    out = tmp_path / "counter.out"
    # its own session, as a container's init is: a migrated tree must hold its session leader
    with open(out, "w") as f:
        target = hosts.a.popen([sys.executable, "-c", COUNTER], stdout=f.fileno(), start_new_session=True)
    restored = 0
    try:
        deadline = time.monotonic() + 10
        while _last_value(out) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = agents.migrate("--pid", str(target.pid), "--precopy-rounds", "4", "--max-downtime", "50",
                           "--verify-pages")
        events = _events(r.stdout)
        kinds = [e["event"] for e in events]
        print("migrate exit", r.returncode, "events", kinds, r.stderr[-500:])
        print("report", events[-1] if events else None)
        assert kinds[:2] == ["connected", "compatible"], r.stdout + r.stderr
        rounds = [e for e in events if e["event"] == "round"]
        assert rounds and int(rounds[0]["pages"]) >= (8 << 20) // 4096  # round 1: all touched memory
        assert "frozen" in kinds
        [mdir] = agents.migrations()
        status = json.loads(state(mdir))
        assert status["received_bytes"] >= sum(int(e["bytes"]) for e in rounds)
        if r.returncode == 0:
            done = events[-1]
            assert done["event"] == "done" and done["outcome"] == "migrated", r.stderr
            assert target.wait(timeout=10) != 0  # the source was destroyed after CONFIRM
            assert status["phase"] == "done"
            restored = int(done["restored_pid"])
            ident = subprocess.run(["ip", "netns", "identify", str(restored)], capture_output=True, text=True)
            assert ident.stdout.strip() == hosts.b.netns, ident.stderr
            before = _last_value(out)
            time.sleep(0.3)
            after = _last_value(out)
            assert after > before  # the counter continues on B
            vals = _values(out)
            assert vals == sorted(vals) and len(set(vals)) == len(vals)  # never restarted, never went back
            assert float(done["downtime_ms"]) > 0 and float(done["total_ms"]) >= float(done["downtime_ms"])
            # the pre-copied pages were already in the agent's restore target: the final images
            # name them (PE_PARENT) and only a small part was sent at cut-over
            if use_target:
                assert done["target"]["used"] is True and int(done["target"]["skipped_pages"]) > 0
            else:  # the agent rebuilt the pages image from its page store
                assert done["target"]["used"] is False and int(done["final_images_adopted"]) == 1
            assert int(done["final_pages"]) > 0
            assert int(done["final_fill_pages"]) < int(done["final_pages"]) // 2
        else:
            # the restore failed: a clear error, and the source runs on
            assert r.returncode == 1, r.stderr
            assert "rolled-back" in kinds
            assert "restore" in r.stderr
            assert status["phase"] == "aborted"
            assert target.poll() is None and _tracer(target.pid) == 0
            before = _last_value(out)
            time.sleep(0.3)
            assert _proc_state(target.pid) in ("R", "S")
            assert _last_value(out) > before  # the counter continues on A
            fds = [os.readlink(f"/proc/{target.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{target.pid}/fd")]
            assert "anon_inode:[userfaultfd]" not in fds
    finally:
        target.kill()
        target.wait()
        if restored:
            try:
                os.kill(restored, 9)
            except ProcessLookupError:
                pass
        agents.close()


@pytest.mark.parametrize("fault", ["kill-precopy", "drop-precopy", "kill-final", "drop-final", "fail-restore",
                                   "kill-restore", "drop-finish", "kill-finish"])
def test_fault_before_confirm_leaves_the_process_running_on_a(hosts: netns.TestHosts, tmp_path: Path,
                                                               fault: str) -> None:
    agents = Agents(hosts, tmp_path, fault=fault)
    out = tmp_path / "counter.out"
    # its own session, as a container's init is: a migrated tree must hold its session leader
    with open(out, "w") as f:
        target = hosts.a.popen([sys.executable, "-c", COUNTER], stdout=f.fileno(), start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while _last_value(out) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = agents.migrate("--pid", str(target.pid), "--precopy-rounds", "3", "--max-downtime", "0")
        kinds = [e["event"] for e in _events(r.stdout)]
        assert r.returncode == 1, r.stdout + r.stderr
        if fault == "kill-finish":
            # the agent died between CONFIRM and FINISH: its held copy died with it
            # (PTRACE_O_EXITKILL), but the source cannot know that; it stays stopped
            # and says so rather than risk two copies
            assert "outcome unknown" in r.stderr and "left stopped (SIGSTOP)" in r.stderr
            assert "status-failed" in kinds and "done" not in kinds
            assert _proc_state(target.pid) == "T" and _tracer(target.pid) == 0
            assert [p for p in netns.netns_pids(hosts.b.netns) if p != agents.agent.pid] == []
            os.kill(target.pid, 18)  # SIGCONT, as the message says
        else:
            assert "rolled-back" in kinds and "done" not in kinds
        if fault == "drop-finish":
            assert {"finish-unconfirmed", "status"} <= set(kinds), r.stdout
            assert [e for e in _events(r.stdout) if e["event"] == "status"][-1]["phase"] == "aborted", r.stdout
        if fault == "fail-restore":
            assert "injected fault fail-restore: restore refused" in r.stderr
        # exactly one host runs it: A, untraced, not stopped, counting on
        assert target.poll() is None and _tracer(target.pid) == 0
        before = _last_value(out)
        time.sleep(0.3)
        assert _proc_state(target.pid) in ("R", "S")
        assert _last_value(out) > before
        vals = _values(out)
        assert vals == sorted(vals)
        fds = [os.readlink(f"/proc/{target.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{target.pid}/fd")]
        assert "anon_inode:[userfaultfd]" not in fds
        # nothing of it runs in B (the agent itself aside)
        agent_pid = agents.agent.pid
        others = [p for p in netns.netns_pids(hosts.b.netns) if p != agent_pid]
        assert others == [], others
        if fault.startswith("kill-"):
            assert agents.agent.wait(timeout=10) == 137
            # a restarted agent cleans up what the dead one left
            from runtime_shim.migration.agent import Agent, AgentConfig

            [mdir] = agents.migrations()
            Agent(AgentConfig(state_dir=agents.dst))  # its constructor recovers
            status = json.loads(state(mdir))
            assert status["phase"] == "aborted" and "agent restarted" in status["reason"]
            assert sorted(os.listdir(mdir)) == ["status.json"]
        else:
            [mdir] = agents.migrations()
            assert json.loads(state(mdir))["phase"] == "aborted"
            assert sorted(os.listdir(mdir)) == ["status.json"]
    finally:
        target.kill()
        target.wait()
        agents.close()


def test_back_and_forth_a_b_a_b_a(hosts: netns.TestHosts, tmp_path: Path) -> None:
    """A process hops A -> B -> A -> B -> A through two agents; its counter never restarts or
    goes back, each hop lands in the right namespace, the agents' descriptors stay flat."""
    _hops(hosts, tmp_path, 4)


@pytest.mark.slow
def test_soak_back_and_forth(hosts: netns.TestHosts, tmp_path: Path) -> None:
    """HETMIG_SOAK_HOPS hops (default 10; issue 7 asks for 100 in the long run): descriptors
    flat, memory flat after the first round trip (first/last printed)."""
    _hops(hosts, tmp_path, int(os.environ.get("HETMIG_SOAK_HOPS", "10")), soak=True)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4


def _hops(hosts: netns.TestHosts, tmp_path: Path, count: int, soak: bool = False) -> None:
    def cli(*args: str) -> str:
        return subprocess.run(hetmig(*args), env=ENV, check=True, capture_output=True, text=True).stdout.strip()

    sa, sb = tmp_path / "a", tmp_path / "b"
    fa = cli("agent", "init", "--state-dir", str(sa))
    fb = cli("agent", "init", "--state-dir", str(sb))
    cli("agent", "trust", fb, "--cert", str(sb / "cert.pem"), "--state-dir", str(sa))
    cli("agent", "trust", fa, "--cert", str(sa / "cert.pem"), "--state-dir", str(sb))
    agents: dict[str, tuple[subprocess.Popen[bytes], str, netns.Host, Path]] = {}
    out = tmp_path / "counter.out"
    target: subprocess.Popen[bytes] | None = None
    try:
        for name, host, sd in (("a", hosts.a, sa), ("b", hosts.b, sb)):
            p = host.popen(hetmig("agent", "--listen", f"{host.addr}:0", "--state-dir", str(sd), "--json"),
                           env=ENV)
            agents[name] = (p, "", host, sd)
            assert p.stdout is not None
            agents[name] = (p, json.loads(p.stdout.readline())["listening"], host, sd)
        # its own session, as a container's init is: a migrated tree must hold its session leader
        with open(out, "w") as f:
            target = hosts.a.popen([sys.executable, "-c", COUNTER], stdout=f.fileno(), start_new_session=True)
        deadline = time.monotonic() + 10
        while _last_value(out) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)

        def fds(p: subprocess.Popen[bytes]) -> int:
            return len(os.listdir(f"/proc/{p.pid}/fd"))

        fds_before = {k: fds(v[0]) for k, v in agents.items()}
        rss_after_warmup: dict[str, int] = {}
        pid, here = target.pid, "a"
        for hop in range(count):
            if hop == 2:
                rss_after_warmup = {k: _rss_kib(v[0].pid) for k, v in agents.items()}
            there = "b" if here == "a" else "a"
            before = _last_value(out)
            r = agents[here][2].run(hetmig("migrate", "--pid", str(pid), "--to", agents[there][1], "--state-dir",
                                           str(agents[here][3]), "--json"), env=ENV, timeout=120)
            assert r.returncode == 0, f"hop {hop}: {r.stderr}"
            done = _events(r.stdout)[-1]
            assert done["outcome"] == "migrated"
            pid, here = int(done["restored_pid"]), there
            ident = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True)
            assert ident.stdout.strip() == agents[here][2].netns
            time.sleep(0.15)
            assert _last_value(out) > before, f"hop {hop}: the counter did not continue"
        vals = _values(out)
        assert vals == sorted(vals) and len(set(vals)) == len(vals)
        assert {k: fds(v[0]) for k, v in agents.items()} == fds_before
        if soak and rss_after_warmup:
            rss_last = {k: _rss_kib(v[0].pid) for k, v in agents.items()}
            print(f"soak: {count} hops, agent fds {fds_before}, RSS KiB after 2 hops {rss_after_warmup}, "
                  f"last {rss_last}")
            for k in rss_last:
                assert rss_last[k] - rss_after_warmup[k] < 20 * 1024, (k, rss_after_warmup, rss_last)
    finally:
        if target is not None:
            target.kill()
            target.wait()
        for p, *_ in agents.values():
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
