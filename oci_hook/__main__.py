"""``hetmig-hook``: the OCI hook (runc config.json ``hooks``, podman hooks.d) and
its ``jail`` mode for jail(8) ``exec.*`` commands.

OCI mode::

    hetmig-hook [--state-dir DIR] [--translate detached|sync|lazy] [STAGE]  < OCI state JSON

STAGE is the OCI hook stage (``createRuntime``, ``poststop``, ...); when it is
omitted the stage is inferred from the state's ``status`` (``creating`` ->
createRuntime, ``stopped`` -> poststop). At createRuntime the container (id,
init pid, bundle, the runtime that ran the hook) is recorded in hetmig's state
directory and its FreeBSD translation is computed by a detached worker
(``--translate detached``, the default), inline (``sync``, ``--sync``) or
left pending for ``hetmig ps`` to compute on first use (``lazy``: no work at
all at container start), so that ``hetmig ps`` lists it. At poststop the record
is removed. The other stages (prestart, createContainer, startContainer,
poststart) validate the state and change nothing.

Jail mode (UNTESTED on a real FreeBSD host; the commands it runs are tested
against a recording runner only)::

    hetmig-hook [--state-dir DIR] jail created NAME --bundle DIR
    hetmig-hook [--state-dir DIR] jail poststop NAME

``created`` translates BUNDLE/config.json, applies the jail's RCTL rules and
registers the jail; ``poststop`` removes the rules and the record.

Exit codes: 0 done, 1 operational failure (state directory not writable), 2 bad
input (stdin not JSON, a field missing or of the wrong type, unknown stage):
one line on stderr, and nothing is changed.

Speed matters (runc waits for the hook, twice per container): only
os/sys/time and :mod:`runtime_shim.state` (which parses JSON with ``_json``'s
C scanner, without the ``json`` package and its ``re``/``enum`` imports) are
imported on the hot path; the translator (YAML, jsonschema) runs later:
lazily in ``hetmig ps`` (what packaging/hooks.d ships) or in the detached
worker. Start it through packaging/bin/hetmig-hook (``python -S``, no runpy,
no console-script wrapper). bench/bench_hook.py measures what it adds to
``runc run``.
"""

from __future__ import annotations

import os
import sys
import time

from capture.errors import EXIT_OK, BadInputError, HetmigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence

    from runtime_shim.state import StateDir

USAGE = (
    "usage: hetmig-hook [--state-dir DIR] [--translate detached|sync|lazy] [STAGE] < STATE_JSON\n"
    "       hetmig-hook [--state-dir DIR] jail created NAME --bundle DIR\n"
    "       hetmig-hook [--state-dir DIR] jail poststop NAME\n"
    "STAGE: prestart, createRuntime, createContainer, startContainer, poststart, poststop\n"
    "jail mode is untested on a real FreeBSD host.\n"
)

STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
_STATUS_STAGE = {"creating": "createRuntime", "created": "createRuntime", "stopped": "poststop"}
TRANSLATE_MODES = ("detached", "sync", "lazy")
MAX_STDIN = 1 << 20  # an OCI state is a few KiB; refuse anything absurd


class _Options:
    __slots__ = ("state_dir", "translate", "positional", "bundle")

    def __init__(self) -> None:
        self.state_dir: str | None = None
        self.translate = "detached"
        self.positional: list[str] = []
        self.bundle: str | None = None


def _parse_argv(argv: Sequence[str]) -> _Options:
    """Hand-rolled (argparse costs import time on the hot path)."""
    opts = _Options()
    it = iter(argv)
    for arg in it:
        if arg in ("--state-dir", "--bundle", "-b", "--translate"):
            value = next(it, None)
            if value is None:
                raise BadInputError(f"{arg} needs a value")
            if arg == "--state-dir":
                opts.state_dir = value
            elif arg == "--translate":
                if value not in TRANSLATE_MODES:
                    raise BadInputError(f"--translate {value!r} (expected one of {', '.join(TRANSLATE_MODES)})")
                opts.translate = value
            else:
                opts.bundle = value
        elif arg.startswith("--state-dir="):
            opts.state_dir = arg.split("=", 1)[1]
        elif arg.startswith("--bundle="):
            opts.bundle = arg.split("=", 1)[1]
        elif arg == "--sync":
            opts.translate = "sync"
        elif arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(EXIT_OK)
        elif arg.startswith("-"):
            raise BadInputError(f"unknown option {arg}")
        else:
            opts.positional.append(arg)
    return opts


def read_state(stream: Any) -> dict[str, Any]:
    """Parse the OCI state JSON from *stream*; BadInputError on anything else."""
    raw = stream.read(MAX_STDIN + 1)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInputError("stdin: OCI state is not UTF-8") from None
    if len(raw) > MAX_STDIN:
        raise BadInputError(f"stdin: OCI state larger than {MAX_STDIN} bytes")
    if not raw.strip():
        raise BadInputError("stdin: empty (expected the OCI state JSON)")
    from runtime_shim.state import loads

    state = loads(raw, "stdin: OCI state")
    if not isinstance(state, dict):
        raise BadInputError(f"stdin: OCI state must be a JSON object, got {type(state).__name__}")
    cid = state.get("id")
    if not isinstance(cid, str) or not cid:
        raise BadInputError(f"stdin: id={cid!r} (expected a non-empty string)")
    status = state.get("status")
    if status is not None and not isinstance(status, str):
        raise BadInputError(f"stdin: status={status!r} (expected a string)")
    ann = state.get("annotations")
    if ann is not None and (
        not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())
    ):
        raise BadInputError("stdin: annotations must be an object of strings")
    return state


def _stage_of(opts: _Options, state: dict[str, Any]) -> str:
    if opts.positional:
        if len(opts.positional) > 1:
            raise BadInputError(f"unexpected arguments {' '.join(opts.positional[1:])!r}")
        stage = opts.positional[0]
        if stage not in STAGES:
            raise BadInputError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
        return stage
    status = state.get("status")
    if status in _STATUS_STAGE:
        return _STATUS_STAGE[str(status)]
    raise BadInputError(f"no stage given and status={status!r} does not name one (expected creating or stopped)")


def _parent_runtime() -> tuple[str, str]:
    """(runtime name, --root) of the process that ran the hook, from /proc."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return "unknown", ""
    args = [a.decode("utf-8", "replace") for a in argv if a]
    if not args:
        return "unknown", ""
    name = os.path.basename(args[0])
    root = ""
    for i, a in enumerate(args):
        if a == "--root" and i + 1 < len(args):
            root = args[i + 1]
        elif a.startswith("--root="):
            root = a.split("=", 1)[1]
    return name, root


def _translate_detached(store: StateDir, cid: str, bundle: str) -> None:
    """Have the pending translations computed by one background worker.

    The worker is double-forked, has stdio on /dev/null (runc waits for the
    hook and for EOF on the pipes it gave it; the worker holds none of them)
    and is scheduled SCHED_IDLE (it only gets CPU no one else wants). At most
    one worker per state directory runs (an flock): a worker translates every
    record still pending, so containers started back to back pay the
    translator's imports once. A hook that finds the lock taken leaves its
    record to the running worker, which looks for pending records again after
    releasing the lock.
    """
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:  # first child
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            os.nice(19)
        _translation_worker(store)
        os._exit(0)
    except BaseException:
        os._exit(1)


def _translation_worker(store: StateDir) -> None:
    import fcntl

    lock_path = os.path.join(store.root, ".translator.lock")
    while store.pending_ids():
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # the running worker re-checks after it lets go
            while True:
                pending = store.pending_ids()
                if not pending:
                    break
                for cid in pending:
                    try:
                        record = store.load(cid)
                    except HetmigError:
                        continue  # removed meanwhile (poststop)
                    _translate_and_store(store, cid, record.bundle)
        finally:
            os.close(fd)  # releases the lock; then look again (a hook may have lost the race)


def _translate_and_store(store: StateDir, cid: str, bundle: str) -> None:
    from runtime_shim.state import translate_bundle

    store.write_translation(cid, translate_bundle(bundle, cid))


def hook_create_runtime(store: StateDir, state: dict[str, Any], *, translate: str = "detached") -> int:
    from runtime_shim.state import ContainerRecord, check_id

    cid = check_id(state["id"])
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise BadInputError(f"stdin: pid={pid!r} (expected a positive integer at createRuntime)")
    bundle = state.get("bundle")
    if not isinstance(bundle, str) or not os.path.isabs(bundle):
        raise BadInputError(f"stdin: bundle={bundle!r} (expected an absolute path)")
    annotations = dict(state.get("annotations") or {})
    runtime, root = _parent_runtime()
    manager = "podman" if annotations.get("io.container.manager") == "libpod" else ""
    record = ContainerRecord(
        id=cid,
        pid=pid,
        bundle=bundle,
        runtime=runtime,
        runtime_root=root,
        manager=manager,
        created=time.time(),
        annotations=annotations,
    )
    # a stale record (a crashed container whose poststop never ran) is replaced
    store.create(record, replace=True)
    if translate == "sync":
        _translate_and_store(store, cid, bundle)
    elif translate == "detached":
        _translate_detached(store, cid, bundle)
    # lazy: `hetmig ps` translates pending records on first use
    return EXIT_OK


def hook_poststop(store: StateDir, state: dict[str, Any]) -> int:
    from runtime_shim.state import check_id

    store.remove(check_id(state["id"]))
    return EXIT_OK


def run_oci(opts: _Options, stdin: Any) -> int:
    from runtime_shim.state import StateDir, resolve_state_dir

    state = read_state(stdin)
    stage = _stage_of(opts, state)
    store = StateDir(resolve_state_dir(opts.state_dir))
    if stage == "createRuntime":
        return hook_create_runtime(store, state, translate=opts.translate)
    if stage == "poststop":
        return hook_poststop(store, state)
    return EXIT_OK  # validated; hetmig does nothing at the other stages


def run_jail(opts: _Options) -> int:
    """The jail(8) exec.created / exec.poststop hook (untested on FreeBSD)."""
    from oci_hook.jail import jail_created, jail_poststop
    from runtime_shim.state import StateDir, resolve_state_dir

    args = opts.positional[1:]
    if len(args) != 2 or args[0] not in ("created", "poststop"):
        raise BadInputError("jail mode: expected `jail created NAME --bundle DIR` or `jail poststop NAME`")
    store = StateDir(resolve_state_dir(opts.state_dir))
    event, name = args
    if event == "created":
        if not opts.bundle:
            raise BadInputError("jail created: --bundle DIR is required (the OCI bundle the jail was made from)")
        return jail_created(store, name, opts.bundle)
    return jail_poststop(store, name)


def main(argv: Sequence[str] | None = None, stdin: Any = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = _parse_argv(args)
        if opts.positional[:1] == ["jail"]:
            return run_jail(opts)
        return run_oci(opts, stdin if stdin is not None else sys.stdin)
    except HetmigError as err:
        msg = " ".join(str(err).split())  # exactly one line
        sys.stderr.write(f"hetmig-hook: {msg}\n")
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
