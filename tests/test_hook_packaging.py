"""The files in packaging/: oci-hooks(5) 1.0.0 JSON, jail.conf sample, agent units, launcher."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.test_hook_common import REPO

PKG = REPO / "packaging"


def test_hooks_d_files_are_oci_hooks_1_0_0() -> None:
    files = sorted((PKG / "hooks.d").glob("*.json"))
    stages = set()
    for f in files:
        data = json.loads(f.read_text())
        assert set(data) == {"version", "hook", "when", "stages"}, f
        assert data["version"] == "1.0.0"
        assert data["hook"]["path"] == "/usr/local/libexec/hetmig-hook"
        assert data["hook"]["args"][0] == "hetmig-hook" and data["hook"]["args"][-1] in data["stages"]
        assert data["when"] == {"annotations": {r"^io\.hetmig\.migratable$": "^true$"}}
        for pattern in data["when"]["annotations"]:
            assert re.fullmatch(pattern, "io.hetmig.migratable") and not re.fullmatch(pattern, "io.hetmigXmigratable")
        stages.update(data["stages"])
    assert stages == {"createRuntime", "poststop"}


def test_jail_conf_sample_calls_the_jail_mode() -> None:
    text = (PKG / "jail" / "jail.conf.sample").read_text()
    assert 'exec.created = "/usr/local/libexec/hetmig-hook jail created $name --bundle ' in text
    assert 'exec.poststop = "/usr/local/libexec/hetmig-hook jail poststop $name";' in text
    assert "UNTESTED on a real FreeBSD host" in text


def test_agent_units() -> None:
    unit = (PKG / "systemd" / "hetmig-agent.service").read_text()
    assert re.search(r"^ExecStart=/usr/local/bin/hetmig agent --listen \S+ --state-dir \S+$", unit, re.M)
    rc = PKG / "rc.d" / "hetmig_agent"
    assert subprocess.run(["sh", "-n", str(rc)]).returncode == 0
    assert "hetmig agent --listen ${hetmig_agent_listen} --state-dir ${hetmig_agent_state_dir}" in rc.read_text()


def test_launcher_runs_the_hook(tmp_path: Path) -> None:
    """The launcher, run as its shebang says (python -S), finds hetmig and answers --help."""
    import sys

    res = subprocess.run([sys.executable, "-S", str(PKG / "bin" / "hetmig-hook"), "--help"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("usage: hetmig-hook")
    assert (PKG / "bin" / "hetmig-hook").read_text().startswith("#!/usr/local/bin/python3 -S\n")
