"""The wheel ships the mapping files and schemas: build it, install it into a
fresh venv and run ``hetmig translate`` from a directory outside the checkout.

Slow (a build and a venv install from the local package mirrors), but part
of the suite. Independent of what ``proto/`` holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
_SKIP = {".git", ".venv", "build", "dist", ".hypothesis", ".mypy_cache", ".pytest_cache", "__pycache__", "tests", "bench"}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env


def test_wheel_installs_and_translates_outside_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=lambda d, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")],
    )
    out = tmp_path / "dist"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = out.glob("hetmig-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "mappings/default.yaml",
        "mappings/mapping.schema.json",
        "runtime_shim/translate/oci-config.schema.json",
        "runtime_shim/cli/translate.py",
    ):
        assert shipped in names, shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_clean_env())
    res = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert res.returncode == 0, res.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "wheel",
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "resources": {"memory": {"limit": 1048576}, "cpu": {"quota": 50000, "period": 100000}},
        },
    }
    (work / "config.json").write_text(json.dumps(config))
    hetmig = str(venv / "bin" / "hetmig")
    env = _clean_env()
    res = subprocess.run(
        [hetmig, "translate", "--to", "freebsd", "--name", "w", "config.json", "--format", "rctl"],
        cwd=work, capture_output=True, text=True, timeout=120, env=env,
    )
    assert (res.returncode, res.stdout) == (0, "jail:w:memoryuse:deny=1048576\njail:w:pcpu:deny=50\n"), res.stderr
    res = subprocess.run(
        [hetmig, "translate", "--to", "freebsd", "--name", "w", "config.json"],
        cwd=work, capture_output=True, text=True, timeout=120, env=env,
    )
    plan = json.loads(res.stdout)
    assert plan["jail"]["params"]["path"] == str(work / "rootfs")
    assert plan["jail"]["params"]["host.hostname"] == "wheel"
    (work / "jail.json").write_text(res.stdout)
    res = subprocess.run([hetmig, "translate", "--to", "oci", "jail.json"], cwd=work, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["linux"]["resources"]["memory"] == {"limit": 1048576}
    # the mapping files are read from the installed package, not from the checkout
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import mappings, runtime_shim; print(mappings.shipped_paths()[0]); print(runtime_shim.__file__)"],
        cwd=work, capture_output=True, text=True, timeout=120, env=env,
    )
    shipped, pkg = res.stdout.split()
    assert shipped.startswith(str(venv)) and pkg.startswith(str(venv)), res.stdout
    res = subprocess.run([hetmig, "translate", "--help"], cwd=work, capture_output=True, text=True, timeout=120, env=env)
    assert "untested on a real FreeBSD host" in " ".join(res.stdout.split())
    # --strict refuses a lossy config from the installed command too
    config["linux"]["resources"]["cpu"]["shares"] = 10
    (work / "lossy.json").write_text(json.dumps(config))
    res = subprocess.run(
        [hetmig, "translate", "--to", "freebsd", "--name", "w", "lossy.json", "--strict"],
        cwd=work, capture_output=True, text=True, timeout=120, env=env,
    )
    assert res.returncode == 3 and "linux.resources.cpu.shares=10" in res.stderr
