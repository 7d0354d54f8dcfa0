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
    assert set(netns.list_netns()) <= before_ns  # the demo's namespaces are gone
    for ctrl in container.CONTROLLERS:
        base = container.cgroup_root() / ctrl / "hetmig"
        assert not (base.is_dir() and [d for d in base.iterdir() if d.name.startswith(cid)])
    assert cid not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
