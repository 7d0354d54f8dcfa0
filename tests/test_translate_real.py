"""Real config.json files from real ``runc spec`` and real podman, translated.

podman: ``podman create --rootfs DIR`` with many flags, ``podman init``, then
the config.json podman wrote (``podman inspect --format {{.OCIConfigPath}}``)
is read; every container is removed again (``podman rm -f``). The configs
are generated once per session (fixture) to keep this fast; each test then
asserts the exact jail parameters, RCTL rules, mounts and losses.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace as dataclass_replace
import os
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from runtime_shim.cli import main as hetmig_main
from runtime_shim.translate import JailPlan, freebsd_to_oci, load_rules, oci_to_freebsd, render_jail_conf, render_rctl
from runtime_shim.translate.forward import devfs_ruleset_number
from tests.support.tools import require

pytestmark = pytest.mark.integration

RULES = load_rules()
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("HETMIG_UPDATE_GOLDEN") == "1"

DEFAULT_PODMAN_LOST_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
]
# losses every podman config here has (besides capabilities), keyed by path;
# mounts are named by destination
PODMAN_COMMON_LOSSES = {
    "linux.seccomp",
    "linux.maskedPaths",
    "linux.readonlyPaths",
    "linux.cgroupsPath",
    "annotations",
    "process.user.umask",
    "mount /dev/mqueue",
    "mount /sys/fs/cgroup",
}
BASE = {"linux": "new", "linux.osrelease": "5.15.0", "persist": True}
OWN_NS = {"vnet": "new", "host": "new", "sysvmsg": "new", "sysvsem": "new", "sysvshm": "new"}


def block_device() -> tuple[str, int, int]:
    """A real whole-disk block device of this machine (for --device-read-bps)."""
    for entry in sorted(Path("/sys/block").iterdir()):
        name = entry.name
        if name.startswith(("loop", "ram", "zram", "dm-", "sr")):
            continue
        dev = Path("/dev") / name
        try:
            st = dev.stat()
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and int((entry / "size").read_text()) > 0:
            return str(dev), os.major(st.st_rdev), os.minor(st.st_rdev)
    raise AssertionError("no block device with a /dev node found under /sys/block")


def podman_cases(tmp: Path, dev: str) -> dict[str, list[str]]:
    (tmp / "h1").mkdir()
    (tmp / "h2").mkdir()
    return {
        "limits": "--memory 64m --memory-swap 128m --cpus 1.5 --cpuset-cpus 0 --pids-limit 50 "
        "--network none --hostname hx --read-only".split(),
        "fraction": "--memory 32m --memory-swap 32m --cpus 0.333 --network none --hostname fr".split(),
        "hostnet": "--network host --hostname hn --cap-add NET_RAW --cap-add IPC_LOCK --cap-add SYS_TIME "
        "--cap-drop NET_BIND_SERVICE --cap-drop KILL".split(),
        "mounts": [
            *"--network none --hostname mt --tmpfs /scratch:size=16m,mode=1777".split(),
            *["-v", f"{tmp / 'h1'}:/data:ro", "-v", f"{tmp / 'h2'}:/rw"],
            *"--ulimit nofile=1024:4096 --ulimit nproc=100:200 --ulimit core=0:0".split(),
        ],
        "throttle": [
            *"--network none --hostname th".split(),
            *["--device-read-bps", f"{dev}:1mb", "--device-write-bps", f"{dev}:2mb"],
            *["--device-read-iops", f"{dev}:100", "--device-write-iops", f"{dev}:200"],
        ],
        "privileged": "--privileged --hostname pv".split(),  # default (bridge) network: a netns path
    }


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("podman"), *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="session")
def podman_configs(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require("podman")
    tmp = tmp_path_factory.mktemp("podman-configs")
    hooks = tmp / "no-hooks.d"  # keep host hooks.d files out of these configs
    hooks.mkdir()
    dev, _, _ = block_device()
    configs: dict[str, Any] = {}
    created: list[str] = []
    try:
        for case, flags in podman_cases(tmp, dev).items():
            name = f"hetmig-tx-{case}-{uuid.uuid4().hex[:8]}"
            res = _podman("--hooks-dir", str(hooks), "create", "--name", name, *flags,
                          "--rootfs", str(busybox_rootfs), "sh", "-c", "sleep 1")
            assert res.returncode == 0, f"podman create {case}: {res.stderr}"
            created.append(name)
            res = _podman("--hooks-dir", str(hooks), "init", name)
            assert res.returncode == 0, f"podman init {case}: {res.stderr}"
            res = _podman("inspect", "--format", "{{.OCIConfigPath}}", name)
            assert res.returncode == 0, res.stderr
            path = Path(res.stdout.strip())
            configs[case] = json.loads(path.read_text())
            (tmp / f"{case}.json").write_text(path.read_text())
        configs["_dir"] = tmp
        yield configs
    finally:
        for name in created:
            _podman("rm", "-f", "-t", "0", name)
        left = _podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert not set(created) & set(left)


@pytest.fixture(scope="session")
def runc_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    runc = require("runc")
    d = tmp_path_factory.mktemp("runc-spec")
    subprocess.run([runc, "spec"], cwd=d, check=True, capture_output=True, timeout=30)
    spec: dict[str, Any] = json.loads((d / "config.json").read_text())
    return spec


def summary(plan: JailPlan, spec: dict[str, Any]) -> dict[str, Any]:
    """The plan with the machine-specific parts (paths, ids) normalised."""
    params = dict(plan.params)
    if "devfs_ruleset" in params:
        assert plan.devfs is not None and params.pop("devfs_ruleset") == plan.devfs.number
        assert plan.devfs.number == devfs_ruleset_number(plan.name, RULES)
    params.pop("path")

    def src(m: Any) -> str:
        s = str(m.source)
        return "<podman>" if s.startswith(("/run/containers/", "/var/lib/containers/")) else s

    lost_caps = [loss.value for loss in plan.losses if loss.path.startswith("process.capabilities.")]
    other = set()
    for loss in plan.losses:
        if loss.path.startswith("process.capabilities."):
            continue
        if loss.path.startswith("mounts["):
            other.add(f"mount {spec['mounts'][int(loss.path[7:].split(']')[0])]['destination']}")
        else:
            other.add(loss.path)
    return {
        "params": params,
        "rctl": [str(r) for r in plan.rctl],
        "exec": {k: list(v) for k, v in plan.exec.items()},
        "process_user": (plan.process or {}).get("user"),
        "rlimits": [r.to_json() for r in plan.rlimits],
        "mounts": sorted((m.fstype, src(m), m.destination, m.options) for m in plan.mounts),
        "lost_caps": lost_caps,
        "losses": other,
    }


def podman_mounts(*extra: tuple[str, str, str, tuple[str, ...]]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    base = [
        ("devfs", "devfs", "/dev", ()),
        ("linprocfs", "linprocfs", "/proc", ("nosuid", "noexec")),
        ("linsysfs", "linsysfs", "/sys", ("nosuid", "noexec", "ro")),
        ("nullfs", "<podman>", "/dev/shm", ("nosuid", "noexec")),
    ]
    return sorted(base + list(extra))


def translate(configs: dict[str, Any], case: str) -> tuple[JailPlan, dict[str, Any]]:
    spec = configs[case]
    plan = oci_to_freebsd(spec, f"c-{case}", RULES, bundle="/unused", source=f"{case}.json")
    return plan, summary(plan, spec)


def test_podman_limits(podman_configs: dict[str, Any], busybox_rootfs: Path) -> None:
    plan, s = translate(podman_configs, "limits")
    assert plan.params["path"] == str(busybox_rootfs)
    assert plan.mounts[0].to_json() == {"fstype": "nullfs", "source": str(busybox_rootfs), "destination": "/", "options": ["ro"]}
    assert s == {
        "params": {**BASE, "host.hostname": "hx", **OWN_NS, "allow.reserved_ports": True},
        "rctl": [
            "jail:c-limits:memoryuse:deny=67108864",
            "jail:c-limits:swapuse:deny=67108864",
            "jail:c-limits:pcpu:deny=150",
            "jail:c-limits:maxproc:deny=50",
        ],
        "exec": {"created": ["cpuset -l 0 -j c-limits"]},
        "process_user": "0:0",
        "rlimits": [],
        "mounts": podman_mounts(
            ("nullfs", str(busybox_rootfs), "/", ("ro",)),
            ("nullfs", "<podman>", "/etc/hostname", ("ro", "nosuid", "noexec")),
            ("nullfs", "<podman>", "/etc/hosts", ("ro", "nosuid", "noexec")),
            ("tmpfs", "tmpfs", "/run", ("nosuid",)),
            ("tmpfs", "tmpfs", "/tmp", ("nosuid",)),
            ("tmpfs", "tmpfs", "/var/tmp", ("nosuid",)),
        ),
        "lost_caps": DEFAULT_PODMAN_LOST_CAPS,
        "losses": PODMAN_COMMON_LOSSES | {"linux.sysctl"},
    }
    assert render_rctl(plan) == (
        "jail:c-limits:memoryuse:deny=67108864\njail:c-limits:swapuse:deny=67108864\n"
        "jail:c-limits:pcpu:deny=150\njail:c-limits:maxproc:deny=50\n"
    )


def test_podman_swap_equal_and_fractional_cpu(podman_configs: dict[str, Any]) -> None:
    plan, s = translate(podman_configs, "fraction")
    assert s["rctl"] == [
        "jail:c-fraction:memoryuse:deny=33554432",
        "jail:c-fraction:swapuse:deny=0",
        "jail:c-fraction:pcpu:deny=34",  # ceil(100 * 33300 / 100000)
        "jail:c-fraction:maxproc:deny=2048",  # podman's default pids limit
    ]
    assert s["losses"] == PODMAN_COMMON_LOSSES | {"linux.sysctl", "linux.resources.cpu.quota"}
    assert s["params"] == {**BASE, "host.hostname": "fr", **OWN_NS, "allow.reserved_ports": True}
    assert s["exec"] == {}


def test_podman_host_network_and_capabilities(podman_configs: dict[str, Any]) -> None:
    plan, s = translate(podman_configs, "hostnet")
    assert s["params"] == {
        **BASE,
        "host.hostname": "hn",
        "ip4": "inherit",
        "ip6": "inherit",
        "host": "new",
        "sysvmsg": "new",
        "sysvsem": "new",
        "sysvshm": "new",
        "allow.mlock": True,
        "allow.raw_sockets": True,
        "allow.settime": True,
        "allow.reserved_ports": False,
    }
    assert "vnet" not in plan.params
    assert s["lost_caps"] == [c for c in DEFAULT_PODMAN_LOST_CAPS if c != "CAP_KILL"]
    assert s["rctl"] == ["jail:c-hostnet:maxproc:deny=2048"]
    assert s["losses"] == PODMAN_COMMON_LOSSES  # podman sets no ping_group_range sysctl with host net
    assert s["mounts"] == podman_mounts(
        ("nullfs", "<podman>", "/etc/hostname", ()),
        ("nullfs", "<podman>", "/etc/hosts", ()),
        ("nullfs", "<podman>", "/etc/resolv.conf", ()),
        ("nullfs", "<podman>", "/run/.containerenv", ()),
    )


def test_podman_tmpfs_bind_volumes_and_ulimits(podman_configs: dict[str, Any]) -> None:
    plan, s = translate(podman_configs, "mounts")
    tmp = podman_configs["_dir"]
    assert s["mounts"] == podman_mounts(
        ("nullfs", str(tmp / "h1"), "/data", ("ro",)),
        ("nullfs", str(tmp / "h2"), "/rw", ()),
        ("nullfs", "<podman>", "/etc/hostname", ()),
        ("nullfs", "<podman>", "/etc/hosts", ()),
        ("nullfs", "<podman>", "/run/.containerenv", ()),
        ("tmpfs", "tmpfs", "/scratch", ("size=16m", "mode=1777", "nosuid")),
    )
    # per-process limits, never RCTL rules
    assert s["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "linux": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_NPROC", "linux": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "linux": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    assert s["rctl"] == ["jail:c-mounts:maxproc:deny=2048"]
    assert s["losses"] == PODMAN_COMMON_LOSSES | {"linux.sysctl"}


def test_podman_device_throttles(podman_configs: dict[str, Any]) -> None:
    _, major, minor = block_device()
    plan, s = translate(podman_configs, "throttle")
    assert s["rctl"] == [
        "jail:c-throttle:maxproc:deny=2048",
        "jail:c-throttle:readbps:throttle=1048576",
        "jail:c-throttle:writebps:throttle=2097152",
        "jail:c-throttle:readiops:throttle=100",
        "jail:c-throttle:writeiops:throttle=200",
    ]
    p = "linux.resources.blockIO."
    kinds = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice")
    assert s["losses"] == PODMAN_COMMON_LOSSES | {"linux.sysctl"} | {f"{p}{k}[0]" for k in kinds}
    for loss in plan.losses:
        if loss.path.startswith(p):
            assert loss.value["major"] == major and loss.value["minor"] == minor
            assert f"the scope to device {major}:{minor} is lost" in loss.reason


def test_podman_privileged_bridge_network(podman_configs: dict[str, Any]) -> None:
    spec = podman_configs["privileged"]
    plan, s = translate(podman_configs, "privileged")
    # podman's bridge network: a namespace it made, joined by path -> still a vnet
    (net,) = [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]
    assert net["path"].startswith("/run/netns/")
    assert plan.params["vnet"] == "new"
    assert any(
        loss.path.startswith("linux.namespaces[") and loss.path.endswith(".path") and loss.value == net["path"]
        for loss in plan.losses
    )
    mapped = {c for c, r in RULES.capabilities.items() if r.allow}
    bounding = spec["process"]["capabilities"]["bounding"]
    assert len(bounding) >= 38
    assert s["lost_caps"] == [c for c in bounding if c not in mapped]
    for cap in mapped & set(bounding):
        for param in RULES.capabilities[cap].allow:
            assert plan.params[param] is True
    # every host device is either unhidden in the devfs ruleset or a loss
    assert plan.devfs is not None
    for i, dev in enumerate(spec["linux"]["devices"]):
        rule = RULES.devfs.devices.get(dev["path"])
        if rule is not None and rule.devfs is not None:
            assert f"path '{rule.devfs}' unhide" in plan.devfs.rules
        else:
            assert f"linux.devices[{i}]" in s["losses"]
    assert "linux.resources.devices[0]" in s["losses"]  # allow-all device cgroup


def test_podman_configs_strict_refuses_and_json_cli(podman_configs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = podman_configs["_dir"] / "limits.json"
    assert hetmig_main(["translate", "--to", "freebsd", "--name", "lim", str(path), "--strict"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "hetmig translate: lost: process.capabilities.bounding[0]=\"CAP_CHOWN\"" in err
    assert err.rstrip().endswith("field(s) would be lost")
    assert hetmig_main(["translate", "--to", "freebsd", "--name", "lim", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rctl"][0] == "jail:lim:memoryuse:deny=67108864"
    assert set(doc) >= {"jail", "rctl", "mounts", "losses"}


def test_podman_configs_translate_back_to_oci(podman_configs: dict[str, Any]) -> None:
    for case in ("limits", "fraction", "hostnet", "mounts", "throttle", "privileged"):
        spec = podman_configs[case]
        plan = oci_to_freebsd(spec, "back", RULES, bundle="/unused")
        back, _ = freebsd_to_oci(JailPlan.from_json(plan.to_json()), RULES)
        assert back["hostname"] == spec["hostname"]
        assert back["root"]["path"] == spec["root"]["path"]
        assert back["root"]["readonly"] == spec["root"].get("readonly", False)
        mem = spec["linux"]["resources"].get("memory", {})
        if "limit" in mem:
            assert back["linux"]["resources"]["memory"]["limit"] == mem["limit"]
        assert back["linux"]["resources"]["pids"] == spec["linux"]["resources"]["pids"]
        assert back["process"]["args"] == spec["process"]["args"]
        assert back["process"]["env"] == spec["process"]["env"]
        # translating the reverse output again gives the same jail (throttles
        # are per device in OCI, so they do not come back from a jail rule)
        again = oci_to_freebsd(back, "back", RULES, bundle="/unused")
        assert again.params == plan.params
        assert again.rctl == tuple(r for r in plan.rctl if r.action != "throttle")


# ------------------------------------------------------------------ runc spec


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text)
    assert text == path.read_text(), f"golden {name} differs (HETMIG_UPDATE_GOLDEN=1 regenerates)"


def test_runc_spec_default_golden(runc_spec: dict[str, Any]) -> None:
    plan = oci_to_freebsd(runc_spec, "runc", RULES, bundle="/srv/bundles/runc")
    assert plan.params["path"] == "/srv/bundles/runc/rootfs"
    assert plan.mounts[0].destination == "/" and plan.mounts[0].options == ("ro",)  # root.readonly
    assert plan.rctl == ()
    assert {loss.path for loss in plan.losses} == {
        "process.capabilities.bounding[0]",  # CAP_AUDIT_WRITE
        "process.capabilities.bounding[1]",  # CAP_KILL
        "process.terminal",
        "process.noNewPrivileges",
        "mounts[4]",  # mqueue
        "mounts[6]",  # cgroup
        "linux.maskedPaths",
        "linux.readonlyPaths",
    }
    _golden("runc-default.jail.conf", render_jail_conf(plan))
    _golden("runc-default.json", json.dumps(plan.to_json(), indent=2) + "\n")


def edited(spec: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(spec)
    s["hostname"] = "edited"
    s["process"]["terminal"] = False
    s["process"]["capabilities"]["bounding"] += ["CAP_NET_RAW", "CAP_IPC_LOCK"]
    s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}, {"type": "RLIMIT_MSGQUEUE", "hard": 1, "soft": 1}]
    s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "network"]
    s["linux"]["namespaces"].append({"type": "user"})
    s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    s["linux"]["resources"].update(
        {
            "memory": {"limit": 268435456, "swap": 536870912, "reservation": 134217728},
            "cpu": {"quota": 20000, "period": 100000, "cpus": "0", "shares": 512},
            "pids": {"limit": 32},
            "blockIO": {"weight": 100, "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 300}]},
        }
    )
    s["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]})
    return s


def test_runc_spec_edited_exact(runc_spec: dict[str, Any]) -> None:
    plan = oci_to_freebsd(edited(runc_spec), "edited", RULES, bundle="/srv/bundles/edited")
    assert [str(r) for r in plan.rctl] == [
        "jail:edited:memoryuse:deny=268435456",
        "jail:edited:swapuse:deny=268435456",
        "jail:edited:pcpu:deny=20",
        "jail:edited:maxproc:deny=32",
        "jail:edited:writeiops:throttle=300",
    ]
    assert plan.exec == {"created": ("cpuset -l 0 -j edited",)}
    assert plan.params["ip4"] == "inherit" and "vnet" not in plan.params
    assert plan.params["allow.raw_sockets"] is True and plan.params["allow.mlock"] is True
    assert {loss.path: loss.value for loss in plan.losses if not loss.path.startswith(("mounts", "linux.masked", "linux.readonly"))} == {
        "process.capabilities.bounding[0]": "CAP_AUDIT_WRITE",
        "process.capabilities.bounding[1]": "CAP_KILL",
        "process.noNewPrivileges": True,
        "process.rlimits[1]": {"type": "RLIMIT_MSGQUEUE", "hard": 1, "soft": 1},
        "linux.namespaces[4]": {"type": "user"},
        "linux.uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "linux.resources.memory.reservation": 134217728,
        "linux.resources.cpu.shares": 512,
        "linux.resources.blockIO.weight": 100,
        "linux.resources.blockIO.throttleWriteIOPSDevice[0]": {"major": 254, "minor": 0, "rate": 300},
    }
    _golden("runc-edited.jail.conf", render_jail_conf(plan))
    _golden("runc-edited.rctl", render_rctl(plan))


def test_reverse_output_runs_under_real_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    """A jail description translated to OCI is a config real runc accepts and runs."""
    runc = require("runc")
    spec = json.loads((Path(__file__).resolve().parent / "data" / "translate" / "full.json").read_text())
    spec["linux"]["resources"]["cpu"]["cpus"] = "0"
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "bind"]
    plan = oci_to_freebsd(spec, "runme", RULES, bundle=str(tmp_path))
    conf = render_jail_conf(plan).replace(str(tmp_path / "rootfs"), str(busybox_rootfs))
    from runtime_shim.translate import parse_jail_conf, parse_rctl

    parsed = parse_jail_conf(conf)
    parsed = dataclass_replace(parsed, rctl=parse_rctl(render_rctl(plan)))
    back, losses = freebsd_to_oci(parsed, RULES)
    assert losses == []
    # a jail.conf carries no process: give it one
    back["process"]["args"] = ["sh", "-c", "echo ok; grep -c ^Pid /proc/self/status; hostname; touch /x 2>/dev/null || echo ro"]
    back["process"]["env"] = ["PATH=/bin"]
    assert back["root"]["readonly"] is True  # from the ro nullfs root mount
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(back))
    cid = f"hetmig-tx-{uuid.uuid4().hex[:8]}"
    try:
        res = subprocess.run(
            [runc, "run", "--bundle", str(bundle), cid], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["ok", "1", "www", "ro"]
    finally:
        subprocess.run([runc, "delete", "--force", cid], capture_output=True, timeout=60)
