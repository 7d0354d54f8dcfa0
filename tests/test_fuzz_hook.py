"""Fuzzing the OCI hook's stdin (``python -m oci_hook [STAGE] < OCI state JSON``).

The hook is run in-process (``oci_hook.__main__.main`` with the state on a
fake stdin, text or bytes) with ``HETMIG_STATE_DIR`` pointed at a temporary
directory, in ``--translate lazy`` mode (no worker is forked). Inputs: random
bytes, mutations of the state runc 1.1.5 / podman 4.3 write, random JSON
trees, deep nesting and huge numbers (the hook parses with ``_json``'s C
scanner, not the json package). Asserted per example: exit 0 or 2 (never an
exception), one line on stderr, no file anywhere but ``STATE/containers/``
(the parent of the state directory is listed before and after), and only
record files named after a valid container id in there.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import EXIT_BAD_INPUT, EXIT_OK
from oci_hook.__main__ import MAX_STDIN, STAGES, main
from tests.test_fuzz_support import FUZZ, json_trees, listing, mutated_docs, mutated_text, nested_json, time_limit

ROOT = Path(__file__).resolve().parent.parent
# what runc 1.1.5 writes on a hook's stdin at createRuntime (podman adds its annotations)
REAL_STATE: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "id": "fuzz-c1",
    "status": "creating",
    "pid": 4242,
    "bundle": "/var/lib/containers/storage/overlay-containers/fuzz-c1/userdata",
    "annotations": {"io.container.manager": "libpod", "org.opencontainers.image.stopSignal": "15"},
}
STAGE_ARGS: st.SearchStrategy[list[str]] = st.one_of(st.just([]), st.sampled_from(STAGES).map(lambda s: [s]), st.text(max_size=10).filter(lambda s: s not in ("-h", "--help")).map(lambda s: [s]))  # help exits 0 by design
RECORD = re.compile(r"^containers(/[A-Za-z0-9][A-Za-z0-9_.+-]*(\.translation)?\.json)?$")


class Sandbox:
    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.state = parent / "state"
        self.outside = listing(parent)

    def run(self, argv: list[str], stdin: Any, capsys: pytest.CaptureFixture[str]) -> int:
        with time_limit():
            code = main(["--translate", "lazy", *argv], stdin)
        err = capsys.readouterr().err
        assert code in (EXIT_OK, EXIT_BAD_INPUT), (code, err)
        if code != EXIT_OK:
            assert err.startswith("hetmig-hook: ") and err.count("\n") == 1, err
        self.check()
        return code

    def check(self) -> None:
        new = listing(self.parent) - self.outside
        stray = [p for p in new if p != "state" and not p.startswith("state/")]
        assert not stray, f"written outside the state directory: {stray}"
        inside = listing(self.state) if self.state.exists() else set()
        assert all(RECORD.match(p) for p in inside), f"unexpected files in the state directory: {sorted(inside)}"
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    (tmp_path / "neighbour").mkdir()  # a sibling the hook must leave alone
    monkeypatch.setenv("HETMIG_STATE_DIR", str(tmp_path / "state"))
    return Sandbox(tmp_path)


def test_real_state_is_recorded(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    """The mutation base is accepted and writes its record (so the checks below can see writes)."""
    with time_limit():
        assert main(["--translate", "lazy"], io.StringIO(json.dumps(REAL_STATE))) == EXIT_OK
    assert (sandbox.state / "containers" / "fuzz-c1.json").is_file()
    sandbox.check()


@FUZZ
@given(raw=st.binary(max_size=300), argv=STAGE_ARGS)
def test_random_bytes(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], raw: bytes, argv: list[str]) -> None:
    sandbox.run(argv, io.BytesIO(raw), capsys)


@FUZZ
@given(data=st.data(), argv=STAGE_ARGS)
def test_mutated_real_state(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], data: st.DataObject,
                            argv: list[str]) -> None:
    doc = data.draw(mutated_docs(REAL_STATE, rounds=3))
    sandbox.run(argv, io.StringIO(json.dumps(doc)), capsys)


@FUZZ
@given(data=st.data(), argv=STAGE_ARGS)
def test_mutated_state_text(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], data: st.DataObject,
                            argv: list[str]) -> None:
    tokens = ['"', "{", "}", "[", ",", ":", "\\u0000", "\\ud800", "NaN", "Infinity", "1e999", "-0", "9" * 30,
              '"../../x"', '"/"', '"."', "null", "true"]
    text = data.draw(mutated_text(json.dumps(REAL_STATE), tokens, rounds=5))
    sandbox.run(argv, io.StringIO(text), capsys)


@FUZZ
@given(doc=json_trees(30), argv=STAGE_ARGS)
def test_random_trees(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], doc: Any, argv: list[str]) -> None:
    sandbox.run(argv, io.StringIO(json.dumps(doc)), capsys)


@FUZZ
@given(cid=st.one_of(st.text(max_size=300), st.sampled_from(["..", ".", "../x", "a/../../b", "/etc/passwd", "a\x00b",
                                                              ".hidden", "a" * 255, "a" * 254, "x.json"])))
def test_hostile_ids_stay_inside(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], cid: str) -> None:
    for stage in ("createRuntime", "poststop"):
        sandbox.run([stage], io.StringIO(json.dumps({**REAL_STATE, "id": cid})), capsys)


@pytest.mark.parametrize(
    "text",
    [
        nested_json(200_000),
        nested_json(200_000, '{"a":', "}"),
        '{"id": "c", "pid": ' + "9" * 5000 + ', "bundle": "/b"}',
        '{"id": "c", "pid": 1e99999, "bundle": "/b"}',
        "x" * (MAX_STDIN + 1),
        '{"id": "c", "pid": 1, "bundle": "/b", "annotations": {"a": ' + nested_json(50_000) + "}}",
    ],
    ids=["deep-list", "deep-object", "5000-digit-pid", "float-overflow", "over-1MiB", "deep-annotation"],
)
def test_hostile_text_exits_2(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], text: str) -> None:
    assert sandbox.run(["createRuntime"], io.StringIO(text), capsys) == EXIT_BAD_INPUT


def test_hook_process_deep_nesting(tmp_path: Path) -> None:
    """The real entry point (`python -m oci_hook`): exit 2, one line, no traceback, nothing written."""
    env = {**os.environ, "HETMIG_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    for text in (nested_json(200_000), '{"id": "c", "pid": ' + "9" * 5000 + ', "bundle": "/b"}'):
        res = subprocess.run([sys.executable, "-m", "oci_hook", "createRuntime"], input=text, env=env,
                             capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert res.returncode == EXIT_BAD_INPUT, res.stderr
        assert res.stderr.startswith("hetmig-hook: stdin: OCI state: not JSON") and res.stderr.count("\n") == 1
    assert listing(tmp_path) == set()


def test_longest_valid_id_fits_a_file_name(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    """An id of 254 characters once passed check_id and then failed with ENAMETOOLONG (OSError)."""
    from runtime_shim.state import MAX_ID_LEN

    longest = {**REAL_STATE, "id": "a" * MAX_ID_LEN}
    with time_limit():
        assert main(["--translate", "lazy", "createRuntime"], io.StringIO(json.dumps(longest))) == EXIT_OK
    assert (sandbox.state / "containers" / f"{'a' * MAX_ID_LEN}.json").is_file()
    from runtime_shim.state import StateDir, Translation

    assert StateDir(sandbox.state).write_translation("a" * MAX_ID_LEN, Translation("pending"))
    sandbox.check()
    too_long = {**REAL_STATE, "id": "a" * (MAX_ID_LEN + 1)}
    assert sandbox.run(["createRuntime"], io.StringIO(json.dumps(too_long)), capsys) == EXIT_BAD_INPUT


def _sync_with_config(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], config: bytes) -> str:
    """createRuntime --translate sync on a bundle whose config.json is *config*; the stored translation state."""
    from runtime_shim.state import StateDir

    bundle = sandbox.parent / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_bytes(config)
    sandbox.outside = listing(sandbox.parent)
    state = json.dumps({**REAL_STATE, "bundle": str(bundle)})
    with time_limit():
        code = main(["--translate", "sync", "createRuntime"], io.StringIO(state))
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    translation = StateDir(sandbox.state).load("fuzz-c1").translation
    sandbox.check()
    assert translation.state in ("ok", "failed") and (translation.state == "ok" or translation.error)
    return translation.state


@pytest.mark.parametrize(
    "config",
    [nested_json(200_000).encode(), b'{"ociVersion": ' + b"9" * 5000 + b"}", b"\xff\xfe{}", b"{", b"[]",
     b'{"ociVersion": "1.0.2", "root": {"path": "r"}, "x": {"y": Infinity}}',
     b'{"ociVersion": "1.0.2", "root": {"path": "r"}, "x": [1e999]}'],
    ids=["deep", "5000-digits", "not-utf8", "truncated", "list", "infinity-in-a-loss", "float-overflow-in-a-loss"],
)
def test_sync_translation_of_hostile_config_is_recorded_as_failed(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], config: bytes
) -> None:
    """The bundle's config.json is input too: a bad one is a FAILED translation, never a traceback in the hook."""
    assert _sync_with_config(sandbox, capsys, config) == "failed"


@FUZZ
@given(data=st.data())
def test_sync_translation_of_mutated_config(sandbox: Sandbox, capsys: pytest.CaptureFixture[str],
                                            data: st.DataObject) -> None:
    base = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/"},
            "hostname": "h", "linux": {"namespaces": [{"type": "pid"}], "resources": {"memory": {"limit": 1 << 20}}}}
    raw = data.draw(st.one_of(st.binary(max_size=200), mutated_docs(base).map(lambda d: json.dumps(d).encode())))
    _sync_with_config(sandbox, capsys, raw)
