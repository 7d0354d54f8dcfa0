"""The FreeBSD tool doubles and the linprocfs double, pinned to the reference formats.

Headers, column widths, letters, JSON keys and rule/usage line forms are
literal tables from reference/freebsd/tools-output.md (1, 3, 4), rctl.md
(2, 4, 7) and linuxulator.md (7) written out in this file. The doubles'
output is checked against them column by column, and then parsed with the
project's own parsers (runtime_shim.backends.freebsd_parsers,
capture.platform.freebsd), so a format mistake in either side shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from capture.platform import freebsd as fbmod
from runtime_shim.backends.freebsd_parsers import parse_jls, parse_jls_json, parse_jls_params, parse_rctl_rules
from tests.freebsd_double.linprocfs import Linprocfs
from tests.freebsd_double.tools import FreeBSDTools

# tools-output.md 3: procstat -v
VM_HEADER = "  PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH"
# (column, first char, width) from the printf formats %5d %#18jx %#18jx PRT %4d %4d %3d %3d FLAG TP
VM_COLUMNS = [("PID", 0, 5), ("START", 6, 18), ("END", 25, 18), ("PRT", 44, 3), ("RES", 48, 4), ("PRES", 53, 4),
              ("REF", 58, 3), ("SHD", 62, 3), ("FLAG", 66, 5), ("TP", 72, 2)]
VM_TP = {"--": "none", "df": "default", "vn": "vnode", "sw": "swap", "dv": "device", "ph": "physical",
         "dd": "dead", "sg": "scatter/gather", "md": "managed_device", "gd": "guard", "??": "unknown"}
VM_JSON_KEYS = {"process_id", "kve_start", "kve_end", "kve_protection", "kve_resident", "kve_private_resident",
                "kve_ref_count", "kve_shadow_count", "kve_flags", "kve_type", "kve_path"}
VM_FLAG_KEYS = {"copy_on_write", "needs_copy", "super_pages", "grows_up", "grows_down", "wired"}
# tools-output.md 4: procstat -f
FILES_HEADER = "  PID COMM                FD T V FLAGS    REF  OFFSET PRO NAME"
FILE_FLAG_LETTERS = "rwasfndl"
# tools-output.md 1.1: jls
JLS_HEADER = "   JID  IP Address      Hostname                      Path"
JLS_HEADER_N = " JID             IP Address      Hostname                      Path"
# rctl.md 4, id order
RESOURCES = ["cputime", "datasize", "stacksize", "coredumpsize", "memoryuse", "memorylocked", "maxproc", "openfiles",
             "vmemoryuse", "pseudoterminals", "swapuse", "nthr", "msgqqueued", "msgqsize", "nmsgq", "nsem", "nsemop",
             "nshm", "shmsize", "wallclock", "pcpu", "readbps", "writebps", "readiops", "writeiops"]
# linuxulator.md 7: linprocfs maps line and status keys
MAPS_LINE = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16} [r-][w-][x-][ps] [0-9a-f]{8} 00:00 \d+( +(\S.*))?$")
STATUS_KEYS = {"Name", "State", "Tgid", "Pid", "PPid", "TracerPid", "Uid", "Gid", "Groups", "VmSize", "VmLck", "VmRSS",
               "VmData", "VmStk", "VmExe", "VmLib", "SigPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm",
               "CapEff"}
STATES = {"R (running)", "S (sleeping)", "T (stopped)", "Z (zombie)", "X (exiting)", "I (idle)"}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen([sys.executable, "-c", "import time, sys; f = open(sys.executable, 'rb'); f.seek(100); "
                          "print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None and p.stdout.readline() == b"ok\n"
    yield p
    p.kill()
    p.wait()


def test_procstat_v_text_columns_and_json(sleeper: subprocess.Popen[bytes]) -> None:
    tools = FreeBSDTools()
    res = tools.run(["procstat", "-v", str(sleeper.pid)])
    assert res.returncode == 0
    rows = res.stdout.splitlines()
    assert rows[0] == VM_HEADER
    real = [ln.split() for ln in Path(f"/proc/{sleeper.pid}/maps").read_text().splitlines()]
    real = [r for r in real if not (len(r) > 5 and r[5] == "[vsyscall]")]
    assert len(rows) - 1 == len(real)
    for row, r in zip(rows[1:], real):
        col = {name: row[at:at + w] for name, at, w in VM_COLUMNS}
        assert col["PID"] == f"{sleeper.pid:5d}"
        lo, hi = r[0].split("-")
        assert col["START"] == f"0x{int(lo, 16):x}".rjust(18) and col["END"] == f"0x{int(hi, 16):x}".rjust(18)
        assert col["PRT"] == r[1][:3]
        assert re.fullmatch(r"[C-][N-][S-][UD-][W-]", col["FLAG"]) and col["TP"] in VM_TP
        assert all(row[at + w] == " " for _, at, w in VM_COLUMNS[:-1])
        path = r[5] if len(r) > 5 and r[5].startswith("/") else ""
        assert row[75:] == (path if col["TP"] == "vn" else "")
        if r[-1] == "[stack]":
            assert col["FLAG"][3] == "D"
    parsed = fbmod.parse_procstat_vm(res.stdout)
    js = tools.run(["procstat", "--libxo", "json", "-v", str(sleeper.pid)])
    doc = json.loads(js.stdout)
    vm = doc["procstat"]["vm"]
    assert all(set(e) == VM_JSON_KEYS and set(e["kve_flags"]) == VM_FLAG_KEYS for e in vm)
    assert all(set(e["kve_protection"]) == {"read", "write", "exec"} for e in vm)
    assert {e["kve_type"] for e in vm} <= set(VM_TP.values())
    assert all(re.fullmatch(r"0x[0-9a-f]+", e["kve_start"]) for e in vm)
    assert fbmod.parse_procstat_vm_json(js.stdout) == parsed
    assert tools.run(["procstat", "-x", "1"]).returncode == 64  # not emulated: refused, not guessed


def test_procstat_f_columns(sleeper: subprocess.Popen[bytes]) -> None:
    res = FreeBSDTools().run(["procstat", "-f", str(sleeper.pid)])
    rows = res.stdout.splitlines()
    assert rows[0] == FILES_HEADER
    fds = sorted(int(x) for x in os.listdir(f"/proc/{sleeper.pid}/fd"))
    entries = fbmod.parse_procstat_files(res.stdout)
    assert [e.fd for e in entries] == ["text", "cwd", "root", *fds]
    for row in rows[1:]:
        assert row[:5] == f"{sleeper.pid:5d}" and row[5] == " "
        flags = row.split()[5]
        assert len(flags) == 8 and all(c in ("-", FILE_FLAG_LETTERS[i]) for i, c in enumerate(flags))
    exe = next(e for e in entries if e.name == os.path.realpath(sys.executable) and isinstance(e.fd, int))
    assert (exe.type, exe.vnode_type, exe.offset, "r" in exe.flags) == ("v", "r", 100, True)
    out = next(e for e in entries if e.fd == 1)
    assert (out.type, out.vnode_type, out.name, out.flags) == ("p", "-", "-", frozenset({"w"}))


def test_jail_jls_formats_and_registry(tmp_path: Path) -> None:
    tools = FreeBSDTools()
    ok = tools.run(["jail", "-c", "name=web", f"path={tmp_path}", "persist", "host.hostname=web.example",
                    "ip4.addr=10.0.0.5,10.0.0.6", "allow.nomount", "enforce_statfs=2"])
    assert ok.returncode == 0
    again = tools.run(["jail", "-c", "name=web", f"path={tmp_path}"])
    assert again.returncode == 1 and "already exists" in again.stderr
    rows = tools.run(["jls"]).stdout.splitlines()
    assert rows == [JLS_HEADER, f"{1:6d}  {'10.0.0.5':<15} {'web.example':<29} {tmp_path}"]
    assert tools.run(["jls", "-N"]).stdout.splitlines() == [
        JLS_HEADER_N, f" {'web':<15} {'10.0.0.5':<15} {'web.example':<29} {tmp_path}"]
    assert [r.jid for r in parse_jls(tools.run(["jls"]).stdout)] == [1]
    n = tools.run(["jls", "-n", "-j", "web"]).stdout
    items = n.split()
    assert "allow.nomount" in items and "persist" in items and "ip4.addr=10.0.0.5,10.0.0.6" in items
    assert items.index("jid=1") < items.index("name=web") < items.index("allow.nomount"), "top-level names first"
    params = parse_jls_params(n)[0]
    assert params["allow.mount"] is False and params["host.hostname"] == "web.example"
    doc = json.loads(tools.run(["jls", "--libxo", "json", "-n", "-j", "web"]).stdout)
    jail = doc["jail-information"]["jail"][0]
    assert jail["allow.mount"] is False and jail["persist"] is True and jail["jid"] == 1
    assert jail["ip4.addr"] == [{"ipv4_addr": "10.0.0.5"}, {"ipv4_addr": "10.0.0.6"}]
    info = parse_jls_json(json.dumps(doc))[0]
    assert info.name == "web" and info.path == str(tmp_path) and info.get("ip4.addr") == ("10.0.0.5", "10.0.0.6")
    assert tools.run(["jls", "-j", "nope"]).returncode == 1
    assert tools.run(["jexec", "web", "/bin/sh", "-c", "pwd; echo $0"]).stdout == f"{tmp_path}\n/bin/sh\n"
    assert tools.run(["jail", "-r", "web"]).returncode == 0
    assert tools.run(["jls"]).stdout.splitlines() == [JLS_HEADER]
    assert tools.run(["jail", "-r", "web"]).returncode == 1


def test_rctl_rules_and_usage(tmp_path: Path) -> None:
    tools = FreeBSDTools()
    tools.run(["jail", "-c", "name=db", f"path={tmp_path}", "persist"])
    for rule in ("jail:db:memoryuse:deny=1000", "jail:db:maxproc:deny=10", "jail:db:memoryuse:deny=2000",
                 "jail:db:pcpu:log=50/jail", "jail:db:vmemoryuse:deny=5/process"):
        assert tools.run(["rctl", "-a", rule]).returncode == 0
    assert tools.run(["rctl", "-a", "jail:db:nosuch:deny=1"]).returncode == 1
    # deny replaces the rule differing only in amount; /per only when it differs from the subject
    assert tools.run(["rctl", "jail:db"]).stdout.splitlines() == [
        "jail:db:maxproc:deny=10", "jail:db:memoryuse:deny=2000", "jail:db:pcpu:log=50",
        "jail:db:vmemoryuse:deny=5/process"]
    assert [r.render() for r in parse_rctl_rules(tools.run(["rctl"]).stdout)][1] == "jail:db:memoryuse:deny=2000"
    assert tools.run(["rctl", "::maxproc"]).stdout == "jail:db:maxproc:deny=10\n"
    usage = tools.run(["rctl", "-u", "jail:db"]).stdout.splitlines()
    assert [u.split("=")[0] for u in usage] == RESOURCES and "maxproc=0" in usage
    proc = tools.spawn_in("db", ["sleep", "30"])
    assert "maxproc=1" in tools.run(["rctl", "-u", "jail:db"]).stdout.splitlines()
    assert tools.run(["rctl", "-l", f"process:{proc.pid}"]).stdout.count("jail:db:") == 4
    assert tools.run(["rctl", "-r", "jail:db:pcpu:log=50"]).returncode == 0
    assert tools.run(["rctl", "-r", "jail:db"]).returncode == 0
    assert tools.run(["rctl"]).stdout == ""
    gone = tools.run(["rctl", "-r", "jail:db"])
    assert gone.returncode == 1 and "No such process" in gone.stderr  # ESRCH when nothing matched
    tools.close()
    assert proc.poll() is not None


def test_linprocfs_double_formats(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    fs = Linprocfs(tmp_path / "proc")
    fs.add([sleeper.pid])
    d = tmp_path / "proc" / str(sleeper.pid)
    maps = (d / "maps").read_text().splitlines()
    assert maps and all(MAPS_LINE.match(ln) for ln in maps), maps
    labels = {m.group(2) for m in map(MAPS_LINE.match, maps) if m and m.group(2)}
    assert "[vdso]" in labels and "[stack]" in labels
    assert not labels & {"[heap]", "[vvar]", "[vsyscall]", "[vvar_vclock]"}
    status = dict(ln.split(":\t", 1) for ln in (d / "status").read_text().splitlines())
    assert set(status) <= STATUS_KEYS and "Umask" not in status
    assert status["State"] in STATES and int(status["SigBlk"], 16) == 0 and int(status["CapEff"], 16) == 0
    assert status["Tgid"] == status["Pid"] == str(sleeper.pid)
    stat = fbmod.parse_linprocfs_stat((d / "stat").read_text())
    assert [stat[n - 1] for n in (9, 28, 31, 32, 33, 34, 35)] == ["0"] * 7
    assert os.readlink(d / "exe") == os.readlink(f"/proc/{sleeper.pid}/exe")
    assert os.listdir(d / "task") == ["dummy"]
    vmas = fbmod.vmas_from_linprocfs_maps((d / "maps").read_text())
    assert len(vmas) == len(maps)
