"""The hook fired by real runc through config.json ``hooks``.

createRuntime records the container (``hetmig ps`` shows it with its init pid
and translation status), poststop (at ``runc delete``) removes the record.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_hook_common import (
    MIGRATABLE,
    Runc,
    hook_entry,
    make_bundle,
    ps_json,
    runc_root,
    translator_available,
    unique,
    wait_for,
)

__all__ = ["runc_root"]

pytestmark = pytest.mark.integration


def test_runc_hook_records_and_poststop_removes(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    state_dir = tmp_path / "state"
    cid = unique("hookrunc")
    bundle = make_bundle(
        tmp_path / "bundle",
        busybox_rootfs,
        ["sleep", "60"],
        hooks={
            "createRuntime": [hook_entry(state_dir, "createRuntime")],
            "poststop": [hook_entry(state_dir, "poststop")],
        },
        annotations=MIGRATABLE,
    )
    runc_root.create(cid, bundle)
    runc_root("start", cid)
    pid = runc_root.state(cid)["pid"]
    assert pid > 0 and os.path.exists(f"/proc/{pid}")

    rows = ps_json(state_dir)
    assert [r["id"] for r in rows] == [cid]
    row = rows[0]
    assert row["pid"] == pid
    assert row["status"] == "running"
    assert row["bundle"] == str(bundle)
    assert row["runtime"] == "runc"
    assert row["runtime_root"] == str(runc_root.root)
    t = row["translation"]
    if translator_available():
        assert t["state"] == "ok", t
        assert t["summary"] == ("strict-ok" if t["loss_count"] == 0 else f"{t['loss_count']} losses")
        assert t["strict_ok"] == (t["loss_count"] == 0)
    else:
        assert t["state"] == "pending" and "translator not available" in t["error"], t

    # the table form names the same container and pid
    from tests.test_hook_common import hetmig

    table = hetmig("ps", "--state-dir", str(state_dir)).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert table[1].split()[:3] == [cid, str(pid), "running"]

    runc_root("kill", cid, "KILL")
    wait_for(lambda: runc_root.state(cid)["status"] == "stopped", what="container to stop")
    runc_root("delete", cid)  # runs the poststop hook
    assert ps_json(state_dir) == []
    assert not any(p.name.endswith(".json") for p in (state_dir / "containers").iterdir())


def test_runc_without_hook_records_nothing(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    """Control: the same container without hooks leaves the state dir empty."""
    state_dir = tmp_path / "state"
    cid = unique("nohook")
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["sleep", "60"], annotations=MIGRATABLE)
    runc_root.create(cid, bundle)
    runc_root("start", cid)
    assert runc_root.state(cid)["status"] == "running"
    assert ps_json(state_dir) == []
    runc_root("delete", "--force", cid)
