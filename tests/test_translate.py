"""The translator's semantics, rule by rule, plus every mapping entry exercised.

Pure-function tests (no OS access): exact jail parameters, RCTL rules,
mounts, devfs rules and losses for hand-built OCI configs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from capture.errors import SpecError
from mappings.loader import ConvertKind, NsMode, load_rules
from runtime_shim.translate import (
    JailPlan,
    Loss,
    Mount,
    RctlRule,
    freebsd_to_oci,
    oci_to_freebsd,
)

RULES = load_rules()
NAME = "web"
BUNDLE = "/srv/bundle"
NEW_NAMESPACES = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A minimal valid OCI config: own pid/net/ipc/uts/mount namespaces, no caps."""
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": copy.deepcopy(NEW_NAMESPACES)},
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def with_path(spec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Copy of *spec* with *value* at the dotted path (objects created on the way)."""
    out = copy.deepcopy(spec)
    cur = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = copy.deepcopy(value)
    return out


def translate(spec: dict[str, Any], name: str = NAME) -> JailPlan:
    return oci_to_freebsd(spec, name, RULES, bundle=BUNDLE)


def rules_of(plan: JailPlan) -> list[str]:
    return [str(r) for r in plan.rctl]


def loss_at(plan: JailPlan, path: str) -> Loss:
    found = [loss for loss in plan.losses if loss.path == path]
    assert len(found) == 1, (path, plan.losses)
    return found[0]


# ------------------------------------------------------------------ basics


def test_minimal_config_exact_plan() -> None:
    plan = translate(base_spec())
    assert plan.to_json() == {
        "jail": {
            "name": "web",
            "params": {
                "linux": "new",
                "linux.osrelease": "5.15.0",
                "persist": True,
                "path": "/srv/bundle/rootfs",
                "vnet": "new",
                "host": "new",
                "sysvmsg": "new",
                "sysvsem": "new",
                "sysvshm": "new",
                "allow.reserved_ports": False,
            },
        },
        "rctl": [],
        "mounts": [],
        "losses": [],
        "exec": {"args": ["sh"], "cwd": "/", "user": "0:0"},
        "devfs": None,
        "rlimits": [],
    }


def test_root_path_relative_to_bundle_absolute_kept_readonly_never_dropped() -> None:
    plan = translate(base_spec(root={"path": "../other/rootfs", "readonly": True}))
    assert plan.params["path"] == "/srv/other/rootfs"
    assert plan.mounts[0] == Mount("nullfs", "/srv/other/rootfs", "/", ("ro",))
    plan = translate(base_spec(root={"path": "/abs/root", "readonly": False}))
    assert plan.params["path"] == "/abs/root"
    assert plan.mounts == () and plan.losses == ()


def test_hostname_domainname() -> None:
    plan = translate(base_spec(hostname="box", domainname="example.org"))
    assert plan.params["host.hostname"] == "box"
    assert plan.params["host.domainname"] == "example.org"
    assert plan.params["host"] == "new"


def test_hostname_with_shared_uts_is_a_loss() -> None:
    spec = base_spec(hostname="box")
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]
    plan = translate(spec)
    assert plan.params["host"] == "inherit"
    assert "host.hostname" not in plan.params
    assert loss_at(plan, "hostname").value == "box"


# ------------------------------------------------------------------ namespaces


def _namespaces(spec: dict[str, Any], ns_type: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    nss = [n for n in out["linux"]["namespaces"] if n["type"] != ns_type]
    if entry is not None:
        nss.append(entry)
    out["linux"]["namespaces"] = nss
    return out


def test_network_new_path_shared() -> None:
    plan = translate(base_spec())
    assert plan.params["vnet"] == "new" and "ip4" not in plan.params
    spec = _namespaces(base_spec(), "network", {"type": "network", "path": "/run/netns/netns-1"})
    plan = translate(spec)
    assert plan.params["vnet"] == "new"
    loss = loss_at(plan, "linux.namespaces[4].path")
    assert loss.value == "/run/netns/netns-1"
    assert "network namespace at a path" in loss.reason
    plan = translate(_namespaces(base_spec(), "network", None))
    assert "vnet" not in plan.params
    assert (plan.params["ip4"], plan.params["ip6"]) == ("inherit", "inherit")
    assert plan.losses == ()


def test_ipc_shared_inherits_sysv() -> None:
    plan = translate(_namespaces(base_spec(), "ipc", None))
    assert [plan.params[k] for k in ("sysvmsg", "sysvsem", "sysvshm")] == ["inherit"] * 3


@pytest.mark.parametrize(
    "ns_type,entry,path",
    [
        ("user", {"type": "user"}, "linux.namespaces[5]"),
        ("cgroup", {"type": "cgroup"}, "linux.namespaces[5]"),
        ("time", {"type": "time"}, "linux.namespaces[5]"),
    ],
)
def test_user_cgroup_time_namespaces_are_losses(ns_type: str, entry: dict[str, Any], path: str) -> None:
    spec = base_spec()
    spec["linux"]["namespaces"].append(entry)
    plan = translate(spec)
    loss = loss_at(plan, path)
    assert loss.value == entry
    assert loss.reason.startswith(f"{ns_type} namespace: ")


@pytest.mark.parametrize("ns_type", ["pid", "mount"])
def test_shared_pid_or_mount_namespace_is_a_loss(ns_type: str) -> None:
    plan = translate(_namespaces(base_spec(), ns_type, None))
    loss = loss_at(plan, "linux.namespaces")
    assert loss.value == {"type": ns_type, "shared": "host"}
    assert loss.reason.startswith(f"no {ns_type} namespace (shared with the host): ")


def test_duplicate_namespace_is_refused() -> None:
    spec = base_spec()
    spec["linux"]["namespaces"].append({"type": "pid"})
    with pytest.raises(SpecError) as info:
        translate(spec)
    assert str(info.value) == "config.json: linux.namespaces[5].type: namespace pid is listed twice"


# ------------------------------------------------------------------ resources


def test_memory_swap_cpu_pids_rules_exact() -> None:
    spec = base_spec()
    spec["linux"]["resources"] = {
        "memory": {"limit": 67108864, "swap": 134217728},
        "cpu": {"quota": 150000, "period": 100000},
        "pids": {"limit": 50},
    }
    plan = translate(spec)
    assert rules_of(plan) == [
        "jail:web:memoryuse:deny=67108864",
        "jail:web:swapuse:deny=67108864",
        "jail:web:pcpu:deny=150",
        "jail:web:maxproc:deny=50",
    ]
    assert plan.losses == ()


@pytest.mark.parametrize(
    "memory,expected",
    [
        ({"limit": 1024, "swap": 1024}, ["jail:web:memoryuse:deny=1024", "jail:web:swapuse:deny=0"]),
        ({"limit": 1024, "swap": -1}, ["jail:web:memoryuse:deny=1024"]),
        ({"limit": -1}, []),
        ({"limit": 0}, ["jail:web:memoryuse:deny=0"]),
    ],
)
def test_memory_edge_cases(memory: dict[str, int], expected: list[str]) -> None:
    plan = translate(with_path(base_spec(), "linux.resources.memory", memory))
    assert rules_of(plan) == expected
    assert plan.losses == ()


def test_swap_below_limit_is_refused_with_style_message() -> None:
    spec = with_path(base_spec(), "linux.resources.memory", {"limit": 1024, "swap": 512})
    with pytest.raises(SpecError) as info:
        translate(spec)
    assert str(info.value) == (
        "config.json: linux.resources.memory.swap: "
        "linux.resources.memory.swap=512 is below memory.limit=1024 (need >= limit or -1)"
    )


def test_swap_without_limit_is_a_loss() -> None:
    plan = translate(with_path(base_spec(), "linux.resources.memory", {"swap": 4096}))
    assert rules_of(plan) == []
    loss = loss_at(plan, "linux.resources.memory.swap")
    assert loss.value == 4096
    assert "needs linux.resources.memory.limit" in loss.reason


def test_negative_limit_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        translate(with_path(base_spec(), "linux.resources.pids.limit", -5))
    assert str(info.value) == (
        "config.json: linux.resources.pids.limit: linux.resources.pids.limit=-5 is negative (need >= 0; unlimited: -1 or 0)"
    )


@pytest.mark.parametrize(
    "cpu,rule,lossy",
    [
        ({"quota": 50000, "period": 100000}, "jail:web:pcpu:deny=50", False),
        ({"quota": 200000}, "jail:web:pcpu:deny=200", False),  # period defaults to 100000
        ({"quota": 25000, "period": 50000}, "jail:web:pcpu:deny=50", False),
        ({"quota": 33333, "period": 100000}, "jail:web:pcpu:deny=34", True),  # ceil
        ({"quota": 1, "period": 1000000}, "jail:web:pcpu:deny=1", True),
    ],
)
def test_pcpu_is_ceil_of_percent(cpu: dict[str, int], rule: str, lossy: bool) -> None:
    plan = translate(with_path(base_spec(), "linux.resources.cpu", cpu))
    assert rules_of(plan) == [rule]
    if lossy:
        assert "not a whole percent" in loss_at(plan, "linux.resources.cpu.quota").reason
    else:
        assert plan.losses == ()


@pytest.mark.parametrize("quota", [-1, 0])
def test_unlimited_quota_and_lone_period_make_no_rule(quota: int) -> None:
    plan = translate(with_path(base_spec(), "linux.resources.cpu", {"quota": quota, "period": 100000}))
    assert plan.rctl == () and plan.losses == ()
    plan = translate(with_path(base_spec(), "linux.resources.cpu", {"period": 100000}))
    assert plan.rctl == () and plan.losses == ()


@pytest.mark.parametrize("limit", [-1, 0])
def test_pids_unlimited(limit: int) -> None:
    assert translate(with_path(base_spec(), "linux.resources.pids.limit", limit)).rctl == ()


def test_throttles_become_jail_wide_rules_with_device_scope_lost() -> None:
    spec = with_path(
        base_spec(),
        "linux.resources.blockIO",
        {
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}, {"major": 8, "minor": 16, "rate": 1024}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2048}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}],  # 0 = no limit
        },
    )
    plan = translate(spec)
    assert rules_of(plan) == [
        "jail:web:readbps:throttle=1024",
        "jail:web:writebps:throttle=2048",
        "jail:web:readiops:throttle=100",
    ]
    p = "linux.resources.blockIO."
    assert "lowest rate 1024 (device 8:16)" in loss_at(plan, p + "throttleReadBpsDevice[0]").reason
    assert "scope to device 8:16 is lost" in loss_at(plan, p + "throttleReadBpsDevice[1]").reason
    assert "scope to device 8:0 is lost" in loss_at(plan, p + "throttleWriteBpsDevice[0]").reason
    assert len(plan.losses) == 4


def test_cpuset_is_a_created_command_and_empty_cpus_nothing() -> None:
    plan = translate(with_path(base_spec(), "linux.resources.cpu.cpus", "0-2,5"))
    assert plan.exec == {"created": ("cpuset -l 0-2,5 -j web",)}
    assert plan.losses == ()
    assert translate(with_path(base_spec(), "linux.resources.cpu.cpus", "")).exec == {}


def test_rlimits_stay_per_process_never_rctl() -> None:
    spec = with_path(
        base_spec(),
        "process.rlimits",
        [
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
            {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
            {"type": "RLIMIT_AS", "soft": 1 << 30, "hard": 1 << 31},
            {"type": "RLIMIT_RTPRIO", "soft": 0, "hard": 0},
        ],
    )
    plan = translate(spec)
    assert plan.rctl == ()
    assert plan.to_json()["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "linux": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_NPROC", "linux": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_AS", "linux": "RLIMIT_AS", "soft": 1 << 30, "hard": 1 << 31},
    ]
    assert loss_at(plan, "process.rlimits[3]").reason == "FreeBSD has no real-time priority limit"


# ------------------------------------------------------------------ capabilities


def test_capabilities_true_equivalents_only_and_one_loss_each() -> None:
    caps = ["CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"]
    spec = with_path(
        base_spec(),
        "process.capabilities",
        {"bounding": caps, "effective": caps, "permitted": caps, "ambient": ["CAP_CHOWN"]},
    )
    plan = translate(spec)
    assert plan.params["allow.raw_sockets"] is True
    assert plan.params["allow.mlock"] is True
    assert plan.params["allow.reserved_ports"] is True
    assert [(loss.path, loss.value) for loss in plan.losses] == [
        ("process.capabilities.bounding[2]", "CAP_CHOWN"),
        ("process.capabilities.bounding[3]", "CAP_SYS_ADMIN"),
    ]


def test_absent_bind_service_turns_reserved_ports_off_and_unknown_cap_is_lost() -> None:
    plan = translate(with_path(base_spec(), "process.capabilities", {"bounding": ["CAP_MADE_UP"]}))
    assert plan.params["allow.reserved_ports"] is False
    assert loss_at(plan, "process.capabilities.bounding[0]").reason == (
        "CAP_MADE_UP has no mapping entry (no known allow.* equivalent)"
    )


# ------------------------------------------------------------------ mounts and devices


def test_mounts_bind_tmpfs_proc_sysfs_dev() -> None:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/rel", "source": "sub/dir", "options": ["bind", "rw"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=16m", "mode=1777", "rw", "nosuid", "nodev", "tmpcopyup"]},
    ]
    plan = translate(base_spec(mounts=mounts))
    assert [m.to_json() for m in plan.mounts] == [
        {"fstype": "linprocfs", "source": "linprocfs", "destination": "/proc", "options": ["nosuid", "noexec"]},
        {"fstype": "devfs", "source": "devfs", "destination": "/dev", "options": []},
        {"fstype": "linsysfs", "source": "linsysfs", "destination": "/sys", "options": ["nosuid", "noexec", "ro"]},
        {"fstype": "nullfs", "source": "/srv/data", "destination": "/data", "options": ["ro"]},
        {"fstype": "nullfs", "source": "/srv/bundle/sub/dir", "destination": "/rel", "options": []},
        {"fstype": "tmpfs", "source": "tmpfs", "destination": "/scratch", "options": ["size=16m", "mode=1777", "nosuid"]},
    ]
    assert plan.losses == ()
    assert plan.params["linux"] == "new" and plan.params["linux.osrelease"] == "5.15.0"
    assert plan.devfs is not None
    assert plan.params["devfs_ruleset"] == plan.devfs.number
    assert 5000 <= plan.devfs.number < 55000
    assert plan.devfs.rules[0] == "hide"
    assert "path 'null' unhide" in plan.devfs.rules and "path 'pts/*' unhide" in plan.devfs.rules


def test_devpts_alone_gives_devfs_and_odd_mounts_are_losses() -> None:
    mounts = [
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/x", "type": "overlay", "source": "overlay", "options": ["lowerdir=/a"]},
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=50%", "huge=always"]},
    ]
    plan = translate(base_spec(mounts=mounts))
    assert [m.fstype for m in plan.mounts] == ["devfs", "tmpfs"]
    assert loss_at(plan, "mounts[1]").reason == "POSIX message queues are mqueuefs on FreeBSD, which is not jail-aware"
    assert loss_at(plan, "mounts[2]").reason == "mount type overlay has no FreeBSD mapping"
    assert loss_at(plan, "mounts[3].options[0]").reason == "tmpfs size must be bytes with an optional k/m/g/t/p suffix"
    assert loss_at(plan, "mounts[3].options[1]").reason == "mount option huge=always has no tmpfs equivalent"


def test_devices_build_the_devfs_ruleset() -> None:
    spec = base_spec(mounts=[{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}])
    spec["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o20666, "uid": 0, "gid": 0},
        {"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
    ]
    spec["linux"]["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
        ]
    }
    plan = translate(spec)
    assert plan.devfs is not None
    assert plan.devfs.rules[-4:] == (
        "path 'fuse' unhide",
        "path 'fuse' mode 666",
        "path 'fuse' user 0",
        "path 'fuse' group 0",
    )
    assert loss_at(plan, "linux.devices[1]").reason.startswith("KVM has no FreeBSD equivalent")
    assert loss_at(plan, "linux.devices[2]").reason == "device /dev/sda has no devfs mapping entry"
    assert loss_at(plan, "linux.resources.devices[2]").reason.startswith("device cgroup rule has no devfs equivalent")
    assert len(plan.losses) == 3


def test_device_without_dev_mount_is_lost_and_allow_all_is_lost() -> None:
    spec = base_spec()
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    spec["linux"]["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
    plan = translate(spec)
    assert "mounts nothing on /dev" in loss_at(plan, "linux.devices[0]").reason
    assert loss_at(plan, "linux.resources.devices[0]").value == {"allow": True, "access": "rwm"}


# ------------------------------------------------------------------ nothing silent


def test_unknown_fields_anywhere_are_losses_not_dropped() -> None:
    spec = base_spec()
    spec["vendorThing"] = {"a": 1}
    spec["linux"]["resources"] = {"memory": {"limit": 4096, "futureKnob": 7}, "newController": {"x": 1}}
    spec["process"]["user"]["futureField"] = "x"
    spec["mounts"] = []
    plan = translate(spec)
    assert {loss.path: loss.value for loss in plan.losses} == {
        "vendorThing": {"a": 1},
        "linux.resources.memory.futureKnob": 7,
        "linux.resources.newController": {"x": 1},
        "process.user.futureField": "x",
    }
    for loss in plan.losses:
        assert loss.reason == "no mapping entry for this field; it is not carried into the jail"


@pytest.mark.parametrize(
    "mutate,path,reason",
    [
        (lambda s: s.pop("root"), "$", "'root' is a required property"),
        (lambda s: s.update(ociVersion="0.9"), "ociVersion", "\"0.9\" does not match '^1\\\\.[0-9]+\\\\.[0-9]+'"),
        (
            lambda s: s["linux"].update(resources={"memory": {"limit": "64m"}}),
            "linux.resources.memory.limit",
            "\"64m\" is not of type 'integer'",
        ),
        (
            lambda s: s["linux"]["namespaces"].append({"type": "net"}),
            "linux.namespaces[5].type",
            "'net' is not one of ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']",
        ),
        (lambda s: s.update(mounts=[{"type": "bind"}]), "mounts[0]", "'destination' is a required property"),
        (lambda s: s.update(hostname=7), "hostname", "7 is not of type 'string'"),
        (
            lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 5}]),
            "process.rlimits[0].soft",
            "-1 is less than the minimum of 0",
        ),
        (
            lambda s: s["linux"].update(resources={"cpu": {"cpus": "0-a"}}),
            "linux.resources.cpu.cpus",
            "\"0-a\" does not match '^$|^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$'",
        ),
    ],
)
def test_invalid_input_names_json_path(mutate: Any, path: str, reason: str) -> None:
    spec = base_spec()
    mutate(spec)
    with pytest.raises(SpecError) as info:
        oci_to_freebsd(spec, NAME, RULES, bundle=BUNDLE, source="cfg.json")
    assert (info.value.source, info.value.path or "$", info.value.reason) == ("cfg.json", path, reason)


@pytest.mark.parametrize(
    "name,reason",
    [
        ("a.b", "jail name 'a.b' must not contain '.' (it separates parent.child)"),
        ("123", "jail name '123' cannot be numeric (unless it is the jid)"),
        ("", "jail name '' must be 1..255 characters"),
        ("a b", "jail name 'a b' may contain only letters, digits, '_' and '-'"),
    ],
)
def test_bad_jail_name(name: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        translate(base_spec(), name)
    assert info.value.reason == reason


# ------------------------------------------------------------------ every mapping entry

LOSS_SAMPLES: dict[str, Any] = {
    "linux.resources.cpu.shares": 512,
    "linux.resources.cpu.mems": "0",
    "linux.resources.cpu.realtimeRuntime": 1000,
    "linux.resources.cpu.realtimePeriod": 1000000,
    "linux.resources.cpu.idle": 1,
    "linux.resources.cpu.burst": 1000,
    "linux.resources.blockIO.weight": 500,
    "linux.resources.blockIO.leafWeight": 300,
    "linux.resources.blockIO.weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
    "linux.resources.memory.reservation": 1048576,
    "linux.resources.memory.kernel": 1048576,
    "linux.resources.memory.kernelTCP": 1048576,
    "linux.resources.memory.swappiness": 10,
    "linux.resources.memory.disableOOMKiller": True,
    "linux.resources.memory.useHierarchy": True,
    "linux.resources.memory.checkBeforeUpdate": True,
    "linux.resources.hugepageLimits": [{"pageSize": "2MB", "limit": 1048576}],
    "linux.resources.network": {"classID": 1},
    "linux.resources.rdma": {"mlx5_1": {"hcaHandles": 3}},
    "linux.resources.unified": {"memory.high": "1000000"},
    "linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
    "linux.maskedPaths": ["/proc/kcore"],
    "linux.readonlyPaths": ["/proc/sys"],
    "linux.sysctl": {"net.ipv4.ip_forward": "1"},
    "linux.cgroupsPath": "/libpod_parent/x",
    "linux.uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
    "linux.gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
    "linux.rootfsPropagation": "rprivate",
    "linux.mountLabel": "system_u:object_r:container_file_t:s0",
    "linux.intelRdt": {"closID": "x"},
    "linux.personality": {"domain": "LINUX"},
    "linux.timeOffsets": {"monotonic": {"secs": 1}},
    "process.apparmorProfile": "default",
    "process.selinuxLabel": "label",
    "process.oomScoreAdj": 100,
    "process.noNewPrivileges": True,
    "process.consoleSize": {"height": 24, "width": 80},
    "process.ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
    "process.scheduler": {"policy": "SCHED_OTHER"},
    "hooks": {"prestart": [{"path": "/bin/true"}]},
    "annotations": {"org.example": "x"},
    "process.terminal": True,
    "process.user.umask": 18,
    "process.user.additionalGids": [5],
    "process.user.username": "me",
    "process.commandLine": "cmd.exe",
}


def test_loss_samples_cover_every_loss_entry() -> None:
    wanted = {r.oci for r in RULES.resources if r.loss} | set(RULES.losses)
    assert wanted == set(LOSS_SAMPLES)


@pytest.mark.parametrize("ns_type,mode", [(t, m) for t, tbl in RULES.namespaces.items() for m in tbl.rules])
def test_every_namespace_entry(ns_type: str, mode: NsMode) -> None:
    entry: dict[str, Any] | None = None
    if mode is NsMode.NEW:
        entry = {"type": ns_type}
    elif mode is NsMode.PATH:
        entry = {"type": ns_type, "path": f"/proc/1/ns/{ns_type}"}
    plan = translate(_namespaces(base_spec(), ns_type, entry))
    rule = RULES.namespaces[ns_type].rules[mode]
    for key, value in rule.params.items():
        assert plan.params[key] == value
    mine = [loss for loss in plan.losses if ns_type in loss.reason]
    if rule.loss is None:
        assert mine == []
    else:
        assert len(mine) == 1 and mine[0].reason.endswith(rule.loss)


@pytest.mark.parametrize("entry", RULES.resources, ids=[r.oci for r in RULES.resources])
def test_every_resource_entry(entry: Any) -> None:
    spec = base_spec()
    if entry.loss is not None:
        plan = translate(with_path(spec, entry.oci, LOSS_SAMPLES[entry.oci]))
        assert plan.losses == (Loss(entry.oci, LOSS_SAMPLES[entry.oci], entry.loss),)
        return
    if entry.exec_command is not None:
        plan = translate(with_path(spec, entry.oci, "1-3"))
        cmd = entry.exec_command.replace("{value}", "1-3").replace("{name}", NAME)
        assert plan.exec[entry.exec_phase] == (cmd,)
        return
    if entry.kind is ConvertKind.SCALE:
        plan = translate(with_path(spec, entry.oci, 12345))
        amount = 12345 * entry.factor
    elif entry.kind is ConvertKind.DIFFERENCE:
        plan = translate(with_path(with_path(spec, entry.minus, 1000), entry.oci, 3000))
        amount = 2000
    elif entry.kind is ConvertKind.PERCENT:
        plan = translate(with_path(with_path(spec, entry.per, 50000), entry.oci, 25000))
        amount = 50
    else:
        plan = translate(with_path(spec, entry.oci, [{"major": 8, "minor": 0, "rate": 4096}]))
        amount = 4096
    assert RctlRule(NAME, entry.rctl_resource, entry.rctl_action, amount) in plan.rctl


@pytest.mark.parametrize("cap", sorted(RULES.capabilities))
def test_every_capability_entry(cap: str) -> None:
    plan = translate(with_path(base_spec(), "process.capabilities", {"bounding": [cap]}))
    rule = RULES.capabilities[cap]
    if rule.loss is not None:
        assert plan.losses == (Loss("process.capabilities.bounding[0]", cap, rule.loss),)
    else:
        assert plan.losses == ()
        assert all(plan.params[p] is True for p in rule.allow)


@pytest.mark.parametrize("mtype", sorted(RULES.mounts))
def test_every_mount_entry(mtype: str) -> None:
    rule = RULES.mounts[mtype]
    opts = list(rule.keep) + sorted(rule.implied)
    opts = [o if o != "size" else "size=1m" for o in opts]
    opts = [o if o != "mode" else "mode=700" for o in opts]
    m = {"destination": "/mnt/x", "type": mtype, "source": "/src", "options": opts}
    plan = translate(base_spec(mounts=[m]))
    if rule.loss is not None:
        assert plan.losses == (Loss("mounts[0]", m, rule.loss),)
    elif rule.devfs:
        assert plan.losses == ()
        assert plan.mounts == (Mount("devfs", "devfs", "/dev", ()),)
    else:
        assert plan.losses == ()
        (out,) = plan.mounts
        assert out.fstype == rule.fstype and out.destination == "/mnt/x"
        assert out.options == tuple(o for o in opts if o.split("=")[0] in rule.keep)


@pytest.mark.parametrize("path", sorted(RULES.devfs.devices))
def test_every_device_entry(path: str) -> None:
    rule = RULES.devfs.devices[path]
    spec = base_spec(mounts=[{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}])
    spec["linux"]["devices"] = [{"path": path, "type": "c", "major": 1, "minor": 1}]
    plan = translate(spec)
    if rule.loss is not None:
        assert plan.losses == (Loss("linux.devices[0]", spec["linux"]["devices"][0], rule.loss),)
    else:
        assert plan.losses == ()
        assert plan.devfs is not None and f"path '{rule.devfs}' unhide" in plan.devfs.rules


@pytest.mark.parametrize("devfs_option", sorted(RULES.devfs.implied_options))
def test_every_dev_mount_option_entry(devfs_option: str) -> None:
    plan = translate(base_spec(mounts=[{"destination": "/dev", "type": "tmpfs", "options": [devfs_option]}]))
    assert plan.losses == ()
    assert plan.mounts == (Mount("devfs", "devfs", "/dev", ()),)


@pytest.mark.parametrize("rltype", sorted(RULES.rlimits))
def test_every_rlimit_entry(rltype: str) -> None:
    rl = {"type": rltype, "soft": 1, "hard": 2}
    plan = translate(with_path(base_spec(), "process.rlimits", [rl]))
    rule = RULES.rlimits[rltype]
    if rule.loss is not None:
        assert plan.losses == (Loss("process.rlimits[0]", rl, rule.loss),) and plan.rlimits == ()
    else:
        assert plan.losses == ()
        assert [r.to_json() for r in plan.rlimits] == [{"type": rule.freebsd, "linux": rltype, "soft": 1, "hard": 2}]


@pytest.mark.parametrize("oci", sorted(RULES.losses))
def test_every_loss_table_entry(oci: str) -> None:
    plan = translate(with_path(base_spec(), oci, LOSS_SAMPLES[oci]))
    assert plan.losses == (Loss(oci, LOSS_SAMPLES[oci], RULES.losses[oci]),)


def test_every_base_param_is_set() -> None:
    plan = translate(base_spec())
    for key, value in RULES.base_params.items():
        assert plan.params[key] == value


# ------------------------------------------------------------------ reverse + JSON form


def _full_spec() -> dict[str, Any]:
    spec = base_spec(
        hostname="box",
        domainname="example.org",
        root={"path": "rootfs", "readonly": True},
        mounts=[
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=64m", "mode=1777"]},
        ],
    )
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]
    spec["process"]["capabilities"] = {"bounding": ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]}
    spec["process"]["env"] = ["PATH=/bin"]
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]
    spec["linux"]["resources"] = {
        "memory": {"limit": 1 << 28, "swap": 1 << 29},
        "cpu": {"quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 64},
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}],
    }
    return spec


def test_full_config_round_trips_through_json_and_back_to_oci() -> None:
    spec = _full_spec()
    plan = translate(spec)
    assert plan.losses == ()
    again = JailPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    back, losses = freebsd_to_oci(again, RULES)
    assert losses == []
    assert back["hostname"] == "box" and back["domainname"] == "example.org"
    assert back["root"] == {"path": "/srv/bundle/rootfs", "readonly": True}
    assert back["linux"]["resources"]["memory"] == {"limit": 1 << 28, "swap": 1 << 29}
    assert back["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000, "cpus": "0-1"}
    assert back["linux"]["resources"]["pids"] == {"limit": 64}
    assert back["linux"]["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]
    assert sorted(n["type"] for n in back["linux"]["namespaces"]) == ["ipc", "mount", "network", "pid", "uts"]
    assert back["process"]["capabilities"]["bounding"] == ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]
    assert back["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    assert back["process"]["env"] == ["PATH=/bin"] and back["process"]["args"] == ["sh"]
    assert [(m["destination"], m["type"]) for m in back["mounts"]] == [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/data", "bind"),
        ("/tmp", "tmpfs"),
    ]
    assert back["mounts"][3]["options"] == ["rbind", "ro"]
    assert back["mounts"][4]["options"] == ["size=64m", "mode=1777"]
    # the reverse output is itself a valid OCI config that translates to the same plan
    assert translate(back) == plan


def test_reverse_reports_what_oci_cannot_hold() -> None:
    plan = JailPlan(
        name=NAME,
        params={"path": "/j", "securelevel": 3, "allow.chflags": True, "vnet": "new"},
        rctl=(
            RctlRule(NAME, "openfiles", "deny", 100),
            RctlRule(NAME, "readbps", "throttle", 4096),
            RctlRule(NAME, "swapuse", "deny", 10),
        ),
        mounts=(Mount("fdescfs", "fdescfs", "/dev/fd", ()),),
        exec={"created": ("echo hi",)},
    )
    spec, losses = freebsd_to_oci(plan, RULES)
    assert {loss.path for loss in losses} == {
        'jail.params.securelevel',
        "rctl[0]",
        "rctl[1]",
        "rctl[2]",
        "mounts[0]",
        "exec.created[0]",
    }
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_LINUX_IMMUTABLE"]


@pytest.mark.parametrize(
    "doc,path,reason",
    [
        ([], "$", "expected a JSON object with jail, rctl, mounts, losses"),
        ({"jail": {"name": "a.b"}}, "jail.name", "jail name 'a.b' must not contain '.'"),
        ({"jail": {"name": "w", "params": {"vnet": "yes"}}}, 'jail.params["vnet"]', "jail parameter vnet takes one of disable, new, inherit, got 'yes'"),
        ({"jail": {"name": "w", "params": {"allow.frobnicate": True}}}, 'jail.params["allow.frobnicate"]', "unknown jail parameter 'allow.frobnicate' (see jail(8))"),
        ({"jail": {"name": "w"}, "rctl": ["jail:w:pcpu:throttle=5"]}, "rctl[0]", "rule 'jail:w:pcpu:throttle=5': action throttle is only allowed for readbps, writebps, readiops, writeiops, not pcpu"),
        ({"jail": {"name": "w"}, "rctl": ["jail:x:pcpu:deny=5"]}, "rctl[0]", "rule is for jail 'x', not 'w'"),
        ({"jail": {"name": "w"}, "rctl": ["user:1:pcpu:deny=5"]}, "rctl[0]", "rule 'user:1:pcpu:deny=5' has subject 'user'; only jail rules describe a jail"),
        ({"jail": {"name": "w"}, "mounts": [{"fstype": "nullfs"}]}, "mounts[0].source", "expected a string, got None"),
        ({"jail": {"name": "w"}, "exec": {"sometime": []}}, "exec.sometime", "unknown key; expected one of prepare, prestart, created, start, poststart, prestop, stop, poststop, release, args, env, cwd, user"),
        ({"jail": {"name": "w"}, "devfs": {"ruleset": 0}}, "devfs.ruleset", "expected an integer 1..65535, got 0"),
        ({"jail": {"name": "w"}, "extra": 1}, "$", "unknown keys ['extra']"),
    ],
)
def test_plan_json_errors_name_the_path(doc: Any, path: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        JailPlan.from_json(doc, source="jail.json")
    assert (info.value.source, info.value.path or "$", info.value.reason) == ("jail.json", path, reason)


def test_plan_json_accepts_backend_mount_spelling() -> None:
    plan = JailPlan.from_json(
        {"jail": {"name": "w", "params": {"path": "/j"}}, "mounts": [{"type": "tmpfs", "source": "tmpfs", "target": "/t"}]}
    )
    assert plan.mounts == (Mount("tmpfs", "tmpfs", "/t", ()),)


def test_reverse_duplicate_rule_is_reported() -> None:
    plan = JailPlan(
        name=NAME,
        params={"path": "/j"},
        rctl=(RctlRule(NAME, "maxproc", "deny", 5), RctlRule(NAME, "maxproc", "deny", 7)),
    )
    spec, losses = freebsd_to_oci(plan, RULES)
    assert spec["linux"]["resources"]["pids"] == {"limit": 7}
    assert [(loss.path, loss.value) for loss in losses] == [("rctl[0]", "jail:web:maxproc:deny=5")]


def test_rctl_rule_parse_expands_suffixes() -> None:
    assert RctlRule.parse("jail:w:memoryuse:deny=64m") == RctlRule("w", "memoryuse", "deny", 64 << 20)
    assert str(RctlRule.parse("jail:w:maxproc:deny=5/jail")) == "jail:w:maxproc:deny=5"
    assert str(RctlRule("w", "maxproc", "log", 5, per="user")) == "jail:w:maxproc:log=5/user"


def test_mapping_file_really_drives_both_directions(tmp_path: Any) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\n"
        "base_params: {linux.osrelease: '6.1.0', enforce_statfs: 1}\n"
        "namespaces:\n"
        "  pid:\n"
        "    shared: {params: {}}\n"  # site decides a shared pid namespace is acceptable
        "resources:\n"
        "  - oci: linux.resources.memory.limit\n"
        "    rctl: {resource: vmemoryuse, action: deny}\n"
        "    convert: {kind: scale, factor: 2}\n"
        "    unlimited: [-1, 0]\n"
        "  - oci: linux.resources.cpu.shares\n"
        "    rctl: {resource: nthr, action: deny}\n"
        "    convert: {kind: scale, factor: 1}\n"
        "capabilities:\n"
        "  CAP_SYS_ADMIN: {allow: [allow.mount, allow.mount.nullfs]}\n"
        "mounts:\n"
        "  overlay: {fstype: nullfs, options: {keep: [ro]}}\n"
        "rlimits:\n"
        "  RLIMIT_RTPRIO: {loss: site says no realtime}\n"
    )
    rules = load_rules([site])
    spec = _namespaces(base_spec(), "pid", None)
    spec["linux"]["resources"] = {"memory": {"limit": 1000}, "cpu": {"shares": 64}}
    spec["process"]["capabilities"] = {"bounding": ["CAP_SYS_ADMIN"]}
    spec["process"]["rlimits"] = [{"type": "RLIMIT_RTPRIO", "soft": 1, "hard": 1}]
    spec["mounts"] = [{"destination": "/o", "type": "overlay", "source": "/lower", "options": ["ro"]}]
    plan = oci_to_freebsd(spec, NAME, rules, bundle=BUNDLE)
    assert rules_of(plan) == ["jail:web:vmemoryuse:deny=2000", "jail:web:nthr:deny=64"]
    assert plan.params["linux.osrelease"] == "6.1.0" and plan.params["enforce_statfs"] == 1
    assert plan.params["allow.mount"] is True and plan.params["allow.mount.nullfs"] is True
    assert plan.mounts == (Mount("nullfs", "/lower", "/o", ("ro",)),)
    assert plan.losses == (Loss("process.rlimits[0]", {"type": "RLIMIT_RTPRIO", "soft": 1, "hard": 1}, "site says no realtime"),)
    back, losses = freebsd_to_oci(plan, rules)
    assert losses == []
    assert back["linux"]["resources"]["memory"] == {"limit": 1000}
    assert back["linux"]["resources"]["cpu"] == {"shares": 64}
    assert back["process"]["capabilities"]["bounding"] == ["CAP_SYS_ADMIN"]
    assert back["mounts"] == [{"destination": "/o", "type": "bind", "source": "/lower", "options": ["rbind", "ro"]}]
