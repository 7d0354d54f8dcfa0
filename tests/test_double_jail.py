"""The jail backend against the FreeBSD tool doubles (stateful jail/rctl registry).

A podman config recorded on this machine (tests/data/freebsd/oci), and the
configs real ``podman create`` makes now (the podman_configs fixture), are
translated by the real translator; :class:`runtime_shim.backends.freebsd.JailBackend`
creates the jail through :class:`tests.freebsd_double.tools.FreeBSDTools`,
and the parameters and RCTL rules are read back *from the doubles* (jls
--libxo json, rctl), the process is started with jexec (run for real on
this Linux host, without isolation: the double's documented behaviour),
usage counts it, and delete leaves the registry empty. Verified against a
FreeBSD interface double, not on a FreeBSD host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capture.errors import PlatformError, RefusedError
from runtime_shim.backends.freebsd import JailBackend, spec_from_plan
from tests.freebsd_double.tools import FreeBSDTools
from tests.test_translate_real import podman_configs  # noqa: F401  (the live `podman create` fixture)

OCI = Path(__file__).parent / "data" / "freebsd" / "oci"


def translated(config: str, name: str, root: Path) -> dict[str, Any]:
    from runtime_shim.translate import load_rules, oci_to_freebsd

    spec = json.loads((OCI / f"{config}.json").read_text())
    plan: dict[str, Any] = oci_to_freebsd(spec, name, load_rules(), bundle=f"/var/lib/hetmig/bundles/{config}").to_json()
    root.mkdir(parents=True, exist_ok=True)
    plan["jail"]["params"]["path"] = str(root)  # the recorded rootfs path does not exist here
    return plan


def test_translated_podman_config_becomes_a_jail_in_the_doubles(tmp_path: Path) -> None:
    plan = translated("podman-limits", "c1", tmp_path / "rootfs")
    spec = spec_from_plan(plan)
    tools = FreeBSDTools()
    backend = JailBackend(tools)
    try:
        res = backend.create(plan)
        assert res.name == "c1"
        # parameters, read back from jls --libxo json -n -j c1
        info = backend.state("c1")
        assert info is not None and info.name == "c1" and info.path == str(tmp_path / "rootfs") and info.jid == 1
        for key, value in plan["jail"]["params"].items():
            got = info.get(key)
            assert got == (value if isinstance(value, bool) else str(value)), key
        assert info.get("host.hostname") == "web" and info.get("persist") is True
        # RCTL rules, read back from rctl jail:c1
        assert [r.render() for r in backend.rules("c1")] == plan["rctl"] == [
            "jail:c1:memoryuse:deny=268435456", "jail:c1:swapuse:deny=268435456", "jail:c1:pcpu:deny=50",
            "jail:c1:maxproc:deny=64"]
        # mounts and devfs rules the double recorded, in plan order
        assert [(m[0], m[2]) for m in tools.mounts] == [
            (m["fstype"], str(tmp_path / "rootfs") + m["destination"]) for m in plan["mounts"]]
        rs = str(plan["devfs"]["ruleset"])
        assert tools.devfs[:2] == [("rule", "-s", rs, "delset"), ("rule", "-s", rs, "add", "hide")]
        assert ("-m", str(tmp_path / "rootfs" / "dev"), "ruleset", rs) in tools.devfs
        usage = backend.usage("c1")
        assert len(usage) == 25 and usage["maxproc"] == 0
        # the plan's process through jexec (env, cwd and ulimit wrapper run for real)
        out = backend.exec(spec, ["/bin/sh", "-c", 'echo "$GREETING $HOSTNAME $(pwd)"'])
        assert out.returncode == 0, out.stderr
        assert out.stdout == "hello web /tmp\n"
        proc = tools.spawn_in("c1", ["sleep", "30"])
        assert backend.usage("c1")["maxproc"] == 1
        backend.delete(plan)
        assert backend.state("c1") is None
        assert tools.rules == [] and tools.mounts == [] and tools.jails == {}
        assert proc.wait(timeout=5) is not None  # jail -r killed its processes
    finally:
        tools.close()


def test_failed_create_rolls_back_in_the_doubles(tmp_path: Path) -> None:
    plan = translated("podman-limits", "c2", tmp_path / "rootfs")
    tools = FreeBSDTools()
    tools.run(["jail", "-c", "name=c2", "path=/elsewhere", "persist"])  # name taken: jail -c fails
    with pytest.raises(PlatformError, match="jail -c c2"):
        JailBackend(tools).create(plan)
    assert tools.mounts == [] and tools.rules == []
    assert list(tools.jails) == ["c2"] and tools.jails["c2"].path == "/elsewhere", "the other jail is untouched"
    rs = str(plan["devfs"]["ruleset"])
    assert tools.calls[-1] == ("devfs", "rule", "-s", rs, "delset")
    assert [c[0] for c in tools.calls].count("umount") == len(plan["mounts"])


def test_racct_disabled_is_refused_before_anything_runs(tmp_path: Path) -> None:
    plan = translated("podman-limits", "c3", tmp_path / "rootfs")
    tools = FreeBSDTools(racct_enable="0")
    with pytest.raises(RefusedError, match="kern.racct.enable"):
        JailBackend(tools).create(plan)
    assert tools.calls == [("sysctl", "-n", "kern.racct.enable")] and tools.jails == {}


def test_live_podman_configs_become_jails_in_the_doubles(podman_configs: dict[str, Any], tmp_path: Path) -> None:
    """Configs made by real `podman create` now (not recorded): every case translates,
    is created in the doubles, reads back equal to its plan and is deleted without trace."""
    from runtime_shim.translate import load_rules, oci_to_freebsd

    tools = FreeBSDTools()
    backend = JailBackend(tools)
    cases = [c for c in podman_configs if not c.startswith("_")]
    assert len(cases) >= 5
    try:
        for case in cases:
            name = f"p_{case}"
            plan: dict[str, Any] = oci_to_freebsd(podman_configs[case], name, load_rules(), bundle="/unused").to_json()
            plan["jail"]["params"]["path"] = str(tmp_path / case)
            (tmp_path / case).mkdir()
            backend.create(plan)
            info = backend.state(name)
            assert info is not None, case
            for key, value in plan["jail"]["params"].items():
                assert info.get(key) == (value if isinstance(value, bool) else str(value)), (case, key)
            assert [r.render() for r in backend.rules(name)] == plan["rctl"], case
            backend.delete(plan)
            assert backend.state(name) is None and tools.rules == [] and tools.mounts == [], case
    finally:
        tools.close()
