"""The migration driver on the source host (``hetmig migrate``).

Steps, each reported through a progress callback:
  1. connect: TLS 1.3, our certificate presented, the agent's fingerprint
     checked against the pins before anything is sent; HELLO with a fresh
     nonce and a fresh migration id, the reply must echo our nonce.
  2. pre-check: our host info is sent as the requirement; the agent's
     verdict and our own check of its host info must both say yes, else
     RefusedError (exit 3) naming the missing CPU flags / XSAVE components.
     Nothing has been frozen or tracked yet.
  3. BEGIN, a container's whole root file system (checked tar), then
     pre-copy rounds while the container runs: round 1 sends
     every present page, later rounds the pages written since. Iteration
     stops when the remaining dirty set would transfer within
     ``max_downtime`` at the measured rate, when it stops shrinking, or after
     ``precopy_rounds`` rounds.
  4. cut-over: ptrace freeze, final dirty pages, stop tracking (the
     userfaultfd leaves the target), final dump (image files; each
     pages-N.img is rebuilt by the agent, only pages it lacks are sent),
     the files changed since the root file system was sent, COMMIT -> CONFIRM (the agent holds its copy stopped) ->
     FINISH -> ACK, and only then is the source destroyed.
Any failure before that ACK thaws the source and sends ABORT: the container
runs on where it was. A lost ACK is resolved with STATUS on a new
connection; if the agent cannot be asked the source is left stopped
(SIGSTOP) and the error says so.

Right before FINISH the frozen tree also gets SIGSTOP queued: should this
process die from then on (the kernel then detaches our ptrace freeze), the
container stops instead of running on next to the copy the agent may have
released. The journal (:mod:`.journal`, ``<state-dir>/outgoing/``) records
each migration in flight; ``hetmig migrate --recover`` settles what a dead
source left (:func:`recover`). Fault points for the tests: :mod:`.faults`.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import ssl
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from capture import spans
from capture.errors import HetmigError, MigrationError, RefusedError
from runtime_shim.migration import faults, hostinfo, identity, journal, wire
from runtime_shim.migration.engine import PAGE_SIZE, Run, SourceContainer, SourceDescription
from runtime_shim.migration.wire import Limits, MsgType, RemoteError

Progress = Callable[[dict[str, Any]], None]
_PAGES_RE = re.compile(r"pages-([0-9]{1,9})\.img")


@dataclass(frozen=True, slots=True)
class MigrateOptions:
    host: str
    port: int
    state_dir: Path
    precopy_rounds: int = 8
    max_downtime_ms: int = 100
    extra_pins: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    io_timeout: float = 120.0
    verify_pages: bool = False   # the agent checks its rebuilt pages images against our hash
    fault: str | None = None     # tests: inject a failure (KIND-PHASE, see faults.py)


@dataclass
class RoundStat:
    round: int
    pages: int
    bytes: int
    ms: float


@dataclass
class Report:
    migration_id: str
    container_id: str
    total_ms: float = 0.0
    downtime_ms: float = 0.0
    memory_bytes: int = 0
    tracker: str = ""
    rounds: list[RoundStat] = field(default_factory=list)
    restored_pid: int | None = None
    outcome: str = "running"
    cutover_ms: dict[str, float] = field(default_factory=dict)  # frozen-phase breakdown
    final_pages: int = 0          # pages in the final image set
    final_fill_pages: int = 0     # of those, not pre-copied (sent at cut-over)
    final_images_adopted: int = 0  # pages images the agent made from its page store without a copy
    target: dict[str, Any] = field(default_factory=dict)  # the agent's restore target (pre-filled memory)
    freeze: str = ""              # how the source was frozen (cgroup-freezer+ptrace, ptrace)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["rounds"] = [asdict(r) for r in self.rounds]
        return d


class Connection:
    """An authenticated TLS connection to an agent."""

    def __init__(self, opts: MigrateOptions) -> None:
        ident = identity.load_identity(opts.state_dir)
        pins = identity.read_trusted(opts.state_dir) | {identity.normalize_fingerprint(p) for p in opts.extra_pins}
        if not pins:
            raise MigrationError(f"no pinned agent fingerprints in {opts.state_dir}/trusted-peers "
                                 f"(use `hetmig agent trust FP --state-dir {opts.state_dir}` or --trust FP)")
        try:
            raw = socket.create_connection((opts.host, opts.port), timeout=opts.connect_timeout)
        except OSError as err:
            raise MigrationError(f"cannot connect to {opts.host}:{opts.port}: {err}") from err
        # small request/reply frames: no Nagle delay (it cost ~40 ms per round trip)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = identity.client_context(ident).wrap_socket(raw)
        except (ssl.SSLError, OSError) as err:
            raw.close()
            raise MigrationError(f"TLS handshake with {opts.host}:{opts.port} failed: {err}") from err
        try:
            self.fingerprint = identity.check_pinned(self.sock, pins, role="agent")
        except identity.AuthError:
            self.sock.close()
            raise
        self.sock.settimeout(opts.io_timeout)
        self.limits = Limits()

    def send(self, mtype: MsgType, obj: dict[str, Any]) -> None:
        wire.send_json(self.sock, mtype, obj)

    def recv(self, *types: MsgType) -> dict[str, Any]:
        return wire.expect(wire.read_frame(self.sock, self.limits), *types).json()

    def pending_error(self) -> RemoteError | None:
        """After a failed send: the ERROR the agent sent before closing, if any."""
        try:
            self.sock.settimeout(2.0)
            frame = wire.read_frame(self.sock, self.limits)
            wire.expect(frame, MsgType.ERROR)
        except RemoteError as err:
            return err
        except (HetmigError, OSError):
            return None
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _batches(runs: list[Run], max_pages: int, max_runs: int) -> Iterator[list[Run]]:
    batch: list[Run] = []
    pages = 0
    for addr, n in runs:
        while n:
            take = min(n, max_pages - pages)
            batch.append((addr, take))
            pages += take
            addr += take * PAGE_SIZE
            n -= take
            if pages == max_pages or len(batch) == max_runs:
                yield batch
                batch, pages = [], 0
    if batch:
        yield batch


class Migration:
    def __init__(self, source: SourceContainer, opts: MigrateOptions, progress: Progress | None = None) -> None:
        self.source = source
        self.opts = opts
        self.progress = progress or (lambda ev: None)
        self.migration_id = uuid.uuid4().hex
        self.conn: Connection | None = None
        self.report = Report(self.migration_id, "")
        self._buf = bytearray(Limits().max_batch_pages * PAGE_SIZE)
        self.sent: dict[int, list[spans.Span]] = {}  # pages whose current content the agent holds
        self.target = False        # the agent's restore target holds the pre-copied pages (last ACK)
        self.target_seen = False   # ... it did at some point
        self.areas: dict[int, list[spans.Span]] = {}  # private anonymous areas last sent in LAYOUT
        fault = faults.parse(opts.fault, faults.Side.SOURCE) if opts.fault else None
        self.faults = faults.Injector(fault, faults.Side.SOURCE, log=lambda m: self._emit("fault", message=m))
        self.entry: journal.Entry | None = None
        self._stopped: tuple[tuple[int, int], ...] = ()  # SIGSTOP queued before FINISH

    def _mark(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.report.cutover_ms[phase] = round((now - since) * 1000, 3)
        return now

    def _emit(self, event: str, **data: Any) -> None:
        self.progress({"event": event, "migration_id": self.migration_id, **data})

    # -- steps --------------------------------------------------------------------------------
    def connect_and_check(self) -> hostinfo.HostInfo:
        conn = self.conn = Connection(self.opts)
        nonce = os.urandom(16).hex()
        conn.send(MsgType.HELLO, {"version": wire.PROTOCOL_VERSION, "nonce": nonce,
                                  "migration_id": self.migration_id})
        reply = conn.recv(MsgType.HELLO_REPLY)
        if wire.get_str(reply, "client_nonce", "hello_reply", pattern=wire.NONCE_RE) != nonce:
            raise MigrationError("hello_reply.client_nonce does not echo our nonce (replayed reply?)")
        wire.get_str(reply, "nonce", "hello_reply", pattern=wire.NONCE_RE)
        dst = hostinfo.HostInfo.from_json(wire.get_dict(reply, "hostinfo", "hello_reply"), "hello_reply.hostinfo")
        self._emit("connected", agent=f"{self.opts.host}:{self.opts.port}", fingerprint=conn.fingerprint,
                   destination={"os": dst.os, "arch": dst.arch, "kernel": dst.kernel})
        return dst

    def precheck(self, dst: hostinfo.HostInfo, memory: int, disk: int) -> None:
        assert self.conn is not None
        src = hostinfo.probe(self.opts.state_dir)
        local = hostinfo.check_compat(src, dst, hostinfo.Needs(memory=memory, disk=disk))
        self.conn.send(MsgType.CHECK, {"hostinfo": src.to_json(), "memory": memory, "disk": disk})
        remote = hostinfo.Verdict.from_json(self.conn.recv(MsgType.VERDICT))
        if not local.ok or not remote.ok:
            reasons = list(dict.fromkeys(local.reasons + remote.reasons))
            self._emit("refused", reasons=reasons, missing_flags=sorted(set(local.missing_flags) | set(remote.missing_flags)),
                       missing_xsave=sorted(set(local.missing_xsave) | set(remote.missing_xsave)))
            raise RefusedError(f"destination {self.opts.host}:{self.opts.port} cannot run this container: "
                               + "; ".join(reasons))
        self._emit("compatible")

    def _send_round(self, rnd: int, dirty: dict[int, list[Run]]) -> RoundStat:
        assert self.conn is not None
        lim = self.conn.limits
        t0 = time.monotonic()
        pages = 0
        view = memoryview(self._buf)
        self._send_layout()
        for pid, runs in dirty.items():
            for batch in _batches(runs, lim.max_batch_pages, lim.max_batch_runs):
                n = sum(k for _, k in batch)
                data = view[: n * PAGE_SIZE]
                self.source.read_pages(pid, batch, data)
                wire.send_pages(self.conn.sock, pid, batch, data, round_no=rnd, limits=lim)
                pages += n
                self.sent[pid] = spans.union(self.sent.get(pid, []), spans.from_runs(batch))
        self.conn.send(MsgType.ROUND_END, {"round": rnd, "pages": pages})
        ack = self.conn.recv(MsgType.ACK)
        self.target = ack.get("target") is True
        self.target_seen = self.target_seen or self.target
        stat = RoundStat(rnd, pages, pages * PAGE_SIZE, round((time.monotonic() - t0) * 1000, 3))
        self.report.rounds.append(stat)
        self._emit("round", **asdict(stat))
        return stat

    def _send_layout(self) -> None:
        """The private anonymous areas of each tracked process, before its pages: the
        agent's restore target maps them, so that pages land in their final place."""
        assert self.conn is not None
        layout = getattr(self.source, "layout", None)
        if layout is None:
            return
        lim = self.conn.limits
        for pid, (areas, busy) in layout().items():
            if len(areas) > lim.max_layout_areas or len(busy) > lim.max_layout_areas:
                continue  # no target for this one: its pages go to the agent's page store
            msg: dict[str, Any] = {"pid": pid, "areas": [list(a) for a in areas], "busy": [list(b) for b in busy]}
            bnd = getattr(self.source, "cap_bnd", lambda: None)()
            if bnd is not None:
                msg["cap_bnd"] = bnd
            self.conn.send(MsgType.LAYOUT, msg)
            self.areas[pid] = spans.union([(a, b) for a, b, _ in areas])

    def skip_pages(self) -> dict[int, list[Run]]:
        """Image pid -> pages the final dump may leave out (PE_PARENT): sent, still
        trusted, and inside the areas the agent's restore target holds."""
        if not self.target:
            return {}
        return {pid: spans.to_runs(spans.intersect(self.sent.get(pid, []), areas))
                for pid, areas in self.areas.items()}

    def _send_file(self, path: Path, name: str, begin: MsgType, data_t: MsgType, end: MsgType) -> None:
        assert self.conn is not None
        size = path.stat().st_size
        self.conn.send(begin, {"name": name, "size": size} if begin == MsgType.FILE_BEGIN else {"size": size})
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                wire.send_frame(self.conn.sock, data_t, chunk)
        self.conn.send(end, {"sha256": h.hexdigest()})

    def _pagemap_for(self, image_dir: Path, pages_id: int) -> tuple[int, list[int]] | None:
        """(pid, page addresses in image order) of the pagemap whose head names pages_id."""
        from capture.images import read_image
        from proto import pagemap_pb2

        for pm in sorted(image_dir.glob("pagemap-*.img")):
            img = read_image(pm)
            head = img.entries[0] if img.entries else None
            if not isinstance(head, pagemap_pb2.pagemap_head) or head.pages_id != pages_id:
                continue
            pages: list[int] = []
            for e in img.entries_as(pagemap_pb2.pagemap_entry, start=1):
                flags = e.flags if e.HasField("flags") else 4
                if flags & 1:
                    return None  # parent-image pages: send the file as it is
                if flags & 4:
                    pages.extend(range(e.vaddr, e.vaddr + e.nr_pages * PAGE_SIZE, PAGE_SIZE))
            return int(pm.name[len("pagemap-"):-len(".img")]), pages
        return None

    def _send_pages_image(self, image_dir: Path, path: Path) -> None:
        """Send only the pages the agent lacks; it rebuilds pages-N.img from the rest."""
        assert self.conn is not None
        m = _PAGES_RE.fullmatch(path.name)
        assert m is not None
        found = self._pagemap_for(image_dir, int(m.group(1)))
        size = path.stat().st_size
        # a process nothing was pre-copied for (a container's short-lived child) goes as
        # a plain file: its pages must not enter the page store the agent may adopt
        if found is None or len(found[1]) * PAGE_SIZE != size or found[0] not in self.sent:
            self._send_file(path, path.name, MsgType.FILE_BEGIN, MsgType.FILE_DATA, MsgType.FILE_END)
            self.report.final_pages += size // PAGE_SIZE
            self.report.final_fill_pages += size // PAGE_SIZE
            return
        pid, pages = found
        have = self.sent.get(pid, [])
        missing = [(i, addr) for i, addr in enumerate(pages) if not spans.contains(have, addr)]
        lim = self.conn.limits
        view = memoryview(self._buf)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            k = 0
            while k < len(missing):
                batch = missing[k:k + lim.max_batch_pages]
                k += len(batch)
                runs: list[Run] = []
                for j, (i, addr) in enumerate(batch):
                    os.preadv(fd, [view[j * PAGE_SIZE:(j + 1) * PAGE_SIZE]], i * PAGE_SIZE)
                    if runs and runs[-1][0] + runs[-1][1] * PAGE_SIZE == addr:
                        runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                    else:
                        runs.append((addr, 1))
                if len(runs) > lim.max_batch_runs:  # split very fragmented batches
                    off = 0
                    for sub in _batches(runs, lim.max_batch_pages, lim.max_batch_runs):
                        n = sum(c for _, c in sub)
                        wire.send_pages(self.conn.sock, pid, sub, view[off * PAGE_SIZE:(off + n) * PAGE_SIZE],
                                        round_no=0xFFFF, limits=lim)
                        off += n
                else:
                    wire.send_pages(self.conn.sock, pid, runs, view[:len(batch) * PAGE_SIZE], round_no=0xFFFF,
                                    limits=lim)
            msg: dict[str, Any] = {"name": path.name, "pid": pid, "size": size}
            if self.opts.verify_pages:
                h = hashlib.blake2b(digest_size=32)
                off = 0
                while chunk := os.pread(fd, 1 << 22, off):
                    h.update(chunk)
                    off += len(chunk)
                msg["blake2b"] = h.hexdigest()
        finally:
            os.close(fd)
        self.conn.send(MsgType.PAGES_IMAGE, msg)
        ack = self.conn.recv(MsgType.ACK)
        if ack.get("adopted") is True:
            self.report.final_images_adopted += 1
        self.report.final_pages += len(pages)
        self.report.final_fill_pages += len(missing)

    def run(self) -> Report:
        t_start = time.monotonic()
        desc = self.source.describe()
        self.report.container_id = desc.container_id
        self.report.memory_bytes = desc.memory_bytes
        max_rounds = max(1, self.opts.precopy_rounds)
        # every pre-copy round may resend at most all memory; images and rootfs get their own allowance
        announced = min(Limits().max_total, (desc.memory_bytes + (64 << 20)) * (max_rounds + 1) + (256 << 20))
        frozen_at: float | None = None
        tracking = False
        journal.refuse_if_pending(self.opts.state_dir, desc.container_id)
        try:
            dst = self.connect_and_check()
            self.precheck(dst, desc.memory_bytes, min(announced, 2 * desc.memory_bytes + (256 << 20)))
            assert self.conn is not None
            self._at(faults.Phase.CONNECT)
            self._journal_begin(desc)
            disk = min(announced, 2 * desc.memory_bytes + (256 << 20))
            self.conn.send(MsgType.BEGIN, {"migration_id": self.migration_id, "container_id": desc.container_id,
                                           "spec": desc.spec, "announced_bytes": announced, "disk_bytes": disk})
            self.conn.recv(MsgType.ACK)
            base = getattr(self.source, "rootfs_base", None)
            if base is not None:  # a container's root file system, while it runs
                t_base = time.monotonic()
                with tempfile.TemporaryDirectory(prefix="hetmig-rootfs-", dir=self._work()) as tmp:
                    tar = Path(tmp) / "rootfs-base.tar"
                    if base(tar):
                        self._send_file(tar, tar.name, MsgType.ROOTFS_BEGIN, MsgType.ROOTFS_DATA, MsgType.ROOTFS_END)
                        self.conn.recv(MsgType.ACK)
                        self._emit("rootfs-base", bytes=tar.stat().st_size,
                                   ms=round((time.monotonic() - t_base) * 1000, 3))
            self.source.start_tracking()
            tracking = True
            self._journal_tracker()
            self.report.tracker = str(getattr(self.source, "tracker_name", ""))
            rate = 0.0
            prev_pages: int | None = None
            rnd = 0
            last_scan = time.monotonic()
            dirty = self.source.dirty(first=True)
            while True:
                rnd += 1
                stat = self._send_round(rnd, dirty)
                self._at(faults.Phase.PRECOPY)
                if stat.ms > 0:
                    rate = max(rate, stat.bytes / (stat.ms / 1000.0))
                if rnd >= max_rounds:
                    break
                scan_started = time.monotonic()
                dirty = self.source.dirty(first=False)
                pending = sum(n for runs in dirty.values() for _, n in runs)
                est_ms = pending * PAGE_SIZE / rate * 1000.0 if rate else float("inf")
                # pages written while the last round was being sent, per second
                dirty_rate = pending * PAGE_SIZE / max(scan_started - last_scan, 1e-6)
                last_scan = scan_started
                self._emit("dirty", round=rnd, pending_pages=pending, dirty_rate_bytes_s=round(dirty_rate),
                           transfer_rate_bytes_s=round(rate), estimated_ms=round(est_ms, 3))
                if est_ms <= self.opts.max_downtime_ms / 2 or (prev_pages is not None and pending >= prev_pages):
                    # small enough, or not shrinking: this set still goes while the container
                    # runs (one short last round); the frozen round then holds only what is
                    # written during it, not what was written during the long round before
                    self._emit("precopy-converged", pending_pages=pending, estimated_ms=round(est_ms, 3))
                    if pending:
                        rnd += 1
                        self._send_round(rnd, dirty)
                    break
                prev_pages = pending
            # -- cut-over --------------------------------------------------------------
            prime = getattr(self.source, "prime_dump", None)
            if prime is not None:
                prime()
            t = time.monotonic()
            self.source.freeze()
            frozen_at = t = self._mark("freeze", t)
            self.report.freeze = str(getattr(self.source, "freeze_method", "ptrace"))
            self._emit("frozen")
            self._at(faults.Phase.FREEZE)
            # what was written since the last scan (during the short last live round)
            self._send_round(rnd + 1, self.source.dirty(first=False))
            t = self._mark("final_round", t)
            untrusted = getattr(self.source, "untrusted_pages", None)
            for pid, runs in (untrusted() if untrusted is not None else {}).items():
                if pid in self.sent:
                    self.sent[pid] = spans.subtract(self.sent[pid], spans.from_runs(runs))
            if self.target_seen and not self.target:
                # the agent lost its restore target: what went into it must come again
                for pid in self.areas:
                    self.sent.pop(pid, None)
            skip = self.skip_pages()
            skipped = sum(n for r in skip.values() for _, n in r)
            self.report.target = {"used": self.target, "skipped_pages": skipped}
            self.report.final_pages += skipped  # PE_PARENT in the final images: already in the target
            defer = getattr(self.source, "defer_tracking_stop", None)
            if defer is None or not defer():
                self.source.stop_tracking()  # (deferred: stopped while the agent restores, below)
                tracking = False
            t = self._mark("stop_tracking", t)
            with tempfile.TemporaryDirectory(prefix="hetmig-migrate-", dir=self._work()) as tmp:
                image_dir = Path(tmp) / "images"
                image_dir.mkdir()
                self.source.dump_final(image_dir, skip_pages=skip)
                t = self._mark("dump", t)
                self._at(faults.Phase.FINAL)
                files = sorted(image_dir.iterdir())
                pages_files = [p for p in files if _PAGES_RE.fullmatch(p.name)]
                for path in files:
                    if path not in pages_files:
                        self._send_file(path, path.name, MsgType.FILE_BEGIN, MsgType.FILE_DATA, MsgType.FILE_END)
                t = self._mark("send_images", t)
                for path in pages_files:
                    self._send_pages_image(image_dir, path)
                t = self._mark("pages_images", t)
                self._at(faults.Phase.ROOTFS)
                delta = Path(tmp) / "rootfs-delta.tar"
                if self.source.rootfs_delta(delta):
                    self._send_file(delta, delta.name, MsgType.ROOTFS_BEGIN, MsgType.ROOTFS_DATA, MsgType.ROOTFS_END)
                    self.conn.recv(MsgType.ACK)
                    t = self._mark("rootfs_changes", t)
            self.conn.send(MsgType.COMMIT, {})
            if tracking:
                # a deferred tracker leaves the frozen source while the agent restores (the
                # close costs milliseconds per 100 MiB, overlapped here): from FINISH on the
                # tree has SIGSTOP queued, and no injection works any more
                self.source.stop_tracking()
                tracking = False
            self._at(faults.Phase.RESTORE)
            confirm = self.conn.recv(MsgType.CONFIRM)
            t = self._mark("restore", t)
        except BaseException as err:
            cause: BaseException = err
            if isinstance(err, wire.ProtocolError) and self.conn is not None:
                cause = self.conn.pending_error() or err
            self._roll_back(cause, tracking)
            if isinstance(cause, RemoteError) and cause.code == "refused":
                raise RefusedError(str(cause)) from err
            if cause is not err:
                raise cause from err
            raise
        # Confirmed: the destination holds the restored copy stopped. FINISH releases
        # it; only after the agent's ACK is our copy destroyed.
        self.report.restored_pid = wire.get_int(confirm, "pid", "confirm", hi=1 << 31)
        for key in ("agent_ms", "engine_stages_ms"):  # the agent's own breakdown (numbers only)
            part = confirm.get(key)
            if isinstance(part, dict):
                for k, v in list(part.items())[:32]:
                    if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool):
                        self.report.cutover_ms[f"{key[:-3]}.{k[:40]}"] = float(v)
        secs = confirm.get("restore_seconds")
        if isinstance(secs, (int, float)):
            self.report.cutover_ms["restore_engine"] = round(float(secs) * 1000, 3)
        outcome = self._finish()
        self._mark("finish", t)  # FINISH -> the agent released its copy -> ACK
        if outcome == "aborted":
            self._roll_back(MigrationError("the agent did not receive FINISH and dropped its copy"), tracking)
            raise MigrationError(f"migration {self.migration_id}: the connection failed before the agent "
                                 f"took over; the source runs on")
        if outcome != "done":
            self._leave_stopped()
            raise MigrationError(
                f"migration {self.migration_id}: outcome unknown (the agent at {self.opts.host}:{self.opts.port} "
                f"cannot be asked); the source pid(s) {self.source.describe().pids} are left stopped (SIGSTOP): "
                f"run `hetmig migrate --recover {self.migration_id} --state-dir {self.opts.state_dir}` once the "
                f"agent answers (it destroys them or lets them go on)")
        self.report.downtime_ms = round((time.monotonic() - (frozen_at or time.monotonic())) * 1000, 3)
        self._destroy_source()
        self.report.total_ms = round((time.monotonic() - t_start) * 1000, 3)
        self.report.outcome = "migrated"
        self._emit("done", **self.report.to_json())
        return self.report

    def _finish(self) -> str:
        """'done' when the agent released its copy, 'aborted' when it dropped it, else 'unknown'."""
        assert self.conn is not None
        self._stop_before_finish()
        try:
            self.conn.send(MsgType.FINISH, {})
            self._at(faults.Phase.CONFIRM)
            ack = self.conn.recv(MsgType.ACK)
            if isinstance(ack.get("finish_ms"), (int, float)) and not isinstance(ack.get("finish_ms"), bool):
                self.report.cutover_ms["agent.finish"] = float(ack["finish_ms"])
            self.conn.close()
            return "done"
        except HetmigError as err:
            self._emit("finish-unconfirmed", reason=str(err)[:500])
            self.conn.close()
        return query_status(self.opts, self.migration_id, self._emit)

    def _leave_stopped(self) -> None:
        """Outcome unknown: keep the source stopped (SIGSTOP, queued before FINISH) after
        our ptrace freeze ends; the journal keeps the migration for ``--recover``."""
        for pid, _start in self._stopped:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        self.source.thaw()  # releases ptrace; SIGSTOP keeps it stopped
        self.report.outcome = "unknown-left-stopped"

    def _roll_back(self, err: BaseException, tracking: bool) -> None:
        """Before CONFIRM (or when the agent dropped its copy): the source runs on as if
        nothing happened."""
        try:
            if tracking:
                self.source.stop_tracking()
        except HetmigError:
            pass
        finally:
            self.source.thaw()
            for pid, start in self._stopped:  # the SIGSTOP queued before FINISH
                if journal.start_time(pid) == start:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
            self._stopped = ()
        self.report.outcome = "rolled-back"
        if self.conn is not None:
            try:
                self.conn.send(MsgType.ABORT, {"message": str(err)[:2000]})
            except (OSError, HetmigError):
                pass
            self.conn.close()
        if self._tracker_closed():
            journal.remove(self.opts.state_dir, self.migration_id)
        self._emit("rolled-back", reason=str(err)[:2000])

    def _tracker_closed(self) -> bool:
        """The tracker's userfaultfd is out of the container (a stop that failed, e.g. on a
        signal in the middle of its injection, is retried here). False: it is still in;
        the journal keeps the migration for ``--recover`` and a new migration is refused."""
        if self.entry is None or self.entry.uffd is None:
            return True
        try:
            if journal.close_stale_uffd(*self.entry.uffd):
                self._emit("tracker-closed", pid=self.entry.uffd[0], fd=self.entry.uffd[1])
            return True
        except HetmigError as err:
            self._emit("tracker-left", pid=self.entry.uffd[0], fd=self.entry.uffd[1], reason=str(err)[:500])
            return False

    # -- fault points, journal, the end ---------------------------------------------------------
    def _at(self, phase: faults.Phase) -> None:
        self.faults.at(phase, self.conn.sock if self.conn is not None else None)

    def _journal_begin(self, desc: SourceDescription) -> None:
        """The journal entry, before BEGIN reaches the agent; its work dir holds our temporary files."""
        from runtime_shim.migration.engine import ManagedSource, RuncSource

        kind, root, agent_state = "process", None, None
        if isinstance(self.source, RuncSource):
            kind, root = "runc", (self.source.runc[2] if len(self.source.runc) > 2 else None)
        elif isinstance(self.source, ManagedSource):
            kind, agent_state = "managed", str(self.source.agent_state)
        pid = desc.pids[0] if desc.pids else 0
        self.entry = journal.Entry(self.migration_id, desc.container_id, kind, pid, journal.start_time(pid) or 0,
                                   self.opts.host, self.opts.port, runc_root=root, agent_state=agent_state,
                                   source_pid=os.getpid(), source_start=journal.start_time(os.getpid()) or 0)
        try:
            journal.write(self.opts.state_dir, self.entry)
            journal.work_dir(self.opts.state_dir, self.migration_id).mkdir(mode=0o700)
        except OSError as err:
            raise MigrationError(f"cannot write the migration journal in {journal.outgoing_dir(self.opts.state_dir)}: "
                                 f"{err}") from err

    def _work(self) -> Path | None:
        return journal.work_dir(self.opts.state_dir, self.migration_id) if self.entry is not None else None

    def _journal_tracker(self) -> None:
        tracker = getattr(self.source, "_tracker", None)
        fd = getattr(tracker, "uffd", None)
        if self.entry is not None and isinstance(fd, int):
            self.entry = journal.update(self.opts.state_dir, self.entry, uffd=(int(getattr(tracker, "pid")), fd))

    def _stop_before_finish(self) -> None:
        """SIGSTOP queued to the frozen tree (journal first): if we die from now on, the
        kernel's detach lets it stop, never run on next to a released copy."""
        from runtime_shim.migration.engine import _descendants

        pids: list[int] = []
        for p in self.source.describe().pids:
            pids += _descendants(p) if getattr(self.source, "tree", False) else [p]
        stopped = tuple((p, st) for p in dict.fromkeys(pids) if (st := journal.start_time(p)) is not None)
        if self.entry is not None:
            self.entry = journal.update(self.opts.state_dir, self.entry, phase="finishing", stopped=stopped)
        self._stopped = stopped
        for pid, _start in stopped:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass

    def _destroy_source(self) -> None:
        if self.entry is not None:
            self.entry = journal.update(self.opts.state_dir, self.entry, phase="released")
        self._at(faults.Phase.CLEANUP)
        self.source.destroy()
        self._stopped = ()
        journal.remove(self.opts.state_dir, self.migration_id)


def query_status(opts: MigrateOptions, migration_id: str, emit: Callable[..., None] | None = None,
                 attempts: int = 3) -> str:
    """The agent's phase of *migration_id* over a new connection: 'done', 'aborted', or
    'unknown' when it cannot be asked (*attempts* tries, a second apart)."""
    emit = emit or (lambda event, **data: None)
    for attempt in range(attempts):
        try:
            conn = Connection(opts)
            try:
                conn.send(MsgType.STATUS, {"migration_id": migration_id})
                phase = wire.get_str(conn.recv(MsgType.ACK), "phase", "status", max_len=64)
            finally:
                conn.close()
            emit("status", phase=phase)
            if phase in ("done", "aborted"):
                return phase
        except HetmigError as err:
            emit("status-failed", attempt=attempt + 1, reason=str(err)[:500])
        if attempt + 1 < attempts:
            time.sleep(1.0)
    return "unknown"


def recover(state_dir: Path, only: str | None = None, extra_pins: tuple[str, ...] = (),
            emit: Callable[..., None] | None = None, agent: tuple[str, int] | None = None) -> list[journal.Recovered]:
    """``hetmig migrate --recover``: settle the migrations a dead source left (see journal).
    *agent*: ask this address instead of the one journaled (the agent moved)."""
    def status(entry: journal.Entry) -> str:
        host, port = agent or (entry.host, entry.port)
        opts = MigrateOptions(host=host, port=port, state_dir=state_dir, extra_pins=extra_pins,
                              connect_timeout=5.0, io_timeout=30.0)
        return query_status(opts, entry.migration_id, emit)

    return journal.recover(state_dir, status, only)
