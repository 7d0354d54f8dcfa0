"""``hetmig checkpoint``: dump a running process (tree) into a CRIU-compatible image set.

Seizes the process with ptrace (no SIGSTOP is visible to it), stops every
thread, writes the images to ``-D DIR`` and then kills the tree, unless
``--leave-running``. On any failure the tree is released untouched and
runs on; the images written so far are removed. Refuses a pid that does not
exist and a target directory that is not a directory.
"""

from __future__ import annotations

import argparse
import os
import sys

from capture.errors import BadInputError

HELP = "dump a running process (with --tree its subtree) into a CRIU-compatible image directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", "-t", type=int, required=True, help="process to dump (the tree root with --tree)")
    parser.add_argument(
        "-D", "--images-dir", "--image-path", dest="images_dir", required=True,
        help="directory for the image files (created if missing)",
    )
    parser.add_argument("--leave-running", action="store_true", help="let the process run on after the dump")
    parser.add_argument("--tree", action="store_true", help="dump the process and all its descendants")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from capture.dump import dump

    if args.pid <= 0:
        raise BadInputError(f"--pid {args.pid}: expected a positive process id")
    try:
        os.kill(args.pid, 0)
    except ProcessLookupError:
        raise BadInputError(f"--pid {args.pid}: no such process") from None
    except PermissionError:
        pass  # exists; ptrace will say whether we may dump it
    if os.path.exists(args.images_dir) and not os.path.isdir(args.images_dir):
        raise BadInputError(f"-D {args.images_dir}: exists and is not a directory")
    result = dump(args.pid, args.images_dir, leave_running=args.leave_running, tree=args.tree)
    if args.json:
        print(result.as_json())
    else:
        state = "left running" if not result.killed else "killed"
        print(
            f"dumped {len(result.pids)} process(es), {result.threads} thread(s), "
            f"{result.pages} pages into {args.images_dir} in {result.seconds:.3f}s ({state})",
            file=sys.stderr,
        )
    return 0
