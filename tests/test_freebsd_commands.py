"""FreeBSD command-sequence test: real OCI configs -> translator -> jail backend.

Untested on a real FreeBSD host. The OCI configs in tests/data/freebsd/oci/
are real: ``runc spec`` and two ``podman create --rootfs`` configs made on
this machine (one plain, one with --memory/--memory-swap/--pids-limit/--cpus/
--ulimit/-v/--tmpfs/-e/-w). They are translated by runtime_shim.translate and
handed to the jail backend in the plan's JSON form; the backend runs against a
RecordingRunner. The exact command lines are compared with golden files
(``*.commands``; regenerate with HETMIG_REGEN_GOLDEN=1 and review the diff),
and every line is checked against the reference tables independently.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from capture.errors import PlatformError
from runtime_shim.backends.freebsd import JailBackend, jexec_argv, spec_from_plan
from runtime_shim.backends.runner import RecordingRunner
from tests.test_freebsd_backend import check_against_reference

OCI = Path(__file__).parent / "data" / "freebsd" / "oci"
CONFIGS = ("runc-spec", "podman-plain", "podman-limits")


def plan_for(config: str) -> dict[str, Any]:
    from runtime_shim.translate import load_rules, oci_to_freebsd

    spec = json.loads((OCI / f"{config}.json").read_text())
    name = config.replace("-", "_")
    plan: dict[str, Any] = oci_to_freebsd(spec, name, load_rules(), bundle=f"/var/lib/hetmig/bundles/{config}").to_json()
    return plan


def run_create(plan: dict[str, Any]) -> RecordingRunner:
    r = RecordingRunner()
    r.reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
    JailBackend(r).create(plan)
    return r


def golden(config: str, kind: str, lines: list[str]) -> list[str]:
    path = OCI / f"{config}.{kind}"
    if os.environ.get("HETMIG_REGEN_GOLDEN") == "1":
        path.write_text("\n".join(lines) + "\n")
    return path.read_text().splitlines()


@pytest.mark.parametrize("config", CONFIGS)
def test_create_commands_match_golden_and_reference(config: str) -> None:
    plan = plan_for(config)
    r = run_create(plan)
    lines = r.command_lines()
    assert lines == golden(config, "commands", lines)
    name = plan["jail"]["name"]
    check_against_reference([list(a) for a in r.argvs], name)
    rctl_lines = [a for a in r.argvs if a[:2] == ("rctl", "-a")]
    assert len(rctl_lines) == len(plan["rctl"])
    # the racct check happens exactly when there are rules, and first
    assert (r.argvs[0] == ("sysctl", "-n", "kern.racct.enable")) == bool(plan["rctl"])
    # every mount of the plan is mounted under the jail path, before jail -c
    jail_c = next(i for i, a in enumerate(r.argvs) if a[:2] == ("jail", "-c"))
    mounts = [a for a in r.argvs[:jail_c] if a[0] == "mount"]
    assert len(mounts) == len(plan["mounts"])
    root = plan["jail"]["params"]["path"]
    assert all(a[-1] == root or a[-1].startswith(root + "/") for a in mounts)
    # a devfs is never mounted without a ruleset applied right after it
    for i, a in enumerate(r.argvs):
        if a[:3] == ("mount", "-t", "devfs"):
            assert r.argvs[i + 1][:2] == ("devfs", "-m") and r.argvs[i + 1][3] == "ruleset"
            assert r.argvs[i + 2][3:] == ("rule", "applyset")


def test_podman_limits_rctl_carry_the_podman_flags() -> None:
    plan = plan_for("podman-limits")
    r = run_create(plan)
    added = [a[2] for a in r.argvs if a[:2] == ("rctl", "-a")]
    # --memory 256m, --pids-limit 64, --cpus 0.5
    assert "jail:podman_limits:memoryuse:deny=268435456" in added
    assert "jail:podman_limits:maxproc:deny=64" in added
    assert "jail:podman_limits:pcpu:deny=50" in added
    spec = spec_from_plan(plan)
    argv = jexec_argv(spec)
    assert argv[:4] == ["jexec", "podman_limits", "/usr/bin/env", "-i"]
    assert "GREETING=hello" in argv
    assert argv[argv.index("-c") + 1] == '{ ulimit -S -n 1024 2>/dev/null || :; } && ulimit -H -n 4096 && ulimit -S -n 1024 && cd -- /tmp && exec "$@"'
    assert argv[-3:] == ["/bin/sh", "-c", "while :; do echo tick; sleep 1; done"]
    assert any("RLIMIT_NPROC" in u for u in spec.unapplied)


def test_translated_plan_rollback_on_second_rule() -> None:
    plan = plan_for("podman-limits")
    rules = plan["rctl"]
    assert len(rules) >= 2
    r = RecordingRunner()
    r.reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
    r.reply(["rctl", "-a", rules[1]], returncode=1, stderr="rctl: failed to add rule: Operation not supported\n")
    with pytest.raises(PlatformError):
        JailBackend(r).create(plan)
    lines = r.command_lines()
    at = lines.index(shlex.join(["rctl", "-a", rules[1]]))
    root = plan["jail"]["params"]["path"]
    undo = lines[at + 1:]
    assert undo[:2] == [shlex.join(["rctl", "-r", rules[0]]), "jail -r podman_limits"]
    mounted = [shlex.split(l)[-1] for l in lines[:at] if l.startswith("mount ")]
    assert undo[2:-1] == [shlex.join(["umount", t]) for t in reversed(mounted)]
    assert all(t.startswith(root) for t in mounted)
    assert undo[-1] == f"devfs rule -s {plan['devfs']['ruleset']} delset"


@pytest.mark.parametrize("config", CONFIGS)
def test_delete_commands_match_golden(config: str) -> None:
    plan = plan_for(config)
    r = RecordingRunner()
    JailBackend(r).delete(plan)
    lines = r.command_lines()
    assert lines == golden(config, "delete", lines)
    assert lines[0] == f"jail -r {plan['jail']['name']}" or lines[0].startswith("/bin/sh -c")
    if plan["rctl"]:
        assert f"rctl -r jail:{plan['jail']['name']}" in lines


# ---------------------------------------------------------------------------
# The podman configs of the translator tests (tests/test_translate_real.py),
# generated by real podman in that module's session fixture, through the backend.

from tests.test_translate_real import podman_configs  # noqa: E402,F401  (pytest fixture)

PODMAN_CASES = ("limits", "fraction", "hostnet", "mounts", "throttle", "privileged")


@pytest.mark.integration
@pytest.mark.parametrize("case", PODMAN_CASES)
def test_translator_podman_configs_through_the_backend(podman_configs: dict[str, Any], case: str) -> None:
    from runtime_shim.translate import load_rules, oci_to_freebsd

    name = f"c-{case}"
    plan = oci_to_freebsd(podman_configs[case], name, load_rules(), bundle="/unused").to_json()
    r = run_create(plan)
    argvs = [list(a) for a in r.argvs]
    check_against_reference(argvs, name)
    # the rctl lines are exactly the plan's rules, in order, after jail -c
    jail_c = next(i for i, a in enumerate(argvs) if a[:2] == ["jail", "-c"])
    assert argvs[jail_c + 1:] == [["rctl", "-a", rule] for rule in plan["rctl"]]
    # jail -c carries every plan parameter (name/path first, persist always)
    assert argvs[jail_c][2:5] == [f"name={name}", f"path={plan['jail']['params']['path']}", "persist"]
    assert len(argvs[jail_c]) - 5 >= len(plan["jail"]["params"]) - 2  # minus path, persist
    root = plan["jail"]["params"]["path"]
    mounts = [a for a in argvs[:jail_c] if a[0] == "mount"]
    assert len(mounts) == len(plan["mounts"])
    assert all(a[-1] == root or a[-1].startswith(root + "/") for a in mounts)
    for i, a in enumerate(argvs):
        if a[:3] == ["mount", "-t", "devfs"]:
            assert argvs[i + 1][3:] == ["ruleset", str(plan["devfs"]["ruleset"])]
    if case == "throttle":
        actions = {(rule.split(":")[2], rule.split(":")[3].split("=")[0]) for rule in plan["rctl"]}
        assert {("readbps", "throttle"), ("writebps", "throttle"), ("readiops", "throttle"), ("writeiops", "throttle")} <= actions
    if case == "limits":
        # rollback with this real plan: second rule fails -> first rule, jail, mounts undone
        r2 = RecordingRunner()
        r2.reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")
        r2.reply(["rctl", "-a", plan["rctl"][1]], returncode=1, stderr="rctl: failed\n")
        with pytest.raises(PlatformError):
            JailBackend(r2).create(plan)
        tail = r2.argvs[r2.argvs.index(("rctl", "-a", plan["rctl"][1])) + 1:]
        assert tail[:2] == [("rctl", "-r", plan["rctl"][0]), ("jail", "-r", name)]
        assert [t[0] for t in tail[2:-1]] == ["umount"] * len(plan["mounts"])
