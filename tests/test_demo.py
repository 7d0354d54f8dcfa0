"""``hetmig demo --json`` end to end: the counter container moves live from host A to
host B; the last stdout line is the result; nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runtime_shim.migration import container, netns
from tests.support.tools import require

REPO = Path(__file__).resolve().parent.parent


def test_demo_json_end_to_end() -> None:
    for tool in ("runc", "ip", "nsenter", "ping"):
        require(tool)
    before_ns = set(netns.list_netns())
    r = subprocess.run([sys.executable, "-m", "runtime_shim.cli", "demo", "--json", "--memory-mib", "4"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("downtime_ms", "total_ms", "rounds", "counter_before", "counter_after", "memory_bytes"):
        assert key in result, key
    assert result["ok"] is True and result["runs_on_b"] is True and result["ping_ok"] is True
    assert 0 < result["counter_before"] <= result["counter_after"] < result["counter_later"]
    assert result["counter_after"] <= result["counter_before"] + 20  # continued, not restarted
    assert result["rounds"] and all({"pages", "bytes", "ms"} <= set(rd) for rd in result["rounds"])
    assert result["rounds"][0]["pages"] > 1000  # the counter's 4 MiB went in round 1
    assert 0 < result["downtime_ms"] <= result["total_ms"]
    assert result["memory_bytes"] >= 4 << 20
    assert result["limits_a"] == result["limits_b"] and result["limits_b"]["pids.max"] == "64"
    assert "jail:counter:maxproc:deny=64" in r.stdout and "host.hostname = \"counter\";" in r.stdout
    assert "migrating counter-" in r.stderr
    cid = result["container"]
    demo_ns = {n for n in netns.list_netns() if n.startswith("hetmig-demo-")}
    assert demo_ns <= before_ns  # the demo's namespaces are gone
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not (base.is_dir() and [d for d in base.iterdir() if d.name.startswith(cid)])
    assert cid not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_demo_interrupted_cleans_up() -> None:
    """Ctrl-C in the middle (the agent is up, the migration starts): exit 130, nothing left."""
    import glob
    import signal
    import time

    for tool in ("runc", "ip", "nsenter", "ping"):
        require(tool)
    before_ns = set(netns.list_netns())
    before_tmp = set(glob.glob("/tmp/hetmig-lab-*"))
    proc = subprocess.Popen([sys.executable, "-m", "runtime_shim.cli", "demo", "--memory-mib", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
            if "migrating counter-" in line:
                break
        cid = next(ln.split()[2] for ln in lines if "runs under runc" in ln)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(lines) + err
    assert "cleaned up" in err
    assert {n for n in netns.list_netns() if n.startswith("hetmig-demo-")} <= before_ns
    assert set(glob.glob("/tmp/hetmig-lab-*")) <= before_tmp
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not (base.is_dir() and [d for d in base.iterdir() if d.name.startswith(cid)])
    assert cid not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
