"""FreeBSD command-line tools as a CommandRunner double, with a jail registry.

Test double. :class:`FreeBSDTools` has ``run(argv, input=None)`` (the
``runtime_shim.backends.runner.CommandRunner`` protocol) and dispatches on
the program's base name:

* ``procstat -v PID`` / ``procstat --libxo json -v PID`` (tools-output.md 3)
  from the real ``/proc/PID/maps`` + ``smaps``; ``procstat -f PID`` (4) from
  ``/proc/PID/fd`` + ``fdinfo``.
* ``jls`` default form, ``-N``, ``-n``, ``-j JID|NAME`` and ``--libxo json``
  (tools-output.md 1); ``jail -c PARAM...`` / ``jail -r NAME``; ``jexec NAME
  CMD...``; ``rctl [FILTER]``, ``rctl -a RULE``, ``rctl -r FILTER``, ``rctl -u
  SUBJECT``, ``rctl -l process:PID`` (rctl.md 7); ``sysctl -n
  kern.racct.enable``; ``mount -t``/``umount``; ``devfs rule ...`` /
  ``devfs -m DIR ...`` (recorded only); ``/bin/sh -c CMD`` (host hooks: run
  for real).

Registry: jails get jids 1, 2, ...; ``jail -c`` with a name in use fails
(exit 1, stderr); rules are kept per exact text (a ``deny`` rule replaces
one that differs only in amount, rctl.md 2); ``rctl -r`` of a filter that
matches nothing exits 1 (ESRCH, rctl.md 7); ``rctl -u`` prints the 25
resources in table-4 order with the jail's values (0, except ``maxproc``
and ``nthr`` counted from processes started with ``jexec`` that still run).

``jexec NAME CMD...`` runs CMD for real on this Linux host, **without**
chroot or any isolation, with the jail's ``path`` as working directory, and
returns its exit status and output; the pid is remembered as a jail process.

Not emulated (exit 64, "usage" on stderr): any other option. Unconfirmed
layout choices (reference says "unconfirmed"): the libxo ``__version``
member is written as ``"__version": "3"`` for jls and ``"1"`` for procstat;
``ip4.addr`` is a JSON list of ``{"ipv4_addr": ...}`` objects; procstat's
JSON nests the ``vm``/``files`` list in ``{"procstat": {...}}``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Sequence

from runtime_shim.backends.runner import CompletedCommand

# rctl.md section 4, in id order
RCTL_RESOURCES: Final = (
    "cputime", "datasize", "stacksize", "coredumpsize", "memoryuse", "memorylocked", "maxproc",
    "openfiles", "vmemoryuse", "pseudoterminals", "swapuse", "nthr", "msgqqueued", "msgqsize", "nmsgq",
    "nsem", "nsemop", "nshm", "shmsize", "wallclock", "pcpu", "readbps", "writebps", "readiops", "writeiops",
)
RCTL_ACTIONS: Final = frozenset({"deny", "log", "devctl", "throttle"})
JLS_HEADER: Final = "   JID  IP Address      Hostname                      Path"
JLS_HEADER_N: Final = " JID             IP Address      Hostname                      Path"
PROCSTAT_VM_HEADER: Final = "  PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH"
PROCSTAT_FILES_HEADER: Final = "  PID COMM                FD T V FLAGS    REF  OFFSET PRO NAME"
VM_TYPE_LONG: Final = {"--": "none", "df": "default", "vn": "vnode", "sw": "swap", "dv": "device",
                       "ph": "physical", "dd": "dead", "sg": "scatter/gather", "md": "managed_device",
                       "gd": "guard", "??": "unknown"}


@dataclass
class Jail:
    jid: int
    name: str
    params: dict[str, str | bool]  # insertion order = order given to jail -c
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return str(self.params.get("path", "/"))


def _res(argv: Sequence[str], rc: int = 0, out: str = "", err: str = "") -> CompletedCommand:
    return CompletedCommand(tuple(argv), rc, out, err)


def _usage(argv: Sequence[str], why: str) -> CompletedCommand:
    return _res(argv, 64, "", f"{os.path.basename(argv[0])}: usage: {why} (not emulated by the double)\n")


class FreeBSDTools:
    """The tool doubles behind one ``run()``; ``calls`` records every argv."""

    def __init__(self, racct_enable: str = "1") -> None:
        self.jails: dict[str, Jail] = {}
        self.next_jid = 1
        self.rules: list[str] = []
        self.mounts: list[tuple[str, str, str, tuple[str, ...]]] = []  # (type, source, target, opts)
        self.devfs: list[tuple[str, ...]] = []
        self.racct_enable = racct_enable
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        argv = tuple(argv)
        self.calls.append(argv)
        prog = os.path.basename(argv[0])
        handler = {
            "procstat": self._procstat, "jls": self._jls, "jail": self._jail, "jexec": self._jexec,
            "rctl": self._rctl, "sysctl": self._sysctl, "mount": self._mount, "umount": self._umount,
            "devfs": self._devfs, "sh": self._sh,
        }.get(prog)
        if handler is None:
            return _res(argv, 127, "", f"{argv[0]}: not found (no double for this program)\n")
        return handler(argv, input)

    def close(self) -> None:
        for j in self.jails.values():
            for p in j.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    # -- procstat -------------------------------------------------------------
    def _procstat(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        args = list(argv[1:])
        json_out = False
        if args[:2] == ["--libxo", "json"]:
            json_out, args = True, args[2:]
        if len(args) != 2 or args[0] not in ("-v", "-f") or not args[1].isdigit():
            return _usage(argv, "procstat [--libxo json] -v|-f PID")
        pid = int(args[1])
        if not os.path.exists(f"/proc/{pid}"):
            return _res(argv, 1, "", f"procstat: {pid}: No such process\n")
        if args[0] == "-v":
            rows = vm_rows(pid)
            return _res(argv, 0, vm_json(rows) if json_out else vm_text(rows))
        if json_out:
            return _usage(argv, "procstat --libxo json -f")
        return _res(argv, 0, files_text(pid))

    # -- jail / jls / jexec ---------------------------------------------------
    def _jail(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        if len(argv) >= 2 and argv[1] == "-r":
            if len(argv) != 3:
                return _usage(argv, "jail -r NAME")
            j = self._find(argv[2])
            if j is None:
                return _res(argv, 1, "", f'jail: "{argv[2]}" not found\n')
            for p in j.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            del self.jails[j.name]
            return _res(argv, 0)
        if len(argv) < 2 or argv[1] != "-c":
            return _usage(argv, "jail -c PARAM... | jail -r NAME")
        params: dict[str, str | bool] = {}
        for item in argv[2:]:
            key, eq, value = item.partition("=")
            if eq:
                params[key] = value
            elif "." in key and key.rsplit(".", 1)[1].startswith("no"):
                params[key.rsplit(".", 1)[0] + "." + key.rsplit(".", 1)[1][2:]] = False
            elif key.startswith("no") and key not in ("noexec",):
                params[key[2:]] = False
            else:
                params[key] = True
        name = params.get("name")
        if not isinstance(name, str) or not name:
            return _res(argv, 1, "", "jail: jail -c needs name=\n")
        if name in self.jails:
            return _res(argv, 1, "", f"jail: {name}: jail {self.jails[name].jid} already exists\n")
        if "path" not in params:
            return _res(argv, 1, "", f"jail: {name}: path is required\n")
        j = Jail(self.next_jid, name, params)
        self.next_jid += 1
        self.jails[name] = j
        return _res(argv, 0)

    def _find(self, key: str) -> Jail | None:
        for j in self.jails.values():
            if j.name == key or str(j.jid) == key:
                return j
        return None

    @staticmethod
    def _all_params(j: Jail) -> list[tuple[str, str | bool]]:
        """``all``: top-level names first, then dotted names, alphabetical."""
        merged: dict[str, str | bool] = {"jid": str(j.jid), "name": j.name}
        for k, v in j.params.items():
            if k.startswith("exec."):
                continue
            merged[k] = v
        merged.setdefault("host.hostname", "")
        merged.setdefault("dying", False)
        top = sorted(k for k in merged if "." not in k)
        dotted = sorted(k for k in merged if "." in k)
        return [(k, merged[k]) for k in top + dotted if not k.startswith("exec.")]

    def _jls(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        args = list(argv[1:])
        json_out = False
        if args[:2] == ["--libxo", "json"]:
            json_out, args = True, args[2:]
        name_mode = use_n = False
        only: str | None = None
        while args:
            a = args.pop(0)
            if a == "-n":
                use_n = True
            elif a == "-N":
                name_mode = True
            elif a == "-j" and args:
                only = args.pop(0)
            else:
                return _usage(argv, "jls [--libxo json] [-N] [-n] [-j jail]")
        jails = sorted(self.jails.values(), key=lambda j: j.jid)
        if only is not None:
            j = self._find(only)
            if j is None:
                return _res(argv, 1, "", f'jls: jail "{only}" not found\n')
            jails = [j]
        if json_out:
            return _res(argv, 0, jls_json(jails, use_n, name_mode, self._all_params))
        if use_n:
            return _res(argv, 0, "".join(jls_n_line(self._all_params(j)) + "\n" for j in jails))
        lines = [JLS_HEADER_N if name_mode else JLS_HEADER]
        for j in jails:
            ip = str(j.params.get("ip4.addr", "")).split(",")[0]
            host = str(j.params.get("host.hostname", ""))
            if name_mode:
                lines.append(f" {j.name:<15} {ip:<15.15} {host:<29.29} {j.path[:74]}")
            else:
                lines.append(f"{j.jid:6d}  {ip:<15.15} {host:<29.29} {j.path[:74]}")
        return _res(argv, 0, "\n".join(lines) + "\n")

    def _jexec(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        if len(argv) < 3:
            return _usage(argv, "jexec JAIL COMMAND...")
        j = self._find(argv[1])
        if j is None:
            return _res(argv, 1, "", f'jexec: jail "{argv[1]}" not found\n')
        cwd = j.path if os.path.isdir(j.path) else "/"
        try:
            proc = subprocess.Popen(list(argv[2:]), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=False)
        except OSError as err:
            return _res(argv, 1, "", f"jexec: execvp: {argv[2]}: {err.strerror}\n")
        j.procs.append(proc)
        stdout, stderr = proc.communicate(input.encode() if input is not None else None, timeout=60)
        return _res(argv, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def spawn_in(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start *argv* as a process of jail *name* without waiting (counts in rctl -u)."""
        j = self.jails[name]
        cwd = j.path if os.path.isdir(j.path) else "/"
        proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        j.procs.append(proc)
        return proc

    # -- rctl -----------------------------------------------------------------------
    def _rctl(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        args = list(argv[1:])
        if not args:
            return _res(argv, 0, "".join(r + "\n" for r in self.rules))
        if args[0] == "-a":
            failed, errs = 0, []
            for rule in args[1:]:
                problem = self._add_rule(rule)
                if problem:
                    failed += 1
                    errs.append(f"rctl: failed to add rule '{rule}': {problem}\n")
            return _res(argv, failed, "", "".join(errs))
        if args[0] == "-r":
            failed, errs = 0, []
            for filt in args[1:]:
                keep = [r for r in self.rules if not rule_matches(r, filt)]
                if len(keep) == len(self.rules):
                    failed += 1
                    errs.append(f"rctl: failed to remove rule '{filt}': No such process\n")
                self.rules = keep
            return _res(argv, failed, "", "".join(errs))
        if args[0] == "-u" and len(args) == 2:
            subject, _, ident = args[1].partition(":")
            if subject != "jail":
                return _usage(argv, "rctl -u jail:NAME")
            return _res(argv, 0, "".join(f"{k}={v}\n" for k, v in self._usage_of(ident.rstrip(":"))))
        if args[0] == "-l" and len(args) == 2:
            subject, _, ident = args[1].partition(":")
            if subject != "process" or not ident.isdigit():
                return _usage(argv, "rctl -l process:PID")
            jail = next((j for j in self.jails.values() if any(p.pid == int(ident) for p in j.procs)), None)
            out = [r for r in self.rules
                   if r.startswith(f"process:{ident}:") or (jail is not None and r.startswith(f"jail:{jail.name}:"))]
            return _res(argv, 0, "".join(r + "\n" for r in out))
        if args[0].startswith("-"):
            return _usage(argv, "rctl [-a RULE | -r FILTER | -u SUBJECT | -l FILTER | FILTER]")
        out = [r for r in self.rules if any(rule_matches(r, f) for f in args)]
        return _res(argv, 0, "".join(r + "\n" for r in out))

    def _add_rule(self, rule: str) -> str | None:
        parts = rule.split(":")
        if len(parts) != 4 or parts[0] not in ("process", "user", "loginclass", "jail"):
            return "Invalid argument"
        resource = parts[2]
        action, eq, rest = parts[3].partition("=")
        amount, _, per = rest.partition("/")
        if resource not in RCTL_RESOURCES or not eq or not amount.isdigit():
            return "Invalid argument"
        if action not in RCTL_ACTIONS and not action.startswith("sig"):
            return "Invalid argument"
        if per == parts[0]:
            rule = rule.rsplit("/", 1)[0]  # /per printed only when it differs from the subject
        if action == "deny":
            prefix = f"{parts[0]}:{parts[1]}:{resource}:deny="
            self.rules = [r for r in self.rules
                          if not (r.startswith(prefix) and r.partition("/")[2] == per)]
        elif rule in self.rules:
            self.rules.remove(rule)
        self.rules.append(rule)
        return None

    def _usage_of(self, name: str) -> list[tuple[str, int]]:
        j = self.jails.get(name)
        live = [p for p in (j.procs if j else []) if p.poll() is None]
        counts = {"maxproc": len(live), "nthr": sum(_threads(p.pid) for p in live)}
        return [(r, counts.get(r, 0)) for r in RCTL_RESOURCES]

    # -- the rest -------------------------------------------------------------------
    def _sysctl(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        if argv[1:] == ("-n", "kern.racct.enable"):
            return _res(argv, 0, self.racct_enable + "\n")
        return _usage(argv, "sysctl -n kern.racct.enable")

    def _mount(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        args = list(argv[1:])
        if len(args) < 4 or args[0] != "-t":
            return _usage(argv, "mount -t TYPE [-o OPTS] SOURCE TARGET")
        fstype = args[1]
        opts: tuple[str, ...] = ()
        rest = args[2:]
        if rest[0] == "-o":
            opts, rest = tuple(rest[1].split(",")), rest[2:]
        if len(rest) != 2:
            return _usage(argv, "mount -t TYPE [-o OPTS] SOURCE TARGET")
        self.mounts.append((fstype, rest[0], rest[1], opts))
        return _res(argv, 0)

    def _umount(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        if len(argv) != 2:
            return _usage(argv, "umount TARGET")
        for i in range(len(self.mounts) - 1, -1, -1):
            if self.mounts[i][2] == argv[1]:
                del self.mounts[i]
                return _res(argv, 0)
        return _res(argv, 1, "", f"umount: {argv[1]}: not a file system root directory\n")

    def _devfs(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        self.devfs.append(argv[1:])
        return _res(argv, 0)

    def _sh(self, argv: tuple[str, ...], input: str | None) -> CompletedCommand:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=60)
        return _res(argv, proc.returncode, proc.stdout, proc.stderr)


# --- formats ----------------------------------------------------------------------


def rule_matches(rule: str, filt: str) -> bool:
    """rctl filter semantics (rctl.md 2): empty fields match anything."""
    rparts = rule.split(":")
    fparts = filt.split(":")
    head = fparts[:3]
    for i, f in enumerate(head):
        if f and (i >= len(rparts) or rparts[i] != f):
            return False
    if len(fparts) > 3 and fparts[3] not in ("", "="):
        return rule.split(":", 3)[3] == fparts[3] if len(rparts) > 3 else False
    return True


def jls_value(v: str | bool) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else v


def jls_n_item(k: str, v: str | bool) -> str:
    if isinstance(v, bool):
        if v:
            return k
        head, dot, last = k.rpartition(".")
        return f"{head}{dot}no{last}"
    return f"{k}={v}"


def jls_n_line(params: list[tuple[str, str | bool]]) -> str:
    return " ".join(jls_n_item(k, v) for k, v in params)


def jls_json(jails: list[Jail], use_n: bool, name_mode: bool, all_params: Any) -> str:
    entries: list[dict[str, Any]] = []
    for j in jails:
        if use_n:
            e: dict[str, Any] = {}
            for k, v in all_params(j):
                if k in ("ip4.addr", "ip6.addr"):
                    leaf = "ipv4_addr" if k == "ip4.addr" else "ipv6_addr"
                    e[k] = [{leaf: a} for a in str(v).split(",") if a]
                elif k == "jid":
                    e[k] = j.jid
                else:
                    e[k] = v
            entries.append(e)
        else:
            key = "name" if name_mode else "jid"
            entries.append({key: j.name if name_mode else j.jid,
                            "ipv4": str(j.params.get("ip4.addr", "")).split(",")[0],
                            "hostname": str(j.params.get("host.hostname", "")), "path": j.path})
    return json.dumps({"__version": "3", "jail-information": {"jail": entries}}, indent=2) + "\n"


@dataclass(frozen=True)
class VmRow:
    pid: int
    start: int
    end: int
    prot: str
    res: int
    pres: int
    ref: int
    shd: int
    flag: str
    tp: str
    path: str


def vm_rows(pid: int) -> list[VmRow]:
    """procstat -v rows from /proc/PID/maps and smaps (RES/PRES from Rss and Private_*)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    rss: dict[int, tuple[int, int]] = {}
    cur = -1
    priv = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()[0] if line.split() else ""
        if "-" in head and not head.endswith(":"):
            cur = int(head.split("-")[0], 16)
            rss[cur] = (0, 0)
            priv = 0
        elif head == "Rss:":
            rss[cur] = (int(line.split()[1]) // 4, rss[cur][1])
        elif head in ("Private_Clean:", "Private_Dirty:"):
            priv += int(line.split()[1]) // 4
            rss[cur] = (rss[cur][0], priv)
    out: list[VmRow] = []
    for line in maps:
        f = line.split(None, 5)
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        path = f[5].strip() if len(f) > 5 else ""
        if path == "[vsyscall]":
            continue
        private = f[1][3] == "p"
        if path.startswith("/"):
            tp, flag = "vn", ("C" if private else "-") + ("N" if private and "w" in f[1] else "-") + "---"
        elif path in ("[vdso]", "[vvar]", "[vvar_vclock]"):
            tp, flag, path = "ph", "-----", ""
        else:
            tp = "df" if private else "sw"
            flag = "---" + ("D" if path == "[stack]" else "-") + "-"
            path = ""
        r, p = rss.get(lo, (0, 0))
        out.append(VmRow(pid, lo, hi, f[1][:3], r, p, 1, 0, flag, tp, path))
    return out


def vm_text(rows: list[VmRow]) -> str:
    lines = [PROCSTAT_VM_HEADER]
    for r in rows:
        lines.append(f"{r.pid:5d} {r.start:#18x} {r.end:#18x} {r.prot} {r.res:4d} {r.pres:4d} "
                     f"{r.ref:3d} {r.shd:3d} {r.flag} {r.tp:2} {r.path}".rstrip())
    return "\n".join(lines) + "\n"


def vm_json(rows: list[VmRow]) -> str:
    vm = []
    for r in rows:
        vm.append({
            "process_id": r.pid, "kve_start": f"{r.start:#x}", "kve_end": f"{r.end:#x}",
            "kve_protection": {"read": r.prot[0] == "r", "write": r.prot[1] == "w", "exec": r.prot[2] == "x"},
            "kve_resident": r.res, "kve_private_resident": r.pres, "kve_ref_count": r.ref,
            "kve_shadow_count": r.shd,
            "kve_flags": {"copy_on_write": r.flag[0] == "C", "needs_copy": r.flag[1] == "N",
                          "super_pages": r.flag[2] == "S", "grows_up": r.flag[3] == "U",
                          "grows_down": r.flag[3] == "D", "wired": r.flag[4] == "W"},
            "kve_type": VM_TYPE_LONG[r.tp], "kve_path": r.path,
        })
    return json.dumps({"__version": "1", "procstat": {"vm": vm}}, indent=2) + "\n"


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _fd_row(pid: int, comm: str, fd: str, target: str, pos: int | None, flags: int | None) -> str:
    t, v, pro, name = "?", "?", "-", target
    if target.startswith("pipe:"):
        t, v, name = "p", "-", "-"
    elif target.startswith("socket:"):
        t, v, pro, name = "s", "-", "UDS", "-"
    elif target.startswith("anon_inode:"):
        t, v, name = ("E", "-", "-") if "eventfd" in target else ("?", "-", "-")
    elif target.startswith("/dev/pts/"):
        t, v = "t", "-"
    else:
        try:
            mode = os.stat(target).st_mode
        except OSError:
            mode = 0
        t = "v"
        v = ("r" if stat.S_ISREG(mode) else "d" if stat.S_ISDIR(mode) else "c" if stat.S_ISCHR(mode)
             else "b" if stat.S_ISBLK(mode) else "f" if stat.S_ISFIFO(mode) else "s" if stat.S_ISSOCK(mode)
             else "?")
    letters = "--------"
    if flags is not None:
        acc = flags & 3
        letters = "".join((
            "r" if acc in (0, 2) else "-", "w" if acc in (1, 2) else "-",
            "a" if flags & 0o2000 else "-", "s" if flags & 0o20000 else "-",
            "f" if flags & 0o4010000 else "-", "n" if flags & 0o4000 else "-",
            "d" if flags & 0o40000 else "-", "-",
        ))
    off = "-" if pos is None or t != "v" else str(pos)
    return f"{pid:5d} {comm:<16} {fd:>5} {t} {v} {letters:8} {'1':>3} {off:>7} {pro:<3} {name}"


def files_text(pid: int) -> str:
    """procstat -f rows from /proc/PID/fd and fdinfo (special rows: text, cwd, root)."""
    comm = Path(f"/proc/{pid}/comm").read_text().strip().replace(" ", "_")[:16]
    lines = [PROCSTAT_FILES_HEADER]
    for special, link in (("text", "exe"), ("cwd", "cwd"), ("root", "root")):
        lines.append(_fd_row(pid, comm, special, os.readlink(f"/proc/{pid}/{link}"), None, None))
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{name}").read_text().splitlines()
                        if ":" in line)
        except OSError:
            continue
        lines.append(_fd_row(pid, comm, name, target, int(info["pos"].strip()), int(info["flags"].strip(), 8)))
    return "\n".join(lines) + "\n"
