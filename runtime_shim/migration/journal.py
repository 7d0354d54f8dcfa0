"""The source's journal of outgoing migrations, and their recovery after the source died.

``hetmig migrate`` keeps one small JSON file per migration in flight,
``<state-dir>/outgoing/<migration-id>.json`` (written atomically), plus its
work directory ``<id>.work/`` (the root file system tar and the final image
set). The file names the container (runc id and root, or the agent state dir
of a container an agent restored here, or a plain pid), its init pid with the
pid's start time (so a recycled pid is never touched), the agent asked, the
userfaultfd the dirty tracker put into the container, and the phase:

  * ``begun``: from before BEGIN until FINISH is sent. The agent cannot have
    released its copy (that needs FINISH): a dead source means the migration
    is aborted there, and the container on this host resumed when the kernel
    detached our ptrace freeze. Left behind: possibly the tracker's
    userfaultfd inside the container, and the work directory.
  * ``finishing``: the container tree got SIGSTOP queued while still held by
    our freeze, then FINISH was sent. If the source dies now the kernel
    detaches the tree and the SIGSTOP stops it: it never runs on here while
    the agent may have released its copy. Who runs it is the agent's answer
    to STATUS.
  * ``released``: the agent ACKed FINISH: the copy here is to be destroyed.

A migration that ends (migrated or rolled back) removes its entry and work
directory. An entry whose ``hetmig migrate`` process still lives (pid and
start time recorded) is left alone: it is in flight, not dead. :func:`recover` (``hetmig migrate --recover [ID]``) settles the
entries a dead source left: ``begun`` -> the tracker's userfaultfd closed in
the container (injected close), the entry removed; ``finishing`` -> STATUS:
``done`` -> the copy here destroyed, ``aborted`` -> SIGCONT, no answer ->
left stopped and reported (exit 1; run it again once the agent answers);
``released`` -> the copy here destroyed. It refuses to act on a pid whose start
time differs from the journal's (reported as gone). An agent serving the
same state dir settles the entries of dead sources at start and every
RECOVER_INTERVAL seconds (so a stopped copy does not wait for an operator).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from capture.errors import HetmigError, MigrationError

PHASES = ("begun", "finishing", "released")
RECOVER_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class Entry:
    migration_id: str
    container_id: str
    kind: str                      # runc | managed | process
    pid: int                       # the container's init (or the process)
    pid_start: int                 # its start time (clock ticks after boot, /proc/PID/stat field 22)
    host: str
    port: int
    phase: str = "begun"
    runc_root: str | None = None
    agent_state: str | None = None
    uffd: tuple[int, int] | None = None            # (pid, fd) of the tracker's userfaultfd
    stopped: tuple[tuple[int, int], ...] = ()      # (pid, start time) sent SIGSTOP before FINISH
    time: float = field(default_factory=time.time)
    source_pid: int = 0                            # the `hetmig migrate` process, with its start time:
    source_start: int = 0                          # while it lives, the entry is not ours to settle

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Entry":
        if not isinstance(data, dict):
            raise MigrationError(f"{where}: not a JSON object")
        try:
            uffd = data.get("uffd")
            return cls(migration_id=str(data["migration_id"]), container_id=str(data["container_id"]),
                       kind=str(data["kind"]), pid=int(data["pid"]), pid_start=int(data["pid_start"]),
                       host=str(data["host"]), port=int(data["port"]), phase=str(data["phase"]),
                       runc_root=data.get("runc_root"), agent_state=data.get("agent_state"),
                       uffd=(int(uffd[0]), int(uffd[1])) if uffd else None,
                       stopped=tuple((int(p), int(s)) for p, s in data.get("stopped") or ()),
                       time=float(data.get("time", 0.0)), source_pid=int(data.get("source_pid", 0)),
                       source_start=int(data.get("source_start", 0)))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise MigrationError(f"{where}: malformed journal entry ({type(err).__name__}: {err})") from None


def outgoing_dir(state_dir: Path) -> Path:
    return state_dir / "outgoing"


def work_dir(state_dir: Path, migration_id: str) -> Path:
    return outgoing_dir(state_dir) / f"{migration_id}.work"


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def write(state_dir: Path, entry: Entry) -> None:
    d = outgoing_dir(state_dir)
    d.mkdir(mode=0o700, exist_ok=True)
    tmp = d / f".{entry.migration_id}.json.tmp"
    tmp.write_text(json.dumps(entry.to_json()))
    os.replace(tmp, d / f"{entry.migration_id}.json")


def update(state_dir: Path, entry: Entry, **changes: Any) -> Entry:
    new = replace(entry, **changes)
    write(state_dir, new)
    return new


def remove(state_dir: Path, migration_id: str) -> None:
    shutil.rmtree(work_dir(state_dir, migration_id), ignore_errors=True)
    try:
        os.unlink(outgoing_dir(state_dir) / f"{migration_id}.json")
    except FileNotFoundError:
        pass


def pending(state_dir: Path) -> list[Entry]:
    d = outgoing_dir(state_dir)
    if not d.is_dir():
        return []
    out = []
    for path in sorted(d.glob("*.json")):
        try:
            out.append(Entry.from_json(json.loads(path.read_text()), str(path)))
        except (OSError, ValueError) as err:
            raise MigrationError(f"{path}: unreadable journal entry: {err}") from None
    return out


def refuse_if_pending(state_dir: Path, container_id: str) -> None:
    for e in pending(state_dir):
        if e.container_id == container_id:
            raise MigrationError(f"container {container_id} has an unfinished migration {e.migration_id} "
                                 f"(phase {e.phase}, its source died); run `hetmig migrate --recover "
                                 f"--state-dir {state_dir}` first")


def _same(pid: int, start: int) -> bool:
    return start_time(pid) == start


def close_stale_uffd(pid: int, fd: int, attempts: int = 20) -> bool:
    """Close fd *fd* in *pid* when it is a userfaultfd (the tracker of a source that died,
    or one a failed stop left). The injected close fails when a signal (a shell's
    SIGCHLD) stops the thread first: retried *attempts* times. True when it closed one."""
    from capture.dirty import UffdWpTracker

    for attempt in range(attempts):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[userfaultfd]":
                return attempt > 0
        except OSError:
            return attempt > 0
        tracker = UffdWpTracker(pid)
        tracker.uffd = fd
        try:
            tracker.stop()  # injected close(fd) under a short ptrace stop
        except HetmigError:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.01)
    return True


def _cont(entry: Entry) -> None:
    for pid, start in entry.stopped:
        if _same(pid, start):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _destroy(entry: Entry) -> None:
    from runtime_shim.migration.engine import ManagedSource, RuncSource

    if not _same(entry.pid, entry.pid_start):
        return
    if entry.kind == "runc":
        src = RuncSource(entry.container_id, root=entry.runc_root)
        src.describe()  # the observed veths, removed with it
        src.destroy()
    elif entry.kind == "managed" and entry.agent_state:
        ManagedSource(entry.container_id, Path(entry.agent_state)).destroy()
    else:
        os.kill(entry.pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Recovered:
    migration_id: str
    container_id: str
    phase: str          # the journal's phase
    outcome: str        # rolled-back | destroyed | gone | unknown-left-stopped | in-progress
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def recover(state_dir: Path, status: Callable[[Entry], str], only: str | None = None) -> list[Recovered]:
    """Settle the journal entries of dead sources (all, or migration *only*). *status*
    asks the entry's agent for the outcome: done | aborted | anything else (unknown)."""
    d = outgoing_dir(state_dir)
    if not d.is_dir():
        return []
    # one recoverer at a time (an agent serving this state dir and `--recover` may race)
    lock = os.open(d / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _recover_locked(state_dir, status, only)
    finally:
        os.close(lock)


def _recover_locked(state_dir: Path, status: Callable[[Entry], str], only: str | None) -> list[Recovered]:
    out: list[Recovered] = []
    for e in pending(state_dir):
        if only is not None and e.migration_id != only:
            continue
        if e.source_pid and _same(e.source_pid, e.source_start):
            out.append(Recovered(e.migration_id, e.container_id, e.phase, "in-progress",
                                 f"its hetmig migrate (pid {e.source_pid}) still runs"))
            continue
        alive = _same(e.pid, e.pid_start)
        detail = ""
        if e.phase == "finishing":
            phase = status(e)
            if phase == "done":
                _destroy(e)
                outcome = "destroyed" if alive else "gone"
            elif phase == "aborted":
                _cont(e)
                outcome = "rolled-back" if alive else "gone"
            else:
                out.append(Recovered(e.migration_id, e.container_id, e.phase, "unknown-left-stopped",
                                     f"the agent at {e.host}:{e.port} answered {phase!r}; the container stays "
                                     f"stopped here; run --recover again once the agent answers"))
                continue
            detail = f"agent says {phase}"
        elif e.phase == "released":
            _destroy(e)
            outcome = "destroyed" if alive else "gone"
        else:  # begun: FINISH never left; the agent aborts, the copy here resumed when we died
            outcome = "rolled-back" if alive else "gone"
            if alive and e.uffd is not None:
                try:
                    if close_stale_uffd(*e.uffd):
                        detail = f"closed the tracker's userfaultfd {e.uffd[1]} in pid {e.uffd[0]}"
                except HetmigError as err:
                    out.append(Recovered(e.migration_id, e.container_id, e.phase, "unknown-left-stopped",
                                         f"cannot close the tracker's userfaultfd: {err}"))
                    continue
        remove(state_dir, e.migration_id)
        out.append(Recovered(e.migration_id, e.container_id, e.phase, outcome, detail))
    return out
