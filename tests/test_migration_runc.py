"""A real runc container through ``hetmig migrate``: what is not wired fails clearly,
and the container runs on untouched."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import netns
from tests.support.tools import make_busybox_rootfs, require
from tests.test_migration_netns import Agents, _events


@pytest.fixture
def container(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    require("runc")
    bundle = tmp_path / "bundle"
    make_busybox_rootfs(bundle / "rootfs")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /data/c; sleep 0.02; done"]
    cfg["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(cfg))
    root = str(tmp_path / "runc-root")
    cid = "hetmig-mig-" + uuid.uuid4().hex[:8]
    try:
        # the container inherits runc's stdio: no pipes, or runc's caller waits for their EOF forever
        subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", str(bundle), cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        yield cid, root, bundle / "rootfs" / "data" / "c"
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid], capture_output=True, timeout=60)


def _count(path: Path) -> int:
    for _ in range(100):
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} stays empty")


def test_container_migration_refused_clearly_and_container_runs_on(
        container: tuple[str, str, Path], tmp_path: Path) -> None:
    require("ip")
    cid, root, counter = container
    with netns.TestHosts() as hosts:
        agents = Agents(hosts, tmp_path)
        try:
            before = _count(counter)
            r = agents.migrate(cid, "--runc-root", root)
            assert r.returncode == 1, r.stdout + r.stderr
            assert "recreating a container's isolation" in r.stderr and "not wired yet" in r.stderr
            kinds = [e["event"] for e in _events(r.stdout)]
            assert "rolled-back" in kinds and "frozen" not in kinds and "round" not in kinds
            [mdir] = agents.migrations()
            status = json.loads((mdir / "status.json").read_text())
            assert status["phase"] == "aborted" and status["container_id"] == cid
        finally:
            agents.close()
    state = json.loads(subprocess.run(["runc", "--root", root, "state", cid], capture_output=True, text=True,
                                      check=True).stdout)
    assert state["status"] == "running"
    time.sleep(0.2)
    assert _count(counter) > before


def test_unknown_container_is_a_clear_error(tmp_path: Path) -> None:
    require("runc")
    r = subprocess.run([sys.executable, "-m", "runtime_shim.cli", "migrate", "no-such-ctr", "--to", "127.0.0.1:1",
                        "--runc-root", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "runc state failed" in r.stderr and "Traceback" not in r.stderr
