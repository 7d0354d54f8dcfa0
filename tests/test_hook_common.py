"""Helpers shared by the hook, runtime-CLI and podman tests (no tests here).

Bundles are made with the real ``runc spec`` and then edited: no terminal,
our command, the busybox rootfs, optional hooks and annotations. Every runc
container is created under a private ``--root`` so teardown can delete all of
them without touching anything else on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.tools import require

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOOK_LAUNCHER = REPO / "packaging" / "bin" / "hetmig-hook"
MIGRATABLE = {"io.hetmig.migratable": "true"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def hook_env() -> list[str]:
    return [f"PYTHONPATH={REPO}", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def hook_entry(state_dir: Path, stage: str) -> dict[str, Any]:
    """One OCI hook entry that runs our hook from this checkout."""
    return {
        "path": PYTHON,
        "args": [PYTHON, "-S", str(HOOK_LAUNCHER), "--state-dir", str(state_dir), stage],
        "env": hook_env(),
        "timeout": 20,
    }


def make_bundle(
    dest: Path,
    rootfs: Path,
    args: list[str],
    *,
    hooks: dict[str, list[dict[str, Any]]] | None = None,
    annotations: dict[str, str] | None = None,
) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    runc = require("runc")
    subprocess.run([runc, "spec"], cwd=dest, check=True, capture_output=True)
    config = json.loads((dest / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["root"] = {"path": str(rootfs), "readonly": False}
    if hooks:
        config["hooks"] = hooks
    if annotations:
        config["annotations"] = annotations
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def hetmig(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``hetmig`` CLI from this checkout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [PYTHON, "-m", "runtime_shim.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )
    if check and res.returncode != 0:
        raise AssertionError(f"hetmig {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


def ps_json(state_dir: Path) -> list[dict[str, Any]]:
    out = hetmig("ps", "--json", "--state-dir", str(state_dir)).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def translator_available() -> bool:
    try:
        from runtime_shim import translate
    except ImportError:
        return False
    return hasattr(translate, "load_rules") and hasattr(translate, "oci_to_freebsd")


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Runc:
    """runc under a private --root; ``cleanup()`` force-deletes everything in it."""

    def __init__(self, root: Path) -> None:
        self.binary = require("runc")
        self.root = root
        self._held: list[int] = []

    def pipes(self) -> tuple[int, int, int]:
        """Fresh pipes for a container's stdin, stdout and stderr.

        CRIU dumps pipes as external descriptors that ``runc restore`` reconnects
        to its own stdio; a host file or /dev/null would be outside the
        container's mount namespace and make the dump fail. The other ends
        stay open here until cleanup().
        """
        fds = []
        for child_end in ("r", "w", "w"):
            r, w = os.pipe()
            if child_end == "r":
                fds.append(r)
                self._held.append(w)
            else:
                fds.append(w)
                self._held.append(r)
        return fds[0], fds[1], fds[2]

    def create_piped(self, cid: str, bundle: Path, *extra: str) -> None:
        """``runc create`` with pipes as the container's stdio (checkpointable)."""
        fin, fout, ferr = self.pipes()
        try:
            res = subprocess.run(
                [self.binary, "--root", str(self.root), "create", "--bundle", str(bundle), *extra, cid],
                stdin=fin,
                stdout=fout,
                stderr=ferr,
                timeout=60,
            )
        finally:
            for fd in (fin, fout, ferr):
                os.close(fd)
        if res.returncode != 0:
            raise AssertionError(f"runc create {cid} -> {res.returncode}")

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [self.binary, "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"runc {' '.join(args)} -> {res.returncode}: {res.stderr}")
        return res

    def create(self, cid: str, bundle: Path, *extra: str) -> None:
        """``runc create``; the container's stdio goes to BUNDLE/stdio.log (a pipe
        would keep subprocess waiting for EOF as long as the container lives)."""
        log = bundle / "stdio.log"
        with open(log, "ab") as out:
            res = subprocess.run(
                [self.binary, "--root", str(self.root), "create", "--bundle", str(bundle), *extra, cid],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=60,
            )
        if res.returncode != 0:
            raise AssertionError(f"runc create {cid} -> {res.returncode}: {log.read_text()}")

    def state(self, cid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self("state", cid).stdout)
        return data

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        res = self("list", "-q", check=False)
        return res.stdout.split()

    def cleanup(self) -> None:
        for cid in self.ids():
            self("delete", "--force", cid, check=False)
        for fd in self._held:
            try:
                os.close(fd)
            except OSError:
                pass
        self._held.clear()


@pytest.fixture
def runc_root(tmp_path: Path) -> Iterator[Runc]:
    r = Runc(tmp_path / "runc-root")
    yield r
    r.cleanup()
    leftover = r.ids()
    assert not leftover, f"runc containers left behind: {leftover}"
