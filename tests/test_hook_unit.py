"""The hook program on its own (real subprocesses, no runtime): stdin
validation, stage selection, the detached translation worker, import cost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_hook_common import HOOK_LAUNCHER, PYTHON, REPO, make_bundle, translator_available, wait_for


def hook(state_dir: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [PYTHON, "-S", str(HOOK_LAUNCHER), "--state-dir", str(state_dir), *args],
        input=stdin,
        capture_output=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(), res.stderr.decode())


def _my_argv0() -> str:
    """The hook records the basename of its parent's argv[0]: here, this process."""
    with open("/proc/self/cmdline", "rb") as fh:
        return os.path.basename(fh.read().split(b"\0")[0].decode())


def state_json(**kw: Any) -> bytes:
    base: dict[str, Any] = {"ociVersion": "1.0.2", "id": "c1", "pid": os.getpid(), "bundle": "/nonexistent",
                            "status": "creating", "annotations": {"io.hetmig.migratable": "true"}}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


@pytest.mark.parametrize(
    "stdin,args,message",
    [
        (b"", ["createRuntime"], "stdin: empty (expected the OCI state JSON)"),
        (b"not json", ["createRuntime"], "stdin: OCI state: not JSON"),
        (b"[1, 2]", ["createRuntime"], "stdin: OCI state must be a JSON object, got list"),
        (b'{"pid": 1}', ["createRuntime"], "stdin: id=None (expected a non-empty string)"),
        (state_json(pid=None), ["createRuntime"], "stdin: pid=None (expected a positive integer at createRuntime)"),
        (state_json(pid=True), ["createRuntime"], "stdin: pid=True (expected a positive integer"),
        (state_json(bundle="relative"), ["createRuntime"], "stdin: bundle='relative' (expected an absolute path)"),
        (state_json(id="../../etc"), ["createRuntime"], "container id '../../etc' is not valid"),
        (state_json(annotations={"a": 1}), ["createRuntime"], "stdin: annotations must be an object of strings"),
        (state_json(), ["bogusStage"], "unknown stage 'bogusStage'"),
        (state_json(status="running"), [], "no stage given and status='running' does not name one"),
        (state_json(), ["--frobnicate", "createRuntime"], "unknown option --frobnicate"),
        (b"\xff\xfe", ["createRuntime"], "not"),
    ],
)
def test_bad_input_exit_2_one_line_nothing_changed(tmp_path: Path, stdin: bytes, args: list[str],
                                                   message: str) -> None:
    state_dir = tmp_path / "state"
    res = hook(state_dir, stdin, *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hetmig-hook: ") and message in lines[0], res.stderr
    assert not state_dir.exists()  # nothing changed: not even the directory was made


def test_create_then_poststop_by_status(tmp_path: Path, busybox_rootfs: Path) -> None:
    state_dir = tmp_path / "state"
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["true"])
    res = hook(state_dir, state_json(bundle=str(bundle)))  # stage from status=creating
    assert res.returncode == 0, res.stderr
    rec = json.loads((state_dir / "containers" / "c1.json").read_text())
    assert rec["pid"] == os.getpid() and rec["bundle"] == str(bundle) and rec["runtime"] == _my_argv0()
    assert rec["translation"]["state"] == "pending"  # the worker writes it next to the record
    tpath = state_dir / "containers" / "c1.translation.json"
    doc = wait_for(lambda: tpath.exists() and json.loads(tpath.read_text()), what="detached translation")
    if translator_available():
        assert doc["translation"]["state"] == "ok" and doc["translation"]["plan"]["jail"]
    else:
        assert doc["translation"]["state"] == "pending"
    # other stages validate and change nothing
    for stage in ("prestart", "createContainer", "startContainer", "poststart"):
        assert hook(state_dir, state_json(bundle=str(bundle)), stage).returncode == 0
    assert sorted(p.name for p in (state_dir / "containers").iterdir()) == ["c1.json", "c1.translation.json"]
    res = hook(state_dir, state_json(status="stopped", pid=None, bundle=None))
    assert res.returncode == 0, res.stderr
    assert list((state_dir / "containers").iterdir()) == []


def test_sync_translation_failure_is_recorded(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text("{broken")
    res = hook(state_dir, state_json(bundle=str(bundle)), "--sync", "createRuntime")
    assert res.returncode == 0, res.stderr
    doc = json.loads((state_dir / "containers" / "c1.translation.json").read_text())
    assert doc["translation"]["state"] == "failed" and "config.json: not JSON" in doc["translation"]["error"]


def test_hot_path_imports_stay_small() -> None:
    """The hook must not import json, re, enum, typing, dataclasses, yaml or jsonschema."""
    probe = (
        "import sys, io\n"
        "from oci_hook.__main__ import main\n"
        "sys.stdin = io.StringIO('{\"id\": \"c1\", \"status\": \"stopped\"}')\n"
        "main(['--state-dir', sys.argv[1], 'poststop'])\n"
        "heavy = {'json', 're', 'enum', 'typing', 'dataclasses', 'yaml', 'jsonschema', 'argparse', 'subprocess'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    res = subprocess.run([PYTHON, "-S", "-c", probe, "/nonexistent-state"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO)}, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_lazy_translation_is_done_by_ps(tmp_path: Path, busybox_rootfs: Path) -> None:
    from tests.test_hook_common import ps_json

    state_dir = tmp_path / "state"
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["true"])
    res = hook(state_dir, state_json(bundle=str(bundle)), "--translate", "lazy", "createRuntime")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (state_dir / "containers").iterdir()) == ["c1.json"]
    from tests.test_hook_common import hetmig

    quick = json.loads(hetmig("ps", "--json", "--no-translate", "--state-dir", str(state_dir)).stdout)
    assert quick[0]["translation"]["state"] == "pending" and quick[0]["status"] == "running"
    assert sorted(p.name for p in (state_dir / "containers").iterdir()) == ["c1.json"]
    rows = ps_json(state_dir)
    assert rows[0]["id"] == "c1" and rows[0]["pid"] == os.getpid()
    if translator_available():
        assert rows[0]["translation"]["state"] == "ok"
        # ps stored it: the next ps reads it instead of translating again
        assert (state_dir / "containers" / "c1.translation.json").exists()
    else:
        assert rows[0]["translation"]["state"] == "pending"
    res = hook(state_dir, state_json(), "--translate", "eager", "createRuntime")
    assert res.returncode == 2 and "--translate 'eager' (expected one of detached, sync, lazy)" in res.stderr


def test_detached_workers_translate_every_record_of_a_burst(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Back-to-back createRuntime hooks: one worker at a time, yet every record gets its translation."""
    state_dir = tmp_path / "state"
    bundle = make_bundle(tmp_path / "bundle", busybox_rootfs, ["true"])
    ids = [f"burst{i}" for i in range(4)]
    for cid in ids:
        assert hook(state_dir, state_json(id=cid, bundle=str(bundle)), "createRuntime").returncode == 0
    containers = state_dir / "containers"
    done = wait_for(
        lambda: all((containers / f"{cid}.translation.json").exists() for cid in ids),
        timeout=60,
        what="every burst record translated",
    )
    assert done
    for cid in ids:
        doc = json.loads((containers / f"{cid}.translation.json").read_text())
        assert doc["translation"]["state"] == ("ok" if translator_available() else "pending")
    assert not [p for p in containers.iterdir() if p.name.startswith(".")]  # no temp or lock files here
