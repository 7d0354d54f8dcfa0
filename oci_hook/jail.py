"""``hetmig-hook jail created|poststop NAME``: the jail(8) exec.* hook.

UNTESTED ON A REAL FREEBSD HOST: tested only with a runner that records the
commands it would run (see tests/test_hook_jail.py), written against
reference/freebsd/rctl.md through :mod:`runtime_shim.backends.freebsd`.

``created`` (jail.conf ``exec.created``: the jail exists, nothing runs in it
yet) translates BUNDLE/config.json with the same translator as the OCI hook,
checks that RACCT is enabled when there are rules (``sysctl -n
kern.racct.enable``), applies the plan's RCTL rules (``rctl -a
jail:NAME:...``, one per rule; on a failure the rules already added are
removed again, last first) and records the jail in hetmig's state directory
with its translation. ``poststop`` (``exec.poststop``) removes the jail's
rules (``rctl -r jail:NAME``) and the record.

It refuses a bundle whose spec does not translate (exit 2/3 via the error's
code) and never applies half a rule set.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from capture.errors import BadInputError, PlatformError
from runtime_shim.backends.runner import CommandRunner, SubprocessRunner
from runtime_shim.state import ContainerRecord, StateDir, Translation, TranslationState, check_id


def _plan_for(name: str, bundle: str) -> dict[str, Any]:
    from runtime_shim.translate import load_rules, oci_to_freebsd

    config = os.path.join(bundle, "config.json")
    try:
        with open(config, encoding="utf-8") as fh:
            spec = json.load(fh)
    except OSError as err:
        raise BadInputError(f"{config}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise BadInputError(f"{config}: not JSON ({err})") from None
    plan = oci_to_freebsd(spec, name, load_rules(), bundle=bundle)
    doc: dict[str, Any] = plan.to_json()
    return doc


def jail_created(store: StateDir, name: str, bundle: str, runner: CommandRunner | None = None) -> int:
    from runtime_shim.backends.freebsd import Tools, rctl_add_argv, rctl_remove_rule_argv, spec_from_plan
    from runtime_shim.state import _loss_text

    check_id(name)
    run = runner or SubprocessRunner(timeout=60)
    tools = Tools()
    bundle = os.path.abspath(bundle)
    plan = _plan_for(name, bundle)
    spec = spec_from_plan(plan)
    if spec.rctl:
        res = run.run([tools.sysctl, "-n", "kern.racct.enable"])
        if res.returncode != 0 or res.stdout.strip() != "1":
            raise PlatformError(
                f"jail {name}: kern.racct.enable is not 1; its {len(spec.rctl)} RCTL rules cannot be applied "
                "(set kern.racct.enable=1 in /boot/loader.conf and reboot)",
                command=list(res.argv),
                stderr=res.stderr,
            )
    added: list[Any] = []
    for rule in spec.rctl:
        res = run.run(rctl_add_argv(rule, tools))
        if res.returncode != 0:
            for done in reversed(added):
                run.run(rctl_remove_rule_argv(done, tools))
            raise PlatformError(
                f"jail {name}: rctl -a {rule.render()} failed (exit {res.returncode}); removed the "
                f"{len(added)} rules added before it",
                command=list(res.argv),
                stderr=res.stderr,
            )
        added.append(rule)
    losses = tuple(_loss_text(x) for x in plan.get("losses", []))
    record = ContainerRecord(
        id=name,
        pid=0,  # a jail has no init process of its own at exec.created
        bundle=bundle,
        runtime="jail",
        created=time.time(),
        annotations={"io.hetmig.rctl-rules": str(len(added))},
        translation=Translation(TranslationState.OK, losses=losses, plan=plan),
    )
    store.create(record, replace=True)
    return 0


def jail_poststop(store: StateDir, name: str, runner: CommandRunner | None = None) -> int:
    from runtime_shim.backends.freebsd import Tools

    check_id(name)
    run = runner or SubprocessRunner(timeout=60)
    tools = Tools()
    try:
        record = store.load(name)
    except BadInputError:
        record = None
    rules = int(record.annotations.get("io.hetmig.rctl-rules", "0")) if record else 0
    if record is None or rules > 0:
        # no record: remove whatever rules a jail of that name has; harmless when none
        res = run.run([tools.rctl, "-r", f"jail:{name}"])
        if res.returncode != 0 and record is not None:
            raise PlatformError(f"jail {name}: rctl -r jail:{name} failed", command=list(res.argv), stderr=res.stderr)
    store.remove(name)
    return 0
