"""Fuzzing mapping files (``load_rules(extra=[FILE])`` / ``hetmig translate --mapping FILE``).

Inputs: random bytes, text mutations of the shipped mappings/default.yaml,
structure-aware trees (default.yaml's own tree with nodes replaced by wrong
types, huge numbers, nesting, NUL bytes, long strings, dumped back to YAML),
YAML alias bombs (billion laughs), deep nesting, huge integers and Python
tags. Only a MappingRules or a :class:`MappingError` may come out, within
the per-example limit; a mapping that loads must also drive the translator
without a non-HetmigError exception.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import MappingError
from mappings.loader import load_rules, shipped_paths
from runtime_shim.translate import JailPlan, freebsd_to_oci, oci_to_freebsd, render_jail_conf
from tests.test_fuzz_support import FUZZ, json_trees, mutated_docs, mutated_text, outcome, time_limit

DEFAULT_TEXT = shipped_paths()[0].read_text()
DEFAULT_TREE: dict[str, Any] = yaml.safe_load(DEFAULT_TEXT)
GOLDEN_PLAN = JailPlan.from_json(
    __import__("json").loads((Path(__file__).parent / "golden" / "full.json").read_text()), source="full.json"
)
SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "root": {"path": "rootfs"},
    "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
    "hostname": "fz",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}],
              "resources": {"memory": {"limit": 1 << 20}, "cpu": {"quota": 50000, "period": 100000}}},
}
YAML_TOKENS = [": ", "- ", "\n", "  ", "&a ", "*a", "!!python/object:os.system ", "!!binary ", "{", "}", "[", "]",
               "'", '"', "\x00", "9" * 5000, "0x" + "f" * 4000, ".inf", ".nan", "~", "<<: *a", "? ", "|", ">",
               "%YAML 1.1\n", "---\n", "...\n", "resources:", "oci: linux.resources.x", "rctl:", "deny", "x" * 2000]


def _load(path: Path) -> None:
    rules = load_rules([path])
    plan = oci_to_freebsd(SPEC, "fz", rules, bundle="/b")
    render_jail_conf(plan)
    freebsd_to_oci(plan, rules)
    freebsd_to_oci(GOLDEN_PLAN, rules)


def _try(tmp_path: Path, data: bytes | str, seconds: float | None = None) -> str:
    f = tmp_path / "site.yaml"
    f.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return outcome(lambda: _load(f)) if seconds is None else outcome(lambda: _load(f), seconds)


def test_default_as_extra_loads(tmp_path: Path) -> None:
    """The mutation base loads (layering the shipped file over itself)."""
    assert _try(tmp_path, DEFAULT_TEXT) == "ok"


@FUZZ
@given(raw=st.binary(max_size=400))
def test_random_bytes(tmp_path: Path, raw: bytes) -> None:
    _try(tmp_path, raw)


@FUZZ
@given(data=st.data())
def test_mutated_default_text(tmp_path: Path, data: st.DataObject) -> None:
    _try(tmp_path, data.draw(mutated_text(DEFAULT_TEXT, YAML_TOKENS, rounds=5)))


@FUZZ
@given(data=st.data())
def test_mutated_default_tree(tmp_path: Path, data: st.DataObject) -> None:
    tree = data.draw(mutated_docs(DEFAULT_TREE, rounds=3))
    _try(tmp_path, yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(tree=json_trees(30))
def test_random_trees(tmp_path: Path, tree: Any) -> None:
    _try(tmp_path, yaml.safe_dump(tree, allow_unicode=True))


def _laughs(levels: int, where: str) -> str:
    """A billion-laughs document: 10**levels leaves through aliases, in a few hundred bytes."""
    lines = ["version: 1", f"{where}:", '  k0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  k{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["base_params", "rlimits", "capabilities", "unknown_key"])
def test_billion_laughs_refused_quickly(tmp_path: Path, where: str) -> None:
    """Aliases expanding to 10**9 nodes: refused by the node bound before jsonschema walks (or prints) them."""
    with pytest.raises(MappingError, match="site.yaml") as err:
        with time_limit(5):
            _load(_write(tmp_path, _laughs(9, where)))
    if where != "unknown_key":
        assert "nodes" in str(err.value)


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    text = "version: 1\nresources:\n  - oci: linux.resources.pids.limit\n    rctl: &r {resource: maxproc, action: deny}\n"
    text += "    convert: &c {kind: scale, factor: 1}\n    unlimited: &u [-1, 0]\n"
    assert _try(tmp_path, text) == "ok"


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nx: " + "[" * 5000 + "]" * 5000,
        "version: 1\nbase_params:\n  x: " + "[" * 900 + "]" * 900,
        "version: 1\nbase_params:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(900)) + "  " * 901 + "v",
        "version: 1\ndevfs: {ruleset_base: " + "9" * 5000 + "}",
        "version: 1\ndevfs: {ruleset_base: 0x" + "f" * 5000 + ", ruleset_span: 1}",
        "version: 1\ndevfs: {ruleset_base: .inf, ruleset_span: .nan}",
        "version: !!python/object/apply:os.system ['touch /tmp/hetmig-fuzz-owned']",
        "version: 1\x00",
        "\ufeffversion: 1\n" + "# " + "x" * 100_000 + "\n",
    ],
    ids=["deep-5000", "deep-900", "deep-mapping-900", "int-5000-digits", "hex-5000", "inf-nan", "python-tag", "nul",
         "long-comment"],
)
def test_hostile_documents(tmp_path: Path, text: str) -> None:
    result = _try(tmp_path, text, seconds=5)
    assert result in ("ok", "MappingError")
    assert not Path("/tmp/hetmig-fuzz-owned").exists()


def test_oversized_file_refused(tmp_path: Path) -> None:
    from mappings.loader import MAX_MAPPING_BYTES

    with pytest.raises(MappingError, match="larger than"):
        _load(_write(tmp_path, "version: 1\n" + "#" * MAX_MAPPING_BYTES + "\n"))


def test_cli_mapping_bomb_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "config.json"
    spec.write_text(__import__("json").dumps(SPEC))
    m = _write(tmp_path, _laughs(9, "base_params"))
    res = subprocess.run(
        [str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "hetmig"), "translate", "--to", "freebsd",
         "--name", "fz", "--mapping", str(m), str(spec)],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and f"{m}: " in res.stderr


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "site.yaml"
    f.write_text(text)
    return f
