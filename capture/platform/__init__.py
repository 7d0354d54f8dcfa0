"""Choose the platform backend for this host (the one ``sys.platform`` check).

``get_platform(**roots)`` returns an object satisfying
:class:`capture.platform.base.Platform`: :class:`capture.platform.linux.LinuxPlatform`
on Linux, the FreeBSD backend on FreeBSD (untested on a real FreeBSD host).
Keyword arguments are the backend's roots (``procfs="/proc"`` ...) so tests can
point a backend at recorded files. Any other OS is refused.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from capture.errors import PlatformError
from capture.platform.base import Platform


def get_platform(**roots: Any) -> Platform:
    """The platform backend of this host, built with *roots*."""
    if sys.platform.startswith("linux"):
        from capture.platform.linux import LinuxPlatform

        return LinuxPlatform(**roots)
    if sys.platform.startswith("freebsd"):
        mod = importlib.import_module("capture.platform.freebsd")
        backend: Platform = getattr(mod, "FreeBSDPlatform")(**roots)
        return backend
    raise PlatformError(f"unsupported host OS sys.platform={sys.platform!r} (expected linux* or freebsd*)")
