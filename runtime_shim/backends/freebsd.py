"""The FreeBSD jail backend: a translated plan becomes jail(8), rctl(8), jexec.

UNTESTED ON A REAL FREEBSD HOST. Written strictly against
``reference/freebsd/`` (jail-params.md, rctl.md, tools-output.md) and tested
with :class:`~runtime_shim.backends.runner.RecordingRunner`, which records the
commands and replays outputs composed by hand from those tables.

Input is the translator's plan in its JSON (dict) form, so this module does
not depend on the translator's classes::

    {"jail": {"name": "web", "params": {"path": "/jails/web", "host.hostname": "web", ...}},
     "rctl": ["memoryuse:deny=268435456", "jail:web:maxproc:deny=64", {...}, ...],
     "mounts": [{"type": "nullfs", "source": "/data", "target": "/data", "options": ["ro"]}, ...],
     "devfs": {"ruleset": 10, "rules": ["path null unhide", ...]},
     "exec": {"args": [...], "env": ["K=V"], "cwd": "/", "prestart": [...], "poststop": [...]},
     "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
     "losses": [...]}

What it runs (see docs/freebsd.md for the exact lines):

create
    1. ``sysctl -n kern.racct.enable`` when the plan has RCTL rules; anything
       but ``1`` refuses the create (the limits would be lost; rctl.md 1).
    2. ``devfs rule -s N delset`` then ``devfs rule -s N add ...`` for each
       devfs rule of the plan (the ruleset is defined afresh).
    3. Mounts, in plan order, done by this backend with ``mount -t TYPE
       [-o OPTS] SOURCE PATH/TARGET`` (nullfs, tmpfs, linprocfs, linsysfs,
       devfs, fdescfs, procfs); a devfs mount then gets ``devfs -m TARGET
       ruleset N`` and ``devfs -m TARGET rule applyset`` (N: the plan's devfs
       ruleset, else ``devfs_ruleset``, else 4 as jail(8) ``mount.devfs``). jail(8)'s own
       ``mount``/``mount.*`` pseudo-parameters are NOT used: they are not
       stored in the kernel, so ``jail -r NAME`` without a jail.conf entry
       would not unmount them (jail-params.md 5, 6).
    4. ``jail -c name=NAME path=PATH persist PARAM...`` (booleans as ``name``
       / ``noname``, lists comma-joined; argv elements, no shell). The
       creation-phase ``exec.*`` hooks of the plan go on this line, so
       jail(8) runs them in its documented order.
    5. ``rctl -a jail:NAME:RESOURCE:ACTION=AMOUNT[/PER]``, one command per
       rule (subject = the jail name, rctl.md 3).
    If any step fails, what was done is undone in reverse: ``rctl -r RULE``
    for each added rule (last first), ``jail -r NAME``, ``umount TARGET``
    (last first), ``devfs rule -s N delset``; then the error is raised.
start / exec
    ``jexec NAME ARGS...``; with env, cwd or rlimits the jail's ``/usr/bin/env
    -i K=V ... /bin/sh -c 'ulimit -n N && cd -- DIR && exec "$@"' sh ARGS``.
state
    ``jls --libxo json -n -j NAME`` (libxo options first, where every libxo
    program takes them; an absent jail is confirmed with ``jls --libxo json
    -n``, since jls's error text is not in the reference).
delete
    host ``exec.prestop``, jail-side ``exec.stop``, ``jail -r NAME``, host
    ``exec.poststop``, ``rctl -r jail:NAME``, ``umount`` (reverse), ``devfs
    rule -s N delset``, host ``exec.release`` -- jail(8)'s remove order. Every
    step is attempted; failures are reported together.

Refused: mount targets that are relative or contain ``..``; unknown plan
keys; RCTL rules that rctl.md section 6 says the kernel rejects; mount types
other than the seven above. Not done (reported, never silently dropped):
rlimits other than RLIMIT_NOFILE, and a process user (jexec -u is not in the
reference).
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from capture.errors import PlatformError, RefusedError, SpecError
from runtime_shim.backends.freebsd_parsers import (
    JailInfo,
    JailValue,
    RctlRule,
    parse_jls_json,
    parse_rctl_rule,
    parse_rctl_rules,
    parse_rctl_usage,
    rctl_rule_problem,
    render_jail_param,
)
from runtime_shim.backends.runner import CommandRunner, CompletedCommand, check

UNTESTED = "untested on a real FreeBSD host"

MOUNT_TYPES: tuple[str, ...] = ("nullfs", "tmpfs", "linprocfs", "linsysfs", "devfs", "fdescfs", "procfs")
CREATE_PHASES: tuple[str, ...] = ("prepare", "prestart", "created", "start", "poststart")
REMOVE_PHASES: tuple[str, ...] = ("prestop", "stop", "poststop", "release")
_PLAN_KEYS = frozenset({"jail", "rctl", "mounts", "losses", "exec", "devfs", "rlimits"})
_EXEC_PROCESS_KEYS = frozenset({"args", "env", "cwd", "user"})
RLIM_INFINITY = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Mount:
    """One file system mounted by the backend (target inside the jail root)."""

    fstype: str
    source: str
    target: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DevfsRules:
    """A devfs ruleset number and the rules the plan adds to it (devfs(8) words)."""

    ruleset: int
    rules: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """The container's process, run with jexec."""

    args: tuple[str, ...]
    env: tuple[str, ...] | None = None
    cwd: str | None = None
    nofile: tuple[int, int] | None = None  # (soft, hard)


@dataclass(frozen=True, slots=True)
class JailSpec:
    """A validated plan: everything the backend will do, nothing more."""

    name: str
    path: str
    params: tuple[tuple[str, JailValue], ...]
    rctl: tuple[RctlRule, ...] = ()
    mounts: tuple[Mount, ...] = ()
    devfs: DevfsRules | None = None
    process: ProcessSpec | None = None
    hooks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (phase, commands)
    losses: tuple[str, ...] = ()
    unapplied: tuple[str, ...] = ()  # plan items this backend cannot honour

    def hook(self, phase: str) -> tuple[str, ...]:
        for p, cmds in self.hooks:
            if p == phase:
                return cmds
        return ()


# ---------------------------------------------------------------------------
# plan (JSON dict) -> JailSpec


def _str_list(source: str, path: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SpecError(source, path, f"expected a string or a list of strings, got {value!r}")


def _param_value(source: str, path: str, value: Any) -> JailValue:
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SpecError(source, path, f"expected bool, int, string or list of strings, got {value!r}")


def _jail_path_ok(p: str) -> bool:
    return p.startswith("/") and ".." not in p.split("/") and "\0" not in p


def _parse_rule(source: str, path: str, name: str, value: Any) -> RctlRule:
    if isinstance(value, str):
        text = value
        if text.count(":") == 1:  # "resource:action=amount[/per]" -> subject is this jail
            text = f"jail:{name}:{text}"
        try:
            rule = parse_rctl_rule(text, allow_suffix=True)
        except Exception as err:
            raise SpecError(source, path, f"{value!r} is not an rctl rule: {err}") from None
    elif isinstance(value, dict):
        unknown = set(value) - {"subject", "subject_id", "resource", "action", "amount", "per"}
        if unknown:
            raise SpecError(source, path, f"unknown keys {sorted(unknown)} (expected resource, action, amount, per)")
        amount = value.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise SpecError(source, f"{path}.amount", f"expected an integer, got {amount!r}")
        for key in ("resource", "action"):
            if not isinstance(value.get(key), str):
                raise SpecError(source, f"{path}.{key}", f"expected a string, got {value.get(key)!r}")
        per = value.get("per")
        if per is not None and not isinstance(per, str):
            raise SpecError(source, f"{path}.per", f"expected a string, got {per!r}")
        rule = RctlRule(
            str(value.get("subject", "jail")), str(value.get("subject_id", name)),
            value["resource"], value["action"], amount, per,
        )
    else:
        raise SpecError(source, path, f"expected a rule string or object, got {value!r}")
    if rule.subject != "jail" or rule.subject_id != name:
        raise SpecError(source, path, f"rule subject is {rule.subject}:{rule.subject_id}, expected jail:{name}")
    problem = rctl_rule_problem(rule)
    if problem is not None:
        raise SpecError(source, path, f"{rule.render()}: {problem}")
    return rule


def _parse_mount(source: str, path: str, value: Any) -> Mount:
    if isinstance(value, str):  # fstab(5) line: special file type options [dump pass]
        f = value.split()
        if len(f) < 3:
            raise SpecError(source, path, f"fstab line {value!r} needs at least special, file, type")
        src, target, fstype = f[0], f[1], f[2]
        opts = tuple(o for o in (f[3].split(",") if len(f) > 3 else []) if o)
    elif isinstance(value, dict):
        unknown = set(value) - {"type", "fstype", "source", "target", "destination", "options"}
        if unknown:
            raise SpecError(source, path, f"unknown keys {sorted(unknown)}")
        fstype_v = value.get("type", value.get("fstype"))
        target_v = value.get("target", value.get("destination"))
        src_v = value.get("source", fstype_v)
        raw_opts = value.get("options", [])
        if isinstance(raw_opts, str):
            raw_opts = [o for o in raw_opts.split(",") if o]
        if not isinstance(raw_opts, list) or not all(isinstance(o, str) for o in raw_opts):
            raise SpecError(source, f"{path}.options", f"expected a list of strings, got {raw_opts!r}")
        opts = tuple(raw_opts)
        if not isinstance(fstype_v, str) or not isinstance(target_v, str) or not isinstance(src_v, str):
            raise SpecError(source, path, "type, source and target must be strings")
        fstype, target, src = fstype_v, target_v, src_v
    else:
        raise SpecError(source, path, f"expected an fstab line or an object, got {value!r}")
    if fstype not in MOUNT_TYPES:
        raise SpecError(source, f"{path}.type", f"mount type {fstype!r} is not one of {', '.join(MOUNT_TYPES)}")
    if not _jail_path_ok(target):
        raise SpecError(source, f"{path}.target", f"{target!r} must be absolute inside the jail and contain no '..'")
    if fstype == "nullfs" and not src.startswith("/"):
        raise SpecError(source, f"{path}.source", f"nullfs source {src!r} must be an absolute host path")
    for o in opts:
        if "," in o or not o:
            raise SpecError(source, f"{path}.options", f"option {o!r} is empty or contains ','")
    return Mount(fstype, src, posixpath.normpath(target), opts)


def spec_from_plan(plan: Mapping[str, Any], source: str = "plan") -> JailSpec:
    """Validate the translator's JSON plan; SpecError names the bad field."""
    if not isinstance(plan, Mapping):
        raise SpecError(source, "", f"expected an object, got {type(plan).__name__}")
    unknown = set(plan) - _PLAN_KEYS
    if unknown:
        raise SpecError(source, "", f"unknown keys {sorted(unknown)} (expected {', '.join(sorted(_PLAN_KEYS))})")
    jail = plan.get("jail")
    if not isinstance(jail, Mapping):
        raise SpecError(source, "jail", "missing or not an object")
    name = jail.get("name")
    if not isinstance(name, str) or not name or "." in name or name.isdigit() or any(c in name for c in ": ,\t\n"):
        raise SpecError(source, "jail.name", f"{name!r} is not a usable jail name (non-empty, no '.', ':', ',' or spaces, not numeric)")
    raw_params = jail.get("params", {})
    if not isinstance(raw_params, Mapping):
        raise SpecError(source, "jail.params", "not an object")
    params: list[tuple[str, JailValue]] = []
    path: str | None = None
    for key, value in raw_params.items():
        where = f"jail.params.{key}"
        if not isinstance(key, str) or not key or "=" in key or any(c.isspace() for c in key):
            raise SpecError(source, where, "a jail parameter name must be non-empty without '=' or whitespace")
        if key == "name":
            if value != name:
                raise SpecError(source, where, f"{value!r} differs from jail.name={name!r}")
            continue
        if key == "path":
            if not isinstance(value, str) or not _jail_path_ok(value):
                raise SpecError(source, where, f"{value!r} is not an absolute path")
            path = posixpath.normpath(value)
            continue
        if key == "persist":
            if value is not True:
                raise SpecError(source, where, "the backend creates persistent jails (persist must be true or absent)")
            continue
        if key.startswith("exec.") or key in ("command", "mount", "mount.fstab", "mount.devfs", "mount.fdescfs", "mount.procfs"):
            raise SpecError(source, where, "exec.* go in the plan's 'exec' key and mounts in 'mounts' (jail -r could not undo them)")
        params.append((key, _param_value(source, where, value)))
    if path is None:
        raise SpecError(source, "jail.params.path", "missing (the jail root directory)")

    rctl = tuple(
        _parse_rule(source, f"rctl[{i}]", name, r) for i, r in enumerate(_list(source, "rctl", plan.get("rctl", [])))
    )
    mounts = tuple(_parse_mount(source, f"mounts[{i}]", m) for i, m in enumerate(_list(source, "mounts", plan.get("mounts", []))))

    devfs: DevfsRules | None = None
    raw_devfs = plan.get("devfs")
    if raw_devfs is not None:
        if not isinstance(raw_devfs, Mapping):
            raise SpecError(source, "devfs", "not an object")
        rs = raw_devfs.get("ruleset")
        if isinstance(rs, bool) or not isinstance(rs, int) or not 0 < rs <= 65535:
            raise SpecError(source, "devfs.ruleset", f"{rs!r} is not in 1..65535")
        rules = tuple(
            tuple(shlex.split(r)) if isinstance(r, str) else tuple(_str_list(source, f"devfs.rules[{i}]", r))
            for i, r in enumerate(_list(source, "devfs.rules", raw_devfs.get("rules", [])))
        )
        devfs = DevfsRules(rs, rules)

    unapplied: list[str] = []
    process: ProcessSpec | None = None
    hooks: list[tuple[str, tuple[str, ...]]] = []
    raw_exec = plan.get("exec")
    nofile: tuple[int, int] | None = None
    for i, rl in enumerate(_list(source, "rlimits", plan.get("rlimits", []))):
        if not isinstance(rl, Mapping) or not isinstance(rl.get("type"), str):
            raise SpecError(source, f"rlimits[{i}]", f"expected {{type, soft, hard}}, got {rl!r}")
        soft, hard = rl.get("soft"), rl.get("hard")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (soft, hard)):
            raise SpecError(source, f"rlimits[{i}]", f"soft/hard must be non-negative integers, got {soft!r}/{hard!r}")
        assert isinstance(soft, int) and isinstance(hard, int)
        if rl["type"] == "RLIMIT_NOFILE":
            nofile = (soft, hard)
        else:
            unapplied.append(f"rlimits[{i}] {rl['type']}: only RLIMIT_NOFILE is applied (sh ulimit -n)")
    if raw_exec is not None:
        if not isinstance(raw_exec, Mapping):
            raise SpecError(source, "exec", "not an object")
        unknown = set(raw_exec) - _EXEC_PROCESS_KEYS - set(CREATE_PHASES) - set(REMOVE_PHASES)
        if unknown:
            raise SpecError(source, "exec", f"unknown keys {sorted(unknown)}")
        for phase in (*CREATE_PHASES, *REMOVE_PHASES):
            if phase in raw_exec:
                hooks.append((phase, _str_list(source, f"exec.{phase}", raw_exec[phase])))
        if "args" in raw_exec:
            args = _str_list(source, "exec.args", raw_exec["args"])
            if not args:
                raise SpecError(source, "exec.args", "empty")
            env = _str_list(source, "exec.env", raw_exec["env"]) if "env" in raw_exec else None
            for j, kv in enumerate(env or ()):
                if "=" not in kv or kv.startswith("="):
                    raise SpecError(source, f"exec.env[{j}]", f"{kv!r} is not KEY=VALUE")
            cwd = raw_exec.get("cwd")
            if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
                raise SpecError(source, "exec.cwd", f"{cwd!r} is not an absolute path")
            user = raw_exec.get("user")
            if user not in (None, "0", "0:0", "root", 0):
                unapplied.append(f"exec.user={user!r}: jexec user selection is not in the reference; runs as root")
            process = ProcessSpec(args, env, cwd, nofile)
    if nofile is not None and process is None:
        unapplied.append("rlimits RLIMIT_NOFILE: no exec.args to apply it to")

    losses = tuple(_loss_text(x) for x in _list(source, "losses", plan.get("losses", [])))
    return JailSpec(name, path, tuple(params), rctl, mounts, devfs, process, tuple(hooks), losses, tuple(unapplied))


def _loss_text(item: Any) -> str:
    if isinstance(item, Mapping) and "path" in item and "reason" in item:
        return f"{item['path']}={json.dumps(item.get('value'), sort_keys=True)}: {item['reason']}"
    return item if isinstance(item, str) else json.dumps(item, sort_keys=True)


def _list(source: str, path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(source, path, f"expected a list, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# command lines (pure)


@dataclass(frozen=True, slots=True)
class Tools:
    """Program paths (FreeBSD base locations by default)."""

    jail: str = "jail"
    jexec: str = "jexec"
    jls: str = "jls"
    rctl: str = "rctl"
    mount: str = "mount"
    umount: str = "umount"
    devfs: str = "devfs"
    sysctl: str = "sysctl"
    sh: str = "/bin/sh"


def host_target(spec: JailSpec, m: Mount) -> str:
    """Where mount *m* goes on the host: the jail path joined with its target."""
    return posixpath.join(spec.path, m.target.lstrip("/")) if m.target != "/" else spec.path


def devfs_mount_ruleset(spec: JailSpec) -> int:
    """Ruleset applied to a devfs the backend mounts: the plan's devfs ruleset,
    else the jail's ``devfs_ruleset`` parameter, else 4 (``devfsrules_jail``,
    what jail(8) ``mount.devfs`` uses; jail-params.md 2). Never an unfiltered devfs.
    """
    if spec.devfs is not None:
        return spec.devfs.ruleset
    for key, value in spec.params:
        if key == "devfs_ruleset" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 4


def jail_create_argv(spec: JailSpec, tools: Tools = Tools()) -> list[str]:
    """``jail -c name=NAME path=PATH persist PARAM... exec.PHASE=CMD...``."""
    argv = [tools.jail, "-c", f"name={spec.name}", f"path={spec.path}", "persist"]
    for key, value in spec.params:
        argv += render_jail_param(key, value)
    for phase, cmds in spec.hooks:
        if phase in CREATE_PHASES:
            argv += [f"exec.{phase}={c}" for c in cmds]
    return argv


def mount_argv(spec: JailSpec, m: Mount, tools: Tools = Tools()) -> list[str]:
    argv = [tools.mount, "-t", m.fstype]
    if m.options:
        argv += ["-o", ",".join(m.options)]
    return argv + [m.source, host_target(spec, m)]


def rctl_add_argv(rule: RctlRule, tools: Tools = Tools()) -> list[str]:
    return [tools.rctl, "-a", rule.render()]


def rctl_remove_rule_argv(rule: RctlRule, tools: Tools = Tools()) -> list[str]:
    return [tools.rctl, "-r", rule.render()]


def jexec_argv(spec: JailSpec, argv: Sequence[str] | None = None, tools: Tools = Tools()) -> list[str]:
    """jexec line for the plan's process (or *argv* with the same env/cwd)."""
    proc = spec.process
    args = list(argv) if argv is not None else (list(proc.args) if proc else [])
    if not args:
        raise SpecError("plan", "exec.args", "no command to run in the jail")
    out = [tools.jexec, spec.name]
    if proc is None or (proc.env is None and proc.cwd is None and proc.nofile is None):
        return out + args
    if proc.env is not None:
        out += ["/usr/bin/env", "-i", *proc.env]
    steps: list[str] = []
    if proc.nofile is not None:
        soft, hard = proc.nofile
        h = "unlimited" if hard == RLIM_INFINITY else str(hard)
        s = "unlimited" if soft == RLIM_INFINITY else str(soft)
        # soft first when it fits under the current hard limit (ignored if not), so
        # lowering the hard limit never meets a larger soft one: FreeBSD clamps
        # the soft limit there, Linux refuses (EINVAL). Found with the double's jexec.
        steps += [f"{{ ulimit -S -n {s} 2>/dev/null || :; }}", f"ulimit -H -n {h}", f"ulimit -S -n {s}"]
    if proc.cwd is not None:
        steps.append(f"cd -- {shlex.quote(proc.cwd)}")
    if not steps:
        return out + args
    steps.append('exec "$@"')
    return out + [tools.sh, "-c", " && ".join(steps), "sh", *args]


# ---------------------------------------------------------------------------
# the backend


@dataclass(frozen=True, slots=True)
class CreateResult:
    name: str
    commands: tuple[tuple[str, ...], ...]
    losses: tuple[str, ...]
    unapplied: tuple[str, ...]


class _LoggingRunner:
    """Keeps the argv of every command the backend ran (for CreateResult)."""

    def __init__(self, inner: CommandRunner) -> None:
        self.inner = inner
        self.log: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        self.log.append(tuple(argv))
        return self.inner.run(argv, input=input)


@dataclass(slots=True)
class _Undo:
    steps: list[tuple[str, list[str]]] = field(default_factory=list)


class JailBackend:
    """Creates, runs, inspects and removes jails through a CommandRunner.

    Untested on a real FreeBSD host (recorded outputs only).
    """

    def __init__(self, runner: CommandRunner, tools: Tools = Tools()) -> None:
        self.runner: CommandRunner = _LoggingRunner(runner)
        self.tools = tools

    # -- helpers ----------------------------------------------------------
    def _run(self, argv: Sequence[str], what: str) -> CompletedCommand:
        return check(self.runner.run(list(argv)), what)

    def _undo(self, undo: _Undo) -> list[str]:
        problems: list[str] = []
        for what, argv in reversed(undo.steps):
            try:
                res = self.runner.run(argv)
            except PlatformError as err:
                problems.append(f"{what}: {err}")
                continue
            if res.returncode != 0:
                problems.append(f"{what}: exit {res.returncode}: {res.stderr.strip()}")
        return problems

    # -- create -----------------------------------------------------------
    def create(self, plan: Mapping[str, Any] | JailSpec) -> CreateResult:
        """Build the jail of *plan*; on failure undo everything done so far."""
        spec = plan if isinstance(plan, JailSpec) else spec_from_plan(plan)
        t = self.tools
        log = self.runner.log if isinstance(self.runner, _LoggingRunner) else []
        start = len(log)
        if spec.rctl:
            res = self.runner.run([t.sysctl, "-n", "kern.racct.enable"])
            if res.returncode != 0 or res.stdout.strip() != "1":
                detail = res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}"
                raise RefusedError(
                    f"jail {spec.name}: {len(spec.rctl)} RCTL rule(s) cannot be applied: "
                    f"kern.racct.enable is not 1 ({detail}); set kern.racct.enable=1 in "
                    "/boot/loader.conf and reboot (rctl(8))"
                )
        undo = _Undo()
        try:
            if spec.devfs is not None and spec.devfs.rules:
                rs = str(spec.devfs.ruleset)
                undo.steps.append((f"devfs ruleset {rs}", [t.devfs, "rule", "-s", rs, "delset"]))
                self._run([t.devfs, "rule", "-s", rs, "delset"], f"devfs ruleset {rs} reset")
                for words in spec.devfs.rules:
                    self._run([t.devfs, "rule", "-s", rs, "add", *words], f"devfs rule {' '.join(words)}")
            for m in spec.mounts:
                target = host_target(spec, m)
                self._run(mount_argv(spec, m, t), f"mount {m.fstype} on {target}")
                undo.steps.append((f"unmount {target}", [t.umount, target]))
                if m.fstype == "devfs":
                    rs = str(devfs_mount_ruleset(spec))
                    self._run([t.devfs, "-m", target, "ruleset", rs], f"devfs ruleset {rs} on {target}")
                    self._run([t.devfs, "-m", target, "rule", "applyset"], f"devfs applyset on {target}")
            self._run(jail_create_argv(spec, t), f"jail -c {spec.name}")
            undo.steps.append((f"remove jail {spec.name}", [t.jail, "-r", spec.name]))
            for rule in spec.rctl:
                self._run(rctl_add_argv(rule, t), f"rctl -a {rule.render()}")
                undo.steps.append((f"remove rule {rule.render()}", rctl_remove_rule_argv(rule, t)))
        except PlatformError as err:
            problems = self._undo(undo)
            if problems:
                raise PlatformError(
                    f"{err}; rollback incomplete: {'; '.join(problems)}",
                    errno=err.errno, command=err.command, stderr=err.stderr,
                ) from err
            raise
        return CreateResult(spec.name, tuple(log[start:]), spec.losses, spec.unapplied)

    # -- run --------------------------------------------------------------
    def exec(self, spec: JailSpec, argv: Sequence[str] | None = None, input: str | None = None) -> CompletedCommand:
        """Run *argv* (default: the plan's process) in the jail and wait."""
        return self.runner.run(jexec_argv(spec, argv, self.tools), input=input)

    # -- inspect ----------------------------------------------------------
    def state(self, name: str) -> JailInfo | None:
        """The jail's parameters from ``jls --libxo json -n -j NAME``, or None."""
        res = self.runner.run([self.tools.jls, "--libxo", "json", "-n", "-j", name])
        if res.returncode == 0:
            jails = parse_jls_json(res.stdout)
            for j in jails:
                if j.name == name:
                    return j
            raise PlatformError(f"jls -j {name} listed no jail named {name}", command=list(res.argv))
        # jls's "not found" text is not in the reference: confirm with a full listing.
        every = check(self.runner.run([self.tools.jls, "--libxo", "json", "-n"]), "jls")
        if any(j.name == name for j in parse_jls_json(every.stdout)):
            raise PlatformError(f"jls -j {name} failed for an existing jail", command=list(res.argv), stderr=res.stderr)
        return None

    def rules(self, name: str) -> list[RctlRule]:
        """The RCTL rules of jail *name* (``rctl jail:NAME``)."""
        res = self._run([self.tools.rctl, f"jail:{name}"], f"rctl jail:{name}")
        return parse_rctl_rules(res.stdout)

    def usage(self, name: str) -> dict[str, int]:
        """Resource usage of jail *name* (``rctl -u jail:NAME``)."""
        res = self._run([self.tools.rctl, "-u", f"jail:{name}"], f"rctl -u jail:{name}")
        return parse_rctl_usage(res.stdout)

    # -- delete -----------------------------------------------------------
    def delete(self, plan: Mapping[str, Any] | JailSpec) -> None:
        """Remove the jail, its RCTL rules and its mounts (jail(8) order)."""
        spec = plan if isinstance(plan, JailSpec) else spec_from_plan(plan)
        t = self.tools
        problems: list[str] = []

        def attempt(argv: list[str], what: str) -> None:
            try:
                res = self.runner.run(argv)
            except PlatformError as err:
                problems.append(f"{what}: {err}")
                return
            if res.returncode != 0:
                problems.append(f"{what}: exit {res.returncode}: {res.stderr.strip()}")

        for cmd in spec.hook("prestop"):
            attempt([t.sh, "-c", cmd], "exec.prestop")
        for cmd in spec.hook("stop"):
            attempt([t.jexec, spec.name, t.sh, "-c", cmd], "exec.stop")
        attempt([t.jail, "-r", spec.name], f"jail -r {spec.name}")
        for cmd in spec.hook("poststop"):
            attempt([t.sh, "-c", cmd], "exec.poststop")
        if spec.rctl:
            attempt([t.rctl, "-r", f"jail:{spec.name}"], f"rctl -r jail:{spec.name}")
        for m in reversed(spec.mounts):
            attempt([t.umount, host_target(spec, m)], f"umount {host_target(spec, m)}")
        if spec.devfs is not None and spec.devfs.rules:
            attempt([t.devfs, "rule", "-s", str(spec.devfs.ruleset), "delset"], "devfs delset")
        for cmd in spec.hook("release"):
            attempt([t.sh, "-c", cmd], "exec.release")
        if problems:
            raise PlatformError(f"removing jail {spec.name}: " + "; ".join(problems))


def command_line(argv: Sequence[str]) -> str:
    """Shell-quoted rendering of *argv* for logs and docs."""
    return shlex.join(argv)
