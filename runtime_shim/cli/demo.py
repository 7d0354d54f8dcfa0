"""``hetmig demo``: the main job on one machine - a live container migration.

    hetmig demo [--json] [--memory-mib N] [--name NAME]

Builds two hosts as network namespaces joined by a veth pair
(:mod:`runtime_shim.migration.lab`), starts a counter container (busybox
rootfs, its own netns with 10.210.1.2 behind a veth to host A, memory/pids/CPU
limits) under runc on host A, starts ``hetmig agent`` on host B (mutual TLS,
keys from ``agent init``, pinned both ways), migrates the container live from
A to B with ``hetmig migrate`` and shows the counter going on on B (and its
address answering ping there). Then prints the report and the jail.conf +
rctl(8) rules the same container would get on a FreeBSD destination
(:mod:`runtime_shim.translate`; untested on a real FreeBSD host), and removes
everything it made (namespaces, the runc container, the restored copy with its
cgroups, the agent, temporary files) also on failure and Ctrl-C.

Progress goes to stderr. With ``--json`` the last stdout line is one JSON
object: downtime_ms, total_ms, rounds [{pages, bytes, ms}], counter_before
(last value A wrote), counter_after (first value seen on B), memory_bytes,
plus cutover_ms, ping_ok, limits_a / limits_b, counter_later. Exit 0 only when
counter_after >= counter_before and the counter runs on B. Needs root, runc,
ip, nsenter, /bin/busybox and cgroup v1 (memory, pids, cpu).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

from capture.errors import BadInputError, MigrationError, RefusedError

HELP = "live-migrate a counter container between two network-namespace hosts and show it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object with the results")
    parser.add_argument("--memory-mib", type=int, default=32, metavar="N",
                        help="memory the counter holds, MiB (default 32)")
    parser.add_argument("--name", default="counter", help="jail name in the FreeBSD translation (default counter)")


def _say(msg: str) -> None:
    sys.stderr.write(f"demo: {msg}\n")
    sys.stderr.flush()


def _preflight() -> None:
    if os.geteuid() != 0:
        raise RefusedError("hetmig demo needs root (network namespaces, runc, cgroups, ptrace)")
    missing = [t for t in ("runc", "ip", "nsenter", "ping") if shutil.which(t) is None]
    if not os.path.isfile("/bin/busybox"):
        missing.append("/bin/busybox (busybox-static)")
    if missing:
        raise RefusedError(f"hetmig demo needs {', '.join(missing)}")
    for ctrl in ("memory", "pids", "cpu"):
        if not os.path.exists(f"/sys/fs/cgroup/{ctrl}/cgroup.procs"):
            raise RefusedError(f"hetmig demo needs the cgroup v1 {ctrl} hierarchy at /sys/fs/cgroup/{ctrl}")


def _translation(spec: dict[str, Any], name: str) -> str:
    from runtime_shim.translate import load_rules, oci_to_freebsd, render_jail_conf, render_rctl

    plan = oci_to_freebsd(spec, name, load_rules(), bundle=f"/var/lib/hetmig/bundles/{name}")
    return render_jail_conf(plan) + "\n# rctl(8) rules (rctl -a each line):\n" + render_rctl(plan)


def run(args: argparse.Namespace) -> int:
    from runtime_shim.migration.lab import Lab

    if not 1 <= args.memory_mib <= 4096:
        raise BadInputError(f"--memory-mib={args.memory_mib} must be between 1 and 4096")
    _preflight()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        with Lab(memory_mib=args.memory_mib, log=_say) as lab:
            return _demo(lab, args)
    except KeyboardInterrupt:
        _say("interrupted; everything was cleaned up")
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)


def _demo(lab: Any, args: argparse.Namespace) -> int:
    lab.start_container()
    first = lab.read_counter("a")
    deadline = time.monotonic() + 30
    while lab.read_counter("a") < first + 3:  # it runs (and has filled its memory)
        if time.monotonic() > deadline:
            raise MigrationError("the counter does not advance on host A")
        time.sleep(0.05)
    limits_a = lab.limits()
    _say(f"counter on A: {lab.read_counter('a')}")
    lab.start_agent("b")
    _say(f"migrating {lab.cid} live: host A -> host B")
    proc = lab.migrate("a", "b")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for ev in events:
        kind = ev.get("event")
        if kind == "round":
            _say(f"  round {ev['round']}: {ev['pages']} pages, {ev['bytes']} bytes in {ev['ms']:.1f} ms")
        elif kind == "rootfs-base":
            _say(f"  root file system sent while running: {ev['bytes']} bytes in {ev['ms']:.1f} ms")
        elif kind in ("frozen", "precopy-converged", "rolled-back", "refused"):
            _say(f"  {kind}" + (f": {ev.get('reason')}" if ev.get("reason") else ""))
    if proc.returncode != 0:
        raise MigrationError(f"hetmig migrate failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    done = next((e for e in events if e.get("event") == "done"), None)
    if done is None:
        raise MigrationError("hetmig migrate reported no result")
    counter_after = lab.read_counter("b")
    counter_before = lab.read_counter("a")
    where = lab.where()
    time.sleep(0.5)
    counter_later = lab.read_counter("b")
    runs_on_b = where == ("agent", "b") and counter_later > counter_after
    ping_ok = lab.ping("b")
    limits_b = lab.limits() if where == ("agent", "b") else {}
    _say(f"counter: last on A {counter_before}, first on B {counter_after}, 0.5 s later on B {counter_later}")
    _say(f"container address {('answers' if ping_ok else 'does NOT answer')} ping on host B; "
         f"cgroup limits A {limits_a} / B {limits_b}")
    spec = json.loads((lab.bundle / "config.json").read_text())
    result = {
        "container": lab.cid, "downtime_ms": done["downtime_ms"], "total_ms": done["total_ms"],
        "rounds": [{"pages": r["pages"], "bytes": r["bytes"], "ms": r["ms"]} for r in done["rounds"]],
        "counter_before": counter_before, "counter_after": counter_after, "counter_later": counter_later,
        "memory_bytes": done["memory_bytes"], "cutover_ms": done.get("cutover_ms", {}), "tracker": done.get("tracker"),
        "target": done.get("target", {}),
        "ping_ok": ping_ok, "limits_a": limits_a, "limits_b": limits_b, "runs_on_b": runs_on_b,
    }
    out = sys.stdout
    out.write(f"migrated {lab.cid} from host A to host B: total {result['total_ms']:.1f} ms, "
              f"frozen (downtime) {result['downtime_ms']:.1f} ms, memory {result['memory_bytes']} bytes\n")
    for i, r in enumerate(result["rounds"], 1):
        out.write(f"  round {i}: {r['pages']} pages, {r['bytes']} bytes, {r['ms']:.1f} ms\n")
    out.write(f"  counter: {counter_before} on A before cut-over, {counter_after} on B after, "
              f"{counter_later} on B 0.5 s later\n")
    out.write("\n# The same container on a FreeBSD destination (jail.conf(5)):\n")
    out.write(_translation(spec, args.name))
    out.flush()
    ok = counter_after >= counter_before and runs_on_b
    if args.json:
        out.write(json.dumps({**result, "ok": ok}) + "\n")
    if not ok:
        _say("FAILED: the counter did not continue on host B")
        return 1
    _say("cleaning up")
    return 0
