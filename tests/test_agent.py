"""The agent over real TLS on 127.0.0.1: who gets in, and what a peer may make it do."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import ssl
import tarfile
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from runtime_shim.migration import hostinfo, identity, wire
from runtime_shim.migration.agent import Agent, AgentConfig
from runtime_shim.migration.source import Connection, MigrateOptions
from runtime_shim.migration.wire import Limits, MsgType, RemoteError


@dataclass
class Env:
    agent: Agent
    port: int
    src: Path
    dst: Path
    tmp: Path

    def opts(self, state: Path | None = None, **kw: Any) -> MigrateOptions:
        return MigrateOptions(host="127.0.0.1", port=self.port, state_dir=state or self.src, **kw)

    def log(self) -> str:
        for h in __import__("logging").getLogger("hetmig.agent").handlers:
            h.flush()
        return (self.dst / "agent.log").read_text()

    def wait_log(self, *needles: str, timeout: float = 5.0) -> str:
        """The agent log once it contains every needle (the agent logs from its own thread)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if all(n in text for n in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    def migrations(self) -> list[str]:
        return sorted(os.listdir(self.dst / "migrations"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    a = identity.init_identity(src)
    b = identity.init_identity(dst)
    identity.trust(src, b.fingerprint)
    identity.trust(dst, a.fingerprint, cert=a.cert_path)
    agent = Agent(AgentConfig(state_dir=dst, limits=Limits(max_total=1 << 30), idle_timeout=10))
    _, port = agent.bind("127.0.0.1", 0)
    t = threading.Thread(target=agent.serve_forever, daemon=True)
    t.start()
    yield Env(agent, port, src, dst, tmp_path)
    agent.shutdown()
    t.join(timeout=5)


def hello(conn: Connection, mid: str | None = None) -> dict[str, Any]:
    nonce = os.urandom(16).hex()
    conn.send(MsgType.HELLO, {"version": 1, "nonce": nonce, "migration_id": mid or uuid.uuid4().hex})
    reply = conn.recv(MsgType.HELLO_REPLY)
    assert reply["client_nonce"] == nonce and reply["nonce"] != nonce
    return reply


def begin(conn: Connection, mid: str, cid: str = "ctr1", announced: int = 64 << 20) -> dict[str, Any]:
    conn.send(MsgType.BEGIN, {"migration_id": mid, "container_id": cid, "spec": {}, "announced_bytes": announced})
    return conn.recv(MsgType.ACK)


def session(env: Env, cid: str = "ctr1") -> tuple[Connection, str]:
    conn = Connection(env.opts())
    mid = uuid.uuid4().hex
    hello(conn, mid)
    begin(conn, mid, cid)
    return conn, mid


def test_pinned_peer_accepted_and_gets_host_info(env: Env) -> None:
    conn = Connection(env.opts())
    reply = hello(conn)
    info = hostinfo.HostInfo.from_json(reply["hostinfo"])
    assert info.os == "Linux" and info.cpu_flags
    conn.close()
    assert "accepted 127.0.0.1" in env.wait_log("accepted 127.0.0.1")


def test_unpinned_client_refused_before_any_message_and_logged(env: Env) -> None:
    stranger = env.tmp / "stranger"
    identity.init_identity(stranger)
    identity.trust(stranger, env.agent.ident.fingerprint)
    before = sorted(p.name for p in env.dst.iterdir())
    # TLS 1.3: the client's handshake completes first; the agent's refusal arrives on first use
    with pytest.raises((wire.ProtocolError, identity.AuthError, RemoteError, OSError)):
        conn = Connection(env.opts(stranger))
        hello(conn)
    log = env.wait_log("refused 127.0.0.1", "TLS handshake failed")
    assert "refused 127.0.0.1" in log and "TLS handshake failed" in log
    assert "accepted" not in log
    assert env.migrations() == []
    assert sorted(p.name for p in env.dst.iterdir()) == before


def test_client_without_certificate_refused(env: Env) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    with pytest.raises((ssl.SSLError, OSError, wire.ProtocolError)):
        s = ctx.wrap_socket(raw)
        wire.send_json(s, MsgType.HELLO, {"version": 1})
        s.recv(1)
        s.recv(1)
    assert "TLS handshake failed" in env.wait_log("TLS handshake failed")


def test_wrong_cert_same_name_refused(env: Env, tmp_path: Path) -> None:
    # a forged client: the same subject as the pinned source, another key
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    src_cert = x509.load_pem_x509_certificate((env.src / "cert.pem").read_bytes())
    cn = src_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    forged = tmp_path / "forged"
    identity.init_identity(forged, common_name=str(cn))
    identity.trust(forged, env.agent.ident.fingerprint)
    assert identity.load_identity(forged).fingerprint != identity.load_identity(env.src).fingerprint
    with pytest.raises((wire.ProtocolError, OSError)):
        hello(Connection(env.opts(forged)))
    assert "certificate verify failed" in env.wait_log("certificate verify failed")


def test_plain_tcp_gets_nothing(env: Env) -> None:
    raw = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    raw.sendall(wire.HEADER.pack(1, 0, 2) + b"{}")
    try:
        data = raw.recv(100)
    except ConnectionResetError:
        data = b""
    raw.close()
    assert "refused 127.0.0.1" in env.wait_log("refused 127.0.0.1")
    assert not data.startswith(wire.HEADER.pack(MsgType.HELLO_REPLY, 0, 0)[:2])
    assert b"hostinfo" not in data
    assert env.migrations() == []


def test_client_refuses_unpinned_agent(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other"
    identity.init_identity(other)
    identity.trust(other, "ab" * 32)  # pins someone else
    with pytest.raises(identity.AuthError, match="agent certificate fingerprint .* is not pinned"):
        Connection(env.opts(other))


def test_replayed_migration_id_refused(env: Env) -> None:
    conn, mid = session(env)
    conn.send(MsgType.ABORT, {"message": "test"})
    conn.close()
    conn2 = Connection(env.opts())
    with pytest.raises(RemoteError, match=f"hello.migration_id={mid} was already used"):
        hello(conn2, mid)
    assert env.migrations() == [mid]


def test_second_migration_of_same_container_refused(env: Env) -> None:
    conn, mid = session(env, "web")
    conn2 = Connection(env.opts())
    mid2 = uuid.uuid4().hex
    hello(conn2, mid2)
    with pytest.raises(RemoteError, match=r"container_id='web' is already being migrated here"):
        begin(conn2, mid2, "web")
    conn.send(MsgType.ABORT, {"message": "done"})
    conn.close()


@pytest.mark.parametrize("announced, message", [
    ((1 << 30) + 1, r"begin.announced_bytes=1073741825 exceeds the limit 1073741824"),
])
def test_announced_size_above_limit_refused(env: Env, announced: int, message: str) -> None:
    conn = Connection(env.opts())
    mid = uuid.uuid4().hex
    hello(conn, mid)
    with pytest.raises(RemoteError, match=message):
        begin(conn, mid, announced=announced)
    assert env.migrations() == []


def test_announced_size_above_free_space_refused(tmp_path: Path, env: Env) -> None:
    env.agent.config.limits = Limits(max_total=1 << 62)
    conn = Connection(env.opts())
    mid = uuid.uuid4().hex
    hello(conn, mid)
    with pytest.raises(RemoteError, match="begin.disk_bytes=1152921504606846976 exceeds the free space"):
        begin(conn, mid, announced=1 << 60)
    assert env.migrations() == []


def test_oversized_frame_refused(env: Env) -> None:
    conn = Connection(env.opts())
    conn.sock.sendall(wire.HEADER.pack(MsgType.HELLO, 0, 0x7FFFFFFF))
    with pytest.raises(RemoteError, match="frame HELLO length=2147483647 exceeds the limit"):
        conn.recv(MsgType.HELLO_REPLY)


def test_bytes_beyond_announcement_refused(env: Env) -> None:
    conn = Connection(env.opts())
    mid = uuid.uuid4().hex
    hello(conn, mid)
    begin(conn, mid, announced=PAGE * 2)
    wire.send_pages(conn.sock, 1, [(0x10000, 3)], b"\0" * (3 * PAGE), round_no=1)
    with pytest.raises(RemoteError, match="exceed announced_bytes=8192"):
        conn.recv(MsgType.ACK)


PAGE = 4096


@pytest.mark.parametrize("name", ["../../escape.img", "..", "a/b.img", "x\x00y", "/etc/passwd"])
def test_path_traversal_names_refused(env: Env, name: str) -> None:
    conn, mid = session(env)
    conn.send(MsgType.FILE_BEGIN, {"name": name, "size": 4})
    with pytest.raises(RemoteError):
        conn.recv(MsgType.ACK)
    mdir = env.dst / "migrations" / mid
    assert json.loads((mdir / "status.json").read_text())["phase"] == "aborted"
    assert not (env.tmp / "escape.img").exists() and not (env.dst / "escape.img").exists()
    assert sorted(os.listdir(mdir)) == ["status.json"]


def _send_tar(conn: Connection, data: bytes) -> None:
    conn.send(MsgType.ROOTFS_BEGIN, {"size": len(data)})
    wire.send_frame(conn.sock, MsgType.ROOTFS_DATA, data)
    conn.send(MsgType.ROOTFS_END, {"sha256": hashlib.sha256(data).hexdigest()})


def _tar_bytes(*members: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            tar.addfile(m)
    return buf.getvalue()


def _m(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


@pytest.mark.parametrize("member, message", [
    (_m("../evil"), r"'\.\.' component"),
    (_m("/etc/evil"), "absolute path"),
    (_m("ln", tarfile.SYMTYPE, "../../../etc"), "points outside"),
    (_m("dev/sda", tarfile.BLKTYPE), "device node"),
])
def test_hostile_rootfs_delta_refused(env: Env, member: tarfile.TarInfo, message: str) -> None:
    conn, mid = session(env)
    _send_tar(conn, _tar_bytes(member))
    with pytest.raises(RemoteError, match=message):
        conn.recv(MsgType.ACK)
    mdir = env.dst / "migrations" / mid
    assert not (mdir / "rootfs").exists() and not (env.tmp / "evil").exists()


def test_good_rootfs_delta_and_images_accepted_restore_missing_is_an_error(env: Env) -> None:
    conn, mid = session(env)
    body = b"hello"
    conn.send(MsgType.FILE_BEGIN, {"name": "core-1.img", "size": len(body)})
    wire.send_frame(conn.sock, MsgType.FILE_DATA, body)
    conn.send(MsgType.FILE_END, {"sha256": hashlib.sha256(body).hexdigest()})
    _send_tar(conn, _tar_bytes(_m("etc/hostname")))
    conn.recv(MsgType.ACK)
    mdir = env.dst / "migrations" / mid
    assert (mdir / "images" / "core-1.img").read_bytes() == body
    assert (mdir / "rootfs" / "etc" / "hostname").exists()
    conn.send(MsgType.COMMIT, {})
    try:
        reply = conn.recv(MsgType.CONFIRM)
    except RemoteError as err:  # while capture.restore has no pre-copy entry point
        assert err.code == "restore-failed" and "capture.restore" in str(err)
        assert json.loads((mdir / "status.json").read_text())["phase"] == "aborted"
    else:
        assert reply["pid"] > 0


def test_file_size_and_hash_checked(env: Env) -> None:
    conn, _ = session(env)
    conn.send(MsgType.FILE_BEGIN, {"name": "a.img", "size": 3})
    wire.send_frame(conn.sock, MsgType.FILE_DATA, b"abcd")
    with pytest.raises(RemoteError, match=r"'a.img': 4 bytes exceed the announced size=3"):
        conn.recv(MsgType.ACK)
    conn, _ = session(env, "ctr2")
    conn.send(MsgType.FILE_BEGIN, {"name": "a.img", "size": 3})
    wire.send_frame(conn.sock, MsgType.FILE_DATA, b"abc")
    conn.send(MsgType.FILE_END, {"sha256": "0" * 64})
    with pytest.raises(RemoteError, match=r"sha256 of 'a.img' does not match"):
        conn.recv(MsgType.ACK)


def test_out_of_order_messages_refused(env: Env) -> None:
    conn = Connection(env.opts())
    hello(conn)
    conn.send(MsgType.COMMIT, {})
    with pytest.raises(RemoteError, match="message COMMIT is not allowed in phase check"):
        conn.recv(MsgType.CONFIRM)


def test_check_verdict_names_missing_features(env: Env) -> None:
    data = Path(__file__).parent / "data" / "hostinfo"
    env.agent.config.hostinfo_file = data / "linux-skylake.json"
    conn = Connection(env.opts())
    hello(conn)
    src = hostinfo.load_recorded(data / "linux-sapphirerapids.json")
    conn.send(MsgType.CHECK, {"hostinfo": src.to_json(), "memory": 1 << 20, "disk": 1 << 20})
    v = hostinfo.Verdict.from_json(conn.recv(MsgType.VERDICT))
    assert not v.ok and "avx512f" in v.missing_flags
    ok_src = replace(src, cpu_flags=("sse", "sse2"), xsave_mask=3)
    conn.send(MsgType.CHECK, {"hostinfo": ok_src.to_json(), "memory": 1 << 20, "disk": 1 << 20})
    assert hostinfo.Verdict.from_json(conn.recv(MsgType.VERDICT)).ok


def test_pins_reloaded_without_restart(env: Env) -> None:
    late = env.tmp / "late"
    ident = identity.init_identity(late)
    identity.trust(late, env.agent.ident.fingerprint)
    with pytest.raises((wire.ProtocolError, OSError)):
        hello(Connection(env.opts(late)))
    identity.trust(env.dst, ident.fingerprint, cert=ident.cert_path)
    env.agent.reload_pins()  # what SIGHUP does in `hetmig agent`
    hello(Connection(env.opts(late)))
    hello(Connection(env.opts()))  # two pinned sources: both get in (unique subjects)
    assert "accepted 127.0.0.1" in env.wait_log("accepted 127.0.0.1")
