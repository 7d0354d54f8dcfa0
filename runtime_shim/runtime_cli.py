"""``hetmig-runtime``: an OCI runtime CLI with runc's verbs and flags.

Usable wherever runc is (``podman --runtime /path/to/hetmig-runtime``). On
Linux the lifecycle verbs are delegated to runc (or crun: ``--delegate`` or
$HETMIG_DELEGATE); ``checkpoint``/``restore`` go through CRIU (``--engine
criu``, i.e. ``runc checkpoint``/``runc restore``) or hetmig's own capture
engine (``--engine native``) and write hetmig's unified image directory
(CRIU images + ``hetmig.json``).

Global flags (before the verb, as with runc): ``--root``, ``--log``,
``--log-format text|json``, ``--debug``, ``--systemd-cgroup``: passed to
the delegate, and hetmig's own error lines also go to ``--log`` in that
format. Every flag accepted is honoured or rejected with an error (exit 2);
runc flags hetmig does not implement are listed explicitly and refused with
a message saying so.

With ``--backend jail`` (or $HETMIG_BACKEND=jail, for FreeBSD) create, start,
state, kill, delete, list and features are implemented with
jail(8)/jexec/jls/rctl by :mod:`runtime_shim.backends.jail_runtime` (UNTESTED
on a real FreeBSD host; tested with a recording runner); ``--root`` is then
its state directory. Checkpoint/restore are refused there for now.

stdout carries data only (state/list/features JSON, list tables).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, Sequence

from capture.errors import EXIT_BAD_INPUT, BadInputError, HetmigError

VERSION = "0.1.0"

log = logging.getLogger("hetmig-runtime")

# runc flags we recognise but do not implement: refused with a clear message
_REFUSED_CHECKPOINT = {
    "--lazy-pages": "lazy migration (userfaultfd page server)",
    "--status-fd": "status fd for lazy pages",
    "--page-server": "CRIU page server",
    "--empty-ns": "empty namespaces",
    "--auto-dedup": "auto-dedup of parent images",
}
_REFUSED_RESTORE = {
    "--lazy-pages": "lazy migration (userfaultfd page server)",
    "--empty-ns": "empty namespaces",
    "--auto-dedup": "auto-dedup of parent images",
    "--lsm-profile": "changing the LSM profile at restore",
    "--lsm-mount-context": "changing the LSM mount context at restore",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage only on argument errors, exit 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _refuse(table: dict[str, str], verb: str) -> type[argparse.Action]:
    class Refuse(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            what = table.get(option_string or "", "this option")
            parser.error(f"{option_string} ({what}) is not supported by hetmig-runtime {verb}")

    return Refuse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hetmig-runtime",
        description=(
            "OCI runtime with runc-compatible verbs; delegates to runc/crun on Linux and "
            "checkpoints/restores through CRIU or hetmig's capture engine. FreeBSD (jail) "
            "support is untested on a real FreeBSD host."
        ),
    )
    p.add_argument("--root", help="runtime state root, passed to the delegate (runc default /run/runc)")
    p.add_argument("--log", help="log file (delegate and hetmig errors)")
    p.add_argument("--log-format", choices=("text", "json"), help="log format (default text)")
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.add_argument("--systemd-cgroup", action="store_true", help="use systemd cgroups (passed to the delegate)")
    p.add_argument("--delegate", help="runc, crun or a path (default $HETMIG_DELEGATE or runc)")
    p.add_argument("--backend", choices=("linux", "jail"), default=None,
                   help="linux (delegate to runc/crun) or jail (FreeBSD jail(8); UNTESTED on a real FreeBSD "
                        "host); default $HETMIG_BACKEND or linux")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    c = sub.add_parser("create", help="create a container")
    c.add_argument("-b", "--bundle", default=".", help="bundle directory (default .)")
    c.add_argument("--pid-file", help="write the init pid here")
    c.add_argument("--console-socket", help="AF_UNIX socket that receives the pty master")
    c.add_argument("--no-pivot", action="store_true", help="do not pivot_root (passed to the delegate)")
    c.add_argument("--no-new-keyring", action="store_true", help="no new session keyring (passed)")
    c.add_argument("--preserve-fds", type=int, default=0, help="pass N extra fds (passed)")
    c.add_argument("id")

    s = sub.add_parser("start", help="start a created container")
    s.add_argument("id")

    st = sub.add_parser("state", help="print the OCI state JSON")
    st.add_argument("id")

    k = sub.add_parser("kill", help="send a signal to the container's init (or all processes)")
    k.add_argument("-a", "--all", action="store_true", help="signal every process of the container")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")

    d = sub.add_parser("delete", help="delete a container")
    d.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    d.add_argument("id")

    ls = sub.add_parser("list", help="list containers")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true", help="ids only")

    sub.add_parser("features", help="print the runtime features JSON")

    cp = sub.add_parser("checkpoint", help="checkpoint a running container into an image directory")
    cp.add_argument("--image-path", default="checkpoint", help="image directory (default ./checkpoint)")
    cp.add_argument("--work-path", help="directory for logs and work files")
    cp.add_argument("--leave-running", action="store_true", help="keep the container running")
    cp.add_argument("--engine", choices=("criu", "native"), default=None,
                    help="criu (runc checkpoint) or native (hetmig capture); default native once available")
    cp.add_argument("--tcp-established", action="store_true", help="criu engine: established TCP")
    cp.add_argument("--ext-unix-sk", action="store_true", help="criu engine: external unix sockets")
    cp.add_argument("--shell-job", action="store_true", help="criu engine: shell job")
    cp.add_argument("--file-locks", action="store_true", help="criu engine: file locks")
    cp.add_argument("--pre-dump", action="store_true", help="criu engine: pre-dump only")
    cp.add_argument("--parent-path", help="criu engine: parent images (relative to image path)")
    cp.add_argument("--manage-cgroups-mode", choices=("soft", "full", "strict", "ignore"),
                    help="criu engine: cgroups mode")
    for flag in _REFUSED_CHECKPOINT:
        cp.add_argument(flag, nargs="?", action=_refuse(_REFUSED_CHECKPOINT, "checkpoint"),
                        help=argparse.SUPPRESS)
    cp.add_argument("id")

    rs = sub.add_parser("restore", help="restore a container from an image directory")
    rs.add_argument("--image-path", default="checkpoint", help="image directory (default ./checkpoint)")
    rs.add_argument("-b", "--bundle", default=".", help="bundle directory (default .)")
    rs.add_argument("-d", "--detach", action="store_true", help="detach from the restored container")
    rs.add_argument("--pid-file", help="write the restored init pid here")
    rs.add_argument("--work-path", help="directory for logs and work files")
    rs.add_argument("--console-socket", help="AF_UNIX socket that receives the pty master")
    rs.add_argument("--engine", choices=("criu", "native"), default=None,
                    help="criu (runc restore) or native; default: the engine hetmig.json names")
    rs.add_argument("--tcp-established", action="store_true", help="criu engine: established TCP")
    rs.add_argument("--ext-unix-sk", action="store_true", help="criu engine: external unix sockets")
    rs.add_argument("--shell-job", action="store_true", help="criu engine: shell job")
    rs.add_argument("--file-locks", action="store_true", help="criu engine: file locks")
    rs.add_argument("--no-subreaper", action="store_true", help="criu engine: no subreaper")
    rs.add_argument("--no-pivot", action="store_true", help="criu engine: no pivot_root")
    rs.add_argument("--manage-cgroups-mode", choices=("soft", "full", "strict", "ignore"),
                    help="criu engine: cgroups mode")
    for flag in _REFUSED_RESTORE:
        rs.add_argument(flag, nargs="?", action=_refuse(_REFUSED_RESTORE, "restore"), help=argparse.SUPPRESS)
    rs.add_argument("id")

    from runtime_shim.backends.linux import passthrough_verbs

    for verb in passthrough_verbs():
        # only for --help; main() hands these verbs' arguments over before parsing
        sub.add_parser(verb, help=f"passed to the delegate runtime unchanged (runc {verb} ...)", add_help=False)
    return p


_GLOBAL_WITH_VALUE = ("--root", "--log", "--log-format", "--delegate", "--backend")


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], str, list[str]] | None:
    """(global args, verb, verb args) when the verb is a passthrough verb, else None."""
    from runtime_shim.backends.linux import passthrough_verbs

    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        if a in passthrough_verbs():
            return list(argv[:i]), a, list(argv[i + 1 :])
        return None
    return None


def _log_line(args: argparse.Namespace, level: str, message: str) -> None:
    """Append one line to --log (runc's logrus-like json or text)."""
    if not args.log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.log_format == "json":
        line = json.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg="{message}"'
    try:
        with open(args.log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def _resolve_engine(name: str | None, image_dir: str | None = None) -> Any:
    from runtime_shim.backends.linux import HETMIG_JSON, Engine, default_engine

    if name:
        return Engine(name)
    if image_dir:
        try:
            with open(os.path.join(image_dir, HETMIG_JSON), encoding="utf-8") as fh:
                recorded = json.load(fh).get("engine")
            if recorded in ("criu", "native"):
                return Engine(recorded)
        except (OSError, ValueError, AttributeError):
            pass
    return default_engine()


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _common_verb(backend: Any, args: argparse.Namespace) -> int | None:
    """start/state/kill/delete/list/features, the same on every backend; None for other verbs."""
    verb = args.verb
    if verb == "start":
        return int(backend.start(args.id))
    if verb == "state":
        _print_json(backend.state(args.id))
        return 0
    if verb == "kill":
        return int(backend.kill(args.id, args.signal, all_processes=args.all))
    if verb == "delete":
        return int(backend.delete(args.id, force=args.force))
    if verb == "list":
        rows = backend.list()
        if args.quiet:
            for r in rows:
                sys.stdout.write(f"{r.get('id', '')}\n")
        elif args.format == "json":
            _print_json(rows)
        else:
            _print_table(rows)
        return 0
    if verb == "features":
        _print_json(backend.features())
        return 0
    return None


def dispatch_jail(args: argparse.Namespace) -> int:
    """The verbs on FreeBSD jails (untested on a real FreeBSD host)."""
    from runtime_shim.backends.jail_runtime import DEFAULT_JAIL_STATE, JailRuntime

    if args.systemd_cgroup:
        raise BadInputError("--systemd-cgroup has no meaning with --backend jail")
    if args.delegate:
        raise BadInputError("--delegate has no meaning with --backend jail")
    rt = JailRuntime(state_root=args.root or DEFAULT_JAIL_STATE)
    verb = args.verb
    if verb == "create":
        for flag, value in (("--console-socket", args.console_socket), ("--no-pivot", args.no_pivot),
                            ("--no-new-keyring", args.no_new_keyring), ("--preserve-fds", args.preserve_fds)):
            if value:
                raise BadInputError(f"{flag} is not supported with --backend jail")
        return rt.create(args.id, os.path.abspath(args.bundle), pid_file=args.pid_file)
    handled = _common_verb(rt, args)
    if handled is not None:
        return handled
    raise BadInputError(f"{verb} is not available with --backend jail (the capture engine's FreeBSD platform "
                        "is not wired to the jail backend yet)")


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")
    table = [header] + [
        (str(r.get("id", "")), str(r.get("pid", "")), str(r.get("status", "")),
         str(r.get("bundle", "")), str(r.get("created", "")), str(r.get("owner", "")))
        for r in rows
    ]
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    for t in table:
        sys.stdout.write("  ".join(t[i].ljust(widths[i]) for i in range(len(header))).rstrip() + "\n")


def dispatch(args: argparse.Namespace) -> int:
    backend_name = args.backend or os.environ.get("HETMIG_BACKEND") or "linux"
    if backend_name not in ("linux", "jail"):
        raise BadInputError(f"HETMIG_BACKEND={backend_name!r} (expected linux or jail)")
    if backend_name == "jail":
        return dispatch_jail(args)
    from runtime_shim.backends.linux import (
        CheckpointOptions,
        GlobalOptions,
        LinuxBackend,
        RestoreOptions,
        passthrough_verbs,
    )

    backend = LinuxBackend(
        delegate=args.delegate or os.environ.get("HETMIG_DELEGATE") or "runc",
        globals=GlobalOptions(
            root=args.root,
            log=args.log,
            log_format=args.log_format,
            debug=args.debug,
            systemd_cgroup=args.systemd_cgroup,
        ),
    )
    verb = args.verb
    if verb == "create":
        if args.preserve_fds < 0:
            raise BadInputError(f"--preserve-fds={args.preserve_fds} (expected >= 0)")
        return backend.create(
            args.id,
            os.path.abspath(args.bundle),
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            no_pivot=args.no_pivot,
            no_new_keyring=args.no_new_keyring,
            preserve_fds=args.preserve_fds,
        )
    handled = _common_verb(backend, args)
    if handled is not None:
        return handled
    if verb == "checkpoint":
        image_path = os.path.abspath(args.image_path)
        backend.checkpoint(
            args.id,
            CheckpointOptions(
                image_path=image_path,
                work_path=os.path.abspath(args.work_path) if args.work_path else None,
                leave_running=args.leave_running,
                engine=_resolve_engine(args.engine),
                tcp_established=args.tcp_established,
                ext_unix_sk=args.ext_unix_sk,
                shell_job=args.shell_job,
                file_locks=args.file_locks,
                pre_dump=args.pre_dump,
                parent_path=args.parent_path,
                manage_cgroups_mode=args.manage_cgroups_mode,
            ),
        )
        return 0
    if verb == "restore":
        image_path = os.path.abspath(args.image_path)
        return backend.restore(
            args.id,
            RestoreOptions(
                image_path=image_path,
                bundle=os.path.abspath(args.bundle),
                detach=args.detach,
                pid_file=args.pid_file,
                work_path=os.path.abspath(args.work_path) if args.work_path else None,
                console_socket=args.console_socket,
                engine=_resolve_engine(args.engine, image_path),
                tcp_established=args.tcp_established,
                ext_unix_sk=args.ext_unix_sk,
                shell_job=args.shell_job,
                file_locks=args.file_locks,
                manage_cgroups_mode=args.manage_cgroups_mode,
                no_subreaper=args.no_subreaper,
                no_pivot=args.no_pivot,
            ),
        )
    if verb in passthrough_verbs():
        return backend.passthrough(verb, *args.passthrough_args)
    raise BadInputError(f"unknown verb {verb!r}")  # pragma: no cover - argparse rejects it first


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = split_passthrough(argv)
    if split is not None:
        global_args, verb, rest = split
        args = parser.parse_args([*global_args, "features"])
        args.verb = verb
        args.passthrough_args = rest
    else:
        args = parser.parse_args(argv)
    if args.version:
        sys.stdout.write(f"hetmig-runtime version {VERSION}\n")
        return 0
    if not args.verb:
        parser.error("a verb is required")
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        return dispatch(args)
    except HetmigError as err:
        msg = " ".join(str(err).split())
        sys.stderr.write(f"hetmig-runtime {args.verb}: {msg}\n")
        _log_line(args, "error", f"{args.verb}: {msg}")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early (| head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
