"""Shared fixtures: a busybox rootfs, a scratch dir, and leftover checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.programs.build import build_programs
from tests.programs.harness import kill_pids, wait_gone
from tests.support.tools import make_busybox_rootfs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs")


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes appended here are killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test programs of tests/programs/, built once with gcc."""
    return build_programs(tmp_path_factory.mktemp("programs"))


@pytest.fixture
def restored() -> Iterator[list[int]]:
    """Host pids appended here are SIGKILLed (and waited for) at teardown."""
    pids: list[int] = []
    yield pids
    kill_pids(pids)
    wait_gone(pids)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Tables tests recorded with ``record_property("table:TITLE", {column: value, ...})``,
    printed after the run (whatever -s/-q say). Rows whose first value is the same are
    merged (a grid filled one cell per test)."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for key in ("passed", "failed", "skipped", "error", "xfailed", "xpassed"):
        for rep in terminalreporter.stats.get(key, []):
            for name, value in getattr(rep, "user_properties", ()):
                if not (isinstance(name, str) and name.startswith("table:") and isinstance(value, dict) and value):
                    continue
                first = next(iter(value))
                row = tables.setdefault(name[len("table:"):], {}).setdefault(str(value[first]), {})
                row.update({str(k): str(v) for k, v in value.items()})
    for title, rows in tables.items():
        cols = list(dict.fromkeys(k for r in rows.values() for k in r))
        width = {c: max([len(c)] + [len(r.get(c, "")) for r in rows.values()]) for c in cols}
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line("  ".join(c.ljust(width[c]) for c in cols))
        for r in rows.values():
            terminalreporter.write_line("  ".join(r.get(c, "").ljust(width[c]) for c in cols))
