"""Fuzzing every message of the agent protocol (bounded hypothesis runs).

A Session is fed random frame sequences through an in-memory stream: no input
may escape as anything but a handled error, hang, or create anything outside
the state directory's migrations folder. The restore engine is replaced by a
recorder here (the protocol layer is under test, not the restorer).
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_shim.migration import identity, wire
from runtime_shim.migration.agent import Agent, AgentConfig, Session
from runtime_shim.migration.engine import Restored
from runtime_shim.migration.wire import Limits, MsgType

DATA = Path(__file__).parent / "data" / "hostinfo"


class Recorder:
    def __init__(self) -> None:
        self.pages = 0

    def begin(self, workdir: Path, container_id: str, spec: dict[str, Any]) -> None:
        assert workdir.is_dir()

    def write_pages(self, pid: int, runs: Sequence[tuple[int, int]], data: memoryview) -> None:
        assert len(data) == sum(n for _, n in runs) * wire.PAGE_SIZE
        self.pages += len(data) // wire.PAGE_SIZE

    def build_pages_image(self, pid: int, pages: Sequence[int], out_fd: int) -> None:
        os.write(out_fd, b"\0" * (len(pages) * wire.PAGE_SIZE))

    def restore(self, image_dir: Path, rootfs_dir: Path | None) -> Restored:
        return Restored(1)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class MemStream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.out = bytearray()

    def recv_into(self, buf: memoryview, n: int = 0) -> int:
        n = n or len(buf)
        chunk = self.data[self.pos:self.pos + n]
        buf[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def sendall(self, data: bytes | memoryview) -> None:
        self.out += bytes(data)

    def settimeout(self, _t: float) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    state = tmp_path_factory.mktemp("fuzz-agent")
    identity.init_identity(state)
    return Agent(AgentConfig(state_dir=state, hostinfo_file=DATA / "linux-skylake.json",
                             limits=Limits(max_total=64 << 20, max_image_file=1 << 20, max_chunk=1 << 16,
                                           max_batch_pages=8, reserve_free=0),
                             restore_factory=Recorder))


def frame(mtype: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">HHI", mtype, flags, len(payload)) + payload


hostile_str = st.sampled_from(["../x", "..", "/etc/passwd", "a/b", "x\x00y", "", "core-1.img", "pages-1.img",
                               "pagemap-1.img", "rootfs-delta.tar", "A" * 300, "é", "ctr-1"])
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70) | hostile_str
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
KEYS = ["version", "nonce", "migration_id", "container_id", "spec", "announced_bytes", "disk_bytes", "name",
        "size", "sha256", "pid", "round", "hostinfo", "memory", "disk", "blake2b", "message", "code"]
json_obj = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    mid = uuid.uuid4().hex
    out = bytearray()
    if draw(st.booleans()):
        out += frame(MsgType.HELLO, json.dumps({"version": 1, "nonce": "ab" * 16, "migration_id": mid}).encode())
        if draw(st.booleans()):
            out += frame(MsgType.BEGIN, json.dumps({"migration_id": mid, "container_id": "c" + mid[:6], "spec": {},
                                                     "announced_bytes": 1 << 20}).encode())
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["json", "raw", "garbage"]))
        mtype = draw(st.sampled_from(list(MsgType)) | st.integers(0, 70000).map(lambda x: x & 0xFFFF))
        if kind == "json":
            obj = draw(json_obj)
            payload = json.dumps(obj, default=str).encode()
        elif kind == "raw":
            payload = draw(st.binary(max_size=300))
        else:
            payload = b""
            out += struct.pack(">HHI", int(mtype), 0, draw(st.integers(0, 0xFFFFFFFF)))
            continue
        out += frame(int(mtype), payload, draw(st.integers(0, 0xFFFF)))
    return bytes(out)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=frames())
def test_any_frame_sequence_is_handled(agent: Agent, data: bytes) -> None:
    state = agent.state_dir
    before_outside = set(os.listdir(state.parent))
    stream = MemStream(data)
    Session(agent, stream, "fuzz", "ff" * 32).run()  # type: ignore[arg-type]
    # every reply is a well-formed frame
    replies = MemStream(bytes(stream.out))
    while replies.pos < len(replies.data):
        f = wire.read_frame(replies, Limits())
        assert f.mtype in (MsgType.HELLO_REPLY, MsgType.VERDICT, MsgType.ACK, MsgType.ERROR, MsgType.CONFIRM)
    # nothing outside the state dir; inside it only the known layout
    assert set(os.listdir(state.parent)) == before_outside
    for rel in _tree(state):
        parts = rel.split("/")
        if parts[0] != "migrations":
            assert parts[0] in {"key.pem", "cert.pem", "agent.log", "trusted-peers", "peers"}, rel
            continue
        if len(parts) >= 3:
            assert parts[2] in {"status.json", ".status.json.tmp", "images", "rootfs", "pages.bin", "pages.idx",
                                "rootfs-delta.tar"}, rel
        if len(parts) == 4 and parts[2] == "images":
            assert not os.path.islink(state / rel)
    for mdir in (state / "migrations").iterdir():
        if mdir.is_dir():
            phase = json.loads((mdir / "status.json").read_text())["phase"]
            assert phase in ("aborted", "done", "precopy", "final", "confirmed", "restoring")
    agent._active_containers.clear()  # sessions here never release on a half-open stream
