"""Data the translator produces: the jail plan, RCTL rules, mounts and losses.

A :class:`JailPlan` is everything needed to make a FreeBSD jail that matches
an OCI config: jail(8) parameters, RCTL rules (subject ``jail:NAME``), file
systems to mount (fstab-like, destinations inside the jail), host-side
commands per jail(8) ``exec.*`` phase (cpuset), a devfs ruleset, the
per-process settings of the jailed process (args, env, rlimits) and the
losses of the translation. ``to_json``/``from_json`` give the JSON form that
``hetmig translate`` prints and reads; ``from_json`` refuses malformed input
with :class:`SpecError` naming the JSON path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from capture.errors import SpecError
from runtime_shim.translate.freebsd import EXEC_PHASES, check_param, check_rctl

ParamValue = str | int | bool | list[str]

_RULE_RE = re.compile(
    r"^(?P<subject>[a-z]+):(?P<id>[^:]*):(?P<resource>[a-z]+):(?P<action>[a-z0-9]+)"
    r"=(?P<amount>[0-9]+)(?P<suffix>[kKmMgGtTpPeE]?)(?:/(?P<per>[a-z]+))?$"
)
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


@dataclass(frozen=True, slots=True)
class Loss:
    """One thing the translation could not carry over."""

    path: str
    value: Any
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "value": self.value, "reason": self.reason}

    def __str__(self) -> str:
        import json

        return f"{self.path}={json.dumps(self.value, sort_keys=True)}: {self.reason}"


@dataclass(frozen=True, slots=True)
class RctlRule:
    """``subject:id:resource:action=amount[/per]`` as rctl(8) takes it."""

    subject_id: str
    resource: str
    action: str
    amount: int
    subject: str = "jail"
    per: str | None = None

    def __str__(self) -> str:
        per = f"/{self.per}" if self.per and self.per != self.subject else ""
        return f"{self.subject}:{self.subject_id}:{self.resource}:{self.action}={self.amount}{per}"

    @classmethod
    def parse(cls, text: str, *, source: str = "<rctl>", path: str = "") -> RctlRule:
        """Parse one rule line; amounts may carry expand_number(3) suffixes."""
        m = _RULE_RE.match(text.strip())
        if m is None:
            raise SpecError(source, path, f"{text!r} is not an rctl rule (subject:id:resource:action=amount[/per])")
        if m["subject"] != "jail":
            raise SpecError(source, path, f"rule {text!r} has subject {m['subject']!r}; only jail rules describe a jail")
        if not m["id"]:
            raise SpecError(source, path, f"rule {text!r} has an empty jail name")
        reason = check_rctl(m["resource"], m["action"], m["per"])
        if reason:
            raise SpecError(source, path, f"rule {text!r}: {reason}")
        amount = int(m["amount"]) * _SUFFIX[m["suffix"].lower()]
        return cls(subject_id=m["id"], resource=m["resource"], action=m["action"], amount=amount, per=m["per"])


@dataclass(frozen=True, slots=True)
class Mount:
    """A file system for the jail; ``destination`` is inside the jail root."""

    fstype: str
    source: str
    destination: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "fstype": self.fstype,
            "source": self.source,
            "destination": self.destination,
            "options": list(self.options),
        }


@dataclass(frozen=True, slots=True)
class DevfsRuleset:
    """A devfs(8) ruleset for the jail's /dev: number and rule bodies."""

    number: int
    rules: tuple[str, ...]

    def commands(self) -> list[str]:
        """devfs(8) commands, run on the host in exec.prepare (before mount.devfs)."""
        cmds = [f"devfs rule -s {self.number} delset"]
        cmds += [f"devfs rule -s {self.number} {rule}" for rule in self.rules]
        return cmds


@dataclass(frozen=True, slots=True)
class JailPlan:
    """What a FreeBSD jail needs to match an OCI container (see module doc)."""

    name: str
    params: Mapping[str, ParamValue]
    rctl: tuple[RctlRule, ...] = ()
    mounts: tuple[Mount, ...] = ()
    losses: tuple[Loss, ...] = ()
    exec: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    devfs_ruleset: DevfsRuleset | None = None
    process: Mapping[str, Any] | None = None
    throttle_devices: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jail": {"name": self.name, "params": dict(self.params)},
            "rctl": [str(rule) for rule in self.rctl],
            "mounts": [m.to_json() for m in self.mounts],
            "losses": [loss.to_json() for loss in self.losses],
            "exec": {phase: list(cmds) for phase, cmds in self.exec.items()},
            "devfs_ruleset": (
                None
                if self.devfs_ruleset is None
                else {"number": self.devfs_ruleset.number, "rules": list(self.devfs_ruleset.rules)}
            ),
            "process": self.process,
            "throttle_devices": {k: {"major": v[0], "minor": v[1]} for k, v in self.throttle_devices.items()},
            "annotations": dict(self.annotations),
        }
        return out

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<jail.json>") -> JailPlan:
        """Rebuild a plan from its JSON form; SpecError(source, JSON path, reason) if malformed."""

        def need(cond: bool, path: str, reason: str) -> None:
            if not cond:
                raise SpecError(source, path, reason)

        need(isinstance(data, dict), "", "expected a JSON object with jail, rctl, mounts, losses")
        jail = data.get("jail")
        need(isinstance(jail, dict), "jail", "expected an object {name, params}")
        name = jail.get("name")
        need(isinstance(name, str) and bool(name), "jail.name", f"expected a non-empty string, got {name!r}")
        need("." not in name, "jail.name", f"jail name {name!r} must not contain '.'")
        params = jail.get("params", {})
        need(isinstance(params, dict), "jail.params", "expected an object of jail parameters")
        for key, value in params.items():
            reason = check_param(key, value)
            need(reason is None, f"jail.params[{key!r}]", reason or "")
        rules_raw = data.get("rctl", [])
        need(isinstance(rules_raw, list), "rctl", "expected a list of rule strings")
        rules = []
        for i, text in enumerate(rules_raw):
            need(isinstance(text, str), f"rctl[{i}]", f"expected a rule string, got {text!r}")
            rule = RctlRule.parse(text, source=source, path=f"rctl[{i}]")
            need(rule.subject_id == name, f"rctl[{i}]", f"rule is for jail {rule.subject_id!r}, not {name!r}")
            rules.append(rule)
        mounts_raw = data.get("mounts", [])
        need(isinstance(mounts_raw, list), "mounts", "expected a list of mounts")
        mounts = []
        for i, m in enumerate(mounts_raw):
            need(isinstance(m, dict), f"mounts[{i}]", "expected an object {fstype, source, destination, options}")
            for key in ("fstype", "source", "destination"):
                need(isinstance(m.get(key), str), f"mounts[{i}].{key}", f"expected a string, got {m.get(key)!r}")
            opts = m.get("options", [])
            need(
                isinstance(opts, list) and all(isinstance(o, str) for o in opts),
                f"mounts[{i}].options",
                "expected a list of strings",
            )
            mounts.append(Mount(m["fstype"], m["source"], m["destination"], tuple(opts)))
        losses_raw = data.get("losses", [])
        need(isinstance(losses_raw, list), "losses", "expected a list")
        losses = []
        for i, item in enumerate(losses_raw):
            need(
                isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("reason"), str),
                f"losses[{i}]",
                "expected an object {path, value, reason}",
            )
            losses.append(Loss(item["path"], item.get("value"), item["reason"]))
        exec_raw = data.get("exec") or {}
        need(isinstance(exec_raw, dict), "exec", "expected an object phase -> list of commands")
        exec_: dict[str, tuple[str, ...]] = {}
        for phase, cmds in exec_raw.items():
            need(phase in EXEC_PHASES, f"exec.{phase}", f"unknown exec phase; expected one of {', '.join(EXEC_PHASES)}")
            need(
                isinstance(cmds, list) and all(isinstance(c, str) for c in cmds),
                f"exec.{phase}",
                "expected a list of command strings",
            )
            exec_[phase] = tuple(cmds)
        devfs_raw = data.get("devfs_ruleset")
        devfs = None
        if devfs_raw is not None:
            need(isinstance(devfs_raw, dict), "devfs_ruleset", "expected an object {number, rules}")
            number = devfs_raw.get("number")
            need(
                isinstance(number, int) and not isinstance(number, bool) and 0 < number <= 65535,
                "devfs_ruleset.number",
                f"expected an integer 1..65535, got {number!r}",
            )
            rules_d = devfs_raw.get("rules", [])
            need(
                isinstance(rules_d, list) and all(isinstance(r, str) for r in rules_d),
                "devfs_ruleset.rules",
                "expected a list of strings",
            )
            devfs = DevfsRuleset(number, tuple(rules_d))
        process = data.get("process")
        need(process is None or isinstance(process, dict), "process", "expected an object or null")
        td_raw = data.get("throttle_devices") or {}
        need(isinstance(td_raw, dict), "throttle_devices", "expected an object resource -> {major, minor}")
        throttle: dict[str, tuple[int, int]] = {}
        for res, dev in td_raw.items():
            ok = isinstance(dev, dict) and all(
                isinstance(dev.get(k), int) and not isinstance(dev.get(k), bool) for k in ("major", "minor")
            )
            need(ok, f"throttle_devices.{res}", "expected {major: int, minor: int}")
            throttle[res] = (dev["major"], dev["minor"])
        ann = data.get("annotations") or {}
        need(
            isinstance(ann, dict) and all(isinstance(v, str) for v in ann.values()),
            "annotations",
            "expected an object of strings",
        )
        return cls(
            name=name,
            params=dict(params),
            rctl=tuple(rules),
            mounts=tuple(mounts),
            losses=tuple(losses),
            exec=exec_,
            devfs_ruleset=devfs,
            process=process,
            throttle_devices=throttle,
            annotations=dict(ann),
        )
