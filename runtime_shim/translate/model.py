"""Data the translator produces: the jail plan, RCTL rules, mounts and losses.

A :class:`JailPlan` is everything needed to make a FreeBSD jail that matches
an OCI config: jail(8) parameters, RCTL rules (subject ``jail:NAME``), file
systems to mount (fstab-like, destinations inside the jail), host-side
commands per jail(8) ``exec.*`` phase (cpuset), a devfs ruleset, the
per-process settings of the jailed process (args, env, rlimits) and the
losses of the translation. ``to_json``/``from_json`` give the JSON form that
``hetmig translate`` prints and reads (and that the FreeBSD jail backend
takes: keys jail, rctl, mounts, losses, exec, devfs, rlimits); ``from_json`` refuses malformed input
with :class:`SpecError` naming the JSON path.
"""

from __future__ import annotations

import json
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
MAX_AMOUNT_DIGITS = 20
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
        if len(m["amount"]) > MAX_AMOUNT_DIGITS:  # rctl(8) amounts are 64-bit; int() refuses > 4300 digits
            raise SpecError(source, path, f"rule {text[:60]!r}...: amount has {len(m['amount'])} digits "
                            f"(at most {MAX_AMOUNT_DIGITS})")
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
    """A devfs(8) ruleset for the jail's /dev: its number and rule bodies.

    Rule bodies are devfs(8) words after ``add`` (``hide``,
    ``path 'null' unhide``); the ruleset starts from ``hide`` so that only
    unhidden nodes are visible.
    """

    number: int
    rules: tuple[str, ...]

    def commands(self) -> list[str]:
        """devfs(8) command lines defining the ruleset (host side, before the devfs mount)."""
        cmds = [f"devfs rule -s {self.number} delset"]
        cmds += [f"devfs rule -s {self.number} add {rule}" for rule in self.rules]
        return cmds


@dataclass(frozen=True, slots=True)
class Rlimit:
    """A per-process limit for the jailed process (not an RCTL rule)."""

    type: str  # FreeBSD RLIMIT_* name
    linux: str  # the OCI (Linux) RLIMIT_* name it came from
    soft: int
    hard: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "linux": self.linux, "soft": self.soft, "hard": self.hard}


PROCESS_KEYS = ("args", "env", "cwd", "user")


@dataclass(frozen=True, slots=True)
class JailPlan:
    """What a FreeBSD jail needs to match an OCI container (see module doc).

    ``process`` holds the jailed process: ``args``, ``env``, ``cwd`` and
    ``user`` (``"UID:GID"``); ``exec`` the jail(8) ``exec.*`` host/jail
    commands by phase (cpuset in ``created``). JSON form::

        {"jail": {"name", "params"}, "rctl": [...], "mounts": [...],
         "losses": [...], "exec": {PHASE: [...], "args", "env", "cwd", "user"},
         "devfs": {"ruleset": N, "rules": [...]} | null, "rlimits": [...]}
    """

    name: str
    params: Mapping[str, ParamValue]
    rctl: tuple[RctlRule, ...] = ()
    mounts: tuple[Mount, ...] = ()
    losses: tuple[Loss, ...] = ()
    exec: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    devfs: DevfsRuleset | None = None
    process: Mapping[str, Any] | None = None
    rlimits: tuple[Rlimit, ...] = ()

    def to_json(self) -> dict[str, Any]:
        exec_: dict[str, Any] = {phase: list(cmds) for phase, cmds in self.exec.items()}
        if self.process:
            exec_.update({k: v for k, v in self.process.items() if k in PROCESS_KEYS})
        return {
            "jail": {"name": self.name, "params": dict(self.params)},
            "rctl": [str(rule) for rule in self.rctl],
            "mounts": [m.to_json() for m in self.mounts],
            "losses": [loss.to_json() for loss in self.losses],
            "exec": exec_,
            "devfs": None if self.devfs is None else {"ruleset": self.devfs.number, "rules": list(self.devfs.rules)},
            "rlimits": [rl.to_json() for rl in self.rlimits],
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<jail.json>") -> JailPlan:
        """Rebuild a plan from its JSON form; SpecError(source, JSON path, reason) if malformed."""

        def need(cond: bool, path: str, reason: str) -> None:
            if not cond:
                raise SpecError(source, path, reason)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        need(isinstance(data, dict), "", "expected a JSON object with jail, rctl, mounts, losses")
        unknown = set(data) - {"jail", "rctl", "mounts", "losses", "exec", "devfs", "rlimits"}
        need(not unknown, "", f"unknown keys {sorted(unknown)}")
        jail = data.get("jail")
        need(isinstance(jail, dict), "jail", "expected an object {name, params}")
        name = jail.get("name")
        need(isinstance(name, str) and bool(name), "jail.name", f"expected a non-empty string, got {name!r}")
        need("." not in name, "jail.name", f"jail name {name!r} must not contain '.'")
        params = jail.get("params", {})
        need(isinstance(params, dict), "jail.params", "expected an object of jail parameters")
        for key, value in params.items():
            reason = check_param(key, value)
            need(reason is None, f"jail.params[{json.dumps(key)}]", reason or "")
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
            unknown_m = set(m) - {"fstype", "type", "source", "destination", "target", "options"}
            need(not unknown_m, f"mounts[{i}]", f"unknown keys {sorted(unknown_m)}")
            # "type"/"target" are accepted as spellings of "fstype"/"destination"
            fields = {
                "fstype": m.get("fstype", m.get("type")),
                "source": m.get("source"),
                "destination": m.get("destination", m.get("target")),
            }
            for key, value in fields.items():
                need(isinstance(value, str), f"mounts[{i}].{key}", f"expected a string, got {value!r}")
            opts = m.get("options", [])
            need(
                isinstance(opts, list) and all(isinstance(o, str) for o in opts),
                f"mounts[{i}].options",
                "expected a list of strings",
            )
            mounts.append(Mount(str(fields["fstype"]), str(fields["source"]), str(fields["destination"]), tuple(opts)))
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
        process: dict[str, Any] = {}
        for phase, cmds in exec_raw.items():
            if phase in PROCESS_KEYS:
                process[phase] = cmds
                continue
            need(
                phase in EXEC_PHASES,
                f"exec.{phase}",
                f"unknown key; expected one of {', '.join(EXEC_PHASES + PROCESS_KEYS)}",
            )
            need(
                isinstance(cmds, list) and all(isinstance(c, str) for c in cmds),
                f"exec.{phase}",
                "expected a list of command strings",
            )
            exec_[phase] = tuple(cmds)
        for key in ("args", "env"):
            if key in process:
                v = process[key]
                need(isinstance(v, list) and all(isinstance(a, str) for a in v), f"exec.{key}", "expected a list of strings")
        if "cwd" in process:
            need(isinstance(process["cwd"], str), "exec.cwd", "expected a string")
        if "user" in process:
            need(
                isinstance(process["user"], str) and re.fullmatch(r"[0-9]+:[0-9]+", process["user"]) is not None,
                "exec.user",
                f"expected \"UID:GID\", got {process['user']!r}",
            )
        devfs_raw = data.get("devfs")
        devfs = None
        if devfs_raw is not None:
            need(isinstance(devfs_raw, dict), "devfs", "expected an object {ruleset, rules}")
            number = devfs_raw.get("ruleset")
            need(
                is_int(number) and 0 < number <= 65535,
                "devfs.ruleset",
                f"expected an integer 1..65535, got {number!r}",
            )
            rules_d = devfs_raw.get("rules", [])
            need(
                isinstance(rules_d, list) and all(isinstance(r, str) for r in rules_d),
                "devfs.rules",
                "expected a list of strings",
            )
            devfs = DevfsRuleset(number, tuple(rules_d))
        rl_raw = data.get("rlimits") or []
        need(isinstance(rl_raw, list), "rlimits", "expected a list")
        rlimits = []
        for i, rl in enumerate(rl_raw):
            ok = (
                isinstance(rl, dict)
                and isinstance(rl.get("type"), str)
                and is_int(rl.get("soft"))
                and is_int(rl.get("hard"))
                and rl["soft"] >= 0
                and rl["hard"] >= 0
            )
            need(ok, f"rlimits[{i}]", f"expected {{type, linux, soft, hard}} with non-negative integers, got {rl!r}")
            rlimits.append(Rlimit(rl["type"], str(rl.get("linux", rl["type"])), rl["soft"], rl["hard"]))
        return cls(
            name=name,
            params=dict(params),
            rctl=tuple(rules),
            mounts=tuple(mounts),
            losses=tuple(losses),
            exec=exec_,
            devfs=devfs,
            process=process or None,
            rlimits=tuple(rlimits),
        )
