"""Real podman with ``--runtime`` pointing at hetmig-runtime: run, exec, stop, rm.

A small wrapper script (podman needs one executable path) records each argv
podman passes and execs ``python -m runtime_shim.runtime_cli`` from this
checkout, so the test also checks that every lifecycle call went through the
shim.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tools import require
from tests.test_hook_common import PYTHON, REPO, unique, wait_for

pytestmark = pytest.mark.integration


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([require("podman"), *args], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


@pytest.fixture
def shim(tmp_path: Path) -> tuple[Path, Path]:
    calls = tmp_path / "calls.log"
    script = tmp_path / "hetmig-runtime"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {calls}\n'
        f"PYTHONPATH={REPO} exec {PYTHON} -m runtime_shim.runtime_cli \"$@\"\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, calls


@pytest.fixture
def name() -> Iterator[str]:
    n = unique("hetmig-rt")
    yield n
    podman("rm", "-f", "-t", "0", n, check=False)


def test_podman_run_stop_rm_through_hetmig_runtime(
    busybox_rootfs: Path, shim: tuple[Path, Path], name: str
) -> None:
    script, calls = shim
    rt = ["--runtime", str(script)]
    cid = podman(*rt, "run", "-d", "--name", name, "--network", "none", "--rootfs", str(busybox_rootfs),
                 "sh", "-c", "echo ready > /tmp/ready; exec sleep 60").stdout.strip()
    info = json.loads(podman(*rt, "inspect", name).stdout)[0]
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["OCIRuntime"] == str(script)
    wait_for(lambda: podman(*rt, "exec", name, "cat", "/tmp/ready", check=False).stdout.strip() == "ready",
             what="podman exec through the shim")
    podman(*rt, "stop", "-t", "1", name)
    assert json.loads(podman(*rt, "inspect", name).stdout)[0]["State"]["Status"] == "exited"
    podman(*rt, "rm", name)
    assert podman("container", "exists", name, check=False).returncode == 1

    verbs = [line.split() for line in calls.read_text().splitlines()]
    seen = [next((a for a in argv if not a.startswith("-") and "/" not in a), "") for argv in verbs]
    for verb in ("create", "start", "exec", "kill", "delete"):
        assert verb in seen, (verb, seen)
    create = next(argv for argv in verbs if "create" in argv)
    assert create[-1] == cid and "--bundle" in create and "--pid-file" in create


def test_podman_checkpoint_restore_through_hetmig_runtime(
    busybox_rootfs: Path, shim: tuple[Path, Path], name: str
) -> None:
    """podman container checkpoint/restore call our checkpoint/restore verbs (criu engine)."""
    require("criu")
    script, calls = shim
    rt = ["--runtime", str(script)]
    podman(*rt, "run", "-d", "--name", name, "--network", "none", "--rootfs", str(busybox_rootfs),
           "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done")

    def counter() -> int:
        out = podman(*rt, "exec", name, "cat", "/tmp/counter", check=False).stdout.strip()
        return int(out) if out.isdigit() else 0

    wait_for(lambda: counter() >= 5, what="counter to start")
    before = counter()
    podman(*rt, "container", "checkpoint", name)
    assert json.loads(podman(*rt, "inspect", name).stdout)[0]["State"]["Status"] == "exited"
    podman(*rt, "container", "restore", name)
    after = wait_for(counter, what="restored counter")
    assert after >= before  # continued from the checkpoint, not restarted at 1
    lines = [line.split() for line in calls.read_text().splitlines()]
    ck = next(argv for argv in lines if argv[:1] == ["checkpoint"] and "--image-path" in argv)
    rs = next(argv for argv in lines if argv[:1] == ["restore"])
    assert "--work-path" in ck and {"--bundle", "--pid-file", "--detach", "--image-path"} <= set(rs)
