"""``hetmig import ARCHIVE -D DIR``: a podman checkpoint archive -> a unified image dir.

Reads the archive ``podman container checkpoint --export`` writes (plain,
gzip or zstd tar), extracts the CRIU images into DIR, keeps podman's side
files under DIR/podman/ and writes DIR/hetmig.json (spec, FreeBSD
translation with losses, checksums). Refuses path traversal, links, device
nodes and a non-empty DIR; see :mod:`runtime_shim.podman_archive`.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "import a podman checkpoint archive (checkpoint --export) into a hetmig image directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", help="archive written by podman container checkpoint --export")
    parser.add_argument("-D", "--directory", required=True, help="image directory to create (must be empty)")
    parser.add_argument("--json", action="store_true", help="print what was imported as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runtime_shim.podman_archive import import_archive

    result = import_archive(Path(args.archive), Path(args.directory))
    summary = {
        "directory": str(result.directory),
        "images": list(result.images),
        "podman_files": list(result.podman_files),
        "container_name": result.container_name,
        "compression": result.compression.value,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(
            f"imported {len(result.images)} image files of {result.container_name or 'container'} "
            f"into {result.directory}\n"
        )
    return 0
