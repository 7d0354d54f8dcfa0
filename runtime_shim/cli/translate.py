"""``hetmig translate``: OCI config.json <-> FreeBSD jail parameters + RCTL rules.

    hetmig translate --to freebsd --name NAME CONFIG.json [--bundle DIR]
                     [--mapping FILE]... [--strict] [--format json|jail.conf|rctl]
    hetmig translate --to oci JAIL.json | --jail-conf FILE [--rctl FILE]
                     [--mapping FILE]... [--strict]

Reads the files, runs the pure translator and prints the result on stdout;
losses go into the JSON (``losses``) or, for other formats, to stderr.
Exit codes: 0 translated (losses allowed), 3 refused under ``--strict``
because something would be lost (the losses are printed on stderr), 2 bad
input (file, JSON path and reason named). Every flag is honoured or refused;
flags of the other direction are refused, not ignored. FreeBSD output is
untested on a real FreeBSD host.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from capture.errors import EXIT_OK, EXIT_REFUSED, BadInputError, SpecError

HELP = (
    "translate an OCI config.json to FreeBSD jail parameters + RCTL rules, or back "
    "(FreeBSD output is untested on a real FreeBSD host)"
)

_EPILOG = """\
exit codes: 0 translated (losses allowed), 2 bad input, 3 refused under --strict
because something would be lost (losses printed on stderr).

FreeBSD output follows jail(8), jail.conf(5) and rctl(8) as documented; it is
untested on a real FreeBSD host."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.usage = (
        "hetmig translate --to freebsd --name NAME CONFIG.json [--bundle DIR] [--mapping FILE]... "
        "[--strict] [--format json|jail.conf|rctl]\n"
        "       hetmig translate --to oci JAIL.json | --jail-conf FILE --rctl FILE "
        "[--mapping FILE]... [--strict]"
    )
    parser.epilog = _EPILOG
    parser.add_argument("--to", required=True, choices=("freebsd", "oci"), help="target of the translation")
    parser.add_argument(
        "input",
        nargs="?",
        metavar="CONFIG.json|JAIL.json",
        help="OCI config.json (--to freebsd) or the JSON jail description (--to oci); '-' = stdin",
    )
    parser.add_argument("--name", help="jail name (--to freebsd: required; --to oci: pick a jail.conf block)")
    parser.add_argument("--bundle", help="OCI bundle dir root.path is relative to (default: the config's folder)")
    parser.add_argument(
        "--mapping",
        action="append",
        default=[],
        metavar="FILE",
        help="extra YAML mapping file layered over the shipped ones (repeatable, later wins)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 3 instead of translating if anything is lost")
    parser.add_argument(
        "--format",
        choices=("json", "jail.conf", "rctl"),
        default=None,
        help="--to freebsd output: json (default), a jail.conf(5) block, or rctl(8) rules one per line",
    )
    parser.add_argument("--jail-conf", metavar="FILE", help="--to oci: read the jail from a jail.conf(5) file")
    parser.add_argument("--rctl", metavar="FILE", help="--to oci: read RCTL rules (one per line) from FILE")


def _read(path: str) -> str:
    if path == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as err:  # a strict UTF-8 locale
            raise SpecError("<stdin>", "", f"not UTF-8 text: {err}") from err
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(path, "", f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise SpecError(path, "", f"not UTF-8 text: {err}") from err


def _print_losses(losses: Sequence[Any], *, refused: bool) -> None:
    for loss in losses:
        print(f"hetmig translate: lost: {loss}", file=sys.stderr)
    if refused:
        print(
            f"hetmig translate: refused (--strict): {len(losses)} field(s) would be lost",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    from runtime_shim.translate import load_rules

    if args.to == "freebsd":
        for flag, value in (("--jail-conf", args.jail_conf), ("--rctl", args.rctl)):
            if value is not None:
                raise BadInputError(f"{flag} is only valid with --to oci")
        if not args.input:
            raise BadInputError("--to freebsd needs CONFIG.json")
        if not args.name:
            raise BadInputError("--to freebsd needs --name NAME")
        rules = load_rules(args.mapping)
        return _to_freebsd(args, rules)
    for flag, value in (("--bundle", args.bundle), ("--format", args.format)):
        if value is not None:
            raise BadInputError(f"{flag} is only valid with --to freebsd")
    if args.input and args.jail_conf:
        raise BadInputError("give either JAIL.json or --jail-conf FILE, not both")
    if args.rctl and not args.jail_conf:
        raise BadInputError("--rctl FILE goes with --jail-conf FILE")
    if not args.input and not args.jail_conf:
        raise BadInputError("--to oci needs JAIL.json or --jail-conf FILE [--rctl FILE]")
    rules = load_rules(args.mapping)
    return _to_oci(args, rules)


def _to_freebsd(args: argparse.Namespace, rules: Any) -> int:
    from runtime_shim.translate import oci_to_freebsd, render_jail_conf, render_rctl
    from runtime_shim.translate.spec import load_json_text

    source = args.input
    spec = load_json_text(_read(source), source)
    if args.bundle is not None:
        bundle = Path(args.bundle).resolve()
    elif source == "-":
        bundle = Path.cwd()
    else:
        bundle = Path(source).resolve().parent
    plan = oci_to_freebsd(spec, args.name, rules, bundle=bundle, source=source)
    if args.strict and plan.losses:
        _print_losses(plan.losses, refused=True)
        return EXIT_REFUSED
    fmt = args.format or "json"
    if fmt == "json":
        sys.stdout.write(json.dumps(plan.to_json(), indent=2) + "\n")
    else:
        _print_losses(plan.losses, refused=False)
        sys.stdout.write(render_jail_conf(plan) if fmt == "jail.conf" else render_rctl(plan))
    return EXIT_OK


def _to_oci(args: argparse.Namespace, rules: Any) -> int:
    from dataclasses import replace

    from runtime_shim.translate import JailPlan, freebsd_to_oci, parse_jail_conf, parse_rctl
    from runtime_shim.translate.spec import load_json_text

    if args.input:
        plan = JailPlan.from_json(load_json_text(_read(args.input), args.input), source=args.input)
        if args.name and args.name != plan.name:
            raise SpecError(args.input, "jail.name", f"jail is {plan.name!r}, not --name {args.name!r}")
    else:
        plan = parse_jail_conf(_read(args.jail_conf), source=args.jail_conf, name=args.name)
        if args.rctl:
            plan = replace(plan, rctl=parse_rctl(_read(args.rctl), source=args.rctl, name=plan.name))
    spec, losses = freebsd_to_oci(plan, rules)
    if args.strict and losses:
        _print_losses(losses, refused=True)
        return EXIT_REFUSED
    _print_losses(losses, refused=False)
    sys.stdout.write(json.dumps(spec, indent=2) + "\n")
    return EXIT_OK
