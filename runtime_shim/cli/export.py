"""``hetmig export -D DIR -o ARCHIVE``: a unified image dir -> a podman checkpoint archive.

Writes the layout ``podman container restore --import`` reads: the CRIU
images under checkpoint/, podman's config.dump and spec.dump and the other
side files kept by ``hetmig import``, plus hetmig.json. Checksums in
hetmig.json are verified first. Refuses a directory without podman's
config.dump (podman cannot restore without it).
"""

from __future__ import annotations

import argparse
import sys

HELP = "export a hetmig image directory as a podman checkpoint archive (restore --import)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-D", "--directory", required=True, help="hetmig image directory")
    parser.add_argument("-o", "--output", required=True, help="archive to write")
    parser.add_argument(
        "--compress",
        choices=("none", "gzip"),
        default=None,
        help="compression (default: gzip for *.gz / *.tgz names, else none)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runtime_shim.podman_archive import Compression, export_archive

    out = Path(args.output)
    if args.compress:
        comp = Compression(args.compress)
    else:
        comp = Compression.GZIP if out.name.endswith((".gz", ".tgz")) else Compression.NONE
    names = export_archive(Path(args.directory), out, compression=comp)
    sys.stderr.write(f"hetmig export: wrote {out} ({len(names)} members, {comp.value})\n")
    return 0
