"""A linprocfs-style ``/compat/linux/proc`` tree built from the real ``/proc``.

Test double (``linuxulator.md`` section 7). :class:`Linprocfs` writes, for
each pid it is asked about, a directory ``ROOT/PID`` holding what linprocfs
provides and nothing else:

* ``maps``: ``%016lx-%016lx`` range, perms + ``p``/``s``, ``%08lx`` offset,
  device always ``00:00``, decimal inode, padding, path; ``[vdso]`` and
  ``[stack]`` labels kept; no ``[heap]`` label (the heap line has no path);
  Linux's ``[vvar]``/``[vvar_vclock]`` data pages are not listed (a Linux
  host artefact: FreeBSD keeps its time data in the shared page that
  linprocfs labels ``[vdso]``, there is no separate data mapping);
  ``[vsyscall]`` is not listed (FreeBSD emulates it by trapping, it is no
  map entry).
* ``stat``: the real fields, with those the reference says linprocfs
  reports as 0 zeroed: flags (9), startstack (28), the signal masks
  (31-34) and wchan (35). State ``t`` (traced) becomes ``T``.
* ``status``: only Name, State, Tgid, Pid, PPid, TracerPid, Uid, Gid,
  Groups, VmSize/VmLck(0)/VmRSS/VmData/VmStk/VmExe/VmLib, SigPnd, SigBlk
  (always 0), SigIgn, SigCgt, CapInh/CapPrm/CapEff (0). No Umask, no
  per-thread data; Tgid = Pid; State is one of the FreeBSD-listed words.
* ``limits``, ``auxv``, ``oom_score_adj``: copied; ``cwd``, ``exe``,
  ``root``: symlinks to the real targets.
* ``task/``: one dummy entry (per-thread directories are not provided).

The tree is a snapshot: :meth:`Linprocfs.refresh` rewrites a pid's
directory (the kernel double calls it whenever a traced process stops or
runs again). It refuses nothing; a pid that vanished is removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final, Iterable

_STATES: Final[dict[str, str]] = {
    "R": "R (running)", "S": "S (sleeping)", "D": "S (sleeping)", "T": "T (stopped)", "t": "T (stopped)",
    "Z": "Z (zombie)", "X": "X (exiting)", "I": "I (idle)",
}
_STATUS_KEYS: Final = ("Name", "State", "Tgid", "Pid", "PPid", "TracerPid", "Uid", "Gid", "Groups",
                       "VmSize", "VmLck", "VmRSS", "VmData", "VmStk", "VmExe", "VmLib",
                       "SigPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff")
#: 1-based Linux stat fields linprocfs reports as 0 (reference: flags, startstack, signal masks, wchan)
_ZERO_STAT_FIELDS: Final = (9, 28, 31, 32, 33, 34, 35)


def linprocfs_maps(real: str) -> str:
    """Real ``/proc/PID/maps`` text -> linprocfs maps text."""
    out: list[str] = []
    for line in real.splitlines():
        f = line.split(None, 5)
        if len(f) < 5:
            continue
        lo, _, hi = f[0].partition("-")
        path = f[5].strip() if len(f) > 5 else ""
        if path in ("[vsyscall]", "[vvar]", "[vvar_vclock]"):
            continue
        if path == "[heap]" or (path.startswith("[") and path not in ("[vdso]", "[stack]")):
            path = ""
        ino = int(f[4])
        out.append(f"{int(lo, 16):016x}-{int(hi, 16):016x} {f[1]} {int(f[2], 16):08x} 00:00 {ino}"
                   + (f"{'':>{max(1, 26 - len(str(ino)))}}{path}" if path else ""))
    return "\n".join(out) + ("\n" if out else "")


def linprocfs_stat(real: str) -> str:
    lpar, rpar = real.find("("), real.rfind(")")
    head, comm, rest = real[:lpar].strip(), real[lpar + 1:rpar], real[rpar + 1:].split()
    fields = [head, comm, *rest]
    if fields[2] == "t":
        fields[2] = "T"
    for n in _ZERO_STAT_FIELDS:
        if len(fields) >= n:
            fields[n - 1] = "0"
    return f"{fields[0]} ({fields[1]}) " + " ".join(fields[2:]) + "\n"


def linprocfs_status(real: str) -> str:
    values: dict[str, str] = {}
    for line in real.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key] = value.strip()
    values["Tgid"] = values.get("Pid", values.get("Tgid", "0"))
    values["State"] = _STATES.get(values.get("State", "R")[:1], "R (running)")
    values["SigBlk"] = "0" * 16
    values["VmLck"] = "0 kB"
    for cap in ("CapInh", "CapPrm", "CapEff"):
        values[cap] = "0" * 16
    lines = [f"{k}:\t{values[k]}" for k in _STATUS_KEYS if k in values]
    return "\n".join(lines) + "\n"


class Linprocfs:
    """A ``/compat/linux/proc`` double rooted at *root* (a temp dir)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pids: set[int] = set()

    def add(self, pids: Iterable[int]) -> None:
        for pid in pids:
            self.pids.add(pid)
            self.refresh(pid)

    def refresh(self, pid: int) -> None:
        """Rewrite ``ROOT/PID`` from ``/proc/PID`` (removed if the pid is gone)."""
        d = self.root / str(pid)
        tmp = self.root / f".{pid}.new"
        shutil.rmtree(tmp, ignore_errors=True)
        src = Path(f"/proc/{pid}")
        try:
            tmp.mkdir()
            (tmp / "maps").write_text(linprocfs_maps((src / "maps").read_text()))
            (tmp / "stat").write_text(linprocfs_stat((src / "stat").read_text()))
            (tmp / "status").write_text(linprocfs_status((src / "status").read_text()))
            (tmp / "limits").write_text((src / "limits").read_text())
            (tmp / "auxv").write_bytes((src / "auxv").read_bytes())
            (tmp / "oom_score_adj").write_text((src / "oom_score_adj").read_text())
            for link in ("cwd", "exe", "root"):
                os.symlink(os.readlink(src / link), tmp / link)
            (tmp / "task").mkdir()
            (tmp / "task" / "dummy").write_text("")
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(d, ignore_errors=True)
            return
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)

    def refresh_all(self) -> None:
        for pid in sorted(self.pids):
            self.refresh(pid)
