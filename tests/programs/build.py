"""Build the C test programs with gcc into a directory (used by test fixtures)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def build_programs(dest: Path) -> dict[str, Path]:
    """Compile counter.c, clock.c and fpu.c into *dest*; copy the scripts next to them."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed (run scripts/provision.sh)")
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in ("counter", "clock", "fpu"):
        target = dest / name
        subprocess.run([gcc, "-O1", "-o", str(target), str(HERE / f"{name}.c")], check=True)
        out[name] = target
    for name in ("threads.py", "pipeline.sh", "pending.py", "zombies.py"):
        shutil.copy2(HERE / name, dest / name)
        out[name] = dest / name
    return out


def build_memwriter(dest: Path) -> Path:
    """Compile memwriter.c statically into *dest* (it also runs inside a busybox rootfs)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (run scripts/provision.sh)")
    from runtime_shim.migration.lab import build_memwriter as build

    dest.mkdir(parents=True, exist_ok=True)
    return build(dest / "memwriter")
