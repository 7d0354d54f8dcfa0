"""Benchmark: restore of a process with 1 GiB of touched anonymous memory.

hetmig's restorer (``hetmig restore --detach``) against real ``criu restore
--restore-detached`` in the same run, on the same image set (written by
``criu dump``; with ``--ours-dump`` also on one written by hetmig's dump).
Runs alternate (warm page cache), each restored process is killed before the
next run. Prints a table; exits 1 if hetmig's best time exceeds 1.5x CRIU's.

    .venv/bin/python bench/bench_restore.py [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOUCH = r"""
import mmap, sys, time
size = int(sys.argv[1]) << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, size, 4096):
    m[off] = (off >> 12) & 0xFF or 1
print("ready", flush=True)
while True:
    time.sleep(1)
"""
LIMIT = 1.5


def gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    if os.path.exists(f"/proc/{pid}"):
        raise SystemExit(f"pid {pid} did not go away")


def start_big(size_mib: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", TOUCH, str(size_mib)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("memory toucher did not start")
    return proc


def criu_dump(proc: subprocess.Popen[str], dest: Path) -> None:
    dest.mkdir(parents=True)
    subprocess.run(["criu", "dump", "-t", str(proc.pid), "-D", str(dest), "-o", "dump.log"], check=True,
                   capture_output=True)
    proc.wait()
    gone(proc.pid)


def ours_dump(proc: subprocess.Popen[str], dest: Path) -> None:
    from capture.dump import dump

    dump(proc.pid, dest, tree=True)
    proc.wait()
    gone(proc.pid)


def run_criu(images: Path, pid: int) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(["criu", "restore", "-D", str(images), "--restore-detached", "-o", "restore.log"],
                         capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"criu restore failed: {(images / 'restore.log').read_text()[-2000:]}")
    return dt


def run_ours(images: Path, pid: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "runtime_shim.cli", "restore", "-D", str(images), "--detach"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"hetmig restore failed: {res.stderr}")
    return dt


def check_alive_and_kill(pid: int, size_mib: int) -> None:
    with open(f"/proc/{pid}/status") as fh:
        rss = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:"))
    if rss < size_mib * 1024 * 0.9:
        raise SystemExit(f"restored pid {pid} has only {rss} KiB resident, expected about {size_mib} MiB")
    os.kill(pid, signal.SIGKILL)
    gone(pid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ours-dump", action="store_true", help="also restore an image set written by hetmig's dump")
    args = ap.parse_args()
    if shutil.which("criu") is None:
        print("criu not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hetmig-bench-restore-"))
    try:
        sets: list[tuple[str, Path, int]] = []
        proc = start_big(args.size_mib)
        pid = proc.pid
        criu_dump(proc, work / "criu-img")
        sets.append(("criu dump", work / "criu-img", pid))
        if args.ours_dump:
            proc = start_big(args.size_mib)
            ours_dump(proc, work / "ours-img")
            sets.append(("hetmig dump", work / "ours-img", proc.pid))
        rows = []
        worst_ratio = 0.0
        for label, images, pid in sets:
            times: dict[str, list[float]] = {"criu restore": [], "hetmig restore": []}
            # one warm-up of each, not counted (page cache of pages-1.img)
            for fn in (run_criu, run_ours):
                fn(images, pid)
                check_alive_and_kill(pid, args.size_mib)
            for _ in range(args.rounds):
                for name, fn in (("criu restore", run_criu), ("hetmig restore", run_ours)):
                    times[name].append(fn(images, pid))
                    check_alive_and_kill(pid, args.size_mib)
            best_c, best_o = min(times["criu restore"]), min(times["hetmig restore"])
            ratio = best_o / best_c
            worst_ratio = max(worst_ratio, ratio)
            for name in times:
                rows.append((label, name, min(times[name]), statistics.median(times[name]), max(times[name])))
            rows.append((label, "ratio hetmig/criu (best)", ratio, ratio, ratio))
        print(f"restore of a process with {args.size_mib} MiB touched anonymous memory, {args.rounds} rounds")
        print(f"{'images':<12} {'restorer':<26} {'best s':>8} {'median s':>9} {'worst s':>8}")
        for label, name, lo, med, hi in rows:
            print(f"{label:<12} {name:<26} {lo:8.3f} {med:9.3f} {hi:8.3f}")
        ok = worst_ratio <= LIMIT
        print(f"target: hetmig within {LIMIT}x of criu: {'OK' if ok else 'MISSED'} ({worst_ratio:.2f}x)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
