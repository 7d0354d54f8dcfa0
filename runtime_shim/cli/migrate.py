"""``hetmig migrate``: live-migrate a container (or a process) to an agent.

    hetmig migrate CONTAINER --to HOST:PORT [--precopy-rounds N] [--max-downtime MS]
                   [--json] [--state-dir DIR] [--trust FP] [--runc-root DIR]
    hetmig migrate --pid PID --to HOST:PORT ...
    hetmig migrate --recover [ID] [--to HOST:PORT] [--state-dir DIR] [--json]

CONTAINER is a runc container id, with ``--podman`` a podman container (name or
id, OCI runtime runc), or with ``--agent-state DIR`` a container an agent
restored on this host (jail names on FreeBSD are not wired yet and are
refused). Progress: JSON lines on stdout with ``--json``, otherwise one
updating line on stderr when it is a terminal; the final report (total time,
frozen time, bytes and pages per round) goes to stdout. Exit 3 when the
destination cannot run the container (CPU flags, XSAVE features, OS/ABI,
resources): nothing is frozen then. Any failure before the destination
confirms the restore thaws the source (exit 1).

``--recover`` settles the migrations a dead ``hetmig migrate`` left in the
journal of the state dir (runtime_shim.migration.journal): it asks each
agent (the journaled address, or ``--to`` when the agent moved) for the
outcome and destroys the copy here or lets it go on; exit 1 while an agent
cannot be asked (that copy stays stopped). A migration of a container with
such an entry is refused until it is settled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from capture.errors import BadInputError

HELP = "live-migrate a container (or --pid process) to a hetmig agent"
DEFAULT_STATE_DIR = "/var/lib/hetmig/agent"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", nargs="?", help="runc container id")
    parser.add_argument("--pid", type=int, help="migrate this plain process instead of a container")
    parser.add_argument("--to", metavar="HOST:PORT", help="the destination agent (with --recover: where to ask instead of the journaled address)")
    parser.add_argument("--precopy-rounds", type=int, default=8, metavar="N", help="most pre-copy rounds (default 8)")
    parser.add_argument("--max-downtime", type=int, default=100, metavar="MS",
                        help="stop pre-copy once the rest fits in about MS/2 of transfer (default 100)")
    parser.add_argument("--json", action="store_true", help="JSON lines of progress and the report on stdout")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"our identity and pins (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--trust", action="append", default=[], metavar="FP", help="pin this agent fingerprint for this run")
    parser.add_argument("--runc-root", help="runc --root of the container")
    parser.add_argument("--podman", action="store_true",
                        help="CONTAINER is a podman container name or id (OCI runtime runc)")
    parser.add_argument("--agent-state", metavar="DIR",
                        help="CONTAINER was restored here by the agent with this state dir (not a runc container)")
    parser.add_argument("--verify-pages", action="store_true", help=argparse.SUPPRESS)  # tests: hash-check rebuilt pages
    parser.add_argument("--tracker", choices=["uffd-wp", "hash"], help="force a dirty-page tracker (default: best available)")
    parser.add_argument("--recover", nargs="?", const="", metavar="ID",
                        help="settle the migrations (or migration ID) a dead `hetmig migrate` left in --state-dir")
    parser.add_argument("--inject-fault", help=argparse.SUPPRESS)  # tests: KIND-PHASE, runtime_shim.migration.faults


def run(args: argparse.Namespace) -> int:
    from runtime_shim.cli.agent import parse_hostport
    from runtime_shim.migration import faults
    from runtime_shim.migration.engine import ManagedSource, PodmanSource, ProcessSource, RuncSource
    from runtime_shim.migration.source import MigrateOptions, Migration

    if args.recover is not None:
        if args.container is not None or args.pid is not None or args.inject_fault:
            raise BadInputError("migrate --recover takes only [ID], --to, --state-dir, --trust and --json")
        return _recover(args, parse_hostport(args.to, "--to") if args.to else None)
    if args.to is None:
        raise BadInputError("migrate: --to HOST:PORT is required")
    if args.inject_fault is not None:
        faults.parse(args.inject_fault, faults.Side.SOURCE)  # BadInputError (exit 2) before anything is touched
    if (args.container is None) == (args.pid is None):
        raise BadInputError("migrate: give exactly one of CONTAINER or --pid PID")
    if args.precopy_rounds < 1:
        raise BadInputError(f"--precopy-rounds={args.precopy_rounds} must be >= 1")
    if args.max_downtime < 0:
        raise BadInputError(f"--max-downtime={args.max_downtime} must be >= 0")
    host, port = parse_hostport(args.to, "--to")
    opts = MigrateOptions(host=host, port=port, state_dir=Path(args.state_dir), precopy_rounds=args.precopy_rounds,
                          max_downtime_ms=args.max_downtime, extra_pins=tuple(args.trust),
                          verify_pages=args.verify_pages, fault=args.inject_fault)
    source: Any
    if args.pid is not None:
        source = ProcessSource(args.pid, tracker=args.tracker)
    elif args.agent_state:
        source = ManagedSource(args.container, Path(args.agent_state), tracker=args.tracker)
    elif args.podman:
        source = PodmanSource(args.container, tracker=args.tracker, runc_root=args.runc_root or "/run/runc")
    else:
        source = RuncSource(args.container, root=args.runc_root, tracker=args.tracker)
    tty = sys.stderr.isatty() and not args.json

    def progress(ev: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(ev), flush=True)
        elif tty:
            if ev["event"] == "round":
                sys.stderr.write(f"\rround {ev['round']}: {ev['pages']} pages, {ev['bytes'] / 1e6:.1f} MB in "
                                 f"{ev['ms']:.0f} ms   ")
            elif ev["event"] == "dirty":
                sys.stderr.write(f"\rround {ev['round']}: dirty {ev['pending_pages']} pages "
                                 f"({ev['dirty_rate_bytes_s'] / 1e6:.1f} MB/s written)   ")
            else:
                sys.stderr.write(f"\r{ev['event']}{' ' * 40}\n")
            sys.stderr.flush()

    report = Migration(source, opts, progress).run()
    if not args.json:
        print(f"migrated {report.container_id} to {args.to}: total {report.total_ms:.1f} ms, "
              f"frozen {report.downtime_ms:.1f} ms, tracker {report.tracker}")
        for r in report.rounds:
            print(f"  round {r.round}: {r.pages} pages, {r.bytes} bytes, {r.ms:.1f} ms")
    return 0


def _recover(args: argparse.Namespace, agent: tuple[str, int] | None) -> int:
    import re

    from runtime_shim.migration.source import recover

    if args.recover and not re.fullmatch(r"[0-9a-f]{32}", args.recover):
        raise BadInputError(f"--recover={args.recover!r} is not a migration id (32 hex digits)")

    def emit(event: str, **data: Any) -> None:
        if args.json:
            print(json.dumps({"event": event, **data}), flush=True)

    done = recover(Path(args.state_dir), args.recover or None, tuple(args.trust), emit, agent)
    if args.recover and not done:
        raise BadInputError(f"--recover={args.recover}: no such unfinished migration in {args.state_dir}/outgoing")
    for r in done:
        if args.json:
            print(json.dumps({"event": "recovered", **r.to_json()}), flush=True)
        else:
            detail = f" ({r.detail})" if r.detail else ""
            print(f"{r.migration_id} {r.container_id}: {r.phase} -> {r.outcome}{detail}")
    return 1 if any(r.outcome.startswith("unknown") for r in done) else 0
