"""Benchmark: downtime of hetmig's live migration vs CRIU stop-and-copy, per memory size.

For each size (default 64, 256 and 1024 MiB) the container is the same kind
in both paths: a runc container of :class:`runtime_shim.migration.lab.Lab`
(busybox rootfs, its own network namespace, memory/pids/CPU limits) whose
process is ``tests/programs/memwriter.c`` (static): it holds the size in
touched anonymous memory, rewrites 4 KiB pages at ``--rate-bytes`` (default
5 MB/s) spread over the whole buffer, and writes an increasing counter to
/data/c every 100 ms. Every run gets a fresh Lab (hosts, keys, container);
the runs alternate between the two paths (ours-criu, criu-ours, ...).

ours: ``hetmig migrate`` from host A to the agent on host B (two network
  namespaces, mutual TLS over TCP), pre-copy while the container runs.
  Downtime is the Report's ``downtime_ms``: from the freeze of the source
  until the destination has released its restored copy. ``total_ms``, the
  number of pre-copy rounds and the bytes of all rounds come from the same
  report.
criu: stop-and-copy with the real CRIU through runc: ``runc checkpoint
  --image-path DIR`` (criu dump; the container stops), ``cp -a DIR COPY``
  (a sibling directory on the same file system: through the page cache, no
  network, no fsync, so CRIU's copy here is cheaper than any real transfer),
  ``runc restore -d --image-path COPY`` (criu restore) on the same bundle.
  Downtime is from the start of the checkpoint until ``runc restore -d``
  returned with the container running. The root file system is not copied.

Continuity, in both paths: the last counter value the container wrote before
the cut-over, then the first different value the running copy writes after
it; the run fails when that value is not greater (a restarted container
starts again at 1), or when the copy does not run where it should.

Targets: our median downtime under 100 ms at every size, and CRIU's median
downtime at least 5x ours at every size of 1 GiB or more. Exit status: 0 when
every target is met and every run kept its counter, 1 otherwise, 2 when a
needed tool (criu, runc, ip, nsenter, gcc, busybox) or root is missing.

    .venv/bin/python bench/bench_migrate.py [--sizes 64,256,1024] [--runs 3] [--criu-runs 3] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capture.errors import HetmigError  # noqa: E402
from runtime_shim.migration.lab import Lab, build_memwriter  # noqa: E402

TARGET_MS = 100.0
TARGET_RATIO = 5.0
RATIO_FROM_MIB = 1024
COPY_HOW = "cp -a to a sibling directory on the same file system (page cache, no network, no fsync)"


@dataclass(frozen=True, slots=True)
class Run:
    """One measured cut-over (either path)."""

    path: str                  # "ours" or "criu"
    downtime_ms: float
    total_ms: float
    rounds: int                # pre-copy rounds (ours); 0 for criu
    bytes: int                 # bytes of the report's rounds (ours); size of the image dir (criu)
    counter_before: int
    counter_after: int
    ok: bool
    error: str = ""
    detail: dict[str, float] = field(default_factory=dict)


def say(msg: str) -> None:
    sys.stderr.write(f"bench_migrate: {msg}\n")
    sys.stderr.flush()


def wait_running(lab: Lab) -> int:
    """Wait until the container has filled its memory and its counter advances; the value then."""
    first = lab.read_counter("a", wait=120)
    deadline = time.monotonic() + 60
    while (value := lab.read_counter("a", wait=60)) < first + 3:
        if time.monotonic() > deadline:
            raise RuntimeError("the counter does not advance on host A")
        time.sleep(0.02)
    return value


def next_value(lab: Lab, host: str, before: int, wait: float = 10.0) -> int:
    """The first counter value on *host* different from *before* (0 when none came in *wait* s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            value = lab.read_counter(host, wait=0.0)
        except HetmigError:
            value = before
        if value != before:
            return value
        time.sleep(0.005)
    return 0


def run_ours(size_mib: int, rate: int, binary: Path) -> Run:
    with Lab(memory_mib=size_mib, workload="memwriter", rate_bytes=rate, memwriter=binary,
             prefix="hetmig-bench-") as lab:
        lab.start_container()
        wait_running(lab)
        lab.start_agent("b")
        proc = lab.migrate("a", "b", timeout=600)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        done = next((e for e in events if e.get("event") == "done"), None)
        if proc.returncode != 0 or done is None:
            return Run("ours", 0.0, 0.0, 0, 0, 0, 0, False,
                       f"hetmig migrate exit {proc.returncode}: {last_line(proc.stderr)}")
        before = lab.read_counter("a", wait=5)
        after = next_value(lab, "b", before)
        where = lab.where()
        rounds = list(done.get("rounds") or [])
        err = ""
        if where != ("agent", "b"):
            err = f"after the migration the container runs at {where}, not on host B"
        elif after <= before:
            err = f"counter on B {after} after {before} on A: it did not continue"
        cut = {k: float(v) for k, v in (done.get("cutover_ms") or {}).items() if isinstance(v, (int, float))}
        return Run("ours", float(done["downtime_ms"]), float(done["total_ms"]), len(rounds),
                   sum(int(r["bytes"]) for r in rounds), before, after, not err, err, cut)


def last_line(text: str) -> str:
    """The last non-empty line of a command's stderr (its error), at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(no stderr)"


def _runc(lab: Lab, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "--root", str(lab.runc_root), *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)


def _criu_log(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-3:])[-500:]
    except OSError:
        return ""


def run_criu(size_mib: int, rate: int, binary: Path) -> Run:
    with Lab(memory_mib=size_mib, workload="memwriter", rate_bytes=rate, memwriter=binary,
             prefix="hetmig-bench-") as lab:
        lab.start_container()
        wait_running(lab)
        images, copy = lab.tmp / "images", lab.tmp / "images-copy"
        work_dump, work_restore = lab.tmp / "work-dump", lab.tmp / "work-restore"
        t0 = time.monotonic()
        dump = _runc(lab, "checkpoint", "--image-path", str(images), "--work-path", str(work_dump), lab.cid)
        t1 = time.monotonic()
        if dump.returncode != 0:
            return Run("criu", 0.0, 0.0, 0, 0, 0, 0, False, f"runc checkpoint exit {dump.returncode}: "
                       f"{last_line(dump.stderr)} {_criu_log(work_dump / 'dump.log')}")
        cp = subprocess.run(["cp", "-a", str(images), str(copy)], capture_output=True, text=True, timeout=600)
        t2 = time.monotonic()
        if cp.returncode != 0:
            return Run("criu", 0.0, 0.0, 0, 0, 0, 0, False, f"cp -a exit {cp.returncode}: {cp.stderr.strip()}")
        restore = _runc(lab, "restore", "-d", "--image-path", str(copy), "--work-path", str(work_restore),
                        "--bundle", str(lab.bundle), lab.cid)
        t3 = time.monotonic()
        if restore.returncode != 0:
            return Run("criu", 0.0, 0.0, 0, 0, 0, 0, False, f"runc restore exit {restore.returncode}: "
                       f"{last_line(restore.stderr)} {_criu_log(work_restore / 'restore.log')}")
        # the file holds the last value written before the checkpoint until the restored copy writes
        before = int((lab.bundle / "rootfs" / "data" / "c").read_text().strip())
        after = next_value(lab, "a", before)
        size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
        err = ""
        if lab.where() != ("runc", "a"):
            err = "the restored container is not running under runc"
        elif after <= before:
            err = f"counter {after} after restore, {before} before the checkpoint: it did not continue"
        ms = (t3 - t0) * 1000
        return Run("criu", round(ms, 3), round(ms, 3), 0, size, before, after, not err, err,
                   {"dump": round((t1 - t0) * 1000, 3), "copy": round((t2 - t1) * 1000, 3),
                    "restore": round((t3 - t2) * 1000, 3)})


def median(runs: list[Run], attr: str) -> float:
    vals = [float(getattr(r, attr)) for r in runs if r.ok]
    return statistics.median(vals) if vals else float("nan")


def detail_median(runs: list[Run], key: str) -> float:
    vals = [r.detail[key] for r in runs if r.ok and key in r.detail]
    return statistics.median(vals) if vals else float("nan")


def num(value: float, digits: int) -> str:
    """*value* with *digits* decimals; "-" for NaN (no successful run)."""
    return "-" if value != value else f"{value:.{digits}f}"


def finite(value: Any) -> Any:
    """*value* with every NaN (a median of no successful run) as None, for strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def git_state() -> tuple[str, str]:
    """(short HEAD, plus a note when tracked files differ from it; a fingerprint of HEAD and that diff)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    diff = git("diff", "HEAD")
    label = head + (" (with uncommitted changes)" if diff else "")
    return label, head + ":" + hashlib.sha256(diff.encode()).hexdigest()


def preflight() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, runc, cgroups)"
    missing = [t for t in ("criu", "runc", "ip", "nsenter", "gcc", "cp") if shutil.which(t) is None]
    if not os.path.isfile("/bin/busybox"):
        missing.append("/bin/busybox")
    return f"missing: {', '.join(missing)}" if missing else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,256,1024", help="container memory sizes, MiB, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="live migrations per size (median; default 3)")
    ap.add_argument("--criu-runs", type=int, default=3, help="CRIU stop-and-copy runs per size (median; default 3)")
    ap.add_argument("--rate-bytes", type=int, default=5_000_000, help="bytes/s the container rewrites (5000000)")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object with every run")
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes={args.sizes!r}: expected comma-separated MiB numbers such as 64,256,1024")
    if not sizes or any(not 1 <= s <= 4096 for s in sizes) or args.runs < 1 or args.criu_runs < 1:
        ap.error("--sizes must be 1..4096 MiB each, --runs and --criu-runs at least 1")
    problem = preflight()
    if problem:
        print(f"bench_migrate: {problem}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    commit, tree_at_start = git_state()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="hetmig-bench-migrate-"))
    results: dict[int, dict[str, list[Run]]] = {}
    try:
        try:
            binary = build_memwriter(work / "memwriter")
        except HetmigError as err:
            print(f"bench_migrate: {err}", file=sys.stderr)
            return 2
        for size in sizes:
            results[size] = {"ours": [], "criu": []}
            for i in range(max(args.runs, args.criu_runs)):
                order = ("ours", "criu") if i % 2 == 0 else ("criu", "ours")
                for path in order:
                    if len(results[size][path]) >= (args.runs if path == "ours" else args.criu_runs):
                        continue
                    fn = run_ours if path == "ours" else run_criu
                    try:
                        run = fn(size, args.rate_bytes, binary)
                    except (HetmigError, RuntimeError, OSError, subprocess.SubprocessError, ValueError) as err:
                        run = Run(path, 0.0, 0.0, 0, 0, 0, 0, False, f"{type(err).__name__}: {err}"[:400])
                    results[size][path].append(run)
                    say(f"{size} MiB {path} run {len(results[size][path])}: "
                        + (f"downtime {run.downtime_ms:.1f} ms, counter {run.counter_before} -> {run.counter_after}"
                           if run.ok else f"FAILED: {run.error}"))
    except KeyboardInterrupt:
        say("interrupted; every Lab was cleaned up")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows: list[dict[str, Any]] = []
    all_ok = True
    for size in sizes:
        ours, criu = results[size]["ours"], results[size]["criu"]
        o, c = median(ours, "downtime_ms"), median(criu, "downtime_ms")
        ratio = c / o if o == o and c == c and o > 0 else float("nan")
        check_ratio = size >= RATIO_FROM_MIB
        target = f"ours<{TARGET_MS:.0f}ms" + (f", criu/ours>={TARGET_RATIO:.0f}x" if check_ratio else "")
        failures = [f"{r.path} run {i}: {r.error}" for runs in (ours, criu) for i, r in enumerate(runs, 1) if not r.ok]
        ok = not failures and o < TARGET_MS and (not check_ratio or ratio >= TARGET_RATIO)
        all_ok = all_ok and ok
        rows.append({
            "size_mib": size, "ours_ms": o, "criu_ms": c, "ratio": ratio, "target": target, "ok": ok,
            "failures": failures,
            "ours_total_ms": median(ours, "total_ms"), "ours_rounds": median(ours, "rounds"),
            "ours_bytes": median(ours, "bytes"), "criu_bytes": median(criu, "bytes"),
            "criu_dump_ms": detail_median(criu, "dump"), "criu_copy_ms": detail_median(criu, "copy"),
            "criu_restore_ms": detail_median(criu, "restore"),
            "ours_runs": [asdict(r) for r in ours], "criu_runs": [asdict(r) for r in criu],
        })
    load = os.getloadavg()[0]
    commit_end, tree_at_end = git_state()
    if tree_at_end != tree_at_start:
        commit += f", changed during the run to {commit_end}"
    print(f"live-migration downtime vs CRIU stop-and-copy; container writes {args.rate_bytes / 1e6:g} MB/s; "
          f"medians of {args.runs} (ours) / {args.criu_runs} (criu) runs; git {commit}; "
          f"kernel {platform.release()}, {os.cpu_count()} CPUs, load average {load:.2f}")
    print(f"criu: runc checkpoint + {COPY_HOW} + runc restore -d; the root file system is not copied; "
          f"ours: hetmig migrate A -> B (agent, TLS over a veth), downtime = the report's downtime_ms")
    print(f"{'size':>8} {'ours ms':>9} {'criu ms':>9} {'criu/ours':>9}  {'target':<28} {'result':<6}")
    for r in rows:
        shown = "-" if r["ratio"] != r["ratio"] else f"{r['ratio']:.1f}x"
        print(f"{r['size_mib']:>4} MiB {num(r['ours_ms'], 1):>9} {num(r['criu_ms'], 1):>9} {shown:>9}  "
              f"{r['target']:<28} {'PASS' if r['ok'] else 'FAIL':<6}")
    print()
    print(f"{'size':>8} {'ours total ms':>13} {'rounds':>6} {'rounds MiB':>10} {'ours runs (downtime ms)':<26} "
          f"{'criu dump/copy/restore ms':<26} {'criu MiB':>8} {'criu runs (ms)':<22}")
    for r in rows:
        o_runs = ", ".join(f"{x['downtime_ms']:.0f}" if x["ok"] else "fail" for x in r["ours_runs"])
        c_runs = ", ".join(f"{x['downtime_ms']:.0f}" if x["ok"] else "fail" for x in r["criu_runs"])
        split = "/".join(num(r[k], 0) for k in ("criu_dump_ms", "criu_copy_ms", "criu_restore_ms"))
        print(f"{r['size_mib']:>4} MiB {num(r['ours_total_ms'], 0):>13} {num(r['ours_rounds'], 0):>6} "
              f"{num(r['ours_bytes'] / 2**20, 1):>10} {o_runs:<26} {split:<26} {num(r['criu_bytes'] / 2**20, 1):>8} "
              f"{c_runs:<22}")
    for r in rows:
        for f in r["failures"]:
            print(f"{r['size_mib']} MiB: {f}")
    if not any(s >= RATIO_FROM_MIB for s in sizes):
        print(f"note: the criu/ours >= {TARGET_RATIO:.0f}x target applies from {RATIO_FROM_MIB} MiB; "
              f"no such size in this run")
    print(f"wall time {time.monotonic() - started:.0f} s")
    print("PASS" if all_ok else "FAIL")
    if args.json:
        print(json.dumps(finite({"commit": commit, "rate_bytes": args.rate_bytes, "copy": COPY_HOW,
                          "target_ms": TARGET_MS, "target_ratio": TARGET_RATIO, "rows": rows, "ok": all_ok})))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
