"""``hetmig-runtime --backend jail`` verbs: the exact FreeBSD commands, recorded.

UNTESTED ON A REAL FREEBSD HOST: a runner records every command and answers
with outputs composed from reference/freebsd/tools-output.md (jls --libxo
json: a ``jail-information`` container with a ``jail`` list); the process
spawner and liveness check are fakes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pytest

from capture.errors import BadInputError, HetmigError
from runtime_shim.backends.jail_runtime import JailRuntime, parse_signal
from runtime_shim.backends.runner import CompletedCommand
from tests.test_hook_common import make_bundle

MEM = 128 * 1024 * 1024


@dataclass
class FakeFreeBSD:
    """Answers by program name; records argv lists; tracks whether jail 'web' exists."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    jail_exists: bool = False

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        a = tuple(argv)
        self.calls.append(a)
        if a[:3] == ("sysctl", "-n", "kern.racct.enable"):
            return CompletedCommand(a, 0, "1\n")
        if a[0] == "jail" and "-c" in a:
            self.jail_exists = True
        if a[:2] == ("jail", "-r"):
            self.jail_exists = False
        if a[0] == "jls":
            jails = [{"jid": 7, "name": "web", "path": "/jails/web"}] if self.jail_exists else []
            if "-j" in a and not self.jail_exists:
                return CompletedCommand(a, 1, "", 'jls: jail "web" not found\n')
            return CompletedCommand(a, 0, json.dumps({"__version": "2", "jail-information": {"jail": jails}}))
        return CompletedCommand(a, 0, "")

    def lines(self, program: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == program]


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Path:
    b = make_bundle(tmp_path / "bundle", busybox_rootfs, ["sleep", "60"], annotations={"x.y": "z"})
    config = json.loads((b / "config.json").read_text())
    config["linux"]["resources"] = {"memory": {"limit": MEM}, "pids": {"limit": 32}}
    (b / "config.json").write_text(json.dumps(config))
    return b


def test_lifecycle_commands(tmp_path: Path, bundle: Path) -> None:
    fake = FakeFreeBSD()
    spawned: list[tuple[str, ...]] = []
    killed: list[tuple[int, int]] = []
    alive = {4242}
    def spawn(argv: Sequence[str]) -> int:
        spawned.append(tuple(argv))
        return 4242

    rt = JailRuntime(
        state_root=str(tmp_path / "state"),
        runner=fake,
        spawn=spawn,
        alive=lambda pid: pid in alive,
        killer=lambda pid, sig: killed.append((pid, sig)),
    )
    pid_file = tmp_path / "pid"
    assert rt.create("web", str(bundle), pid_file=str(pid_file)) == 0
    jail_c = fake.lines("jail")[0]
    assert jail_c[:5] == ("jail", "-c", "name=web", jail_c[3], "persist") and jail_c[3].startswith("path=")
    rctl = [" ".join(c) for c in fake.lines("rctl")]
    assert f"rctl -a jail:web:memoryuse:deny={MEM}" in rctl and "rctl -a jail:web:maxproc:deny=32" in rctl
    # rules are added after the jail exists (the subject must exist)
    assert fake.calls.index(jail_c) < fake.calls.index(tuple(rctl[0].split()))
    assert rt.state("web")["status"] == "created" and not pid_file.exists()

    rt.start("web")
    assert spawned and spawned[0][:2] == ("jexec", "web") and spawned[0][-2:] == ("sleep", "60")
    assert pid_file.read_text() == "4242"
    state = rt.state("web")
    assert state == {"ociVersion": "1.0.2", "id": "web", "status": "running", "pid": 4242,
                     "bundle": str(bundle), "annotations": {"x.y": "z", "org.freebsd.jail.jid": "7"}}
    assert any(c[0] == "jls" and "web" in c and "json" in c for c in fake.calls)
    assert [r["id"] for r in rt.list()] == ["web"]
    with pytest.raises(HetmigError, match="not created: cannot start it"):
        rt.start("web")

    rt.kill("web", "TERM")
    assert killed == [(4242, 15)]
    rt.kill("web", "KILL", all_processes=True)
    assert fake.calls[-1] == ("jexec", "web", "/bin/kill", "-9", "-1")
    with pytest.raises(HetmigError, match="is running \\(use delete --force\\)"):
        rt.delete("web")
    alive.clear()
    assert rt.state("web")["status"] == "stopped"
    before = len(fake.calls)
    rt.delete("web")
    removal = [" ".join(c) for c in fake.calls[before:]]
    assert "jail -r web" in removal and "rctl -r jail:web" in removal
    assert removal.index("jail -r web") < removal.index("rctl -r jail:web")
    with pytest.raises(HetmigError, match="does not exist"):
        rt.state("web")


def test_create_refuses_duplicates_and_bad_bundles(tmp_path: Path, bundle: Path) -> None:
    rt = JailRuntime(state_root=str(tmp_path / "state"), runner=FakeFreeBSD(), spawn=lambda argv: 1)
    rt.create("web", str(bundle))
    with pytest.raises(BadInputError, match="already exists"):
        rt.create("web", str(bundle))
    with pytest.raises(BadInputError, match="cannot read config.json"):
        rt.create("other", str(tmp_path / "nothing"))


def test_signals() -> None:
    assert parse_signal("KILL") == 9 and parse_signal("SIGTERM") == 15 and parse_signal("2") == 2
    with pytest.raises(BadInputError, match="signal 'FOO' is not known"):
        parse_signal("FOO")


def test_cli_rejects_what_the_jail_backend_cannot_honour(tmp_path: Path) -> None:
    from tests.test_runtime_cli import hr

    root = tmp_path / "jails"
    res = hr(root, "--backend", "jail", "checkpoint", "--image-path", str(tmp_path), "web", check=False)
    assert res.returncode == 2 and "checkpoint is not available with --backend jail" in res.stderr
    res = hr(root, "--backend", "jail", "--systemd-cgroup", "state", "web", check=False)
    assert res.returncode == 2 and "--systemd-cgroup has no meaning with --backend jail" in res.stderr
    res = hr(root, "--backend", "jail", "create", "--console-socket", "/x", "web", check=False)
    assert res.returncode == 2 and "--console-socket is not supported with --backend jail" in res.stderr
    res = hr(root, "--backend", "jail", "state", "web", check=False)
    assert res.returncode == 1 and "does not exist" in res.stderr
    features = json.loads(hr(root, "--backend", "jail", "features").stdout)
    assert "untested" in features["annotations"]["io.hetmig.untested"]
