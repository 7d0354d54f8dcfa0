"""``hetmig migrate CONTAINER --podman``: a real podman container (runtime runc)
migrated live from host A to the agent on host B (two network namespaces).

The counter container runs under podman with ``--rootfs`` (a busybox tree) and
no network; after the migration its counter goes on on B from where it
stopped, and podman records the container on A as exited (its record stays
for ``podman rm``). Under podman's default seccomp profile the filter is
dumped and installed again on B (``Seccomp: 2`` with one filter there).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from runtime_shim.migration import netns
from runtime_shim.migration.lab import COUNTER_SCRIPT, Lab, _env, hetmig_argv
from tests.support.tools import require

pytestmark = pytest.mark.integration


@pytest.fixture
def lab() -> Iterator[Lab]:
    require("podman")
    with Lab(prefix="hetmig-pm-") as lab_:
        yield lab_


def _field(status: str, key: str) -> str:
    return next(line.split()[1] for line in status.splitlines() if line.startswith(key + ":"))


def _podman(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def _counter_container(tmp_path: Path, *extra: str) -> tuple[str, Path]:
    rootfs = netns.make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "data").mkdir(exist_ok=True)
    name = f"hetmig-pm-{uuid.uuid4().hex[:8]}"
    _podman("run", "-d", "--name", name, "--network", "none", *extra, "--rootfs", str(rootfs),
            "sh", "-c", COUNTER_SCRIPT.format(size=1 << 20))
    counter = rootfs / "data" / "c"
    deadline = time.monotonic() + 20
    while not (counter.exists() and counter.read_text().strip() and int(counter.read_text()) >= 3):
        assert time.monotonic() < deadline, "the podman counter container does not count"
        time.sleep(0.05)
    return name, counter


@pytest.mark.parametrize("profile", ["default", "unconfined"])
def test_podman_container_migrates_live_to_b(lab: Lab, tmp_path: Path, profile: str) -> None:
    extra = () if profile == "default" else ("--security-opt", "seccomp=unconfined")
    name, counter = _counter_container(tmp_path, *extra)
    try:
        cid = _podman("container", "inspect", "--format", "{{.Id}}", name)
        lab.cid = cid  # the Lab reads the counter and cleans up by this id
        agent = lab.start_agent("b")
        r = lab.hosts.a.run(hetmig_argv("migrate", name, "--podman", "--to", agent.address, "--state-dir",
                                        str(lab.state["a"]), "--json"), env=_env(), timeout=180)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        before = int(counter.read_text())  # the last value A wrote
        events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        done = next(e for e in events if e["event"] == "done")
        assert done["outcome"] == "migrated" and done["container_id"] == cid
        assert done["freeze"] == "cgroup-freezer+ptrace" and done["target"]["used"] is True
        after = lab.read_counter("b")
        assert before <= after <= before + 30  # continued, not restarted
        time.sleep(0.5)
        assert lab.read_counter("b") > after  # and it runs on B
        assert lab.where() == ("agent", "b")
        status = Path(f"/proc/{lab.container_pid()}/status").read_text()
        want = ("2", "1") if profile == "default" else ("0", "0")
        assert (_field(status, "Seccomp"), _field(status, "Seccomp_filters")) == want, status
        deadline = time.monotonic() + 20
        while _podman("container", "inspect", "--format", "{{.State.Status}}", name) != "exited":
            assert time.monotonic() < deadline, "podman does not see the container on A end"
            time.sleep(0.2)
        assert int(counter.read_text()) == before  # nothing runs on A any more
    finally:
        _podman("rm", "-f", "-t", "0", name, check=False)


def test_unknown_podman_container_is_a_clear_error(tmp_path: Path) -> None:
    require("podman")
    r = subprocess.run(hetmig_argv("migrate", "no-such-container-hetmig", "--podman", "--to", "127.0.0.1:1",
                                   "--state-dir", str(tmp_path)), capture_output=True, text=True, env=_env(),
                       timeout=60)
    assert r.returncode == 1 and "podman container 'no-such-container-hetmig'" in r.stderr
