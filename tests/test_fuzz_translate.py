"""Fuzzing the translator's inputs: config.json, jail.conf, rctl text and the JailPlan JSON form.

Each input is fed random bytes, mutations of real inputs (``runc spec``
output, the rendered golden jail.conf / rctl / plan JSON) and structure-aware
trees (wrong types, huge numbers, deep nesting, NUL bytes, long strings).
The only acceptable outcomes are a result or a :class:`HetmigError`
subclass (exit 2 / 3 through ``hetmig translate`` run in-process); any other
exception, or an example running past the hard limit, fails. Longer runs:
see tests/test_fuzz_support.py (HETMIG_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import EXIT_BAD_INPUT, SpecError
from mappings.loader import MappingRules
from runtime_shim.cli import main as hetmig_main
from runtime_shim.translate import (
    JailPlan,
    freebsd_to_oci,
    load_rules,
    oci_to_freebsd,
    parse_jail_conf,
    parse_rctl,
    render_jail_conf,
    render_rctl,
)
from tests.support.tools import require
from tests.test_fuzz_support import (
    FUZZ,
    json_trees,
    listing,
    mutated_docs,
    mutated_text,
    nested_json,
    outcome,
    time_limit,
)

GOLDEN = Path(__file__).parent / "golden"
RULES: MappingRules = load_rules()
JAIL_CONF = (GOLDEN / "full.jail.conf").read_text()
RCTL = (GOLDEN / "full.rctl").read_text()
PLAN_JSON: dict[str, Any] = json.loads((GOLDEN / "full.json").read_text())

JAIL_TOKENS = ["{", "}", ";", "=", "+=", ",", '"', "'", "$", "${path}", "$name", "\\", "\n", "#", "/*", "*/", "//",
               "mount", "exec.prepare", "devfs_ruleset", "path", "nopersist", "allow.nomount", "x" * 300, "\x00",
               "99999999999999999999999", "-1", "ruleset=7", "nullfs", "devfs rule -s 5 add hide"]
RCTL_TOKENS = [":", "=", "/", "jail", "process", "memoryuse", "deny", "pcpu", "e", "k", "9" * 30, "#", "\n", "\x00",
               "www", "maxproc", "log", "throttle", "readbps", "/jail"]


@pytest.fixture(scope="module")
def runc_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`runc spec` output: the real config.json every runc bundle starts from."""
    require("runc")
    d = tmp_path_factory.mktemp("spec")
    subprocess.run(["runc", "spec"], cwd=d, check=True, timeout=30)
    spec: dict[str, Any] = json.loads((d / "config.json").read_text())
    return spec


def _through_plan(plan: JailPlan) -> None:
    """Everything downstream of a plan must also cope with it: JSON, render, reverse."""
    json.dumps(plan.to_json())
    render_jail_conf(plan)
    render_rctl(plan)
    freebsd_to_oci(plan, RULES)


def _forward(spec: Any) -> None:
    plan = oci_to_freebsd(spec, "fuzz", RULES, bundle="/bundle")
    _through_plan(plan)


# -- config.json -> FreeBSD ----------------------------------------------------


def test_runc_spec_translates(runc_spec: dict[str, Any]) -> None:
    """The mutation base is valid (otherwise the mutations test nothing but the refusal)."""
    assert outcome(lambda: _forward(runc_spec)) == "ok"


@FUZZ
@given(data=st.data())
def test_config_json_mutations(runc_spec: dict[str, Any], data: st.DataObject) -> None:
    spec = data.draw(mutated_docs(runc_spec))
    outcome(lambda: _forward(spec))


@FUZZ
@given(spec=json_trees(40))
def test_config_json_random_trees(spec: Any) -> None:
    outcome(lambda: _forward(spec))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_config_json_random_bytes_cli(tmp_path: Path, raw: bytes) -> None:
    """Through `hetmig translate` in-process: exit 2 and one error, never a traceback."""
    f = tmp_path / "config.json"
    f.write_bytes(raw)
    with time_limit():
        code = hetmig_main(["translate", "--to", "freebsd", "--name", "fz", str(f)])
    assert code in (0, 2, 3)


@pytest.mark.parametrize(
    "text",
    [
        nested_json(100_000),
        nested_json(100_000, "{\"a\":", "}"),
        '{"ociVersion": ' + "9" * 5000 + "}",
        '{"ociVersion": 1e99999}',
        "\x00",
    ],
    ids=["deep-list", "deep-object", "5000-digit-int", "float-overflow", "nul"],
)
def test_config_json_hostile_text_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    f = tmp_path / "config.json"
    f.write_text(text)
    with time_limit():
        code = hetmig_main(["translate", "--to", "freebsd", "--name", "fz", str(f)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert f"{f}: $: " in err and "Traceback" not in err


# -- jail.conf / rctl -> OCI ---------------------------------------------------


def _reverse_conf(text: str) -> None:
    _through_plan(parse_jail_conf(text, source="fuzz.conf"))


@FUZZ
@given(data=st.data())
def test_jail_conf_mutations(data: st.DataObject) -> None:
    text = data.draw(mutated_text(JAIL_CONF, JAIL_TOKENS, rounds=6))
    outcome(lambda: _reverse_conf(text))


@FUZZ
@given(text=st.lists(st.sampled_from(list("{};=+,\"'$\\#/*\n abx.0") + ["mount", "path", "${", "}"]),
                     max_size=120).map("".join))
def test_jail_conf_token_soup(text: str) -> None:
    outcome(lambda: _reverse_conf(text))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_jail_conf_random_bytes_cli(tmp_path: Path, raw: bytes) -> None:
    conf = tmp_path / "j.conf"
    conf.write_bytes(raw)
    rctl = tmp_path / "j.rctl"
    rctl.write_bytes(raw[::-1])
    with time_limit():
        code = hetmig_main(["translate", "--to", "oci", "--jail-conf", str(conf), "--rctl", str(rctl)])
    assert code in (0, 2, 3)


@FUZZ
@given(data=st.data())
def test_rctl_mutations(data: st.DataObject) -> None:
    text = data.draw(mutated_text(RCTL, RCTL_TOKENS, rounds=6))
    outcome(lambda: parse_rctl(text, source="fuzz.rctl", name=data.draw(st.sampled_from([None, "www"]))))


def test_rctl_huge_amount_is_refused() -> None:
    """A 5000-digit amount once escaped as ValueError (int() digit limit)."""
    with pytest.raises(SpecError, match=r"fuzz\.rctl: line 1: .*amount"):
        with time_limit():
            parse_rctl("jail:www:memoryuse:deny=" + "9" * 5000, source="fuzz.rctl")


def test_jail_conf_variable_doubling_is_bounded() -> None:
    """x = "$x$x" repeated: 2^40 characters if expanded without a bound."""
    text = 'www { x = "AAAAAAAA";' + ' x = "$x$x";' * 40 + " }"
    with pytest.raises(SpecError, match="expand"):
        with time_limit(5):
            parse_jail_conf(text, source="bomb.conf")


def test_jail_conf_expansion_total_is_bounded() -> None:
    """Many values each expanding one big variable: the budget is per file, not per value."""
    text = 'www { x = "' + "A" * 60_000 + '";' + ' mount += "$x";' * 40 + " }"
    with pytest.raises(SpecError, match="expand"):
        with time_limit(5):
            parse_jail_conf(text, source="wide.conf")


def test_jail_conf_many_lines_is_linear() -> None:
    """Line numbers were recounted from the start for every token: 200k comment lines took ~100 s."""
    text = "www {\n" + "# c\n" * 200_000 + '    path = "/j";\n}\n'
    with time_limit(5):
        plan = parse_jail_conf(text, source="long.conf")
    assert plan.params["path"] == "/j"


# -- JailPlan JSON -> OCI --------------------------------------------------------


def test_golden_plan_reverses() -> None:
    assert outcome(lambda: _through_plan(JailPlan.from_json(PLAN_JSON, source="full.json"))) == "ok"


@FUZZ
@given(data=st.data())
def test_plan_json_mutations(data: st.DataObject) -> None:
    doc = data.draw(mutated_docs(PLAN_JSON, rounds=4))
    outcome(lambda: _through_plan(JailPlan.from_json(doc, source="fuzz.json")))


@FUZZ
@given(doc=json_trees(40))
def test_plan_json_random_trees(doc: Any) -> None:
    outcome(lambda: _through_plan(JailPlan.from_json(doc, source="fuzz.json")))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_plan_json_random_bytes_cli(tmp_path: Path, raw: bytes) -> None:
    f = tmp_path / "jail.json"
    f.write_bytes(raw)
    with time_limit():
        code = hetmig_main(["translate", "--to", "oci", str(f)])
    assert code in (0, 2, 3)


def test_plan_json_deep_nesting_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "jail.json"
    f.write_text('{"jail": {"name": "a", "params": {}}, "losses": [{"path": "a", "reason": "b", "value": '
                 + nested_json(100_000) + "}]}")
    with time_limit():
        code = hetmig_main(["translate", "--to", "oci", str(f)])
    assert code == EXIT_BAD_INPUT and "Traceback" not in capsys.readouterr().err


def test_cli_writes_nothing(tmp_path: Path, runc_spec: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """translate is read-only: the directory of its input gains nothing."""
    f = tmp_path / "config.json"
    f.write_text(json.dumps(runc_spec))
    before = listing(tmp_path)
    assert hetmig_main(["translate", "--to", "freebsd", "--name", "fz", str(f)]) == 0
    conf = tmp_path / "out.conf"
    conf.write_text(render_jail_conf(oci_to_freebsd(runc_spec, "fz", RULES, bundle=str(tmp_path))))
    before = listing(tmp_path)
    assert hetmig_main(["translate", "--to", "oci", "--jail-conf", str(conf)]) == 0
    assert listing(tmp_path) == before
    capsys.readouterr()


@pytest.mark.parametrize("direction", [["--to", "freebsd", "--name", "fz"], ["--to", "oci"]])
def test_stdin_not_utf8_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                direction: list[str]) -> None:
    """`-` reads stdin; under a strict UTF-8 locale undecodable bytes must still be bad input."""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff{}"), encoding="utf-8", errors="strict"))
    with time_limit():
        code = hetmig_main(["translate", *direction, "-"])
    assert code == EXIT_BAD_INPUT and "Traceback" not in capsys.readouterr().err
