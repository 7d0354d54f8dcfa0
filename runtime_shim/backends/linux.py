"""The Linux runtime backend: delegate the OCI lifecycle to runc (or crun).

``create``, ``start``, ``kill``, ``delete`` and the verbs hetmig does not
change (``exec``, ``pause``, ``resume``, ``ps``, ``events``, ``update``) run
the delegate runtime with the caller's stdio and file descriptors inherited
(conmon hands the container's stdio and sync pipes through them), with the
global flags (``--root``, ``--log``, ``--log-format``, ``--debug``,
``--systemd-cgroup``) passed through. ``state``, ``list`` and ``features``
capture the delegate's JSON and return it parsed, so the CLI prints data.

Checkpoint and restore use one of two engines:

* ``criu``: ``runc checkpoint`` / ``runc restore`` (CRIU through runc), with
  the runc flags hetmig accepts passed through;
* ``native``: hetmig's own capture engine (:mod:`capture.dump`,
  :mod:`capture.restore`); selecting it while those modules lack
  ``dump``/``restore`` raises a :class:`~capture.errors.HetmigError` saying
  what is missing. Its restore puts the tree into the bundle's rootfs in a new
  pid namespace, outside runc's bookkeeping, so criu stays the default
  (``$HETMIG_ENGINE`` overrides).

Either way the image directory also gets ``hetmig.json`` (source OS, arch,
kernel, engine, the container's OCI spec, its FreeBSD translation with
losses, and a SHA-256 of every image file), which makes it hetmig's unified
format. CRIU and runc ignore the extra file.

Refuses: container ids that are not plain names, an image directory that is
not empty at checkpoint, runc flags the chosen engine cannot honour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform as _host
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

from capture.errors import (
    BadInputError,
    CheckpointError,
    HetmigError,
    PlatformError,
    RestoreError,
)
from runtime_shim.backends.runner import CommandRunner, CompletedCommand, SubprocessRunner
from runtime_shim.state import check_id

log = logging.getLogger(__name__)

HETMIG_JSON = "hetmig.json"
HETMIG_JSON_VERSION = 1
DELEGATES = ("runc", "crun")
NATIVE_DUMP_ATTEMPTS = 3


class Engine(Enum):
    """How checkpoint/restore are done."""

    CRIU = "criu"
    NATIVE = "native"


def native_engine_missing() -> str | None:
    """Why the native engine cannot run here, or None when it can."""
    missing = []
    for mod, fn in (("capture.dump", "dump"), ("capture.restore", "restore")):
        try:
            module = __import__(mod, fromlist=[fn])
        except ImportError:
            missing.append(f"{mod} is not installed")
            continue
        if not callable(getattr(module, fn, None)):
            missing.append(f"{mod}.{fn} does not exist")
    return "; ".join(missing) if missing else None


def default_engine() -> Engine:
    """The engine used when none is named: criu, or $HETMIG_ENGINE.

    native becomes the default once its restore recreates the runc container
    around the restored tree; today it restores the tree into the bundle's
    rootfs in a new pid namespace only, outside runc's bookkeeping.
    """
    wanted = os.environ.get("HETMIG_ENGINE", "criu")
    try:
        return Engine(wanted)
    except ValueError:
        raise BadInputError(f"HETMIG_ENGINE={wanted!r} (expected criu or native)") from None


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """runc's global flags, passed through to the delegate."""

    root: str | None = None
    log: str | None = None
    log_format: str | None = None
    debug: bool = False
    systemd_cgroup: bool = False

    def argv(self) -> list[str]:
        out: list[str] = []
        if self.root:
            out += ["--root", self.root]
        if self.log:
            out += ["--log", self.log]
        if self.log_format:
            out += ["--log-format", self.log_format]
        if self.debug:
            out.append("--debug")
        if self.systemd_cgroup:
            out.append("--systemd-cgroup")
        return out


@dataclass(frozen=True, slots=True)
class CheckpointOptions:
    image_path: str
    work_path: str | None = None
    leave_running: bool = False
    engine: Engine = Engine.CRIU
    # runc/CRIU flags, honoured by the criu engine only
    tcp_established: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    file_locks: bool = False
    manage_cgroups_mode: str | None = None
    parent_path: str | None = None
    pre_dump: bool = False

    def criu_only_flags(self) -> list[str]:
        flags = []
        for name in ("tcp_established", "ext_unix_sk", "shell_job", "file_locks", "pre_dump"):
            if getattr(self, name):
                flags.append("--" + name.replace("_", "-"))
        if self.manage_cgroups_mode:
            flags += ["--manage-cgroups-mode", self.manage_cgroups_mode]
        if self.parent_path:
            flags += ["--parent-path", self.parent_path]
        return flags


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    image_path: str
    bundle: str
    detach: bool = False
    pid_file: str | None = None
    work_path: str | None = None
    console_socket: str | None = None
    engine: Engine = Engine.CRIU
    tcp_established: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    file_locks: bool = False
    manage_cgroups_mode: str | None = None
    no_subreaper: bool = False
    no_pivot: bool = False

    def criu_only_flags(self) -> list[str]:
        flags = []
        for name in ("tcp_established", "ext_unix_sk", "shell_job", "file_locks", "no_subreaper", "no_pivot"):
            if getattr(self, name):
                flags.append("--" + name.replace("_", "-"))
        if self.manage_cgroups_mode:
            flags += ["--manage-cgroups-mode", self.manage_cgroups_mode]
        return flags


def find_delegate(name: str | None) -> str:
    """Path of the delegate runtime: *name* (runc, crun or a path), $HETMIG_DELEGATE, else runc."""
    wanted = name or os.environ.get("HETMIG_DELEGATE") or "runc"
    if os.sep in wanted:
        if not os.access(wanted, os.X_OK):
            raise BadInputError(f"delegate runtime {wanted!r} is not an executable file")
        return wanted
    found = shutil.which(wanted)
    if found is None:
        raise PlatformError(f"delegate runtime {wanted!r} not found on PATH (expected runc or crun)")
    return found


def parse_json_output(result: CompletedCommand, what: str) -> Any:
    """The JSON a delegate printed, or PlatformError naming the command."""
    if result.returncode != 0:
        raise PlatformError(
            f"{what} failed with exit status {result.returncode}", command=list(result.argv), stderr=result.stderr
        )
    try:
        return json.loads(result.stdout or "null")
    except json.JSONDecodeError as err:
        raise PlatformError(f"{what} printed invalid JSON: {err}", command=list(result.argv)) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_checksums(image_dir: Path) -> dict[str, str]:
    """SHA-256 of every regular file under *image_dir* except hetmig.json."""
    sums: dict[str, str] = {}
    for path in sorted(image_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != HETMIG_JSON:
            sums[str(path.relative_to(image_dir))] = sha256_file(path)
    return sums


def host_facts() -> dict[str, Any]:
    uname = os.uname()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = sorted(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "os": uname.sysname.lower(),
        "arch": _host.machine(),
        "kernel": uname.release,
        "cpu_features": flags,
    }


def write_hetmig_json(
    image_dir: Path,
    *,
    container_id: str,
    engine: Engine,
    spec: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write image_dir/hetmig.json atomically (spec, translation, checksums)."""
    translation: dict[str, Any] = {"state": "pending"}
    if spec is not None:
        translation = translate_spec(spec, container_id, (extra or {}).get("bundle"))
    doc: dict[str, Any] = {
        "version": HETMIG_JSON_VERSION,
        "container_id": container_id,
        "created": time.time(),
        "engine": engine.value,
        "source": host_facts(),
        "spec": spec,
        "translation": translation,
        "checksums": image_checksums(image_dir),
    }
    if extra:
        doc.update(extra)
    path = image_dir / HETMIG_JSON
    tmp = image_dir / f".{HETMIG_JSON}.{os.getpid()}.tmp"
    with open(tmp, "x", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def translate_spec(spec: dict[str, Any], name: str, bundle: str | None = None) -> dict[str, Any]:
    """FreeBSD translation of *spec* as stored in hetmig.json (plan + losses).

    *bundle* resolves a relative ``root.path``; without it the spec's paths are
    taken as they are (podman's specs carry absolute ones).
    """
    try:
        from runtime_shim.translate import load_rules, oci_to_freebsd
    except ImportError as err:
        return {"state": "pending", "error": f"translator not available: {err}"}
    try:
        plan = oci_to_freebsd(spec, name, load_rules(), bundle=bundle or "/")
    except HetmigError as err:
        return {"state": "failed", "error": str(err)}
    doc = plan.to_json()
    losses = doc.get("losses", [])
    return {"state": "ok", "plan": doc, "loss_count": len(losses), "strict_ok": not losses}


MAX_HETMIG_JSON_BYTES = 16 << 20
_IMAGE_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def verify_checksums(image_dir: Path) -> dict[str, Any]:
    """Load hetmig.json and check every listed image (BadInputError on any mismatch).

    hetmig.json is input: it is size-bounded, must be UTF-8 JSON of bounded
    depth, and its ``checksums`` may only name plain files directly inside
    *image_dir*; nothing outside
    is ever opened or hashed: names are relative paths whose components are
    [A-Za-z0-9._-] (not ``.`` or ``..``) and that resolve inside *image_dir*.
    """
    path = image_dir / HETMIG_JSON
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HETMIG_JSON_BYTES + 1)
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing (not a hetmig image directory)") from None
    except OSError as err:
        raise BadInputError(f"{path}: cannot read: {err.strerror}") from None
    if len(raw) > MAX_HETMIG_JSON_BYTES:
        raise BadInputError(f"{path}: larger than {MAX_HETMIG_JSON_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadInputError(f"{path}: not UTF-8 at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise BadInputError(f"{path}: not JSON: {err}") from None
    except (RecursionError, ValueError) as err:
        raise BadInputError(f"{path}: not acceptable JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("version") != HETMIG_JSON_VERSION:
        raise BadInputError(f"{path}: version={doc.get('version') if isinstance(doc, dict) else type(doc).__name__!r} "
                            f"(expected {HETMIG_JSON_VERSION})")
    checksums = doc.get("checksums") or {}
    if not isinstance(checksums, dict):
        raise BadInputError(f"{path}: checksums is a {type(checksums).__name__} (expected an object name -> sha256)")
    for rel, want in checksums.items():
        parts = rel.split("/")
        if len(parts) > 8 or any(not p or p in (".", "..") or not set(p) <= _IMAGE_NAME_CHARS for p in parts):
            raise BadInputError(f"{path}: checksums names {rel!r} (expected a relative path inside the image directory)")
        if not isinstance(want, str):
            raise BadInputError(f"{path}: checksums.{rel}={want!r} (expected a sha256 hex string)")
        f = image_dir / rel
        if f.is_symlink() or not f.is_file() or image_dir.resolve() not in f.resolve().parents:
            raise BadInputError(f"{path}: checksums lists {rel} but {f} is missing or not a regular file")
        got = sha256_file(f)
        if got != want:
            raise BadInputError(f"{f}: sha256={got} does not match hetmig.json ({want})")
    return doc


@dataclass
class LinuxBackend:
    """runc/crun delegation plus checkpoint/restore engines."""

    delegate: str = "runc"
    globals: GlobalOptions = field(default_factory=GlobalOptions)
    runner: CommandRunner = field(default_factory=lambda: SubprocessRunner(timeout=300))

    def __post_init__(self) -> None:
        self.binary = find_delegate(self.delegate)

    # -- plumbing ------------------------------------------------------------
    def argv(self, verb: str, *args: str) -> list[str]:
        return [self.binary, *self.globals.argv(), verb, *args]

    def passthrough(self, verb: str, *args: str) -> int:
        """Run the delegate with our stdio and fds inherited; its exit status."""
        argv = self.argv(verb, *args)
        log.debug("exec %s", argv)
        try:
            return subprocess.run(argv, close_fds=False, check=False).returncode
        except OSError as err:
            raise PlatformError(f"cannot run {self.binary}", errno=err.errno, command=argv) from err

    def captured(self, verb: str, *args: str) -> CompletedCommand:
        return self.runner.run(self.argv(verb, *args))

    # -- lifecycle -----------------------------------------------------------
    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
    ) -> int:
        check_id(container_id)
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise BadInputError(f"bundle {bundle}: no config.json")
        args = ["--bundle", bundle]
        if pid_file:
            args += ["--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        if no_new_keyring:
            args.append("--no-new-keyring")
        if preserve_fds:
            args += ["--preserve-fds", str(preserve_fds)]
        return self.passthrough("create", *args, container_id)

    def start(self, container_id: str) -> int:
        return self.passthrough("start", check_id(container_id))

    def kill(self, container_id: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> int:
        args = ["--all"] if all_processes else []
        return self.passthrough("kill", *args, check_id(container_id), signal)

    def delete(self, container_id: str, *, force: bool = False) -> int:
        args = ["--force"] if force else []
        return self.passthrough("delete", *args, check_id(container_id))

    def state(self, container_id: str) -> dict[str, Any]:
        """OCI state of the container (runc's, plus the bundle's annotations)."""
        data = parse_json_output(self.captured("state", check_id(container_id)), f"{self.delegate} state")
        if not isinstance(data, dict):
            raise PlatformError(f"{self.delegate} state printed {type(data).__name__}, expected an object")
        if "annotations" not in data and isinstance(data.get("bundle"), str):
            try:
                spec = json.loads((Path(data["bundle"]) / "config.json").read_text(encoding="utf-8"))
                if isinstance(spec.get("annotations"), dict):
                    data["annotations"] = spec["annotations"]
            except (OSError, json.JSONDecodeError):
                pass
        return data

    def list(self) -> list[dict[str, Any]]:
        data = parse_json_output(self.captured("list", "--format", "json"), f"{self.delegate} list")
        if data is None:
            return []
        if not isinstance(data, list):
            raise PlatformError(f"{self.delegate} list printed {type(data).__name__}, expected an array")
        return data

    def features(self) -> dict[str, Any]:
        res = self.captured("features")
        data: dict[str, Any] = {}
        if res.returncode == 0:
            parsed = parse_json_output(res, f"{self.delegate} features")
            if isinstance(parsed, dict):
                data = parsed
        data.setdefault("ociVersionMin", "1.0.0")
        data.setdefault("ociVersionMax", "1.0.2-dev")
        ann = data.setdefault("annotations", {})
        ann["io.hetmig.delegate"] = self.binary
        missing = native_engine_missing()
        ann["io.hetmig.engines"] = "criu" if missing else "criu,native"
        ann["io.hetmig.engine.default"] = default_engine().value
        return data

    # -- checkpoint / restore -----------------------------------------------
    def _spec_of(self, state: dict[str, Any]) -> dict[str, Any] | None:
        bundle = state.get("bundle")
        if not isinstance(bundle, str):
            return None
        try:
            spec = json.loads((Path(bundle) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return spec if isinstance(spec, dict) else None

    def checkpoint(self, container_id: str, opts: CheckpointOptions) -> Path:
        check_id(container_id)
        image_dir = Path(opts.image_path)
        if image_dir.exists() and any(image_dir.iterdir()):
            raise BadInputError(f"--image-path {image_dir}: not empty (refusing to mix two checkpoints)")
        state = self.state(container_id)
        if state.get("status") not in ("running", "paused"):
            raise CheckpointError(
                f"container {container_id}: status={state.get('status')!r} (expected running or paused)"
            )
        spec = self._spec_of(state)
        image_dir.mkdir(parents=True, exist_ok=True)
        if opts.engine is Engine.CRIU:
            args = ["--image-path", str(image_dir)]
            if opts.work_path:
                args += ["--work-path", opts.work_path]
            if opts.leave_running:
                args.append("--leave-running")
            args += opts.criu_only_flags()
            res = self.captured("checkpoint", *args, container_id)
            if res.returncode != 0:
                raise CheckpointError(
                    f"{self.delegate} checkpoint of {container_id} failed (exit {res.returncode}): "
                    + (res.stderr.strip().splitlines() or ["no output"])[-1]
                )
        else:
            self._native_checkpoint(container_id, state, opts)
        write_hetmig_json(
            image_dir,
            container_id=container_id,
            engine=opts.engine,
            spec=spec,
            extra={"leave_running": opts.leave_running, "bundle": state.get("bundle")},
        )
        return image_dir

    def _native_checkpoint(self, container_id: str, state: dict[str, Any], opts: CheckpointOptions) -> None:
        unsupported = opts.criu_only_flags()
        if unsupported:
            raise BadInputError(
                f"--engine native does not support {' '.join(unsupported)} (use --engine criu)"
            )
        missing = native_engine_missing()
        if missing:
            raise HetmigError(f"--engine native is not available yet: {missing}; use --engine criu")
        from capture import dump as dump_mod

        pid = state.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise CheckpointError(f"container {container_id}: no init pid in its state")
        # The tree is always released running and then killed through the
        # runtime: capture.dump's own kill (leave_running=False) waits for the
        # exit of a container init it is not the parent of and hangs. Between
        # release and kill the tree runs for a few ms: its side effects in that
        # window are not in the images.
        # A child that exits while the tree is being seized (a shell's short
        # `sleep`) makes the dump fail with the tree released and running:
        # that is safe to retry.
        for attempt in range(1, NATIVE_DUMP_ATTEMPTS + 1):
            try:
                dump_mod.dump(pid, opts.image_path, leave_running=True, tree=True)
                break
            except CheckpointError as err:
                if attempt == NATIVE_DUMP_ATTEMPTS or "released and running" not in str(err):
                    raise
                log.info("native dump attempt %d of %s failed (%s); retrying", attempt, container_id, err)
                for leftover in Path(opts.image_path).iterdir():
                    if leftover.is_file():
                        leftover.unlink()
        if not opts.leave_running:
            self.captured("kill", container_id, "KILL")
            res = self.captured("delete", "--force", container_id)
            if res.returncode != 0:
                raise CheckpointError(
                    f"images written, but {self.delegate} delete --force {container_id} failed: {res.stderr.strip()}"
                )

    def restore(self, container_id: str, opts: RestoreOptions) -> int:
        check_id(container_id)
        image_dir = Path(opts.image_path)
        if not image_dir.is_dir():
            raise BadInputError(f"--image-path {image_dir}: not a directory")
        if not os.path.isfile(os.path.join(opts.bundle, "config.json")):
            raise BadInputError(f"--bundle {opts.bundle}: no config.json")
        if (image_dir / HETMIG_JSON).exists():
            doc = verify_checksums(image_dir)
            src_os = (doc.get("source") or {}).get("os")
            if src_os not in (None, "linux"):
                raise RestoreError(
                    f"{image_dir}: taken on {src_os}; restore on Linux takes Linux images only"
                )
        if opts.engine is Engine.NATIVE:
            unsupported = opts.criu_only_flags()
            if unsupported:
                raise BadInputError(f"--engine native does not support {' '.join(unsupported)} (use --engine criu)")
            missing = native_engine_missing()
            if missing:
                raise HetmigError(f"--engine native is not available yet: {missing}; use --engine criu")
            return self._native_restore(image_dir, opts)
        args = ["--image-path", str(image_dir), "--bundle", opts.bundle]
        if opts.work_path:
            args += ["--work-path", opts.work_path]
        if opts.detach:
            args.append("--detach")
        if opts.pid_file:
            args += ["--pid-file", opts.pid_file]
        if opts.console_socket:
            args += ["--console-socket", opts.console_socket]
        args += opts.criu_only_flags()
        return self.passthrough("restore", *args, container_id)


    def _native_restore(self, image_dir: Path, opts: RestoreOptions) -> int:
        """Restore with capture.restore into the bundle's rootfs, in a new pid namespace.

        The restored tree is not registered with runc (``state`` does not know
        it); --pid-file receives the host pid of the restored root process.
        """
        from capture import restore as restore_mod

        try:
            spec = json.loads((Path(opts.bundle) / "config.json").read_text(encoding="utf-8"))
            rootfs = spec["root"]["path"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BadInputError(f"--bundle {opts.bundle}: config.json has no root.path ({err})") from None
        if not os.path.isabs(rootfs):
            rootfs = os.path.join(opts.bundle, rootfs)
        result: Any = restore_mod.restore(str(image_dir), root=rootfs, pidns=True)
        if opts.pid_file:
            tmp = f"{opts.pid_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(str(result.root_pid))
            os.replace(tmp, opts.pid_file)
        for warning in getattr(result, "warnings", ()):
            log.warning("restore: %s", warning)
        return 0


def passthrough_verbs() -> Sequence[str]:
    """Verbs handed to the delegate unchanged (argv after the verb as given)."""
    return ("exec", "pause", "resume", "ps", "events", "update")
