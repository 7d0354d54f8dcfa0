"""The fault matrix: every phase x failure kind x side of a live migration of the Lab's
runc counter container from host A to host B (issue 7, item 3).

One Lab for the module (two netns hosts, the counter container, an agent on
each; agent B's state dir is a 512 MiB tmpfs so that ``diskfull`` fills a
real file system). Each cell injects one fault (runtime_shim.migration.faults)
with the hidden ``--inject-fault`` flag of ``hetmig agent`` or ``hetmig
migrate``, then takes the documented recovery step:

  * a killed agent is restarted (its start-up recovery cleans what it left);
  * a killed source leaves a journal entry: ``hetmig migrate --recover``;
    so does a source whose agent died between CONFIRM and FINISH's ACK;
  * a full disk is freed (the filler removed);
  * a dropped connection or a refused restore needs nothing.

Then, for every cell: the container runs on exactly one host (the one
EXPECTED names), its counter never restarted nor went back and goes on, no
process of it is stopped or traced (state T/t, TracerPid), none sits in a
frozen cgroup (freezer.state, cgroup.freeze) or holds a userfaultfd, and
both state dirs are consistent (every migration done or aborted, aborted
ones hold only status.json, done ones are exactly the containers running
there, no reserve/temporary/filler files, no journal entries left). Between
cells the container is moved back to A when it ended on B.

Combinations that do not exist (faults.NOT_APPLICABLE, each with its reason)
are not run as cells; the flags refuse each of them with exit 2 (tested below).
The matrix is printed as a table at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from capture.errors import BadInputError, MigrationError
from runtime_shim.migration import container, faults, journal, netns
from runtime_shim.migration.engine import _descendants
from runtime_shim.migration.lab import Lab, _env, hetmig_argv
from tests.support.tools import require

Side, Phase, Kind = faults.Side, faults.Phase, faults.Kind
A, B = "a", "b"
TABLE = ("table:fault matrix (ok X = after the fault and its recovery the container runs on host X only, "
         "counter continuous, nothing stopped/traced/frozen, state dirs consistent; - = does not exist)")
STATE_FILES = {"cert.pem", "key.pem", "peers", "trusted-peers", "agent.log", "migrations", "containers", "outgoing"}


def _expected(side: faults.Side, phase: faults.Phase, kind: faults.Kind) -> str:
    """The host that runs the container after the cell (A: the migration was undone)."""
    if side is Side.SOURCE:
        # FINISH left before the source died or dropped: the agent released its copy
        return B if phase in (Phase.CONFIRM, Phase.CLEANUP) else A
    # the agent failed before it released its copy, except after FINISH's ACK
    return B if phase is Phase.CLEANUP else A


CELLS = [(side, phase, kind) for phase in Phase for side in Side for kind in Kind]


def _cell_id(cell: tuple[faults.Side, faults.Phase, faults.Kind]) -> str:
    side, phase, kind = cell
    return f"{side.value}-{kind.value}-{phase.value}"


# the cells that exist; the others are not generated (each is checked to be refused below)
PARAMS = [pytest.param(*cell, id=_cell_id(cell)) for cell in CELLS if cell not in faults.NOT_APPLICABLE]


# -- the rig ------------------------------------------------------------------------------------

@dataclass
class Rig:
    lab: Lab
    last: int = 0                                   # the highest counter value seen so far
    outcomes: dict[str, str] = field(default_factory=dict)

    def migrate(self, src: str, dst: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        lab = self.lab
        args = ["migrate", lab.cid, "--to", lab.agents[dst].address, "--state-dir", str(lab.state[src]), "--json"]
        if lab.where() == ("runc", "a") and src == A:
            args += ["--runc-root", str(lab.runc_root)]
        else:
            args += ["--agent-state", str(lab.state[src])]
        host = lab.hosts.a if src == A else lab.hosts.b
        return host.run(hetmig_argv(*args, *extra), env=_env(), timeout=timeout)

    def recover_source(self, src: str, dst: str) -> subprocess.CompletedProcess[str]:
        host = self.lab.hosts.a if src == A else self.lab.hosts.b
        return host.run(hetmig_argv("migrate", "--recover", "--state-dir", str(self.lab.state[src]),
                                    "--to", self.lab.agents[dst].address), env=_env(), timeout=120)

    def restart_agent(self, host: str, fault: str | None = None) -> None:
        old = self.lab.agents.pop(host, None)
        if old is not None:
            old.stop()
        self.lab.start_agent(host, fault=fault)


def _mount_tmpfs(path: Path, size: str) -> None:
    keep = path.with_name(path.name + ".keep")
    shutil.copytree(path, keep, symlinks=True)
    shutil.rmtree(path)
    path.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "hetmig-fault-tmpfs", str(path)],
                   check=True, capture_output=True)
    shutil.copytree(keep, path, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(keep)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    for tool in ("runc", "ip", "nsenter", "mount"):
        require(tool)
    netns.cleanup_stale()
    lab = Lab(memory_mib=2, prefix="hetmig-fm-")
    lab.__enter__()
    mounted = False
    try:
        _mount_tmpfs(lab.state[B], "512m")
        mounted = True
        lab.start_container()
        lab.start_agent(A)
        lab.start_agent(B)
        r = Rig(lab)
        r.last = _advance(r, A, 0)
        yield r
    finally:
        try:
            lab.close()
        finally:
            if mounted:
                subprocess.run(["umount", str(lab.state[B])], capture_output=True)
            shutil.rmtree(lab.tmp, ignore_errors=True)
    assert not lab.tmp.exists()
    assert not [n for n in netns.list_netns() if lab.hosts.base in n or lab.cid in n]


# -- what must hold after every cell --------------------------------------------------------------

def _copies(lab: Lab) -> list[tuple[str, int]]:
    """(host, init pid) of every running (not stopped) copy of the container."""
    out: list[tuple[str, int]] = []
    if lab.started and lab._runc_state() == "running":
        out.append((A, lab.container_pid() if lab.where()[0] == "runc" else 0))
    for host in (A, B):
        if lab.cid in container.list_records(lab.state[host]):
            pid = int(container.read_record(lab.state[host], lab.cid).get("pid", 0))
            if pid > 0 and journal.proc_state(pid) not in ("", "Z", "X"):
                out.append((host, pid))
    # nothing else of it runs in a hetmig cgroup (an isolation an agent lost track of)
    owned = {p for _, pid in out for p in _descendants(pid)}
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        for d in (base.iterdir() if base.is_dir() else []):
            if d.name.startswith(lab.cid):
                stray = [int(p) for p in (d / "cgroup.procs").read_text().split() if int(p) not in owned]
                assert stray == [], f"processes {stray} of {lab.cid} run in {d} outside any known copy"
    return out


def _counter(lab: Lab, host: str) -> int:
    return lab.read_counter(host)


def _advance(rig: Rig, host: str, above: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = _counter(rig.lab, host)
    assert seen >= above, f"the counter went back on {host.upper()}: {seen} after {above}"
    while seen <= above:
        assert time.monotonic() < deadline, f"the counter does not go on on {host.upper()} past {above}"
        time.sleep(0.05)
        v = _counter(rig.lab, host)
        assert v >= seen, f"the counter went back on {host.upper()}: {v} after {seen}"
        seen = v
    return seen


def _tree_tasks(pid: int) -> list[tuple[int, int]]:
    out = []
    for p in _descendants(pid):
        try:
            out += [(p, int(t)) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue  # a short-lived child that just ended
    return out


def _check_process_state(pid: int) -> None:
    """No task of the tree stopped or traced, none in a frozen cgroup, no userfaultfd."""
    tasks = _tree_tasks(pid)
    assert tasks, f"container init {pid} has no tasks"
    for p, tid in tasks:
        try:
            stat = Path(f"/proc/{p}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{p}/task/{tid}/status").read_text()
            cgroups = Path(f"/proc/{p}/cgroup").read_text()
            fds = [os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")]
        except OSError:
            continue  # ended meanwhile
        state = stat.rsplit(")", 1)[1].split()[0]
        assert state not in ("T", "t"), f"task {tid} of pid {p} is stopped (state {state})"
        assert "TracerPid:\t0\n" in status, f"task {tid} of pid {p} is traced"
        assert "anon_inode:[userfaultfd]" not in fds, f"pid {p} still holds a userfaultfd (a tracker left behind)"
        for line in cgroups.splitlines():
            _, ctrls, path = line.split(":", 2)
            if "freezer" in ctrls.split(","):
                f = container.cgroup_root() / "freezer" / path.lstrip("/") / "freezer.state"
                if f.exists():
                    assert f.read_text().strip() == "THAWED", f"pid {p}: {f} is {f.read_text().strip()}"
            if ctrls == "":
                f = container.cgroup_root() / "unified" / path.lstrip("/") / "cgroup.freeze"
                if f.exists():
                    assert f.read_text().strip() == "0", f"pid {p}: {f} is frozen"


def _check_state_dir(lab: Lab, host: str) -> None:
    state = lab.state[host]
    extra = {p.name for p in state.iterdir()} - STATE_FILES
    assert extra == set(), f"state dir {host.upper()}: unexpected {sorted(extra)}"
    out = journal.outgoing_dir(state)
    left = sorted(set(os.listdir(out)) - {".lock"}) if out.is_dir() else []
    assert left == [], f"journal of {host.upper()} not settled: {left}"
    records = container.list_records(state)
    rdir = container.records_dir(state)
    assert not (rdir.is_dir() and [n for n in os.listdir(rdir) if n.startswith(".")]), "temporary record left"
    running_here = {str(container.read_record(state, c).get("migration")) for c in records}
    done: set[str] = set()
    mdirs = state / "migrations"
    for mdir in (mdirs.iterdir() if mdirs.is_dir() else []):
        status = json.loads((mdir / "status.json").read_text())
        assert status["phase"] in ("done", "aborted"), f"{mdir}: phase {status['phase']}"
        names = sorted(os.listdir(mdir))
        if status["phase"] == "aborted":
            assert names == ["status.json"], f"aborted {mdir} still holds {names}"
        else:
            assert not {".reserve", ".status.json.tmp", "pages.bin.tmp", "rootfs-delta.tar"} & set(names), names
            done.add(mdir.name)
    assert done == running_here, f"state dir {host.upper()}: done migrations {done} != running copies {running_here}"


def _settled(mdir: Path, timeout: float = 30.0) -> dict[str, Any]:
    """status.json of *mdir* once the agent finished with it (done or aborted)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = json.loads((mdir / "status.json").read_text())
        if status["phase"] in ("done", "aborted"):
            return status
        assert time.monotonic() < deadline, f"{mdir}: still in phase {status['phase']} after {timeout} s"
        time.sleep(0.05)


def _check_all(rig: Rig, expect: str) -> None:
    lab = rig.lab
    for host in (A, B):  # an agent may still be rolling back (it sees a dead source only now)
        mdirs = lab.state[host] / "migrations"
        for mdir in (mdirs.iterdir() if mdirs.is_dir() else []):
            _settled(mdir)
    copies = _copies(lab)
    assert [h for h, _ in copies] == [expect], f"copies running: {copies}, expected exactly one on {expect.upper()}"
    _, pid = copies[0]
    if pid == 0:
        pid = lab.container_pid()
    _check_process_state(pid)
    rig.last = _advance(rig, expect, rig.last)
    for host in (A, B):
        _check_state_dir(lab, host)


def _ensure_on_a(rig: Rig) -> None:
    hosts = [h for h, _ in _copies(rig.lab)]
    if hosts == [B]:
        r = rig.migrate(B, A)
        assert r.returncode == 0, f"moving the container back to A failed: {r.stderr[-2000:]}"
        rig.last = _advance(rig, A, rig.last)
    assert [h for h, _ in _copies(rig.lab)] == [A], "the container is lost (an earlier cell broke it)"


# -- the cells ------------------------------------------------------------------------------------

def _log(lab: Lab, host: str) -> str:
    path = lab.state[host] / "agent.log"
    return path.read_text() if path.exists() else ""


def _events(out: str) -> list[dict[str, Any]]:
    evs = []
    for line in out.splitlines():
        try:
            evs.append(json.loads(line))
        except ValueError:
            continue
    return evs


@pytest.mark.parametrize("side,phase,kind", PARAMS)
def test_fault_cell(rig: Rig, side: faults.Side, phase: faults.Phase, kind: faults.Kind,
                    record_property: Callable[[str, object], None]) -> None:
    column = f"{side.value} {kind.value}"
    record_property(TABLE, {"phase": phase.value, column: "FAIL"})
    name = f"{kind.value}-{phase.value}"
    expect = _expected(side, phase, kind)
    lab = rig.lab
    _ensure_on_a(rig)
    for host in (A, B):
        _check_state_dir(lab, host)
    before = _advance(rig, A, rig.last)
    log_b = _log(lab, B)
    if side is Side.AGENT:
        rig.restart_agent(B, fault=name)
        r = rig.migrate(A, B)
    else:
        r = rig.migrate(A, B, "--inject-fault", name)
    events = _events(r.stdout)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]

    # the fault fired where it was meant to
    if side is Side.SOURCE:
        assert any(e.get("event") == "fault" and name in str(e.get("message")) for e in events), r.stdout[-2000:]
    else:
        log = (lab.state[B] / "agent.log").read_text()[len(log_b):]
        assert f"injected fault {name}" in log, log[-2000:]

    # the documented recovery step
    if side is Side.SOURCE and kind is Kind.KILL:
        assert r.returncode == 137, f"the source did not die: exit {r.returncode}"
        log_a = _log(lab, A)
        rec = rig.recover_source(A, B)
        assert rec.returncode == 0, rec.stdout + rec.stderr
        mid = next(e["migration_id"] for e in events if "migration_id" in e)
        # settled by --recover, or just before it by agent A's periodic pass over the same journal
        said = [ln for ln in (rec.stdout + _log(lab, A)[len(log_a):]).splitlines() if mid in ln]
        if phase is Phase.CONNECT:  # before BEGIN nothing was journaled, nothing changed
            assert said == [], said
        else:
            want = "destroyed" if phase in (Phase.CONFIRM, Phase.CLEANUP) else "rolled-back"
            assert len(said) == 1 and want in said[0], said
    elif side is Side.AGENT and kind is Kind.KILL:
        agent = lab.agents[B]
        assert agent.proc.wait(timeout=30) == 137, "the agent did not die"
        if phase is Phase.CLEANUP:
            assert r.returncode == 0, r.stderr[-2000:]  # the ACK arrived before the agent died
        else:
            assert r.returncode != 0
        rig.restart_agent(B)  # its start-up recovery
        if phase is Phase.CONFIRM:
            # FINISH got no answer and STATUS none either: the source stayed stopped, by design
            assert "left stopped (SIGSTOP)" in r.stderr, r.stderr[-2000:]
            rec = rig.recover_source(A, B)
            assert rec.returncode == 0 and "finishing -> rolled-back" in rec.stdout, rec.stdout + rec.stderr
    else:
        if side is Side.AGENT:
            rig.restart_agent(B)  # a fresh agent without the fault for what follows
        if kind is Kind.DISKFULL:
            assert faults.unfill(lab.state[B]), "diskfull fired but left no filler: nothing was filled"
            if phase is Phase.CONNECT:  # refused for space by the compatibility check
                assert r.returncode == 3 and "bytes free" in r.stderr, r.stderr[-2000:]
            else:  # a write failed with ENOSPC
                mid = next(e["migration_id"] for e in events if "migration_id" in e)
                status = _settled(lab.state[B] / "migrations" / mid)
                assert status["phase"] == "aborted" and "is full" in status["reason"], status
        if expect == A:
            assert r.returncode != 0 and "rolled-back" in {e.get("event") for e in events}, r.stderr[-2000:]
        else:
            assert r.returncode == 0, r.stderr[-2000:]

    _check_all(rig, expect)
    assert rig.last > before
    record_property(TABLE, {"phase": phase.value, column: f"ok {expect.upper()}"})


@pytest.mark.parametrize("cell", [pytest.param(c, id=_cell_id(c)) for c in sorted(faults.NOT_APPLICABLE,
                                                                                 key=_cell_id)])
def test_missing_cells_are_recorded_and_refused(cell: tuple[faults.Side, faults.Phase, faults.Kind],
                                                record_property: Callable[[str, object], None]) -> None:
    side, phase, kind = cell
    record_property(TABLE, {"phase": phase.value, f"{side.value} {kind.value}": "-"})
    with pytest.raises(BadInputError, match="does not exist"):
        faults.parse(f"{kind.value}-{phase.value}", side)


def test_flags_refuse_bad_faults_with_exit_2(tmp_path: Path) -> None:
    r = subprocess.run(hetmig_argv("migrate", "x", "--to", "127.0.0.1:9", "--state-dir", str(tmp_path),
                                   "--inject-fault", "diskfull-precopy"), capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 2 and "does not exist on the source" in r.stderr, r.stderr
    r = subprocess.run(hetmig_argv("agent", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path),
                                   "--inject-fault", "explode-precopy"), capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 2 and "is not KIND-PHASE" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir()), "a refused flag still created something"
    assert faults.parse("fail-restore", Side.AGENT) == faults.Fault(Kind.REFUSE, Phase.RESTORE, "fail-restore")
    assert faults.parse("kill-finish", Side.AGENT).phase is Phase.CONFIRM


def test_fill_refuses_a_large_file_system(tmp_path: Path) -> None:
    require("mount")
    big = tmp_path / "big"
    big.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "hetmig-fault-big", str(big)], check=True,
                   capture_output=True)
    try:
        with pytest.raises(MigrationError, match="refusing to fill"):
            faults.fill(big)
        assert os.listdir(big) == []
    finally:
        subprocess.run(["umount", str(big)], check=True, capture_output=True)


def test_recover_cli_without_entries_and_with_bad_ids(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(hetmig_argv("migrate", "--recover", *args, "--state-dir", str(tmp_path)),
                              capture_output=True, text=True, env=_env(), timeout=60)

    r = run()
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = run("not-an-id")
    assert r.returncode == 2 and "is not a migration id" in r.stderr, r.stderr
    r = run("0" * 32)
    assert r.returncode == 2 and "no such unfinished migration" in r.stderr, r.stderr
    r = subprocess.run(hetmig_argv("migrate", "ctr", "--recover", "--state-dir", str(tmp_path)),
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 2 and "takes only" in r.stderr, r.stderr
    assert not (tmp_path / "outgoing").exists()


def test_source_killed_after_finish_while_the_agent_is_down(rig: Rig) -> None:
    """The undecidable cell with nobody to ask: the source dies after FINISH left and the
    agent is gone too. `--recover` cannot learn the outcome: it keeps the copy on A
    stopped and exits 1; once the agent answers (done), it destroys A's copy."""
    lab = rig.lab
    _ensure_on_a(rig)
    before = _advance(rig, A, rig.last)
    r = rig.migrate(A, B, "--inject-fault", "kill-confirm")
    assert r.returncode == 137, r.stderr[-2000:]
    [entry] = journal.pending(lab.state[A])
    assert entry.phase == "finishing" and entry.stopped
    # FINISH reached the agent (the source died only after sending it): let it finish first
    assert _settled(lab.state[B] / "migrations" / entry.migration_id)["phase"] == "done"
    address = lab.agents[B].address
    lab.agents.pop(B).stop()  # the agent goes away; the copy it released runs on
    rec = lab.hosts.a.run(hetmig_argv("migrate", "--recover", "--state-dir", str(lab.state[A]), "--to", address),
                          env=_env(), timeout=120)
    assert rec.returncode == 1 and "finishing -> unknown-left-stopped" in rec.stdout, rec.stdout + rec.stderr
    # (agent A's periodic pass, if it ran meanwhile, could not ask B either: the entry stays)
    assert journal.pending(lab.state[A]) == [entry]
    assert all(journal.proc_state(pid) == "T" for pid, _ in entry.stopped if journal.proc_state(pid))
    pid_b = int(container.read_record(lab.state[B], lab.cid)["pid"])
    _check_process_state(pid_b)  # B's copy runs, A's is stopped: one running copy
    rig.last = _advance(rig, B, before)
    rig.restart_agent(B)
    log_a = _log(lab, A)
    rec = rig.recover_source(A, B)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    # (agent A's periodic pass over the same journal may have settled it just before)
    said = [ln for ln in (rec.stdout + _log(lab, A)[len(log_a):]).splitlines() if entry.migration_id in ln]
    assert len(said) == 1 and "destroyed" in said[0], said
    _check_all(rig, B)


def test_agent_on_the_source_host_settles_a_dead_source(rig: Rig) -> None:
    """No operator: the source dies after FINISH left; the agent serving the source's
    state dir (host A's agent, restarted here so that it looks now rather than within
    its 30 s period) asks B, hears done and destroys the stopped copy on A."""
    lab = rig.lab
    _ensure_on_a(rig)
    before = _advance(rig, A, rig.last)
    r = rig.migrate(A, B, "--inject-fault", "kill-confirm")
    assert r.returncode == 137, r.stderr[-2000:]
    [entry] = journal.pending(lab.state[A])
    assert entry.phase == "finishing"
    rig.restart_agent(A)
    deadline = time.monotonic() + 30
    while journal.pending(lab.state[A]):
        assert time.monotonic() < deadline, "agent A did not settle the dead source's migration"
        time.sleep(0.1)
    assert f"outgoing migration {entry.migration_id}" in _log(lab, A)
    _check_all(rig, B)
    assert rig.last > before
