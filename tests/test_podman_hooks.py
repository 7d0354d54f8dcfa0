"""The hook fired by real podman through the hooks.d files in packaging/.

The shipped oci-hooks(5) files are copied into a private ``--hooks-dir`` with
only the hook's path/args/env pointed at this checkout: their ``when`` and
``stages`` are what podman evaluates. A container annotated
``io.hetmig.migratable=true`` is recorded (pid = podman's pid) and removed
after ``podman rm``; a container without the annotation is not touched.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tools import require
from tests.test_hook_common import HOOK_LAUNCHER, PYTHON, REPO, hook_env, ps_json, translator_available, unique, wait_for

pytestmark = pytest.mark.integration


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [require("podman"), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


def make_hooks_dir(dest: Path, state_dir: Path) -> Path:
    dest.mkdir()
    for src in sorted((REPO / "packaging" / "hooks.d").glob("*.json")):
        data = json.loads(src.read_text())
        assert data["version"] == "1.0.0"
        stage = data["stages"][0]
        assert data["hook"]["args"][-1] == stage
        # the shipped arguments, after our interpreter, launcher and private state dir
        shipped = data["hook"]["args"][1:]
        data["hook"]["path"] = PYTHON
        data["hook"]["args"] = [PYTHON, "-S", str(HOOK_LAUNCHER), "--state-dir", str(state_dir), *shipped]
        data["hook"]["env"] = hook_env()
        (dest / src.name).write_text(json.dumps(data))
    return dest


@pytest.fixture
def names() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_podman_hooksd_fires_only_for_annotated(
    tmp_path: Path, busybox_rootfs: Path, names: list[str]
) -> None:
    state_dir = tmp_path / "state"
    hooks = make_hooks_dir(tmp_path / "hooks.d", state_dir)
    tagged, plain = unique("hetmig-hook-on"), unique("hetmig-hook-off")
    names += [tagged, plain]
    common = ["--hooks-dir", str(hooks), "run", "-d", "--network", "none"]
    podman(*common, "--name", tagged, "--annotation", "io.hetmig.migratable=true",
           "--rootfs", str(busybox_rootfs), "sleep", "60")
    podman(*common, "--name", plain, "--annotation", "io.hetmig.migratable=false",
           "--rootfs", str(busybox_rootfs), "sleep", "60")
    info = json.loads(podman("inspect", tagged, plain).stdout)
    by_name = {i["Name"]: i for i in info}
    tagged_id, tagged_pid = by_name[tagged]["Id"], by_name[tagged]["State"]["Pid"]
    assert tagged_pid > 0 and by_name[plain]["State"]["Pid"] > 0

    rows = ps_json(state_dir)
    assert [r["id"] for r in rows] == [tagged_id]  # the unannotated one is absent
    row = rows[0]
    assert row["pid"] == tagged_pid
    assert row["status"] == "running"
    assert row["manager"] == "podman"
    assert row["runtime"] == "runc"
    if translator_available():
        assert row["translation"]["state"] == "ok", row["translation"]
    else:
        assert row["translation"]["state"] == "pending", row["translation"]

    podman("rm", "-f", "-t", "0", tagged)
    podman("rm", "-f", "-t", "0", plain)
    wait_for(lambda: ps_json(state_dir) == [], timeout=10, what="poststop to remove the record")
