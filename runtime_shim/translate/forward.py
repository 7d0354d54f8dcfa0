"""OCI runtime config -> FreeBSD jail plan (parameters, RCTL, mounts, devfs).

Pure: the spec and the mapping rules come in, a :class:`JailPlan` with its
losses goes out; no file, process or host is looked at. Every field of the
spec is either mapped by a mapping-file rule or reported as a :class:`Loss`
with its JSON path, value and reason (a final walk over the whole document
reports whatever no rule consumed). Refuses invalid input (schema violations,
impossible values such as swap below the memory limit, a bad jail name) with
:class:`SpecError`.
"""

from __future__ import annotations

import math
import posixpath
import re
import zlib
from pathlib import Path
from typing import Any

from capture.errors import SpecError
from mappings.loader import ConvertKind, MappingRules, NsMode, ResourceRule
from runtime_shim.translate.model import DevfsRuleset, JailPlan, Loss, Mount, ParamValue, RctlRule, Rlimit
from runtime_shim.translate.spec import Path_, get_path, iter_uncovered, json_path, split_dotted, validate_oci

_CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
_SIZE_RE = re.compile(r"^size=[0-9]+[kKmMgGtTpP]?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def check_jail_name(name: str, source: str = "--name") -> None:
    """Refuse names jail(8) would refuse (dots, numeric, too long, odd characters)."""
    if not name or len(name) > 255:
        raise SpecError(source, "", f"jail name {name!r} must be 1..255 characters")
    if "." in name:
        raise SpecError(source, "", f"jail name {name!r} must not contain '.' (it separates parent.child)")
    if name.isdigit():
        raise SpecError(source, "", f"jail name {name!r} cannot be numeric (unless it is the jid)")
    if not _NAME_RE.match(name):
        raise SpecError(source, "", f"jail name {name!r} may contain only letters, digits, '_' and '-'")


def devfs_ruleset_number(name: str, rules: MappingRules) -> int:
    """Per-jail devfs ruleset number: base + crc32(name) mod span (documented)."""
    return rules.devfs.ruleset_base + zlib.crc32(name.encode()) % rules.devfs.ruleset_span


class _Forward:
    def __init__(self, spec: dict[str, Any], name: str, rules: MappingRules, bundle: str, source: str) -> None:
        self.spec = spec
        self.name = name
        self.rules = rules
        self.bundle = bundle
        self.source = source
        self.params: dict[str, ParamValue] = dict(rules.base_params)
        self.rctl: list[RctlRule] = []
        self.mounts: list[Mount] = []
        self.losses: list[Loss] = []
        self.exec: dict[str, list[str]] = {}
        self.covered: set[Path_] = set()
        self.devfs_rules: list[str] = []
        self.use_devfs = False
        self.devfs_at: int | None = None  # index in self.mounts where /dev goes
        self.process: dict[str, Any] | None = None
        self.rlimits: list[Rlimit] = []

    # -------------------------------------------------------------- helpers

    def cover(self, parts: Path_) -> None:
        self.covered.add(parts)

    def lose(self, parts: Path_, value: Any, reason: str) -> None:
        self.losses.append(Loss(json_path(parts), value, reason))
        self.cover(parts)

    def bad(self, parts: Path_, reason: str) -> SpecError:
        return SpecError(self.source, json_path(parts), reason)

    # -------------------------------------------------------------- steps

    def run(self) -> JailPlan:
        self.cover(("ociVersion",))
        self.root()
        self.host()
        self.namespaces()
        self.resources()
        self.capabilities()
        self.mounts_()
        self.devices()
        self.process_()
        self.table_losses()
        for parts, value in iter_uncovered(self.spec, self.covered):
            self.losses.append(
                Loss(json_path(parts), value, "no mapping entry for this field; it is not carried into the jail")
            )
        devfs = None
        if self.use_devfs:
            number = devfs_ruleset_number(self.name, self.rules)
            self.params["devfs_ruleset"] = number
            devfs = DevfsRuleset(number, tuple(self.devfs_rules))
            at = self.devfs_at if self.devfs_at is not None else len(self.mounts)
            self.mounts.insert(at, Mount("devfs", "devfs", self.rules.devfs.destination, ()))
        return JailPlan(
            name=self.name,
            params=self.params,
            rctl=tuple(self.rctl),
            mounts=tuple(self.mounts),
            losses=tuple(self.losses),
            exec={phase: tuple(cmds) for phase, cmds in self.exec.items()},
            devfs=devfs,
            process=self.process,
            rlimits=tuple(self.rlimits),
        )

    def root(self) -> None:
        root = self.spec["root"]
        path = root["path"]
        if not posixpath.isabs(path):
            path = posixpath.normpath(posixpath.join(self.bundle, path))
        self.params["path"] = path
        self.cover(("root", "path"))
        if root.get("readonly") is True:
            # never dropped: the jail root itself is mounted read-only over itself
            self.mounts.insert(0, Mount("nullfs", path, "/", ("ro",)))
        if "readonly" in root:
            self.cover(("root", "readonly"))

    def host(self) -> None:
        for key, param in (("hostname", "host.hostname"), ("domainname", "host.domainname")):
            if key in self.spec:
                self.params[param] = self.spec[key]
                self.cover((key,))

    def namespaces(self) -> None:
        entries = get_path(self.spec, ("linux", "namespaces")) or []
        by_type: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, entry in enumerate(entries):
            if entry["type"] in by_type:
                raise self.bad(("linux", "namespaces", i, "type"), f"namespace {entry['type']} is listed twice")
            by_type[entry["type"]] = (i, entry)
            self.cover(("linux", "namespaces", i))
        for ns_type, table in self.rules.namespaces.items():
            if ns_type in by_type:
                i, entry = by_type[ns_type]
                mode = NsMode.PATH if entry.get("path") else NsMode.NEW
                where: Path_ = ("linux", "namespaces", i)
                value: Any = entry
            else:
                mode = NsMode.SHARED
                where = ("linux", "namespaces")
                value = {"type": ns_type, "shared": "host"}
            rule = table.rules.get(mode)
            if rule is None:
                if mode is not NsMode.SHARED:
                    self.lose(where, value, f"no mapping rule for a {mode.value} {ns_type} namespace")
                continue
            self.params.update(rule.params)
            if rule.loss:
                if mode is NsMode.SHARED:
                    reason = f"no {ns_type} namespace (shared with the host): {rule.loss}"
                    self.losses.append(Loss(json_path(where), value, reason))
                elif mode is NsMode.PATH:
                    self.lose(where + ("path",), entry["path"], f"{ns_type} namespace at a path: {rule.loss}")
                else:
                    self.lose(where, value, f"{ns_type} namespace: {rule.loss}")
        if self.params.get("host") == "inherit":
            for key, param in (("hostname", "host.hostname"), ("domainname", "host.domainname")):
                if param in self.params:
                    del self.params[param]
                    self.lose(
                        (key,), self.spec[key], "the UTS namespace is shared with the host; the jail cannot have its own name"
                    )

    def resources(self) -> None:
        for rule in self.rules.resources:
            parts = split_dotted(rule.oci)
            value = get_path(self.spec, parts)
            if rule.per is not None:
                self.cover(split_dotted(rule.per))
            if value is None:
                continue
            self.cover(parts)
            if rule.loss is not None:
                self.lose(parts, value, rule.loss)
            elif rule.exec_command is not None and rule.exec_phase is not None:
                if value != "":
                    cmd = rule.exec_command.replace("{value}", str(value)).replace("{name}", self.name)
                    self.exec.setdefault(rule.exec_phase, []).append(cmd)
            elif rule.kind is ConvertKind.DEVICE_RATE:
                self.device_rate(rule, parts, value)
            else:
                self.rctl_value(rule, parts, value)

    def rctl_value(self, rule: ResourceRule, parts: Path_, value: int) -> None:
        assert rule.rctl_resource is not None and rule.rctl_action is not None
        if value in rule.unlimited:
            return
        if value < 0:
            allowed = " or ".join(str(u) for u in rule.unlimited) or "none"
            raise self.bad(parts, f"{rule.oci}={value} is negative (need >= 0; unlimited: {allowed})")
        if rule.kind is ConvertKind.SCALE:
            amount = value * rule.factor
        elif rule.kind is ConvertKind.DIFFERENCE:
            assert rule.minus is not None
            other = get_path(self.spec, split_dotted(rule.minus))
            other_rule = self.rules.resource(rule.minus)
            other_unlimited = other_rule.unlimited if other_rule else ()
            if other is None or other in other_unlimited:
                self.lose(parts, value, f"{rule.rctl_resource} needs {rule.minus} to compute {rule.oci} minus it; none is set")
                return
            if value < other:
                short = rule.minus.rsplit(".", 2)
                raise self.bad(
                    parts,
                    f"{rule.oci}={value} is below {'.'.join(short[-2:])}={other} (need >= limit or -1)",
                )
            amount = value - other
        elif rule.kind is ConvertKind.PERCENT:
            assert rule.per is not None
            per = get_path(self.spec, split_dotted(rule.per)) or rule.default_per
            amount = math.ceil(100 * value / per)
            if (100 * value) % per:
                self.lose(
                    parts,
                    value,
                    f"{value}/{per} is {100 * value / per:.3f}% of one CPU, not a whole percent; "
                    f"{rule.rctl_resource} rounded up to {amount}",
                )
        else:  # pragma: no cover - schema admits no other kind here
            raise AssertionError(rule.kind)
        self.rctl.append(RctlRule(self.name, rule.rctl_resource, rule.rctl_action, amount))

    def device_rate(self, rule: ResourceRule, parts: Path_, entries: list[dict[str, int]]) -> None:
        assert rule.rctl_resource is not None and rule.rctl_action is not None
        limited = [(j, e) for j, e in enumerate(entries) if e["rate"] not in rule.unlimited and e["rate"] > 0]
        if not limited:
            return
        j0, best = min(limited, key=lambda je: je[1]["rate"])
        self.rctl.append(RctlRule(self.name, rule.rctl_resource, rule.rctl_action, best["rate"]))
        for j, e in limited:
            if j == j0:
                reason = (
                    f"RCTL {rule.rctl_resource} limits all file-system I/O of the jail (rate {e['rate']} kept); "
                    f"the scope to device {e['major']}:{e['minor']} is lost"
                )
            else:
                reason = (
                    f"RCTL {rule.rctl_resource} is one limit per jail, not per device; "
                    f"the jail uses the lowest rate {best['rate']} (device {best['major']}:{best['minor']})"
                )
            self.lose(parts + (j,), e, reason)

    def capabilities(self) -> None:
        caps = get_path(self.spec, ("process", "capabilities"))
        present: dict[str, Path_] = {}
        if isinstance(caps, dict):
            for set_name in _CAP_SETS:
                for i, cap in enumerate(caps.get(set_name) or []):
                    present.setdefault(cap, ("process", "capabilities", set_name, i))
            self.cover(("process", "capabilities"))
        for cap, where in present.items():
            rule = self.rules.capabilities.get(cap)
            if rule is None:
                self.lose(where, cap, f"{cap} has no mapping entry (no known allow.* equivalent)")
            elif rule.loss is not None:
                self.lose(where, cap, rule.loss)
            else:
                for param in rule.allow:
                    self.params[param] = True
        for cap, rule in self.rules.capabilities.items():
            if rule.explicit_false and cap not in present:
                for param in rule.allow:
                    self.params.setdefault(param, False)

    def mounts_(self) -> None:
        devfs_dest = self.rules.devfs.destination
        for i, m in enumerate(self.spec.get("mounts") or []):
            where: Path_ = ("mounts", i)
            self.cover(where)
            opts: list[str] = list(m.get("options") or [])
            mtype = m.get("type") or ("bind" if {"bind", "rbind"} & set(opts) else "")
            dest = posixpath.normpath(m["destination"])
            if dest == devfs_dest or (mtype in self.rules.mounts and self.rules.mounts[mtype].devfs):
                if self.devfs_at is None:
                    self.devfs_at = len(self.mounts)
            if dest == devfs_dest:
                self.use_devfs = True
                self.options(where, opts, (), self.rules.devfs.implied_options, "devfs")
                continue
            rule = self.rules.mounts.get(mtype)
            if rule is None:
                self.lose(where, m, f"mount type {mtype or '(none)'} has no FreeBSD mapping")
                continue
            if rule.loss is not None:
                self.lose(where, m, rule.loss)
                continue
            if rule.devfs:
                self.use_devfs = True
                self.options(where, opts, (), rule.implied, "devfs")
                continue
            assert rule.fstype is not None
            kept = self.options(where, opts, rule.keep, rule.implied, rule.fstype)
            source = m.get("source") or rule.fstype
            if rule.fstype != "nullfs":
                source = rule.fstype
            elif not posixpath.isabs(source):
                source = posixpath.normpath(posixpath.join(self.bundle, source))
            self.mounts.append(Mount(rule.fstype, source, dest, tuple(kept)))

    def options(
        self, where: Path_, opts: list[str], keep: tuple[str, ...], implied: Any, fstype: str
    ) -> list[str]:
        kept: list[str] = []
        for j, opt in enumerate(opts):
            key = opt.split("=", 1)[0]
            if key in keep:
                if key == "size" and not _SIZE_RE.match(opt):
                    self.lose(where + ("options", j), opt, f"{fstype} size must be bytes with an optional k/m/g/t/p suffix")
                    continue
                kept.append(opt)
            elif opt in implied or key in implied:
                continue
            else:
                self.lose(where + ("options", j), opt, f"mount option {opt} has no {fstype} equivalent")
        return kept

    def devices(self) -> None:
        cfg = self.rules.devfs
        names = list(dict.fromkeys(cfg.default_devices.values()))
        self.devfs_rules = ["hide"] + [f"path '{n}' unhide" for n in names]
        mapped_numbers: set[tuple[str, int, int]] = set()
        for i, dev in enumerate(get_path(self.spec, ("linux", "devices")) or []):
            where: Path_ = ("linux", "devices", i)
            self.cover(where)
            rule = cfg.devices.get(dev["path"])
            if rule is None:
                self.lose(where, dev, f"device {dev['path']} has no devfs mapping entry")
                continue
            if rule.loss is not None:
                self.lose(where, dev, rule.loss)
                continue
            if not self.use_devfs:
                self.lose(where, dev, "the config mounts nothing on /dev, so the jail has no devfs to show it in")
                continue
            assert rule.devfs is not None
            if rule.devfs not in names:
                self.devfs_rules.append(f"path '{rule.devfs}' unhide")
            if "fileMode" in dev:
                self.devfs_rules.append(f"path '{rule.devfs}' mode {dev['fileMode'] & 0o7777:o}")
            for key, action in (("uid", "user"), ("gid", "group")):
                if key in dev:
                    self.devfs_rules.append(f"path '{rule.devfs}' {action} {dev[key]}")
            mapped_numbers.add((dev["type"], dev.get("major", -1), dev.get("minor", -1)))
        for i, entry in enumerate(get_path(self.spec, ("linux", "resources", "devices")) or []):
            where = ("linux", "resources", "devices", i)
            self.cover(where)
            is_all = entry.get("type", "a") == "a" and entry.get("major") is None and entry.get("minor") is None
            if not entry["allow"] and is_all and set(entry.get("access", "rwm")) == set("rwm"):
                continue  # deny-all: the ruleset hides everything not unhidden
            if entry["allow"] and (entry.get("type"), entry.get("major"), entry.get("minor")) in mapped_numbers:
                continue  # allowed device that linux.devices unhides
            self.lose(where, entry, "device cgroup rule has no devfs equivalent (devfs rules match names, not numbers)")

    def process_(self) -> None:
        proc = self.spec.get("process")
        if not isinstance(proc, dict):
            return
        out: dict[str, Any] = {}
        for key in ("args", "env", "cwd"):
            if key in proc:
                out[key] = proc[key]
                self.cover(("process", key))
        if proc.get("terminal") is not True:
            self.cover(("process", "terminal"))
        user = proc.get("user")
        if isinstance(user, dict):
            out["user"] = f"{user['uid']}:{user['gid']}"
            for key in ("uid", "gid"):
                self.cover(("process", "user", key))
            if not user.get("additionalGids"):
                self.cover(("process", "user", "additionalGids"))
        for i, rl in enumerate(proc.get("rlimits") or []):
            where: Path_ = ("process", "rlimits", i)
            self.cover(where)
            rule = self.rules.rlimits.get(rl["type"])
            if rule is None:
                self.lose(where, rl, f"{rl['type']} has no mapping entry")
            elif rule.loss is not None:
                self.lose(where, rl, rule.loss)
            else:
                assert rule.freebsd is not None
                self.rlimits.append(Rlimit(rule.freebsd, rl["type"], rl["soft"], rl["hard"]))
        self.process = out

    def table_losses(self) -> None:
        for oci, reason in self.rules.losses.items():
            parts = split_dotted(oci)
            value = get_path(self.spec, parts)
            if value is not None and parts not in self.covered:
                self.lose(parts, value, reason)


def oci_to_freebsd(
    spec: dict[str, Any],
    name: str,
    rules: MappingRules,
    *,
    bundle: str | Path,
    source: str = "config.json",
) -> JailPlan:
    """Translate an OCI runtime config into a jail plan (with its losses)."""
    validate_oci(spec, source)
    check_jail_name(name)
    return _Forward(spec, name, rules, str(bundle), source).run()
