"""runtime_shim.state: atomic records, id checks, the json-free codec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import BadInputError
from runtime_shim.state import (
    ContainerRecord,
    StateDir,
    Translation,
    TranslationState,
    check_id,
    dumps,
    loads,
    resolve_state_dir,
)


def record(cid: str = "c1", **kw: object) -> ContainerRecord:
    return ContainerRecord(id=cid, pid=42, bundle="/b", runtime="runc", **kw)  # type: ignore[arg-type]


def test_create_is_exclusive_and_replace_is_atomic(tmp_path: Path) -> None:
    store = StateDir(tmp_path)
    store.create(record())
    with pytest.raises(BadInputError, match="a record for container 'c1' already exists"):
        store.create(record())
    store.create(record(manager="podman"), replace=True)
    assert store.load("c1").manager == "podman"
    # no temporary files remain
    assert sorted(os.listdir(store.containers)) == ["c1.json"]


def test_roundtrip_and_translation_merge(tmp_path: Path) -> None:
    store = StateDir(tmp_path)
    r = record(annotations={"io.hetmig.migratable": "true"}, created=12.5)
    store.create(r)
    assert store.load("c1") == r
    t = Translation(TranslationState.OK, losses=("a: b",), plan={"jail": {"name": "c1"}})
    assert store.write_translation("c1", t)
    loaded = store.load("c1")
    assert loaded.translation == t and loaded.translation.summary() == "1 losses"
    assert not loaded.translation.strict_ok
    assert [x.id for x in store.records()] == ["c1"]


def test_translation_for_removed_record_is_dropped(tmp_path: Path) -> None:
    store = StateDir(tmp_path)
    store.create(record())
    assert store.remove("c1") is True
    assert store.write_translation("c1", Translation(TranslationState.OK)) is False
    assert os.listdir(store.containers) == []
    assert store.remove("c1") is False


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x\x00y", "a" * 255, "é"])
def test_bad_ids_refused(bad: str) -> None:
    with pytest.raises(BadInputError, match="is not valid"):
        check_id(bad)


def test_records_are_immutable() -> None:
    r = record()
    with pytest.raises(AttributeError, match="immutable"):
        r.pid = 1


def test_state_dir_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HETMIG_STATE_DIR", raising=False)
    assert resolve_state_dir(None) == "/run/hetmig"
    monkeypatch.setenv("HETMIG_STATE_DIR", "/tmp/x")
    assert resolve_state_dir(None) == "/tmp/x"
    assert resolve_state_dir("/y") == "/y"


def test_corrupt_record_named(tmp_path: Path) -> None:
    store = StateDir(tmp_path)
    os.makedirs(store.containers)
    Path(store.record_path("c1")).write_text("{nope")
    with pytest.raises(BadInputError, match=r"containers/c1\.json: not JSON \(.*char 1"):
        store.load("c1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_codec_matches_json(value: object) -> None:
    text = dumps(value)
    assert json.loads(text) == value
    assert loads(text, "t") == value
    assert loads(json.dumps(value), "t") == value


@pytest.mark.parametrize("text", ["", "  ", "{", "[1,]", "NaN", "{} {}", "{'a': 1}"])
def test_loads_rejects(text: str) -> None:
    with pytest.raises(BadInputError, match="^src: "):
        loads(text, "src")
