"""``hetmig-runtime`` driven directly against real runc (private --root).

Lifecycle through the shim (create/start/state/list/kill/delete/features),
flag handling (unknown flags and refused runc flags exit 2 with a message),
and checkpoint -> restore of a counter with the CRIU engine: the counter
continues from where it stopped, and the image directory carries a
hetmig.json whose checksums match.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import require
from tests.test_hook_common import PYTHON, REPO, Runc, make_bundle, runc_root, translator_available, unique, wait_for

__all__ = ["runc_root"]


def hr(root: Path, *args: str, stdio: tuple[int, int, int] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run hetmig-runtime from this checkout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [PYTHON, "-m", "runtime_shim.runtime_cli", "--root", str(root), *args]
    res: subprocess.CompletedProcess[str]
    if stdio is not None:
        raw = subprocess.run(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], env=env, timeout=120)
        res = subprocess.CompletedProcess(argv, raw.returncode, "", "")
    else:
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"hetmig-runtime {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


def test_flags_rejected_with_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = hr(root, "create", "--no-such-flag", "x", check=False)
    assert res.returncode == 2 and "unrecognized arguments: --no-such-flag" in res.stderr
    res = hr(root, "checkpoint", "--lazy-pages", "x", check=False)
    assert res.returncode == 2
    assert "--lazy-pages (lazy migration (userfaultfd page server)) is not supported" in res.stderr
    res = hr(root, "restore", "--lsm-profile", "foo", "x", check=False)
    assert res.returncode == 2 and "--lsm-profile" in res.stderr and "not supported" in res.stderr
    res = hr(root, "--log-format", "xml", "list", check=False)
    assert res.returncode == 2 and "invalid choice: 'xml'" in res.stderr
    res = hr(root, "create", "--bundle", str(tmp_path / "nothing"), "x", check=False)
    assert res.returncode == 2 and "no config.json" in res.stderr
    res = hr(root, "state", "../evil", check=False)
    assert res.returncode == 2 and "container id '../evil' is not valid" in res.stderr


def test_lifecycle_through_shim(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    cid = unique("hrlife")
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["sleep", "60"], annotations={"a.b": "c"})
    pid_file = tmp_path / "pid"
    log = tmp_path / "runtime.log"
    fin, fout, ferr = runc_root.pipes()
    try:
        res = hr(runc_root.root, "--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle),
                 "--pid-file", str(pid_file), cid, stdio=(fin, fout, ferr), check=False)
    finally:
        for fd in (fin, fout, ferr):
            os.close(fd)
    assert res.returncode == 0
    pid = int(pid_file.read_text())
    state = json.loads(hr(runc_root.root, "state", cid).stdout)
    assert state["id"] == cid and state["status"] == "created" and state["pid"] == pid
    assert state["bundle"] == str(bundle) and state["annotations"] == {"a.b": "c"}
    assert runc_root.state(cid)["status"] == "created"  # runc itself sees it under the same root

    hr(runc_root.root, "start", cid)
    assert json.loads(hr(runc_root.root, "state", cid).stdout)["status"] == "running"
    rows = json.loads(hr(runc_root.root, "list", "--format", "json").stdout)
    assert [(r["id"], r["pid"], r["status"]) for r in rows] == [(cid, pid, "running")]
    table = hr(runc_root.root, "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[:3] == [cid, str(pid), "running"]
    assert hr(runc_root.root, "list", "-q").stdout.split() == [cid]

    features = json.loads(hr(runc_root.root, "features").stdout)
    assert "criu" in features["annotations"]["io.hetmig.engines"].split(",")

    hr(runc_root.root, "kill", cid, "KILL")
    wait_for(lambda: runc_root.state(cid)["status"] == "stopped", what="stop")
    hr(runc_root.root, "delete", cid)
    assert runc_root.ids() == []
    res = hr(runc_root.root, "--log", str(log), "--log-format", "json", "state", cid, check=False)
    assert res.returncode == 1 and "does not exist" in res.stderr
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and cid in last["msg"]


def _counter_bundle(tmp_path: Path, rootfs: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    bundle = make_bundle(
        tmp_path / "bundle",
        rootfs,
        ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.05; done"],
    )
    config: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    config["mounts"].append({"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "rw"]})
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle, data / "counter"


def _read_counter(path: Path) -> int:
    def value() -> int:
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else 0

    return int(wait_for(value, what=f"a number in {path}"))


@pytest.mark.integration
def test_checkpoint_restore_counter_criu(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    require("criu")
    cid = unique("hrcount")
    bundle, counter = _counter_bundle(tmp_path, busybox_rootfs)
    runc_root.create_piped(cid, bundle)
    runc_root("start", cid)
    wait_for(lambda: _read_counter(counter) >= 5, what="counter to reach 5")

    images = tmp_path / "images"
    hr(runc_root.root, "checkpoint", "--engine", "criu", "--image-path", str(images),
       "--work-path", str(tmp_path / "work"), cid)
    assert runc_root.ids() == []  # checkpoint without --leave-running stops the container
    stopped_at = _read_counter(counter)
    time.sleep(0.3)
    assert _read_counter(counter) == stopped_at  # nothing runs any more

    doc = json.loads((images / "hetmig.json").read_text())
    assert doc["engine"] == "criu" and doc["container_id"] == cid
    assert doc["source"]["os"] == "linux" and doc["spec"]["process"]["args"][0] == "sh"
    assert "inventory.img" in doc["checksums"] and "pstree.img" in doc["checksums"]
    if translator_available():
        assert doc["translation"]["state"] == "ok", doc["translation"]
        assert doc["translation"]["plan"]["jail"]["params"]["path"] == str(busybox_rootfs)
    else:
        assert doc["translation"]["state"] == "pending"

    pid_file = tmp_path / "restored.pid"
    stdio = runc_root.pipes()
    try:
        hr(runc_root.root, "restore", "--image-path", str(images), "--bundle", str(bundle), "--detach",
           "--pid-file", str(pid_file), cid, stdio=stdio)
    finally:
        for fd in stdio:
            os.close(fd)
    assert runc_root.state(cid)["status"] == "running"
    assert int(pid_file.read_text()) == runc_root.state(cid)["pid"]
    resumed = wait_for(lambda: (v := _read_counter(counter)) > stopped_at and v, what="counter to move on")
    # it continued from the checkpoint: no restart from 1
    assert stopped_at < resumed <= stopped_at + 40


def test_restore_refuses_tampered_images(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "inventory.img").write_bytes(b"x")
    (images / "hetmig.json").write_text(json.dumps({"version": 1, "engine": "criu",
                                                    "checksums": {"inventory.img": "0" * 64}}))
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["true"])
    res = hr(runc_root.root, "restore", "--image-path", str(images), "--bundle", str(bundle), "x", check=False)
    assert res.returncode == 2 and "does not match hetmig.json" in res.stderr


def test_native_engine_refuses_criu_flags(tmp_path: Path, busybox_rootfs: Path, runc_root: Runc) -> None:
    """--engine native never silently drops a CRIU-only flag, and never falls back to CRIU."""
    from runtime_shim.backends.linux import native_engine_missing

    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["true"])
    images = tmp_path / "images"
    images.mkdir()
    res = hr(runc_root.root, "restore", "--engine", "native", "--tcp-established", "--image-path", str(images),
             "--bundle", str(bundle), "x", check=False)
    assert res.returncode == 2
    assert "--engine native does not support --tcp-established (use --engine criu)" in res.stderr
    missing = native_engine_missing()
    res = hr(runc_root.root, "restore", "--engine", "native", "--image-path", str(images),
             "--bundle", str(bundle), "x", check=False)
    assert res.returncode != 0
    if missing is not None:
        assert "--engine native is not available yet" in res.stderr and "use --engine criu" in res.stderr
    else:  # the engine runs and rejects an empty image directory itself
        assert "inventory.img" in res.stderr or "image" in res.stderr.lower(), res.stderr


@pytest.mark.integration
def test_checkpoint_restore_counter_native(tmp_path: Path, runc_root: Runc) -> None:
    """The native engine: capture.dump of the runc container's tree, capture.restore
    into the bundle's rootfs (new pid namespace, outside runc): the counter continues."""
    import signal

    from runtime_shim.backends.linux import native_engine_missing
    from tests.support.tools import make_busybox_rootfs

    assert native_engine_missing() is None, native_engine_missing()
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")  # private: the restored tree writes into it
    cid = unique("hrnative")
    bundle = make_bundle(
        tmp_path / "bundle",
        rootfs,
        ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.1; done"],
    )
    counter = rootfs / "data" / "counter"
    runc_root.create_piped(cid, bundle)
    runc_root("start", cid)
    wait_for(lambda: _read_counter(counter) >= 5, what="counter to reach 5")

    images = tmp_path / "images"
    hr(runc_root.root, "checkpoint", "--engine", "native", "--image-path", str(images), cid)
    assert runc_root.ids() == []
    stopped_at = _read_counter(counter)
    time.sleep(0.3)
    assert _read_counter(counter) == stopped_at
    doc = json.loads((images / "hetmig.json").read_text())
    assert doc["engine"] == "native" and "pstree.img" in doc["checksums"]

    pid_file = tmp_path / "restored.pid"
    stdio = runc_root.pipes()
    restored: list[int] = []
    try:
        hr(runc_root.root, "restore", "--image-path", str(images), "--bundle", str(bundle), "--detach",
           "--pid-file", str(pid_file), cid, stdio=stdio)  # engine taken from hetmig.json
        pid = int(pid_file.read_text())
        restored.append(pid)
        with open(f"/proc/{pid}/stat") as fh:
            ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        # the pid-namespace init capture.restore made, if the parent is one (never ours or pid 1)
        if ppid not in (0, 1, os.getpid()) and os.readlink(f"/proc/{ppid}/ns/pid") != os.readlink("/proc/self/ns/pid"):
            restored.append(ppid)
        assert open(f"/proc/{pid}/cmdline").read().startswith("sh\0-c\0")
        resumed = wait_for(lambda: (v := _read_counter(counter)) > stopped_at and v, what="counter to move on")
        assert stopped_at < resumed <= stopped_at + 40  # continued, not restarted at 1
    finally:
        for fd in stdio:
            os.close(fd)
        for p in reversed(restored):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in restored:
            wait_for(lambda: not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split(") ")[1][0] == "Z",
                     what=f"pid {p} to die")
