"""Helpers that let tests drive the real tools installed by scripts/provision.sh.

CRIU 4.x runs through a loader wrapper (/usr/local/bin/criu); crit runs inside
the trixie root (``HETMIG_CRIU_ROOT``), so image directories are copied under
that root before crit reads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

CRIU_ROOT = Path(os.environ.get("HETMIG_CRIU_ROOT", "/opt/hetmig/criu-root"))
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def require(tool: str) -> str:
    """Path of *tool*, or skip (.ci/run installs every tool tests ask for)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (run scripts/provision.sh)")
    return path


def criu(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    require("criu")
    return subprocess.run(["criu", *args], capture_output=True, text=True, check=check, timeout=timeout)


def crit(image_dir: Path | str, *args: str) -> str:
    """Run real ``crit`` on a copy of *image_dir* (or a file in it); return stdout.

    Arguments equal to *image_dir* or below it are rewritten to the copy.
    """
    require("crit")
    src = Path(image_dir)
    base = src if src.is_dir() else src.parent
    dest_rel = Path("tmp") / f"hetmig-crit-{uuid.uuid4().hex}"
    dest = CRIU_ROOT / dest_rel
    shutil.copytree(base, dest)
    try:
        mapped = []
        for a in args:
            p = Path(a)
            if p.is_absolute() and (p == base or base in p.parents):
                mapped.append(str(Path("/") / dest_rel / p.relative_to(base)))
            else:
                mapped.append(a)
        res = subprocess.run(
            ["chroot", str(CRIU_ROOT), "crit", *mapped], capture_output=True, text=True, timeout=120
        )
        if res.returncode != 0:
            raise AssertionError(f"crit {' '.join(mapped)} failed: {res.stderr}")
        return res.stdout
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal rootfs: Debian's static busybox plus its applet links."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "data"):
        (dest / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def tmp_under(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))
