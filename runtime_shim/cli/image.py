"""``hetmig image``: inspect and convert image files (crit-compatible output).

- ``hetmig image decode FILE [--pretty] [-o OUT]``: the image as JSON, the
  shape ``crit decode [--pretty]`` prints (``--pretty``: 4-space indent and
  field-specific formats).
- ``hetmig image encode JSON -o FILE``: the inverse (JSON from ``decode``,
  pretty or not, back to a binary image).
- ``hetmig image show DIR ps|fds|mems|rss``: what ``crit x DIR ...`` prints.

Refuses (exit 2, one line on stderr) malformed images, raw images such as
pages-N.img for ``decode``, and directories without pstree.img for ``show``.
"""

from __future__ import annotations

import argparse
import sys

HELP = "decode, encode and summarise image files (crit-compatible output)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="image_cmd", metavar="CMD", required=True)
    dec = sub.add_parser("decode", help="print an image file as JSON (crit decode shape)")
    dec.add_argument("file", metavar="FILE", help="image file, e.g. core-1.img")
    dec.add_argument("--pretty", action="store_true",
                     help="indent and render hex/flags/dev/ip fields like crit --pretty")
    dec.add_argument("-o", "--out", metavar="OUT", help="write JSON here instead of stdout")
    enc = sub.add_parser("encode", help="turn decode's JSON back into an image file")
    enc.add_argument("json", metavar="JSON", help="JSON file ('-' for stdin)")
    enc.add_argument("-o", "--out", metavar="FILE", required=True, help="image file to write")
    show = sub.add_parser("show", help="summarise an image directory like crit x")
    show.add_argument("dir", metavar="DIR", help="image directory")
    show.add_argument("what", choices=["ps", "fds", "mems", "rss"], help="which summary")


def _decode(args: argparse.Namespace) -> int:
    import json

    from capture.images import read_image, to_dict

    image = read_image(args.file)
    d = to_dict(image, pretty=args.pretty)
    text = json.dumps(d, indent=4 if args.pretty else None)
    if args.out:
        from capture.errors import ImageError

        try:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            raise ImageError(args.out, f"cannot write: {err.strerror or err}") from err
    else:
        sys.stdout.write(text + "\n")
    return 0


def _encode(args: argparse.Namespace) -> int:
    import json

    from capture.errors import ImageError
    from capture.images import from_dict, write_image

    try:
        if args.json == "-":
            d = json.load(sys.stdin)
        else:
            with open(args.json, encoding="utf-8") as f:
                d = json.load(f)
    except OSError as err:
        raise ImageError(args.json, f"cannot read: {err.strerror or err}") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise ImageError(args.json, f"not JSON: {err}") from None
    write_image(args.out, from_dict(d))
    return 0


def _show(args: argparse.Namespace) -> int:
    from capture.images.explore import explore

    lines = explore(args.dir, args.what)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.image_cmd == "decode":
        return _decode(args)
    if args.image_cmd == "encode":
        return _encode(args)
    return _show(args)
