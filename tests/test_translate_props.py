"""Property tests (hypothesis): OCI -> FreeBSD -> OCI gives back every field
the mapping claims to map, equal in value.

Configs are generated from the mapped (lossless) part of the runtime spec:
hostname, domainname, root, namespaces, memory/swap/cpu/pids/cpuset limits,
capabilities with allow.* equivalents, bind/tmpfs/proc/sysfs mounts, /dev
with devices, rlimits and the process. For each: the forward translation
reports no loss, the JSON form round-trips, and the reverse translation
gives the fields back; the same through rendered jail.conf + rctl text for
the jail-level fields (the process is not part of a jail.conf).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_shim.translate import (
    JailPlan,
    freebsd_to_oci,
    load_rules,
    oci_to_freebsd,
    parse_jail_conf,
    parse_rctl,
    render_jail_conf,
    render_rctl,
)

RULES = load_rules()
BUNDLE = "/srv/bundle"
MAPPED_CAPS = sorted(c for c, r in RULES.capabilities.items() if r.allow)
MAPPED_RLIMITS = sorted(t for t, r in RULES.rlimits.items() if r.freebsd)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

name_chars = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
# printable ASCII including quotes, '$', '\\', spaces: exercises jail.conf/fstab escaping
odd_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16)
path_part = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8),
    st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="/"), min_size=1, max_size=8).filter(
        lambda p: p not in (".", "..")
    ),
)
abs_path = st.lists(path_part, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
size = st.integers(0, 1 << 40)


@st.composite
def cpu_list(draw: st.DrawFn) -> str:
    items = []
    for start in draw(st.lists(st.integers(0, 63), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            items.append(f"{start}-{start + draw(st.integers(1, 8))}")
        else:
            items.append(str(start))
    return ",".join(items)


@st.composite
def mounts(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        out.append({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]})
    if draw(st.booleans()):
        out.append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": draw(st.sampled_from([["ro"], ["nosuid", "ro"], []]))})
    used = {"/proc", "/sys", "/dev"}
    for _ in range(draw(st.integers(0, 3))):
        dest = draw(abs_path.filter(lambda p: p not in used and not p.startswith("/dev")))
        used.add(dest)
        if draw(st.booleans()):
            opts = draw(st.lists(st.sampled_from(["ro", "nosuid", "noexec"]), unique=True))
            src = draw(st.one_of(abs_path, path_part))  # relative = below the bundle
            out.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", *opts]})
        else:
            opts = draw(st.lists(st.sampled_from(["ro", "nosuid", "noexec"]), unique=True))
            if draw(st.booleans()):
                opts.append(f"size={draw(st.integers(1, 4096))}{draw(st.sampled_from(['', 'k', 'm', 'g']))}")
            if draw(st.booleans()):
                opts.append(f"mode={draw(st.integers(0, 0o7777)):o}")
            out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
    return out


@st.composite
def oci_configs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"ociVersion": "1.0.2"}
    spec["root"] = {"path": draw(st.one_of(st.just("rootfs"), abs_path))}
    if draw(st.booleans()):
        spec["root"]["readonly"] = draw(st.booleans())
    uts_new = draw(st.booleans())
    if uts_new:
        if draw(st.booleans()):
            spec["hostname"] = draw(odd_text)
        if draw(st.booleans()):
            spec["domainname"] = draw(odd_text)
    nss = [{"type": "pid"}, {"type": "mount"}]
    if uts_new:
        nss.append({"type": "uts"})
    if draw(st.booleans()):
        nss.append({"type": "network"})
    if draw(st.booleans()):
        nss.append({"type": "ipc"})
    linux: dict[str, Any] = {"namespaces": draw(st.permutations(nss))}
    res: dict[str, Any] = {}
    mem: dict[str, int] = {}
    if draw(st.booleans()):
        mem["limit"] = draw(size)
        if draw(st.booleans()):
            mem["swap"] = draw(st.one_of(st.just(-1), size.map(lambda extra: mem["limit"] + extra)))
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if draw(st.booleans()):
        period = draw(st.sampled_from([100000, 50000, 10000, 1000000, 250000]))
        cpu["quota"] = draw(st.integers(1, 6400)) * period // 100
        if period != 100000 or draw(st.booleans()):
            cpu["period"] = period
    if draw(st.booleans()):
        cpu["cpus"] = draw(cpu_list())
    if cpu:
        res["cpu"] = cpu
    if draw(st.booleans()):
        res["pids"] = {"limit": draw(st.integers(1, 1 << 22))}
    spec_mounts = draw(mounts())
    if draw(st.booleans()):
        spec_mounts.insert(draw(st.integers(0, len(spec_mounts))), {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]})
        if draw(st.booleans()):
            linux["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": draw(st.sampled_from([0o666, 0o600]))}]
            res["devices"] = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]
    if res:
        linux["resources"] = res
    spec["linux"] = linux
    spec["mounts"] = spec_mounts
    process: dict[str, Any] = {
        "cwd": draw(abs_path),
        "args": draw(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4)),
        "user": {"uid": draw(st.integers(0, 65535)), "gid": draw(st.integers(0, 65535))},
    }
    if draw(st.booleans()):
        process["env"] = draw(st.lists(st.tuples(name_chars, st.text(max_size=10)).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4))
    caps: list[str] = draw(st.lists(st.sampled_from(MAPPED_CAPS), unique=True))
    with_caps: bool = draw(st.booleans())
    if caps or with_caps:
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    rls = []
    for rtype in draw(st.lists(st.sampled_from(MAPPED_RLIMITS), unique=True, max_size=4)):
        hard = draw(st.integers(0, 1 << 40))
        rls.append({"type": rtype, "soft": draw(st.integers(0, hard)), "hard": hard})
    if rls:
        process["rlimits"] = rls
    spec["process"] = process
    return spec


# ---------------------------------------------------------------- claimed projection


def _abs(path: str) -> str:
    return path if path.startswith("/") else posixpath.normpath(posixpath.join(BUNDLE, path))


def claimed(spec: dict[str, Any], *, with_process: bool = True) -> dict[str, Any]:
    """The fields the mapping claims to map, normalised to their meaning."""
    res = spec.get("linux", {}).get("resources", {})
    mem = res.get("memory", {})
    cpu = res.get("cpu", {})
    out: dict[str, Any] = {
        "hostname": spec.get("hostname"),
        "domainname": spec.get("domainname"),
        "root": (_abs(spec["root"]["path"]), bool(spec["root"].get("readonly", False))),
        "namespaces": sorted(n["type"] for n in spec.get("linux", {}).get("namespaces", [])),
        "memory.limit": mem.get("limit"),
        "memory.swap": None if mem.get("swap", -1) == -1 else mem["swap"],
        "cpu.share_of_cpu": Fraction(cpu["quota"], cpu.get("period", 100000)) if "quota" in cpu else None,
        "cpu.cpus": cpu.get("cpus") or None,
        "pids.limit": res.get("pids", {}).get("limit"),
        "devices": [
            (d["path"], d["type"], d["major"], d["minor"], d.get("fileMode")) for d in spec.get("linux", {}).get("devices", [])
        ],
        "capabilities": sorted(spec.get("process", {}).get("capabilities", {}).get("bounding", [])),
        "mounts": [
            (
                m["type"],
                _abs(m["source"]) if m["type"] == "bind" else m["type"],
                m["destination"],
                tuple(o for o in m.get("options", []) if o.split("=")[0] in RULES.mounts[m["type"]].keep),
            )
            for m in spec.get("mounts", [])
            if m["destination"] not in ("/dev", "/dev/pts")
        ],
        "dev": any(m["destination"] == "/dev" for m in spec.get("mounts", [])),
    }
    if with_process:
        proc = spec.get("process", {})
        out["process"] = (proc.get("args"), proc.get("env"), proc.get("cwd"), proc.get("user"))
        out["rlimits"] = [(r["type"], r["soft"], r["hard"]) for r in proc.get("rlimits", [])]
    return out


@SETTINGS
@given(oci_configs())
def test_oci_to_freebsd_to_oci_gives_back_every_mapped_field(spec: dict[str, Any]) -> None:
    plan = oci_to_freebsd(spec, "prop", RULES, bundle=BUNDLE)
    assert plan.losses == (), plan.losses  # generated configs use mapped fields only
    restored = JailPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert restored == plan
    back, losses = freebsd_to_oci(restored, RULES)
    assert losses == []
    assert claimed(back) == claimed(spec)
    # the reverse output is a config that translates to the very same jail
    assert oci_to_freebsd(back, "prop", RULES, bundle=BUNDLE) == plan


@SETTINGS
@given(oci_configs())
def test_round_trip_through_jail_conf_and_rctl_text(spec: dict[str, Any]) -> None:
    plan = oci_to_freebsd(spec, "prop", RULES, bundle=BUNDLE)
    parsed = parse_jail_conf(render_jail_conf(plan), source="jail.conf")
    parsed = dataclasses.replace(parsed, rctl=parse_rctl(render_rctl(plan), source="rctl", name="prop"))
    assert parsed == dataclasses.replace(plan, losses=(), process=None, rlimits=())
    back, losses = freebsd_to_oci(parsed, RULES)
    assert losses == []
    assert claimed(back, with_process=False) == claimed(spec, with_process=False)
