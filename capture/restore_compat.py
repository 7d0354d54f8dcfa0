"""The restore engine's Linuxulator-compatible steps (selected by missing ops features).

:mod:`capture.restore` asks its :class:`capture.restore.InjectionOps` which
features the OS under them offers (``ops.features()``; Linux's
``linux_inject`` has no such method and offers all of them). For each
feature that is missing, the one step of :class:`capture.restore._Restorer`
that needs it calls the function here instead; nothing else changes. The
ops of :mod:`capture.platform.freebsd_inject` (Linux binaries under
FreeBSD's Linuxulator, ``reference/freebsd/linuxulator.md``) report none of
them:

* no ``fork_seed``: the restorer is not a process of the restored tree's
  ABI, so the seed is a process the ops start (``ops.spawn_seed()``, a
  Linux-branded static stub); the trampoline avoids the seed's mappings and
  "this kernel's vDSO" is the seed's.
* no ``set_tid`` (Linuxulator clone3 answers ENOSYS to set_tid): every
  process gets the pid the kernel gives; each renumbering is a warning.
  Refused (:class:`capture.errors.RestoreRefusedError`, before any process
  exists) where pid identity is part of the state: more than one process
  (parents hold their children's pids from fork, groups and sessions name
  pids, zombies are reaped by pid) or more than one thread in a process
  (glibc keeps every thread's tid in its thread descriptor and in mutex
  owner words and robust lists).
* no ``pidns`` (unshare and setns are Linuxulator dummies): ``--pidns`` refused.
* no ``map_vdso`` (arch_prctl knows only ARCH_SET/GET_FS/GS and
  ARCH_CET_STATUS): the vDSO the kernel mapped into the seed stays where it
  is in every stub (everything else the maps file lists is unmapped; what it
  does not list is left alone); the dumped vDSO's bytes go back at their
  address with each exported function patched to jump to the same-named
  function of the kept one (the ``--vdso proxy`` idea without moving the
  target). Refused at restore time if an image mapping overlaps the kept
  vDSO, or if the image holds no copy of the dumped vDSO to patch.
* no ``mm_map`` (prctl options besides the nine of linuxulator.md 3 are
  EINVAL): brk, code/data/stack/arg/env bounds, auxv and the exe link are
  not restored (a warning); the process keeps the seed's (``brk(2)``
  therefore starts from the seed's break, malloc falls back to mmap).
* no ``rseq`` (always ENOSYS): registrations are not restored (a warning;
  glibc then reads a stale cpu number from the area).
* no ``fsuid`` (setfsuid/setfsgid are dummies) and no ``caps`` (capset of
  any capability is EPERM): credentials are set with setgroups/setresgid/
  setresuid only; an fsuid/fsgid different from the effective id and any
  non-empty capability set are warnings.
* no ``wall``: waitpid without Linux's ``__WALL``.

What it refuses to do: guess a pid, move the kept vDSO, or report success
for anything it did not restore (every skip is in ``RestoreResult.warnings``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

from capture.errors import RestoreError, RestoreRefusedError
from capture.platform import linux_inject as li
from capture.restore_checks import VMA_AREA_VSYSCALL, VMA_AREA_VVAR

if TYPE_CHECKING:
    from capture.restore import _Proc, _Restorer, _Stub

_CLONE3_ARGS: Final = struct.Struct("<11Q")


def check_image(r: "_Restorer") -> None:
    """Refuse what the missing features make impossible, before the first process exists."""
    from capture.restore import FEATURE_PIDNS, FEATURE_SET_TID, FEATURE_SUBREAPER

    if r.pidns and not r.has(FEATURE_PIDNS):
        raise RestoreRefusedError("--pidns: the OS under these injection ops has no pid namespaces "
                                  "(Linuxulator unshare/setns are dummies); restore without --pidns")
    if not r.has(FEATURE_SUBREAPER):
        for p in r.iset.processes:
            tc = p.core.tc
            if tc.HasField("child_subreaper") and tc.child_subreaper:
                raise RestoreRefusedError(
                    f"pid {p.pid} is a child subreaper (PR_SET_CHILD_SUBREAPER), which the OS under these "
                    f"injection ops refuses (Linuxulator prctl); nothing was restored")
    if r.has(FEATURE_SET_TID):
        return
    procs = r.iset.processes
    if len(procs) > 1:
        raise RestoreRefusedError(
            f"the image holds {len(procs)} processes (pids {[p.pid for p in procs]}) which refer to each "
            f"other's pids, and this OS cannot choose pids (no clone3 set_tid): only a single process is "
            f"restored without pid identity")
    for p in procs:
        if len(p.threads) > 1:
            raise RestoreRefusedError(
                f"pid {p.pid} has {len(p.threads)} threads whose tids are kept in the process's memory "
                f"(thread descriptors, mutex owners, robust lists), and this OS cannot choose tids (no clone3 "
                f"set_tid): only single-threaded processes are restored without pid identity")


def spawned_seed(r: "_Restorer") -> "_Stub":
    """The seed as a process the ops start (an ABI-matching stub), traced and on the trampoline."""
    from capture.restore import _choose_trampoline, _vdso_layout

    spawn = getattr(r.ops, "spawn_seed", None)
    if spawn is None:
        raise RestoreError("the injection ops neither allow a forked seed nor provide spawn_seed()")
    pid = int(spawn())
    r.seed = pid
    r.created.append(pid)
    r.ops.seize(pid, li.TRACE_CHILDREN)
    r.ops.interrupt(pid)
    own = r.ops.read_maps(pid)
    layout = _vdso_layout(own)
    r.own_maps = own
    r.host_vdso = layout
    r.host_vvar_size = (layout[1] - layout[0]) if layout else 0
    r.host_vdso_bytes = r.ops.read_memory(pid, layout[1], layout[2] - layout[1]) if layout else b""
    r.tramp = _choose_trampoline(r.iset, r.host_vvar_size, own)
    return r.trampoline_stub(pid)


def clone_without_set_tid(r: "_Restorer", parent: "_Stub", pid: int, *, flags: int, exit_signal: int) -> "_Stub":
    """clone3 without set_tid: the child gets the kernel's pid (a warning names both)."""
    from capture.restore import CLONE_THREAD, _Stub

    if flags & CLONE_THREAD:
        raise RestoreRefusedError(f"thread {pid}: threads are not restored without clone3 set_tid")
    parent.reset()
    args = _CLONE3_ARGS.pack(flags, 0, 0, 0, exit_signal, 0, 0, 0, 0, 0, 0)
    res = parent.call("clone3", parent.put(args, align=8), len(args), check=False)
    if res.value < 0:
        raise RestoreError(f"clone3 (no set_tid) for pid {pid} failed: errno {-res.value}")
    child = res.child or res.value
    r.created.append(child)
    stop = r.ops.wait_stop(child)
    if not stop.stopped:
        raise RestoreError(f"new process for pid {pid} {stop.describe()}")
    if res.value != pid:
        r.warnings.append(f"pid {pid} restored as pid {res.value}: this OS cannot choose pids (no clone3 set_tid)")
    return _Stub(child, r.tramp, r.ops.Injector(child, r.tramp, saved=parent.inj.saved), r.ops)


def _kept(m: li.MapLine, tramp: int) -> bool:
    return m.start == tramp or m.path in ("[vdso]", "[vsyscall]") or m.path.startswith("[vvar")


def unmap_keeping_vdso(r: "_Restorer", st: "_Stub") -> None:
    """Unmap every mapping the maps file lists except the trampoline and the kernel's vDSO."""
    for m in r.ops.read_maps(st.host_tid):
        if not _kept(m, r.tramp):
            st("munmap", m.start, m.end - m.start)
    left = [m for m in r.ops.read_maps(st.host_tid) if not _kept(m, r.tramp)]
    if left:
        raise RestoreError(f"stub {st.host_tid}: mappings left after unmapping: "
                           f"{[hex(m.start) + ' ' + m.path for m in left]}")


def redirect_to_kept_vdso(r: "_Restorer", pr: "_Proc", vdso: Any) -> None:
    """The dumped vDSO back at its address, its entry points jumping into the kept vDSO."""
    from capture.restore import vdso_symbols

    img = pr.img
    if r.host_vdso is None:
        raise RestoreError(f"pid {img.pid}: the image has a vDSO at 0x{vdso.start:x} but the stub has none to "
                           f"redirect its calls to")
    _, kstart, kend = r.host_vdso
    old = r._read_image_pages(img, vdso.start, vdso.end)
    same_place = (vdso.start, vdso.end) == (kstart, kend)
    if same_place and (old is None or old == r.host_vdso_bytes):
        return  # the kept vDSO is the dumped one
    for v in img.vmas:
        if v.status & (VMA_AREA_VSYSCALL | VMA_AREA_VVAR):
            continue
        if v.start < kend and v.end > kstart:
            raise RestoreError(
                f"pid {img.pid}: mapping 0x{v.start:x}-0x{v.end:x} overlaps the vDSO this OS mapped at "
                f"0x{kstart:x}-0x{kend:x}, which cannot be moved here (no ARCH_MAP_VDSO_64)")
    if old is None:
        raise RestoreError(f"pid {img.pid}: cannot redirect the dumped vDSO at 0x{vdso.start:x}: the image holds "
                           f"no copy of it")
    old_syms = vdso_symbols(old)
    host_syms = vdso_symbols(r.host_vdso_bytes)
    if not old_syms:
        raise RestoreError(f"pid {img.pid}: the dumped vDSO at 0x{vdso.start:x} has no readable symbol table")
    done, missing = r._write_redirected_vdso(pr, vdso, old, old_syms, host_syms, kstart)
    if missing:
        r.warnings.append(f"pid {img.pid}: the kept vDSO lacks {missing}; calls to them in the "
                          f"dumped vDSO are not redirected")
    r.warnings.append(f"pid {img.pid}: dumped vDSO at 0x{vdso.start:x} redirected to the vDSO this OS mapped at "
                      f"0x{kstart:x} ({done} entry points; no ARCH_MAP_VDSO_64)")


def skip_mm_map(r: "_Restorer", pr: "_Proc") -> None:
    """Without PR_SET_MM_MAP: the mm fields stay the seed's (warned); dumpable is still set."""
    from capture.restore import PR_SET_DUMPABLE

    mm = pr.img.mm
    r.warnings.append(
        f"pid {pr.img.pid}: brk 0x{mm.mm_brk:x}, code/data/stack/arg/env bounds, auxv and the exe link "
        f"{pr.img.exe_path!r} not restored (no prctl PR_SET_MM_MAP here); the process keeps the seed's")
    if mm.HasField("dumpable") and mm.dumpable in (0, 1):
        pr.stub("prctl", PR_SET_DUMPABLE, mm.dumpable, 0, 0, 0, check=False)


def restore_creds(r: "_Restorer", pr: "_Proc", st: "_Stub", tid: int, cr: Any) -> None:
    """Credentials without setfsuid/setfsgid and/or without capability changes."""
    from capture.restore import (FEATURE_CAPS, FEATURE_FSUID, LINUX_CAPABILITY_VERSION_3, PR_SET_KEEPCAPS,
                                 PR_SET_NO_NEW_PRIVS, _caps)

    st.reset()
    groups = list(cr.groups)
    st("setgroups", len(groups), st.put(struct.pack(f"<{len(groups)}I", *groups), align=4) if groups else 0)
    if cr.uid or cr.euid or cr.suid:
        st("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
    st("setresgid", cr.gid, cr.egid, cr.sgid)
    if r.has(FEATURE_FSUID):
        st("setfsgid", cr.fsgid)
    st("setresuid", cr.uid, cr.euid, cr.suid)
    if r.has(FEATURE_FSUID):
        st("setfsuid", cr.fsuid)
    elif (cr.fsuid, cr.fsgid) != (cr.euid, cr.egid):
        r.warnings.append(f"tid {tid}: fsuid/fsgid {cr.fsuid}/{cr.fsgid} not restored (no setfsuid here); they "
                          f"follow the effective ids {cr.euid}/{cr.egid}")
    eff, prm, inh, amb = _caps(cr.cap_eff), _caps(cr.cap_prm), _caps(cr.cap_inh), _caps(cr.cap_amb)
    if r.has(FEATURE_CAPS):
        hdr = st.put(struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, 0), align=8)
        data = st.put(struct.pack("<6I", eff & 0xFFFFFFFF, prm & 0xFFFFFFFF, inh & 0xFFFFFFFF,
                                  eff >> 32, prm >> 32, inh >> 32), align=8)
        res = st("capset", hdr, data, check=False)
        if res < 0:
            raise RestoreError(f"tid {tid}: capset(eff=0x{eff:x} prm=0x{prm:x} inh=0x{inh:x}) failed: errno {-res}")
    elif eff or prm or inh or amb:
        r.warnings.append(f"tid {tid}: capabilities eff=0x{eff:x} prm=0x{prm:x} inh=0x{inh:x} amb=0x{amb:x} not "
                          f"restored (this OS refuses to set any capability)")
    if not r.has(FEATURE_CAPS) and cr.secbits:
        r.warnings.append(f"tid {tid}: securebits 0x{cr.secbits:x} not restored (no PR_SET_SECUREBITS here)")
    if cr.HasField("no_new_privs") and cr.no_new_privs:
        st("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
