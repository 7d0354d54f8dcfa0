"""``hetmig agent``: the migration destination, and its key management.

    hetmig agent init  --state-dir DIR             create key + self-signed cert, print fingerprint
    hetmig agent trust FINGERPRINT [--cert PEM] --state-dir DIR   pin a peer
    hetmig agent fingerprint --state-dir DIR       print this host's fingerprint
    hetmig agent --listen HOST:PORT --state-dir DIR   serve migrations

The same state dir layout serves the source side (``hetmig migrate
--state-dir``): its identity is presented to the agent, its pins name the
agents it may migrate to. An agent needs each pinned source's certificate
(``--cert``) because TLS client verification in Python's ssl module works on
certificates, not fingerprints. FreeBSD agents are untested on real FreeBSD.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from capture.errors import BadInputError

HELP = "migration agent (destination): serve migrations, create keys, pin peers"
DEFAULT_STATE_DIR = "/var/lib/hetmig/agent"


def parse_hostport(text: str, flag: str = "--listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BadInputError(f"{flag}={text!r} is not HOST:PORT (port 0-65535)")
    return host.strip("[]"), int(port)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["init", "trust", "fingerprint", "serve"], default="serve",
                        help="init | trust FINGERPRINT | fingerprint | serve (default, with --listen)")
    parser.add_argument("fingerprint", nargs="?", help="peer fingerprint for `trust` (64 hex digits)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"keys, pins, migrations (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (port 0: any free port)")
    parser.add_argument("--cert", type=Path, help="`trust`: the peer's certificate (PEM), checked against FINGERPRINT")
    parser.add_argument("--comment", default="", help="`trust`: comment stored next to the pin")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--hostinfo-file", type=Path, help=argparse.SUPPRESS)  # tests: answer with a recorded host info
    parser.add_argument("--inject-fault", help=argparse.SUPPRESS)  # tests: KIND-PHASE, runtime_shim.migration.faults
    parser.add_argument("--no-restore-target", action="store_true",
                        help="keep pre-copied pages in the page store and restore everything at cut-over "
                             "(slower cut-over; the default fills a stopped restore target during pre-copy)")


def run(args: argparse.Namespace) -> int:
    from runtime_shim.migration import identity

    state = Path(args.state_dir)
    if args.action == "init":
        ident = identity.init_identity(state)
        _out(args, {"fingerprint": ident.fingerprint, "cert": str(ident.cert_path)}, ident.fingerprint)
        return 0
    if args.action == "fingerprint":
        ident = identity.load_identity(state)
        _out(args, {"fingerprint": ident.fingerprint, "cert": str(ident.cert_path)}, ident.fingerprint)
        return 0
    if args.action == "trust":
        if not args.fingerprint:
            raise BadInputError("agent trust: FINGERPRINT is required")
        fp = identity.trust(state, args.fingerprint, cert=args.cert, comment=args.comment)
        _out(args, {"trusted": fp, "cert_stored": args.cert is not None}, fp)
        return 0
    if args.fingerprint:
        raise BadInputError(f"unexpected argument {args.fingerprint!r} (only `trust` takes a FINGERPRINT)")
    if not args.listen:
        raise BadInputError("agent: --listen HOST:PORT is required to serve")
    return _serve(args, state)


def _out(args: argparse.Namespace, obj: dict[str, object], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def _serve(args: argparse.Namespace, state: Path) -> int:
    import logging
    import signal

    from runtime_shim.migration.agent import Agent, AgentConfig

    host, port = parse_hostport(args.listen)
    log = logging.getLogger("hetmig.agent")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hetmig agent: %(levelname)s %(message)s"))
        log.addHandler(handler)
    from runtime_shim.migration import faults

    if args.inject_fault is not None:
        faults.parse(args.inject_fault, faults.Side.AGENT)  # BadInputError (exit 2) before anything starts
    from runtime_shim.migration.engine import StagingRestore

    use_target = not args.no_restore_target
    agent = Agent(AgentConfig(state_dir=state, hostinfo_file=args.hostinfo_file, fault=args.inject_fault,
                              restore_factory=lambda: StagingRestore(use_target=use_target)))
    bound_host, bound_port = agent.bind(host, port)
    _out(args, {"listening": f"{bound_host}:{bound_port}", "fingerprint": agent.ident.fingerprint},
         f"listening on {bound_host}:{bound_port} fingerprint {agent.ident.fingerprint}")

    def stop(_sig: int, _frame: object) -> None:
        agent.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, lambda _s, _f: agent.reload_pins())
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        agent.shutdown()
    return 0
