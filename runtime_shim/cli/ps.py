"""``hetmig ps``: list the migratable containers the OCI hook recorded.

Reads hetmig's state directory (``--state-dir``, else $HETMIG_STATE_DIR, else
/run/hetmig). For each container: id, init pid, whether that pid is still
alive, the runtime that ran the hook (and podman when podman drove it), and
its FreeBSD translation status: ``strict-ok`` (no loss), ``N losses``,
``failed`` or ``pending``. A translation still pending (the hook's background
worker has not finished, or the translator was not installed then) is
computed here and stored, unless ``--no-translate``.

It only reads records and /proc; it never changes a container.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HELP = "list migratable containers recorded by the OCI hook, with pid and translation status"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array (for scripts)")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="hetmig state directory (default: $HETMIG_STATE_DIR or /run/hetmig)",
    )
    parser.add_argument(
        "--no-translate",
        action="store_true",
        help="do not compute translations still pending; show them as pending",
    )


def _alive(pid: int) -> bool:
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def run(args: argparse.Namespace) -> int:
    from runtime_shim.state import StateDir, TranslationState, resolve_state_dir, translate_bundle

    store = StateDir(resolve_state_dir(args.state_dir))
    rows: list[dict[str, Any]] = []
    for record in store.records():
        if record.translation.state == TranslationState.PENDING and not args.no_translate:
            if os.path.isdir(record.bundle):
                translation = translate_bundle(record.bundle, record.id)
                if translation.state != TranslationState.PENDING:
                    store.write_translation(record.id, translation)
                record = record.with_translation(translation)
        t = record.translation
        rows.append(
            {
                "id": record.id,
                "pid": record.pid,
                "status": "jail" if record.runtime == "jail" else ("running" if _alive(record.pid) else "gone"),
                "runtime": record.runtime,
                "runtime_root": record.runtime_root,
                "manager": record.manager,
                "bundle": record.bundle,
                "created": record.created,
                "translation": {
                    "state": t.state,
                    "summary": t.summary(),
                    "loss_count": len(t.losses),
                    "losses": list(t.losses),
                    "strict_ok": t.strict_ok,
                    "error": t.error,
                },
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    header = ("ID", "PID", "STATUS", "RUNTIME", "TRANSLATION", "BUNDLE")
    table = [header] + [
        (
            r["id"][:24],
            str(r["pid"]),
            r["status"],
            r["runtime"] + ("/" + r["manager"] if r["manager"] else ""),
            r["translation"]["summary"],
            r["bundle"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")
    return 0
