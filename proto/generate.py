"""Regenerate the committed ``proto/*_pb2.py`` modules (and .pyi stubs) from ``proto/*.proto``.

Run from anywhere: ``.venv/bin/python proto/generate.py`` (needs grpcio-tools,
part of the ``test`` extra). The repository root is the include root, so the
generated modules import each other package-qualified
(``from proto import opts_pb2``) and work as ``proto.core_pb2`` once
installed. ``--check`` regenerates into a temporary directory and exits 1 if
any committed module differs (the test suite runs this check).

Refuses to run without grpc_tools; never touches files outside ``proto/``.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

_STUB_HEADER = '# mypy: disable-error-code="type-arg,misc,valid-type"\n'

PROTO_DIR = Path(__file__).resolve().parent
REPO = PROTO_DIR.parent


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Compile every .proto in proto/ into ``out_dir/proto/*_pb2.py``."""
    try:
        import grpc_tools  # type: ignore[import-untyped]
        from grpc_tools import protoc
    except ImportError as err:  # pragma: no cover - depends on the venv
        raise SystemExit(f"grpcio-tools is needed to regenerate proto/: {err}") from err
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    (out_dir / "proto").mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{REPO}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(p.relative_to(REPO)) for p in proto_files()),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    # protoc's stubs use bare Mapping[...] generics that mypy --strict rejects.
    for stub in (out_dir / "proto").glob("*_pb2.pyi"):
        stub.write_text(_STUB_HEADER + stub.read_text())


def stale_modules() -> list[str]:
    """Names of committed ``*_pb2.py`` modules that differ from a fresh build."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = {p.name: p for p in (Path(tmp) / "proto").glob("*_pb2.py*")}
        committed = {p.name: p for p in PROTO_DIR.glob("*_pb2.py*")}
        bad = sorted(set(fresh) ^ set(committed))
        for name in sorted(set(fresh) & set(committed)):
            if not filecmp.cmp(fresh[name], committed[name], shallow=False):
                bad.append(name)
        return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale_modules()
        for name in bad:
            print(f"stale or missing: proto/{name}", file=sys.stderr)
        return 1 if bad else 0
    generate(REPO)
    print(f"generated {len(proto_files())} modules into {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
