"""The seams where the dump and restore engines plug into a migration.

``SourceContainer`` is what ``hetmig migrate`` drives on the source: describe
the container, track and read dirty pages while it runs, freeze and thaw it,
write the final image set, produce the rootfs delta, destroy it after the
destination confirmed. ``DestinationRestore`` is what the agent drives: take
pages as they arrive, restore from the final image set, abort.

Implementations here:
  * :class:`ProcessSource` (``--pid``): a plain process. Pre-copy is real
    (capture.dirty trackers, process_vm_readv through /proc/PID/mem),
    freezing is SIGSTOP/SIGCONT. The final dump needs ``capture.dump``; while
    that engine is absent, :meth:`ProcessSource.dump_final` raises
    MigrationError and the migration rolls back (the process is thawed).
  * :class:`RuncSource` (a runc container id): config.json + the observed
    isolation as the spec, pre-copy of its init process, the rootfs during
    pre-copy and its changes at cut-over, ptrace freeze of the whole tree,
    final dump of the tree; destroyed with ``runc kill`` + ``runc delete``.
  * :class:`ManagedSource` (``--agent-state DIR``): a container an agent
    restored on this host, migrated on the same way; destroyed with its
    cgroups, netns and rootfs.
  * :class:`StagingRestore` (the agent's default): stores every page in a
    per-migration page store (``pages.bin`` + index), so that the restore
    engine finds the memory already in place at cut-over; for a container it
    makes the isolation at BEGIN (:mod:`runtime_shim.migration.container`)
    and restores into it. ``restore`` needs ``capture.restore``; while absent
    it raises MigrationError naming it.

Nothing here pretends: every step that lacks its engine fails loudly.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from capture.errors import HetmigError, MigrationError, PlatformError

if TYPE_CHECKING:
    from runtime_shim.migration.container import Isolation

PAGE_SIZE = 4096
Run = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SourceDescription:
    container_id: str
    spec: dict[str, Any]
    memory_bytes: int           # resident bytes of every tracked address space
    pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Restored:
    """What the destination reports after a successful restore."""

    pid: int
    detail: dict[str, Any] = field(default_factory=dict)


class SourceContainer(Protocol):
    def describe(self) -> SourceDescription: ...
    def start_tracking(self) -> None: ...
    def dirty(self, first: bool) -> dict[int, list[Run]]: ...
    def read_pages(self, pid: int, runs: Sequence[Run], buf: memoryview) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def stop_tracking(self) -> None: ...
    def dump_final(self, image_dir: Path, skip_pages: dict[int, list[Run]] | None = None) -> None: ...
    def rootfs_delta(self, out: Path) -> bool: ...
    def destroy(self) -> None: ...


class DestinationRestore(Protocol):
    def begin(self, workdir: Path, container_id: str, spec: dict[str, Any]) -> None: ...
    def write_pages(self, pid: int, runs: Sequence[Run], data: memoryview) -> None: ...
    def build_pages_image(self, pid: int, pages: Sequence[int], out_fd: int) -> None: ...
    def restore(self, image_dir: Path, rootfs_dir: Path | None) -> Restored: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...


# -- helpers ----------------------------------------------------------------------------------

def present_filter(pid: int, runs: Sequence[Run], *, proc: str = "/proc") -> list[Run]:
    """The pages of *runs* that are present or swapped (pagemap bits 63/62)."""
    out: list[Run] = []
    try:
        fd = os.open(f"{proc}/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise PlatformError(f"cannot open {proc}/{pid}/pagemap: {err.strerror}", errno=err.errno) from err
    try:
        for addr, n in runs:
            raw = os.pread(fd, n * 8, (addr // PAGE_SIZE) * 8)
            start = -1
            count = len(raw) // 8
            for i, entry in enumerate(struct.unpack(f"={count}Q", raw)):
                if entry >> 62 & 3:
                    if start < 0:
                        start = i
                elif start >= 0:
                    out.append((addr + start * PAGE_SIZE, i - start))
                    start = -1
            if start >= 0:
                out.append((addr + start * PAGE_SIZE, count - start))
    finally:
        os.close(fd)
    return out


def _rss_bytes(pid: int, proc: str = "/proc") -> int:
    try:
        with open(f"{proc}/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _dump_engine() -> Any:
    try:
        return importlib.import_module("capture.dump")
    except ModuleNotFoundError as err:
        if err.name != "capture.dump":
            raise
        raise MigrationError("final dump: the dump engine (capture.dump) is not available in this build; "
                             "nothing was migrated") from None


def _restore_engine() -> Any:
    try:
        return importlib.import_module("capture.restore")
    except ModuleNotFoundError as err:
        if err.name != "capture.restore":
            raise
        raise MigrationError("restore: the restore engine (capture.restore) is not available on this "
                             "agent; nothing was restored") from None


class ProcessSource:
    """A single process (``hetmig migrate --pid PID``)."""

    def __init__(self, pid: int, *, tracker: str | None = None, name: str | None = None) -> None:
        if not os.path.exists(f"/proc/{pid}"):
            raise MigrationError(f"--pid {pid}: no such process")
        self.pid = pid
        self.name = name or f"pid-{pid}"
        self.tracker_kind = tracker
        self._tracker: Any = None
        self._frozen = False
        self.tree = False
        self._held: list[int] = []
        self._mem: int | None = None
        self._image_pid: int | None = None
        self._deferred = False  # the tracker stays in the frozen process (defer_tracking_stop)

    def describe(self) -> SourceDescription:
        _refuse_unrestorable(self.pid)
        return SourceDescription(self.name, {}, _rss_bytes(self.pid), (self.pid,))

    def start_tracking(self) -> None:
        from capture.dirty import TrackerKind, make_tracker

        prefer = TrackerKind(self.tracker_kind) if self.tracker_kind else None
        preload = getattr(_dump_engine(), "preload", None)
        if preload is not None:
            preload()  # the frozen dump must not pay for first imports
        if self.tree and prefer is not TrackerKind.HASH:
            # a container: its children run, end and signal the init. The userfaultfd is
            # set up by injection while the whole tree is held in our ptrace freeze (no
            # pending signal, no child ending meanwhile): a signal in the middle of the
            # injection would fail it half-way and could leave the uffd open in the target
            self._tracker = self._uffd_in_freeze(prefer)
        if self._tracker is None:
            self._tracker = make_tracker(self.pid, prefer=prefer)
        self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def _uffd_in_freeze(self, prefer: Any) -> Any:
        from capture.dirty import TrackerUnavailable, UffdWpTracker

        for attempt in range(5):
            self.freeze()
            try:
                tracker = UffdWpTracker(self.pid)
                tracker.hold(True)
                tracker.start()
                tracker.hold(False)
                return tracker
            except (TrackerUnavailable, ImportError):
                if prefer is not None:
                    raise
                return None  # the hash fallback
            except PlatformError:
                # a thread caught in a signal-delivery stop fails the injection before the
                # syscall runs; a uffd left behind would fail the final dump by name (and
                # roll back), never silently
                if attempt == 4:
                    raise
            finally:
                self.thaw()
            time.sleep(0.005)
        return None

    @property
    def tracker_name(self) -> str:
        return str(self._tracker.kind.value) if self._tracker is not None else "none"

    def dirty(self, first: bool) -> dict[int, list[Run]]:
        runs = self._tracker.scan()  # the first scan also write-protects everything
        if first:
            try:
                # exactly the pages a dump taken now would hold, in its order, so that the
                # agent's page store lines up with the final pages image (see PageStore.adopt);
                # pages outside the tracked ranges (read-only COW pages, vDSO) cannot change
                # without becoming writable first, which makes them a new, fully dirty range
                runs = self._dump_selection()
            except PlatformError:
                fast = getattr(self._tracker, "present_pages", None)
                runs = fast(runs) if fast is not None else present_filter(self.pid, runs)
        return {self.image_pid: runs}

    @property
    def image_pid(self) -> int:
        """The pid the dump's images give this process: its pid in its own pid namespace
        (a container's init is 1). Pages are keyed by it on both sides."""
        if self._image_pid is None:
            self._image_pid = self.pid
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            self._image_pid = int(line.split()[-1])
            except (OSError, ValueError):
                pass
        return self._image_pid

    def _dump_selection(self) -> list[Run]:
        from capture.dirty import merge_runs
        from capture.platform import get_platform

        plat = get_platform()
        runs: list[Run] = []
        for vma in plat.read_maps(self.pid):
            runs.extend(plat.present_runs(self.pid, vma))
        return merge_runs(runs)

    def untrusted_pages(self) -> dict[int, list[Run]]:
        """Pages whose pre-copied contents must not be trusted at cut-over.

        * pages zapped (MADV_DONTNEED) and since only read: now the zero page,
          yet not "written" for uffd-wp;
        * each thread's rseq area: the kernel rewrites cpu_id on return to user
          space, which the injected syscalls of the tracker and the dump engine
          cause after the last scan (seen here: 2 bytes of the TLS page);
        * the stack just below each thread's rsp, where injection scratch is
          written after the last scan.
        These pages are sent from the final image set instead.
        """
        from capture.platform import get_platform

        fn = getattr(self._tracker, "zero_pages", None)
        runs: list[Run] = list(fn()) if fn is not None else []
        plat = get_platform()
        try:
            own = {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError:
            own = set(self._held)
        for tid in self._held:
            if tid not in own:
                continue  # another process of the tree: another address space
            try:
                regs = plat.get_regs(tid)
                lo = (regs.rsp - 32 * PAGE_SIZE) & ~(PAGE_SIZE - 1)
                runs.append((lo, 33))
                rs = plat.rseq(tid)
                if rs is not None:
                    first = rs.abi_pointer & ~(PAGE_SIZE - 1)
                    last = (rs.abi_pointer + max(rs.abi_size, 1) - 1) & ~(PAGE_SIZE - 1)
                    runs.append((first, (last - first) // PAGE_SIZE + 1))
            except PlatformError:
                continue
        return {self.image_pid: runs}

    def read_pages(self, pid: int, runs: Sequence[Run], buf: memoryview) -> None:
        assert self._mem is not None
        off = 0
        for addr, n in runs:
            size = n * PAGE_SIZE
            try:
                got = os.preadv(self._mem, [buf[off:off + size]], addr)
            except OSError as err:
                raise PlatformError(f"reading {size} bytes at 0x{addr:x} of pid {pid} failed",
                                    errno=err.errno) from err
            if got != size:
                buf[off + got:off + size] = bytes(size - got)  # unmapped meanwhile: zeros
            off += size

    #: the container's cgroup v1 freezer directory (containers only; None: ptrace alone)
    freezer: Path | None = None

    @property
    def freeze_method(self) -> str:
        return "cgroup-freezer+ptrace" if self.freezer is not None else "ptrace"

    def _seize_in_freezer(self, plat: Any) -> list[int]:
        """The whole tree stopped at once: the cgroup freezer stops every task (no fork,
        no exit slips through), each thread is seized and asked to stop while frozen,
        then the cgroup is thawed and every thread enters its ptrace stop before running
        any user code. Returns the tree's pids (cgroup.procs)."""
        assert self.freezer is not None
        state = self.freezer / "freezer.state"
        _write_freezer(state, "FROZEN")
        try:
            deadline = time.monotonic() + 5.0
            while state.read_text().strip() != "FROZEN":
                if time.monotonic() > deadline:
                    raise PlatformError(f"{state} did not reach FROZEN within 5 s")
                time.sleep(0.0005)
            pids = [int(x) for x in (self.freezer / "cgroup.procs").read_text().split()]
            for tid in (int(x) for x in (self.freezer / "tasks").read_text().split()):
                plat.seize(tid)
                self._held.append(tid)
                plat.request_stop(tid)
        finally:
            _write_freezer(state, "THAWED")
        for tid in self._held:
            plat.wait_stopped(tid)
        return pids

    def freeze(self) -> None:
        """Freeze: every thread seized and stopped under ptrace (no user code runs until
        thaw); for a container through its cgroup freezer first (see _seize_in_freezer)."""
        from capture.platform import get_platform

        plat = get_platform()
        for attempt in range(50):
            self._held = []
            try:
                if self.freezer is not None and hasattr(plat, "request_stop"):
                    pids = self._seize_in_freezer(plat)
                else:
                    pids = _descendants(self.pid) if self.tree else [self.pid]
                    # each thread is stopped right after it is seized: a failure later on (a
                    # child that ended) must find every held thread stopped, or detaching it
                    # fails and it stays traced by us
                    for pid in pids:
                        for tid in plat.list_threads(pid):
                            plat.seize(tid)
                            self._held.append(tid)
                            plat.interrupt(tid)
            except PlatformError as err:
                self.thaw()
                if self.tree and attempt < 49:  # a child ended while being seized
                    time.sleep(0.002)
                    continue
                raise MigrationError(f"cannot freeze pid {self.pid}: {err}") from err
            # a signal pending while frozen (a shell's SIGCHLD) cannot go into the images,
            # nor can a child forked while our userfaultfd sat in its parent and not yet
            # exec'd (it holds a copy): let them run on and freeze again (writes meanwhile
            # are still tracked). Nor a child forked after the tree was listed and before
            # its parent was stopped: it runs on unfrozen and its exit queues SIGCHLD in
            # the frozen parent, which fails the injections that follow (seen in a soak)
            if not self.tree or not (any(_pending_signals(tid) for tid in self._held)
                                     or any(_holds_uffd(p) for p in pids if p != self.pid)
                                     or set(_descendants(self.pid)) != set(pids)):
                break
            self.thaw()
            time.sleep(0.002)
        else:
            raise MigrationError(f"cannot freeze pid {self.pid} without pending signals (50 attempts)")
        self._frozen = True
        if self._tracker is not None and hasattr(self._tracker, "hold"):
            self._tracker.hold(True)

    def thaw(self) -> None:
        from capture.platform import get_platform

        plat = get_platform()
        if self.freezer is not None:
            try:  # never leave the container's cgroup frozen (a freeze that failed half-way)
                if (self.freezer / "freezer.state").read_text().strip() != "THAWED":
                    _write_freezer(self.freezer / "freezer.state", "THAWED")
            except (OSError, PlatformError):
                pass
        if self._tracker is not None and hasattr(self._tracker, "hold"):
            self._tracker.hold(False)
        for tid in self._held:
            try:
                plat.release(tid)
            except PlatformError:
                pass
        _reap_dead_tracees(self._held)
        self._held = []
        self._frozen = False

    def defer_tracking_stop(self) -> bool:
        """Keep the userfaultfd in the frozen process through the final dump (closing it
        clears write protection from every tracked page: milliseconds per 100 MiB, inside
        the downtime). Only with the uffd tracker and no swap area (its markers then are
        the only swap entries). The source is destroyed after a migration; a roll-back
        still calls :meth:`stop_tracking`. False: stop tracking now."""
        from capture.dirty import swap_active

        uffd = getattr(self._tracker, "uffd_fd", None)
        self._deferred = uffd is not None and not swap_active()
        return self._deferred

    def stop_tracking(self) -> None:
        self._deferred = False
        if self._tracker is not None:
            tracker, self._tracker = self._tracker, None
            tracker.stop()
            if self._frozen and self._held:
                _clear_single_step(self._held)  # the injected close left its single-step state
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None

    def prime_dump(self) -> None:
        """Just before the freeze: what the final dump would otherwise read inside the
        downtime and scales with memory (smaps: ~10 ms per GiB), read now."""
        from capture.platform import get_platform

        prime = getattr(get_platform(), "prime_vmflags", None)
        if prime is not None:
            try:
                prime(self.pid)
            except PlatformError:
                pass  # the dump reads it then

    def cap_bnd(self) -> int | None:
        """The tracked process's capability bounding set (/proc status), None if unreadable."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("CapBnd:"):
                        return int(line.split()[1], 16)
        except (OSError, ValueError, IndexError):
            return None
        return None

    def layout(self) -> dict[int, tuple[list[tuple[int, int, int]], list[tuple[int, int]]]]:
        """Image pid -> (private anonymous areas as (start, end, MAP_* flags), the spans of
        every other mapping) of the tracked process, from /proc/PID/maps (no page walk)."""
        areas: list[tuple[int, int, int]] = []
        busy: list[tuple[int, int]] = []
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                text = f.read()
        except OSError as err:
            raise PlatformError(f"cannot read /proc/{self.pid}/maps: {err.strerror}", errno=err.errno) from err
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 5 or len(parts[1]) < 4:
                continue
            if len(parts) < 5:
                continue
            lo, _, hi = parts[0].partition("-")
            start, end = int(lo, 16), int(hi, 16)
            path = parts[5].strip() if len(parts) > 5 else ""
            if path == "[vsyscall]":
                continue
            if parts[1][3] == "p" and parts[4] == "0" and (path in ("", "[heap]", "[stack]")
                                                          or path.startswith("[anon:")):
                flags = 0x02 | 0x20 | (0x0100 if path == "[stack]" else 0)  # PRIVATE|ANONYMOUS|GROWSDOWN
                areas.append((start, end, flags))
            else:
                busy.append((start, end))
        return {self.image_pid: (areas, busy)}

    def dump_final(self, image_dir: Path, skip_pages: dict[int, list[Run]] | None = None) -> None:
        """capture.dump on the frozen tree; it sees our held threads as already stopped.
        *skip_pages* (image pid -> runs) are recorded as PE_PARENT: the destination holds them."""
        if not self._frozen:
            raise MigrationError(f"final dump of pid {self.pid} requested while it is not frozen")
        engine = _dump_engine()
        fn = getattr(engine, "dump", None)
        if fn is None:
            raise MigrationError("final dump: capture.dump has no dump(pid, images_dir, ...) entry point")
        from capture.platform import get_platform

        hide: dict[int, set[int]] = {}
        holes: dict[int, list[tuple[int, int]]] = {}
        if getattr(self, "_deferred", False) and self._tracker is not None:
            from capture import spans

            hide[self.pid] = {int(self._tracker.uffd_fd)}
            holes[self.pid] = spans.from_runs(self._tracker.marker_pages())
        held = _HeldPlatform(get_platform(), set(self._held), hide_fds=hide, holes=holes)
        skip = {self.pid: runs for pid, runs in (skip_pages or {}).items() if pid == self.image_pid and runs}
        try:
            fn(self.pid, image_dir, leave_running=True, tree=self.tree, platform=held,
               **({"skip_pages": skip} if skip else {}))
        except HetmigError as err:
            raise MigrationError(f"final dump of pid {self.pid} failed: {err}") from err
        _clear_single_step(self._held)

    def rootfs_delta(self, out: Path) -> bool:
        return False  # a plain process has no container rootfs

    def destroy(self) -> None:
        self._drop_tracking()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._frozen = False

    def _drop_tracking(self) -> None:
        """The process is being destroyed: a tracker still in it is forgotten, not stopped."""
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            abandon = getattr(tracker, "abandon", None)
            if abandon is not None:
                abandon()
            else:
                tracker.stop()
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        self._deferred = False

    def _kill_held(self) -> None:
        """SIGKILL the frozen tree and reap our tracees (a traced process killed stays a
        zombie for its tracer: a runtime waiting for the container to end would hang)."""
        self._drop_tracking()
        held, self._held = self._held, []
        for tid in held:
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_all(held)


def _refuse_unrestorable(pid: int) -> None:
    """Refuse (exit 3) before anything is sent or frozen what the restore would refuse
    after the whole pre-copy: seccomp strict mode (nothing can be injected after it)."""
    from capture.errors import RefusedError

    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Seccomp:") and line.split()[1] == "1":
                    raise RefusedError(f"pid {pid} runs under seccomp strict mode, which cannot be restored; "
                                       "nothing was migrated")
    except OSError:
        return


def _write_freezer(state: Path, value: str) -> None:
    try:
        state.write_text(value)
    except OSError as err:
        raise PlatformError(f"cannot write {value} to {state}: {err.strerror}", errno=err.errno) from err


def freezer_dir(pid: int) -> Path | None:
    """The cgroup v1 freezer directory *pid* is in, when it has one of its own (not the
    root cgroup: freezing that would stop the host)."""
    from runtime_shim.migration import container

    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if "freezer" in ctrls.split(",") and path not in ("", "/"):
                    d = container.cgroup_root() / "freezer" / path.lstrip("/")
                    return d if (d / "freezer.state").exists() else None
    except (OSError, ValueError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    """*pid* and every process below it (through /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _clear_single_step(tids: Sequence[int]) -> None:
    """Leave each held thread in a plain interrupt stop, its single-step state cleared.

    Injected syscalls end in a single-step trap; the kernel clears the step flags
    (TF, the syscall-exit trap) only when the tracer resumes or detaches the thread.
    Should we die instead (SIGKILL), the kernel detaches without clearing them and
    the thread takes a SIGTRAP at its next instruction or syscall exit: the
    container dies of it (seen: a source killed after the final dump). A
    PTRACE_INTERRUPT before PTRACE_CONT makes the thread trap again before any user
    code or signal handler runs (job-control traps are taken before signals)."""
    from capture.dirty import WALL, _ptrace

    for tid in tids:
        try:
            _ptrace(PTRACE_INTERRUPT, tid, 0, 0, "PTRACE_INTERRUPT")
            _ptrace(PTRACE_CONT, tid, 0, 0, "PTRACE_CONT")
            _, status = os.waitpid(tid, WALL)
        except (HetmigError, ChildProcessError):
            continue  # a thread that ended meanwhile
        if not os.WIFSTOPPED(status) or status >> 16 != PTRACE_EVENT_STOP:
            raise MigrationError(f"thread {tid}: expected an interrupt stop after clearing its single-step state, "
                                 f"got status 0x{status:x}")


def _holds_uffd(pid: int) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[userfaultfd]":
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def _reap_all(tids: Sequence[int], timeout: float = 10.0) -> None:
    """Collect our killed tracees *tids*: WNOHANG rounds in any order (a pid-namespace
    init only ends after its traced, killed children were reaped by us; waiting for
    it first would block forever)."""
    remaining = set(tids)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        for tid in list(remaining):
            try:
                got, _ = os.waitpid(tid, 0x40000000 | os.WNOHANG)  # __WALL
            except ChildProcessError:
                got = tid
            if got == tid:
                remaining.discard(tid)
        if remaining:
            time.sleep(0.002)


def _reap_dead_tracees(tids: Sequence[int]) -> None:
    """A traced process that ended stays a zombie for its tracer: reap those of *tids*
    (non-blocking) so that their real parent sees them end."""
    for tid in tids:
        try:
            os.waitpid(tid, 0x40000000 | os.WNOHANG)  # __WALL
        except ChildProcessError:
            pass


def _pending_signals(tid: int) -> bool:
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16):
                    return True
    except (OSError, ValueError):
        return False
    return False


class _HeldPlatform:
    """The platform, except that threads we already hold stopped are not seized,
    interrupted or released again: the dump engine works inside our freeze and
    leaves the tree frozen for us (we release it on thaw, or kill it after the
    destination confirmed)."""

    def __init__(self, inner: Any, held: set[int], *, hide_fds: dict[int, set[int]] | None = None,
                 holes: dict[int, list[tuple[int, int]]] | None = None) -> None:
        self._inner = inner
        self._held = held
        self._hide_fds = hide_fds or {}
        self._holes = holes or {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_fds(self, pid: int) -> Any:
        """Our userfaultfd (still in the tracked process while frozen) is not its descriptor."""
        fds = self._inner.list_fds(pid)
        hide = self._hide_fds.get(pid)
        return tuple(f for f in fds if f.fd not in hide) if hide else fds

    def present_runs(self, pid: int, vma: Any) -> list[tuple[int, int]]:
        """Pages to dump, without the tracker's uffd-wp markers (zero pages, see
        capture.dirty.UffdWpTracker.marker_pages)."""
        runs: list[tuple[int, int]] = self._inner.present_runs(pid, vma)
        holes = self._holes.get(pid)
        if not holes or not runs:
            return runs
        from capture import spans

        return spans.to_runs(spans.subtract(spans.from_runs(runs), holes))

    def seize(self, tid: int) -> None:
        if tid not in self._held:
            self._inner.seize(tid)

    def interrupt(self, tid: int) -> None:
        if tid not in self._held:
            self._inner.interrupt(tid)

    def release(self, tid: int) -> None:
        if tid not in self._held:
            self._inner.release(tid)


class RuncSource(ProcessSource):
    """A runc container. Pre-copy tracks its init process; the freeze goes through
    the container's cgroup freezer (every task stopped at once), each thread is
    seized and asked to stop while frozen, then the cgroup is thawed into the
    ptrace stops (see :meth:`ProcessSource._seize_in_freezer`). The spec sent to
    the destination is ``{"oci": config.json, "observed": container.observe()}``;
    the rootfs goes whole as a checked tar during pre-copy and its changes at
    cut-over. After the destination took over: the container's veth is removed
    (its address lives on there), then ``runc kill KILL`` + ``runc delete --force``."""

    def __init__(self, container_id: str, *, root: str | None = None, tracker: str | None = None) -> None:
        self.runc = ["runc"] + (["--root", root] if root else [])
        state = self._runc("state", container_id)
        info = json.loads(state)
        if info.get("status") != "running":
            raise MigrationError(f"container {container_id}: status={info.get('status')!r}, expected 'running'")
        self.bundle = Path(info.get("bundle", ""))
        super().__init__(int(info["pid"]), tracker=tracker, name=container_id)
        self.container_id = container_id
        self.tree = True
        self.freezer = freezer_dir(self.pid)
        self._desc: SourceDescription | None = None
        self.observed: dict[str, Any] = {}

    def _runc(self, *args: str) -> str:
        proc = subprocess.run([*self.runc, *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise PlatformError(f"runc {args[0]} failed", command=[*self.runc, *args], stderr=proc.stderr)
        return proc.stdout

    def oci_spec(self) -> dict[str, Any]:
        cfg = self.bundle / "config.json"
        try:
            spec = json.loads(cfg.read_text())
        except (OSError, ValueError) as err:
            raise MigrationError(f"container {self.container_id}: cannot read {cfg}: {err}") from None
        if not isinstance(spec, dict):
            raise MigrationError(f"{cfg}: not a JSON object")
        return spec

    def rootfs_path(self) -> Path:
        spec = self.oci_spec()
        root = str((spec.get("root") or {}).get("path") or "rootfs")
        return Path(root) if os.path.isabs(root) else self.bundle / root

    def describe(self) -> SourceDescription:
        if self._desc is None:
            from runtime_shim.migration import container

            _refuse_unrestorable(self.pid)
            self.observed = container.observe(self.pid)
            spec = {"oci": self.oci_spec(), "observed": self.observed}
            self._desc = SourceDescription(self.container_id, spec, _rss_bytes(self.pid), (self.pid,))
        return self._desc

    def rootfs_base(self, out: Path) -> bool:
        """The whole rootfs, sent during pre-copy (the container runs meanwhile)."""
        from runtime_shim.migration import container

        # file times come from the kernel's coarse clock (up to a tick behind): 50 ms slack
        self._base_time = time.time() - 0.05
        container.tar_rootfs(self.rootfs_path(), out)
        return True

    def rootfs_delta(self, out: Path) -> bool:
        """At cut-over (frozen): what changed since the base, or everything without one."""
        from runtime_shim.migration import container

        container.tar_rootfs(self.rootfs_path(), out, since=getattr(self, "_base_time", None))
        return True

    def destroy(self) -> None:
        from runtime_shim.migration import container

        container.remove_veths(self.pid, self.observed)
        self._kill_held()
        subprocess.run([*self.runc, "kill", self.container_id, "KILL"], capture_output=True, timeout=60)
        for _ in range(100):
            r = subprocess.run([*self.runc, "delete", "--force", self.container_id], capture_output=True, timeout=60)
            if r.returncode == 0:
                break
            time.sleep(0.05)
        self._frozen = False


class PodmanSource(RuncSource):
    """A podman container whose OCI runtime is runc: the runc container conmon
    watches (podman keeps it under runc's default root, /run/runc). Migrated like
    any runc container; afterwards its process tree is killed and podman (through
    conmon) records it as exited -- its record, image and volumes stay for
    ``podman rm``. Other runtimes (crun) are refused."""

    def __init__(self, name: str, *, tracker: str | None = None, runc_root: str = "/run/runc") -> None:
        proc = subprocess.run(["podman", "container", "inspect", "--format", "json", name], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode != 0:
            raise MigrationError(f"podman container {name!r}: {proc.stderr.strip()[-500:] or 'not found'}")
        try:
            info = json.loads(proc.stdout)[0]
            cid, runtime = str(info["Id"]), str(info.get("OCIRuntime") or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise MigrationError(f"podman container {name!r}: unreadable `podman container inspect` output") from None
        if runtime != "runc":
            raise MigrationError(f"podman container {name!r} runs under OCI runtime {runtime!r}; only runc "
                                 "containers are migrated")
        super().__init__(cid, root=runc_root, tracker=tracker)

    def destroy(self) -> None:
        """Kill the frozen tree (conmon sees it end); podman's network and cgroups are podman's."""
        self._kill_held()
        self._frozen = False


class ManagedSource(ProcessSource):
    """A container an agent restored on this host (``<agent-state>/containers/ID.json``):
    migrated on like a runc container; destroyed with its cgroups, netns and rootfs."""

    def __init__(self, container_id: str, agent_state: Path, *, tracker: str | None = None) -> None:
        from runtime_shim.migration import container

        self.agent_state = agent_state
        self.record = container.read_record(agent_state, container_id)
        pid = int(self.record.get("pid", 0))
        super().__init__(pid, tracker=tracker, name=container_id)
        self.container_id = container_id
        self.tree = True
        self.freezer = freezer_dir(self.pid)
        self._desc: SourceDescription | None = None

    def describe(self) -> SourceDescription:
        if self._desc is None:
            from runtime_shim.migration import container

            _refuse_unrestorable(self.pid)
            observed = container.observe(self.pid)
            spec = {"oci": self.record.get("oci") or {}, "observed": observed}
            self._desc = SourceDescription(self.container_id, spec, _rss_bytes(self.pid), (self.pid,))
        return self._desc

    def rootfs_path(self) -> Path:
        return Path(str((self.record.get("isolation") or {}).get("rootfs")))

    def dump_final(self, image_dir: Path, skip_pages: dict[int, list[Run]] | None = None) -> None:
        from runtime_shim.migration import container

        super().dump_final(image_dir, skip_pages)
        container.rebase_image_paths(image_dir, self.rootfs_path())

    rootfs_base = RuncSource.rootfs_base
    rootfs_delta = RuncSource.rootfs_delta

    def destroy(self) -> None:
        from runtime_shim.migration import container

        self._kill_held()
        container.destroy_record(self.agent_state, self.container_id)
        self._frozen = False


# -- destination ------------------------------------------------------------------------------

PTRACE_DETACH = 17
PTRACE_CONT = 7
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_STOP = 128


def _ptrace_seize(tid: int, options: int) -> None:
    from capture.dirty import _ptrace

    _ptrace(PTRACE_SEIZE, tid, 0, options, "PTRACE_SEIZE")


def _ptrace_stop(tid: int) -> int:
    """PTRACE_INTERRUPT and wait for the stop; returns a signal that arrived first
    (to be delivered on detach) or 0."""
    from capture.dirty import WALL, _ptrace

    _ptrace(PTRACE_INTERRUPT, tid, 0, 0, "PTRACE_INTERRUPT")
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        raise MigrationError(f"restored thread {tid} ended while being held (status 0x{status:x})")
    if status >> 16 == PTRACE_EVENT_STOP:
        return 0
    # a signal-delivery stop came first: it is a ptrace-stop too; the signal is
    # delivered when the thread is released
    return os.WSTOPSIG(status)


def _ptrace_detach(tid: int, sig: int) -> None:
    from capture.dirty import _ptrace

    _ptrace(PTRACE_DETACH, tid, 0, sig, "PTRACE_DETACH")


INDEX = struct.Struct(">IQQ")  # pid, page address, offset in pages.bin


class PageStore:
    """Pages by (pid, address) in one file; a page sent again overwrites its slot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.index: dict[tuple[int, int], int] = {}
        self.size = 0
        self.pids: set[int] = set()
        self.adopted = False
        self.declined = ""

    def put(self, pid: int, runs: Sequence[Run], data: memoryview) -> None:
        if self.adopted:
            raise MigrationError("page store already became a pages image; no more pages are accepted")
        self.pids.add(pid)
        off = 0
        for addr, n in runs:
            # contiguous fresh pages are written with one pwrite
            fresh = all((pid, addr + i * PAGE_SIZE) not in self.index for i in range(n))
            if fresh:
                os.pwrite(self.fd, data[off:off + n * PAGE_SIZE], self.size)
                for i in range(n):
                    self.index[(pid, addr + i * PAGE_SIZE)] = self.size + i * PAGE_SIZE
                self.size += n * PAGE_SIZE
            else:
                for i in range(n):
                    key = (pid, addr + i * PAGE_SIZE)
                    slot = self.index.get(key)
                    if slot is None:
                        slot = self.size
                        self.index[key] = slot
                        self.size += PAGE_SIZE
                    os.pwrite(self.fd, data[off + i * PAGE_SIZE:off + (i + 1) * PAGE_SIZE], slot)
            off += n * PAGE_SIZE

    def get(self, pid: int, addr: int) -> bytes:
        return os.pread(self.fd, PAGE_SIZE, self.index[(pid, addr)])

    def build_image(self, pid: int, pages: Sequence[int], out_fd: int) -> None:
        """Write the stored pages *pages* (addresses, in order) to *out_fd* from offset 0.

        Contiguous slots are copied with one copy_file_range each. A page never
        stored is an error naming it.
        """
        index = self.index
        out_off = 0
        run_src = run_len = -1
        run_dst = 0
        for addr in pages:
            slot = index.get((pid, addr))
            if slot is None:
                raise MigrationError(f"pages image: page 0x{addr:x} of pid {pid} was never sent")
            if run_len > 0 and slot == run_src + run_len:
                run_len += PAGE_SIZE
            else:
                if run_len > 0:
                    self._copy(out_fd, run_src, run_dst, run_len)
                run_src, run_dst, run_len = slot, out_off, PAGE_SIZE
            out_off += PAGE_SIZE
        if run_len > 0:
            self._copy(out_fd, run_src, run_dst, run_len)

    MAX_MOVES = 16384  # pages moved in memory when adopting (64 MiB)

    def adopt(self, pid: int, pages: Sequence[int], dir_fd: int, name: str) -> bool:
        """Turn the store file itself into the pages image when it nearly is one.

        When the store holds only *pid* and most pages already sit at their image
        offset (round 1 arrives in address order), the few misplaced pages are
        moved in place, the file is cut to size and linked as *name* under
        *dir_fd*: no copy of the whole memory at cut-over. False (nothing
        changed) when that does not apply.
        """
        if self.adopted or self.pids != {pid}:
            self.declined = f"store holds pids {sorted(self.pids)}"
            return False
        index = self.index
        moves: list[tuple[int, int]] = []
        for i, addr in enumerate(pages):
            slot = index.get((pid, addr))
            if slot is None:
                raise MigrationError(f"pages image: page 0x{addr:x} of pid {pid} was never sent")
            if slot != i * PAGE_SIZE:
                moves.append((i * PAGE_SIZE, slot))
                if len(moves) > self.MAX_MOVES:
                    self.declined = f"more than {self.MAX_MOVES} pages out of place (first at image page {moves[0][0] // PAGE_SIZE})"
                    return False
        data = [os.pread(self.fd, PAGE_SIZE, slot) for _, slot in moves]  # read all before writing any
        for (dst, _), page in zip(moves, data):
            os.pwrite(self.fd, page, dst)
        os.ftruncate(self.fd, len(pages) * PAGE_SIZE)
        os.link(self.path, name, dst_dir_fd=dir_fd)  # fails if the name exists
        os.unlink(self.path)
        self.adopted = True
        self.index = {}
        return True

    def _copy(self, out_fd: int, src: int, dst: int, length: int) -> None:
        while length:
            n = os.copy_file_range(self.fd, out_fd, length, src, dst)
            if n <= 0:
                raise MigrationError(f"pages image: copy_file_range returned {n}")
            src, dst, length = src + n, dst + n, length - n

    def save_index(self) -> None:
        if self.adopted:
            return
        tmp = self.path.with_suffix(".idx.tmp")
        with open(tmp, "wb") as f:
            for (pid, addr), off in sorted(self.index.items()):
                f.write(INDEX.pack(pid, addr, off))
        os.replace(tmp, self.path.with_suffix(".idx"))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class StagingRestore:
    """Collects the pre-copied memory; restoring needs capture.restore."""

    def __init__(self, *, use_target: bool = True) -> None:
        self.isolation: Isolation | None = None
        self.container_id = ""
        self.store: PageStore | None = None
        self.workdir: Path | None = None
        self.restored: Any = None
        self.spec: dict[str, Any] = {}
        self._held: list[tuple[int, int]] = []  # (tid, signal to re-inject on release)
        self.target: Any = None                 # capture.restore.RestoreTarget, filled during pre-copy
        self.target_failed = "" if use_target else "disabled (--no-restore-target)"  # why there is none
        self.target_pages = 0                   # pages written into it

    def begin(self, workdir: Path, container_id: str, spec: dict[str, Any]) -> None:
        self.isolation = None
        self.container_id = container_id
        if spec:
            from runtime_shim.migration import container

            container.Isolation.check(container_id, spec)  # refused before any page arrives
            self.isolation = container.Isolation(container.isolation_name(container_id, workdir.name), dict(spec["oci"]),
                                                 dict(spec["observed"]))
            self.isolation.create()
        self.workdir = workdir
        self.spec = spec
        self.store = PageStore(workdir / "pages.bin")
        try:  # imported now, not inside the downtime (tens of ms on a first import)
            preload = getattr(_restore_engine(), "preload", None)
            if preload is not None:
                preload()
            # capture.dirty: its ptrace helpers hold and release the restored tree (a first
            # import inside the downtime cost 12 ms of compiling here)
            for mod in ("capture.platform.linux_inject", "capture.images", "proto.pagemap_pb2", "capture.dirty"):
                importlib.import_module(mod)
        except (MigrationError, ImportError):
            pass  # reported by restore()

    @property
    def target_ok(self) -> bool:
        return self.target is not None

    def layout(self, pid: int, areas: Sequence[tuple[int, int, int]], busy: Sequence[tuple[int, int]],
               rootfs_dir: Path | None, cap_bnd: int | None = None) -> bool:
        """Prepare the restore target of *pid* (the tree's root process) from its private
        anonymous *areas*, or map the areas new since; False when there is no target
        (its pages then go to the page store, the restore builds everything at cut-over)."""
        if self.target_failed:
            return False
        if self.target is not None:
            if pid != self.target.image_pid:
                return True  # only the root process is prepared; others go to the store
            try:
                self.target.add_layout(areas)
            except HetmigError as err:
                self._target_lost(f"mapping new areas failed: {err}")
                return False
            return True
        if self.isolation is not None and rootfs_dir is None:
            return False  # the rootfs comes first; without it there is nothing to enter
        try:
            engine = _restore_engine()
            kwargs: dict[str, Any] = {"pidns": True, "hold": True}
            if self.isolation is not None:
                from capture.platform import linux_inject
                from runtime_shim.migration import container

                assert rootfs_dir is not None
                self.isolation.set_rootfs(rootfs_dir)
                kwargs.update(root=str(rootfs_dir), ops=container.EnteringOps(linux_inject, self.isolation))
            target = engine.RestoreTarget(pid, **kwargs)
            target.prepare(areas, busy, cap_bnd=cap_bnd)
        except HetmigError as err:
            self.target_failed = f"preparing the restore target failed: {err}"
            return False
        self.target = target
        if self.isolation is not None:
            # its pid and mount namespaces exist now: /proc is mounted while the source runs
            self.isolation.after_restore(target.host_pid)
        return True

    def _target_lost(self, why: str) -> None:
        target, self.target = self.target, None
        self.target_failed = why
        if target is not None:
            target.abort()

    def write_pages(self, pid: int, runs: Sequence[Run], data: memoryview) -> None:
        assert self.store is not None
        t = self.target
        if t is None or pid != t.image_pid:
            self.store.put(pid, runs, data)
            return
        pieces: list[tuple[int, int, int]] = []
        off = 0
        for addr, n in runs:
            if t.covers(addr, n):  # the usual case: no splitting
                pieces.append((addr, n, off))
                off += n * PAGE_SIZE
                continue
            inside, outside = t.split([(addr, n)])
            pieces += [(a, k, off + (a - addr)) for a, k in inside]
            for a, k in outside:
                o = off + (a - addr)
                self.store.put(pid, [(a, k)], data[o:o + k * PAGE_SIZE])
            off += n * PAGE_SIZE
        if pieces:
            try:
                t.write_pages(pieces, data)
            except HetmigError as err:
                self._target_lost(f"writing pages into it failed: {err}")
                return
            self.target_pages += sum(k for _, k, _ in pieces)

    def build_pages_image(self, pid: int, pages: Sequence[int], out_fd: int) -> None:
        assert self.store is not None
        self.store.build_image(pid, pages, out_fd)

    def adopt_pages_image(self, pid: int, pages: Sequence[int], dir_fd: int, name: str) -> bool:
        assert self.store is not None
        return self.store.adopt(pid, pages, dir_fd, name)

    def restore(self, image_dir: Path, rootfs_dir: Path | None) -> Restored:
        assert self.store is not None
        t0 = time.monotonic()
        ms: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal t0
            now = time.monotonic()
            ms[name] = round((now - t0) * 1000, 3)
            t0 = now

        self.store.save_index()
        engine = _restore_engine()
        fn = getattr(engine, "restore", None)
        if fn is None:
            raise MigrationError("restore: capture.restore has no restore(image_dir, ...) entry point")
        if rootfs_dir is not None and self.isolation is None:
            raise MigrationError("restore: a rootfs delta came with a plain process (no container spec); "
                                 "capture.restore is only given a root file system inside a container's isolation")
        kwargs: dict[str, Any] = {"pidns": True}  # the dumped pids live on in a fresh pid namespace
        activating: list[Any] = []
        if self.isolation is not None:
            if rootfs_dir is None:
                raise MigrationError(f"container {self.container_id}: no rootfs was sent; a container is "
                                     "never restored without its root filesystem")
            from capture.platform import linux_inject
            from runtime_shim.migration import container

            self.isolation.set_rootfs(rootfs_dir)
            activating = self.isolation.start_activate()  # overlaps the restore engine
            lap("activate")
            kwargs.update(root=str(rootfs_dir), ops=container.EnteringOps(linux_inject, self.isolation))
        target, self.target = self.target, None
        try:
            if target is not None:  # memory written during pre-copy: registers, descriptors, the rest
                result = target.cut_over(str(image_dir))
            else:
                result = fn(str(image_dir), **kwargs)
        except HetmigError as err:
            if self.isolation is not None:
                try:
                    self.isolation.finish_activate(activating)
                except HetmigError:
                    pass  # the restore's error is the one to report
            raise MigrationError(f"restore failed: {err}") from err
        lap("engine")
        if self.isolation is not None:
            try:
                self.isolation.finish_activate(activating)
            except HetmigError:
                self.restored = result
                self._held = list(result.held) if target is not None else []
                self._kill_restored()
                raise
            lap("network")
        self.restored = result
        warnings = list(result.warnings)
        if self.isolation is not None:
            self.isolation.close_fds()
            if target is None:  # a prepared target had /proc mounted when it was made
                self.isolation.after_restore(int(result.root_pid))
        if target is not None:
            self._held = list(result.held)  # restored held (hold=True): stopped, traced, EXITKILL
        else:
            self._hold(result)
        lap("after_restore")
        detail: dict[str, Any] = {"pids": {str(k): v for k, v in result.pids.items()}, "warnings": warnings,
                                  "restore_seconds": round(float(result.seconds), 6),
                                  "target": {"used": target is not None, "pages": self.target_pages,
                                             "why_not": self.target_failed[:500]},
                                  "agent_ms": ms, "engine_stages_ms": {k: round(v * 1000, 3)
                                                                       for k, v in result.stages.items()}}
        if self.isolation is not None:
            detail["isolation"] = self.isolation.to_json()
        return Restored(int(result.root_pid), detail)

    def _hold(self, result: Any) -> None:
        """Stop the restored tree under ptrace (EXITKILL: if the agent dies, so does the
        copy) until the source is gone; FINISH lets it run, anything else kills it."""
        root = int(result.root_pid)
        try:
            for pid in result.pids.values():
                try:
                    for name in os.listdir(f"/proc/{pid}/task"):
                        tid = int(name)
                        _ptrace_seize(tid, PTRACE_O_EXITKILL)
                        self._held.append((tid, 0))
                        self._held[-1] = (tid, _ptrace_stop(tid))
                except (HetmigError, OSError):
                    if pid == root:
                        raise
                    # a short-lived child (a shell's `sleep`) ended since the restore let
                    # the tree run: nothing to hold
                    self._held = [(t, sig) for t, sig in self._held if os.path.exists(f"/proc/{t}")]
        except (HetmigError, OSError) as err:
            self._kill_restored()
            raise MigrationError(f"restored tree could not be held until the source is gone: {err}") from err

    def _kill_restored(self) -> None:
        result, self.restored = self.restored, None
        if result is None:
            return
        targets = [int(result.init_pid)] if getattr(result, "init_pid", 0) else []
        targets += [int(p) for p in result.pids.values()]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_all([tid for tid, _sig in self._held])
        self._held = []

    def finish(self) -> None:
        warnings = self.isolation.settle() if self.isolation is not None else []
        # the record first: a copy never runs here unrecorded (a full state dir fails
        # this while the copy is still held, and the abort kills it)
        if self.isolation is not None and self.restored is not None and self.workdir is not None:
            from runtime_shim.migration import container

            res = self.restored
            container.write_record(self.workdir.parent.parent, self.container_id, {
                "container_id": self.container_id, "pid": int(res.root_pid), "init_pid": int(res.init_pid or 0),
                "oci": self.spec.get("oci") or {}, "isolation": self.isolation.to_json(),
                "migration": self.workdir.name, "warnings": warnings})
        held, self._held = self._held, []
        # the tree's root (listed first) last: once it runs it competes with us for the CPU
        for tid, sig in reversed(held):
            try:
                _ptrace_detach(tid, sig)
            except HetmigError:
                pass
        self.restored = None
        if self.store is not None:
            self.store.close()

    def abort(self) -> None:
        self._target_lost("aborted")
        self._kill_restored()
        if self.isolation is not None:
            self.isolation.destroy()
        if self.store is not None:
            self.store.close()
            try:
                os.unlink(self.store.path)
            except FileNotFoundError:
                pass
