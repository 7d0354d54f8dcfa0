"""FreeBSD jail plan -> OCI runtime config (the reverse of :mod:`forward`).

Pure: uses the same mapping rules read backwards. Every jail parameter, RCTL
rule, mount and exec command of the plan is either turned into an OCI field
or reported as a :class:`Loss` (path ``jail.params["name"]``, ``rctl[2]``,
``mounts[1]``, ``exec.created[0]``); nothing is dropped silently. The result
is an OCI config (runtime-spec 1.0.2) for Linux.
"""

from __future__ import annotations

import re
from typing import Any

from mappings.loader import ConvertKind, MappingRules, NsMode
from runtime_shim.translate.model import JailPlan, Loss, RctlRule
from runtime_shim.translate.spec import json_path, set_path, split_dotted

OCI_VERSION = "1.0.2"
_DEVFS_RULE_RE = re.compile(r"^path '?(?P<name>[^' ]+)'? (?P<action>unhide|mode [0-7]+|user \S+|group \S+)$")

# What runc itself mounts for a container /dev (runc spec defaults).
_DEV_MOUNTS = (
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
)


def _template_regex(template: str, name: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(re.escape("{value}"), r"(?P<value>\S+)")
    pattern = pattern.replace(re.escape("{name}"), re.escape(name))
    return re.compile(f"^{pattern}$")


def freebsd_to_oci(plan: JailPlan, rules: MappingRules) -> tuple[dict[str, Any], list[Loss]]:
    """Translate a jail plan back into an OCI config; returns (config, losses)."""
    params = dict(plan.params)
    consumed: set[str] = set()
    losses: list[Loss] = []
    spec: dict[str, Any] = {"ociVersion": OCI_VERSION}

    def lose(path: str, value: Any, reason: str) -> None:
        losses.append(Loss(path, value, reason))

    for key, base_value in rules.base_params.items():
        if params.get(key) == base_value:
            consumed.add(key)

    # root
    root_ro = False
    mounts_out: list[dict[str, Any]] = []
    path_param = params.get("path")
    path = "/"
    if isinstance(path_param, str):
        path = path_param
        consumed.add("path")
    else:
        lose("jail.params.path", None, "jail has no path; its root is the host's '/'")

    # mounts
    by_fstype: dict[str, str] = {}
    for mount_type, mrule in rules.mounts.items():
        if mrule.fstype is not None and mrule.fstype not in by_fstype:
            by_fstype[mrule.fstype] = mount_type
    devfs_mount = False
    for i, mnt in enumerate(plan.mounts):
        if mnt.fstype == "devfs" and mnt.destination == rules.devfs.destination:
            devfs_mount = True
            mounts_out.extend(dict(d, options=list(d["options"])) for d in _DEV_MOUNTS)
            continue
        if mnt.destination == "/" and mnt.fstype == "nullfs" and mnt.source == path and "ro" in mnt.options:
            root_ro = True
            extra = [o for o in mnt.options if o != "ro"]
            if extra:
                lose(f"mounts[{i}].options", extra, "options on the read-only root mount have no OCI field")
            continue
        mtype = by_fstype.get(mnt.fstype)
        if mtype is None:
            lose(f"mounts[{i}]", mnt.to_json(), f"file system {mnt.fstype} has no OCI mount mapping")
            continue
        keep = rules.mounts[mtype].keep
        opts = []
        for j, opt in enumerate(mnt.options):
            if opt.split("=", 1)[0] in keep:
                opts.append(opt)
            else:
                lose(f"mounts[{i}].options[{j}]", opt, f"{mnt.fstype} option {opt} has no OCI mapping")
        if mtype == "bind":
            opts = ["rbind", *opts]
            source = mnt.source
        else:
            source = mtype
        mounts_out.append({"destination": mnt.destination, "type": mtype, "source": source, "options": opts})
    spec["root"] = {"path": path, "readonly": root_ro}

    for key, param in (("hostname", "host.hostname"), ("domainname", "host.domainname")):
        if isinstance(params.get(param), str):
            spec[key] = params[param]
            consumed.add(param)

    # namespaces
    namespaces: list[dict[str, Any]] = []
    for ns_type, table in rules.namespaces.items():
        chosen: NsMode | None = None
        for mode in (NsMode.NEW, NsMode.SHARED):
            nsr = table.rules.get(mode)
            if nsr is None or nsr.loss is not None:
                continue
            if all(params.get(k) == v for k, v in nsr.params.items()):
                chosen = mode
                consumed.update(nsr.params)
                break
        if chosen is None:
            chosen = table.reverse_default
        if chosen is NsMode.NEW:
            namespaces.append({"type": ns_type})
    linux: dict[str, Any] = {"namespaces": namespaces}

    # devfs
    devices_out: list[dict[str, Any]] = []
    if devfs_mount:
        consumed.add("devfs_ruleset")
        linux_by_devfs = {r.devfs: p for p, r in rules.devfs.devices.items() if r.devfs is not None}
        defaults = set(rules.devfs.default_devices.values())
        rs = plan.devfs
        if rs is not None:
            if params.get("devfs_ruleset") != rs.number:
                lose("devfs.ruleset", rs.number, f"differs from jail parameter devfs_ruleset={params.get('devfs_ruleset')}")
            current: dict[str, dict[str, Any]] = {}
            for k, text in enumerate(rs.rules):
                if text == "hide":
                    continue
                dm = _DEVFS_RULE_RE.match(text)
                if dm is None:
                    lose(f"devfs.rules[{k}]", text, "devfs rule has no OCI device mapping")
                    continue
                name, action = dm["name"], dm["action"]
                if action == "unhide" and name in defaults:
                    continue
                lpath = linux_by_devfs.get(name)
                drule = rules.devfs.devices.get(lpath) if lpath else None
                if drule is None or drule.major is None or drule.minor is None:
                    lose(f"devfs.rules[{k}]", text, f"devfs node {name} has no Linux device mapping entry")
                    continue
                dev = current.setdefault(
                    name, {"path": lpath, "type": drule.type or "c", "major": drule.major, "minor": drule.minor}
                )
                if action.startswith("mode "):
                    dev["fileMode"] = int(action.split()[1], 8)
                elif action.startswith("user "):
                    dev["uid"] = int(action.split()[1]) if action.split()[1].isdigit() else 0
                elif action.startswith("group "):
                    dev["gid"] = int(action.split()[1]) if action.split()[1].isdigit() else 0
            devices_out = list(current.values())
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        for dev in devices_out:
            linux["resources"]["devices"].append(
                {"allow": True, "type": dev["type"], "major": dev["major"], "minor": dev["minor"], "access": "rwm"}
            )
        if devices_out:
            linux["devices"] = devices_out
    spec["mounts"] = mounts_out

    # RCTL rules
    amounts: dict[tuple[str, str], tuple[int, RctlRule]] = {}
    for i, rr in enumerate(plan.rctl):
        if rr.subject != "jail" or rr.subject_id != plan.name or rr.per not in (None, "jail"):
            lose(f"rctl[{i}]", str(rr), f"only jail:{plan.name} rules map to OCI resources")
            continue
        earlier = amounts.get((rr.resource, rr.action))
        if earlier is not None:
            lose(f"rctl[{earlier[0]}]", str(earlier[1]), f"replaced by the later rule rctl[{i}] for the same resource")
        amounts[(rr.resource, rr.action)] = (i, rr)
    used: set[int] = set()
    resources: dict[str, Any] = {}
    for rrule in rules.resources:
        if rrule.rctl_resource is None or rrule.rctl_action is None:
            continue
        found = amounts.get((rrule.rctl_resource, rrule.rctl_action))
        if found is None:
            continue
        i, rr = found
        parts = split_dotted(rrule.oci)
        if rrule.kind is ConvertKind.SCALE:
            if rr.amount % rrule.factor:
                lose(f"rctl[{i}]", str(rr), f"amount is not a multiple of {rrule.factor}")
                continue
            set_path(resources, parts[2:], rr.amount // rrule.factor)
        elif rrule.kind is ConvertKind.DIFFERENCE:
            assert rrule.minus is not None
            base = _get(resources, split_dotted(rrule.minus)[2:])
            if base is None:
                lose(f"rctl[{i}]", str(rr), f"{rrule.oci} is {rrule.minus} plus this amount, and no {rrule.minus} is set")
                continue
            set_path(resources, parts[2:], base + rr.amount)
        elif rrule.kind is ConvertKind.PERCENT:
            assert rrule.per is not None
            quota = rr.amount * rrule.default_per
            if quota % 100:
                lose(f"rctl[{i}]", str(rr), f"{rr.amount}% of {rrule.default_per} is not a whole number")
                continue
            set_path(resources, parts[2:], quota // 100)
            set_path(resources, split_dotted(rrule.per)[2:], rrule.default_per)
        elif rrule.kind is ConvertKind.DEVICE_RATE:
            lose(f"rctl[{i}]", str(rr), "an OCI throttle is per block device (major:minor); a jail-wide RCTL rr names none")
            continue
        used.add(i)
    for (res, action), (i, rr) in amounts.items():
        if i not in used and not any(loss.path == f"rctl[{i}]" for loss in losses):
            lose(f"rctl[{i}]", str(rr), f"no mapping entry turns {res}:{action} into an OCI resource")

    # exec commands (cpuset ...)
    for phase, cmds in plan.exec.items():
        for k, cmd in enumerate(cmds):
            for rrule in rules.resources:
                if rrule.exec_command is None or rrule.exec_phase != phase:
                    continue
                em = _template_regex(rrule.exec_command, plan.name).match(cmd)
                if em is not None:
                    set_path(resources, split_dotted(rrule.oci)[2:], em["value"])
                    break
            else:
                lose(f"exec.{phase}[{k}]", cmd, "host command has no OCI equivalent")
    if resources:
        linux.setdefault("resources", {}).update(resources)
    spec["linux"] = linux

    # capabilities from allow.*
    caps: list[str] = []
    for cap, crule in rules.capabilities.items():
        if not crule.allow:
            continue
        if all(params.get(p) is True for p in crule.allow):
            caps.append(cap)
            consumed.update(crule.allow)
        elif crule.explicit_false and all(params.get(p) is False for p in crule.allow):
            consumed.update(crule.allow)

    # process
    process: dict[str, Any] = {}
    proc = plan.process or {}
    for key in ("args", "env", "cwd"):
        if key in proc:
            process[key] = proc[key]
    user = proc.get("user")
    if isinstance(user, str) and re.fullmatch(r"[0-9]+:[0-9]+", user):
        uid, gid = user.split(":")
        process["user"] = {"uid": int(uid), "gid": int(gid)}
    elif user is not None:
        lose("exec.user", user, 'expected "UID:GID"')
    rl_out = []
    for k, rl in enumerate(plan.rlimits):
        lrule = rules.rlimits.get(rl.linux)
        if lrule is None or lrule.freebsd != rl.type:
            lose(f"rlimits[{k}]", rl.to_json(), f"no mapping entry turns FreeBSD {rl.type} into {rl.linux}")
            continue
        rl_out.append({"type": rl.linux, "hard": rl.hard, "soft": rl.soft})
    if rl_out:
        process["rlimits"] = rl_out
    process.setdefault("cwd", "/")
    process.setdefault("user", {"uid": 0, "gid": 0})
    process["capabilities"] = {"bounding": caps, "effective": list(caps), "permitted": list(caps)}
    spec["process"] = process

    for key, value in params.items():
        if key not in consumed:
            lose(json_path(["jail", "params", key]), value, "jail parameter has no OCI mapping")
    return spec, losses


def _get(doc: dict[str, Any], parts: tuple[str, ...]) -> Any:
    cur: Any = doc
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur
