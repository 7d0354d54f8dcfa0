"""The ``hetmig`` command: a thin dispatcher over one module per verb.

Each verb module exposes ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``. Verb modules import their heavy dependencies inside
``run`` so that ``hetmig --help`` and the hook stay fast. Errors derived from
:class:`capture.errors.HetmigError` become one line on stderr and the error's
exit code; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from capture.errors import HetmigError

# verb -> module under runtime_shim.cli; order is the order in --help.
VERBS: dict[str, str] = {
    "translate": "translate",
    "image": "image",
    "checkpoint": "checkpoint",
    "restore": "restore",
    "ps": "ps",
    "import": "import_",
    "export": "export",
    "agent": "agent",
    "migrate": "migrate",
    "demo": "demo",
}


def _available_verbs() -> dict[str, object]:
    modules: dict[str, object] = {}
    for verb, mod_name in VERBS.items():
        try:
            modules[verb] = importlib.import_module(f"runtime_shim.cli.{mod_name}")
        except ModuleNotFoundError as err:
            if err.name != f"runtime_shim.cli.{mod_name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetmig",
        description=(
            "Live migration of running containers between Linux (runc, podman) "
            "and FreeBSD (jail + RCTL). FreeBSD code paths are untested on a "
            "real FreeBSD host."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, module in _available_verbs().items():
        p = sub.add_parser(verb, help=getattr(module, "HELP"), description=getattr(module, "HELP"))
        getattr(module, "configure")(p)
        p.set_defaults(_run=getattr(module, "run"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        code: int = args._run(args)
        return code
    except HetmigError as err:
        print(f"hetmig {args.verb}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"hetmig {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
