"""``hetmig-hook jail created|poststop``: the exact commands, through a
recording runner (FreeBSD is not available here: untested on a real host).

Expected rctl lines follow reference/freebsd/rctl.md section 2/3:
``jail:NAME:RESOURCE:ACTION=AMOUNT`` with the jail *name* as subject id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capture.errors import PlatformError
from oci_hook.jail import jail_created, jail_poststop
from runtime_shim.backends.runner import RecordingRunner
from runtime_shim.state import StateDir
from tests.test_hook_common import make_bundle

MEM = 256 * 1024 * 1024


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Path:
    b = make_bundle(tmp_path / "bundle", busybox_rootfs, ["sleep", "60"])
    config = json.loads((b / "config.json").read_text())
    config["linux"]["resources"] = {"memory": {"limit": MEM}, "pids": {"limit": 64}}
    (b / "config.json").write_text(json.dumps(config))
    return b


def test_created_applies_rctl_and_registers(tmp_path: Path, bundle: Path) -> None:
    store = StateDir(tmp_path / "state")
    runner = RecordingRunner(strict=False)
    runner.reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
    assert jail_created(store, "web", str(bundle), runner) == 0
    lines = runner.command_lines()
    assert lines[0] == "sysctl -n kern.racct.enable"
    adds = lines[1:]
    assert all(line.startswith("rctl -a jail:web:") for line in adds)
    assert f"rctl -a jail:web:memoryuse:deny={MEM}" in adds
    assert "rctl -a jail:web:maxproc:deny=64" in adds
    rec = store.load("web")
    assert rec.runtime == "jail" and rec.translation.state == "ok"
    assert rec.annotations["io.hetmig.rctl-rules"] == str(len(adds))

    runner2 = RecordingRunner(strict=True).reply(["rctl", "-r", "jail:web"])
    assert jail_poststop(store, "web", runner2) == 0
    assert runner2.command_lines() == ["rctl -r jail:web"]
    assert store.ids() == []


def test_created_refuses_without_racct(tmp_path: Path, bundle: Path) -> None:
    store = StateDir(tmp_path / "state")
    runner = RecordingRunner(strict=True).reply(["sysctl", "-n", "kern.racct.enable"], stdout="0\n")
    with pytest.raises(PlatformError, match="kern.racct.enable is not 1"):
        jail_created(store, "web", str(bundle), runner)
    assert runner.command_lines() == ["sysctl -n kern.racct.enable"]  # no rctl -a at all
    assert store.ids() == []


def test_created_rolls_back_on_rctl_failure(tmp_path: Path, bundle: Path) -> None:
    store = StateDir(tmp_path / "state")
    probe = RecordingRunner(strict=False).reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
    jail_created(StateDir(tmp_path / "probe"), "web", str(bundle), probe)
    adds = [argv for argv in probe.argvs if argv[:2] == ("rctl", "-a")]
    assert len(adds) >= 2
    runner = RecordingRunner(strict=False).reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
    runner.reply(list(adds[1]), returncode=1, stderr="rctl: failed to add rule: Invalid argument")
    with pytest.raises(PlatformError, match="removed the 1 rules added before it"):
        jail_created(store, "web", str(bundle), runner)
    first_rule = adds[0][2]
    assert runner.command_lines()[-1] == f"rctl -r {first_rule}"
    assert store.ids() == []


def test_jail_mode_arguments(tmp_path: Path) -> None:
    import subprocess

    from tests.test_hook_common import HOOK_LAUNCHER, PYTHON, REPO

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-S", str(HOOK_LAUNCHER), "--state-dir", str(tmp_path / "s"), *args],
                              capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=30)

    res = run("jail", "created", "web")
    assert res.returncode == 2 and "jail created: --bundle DIR is required" in res.stderr
    res = run("jail", "started", "web")
    assert res.returncode == 2 and "expected `jail created NAME --bundle DIR` or `jail poststop NAME`" in res.stderr
    res = run("jail", "poststop", "../x")
    assert res.returncode == 2 and "container id '../x' is not valid" in res.stderr
    assert not (tmp_path / "s").exists()
