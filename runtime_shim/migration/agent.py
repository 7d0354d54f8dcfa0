"""The migration agent: the destination side of ``hetmig migrate``.

One TLS 1.3 listener; one thread per connection. A connection is served only
after the peer's certificate fingerprint is checked against the pins in the
state dir; an unpinned or wrongly signed peer is refused during or right after
the handshake, the refusal is logged (``agent.log`` in the state dir and the
``hetmig.agent`` logger), and nothing is read from it or written for it.

Session order (anything else is a protocol error that aborts the migration):

    HELLO -> HELLO_REPLY            fresh nonces both ways, a migration id the
                                    agent has never seen (replay protection on
                                    top of TLS's own)
    CHECK -> VERDICT                 (any number of times)
    BEGIN -> ACK                     creates migrations/<id>/ (O_EXCL); refuses a
                                    container already being migrated here and an
                                    announced size above the limit or the free space
    PAGES*, ROUND_END -> ACK         pre-copy rounds into the DestinationRestore
    FILE_BEGIN FILE_DATA* FILE_END   image files into migrations/<id>/images/
    ROOTFS_BEGIN ROOTFS_DATA* ROOTFS_END   checked tar, extracted to rootfs/; at most
                                    twice: the base tree (may come during pre-copy) and
                                    the files changed since (moved over the base)
    COMMIT -> CONFIRM | ERROR        restore
    FINISH -> ACK                    release the restored copy (held stopped under
                                    ptrace with EXITKILL until now); the source
                                    destroys its copy only after this ACK
    STATUS -> ACK {phase}            (instead of HELLO) outcome of an earlier
                                    migration of the same peer
    ABORT (any time)                 roll back

``status.json`` in the migration directory records the phase (written
atomically). Every byte received counts against the size announced in BEGIN.

A full state dir (ENOSPC/EDQUOT on any write there) aborts the migration with
an ERROR ``disk-full`` to the source. Each migration directory holds a small
``.reserve`` file from BEGIN on, released right before its final status
(done/aborted) is written, so that the outcome can be recorded even when the
file system filled up. Fault injection for the tests: :mod:`.faults`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from capture.errors import HetmigError, MigrationError
from runtime_shim.migration import faults, hostinfo, identity, safety, wire
from runtime_shim.migration.engine import DestinationRestore, StagingRestore
from runtime_shim.migration.wire import Frame, Limits, MsgType, ProtocolError

LOG = logging.getLogger("hetmig.agent")
ROOTFS_TAR = "rootfs-delta.tar"
RESERVE = ".reserve"
RESERVE_BYTES = 64 << 10   # room for the final status.json (and its temporary twin)
PARTIAL = ("images", "rootfs", "rootfs-changes")
PARTIAL_FILES = (ROOTFS_TAR, "pages.bin", "pages.idx", "pages.idx.tmp", RESERVE, ".status.json.tmp")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class AgentConfig:
    state_dir: Path
    limits: Limits = field(default_factory=Limits)
    hostinfo_file: Path | None = None          # answer with a recorded host info (tests)
    restore_factory: Callable[[], DestinationRestore] = StagingRestore
    fault: str | None = None                   # tests: inject a failure (KIND-PHASE, see faults.py)
    handshake_timeout: float = 10.0
    status_wait: float = 15.0                  # STATUS waits this long for a live session to end
    idle_timeout: float = 120.0
    max_connections: int = 16


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.ident = identity.load_identity(self.state_dir)
        self.migrations = self.state_dir / "migrations"
        self.migrations.mkdir(exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._active_containers: dict[str, str] = {}
        self._conns = threading.BoundedSemaphore(config.max_connections)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._setup_log()
        fault = faults.parse(config.fault, faults.Side.AGENT) if config.fault else None
        self.faults = faults.Injector(fault, faults.Side.AGENT, fill_dir=self.state_dir, log=self.log.warning)
        self.reload_pins()
        self.recover()
        self._outgoing = threading.Thread(target=self._settle_outgoing, daemon=True)
        self._outgoing.start()

    def recover(self) -> list[str]:
        """Migrations left mid-way by a dead agent: their partial data is removed and
        they are marked aborted (their sources rolled back when the connection died)."""
        recovered: list[str] = []
        for mdir in sorted(self.migrations.iterdir()):
            status_path = mdir / "status.json"
            try:
                status = json.loads(status_path.read_text())
            except (OSError, ValueError):
                status = {"migration_id": mdir.name, "phase": "unknown"}
            if status.get("phase") in ("done", "aborted"):  # "confirmed": the held copy died with the agent
                continue
            cid = status.get("container_id")
            if isinstance(cid, str) and cid:
                from runtime_shim.migration import container

                container.cleanup_leftovers(cid, mdir.name)  # its isolation, if one was made
                _drop_record_of(self.state_dir, cid, mdir.name)
            _remove_partial(mdir)
            status.update(phase="aborted", reason=f"agent restarted during phase {status.get('phase')}")
            try:
                _write_status(mdir, status)
            except OSError as err:  # a full state dir: the next start tries again
                self.log.error("migration %s: cannot record its outcome: %s", mdir.name, err)
                continue
            self.log.warning("migration %s was interrupted by an agent restart; cleaned up", mdir.name)
            recovered.append(mdir.name)
        return recovered

    def _settle_outgoing(self) -> None:
        """Migrations *from* this host whose ``hetmig migrate`` died (the journal in the
        same state dir): settled now and every journal.RECOVER_INTERVAL seconds."""
        from runtime_shim.migration import journal, source

        while not self._stop.is_set():
            try:
                if journal.pending(self.state_dir):
                    for r in source.recover(self.state_dir):
                        if r.outcome != "in-progress":
                            self.log.warning("outgoing migration %s of %s (its source died in phase %s): %s%s",
                                             r.migration_id, r.container_id, r.phase, r.outcome,
                                             f" ({r.detail})" if r.detail else "")
            except HetmigError as err:
                self.log.error("settling outgoing migrations failed: %s", err)
            self._stop.wait(journal.RECOVER_INTERVAL)

    def _setup_log(self) -> None:
        """A child logger of ``hetmig.agent`` per agent, with its own agent.log file (records
        also reach the parent's handlers, e.g. stderr)."""
        self.log = logging.getLogger(f"hetmig.agent.{os.getpid()}-{id(self):x}")
        self.log.setLevel(logging.INFO)
        self._log_handler = _LogFile(self.state_dir / "agent.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(self._log_handler)

    def reload_pins(self) -> None:
        self.pins = identity.read_trusted(self.state_dir)
        certs, missing = identity.pinned_peer_certs(self.state_dir)
        for fp in missing:
            self.log.warning("pinned peer %s has no certificate in %s/peers; it cannot connect", fp, self.state_dir)
        self.ctx = identity.server_context(self.ident, certs)

    # -- listening ----------------------------------------------------------------------------
    def bind(self, host: str, port: int) -> tuple[str, int]:
        sock = socket.create_server((host, port), reuse_port=False)
        sock.settimeout(0.1)
        self._listener = sock
        addr = sock.getsockname()
        self.log.info("listening on %s:%d fingerprint %s", addr[0], addr[1], self.ident.fingerprint)
        return str(addr[0]), int(addr[1])

    def serve_forever(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            if not self._conns.acquire(blocking=False):
                self.log.warning("refused %s:%d: too many connections", addr[0], addr[1])
                conn.close()
                continue
            t = threading.Thread(target=self._serve_conn, args=(conn, addr), daemon=True)
            t.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        self.log.removeHandler(self._log_handler)
        self._log_handler.close()

    def _serve_conn(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            conn.settimeout(self.config.handshake_timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                tls = self.ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as err:
                self.log.warning("refused %s: TLS handshake failed (unpinned or invalid certificate): %s", peer, err)
                conn.close()
                return
            try:
                fp = identity.check_pinned(tls, self.pins, role="client")
            except identity.AuthError as err:
                self.log.warning("refused %s: %s", peer, err)
                tls.close()
                return
            self.log.info("accepted %s fingerprint %s", peer, fp)
            tls.settimeout(self.config.idle_timeout)
            Session(self, tls, peer, fp).run()
        finally:
            self._conns.release()

    # -- container bookkeeping ------------------------------------------------------------------
    def claim(self, container_id: str, migration_id: str) -> None:
        with self._lock:
            other = self._active_containers.get(container_id)
            if other is not None:
                raise MigrationError(f"container_id={container_id!r} is already being migrated here "
                                     f"(migration {other})")
            self._active_containers[container_id] = migration_id

    def release(self, container_id: str) -> None:
        with self._lock:
            self._active_containers.pop(container_id, None)

    def host_info(self) -> hostinfo.HostInfo:
        if self.config.hostinfo_file is not None:
            return hostinfo.load_recorded(self.config.hostinfo_file)
        return hostinfo.probe(self.state_dir)


class _Upload:
    """One file being received: bounded by its announced size, hashed as it comes."""

    def __init__(self, fd: int, name: str, size: int) -> None:
        self.fd, self.name, self.size = fd, name, size
        self.got = 0
        self.hash = hashlib.sha256()


class Session:
    def __init__(self, agent: Agent, sock: ssl.SSLSocket, peer: str, fingerprint: str) -> None:
        self.agent = agent
        self.sock = sock
        self.peer = peer
        self.fingerprint = fingerprint
        self.limits = agent.config.limits
        self.migration_id = ""
        self.container_id = ""
        self.dir: Path | None = None
        self.images_fd = -1
        self.restore: DestinationRestore | None = None
        self.announced = 0
        self.received = 0
        self.files = 0
        self.upload: _Upload | None = None
        self.rootfs: _Upload | None = None
        self.rootfs_dir: Path | None = None
        self.rootfs_transfers = 0
        self.phase = "hello"
        self.confirmed = False
        self._since_check = 0

    # -- plumbing ---------------------------------------------------------------------------------
    def _status(self, phase: str, **extra: Any) -> None:
        """Record *phase* (the phase changes only once it is on disk). The final phases
        (done, aborted) first release the migration's reserve, so they fit on a full disk."""
        if self.dir is None:
            self.phase = phase
            return
        if phase in ("done", "aborted"):
            _unlink(self.dir / RESERVE)
        data = {"migration_id": self.migration_id, "container_id": self.container_id, "phase": phase,
                "peer": self.fingerprint, "received_bytes": self.received, "time": time.time(), **extra}
        try:
            _write_status(self.dir, data)
        except OSError:
            _unlink(self.dir / ".status.json.tmp")
            raise
        self.phase = phase

    def _send(self, mtype: MsgType, obj: dict[str, Any]) -> None:
        wire.send_json(self.sock, mtype, obj)

    def _check_space(self, n: int) -> None:
        """Refuse to fill the state dir: keep the reserve free (checked every 64 MiB)."""
        self._since_check += n
        if self._since_check < (64 << 20):
            return
        self._since_check = 0
        free = shutil.disk_usage(self.agent.state_dir).free
        if free < self.limits.reserve_free:
            raise MigrationError(f"state dir {self.agent.state_dir} is full ({free} bytes free, "
                                 f"{self.limits.reserve_free} must stay free)")

    def _count(self, n: int, what: str) -> None:
        self.received += n
        if self.received > self.announced:
            raise ProtocolError(f"{what}: {self.received} bytes received exceed announced_bytes={self.announced}")

    # -- the session ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._hello()
            while True:
                frame = wire.read_frame(self.sock, self.limits)
                if not self._dispatch(frame):
                    break
        except _SessionOver:
            pass
        except HetmigError as err:
            self._fail(err)
        except OSError as err:  # ssl.SSLError included
            if err.errno in DISK_FULL and not isinstance(err, ssl.SSLError):
                self._fail(_CodedError("disk-full", f"state dir {self.agent.state_dir} is full: "
                                                    f"{err.strerror} ({err.filename or 'a write'})"))
            else:
                self.agent.log.warning("migration %s from %s: connection error in phase %s: %s",
                                       self.migration_id or "-", self.peer, self.phase, err)
                self._rollback(f"connection error: {err}")
        except Exception as err:  # a bug: logged with its traceback, rolled back, reported, never silent
            self.agent.log.exception("migration %s from %s: internal error in phase %s", self.migration_id or "-",
                                     self.peer, self.phase)
            self._rollback(f"internal error: {type(err).__name__}: {err}")
            try:
                self._send(MsgType.ERROR, {"code": "internal", "message": f"agent internal error: "
                                                                          f"{type(err).__name__}: {err}"[:2000]})
            except (OSError, HetmigError):
                pass
        finally:
            self._close_uploads()
            if self.images_fd >= 0:
                os.close(self.images_fd)
                self.images_fd = -1
            if self.container_id and self.phase in ("done", "aborted"):
                self.agent.release(self.container_id)
            try:
                self.sock.close()
            except OSError:
                pass

    def _fail(self, err: HetmigError) -> None:
        code = "refused" if err.exit_code == 3 else getattr(err, "code", None) or "error"
        self.agent.log.warning("migration %s from %s failed in phase %s: %s", self.migration_id or "-", self.peer,
                               self.phase, err)
        self._rollback(str(err))  # first, so the state dir is consistent when the peer hears of it
        try:
            self._send(MsgType.ERROR, {"code": str(code), "message": str(err)[:2000]})
        except (OSError, HetmigError):
            pass

    def _status_query(self, msg: dict[str, Any]) -> None:
        """STATUS instead of HELLO: the outcome of an earlier migration of this peer."""
        mid = wire.get_str(msg, "migration_id", "status", pattern=wire.MIGRATION_ID_RE)
        path = self.agent.migrations / mid / "status.json"
        deadline = time.monotonic() + self.agent.config.status_wait
        while True:
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                raise ProtocolError(f"status.migration_id={mid} is unknown here") from None
            if status.get("peer") != self.fingerprint:
                raise ProtocolError(f"status.migration_id={mid} belongs to another peer")
            phase = str(status.get("phase"))
            if phase in ("done", "aborted") or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the old session is still ending
        self.phase = "status"
        self._send(MsgType.ACK, {"migration_id": mid, "phase": phase})

    def _hello(self) -> None:
        first = wire.expect(wire.read_frame(self.sock, self.limits), MsgType.HELLO, MsgType.STATUS)
        if first.mtype == MsgType.STATUS:
            self._status_query(first.json())
            raise _SessionOver()
        self.agent.faults.at(faults.Phase.CONNECT, self.sock)
        msg = first.json()
        version = wire.get_int(msg, "version", "hello", hi=1 << 16)
        if version != wire.PROTOCOL_VERSION:
            raise ProtocolError(f"hello.version={version} is not supported (expected {wire.PROTOCOL_VERSION})")
        client_nonce = wire.get_str(msg, "nonce", "hello", pattern=wire.NONCE_RE)
        mid = wire.get_str(msg, "migration_id", "hello", pattern=wire.MIGRATION_ID_RE)
        if (self.agent.migrations / mid).exists():
            raise ProtocolError(f"hello.migration_id={mid} was already used (replayed or reused session)")
        self.migration_id = mid
        info = self.agent.host_info()
        self._send(MsgType.HELLO_REPLY, {"version": wire.PROTOCOL_VERSION, "nonce": os.urandom(16).hex(),
                                         "client_nonce": client_nonce, "hostinfo": info.to_json()})
        self.phase = "check"

    def _dispatch(self, frame: Frame) -> bool:
        t = frame.mtype
        at = self.agent.faults.at
        if t == MsgType.ROUND_END:
            at(faults.Phase.PRECOPY, self.sock)
        elif t == MsgType.FILE_BEGIN:
            at(faults.Phase.FINAL, self.sock)
        elif t == MsgType.ROOTFS_BEGIN and (self.rootfs_transfers or self.phase == "final"):
            at(faults.Phase.ROOTFS, self.sock)  # the changes at cut-over, not the base tree
        elif t == MsgType.COMMIT:
            at(faults.Phase.RESTORE, self.sock)
        elif t == MsgType.FINISH:
            at(faults.Phase.CONFIRM, self.sock)
        if t == MsgType.ABORT:
            msg = frame.json()
            self.agent.log.info("migration %s aborted by the source: %s", self.migration_id,
                     str(msg.get("message", ""))[:500])
            self._rollback("aborted by the source")
            return False
        if t == MsgType.CHECK and self.phase == "check":
            self._check(frame.json())
        elif t == MsgType.BEGIN and self.phase == "check":
            self._begin(frame.json())
        elif t == MsgType.PAGES and self.phase in ("precopy", "final"):  # final: fill pages
            assert self.restore is not None
            pid, runs, data = wire.decode_pages(frame.payload, self.limits)
            self._count(len(data), "PAGES")
            self._check_space(len(data))
            self.restore.write_pages(pid, runs, data)
        elif t == MsgType.LAYOUT and self.phase == "precopy":
            self._layout(frame.json())
        elif t == MsgType.ROUND_END and self.phase == "precopy":
            msg = frame.json()
            rnd = wire.get_int(msg, "round", "round_end", hi=1 << 16)
            self._status("precopy", round=rnd)
            self._send(MsgType.ACK, {"round": rnd, "received_bytes": self.received,
                                     "target": bool(getattr(self.restore, "target_ok", False))})
        elif t in (MsgType.FILE_BEGIN, MsgType.FILE_DATA, MsgType.FILE_END) and self.phase in ("precopy", "final"):
            self.phase = "final"
            self._file(frame)
        elif t in (MsgType.ROOTFS_BEGIN, MsgType.ROOTFS_DATA, MsgType.ROOTFS_END) and self.phase in ("precopy", "final"):
            # the base tree may come during pre-copy (the phase stays), the changes at cut-over
            self._rootfs(frame)
        elif t == MsgType.PAGES_IMAGE and self.phase in ("precopy", "final"):
            self.phase = "final"
            self._pages_image(frame.json())
        elif t == MsgType.COMMIT and self.phase in ("precopy", "final"):
            self._commit()
        elif t == MsgType.FINISH and self.phase == "confirmed":
            assert self.restore is not None
            t0 = time.monotonic()
            self.restore.finish()
            self._status("done")
            self.agent.log.info("migration %s of %s done", self.migration_id, self.container_id)
            self._send(MsgType.ACK, {"finish_ms": round((time.monotonic() - t0) * 1000, 3)})
            at(faults.Phase.CLEANUP, self.sock)
            return False
        else:
            raise ProtocolError(f"message {t.name} is not allowed in phase {self.phase}")
        return True

    def _layout(self, msg: dict[str, Any]) -> None:
        """The private anonymous areas of the process to restore (and the spans its other
        mappings take): the restore target is prepared, or extended, from them. A target
        that cannot be made only means the pages go to the page store (ROUND_END's ACK
        tells the source which)."""
        assert self.restore is not None
        lim = self.limits
        pid = wire.get_int(msg, "pid", "layout", lo=1, hi=(1 << 22))
        areas = wire.get_spans(msg, "areas", "layout", width=3, max_items=lim.max_layout_areas)
        busy = wire.get_spans(msg, "busy", "layout", width=2, max_items=lim.max_layout_areas)
        for i, (_, _, flags) in enumerate(areas):
            if flags & ~wire.LAYOUT_FLAGS or not flags & 0x02 or not flags & 0x20:
                raise ProtocolError(f"layout.areas[{i}] flags=0x{flags:x} is not MAP_PRIVATE|MAP_ANONYMOUS "
                                    f"with at most MAP_GROWSDOWN|MAP_NORESERVE")
        fn = getattr(self.restore, "layout", None)
        if fn is None:
            return
        cap_bnd = wire.get_int(msg, "cap_bnd", "layout", hi=(1 << 64) - 1) if "cap_bnd" in msg else None
        ok = fn(pid, [(a, b, c) for a, b, c in areas], [(a, b) for a, b in busy], self.rootfs_dir, cap_bnd)
        why = str(getattr(self.restore, "target_failed", ""))
        if not ok and why and why != getattr(self, "_target_why", ""):
            self._target_why = why
            self.agent.log.info("migration %s: no restore target: %s", self.migration_id, why)

    def _check(self, msg: dict[str, Any]) -> None:
        src = hostinfo.HostInfo.from_json(wire.get_dict(msg, "hostinfo", "check"), "check.hostinfo")
        needs = hostinfo.Needs(memory=wire.get_int(msg, "memory", "check"), disk=wire.get_int(msg, "disk", "check"))
        verdict = hostinfo.check_compat(src, self.agent.host_info(), needs)
        if not verdict.ok:
            self.agent.log.info("compatibility check from %s: refused: %s", self.peer, verdict.message())
        self._send(MsgType.VERDICT, verdict.to_json())

    def _begin(self, msg: dict[str, Any]) -> None:
        mid = wire.get_str(msg, "migration_id", "begin", pattern=wire.MIGRATION_ID_RE)
        if mid != self.migration_id:
            raise ProtocolError(f"begin.migration_id={mid} differs from hello.migration_id={self.migration_id}")
        cid = wire.get_str(msg, "container_id", "begin", max_len=128, pattern=wire.CONTAINER_ID_RE)
        spec = wire.get_dict(msg, "spec", "begin")
        announced = wire.get_int(msg, "announced_bytes", "begin")
        lim = self.limits
        if announced > lim.max_total:
            raise ProtocolError(f"begin.announced_bytes={announced} exceeds the limit {lim.max_total}")
        # disk use is bounded by the unique pages plus the image set; a source that
        # resends pages many times announces more network bytes than disk bytes
        disk = wire.get_int(msg, "disk_bytes", "begin") if "disk_bytes" in msg else announced
        if disk > announced:
            raise ProtocolError(f"begin.disk_bytes={disk} exceeds begin.announced_bytes={announced}")
        free = shutil.disk_usage(self.agent.state_dir).free - lim.reserve_free
        if disk > free:
            raise MigrationError(f"begin.disk_bytes={disk} exceeds the free space of the state dir "
                                 f"({max(free, 0)} bytes after the {lim.reserve_free}-byte reserve)")
        self.agent.claim(cid, mid)
        self.container_id = cid
        try:
            mdir = self.agent.migrations / mid
            os.mkdir(mdir, 0o700)  # EEXIST: replayed migration id
        except FileExistsError:
            self.agent.release(cid)
            self.container_id = ""
            raise ProtocolError(f"begin.migration_id={mid} was already used") from None
        self.dir = mdir
        _make_reserve(mdir / RESERVE)
        os.mkdir(mdir / "images", 0o700)
        self.images_fd = os.open(mdir / "images", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.announced = announced
        self.restore = self.agent.config.restore_factory()
        self.restore.begin(mdir, cid, spec)
        self._status("precopy", announced_bytes=announced)
        self.agent.log.info("migration %s of %s begins (%d bytes announced)", mid, cid, announced)
        self._send(MsgType.ACK, {"migration_id": mid})

    def _close_uploads(self) -> None:
        for up in (self.upload, self.rootfs):
            if up is not None and up.fd >= 0:
                os.close(up.fd)
                up.fd = -1

    def _file(self, frame: Frame) -> None:
        lim = self.limits
        if frame.mtype == MsgType.FILE_BEGIN:
            if self.upload is not None:
                raise ProtocolError(f"FILE_BEGIN while {self.upload.name!r} is still open")
            msg = frame.json()
            name = safety.check_image_name(msg.get("name"), field="file_begin.name")
            size = wire.get_int(msg, "size", "file_begin")
            if size > lim.max_image_file:
                raise ProtocolError(f"file_begin.size={size} for {name!r} exceeds the limit {lim.max_image_file}")
            if self.received + size > self.announced:
                raise ProtocolError(f"file_begin.size={size} for {name!r} exceeds what is left of "
                                    f"announced_bytes={self.announced}")
            self.files += 1
            if self.files > lim.max_image_files:
                raise ProtocolError(f"more than {lim.max_image_files} image files")
            fd = safety.create_file_in(self.images_fd, name)
            self.upload = _Upload(fd, name, size)
        elif frame.mtype == MsgType.FILE_DATA:
            up = self.upload
            if up is None:
                raise ProtocolError("FILE_DATA without FILE_BEGIN")
            self._write_chunk(up, frame.payload)
        else:
            up = self.upload
            if up is None:
                raise ProtocolError("FILE_END without FILE_BEGIN")
            self._finish_upload(up, frame.json(), "file_end")
            self.upload = None

    def _write_chunk(self, up: _Upload, data: bytes) -> None:
        if up.got + len(data) > up.size:
            raise ProtocolError(f"{up.name!r}: {up.got + len(data)} bytes exceed the announced size={up.size}")
        self._count(len(data), up.name)
        self._check_space(len(data))
        os.write(up.fd, data)
        up.got += len(data)
        up.hash.update(data)

    def _finish_upload(self, up: _Upload, msg: dict[str, Any], where: str) -> None:
        digest = wire.get_str(msg, "sha256", where, pattern=r"[0-9a-f]{64}")
        if up.got != up.size:
            raise ProtocolError(f"{where}: {up.name!r} has {up.got} bytes, announced size={up.size}")
        if digest != up.hash.hexdigest():
            raise ProtocolError(f"{where}.sha256 of {up.name!r} does not match the received bytes")
        # no fsync: the files only feed the restore in this agent's lifetime (an agent or
        # host that dies before FINISH aborts the migration and the source runs on), and
        # a flush per image file cost tens of milliseconds of downtime
        os.close(up.fd)
        up.fd = -1

    def _pages_image(self, msg: dict[str, Any]) -> None:
        """Build pages-N.img from pre-copied pages, in the order pagemap-PID.img lists them."""
        import re

        from capture.images import decode_bytes
        from proto import pagemap_pb2

        assert self.restore is not None
        lim = self.limits
        name = safety.check_image_name(msg.get("name"), field="pages_image.name")
        m = re.fullmatch(r"pages-([0-9]{1,9})\.img", name)
        if m is None:
            raise ProtocolError(f"pages_image.name={name!r} is not pages-N.img")
        pid = wire.get_int(msg, "pid", "pages_image", lo=1, hi=(1 << 31) - 1)
        size = wire.get_int(msg, "size", "pages_image")
        digest = msg.get("blake2b")
        if digest is not None:
            digest = wire.get_str(msg, "blake2b", "pages_image", pattern=r"[0-9a-f]{64}")
        pm_name = f"pagemap-{pid}.img"
        try:
            fd = os.open(pm_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.images_fd)
        except OSError:
            raise ProtocolError(f"pages_image for pid {pid}: {pm_name} was not received first") from None
        try:
            data = os.read(fd, lim.max_image_file + 1)
        finally:
            os.close(fd)
        img = decode_bytes(data, pm_name)
        if img.name != "PAGEMAP" or not img.entries:
            raise ProtocolError(f"{pm_name} is a {img.name} image, expected PAGEMAP")
        head = img.entries[0]
        if not isinstance(head, pagemap_pb2.pagemap_head) or head.pages_id != int(m.group(1)):
            raise ProtocolError(f"{pm_name}: pagemap head does not name {name}")
        pages: list[int] = []
        for i, e in enumerate(img.entries_as(pagemap_pb2.pagemap_entry, start=1), 1):
            flags = e.flags if e.HasField("flags") else 4
            if flags & 1:
                raise ProtocolError(f"{pm_name} entry {i}: parent-image pages (PE_PARENT) are not supported")
            if not flags & 4:
                continue
            if e.vaddr % wire.PAGE_SIZE or e.nr_pages == 0 or e.vaddr + e.nr_pages * wire.PAGE_SIZE > wire.ADDR_LIMIT:
                raise ProtocolError(f"{pm_name} entry {i}: vaddr=0x{e.vaddr:x} nr_pages={e.nr_pages} is invalid")
            if (len(pages) + e.nr_pages) * wire.PAGE_SIZE > size:
                raise ProtocolError(f"{pm_name} lists more pages than pages_image.size={size}")
            pages.extend(range(e.vaddr, e.vaddr + e.nr_pages * wire.PAGE_SIZE, wire.PAGE_SIZE))
        if len(pages) * wire.PAGE_SIZE != size:
            raise ProtocolError(f"pages_image.size={size} but {pm_name} lists {len(pages)} pages")
        free = shutil.disk_usage(self.agent.state_dir).free - lim.reserve_free
        if size > free:
            raise MigrationError(f"pages_image.size={size} exceeds the free space of the state dir ({max(free, 0)})")
        safety.check_image_name(name)
        adopt = getattr(self.restore, "adopt_pages_image", None)
        adopted = bool(adopt is not None and adopt(pid, pages, self.images_fd, name))
        if adopted:  # the page store itself became the image (no copy)
            out = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.images_fd)
        else:
            why = getattr(getattr(self.restore, "store", None), "declined", "")
            self.agent.log.info("migration %s: %s rebuilt by copy%s", self.migration_id, name,
                                f" ({why})" if why else "")
            out = safety.create_file_in(self.images_fd, name, readable=True)
        try:
            if not adopted:
                self.restore.build_pages_image(pid, pages, out)
            if digest is not None:
                h = hashlib.blake2b(digest_size=32)
                off = 0
                while chunk := os.pread(out, 1 << 22, off):
                    h.update(chunk)
                    off += len(chunk)
                if h.hexdigest() != digest:
                    raise ProtocolError(f"pages_image.blake2b of {name} does not match the rebuilt image")
        finally:
            os.close(out)
        self._send(MsgType.ACK, {"built": name, "pages": len(pages), "adopted": adopted})

    def _rootfs(self, frame: Frame) -> None:
        assert self.dir is not None
        lim = self.limits
        if frame.mtype == MsgType.ROOTFS_BEGIN:
            if self.rootfs is not None:
                raise ProtocolError("ROOTFS_BEGIN while a rootfs transfer is still open")
            if self.rootfs_transfers >= 2:
                raise ProtocolError("more than two rootfs transfers (base and changes)")
            size = wire.get_int(frame.json(), "size", "rootfs_begin")
            if size > lim.max_rootfs_delta:
                raise ProtocolError(f"rootfs_begin.size={size} exceeds the limit {lim.max_rootfs_delta}")
            if self.received + size > self.announced:
                raise ProtocolError(f"rootfs_begin.size={size} exceeds what is left of announced_bytes")
            try:
                os.unlink(self.dir / ROOTFS_TAR)
            except FileNotFoundError:
                pass
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                fd = safety.create_file_in(dfd, ROOTFS_TAR)
            finally:
                os.close(dfd)
            self.rootfs = _Upload(fd, ROOTFS_TAR, size)
            self.rootfs_transfers += 1
        elif frame.mtype == MsgType.ROOTFS_DATA:
            if self.rootfs is None:
                raise ProtocolError("ROOTFS_DATA without ROOTFS_BEGIN")
            self._write_chunk(self.rootfs, frame.payload)
        else:
            if self.rootfs is None:
                raise ProtocolError("ROOTFS_END without ROOTFS_BEGIN")
            self._finish_upload(self.rootfs, frame.json(), "rootfs_end")
            self.rootfs = None
            tar = self.dir / ROOTFS_TAR
            tl = safety.TarLimits(max_total=lim.max_rootfs_delta * 4)
            if self.rootfs_dir is None:
                safety.extract_tar(tar, self.dir / "rootfs", tl)
                self.rootfs_dir = self.dir / "rootfs"
            else:  # the files changed since the base: extracted aside, then moved over
                staging = self.dir / "rootfs-changes"
                shutil.rmtree(staging, ignore_errors=True)
                safety.extract_tar(tar, staging, tl)
                safety.overlay_tree(staging, self.rootfs_dir)
                shutil.rmtree(staging, ignore_errors=True)
            os.unlink(tar)
            self._send(MsgType.ACK, {"rootfs": "extracted"})

    def _commit(self) -> None:
        assert self.restore is not None and self.dir is not None
        if self.upload is not None or self.rootfs is not None:
            raise ProtocolError("COMMIT while a file transfer is still open")
        self._status("restoring")
        try:
            restored = self.restore.restore(self.dir / "images", self.rootfs_dir)
        except HetmigError as err:
            err_code = "restore-failed"
            raise _CodedError(err_code, str(err)) from err
        self.confirmed = True
        self._status("confirmed", pid=restored.pid)
        self.agent.log.info("migration %s of %s restored as pid %d", self.migration_id, self.container_id, restored.pid)
        self._send(MsgType.CONFIRM, {"pid": restored.pid, **restored.detail})

    def _rollback(self, reason: str) -> None:
        # Before FINISH the restored copy is held stopped and is killed here: the
        # source only destroys its copy after our ACK of FINISH.
        if self.phase == "done":
            return
        if self.restore is not None:
            try:
                self.restore.abort()
            except Exception as err:  # cleanup must go on to record the outcome
                self.agent.log.warning("abort of migration %s failed: %s: %s", self.migration_id, type(err).__name__, err)
        if self.dir is not None:
            self._close_uploads()
            _remove_partial(self.dir)
            if self.container_id:
                _drop_record_of(self.agent.state_dir, self.container_id, self.migration_id)
            try:
                self._status("aborted", reason=reason[:2000])
            except OSError as err:  # the reserve is gone too: a restarted agent records it
                self.agent.log.error("migration %s: cannot record its abort: %s", self.migration_id, err)
        self.phase = "aborted"


class _SessionOver(Exception):
    """A STATUS session ended normally."""


class _CodedError(MigrationError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class _LogFile(logging.FileHandler):
    """agent.log; a record that cannot be written (a full state dir) is dropped
    without the traceback logging prints by default."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_status(mdir: Path, data: dict[str, Any]) -> None:
    tmp = mdir / ".status.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, mdir / "status.json")


def _make_reserve(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.write(fd, bytes(RESERVE_BYTES))  # a file system without fallocate
    finally:
        os.close(fd)


def _remove_partial(mdir: Path) -> None:
    """Everything of an unfinished migration but its status.json."""
    for sub in PARTIAL:
        shutil.rmtree(mdir / sub, ignore_errors=True)
    for name in PARTIAL_FILES:
        _unlink(mdir / name)


def _drop_record_of(state_dir: Path, container_id: str, migration_id: str) -> None:
    """The container record (and its temporary twin) an unfinished migration may have written."""
    from runtime_shim.migration import container

    rdir = container.records_dir(state_dir)
    _unlink(rdir / f".{container_id}.json.tmp")
    path = rdir / f"{container_id}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(rec, dict) and rec.get("migration") == migration_id:
        _unlink(path)
