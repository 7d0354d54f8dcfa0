"""``hetmig restore``: recreate a checkpointed process tree and let it run on.

Without ``--detach`` the command stays the parent (child subreaper) of the
restored root process and exits with its status (128+N if it was killed by
signal N); SIGINT/SIGTERM sent to hetmig are forwarded to it. With
``--detach`` it prints the host pid of the restored root (or a JSON
document with ``--json``) and returns at once.

Refuses (exit 3, nothing started) image sets holding something this engine
cannot restore; hostile image sets exit 2; a failed restore exits 1 after
killing what was half-restored. The image directory is never modified.
Linux only (ptrace injection); not available on FreeBSD yet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

HELP = "restore a process tree from an image set (-D DIR) and let it run on"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-D", "--images-dir", required=True, metavar="DIR", help="image directory to restore from")
    parser.add_argument("--detach", action="store_true", help="print the restored root pid and return at once")
    parser.add_argument("--pidns", action="store_true",
                        help="restore into a new pid namespace (keeps the dumped pids even if taken here)")
    parser.add_argument("--root", metavar="ROOTFS", default=None,
                        help="restore with ROOTFS as the tree's root directory (paths are resolved inside it)")
    parser.add_argument("--vdso", choices=("auto", "map", "proxy"), default="auto",
                        help="map this kernel's vDSO at the dumped address (map), or keep the dumped vDSO and "
                             "redirect its entry points to this kernel's (proxy); auto picks map when both "
                             "export the same symbols at the same offsets")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (pids, timings, warnings)")


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def run(args: argparse.Namespace) -> int:
    from capture.errors import BadInputError
    from capture.platform import linux_inject
    from capture.restore import PR_SET_CHILD_SUBREAPER, restore

    if not os.path.isdir(args.images_dir):
        raise BadInputError(f"-D {args.images_dir}: not a directory")
    if not args.detach:
        linux_inject.libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    result = restore(args.images_dir, root=args.root, pidns=args.pidns, vdso=args.vdso)
    for w in result.warnings:
        print(f"hetmig restore: warning: {w}", file=sys.stderr)
    if args.json:
        doc = {
            "root_pid": result.root_pid,
            "pids": {str(k): v for k, v in result.pids.items()},
            "init_pid": result.init_pid,
            "seconds": round(result.seconds, 6),
            "stages": {k: round(v, 6) for k, v in result.stages.items()},
            "warnings": list(result.warnings),
        }
        print(json.dumps(doc), flush=True)
    else:
        print(result.root_pid, flush=True)
    if args.detach:
        return 0
    waited = result.init_pid or result.root_pid

    def forward(signo: int, _frame: object) -> None:
        try:
            os.kill(result.root_pid, signo)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == waited:
            return _exit_code(status)
