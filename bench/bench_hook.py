"""Benchmark: what the hetmig OCI hook adds to ``runc run`` of a trivial container.

Runs a busybox container whose command is ``true`` with real runc, alternating
a bundle whose config.json carries hetmig's createRuntime + poststop hooks with
the same bundle without hooks, N runs each (default 21, at least 15), after one
warm-up run of each. Prints a table of median/min/max wall times and the added
median; exits 1 if the hook adds more than the budget (default 30 ms), 2 if
the tools are missing.

    python bench/bench_hook.py [--runs N] [--budget-ms MS] [--json]

It refuses to run fewer than 15 runs per variant (medians of fewer are noise
on this 2-core VM). Everything it creates (runc root, bundles, state dir)
lives in a temp dir removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _bundle(dest: Path, rootfs: Path, hooks: dict[str, Any] | None) -> Path:
    dest.mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=dest, check=True, capture_output=True)
    config = json.loads((dest / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["annotations"] = {"io.hetmig.migratable": "true"}
    if hooks:
        config["hooks"] = hooks
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def _hook(state_dir: Path, stage: str, translate: str) -> dict[str, Any]:
    py = sys.executable
    return {
        "path": py,
        "args": [py, "-S", str(REPO / "packaging" / "bin" / "hetmig-hook"), "--state-dir", str(state_dir),
                 "--translate", translate, stage],
        "env": [f"PYTHONPATH={REPO}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    }


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_once(root: Path, bundle: Path, cpu: list[float] | None = None) -> float:
    """Wall time of one ``runc run``; appends runc's + its hooks' CPU time to *cpu*."""
    cid = f"bench-{uuid.uuid4().hex[:12]}"
    c0 = _children_cpu()
    t0 = time.perf_counter()
    res = subprocess.run(
        ["runc", "--root", str(root), "run", "--bundle", str(bundle), cid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    if res.returncode != 0:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
        raise SystemExit(f"bench_hook: runc run failed ({res.returncode}): {res.stderr.decode().strip()}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per variant (>= 15)")
    parser.add_argument("--budget-ms", type=float, default=30.0, help="max added median (ms)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--translate", choices=("detached", "lazy", "sync"), default="detached",
                        help="the hook's translation mode (default detached, as packaging/hooks.d ships it)")
    args = parser.parse_args(argv)
    if args.runs < 15:
        parser.error("--runs must be at least 15")
    if shutil.which("runc") is None:
        print("bench_hook: runc not installed", file=sys.stderr)
        return 2
    from tests.support.tools import make_busybox_rootfs

    with tempfile.TemporaryDirectory(prefix="hetmig-bench-hook-") as tmp_s:
        tmp = Path(tmp_s)
        rootfs = make_busybox_rootfs(tmp / "rootfs")
        state_dir = tmp / "state"
        root = tmp / "runc-root"
        plain = _bundle(tmp / "plain", rootfs, None)
        hooked = _bundle(
            tmp / "hooked",
            rootfs,
            {"createRuntime": [_hook(state_dir, "createRuntime", args.translate)],
             "poststop": [_hook(state_dir, "poststop", args.translate)]},
        )
        _run_once(root, plain)  # warm-up: page cache, pycache
        _run_once(root, hooked)
        times: dict[str, list[float]] = {"without hook": [], "with hook": []}
        cpu: dict[str, list[float]] = {"without hook": [], "with hook": []}
        for _ in range(args.runs):
            times["without hook"].append(_run_once(root, plain, cpu["without hook"]))
            times["with hook"].append(_run_once(root, hooked, cpu["with hook"]))
        leftovers = [p.name for p in (state_dir / "containers").iterdir()] if state_dir.exists() else []
        time.sleep(0.5)  # let the last detached translation worker finish before cleanup
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    added = med["with hook"] - med["without hook"]
    result = {
        "runs": args.runs,
        "median_ms": med,
        "min_ms": {k: min(v) * 1000 for k, v in times.items()},
        "max_ms": {k: max(v) * 1000 for k, v in times.items()},
        "cpu_median_ms": {k: statistics.median(v) * 1000 for k, v in cpu.items()},
        "load_average": os.getloadavg(),
        "added_median_ms": added,
        "budget_ms": args.budget_ms,
        "translate": args.translate,
        "records_left_after_poststop": leftovers,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"runc run of busybox `true`, {args.runs} alternating runs each (ms); hook --translate {args.translate}")
        print(f"{'variant':<14}{'median':>9}{'min':>9}{'max':>9}{'cpu med':>9}")
        for k in times:
            print(f"{k:<14}{med[k]:>9.1f}{result['min_ms'][k]:>9.1f}{result['max_ms'][k]:>9.1f}"
                  f"{result['cpu_median_ms'][k]:>9.1f}")
        print(f"added by hook (median): {added:.1f} ms (budget {args.budget_ms:.0f} ms); "
              f"load average {result['load_average'][0]:.2f}")
    if leftovers:
        print(f"bench_hook: poststop left records behind: {leftovers}", file=sys.stderr)
        return 1
    return 0 if added <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
