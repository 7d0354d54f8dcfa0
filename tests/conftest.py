"""Shared fixtures: a busybox rootfs, a scratch dir, and leftover checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

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
