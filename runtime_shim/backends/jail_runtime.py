"""The OCI runtime verbs on FreeBSD jails (``hetmig-runtime --backend jail``).

UNTESTED ON A REAL FREEBSD HOST. It drives
:class:`runtime_shim.backends.freebsd.JailBackend` (jail(8), jexec, jls, rctl,
mount, devfs) through a :class:`~runtime_shim.backends.runner.CommandRunner`
and is tested with a recording runner and a fake process spawner only.

``create ID -b BUNDLE``
    translates BUNDLE/config.json (:func:`runtime_shim.translate.oci_to_freebsd`),
    builds the jail with :meth:`JailBackend.create` (``jail -c ... persist``,
    mounts, devfs rules, ``rctl -a``: the RCTL limits are applied, unlike
    runj/ocijail) and records it in the state directory (``--root``).
``start ID``
    runs the plan's process with ``jexec`` (detached, new session) and records
    its pid; ``--pid-file`` given at create is written here (runc writes it at
    create: a jail has no process before start; see docs of the CLI).
``state ID``
    OCI state JSON from the record and ``jls -n -j ID --libxo json``.
``kill ID SIG`` / ``kill --all``
    the recorded process / every process of the jail (``jexec ID /bin/kill -SIG -1``).
``delete ID``
    :meth:`JailBackend.delete` (``jail -r``, ``rctl -r jail:ID``, unmounts,
    devfs ruleset), then the record.

Refuses: checkpoint/restore (the capture engine's FreeBSD platform is not
wired to this backend yet), starting a container twice, deleting a running
one without ``--force``.
"""

from __future__ import annotations

import json
import os
import signal as _signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from capture.errors import BadInputError, HetmigError, PlatformError
from runtime_shim.backends.runner import CommandRunner, SubprocessRunner
from runtime_shim.state import ContainerRecord, StateDir, Translation, TranslationState, check_id

DEFAULT_JAIL_STATE = "/var/run/hetmig/jail"
OCI_VERSION = "1.0.2"

Spawner = Callable[[Sequence[str]], int]
Alive = Callable[[int], bool]
Killer = Callable[[int, int], None]


def spawn_detached(argv: Sequence[str]) -> int:
    """Start *argv* in a new session with stdio on /dev/null; its pid."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as err:
        raise PlatformError(f"cannot start {argv[0]}", errno=err.errno, command=list(argv)) from err
    return proc.pid


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_signal(text: str) -> int:
    """``KILL``, ``SIGKILL`` or ``9`` -> the signal number; BadInputError otherwise."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise BadInputError(f"signal {text!r} is not known (expected a name like TERM or a number)") from None


@dataclass
class JailRuntime:
    """OCI lifecycle verbs on jails (untested on a real FreeBSD host)."""

    state_root: str = DEFAULT_JAIL_STATE
    runner: CommandRunner = field(default_factory=lambda: SubprocessRunner(timeout=120))
    spawn: Spawner = spawn_detached
    alive: Alive = pid_alive
    killer: Killer = os.kill

    def __post_init__(self) -> None:
        from runtime_shim.backends.freebsd import JailBackend

        self.store = StateDir(self.state_root)
        self.backend = JailBackend(self.runner)

    # -- helpers ------------------------------------------------------------
    def _record(self, container_id: str) -> ContainerRecord:
        check_id(container_id)
        if not os.path.exists(self.store.record_path(container_id)):
            raise HetmigError(f"container {container_id!r} does not exist (no record in {self.state_root})")
        return self.store.load(container_id)

    @staticmethod
    def _plan(record: ContainerRecord) -> Mapping[str, Any]:
        plan = record.translation.plan
        if plan is None:
            raise HetmigError(f"container {record.id!r}: its record has no jail plan")
        return plan

    @staticmethod
    def _with(record: ContainerRecord, *, pid: int | None = None, status: str | None = None) -> ContainerRecord:
        ann = dict(record.annotations)
        if status is not None:
            ann["io.hetmig.status"] = status
        return ContainerRecord(
            id=record.id,
            pid=record.pid if pid is None else pid,
            bundle=record.bundle,
            runtime=record.runtime,
            runtime_root=record.runtime_root,
            manager=record.manager,
            created=record.created,
            annotations=ann,
            translation=record.translation,
        )

    # -- verbs --------------------------------------------------------------
    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None) -> int:
        from runtime_shim.translate import load_rules, oci_to_freebsd

        check_id(container_id)
        if os.path.exists(self.store.record_path(container_id)):
            raise BadInputError(f"container {container_id!r} already exists")
        config = os.path.join(bundle, "config.json")
        try:
            with open(config, encoding="utf-8") as fh:
                spec = json.load(fh)
        except OSError as err:
            raise BadInputError(f"bundle {bundle}: cannot read config.json ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise BadInputError(f"{config}: not JSON ({err})") from None
        plan: dict[str, Any] = oci_to_freebsd(spec, container_id, load_rules(), bundle=bundle).to_json()
        result = self.backend.create(plan)
        annotations = {str(k): str(v) for k, v in (spec.get("annotations") or {}).items()}
        annotations["io.hetmig.status"] = "created"
        if pid_file:
            annotations["io.hetmig.pid-file"] = os.path.abspath(pid_file)
        losses = tuple(str(x) for x in result.losses)
        record = ContainerRecord(
            id=container_id,
            pid=0,
            bundle=os.path.abspath(bundle),
            runtime="jail",
            runtime_root=self.state_root,
            created=time.time(),
            annotations=annotations,
            translation=Translation(TranslationState.OK, losses=losses, plan=plan),
        )
        self.store.create(record)
        return 0

    def start(self, container_id: str) -> int:
        from runtime_shim.backends.freebsd import jexec_argv, spec_from_plan

        record = self._record(container_id)
        if record.annotations.get("io.hetmig.status") != "created":
            raise HetmigError(f"container {container_id!r} is {record.annotations.get('io.hetmig.status')!r}, "
                              "not created: cannot start it")
        spec = spec_from_plan(self._plan(record))
        pid = self.spawn(jexec_argv(spec))
        self.store.update(self._with(record, pid=pid, status="running"))
        pid_file = record.annotations.get("io.hetmig.pid-file")
        if pid_file:
            tmp = f"{pid_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(str(pid))
            os.replace(tmp, pid_file)
        return 0

    def _status(self, record: ContainerRecord) -> str:
        recorded = record.annotations.get("io.hetmig.status", "")
        if recorded == "created":
            return "created"
        if recorded == "running" and self.alive(record.pid):
            return "running"
        return "stopped"

    def state(self, container_id: str) -> dict[str, Any]:
        record = self._record(container_id)
        info = self.backend.state(container_id)
        status = self._status(record) if info is not None else "stopped"
        annotations = {k: v for k, v in record.annotations.items() if not k.startswith("io.hetmig.")}
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": record.id,
            "status": status,
            "pid": record.pid if status == "running" else 0,
            "bundle": record.bundle,
            "annotations": annotations,
        }
        if info is not None and info.jid is not None:
            out["annotations"]["org.freebsd.jail.jid"] = str(info.jid)
        return out

    def kill(self, container_id: str, sig: str = "SIGTERM", *, all_processes: bool = False) -> int:
        from runtime_shim.backends.freebsd import Tools

        record = self._record(container_id)
        signum = parse_signal(sig)
        if all_processes:
            tools = Tools()
            res = self.runner.run([tools.jexec, container_id, "/bin/kill", f"-{signum}", "-1"])
            if res.returncode != 0:
                raise PlatformError(f"kill --all {container_id} failed", command=list(res.argv), stderr=res.stderr)
            return 0
        if self._status(record) != "running":
            raise HetmigError(f"container {container_id!r} is not running")
        try:
            self.killer(record.pid, signum)
        except ProcessLookupError:
            raise HetmigError(f"container {container_id!r}: process {record.pid} is gone") from None
        return 0

    def delete(self, container_id: str, *, force: bool = False) -> int:
        record = self._record(container_id)
        if self._status(record) == "running":
            if not force:
                raise HetmigError(f"container {container_id!r} is running (use delete --force)")
            try:
                self.killer(record.pid, int(_signal.SIGKILL))
            except ProcessLookupError:
                pass
        self.backend.delete(self._plan(record))
        self.store.remove(container_id)
        return 0

    def list(self) -> list[dict[str, Any]]:
        rows = []
        for record in self.store.records():
            status = self._status(record)
            rows.append({
                "ociVersion": OCI_VERSION,
                "id": record.id,
                "pid": record.pid if status == "running" else 0,
                "status": status,
                "bundle": record.bundle,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                "owner": "root",
            })
        return rows

    def features(self) -> dict[str, Any]:
        return {
            "ociVersionMin": "1.0.0",
            "ociVersionMax": OCI_VERSION,
            "annotations": {
                "io.hetmig.backend": "jail",
                "io.hetmig.engines": "",
                "io.hetmig.untested": "FreeBSD jail backend untested on a real FreeBSD host",
            },
        }
