"""Fault injection for the fault-matrix tests: one failure at one phase of a migration.

A fault is written ``KIND-PHASE`` (``kill-precopy``, ``diskfull-final``,
``refuse-restore``) and given to the hidden flags ``hetmig agent
--inject-fault`` (the destination) or ``hetmig migrate --inject-fault`` (the
source). Phases, in the order a migration passes them:

    connect  precopy  freeze  final  rootfs  restore  confirm  cleanup

Kinds:
  * ``kill``: the process of that side ends at once with status 137 as a
    SIGKILL would end it (``os._exit``: no cleanup, no finally, no last
    message; the kernel releases the rest as on any death: ptrace tracees
    detached, PTRACE_O_EXITKILL tracees killed, sockets closed).
  * ``drop``: that side closes the connection without a word, as a network
    cut would, and then handles the broken connection like any other.
  * ``diskfull``: the agent's state-dir file system is filled for real (a
    filler file, :data:`FILL_NAME`, grown until the kernel says ENOSPC), so
    the agent's next write there fails with ENOSPC. It refuses to fill a file
    system larger than :data:`MAX_FILL_BYTES` (it is meant for a test's small
    tmpfs, never a real disk). :func:`unfill` removes the filler.
  * ``refuse``: the destination refuses the restore (MigrationError).

Where exactly each point sits on each side is :data:`POINTS`; combinations
that do not exist are :data:`NOT_APPLICABLE` with the reason, and are refused
(BadInputError, exit 2) like unknown names. Older spellings are accepted:
``fail-restore`` is ``refuse-restore``, ``KIND-finish`` is ``KIND-confirm``.
A fault fires once per process (the first time its point is reached); the
process then behaves normally. Nothing here runs unless a fault was given.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from capture.errors import BadInputError, MigrationError


class Side(enum.Enum):
    SOURCE = "source"   # hetmig migrate
    AGENT = "agent"     # hetmig agent (the destination)


class Phase(enum.Enum):
    CONNECT = "connect"
    PRECOPY = "precopy"
    FREEZE = "freeze"
    FINAL = "final"
    ROOTFS = "rootfs"
    RESTORE = "restore"
    CONFIRM = "confirm"
    CLEANUP = "cleanup"


class Kind(enum.Enum):
    KILL = "kill"
    DROP = "drop"
    DISKFULL = "diskfull"
    REFUSE = "refuse"


POINTS: dict[Side, dict[Phase, str]] = {
    Side.SOURCE: {
        Phase.CONNECT: "after HELLO and the compatibility check, before BEGIN",
        Phase.PRECOPY: "after the first pre-copy round was acknowledged (dirty tracking active)",
        Phase.FREEZE: "right after the container was frozen",
        Phase.FINAL: "after the final dump, before its image files are sent",
        Phase.ROOTFS: "before the root file system changes are sent",
        Phase.RESTORE: "after COMMIT was sent, before CONFIRM arrived",
        Phase.CONFIRM: "after FINISH was sent, before its ACK arrived",
        Phase.CLEANUP: "after FINISH's ACK, before the source copy is destroyed",
    },
    Side.AGENT: {
        Phase.CONNECT: "HELLO received, before the reply",
        Phase.PRECOPY: "the first ROUND_END received",
        Phase.FINAL: "the first image file (FILE_BEGIN) of the final transfer",
        Phase.ROOTFS: "ROOTFS_BEGIN of the root file system changes sent at cut-over",
        Phase.RESTORE: "COMMIT received, before the restore",
        Phase.CONFIRM: "FINISH received, before the held copy is released",
        Phase.CLEANUP: "after FINISH's ACK was sent (the source destroys its copy now)",
    },
}


def _not_applicable() -> dict[tuple[Side, Phase, Kind], str]:
    out: dict[tuple[Side, Phase, Kind], str] = {}
    for phase in Phase:
        for kind in Kind:
            out[(Side.AGENT, Phase.FREEZE, kind)] = ("the freeze happens on the source only; the agent gets no "
                                                     "message for it (its next one belongs to the final transfer)")
            out[(Side.SOURCE, phase, Kind.DISKFULL)] = ("disk full is a fault of the agent's state dir; the source "
                                                        "stores only its journal there")
            if phase is not Phase.RESTORE:
                out[(Side.SOURCE, phase, Kind.REFUSE)] = "only a restore can be refused"
                out[(Side.AGENT, phase, Kind.REFUSE)] = "only a restore can be refused"
    out[(Side.SOURCE, Phase.RESTORE, Kind.REFUSE)] = "the source does not restore; the agent refuses"
    out[(Side.SOURCE, Phase.CLEANUP, Kind.DROP)] = ("the source closed the connection after FINISH's ACK; "
                                                    "there is nothing left to drop")
    out[(Side.AGENT, Phase.CLEANUP, Kind.DROP)] = ("the agent closes the connection after FINISH's ACK anyway; "
                                                   "there is nothing left to drop")
    out[(Side.AGENT, Phase.CLEANUP, Kind.DISKFULL)] = "the agent writes nothing to its state dir after FINISH's ACK"
    return out


NOT_APPLICABLE: dict[tuple[Side, Phase, Kind], str] = _not_applicable()
ALIASES = {"fail": "refuse", "finish": "confirm"}
FILL_NAME = ".hetmig-fault-fill"
MAX_FILL_BYTES = 2 << 30


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Kind
    phase: Phase
    name: str            # as given (old spellings kept in messages)


def names(side: Side) -> list[str]:
    """Every valid ``KIND-PHASE`` for *side*, in phase order."""
    return [f"{k.value}-{p.value}" for p in Phase for k in Kind if (side, p, k) not in NOT_APPLICABLE]


def parse(text: str, side: Side, flag: str = "--inject-fault") -> Fault:
    kind_s, sep, phase_s = text.partition("-")
    kind_s, phase_s = ALIASES.get(kind_s, kind_s), ALIASES.get(phase_s, phase_s)
    kind = next((k for k in Kind if k.value == kind_s), None)
    phase = next((p for p in Phase if p.value == phase_s), None)
    if not sep or kind is None or phase is None:
        raise BadInputError(f"{flag}={text!r} is not KIND-PHASE (valid on the {side.value}: "
                            f"{', '.join(names(side))})")
    reason = NOT_APPLICABLE.get((side, phase, kind))
    if reason is not None:
        raise BadInputError(f"{flag}={text!r} does not exist on the {side.value}: {reason}")
    return Fault(kind, phase, text)


def fill(directory: Path) -> int:
    """Fill the file system of *directory* until ENOSPC (a filler file in it); returns the
    bytes written. Refuses a file system larger than MAX_FILL_BYTES."""
    st = os.statvfs(directory)
    total = st.f_blocks * st.f_frsize
    if total > MAX_FILL_BYTES:
        raise MigrationError(f"injected fault diskfull: refusing to fill {directory}: its file system holds "
                             f"{total} bytes (at most {MAX_FILL_BYTES}; give the agent a small tmpfs as state dir)")
    fd = os.open(directory / FILL_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    written = 0
    try:
        for size in (4 << 20, 64 << 10, 4096, 512):
            block = bytes(size)
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as err:
                    if err.errno in (errno.ENOSPC, errno.EDQUOT):
                        break
                    raise
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


def unfill(directory: Path) -> bool:
    """Remove the filler :func:`fill` made; False when there was none."""
    try:
        os.unlink(directory / FILL_NAME)
    except FileNotFoundError:
        return False
    return True


class Injector:
    """The one fault of this process (or none): :meth:`at` is called at every point."""

    def __init__(self, fault: Fault | None, side: Side, *, fill_dir: Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.fault = fault
        self.side = side
        self.fill_dir = fill_dir
        self.log = log or (lambda msg: None)
        self.fired = False
        self._lock = threading.Lock()

    def at(self, phase: Phase, sock: socket.socket | None = None) -> None:
        fault = self.fault
        if fault is None or fault.phase is not phase:
            return
        with self._lock:
            if self.fired:
                return
            self.fired = True
        self.log(f"injected fault {fault.name} ({self.side.value}: {POINTS[self.side][phase]})")
        if fault.kind is Kind.KILL:
            os._exit(128 + signal.SIGKILL)  # no cleanup, no flush, no finally: as SIGKILL would
        if fault.kind is Kind.DROP:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
            from runtime_shim.migration.wire import ProtocolError

            raise ProtocolError(f"injected fault {fault.name}: connection dropped")
        if fault.kind is Kind.DISKFULL:
            if self.fill_dir is None:
                raise MigrationError(f"injected fault {fault.name}: no state dir to fill")
            n = fill(self.fill_dir)
            self.log(f"injected fault {fault.name}: {self.fill_dir} filled ({n} bytes)")
            return
        raise MigrationError(f"injected fault {fault.name}: restore refused")
