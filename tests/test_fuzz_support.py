"""Shared pieces of the tests/test_fuzz_*.py files (hypothesis settings, hang guard, strategies),
and tests that those detectors work.

Runs are bounded for CI. For a longer campaign raise the example count::

    HETMIG_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/test_fuzz_*.py

``HETMIG_FUZZ_TIMEOUT`` (seconds, default 10) is the hard per-example limit:
an example that runs longer fails the test as a hang (SIGALRM in the main
thread; the code under test is pure Python or returns to Python often).
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from capture.errors import HetmigError

EXAMPLES = int(os.environ.get("HETMIG_FUZZ_EXAMPLES", "60"))
TIMEOUT = float(os.environ.get("HETMIG_FUZZ_TIMEOUT", "10"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the hard limit below is the hang detector; wall-clock deadlines flake on a loaded CI box
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much],
)


class Hang(BaseException):
    """An example ran past the per-example limit (BaseException: no `except Exception` swallows it)."""


@contextmanager
def time_limit(seconds: float = TIMEOUT) -> Iterator[None]:
    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"example still running after {seconds} s (hang or unbounded work)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(fn: Callable[[], Any], seconds: float = TIMEOUT) -> str:
    """Run *fn*: "ok", or the name of the HetmigError it raised; anything else propagates (a bug)."""
    with time_limit(seconds):
        try:
            fn()
        except HetmigError as err:
            assert str(err).strip(), f"{type(err).__name__} without a message"
            return type(err).__name__
    return "ok"


def listing(root: Path) -> set[str]:
    """Every path under *root* (relative), to compare before/after a run."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


# -- strategies ---------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), 10**300])
NASTY_TEXT = st.sampled_from(
    ["", "\x00", "a\x00b", "..", "../../etc/passwd", "/", "$", "${x}", "$x$x", "\\", "\n", "'", '"', "{", "}", ";",
     "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "é", "x" * 5000, "-1", "1e400", "NaN"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    NASTY_TEXT,
)


def json_trees(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.one_of(st.text(max_size=12), NASTY_TEXT), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys / indexes) into a JSON document, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths_of(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += paths_of(value, prefix + (i,))
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of *doc* with the node at *path* replaced (or deleted if value is _DELETE)."""
    doc = json.loads(json.dumps(doc))
    if not path:
        return value
    cur = doc
    for part in path[:-1]:
        cur = cur[part]
    if value is DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return doc


DELETE = object()


@st.composite
def mutated_docs(draw: st.DrawFn, base: Any, rounds: int = 3) -> Any:
    """*base* with 1..rounds nodes replaced by wrong-typed / huge / nested values, or deleted."""
    doc = base
    for _ in range(draw(st.integers(1, rounds))):
        path = draw(st.sampled_from(paths_of(doc)))
        value = draw(st.one_of(json_trees(), st.just(DELETE) if path else json_trees()))
        doc = replaced(doc, path, value)
    return doc


@st.composite
def mutated_text(draw: st.DrawFn, base: str, tokens: list[str], rounds: int = 4) -> str:
    """*base* with byte-level edits: slices deleted, duplicated, tokens and junk inserted."""
    text = base
    for _ in range(draw(st.integers(1, rounds))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 80)))
        op = draw(st.sampled_from(["delete", "dup", "token", "junk", "replace"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "dup":
            text = text[:j] + text[i:j] * draw(st.integers(1, 4)) + text[j:]
        elif op == "token":
            text = text[:i] + draw(st.sampled_from(tokens)) + text[i:]
        elif op == "junk":
            text = text[:i] + draw(st.text(max_size=20)) + text[i:]
        else:
            text = text[:i] + draw(st.one_of(st.sampled_from(tokens), st.text(max_size=8))) + text[j:]
    return text


def nested_json(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


# -- the detectors themselves must work, or every fuzz test passes vacuously ----


def test_time_limit_stops_a_hang() -> None:
    import pytest

    with pytest.raises(Hang):
        with time_limit(0.2):
            while True:
                pass


def test_outcome_lets_non_hetmig_errors_escape() -> None:
    import pytest

    from capture.errors import SpecError

    assert outcome(lambda: None) == "ok"
    assert outcome(lambda: (_ for _ in ()).throw(SpecError("f", "p", "r"))) == "SpecError"
    with pytest.raises(ValueError):
        outcome(lambda: int("x"))


def test_listing_sees_new_files(tmp_path: Path) -> None:
    before = listing(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    assert listing(tmp_path) - before == {"d", "d/f"}
