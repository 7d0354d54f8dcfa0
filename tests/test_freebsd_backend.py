"""FreeBSD jail backend: exact command sequences, rollback, state, delete.

The backend is untested on a real FreeBSD host. These tests run it with a
RecordingRunner and replies composed from reference/freebsd/ (see
tests/data/freebsd/README.md), and check every command line against the
reference tables copied below (and, where /work/shared/reference/freebsd is
present, the copies against the reference text itself).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from capture.errors import PlatformError, RefusedError, SpecError
from runtime_shim.backends.freebsd import JailBackend, jexec_argv, spec_from_plan
from runtime_shim.backends.freebsd_parsers import parse_rctl_rule
from runtime_shim.backends.runner import RecordingRunner, SubprocessRunner, UnexpectedCommand

DATA = Path(__file__).parent / "data" / "freebsd"
REFERENCE = Path("/work/shared/reference/freebsd")

# jail-params.md sections 2-4 (kernel and module parameters; pseudo-parameters
# are never on our jail -c line except exec.*).
REF_JAIL_PARAMS = {
    "jid", "name", "path", "children.max", "securelevel", "enforce_statfs", "devfs_ruleset",
    "persist", "host", "host.hostname", "host.domainname", "host.hostuuid", "host.hostid", "ip4",
    "ip4.addr", "ip4.saddrsel", "ip6", "ip6.addr", "ip6.saddrsel", "vnet", "osrelease", "osreldate",
    "meta", "env", "linux", "linux.osname", "linux.osrelease", "linux.oss_version", "sysvmsg",
    "sysvsem", "sysvshm", "zfs.mount_snapshot",
    "allow.set_hostname", "allow.sysvipc", "allow.raw_sockets", "allow.chflags", "allow.mount",
    "allow.quotas", "allow.socket_af", "allow.mlock", "allow.read_msgbuf",
    "allow.unprivileged_proc_debug", "allow.suser", "allow.reserved_ports", "allow.nfsd",
    "allow.extattr", "allow.adjtime", "allow.settime", "allow.mount.devfs", "allow.mount.fdescfs",
    "allow.mount.fusefs", "allow.mount.nullfs", "allow.mount.procfs", "allow.mount.linprocfs",
    "allow.mount.linsysfs", "allow.mount.tmpfs", "allow.mount.zfs", "allow.vmm",
}
REF_BOOL_PARAMS = {p for p in REF_JAIL_PARAMS if p.startswith("allow.")} | {
    "persist", "ip4.saddrsel", "ip6.saddrsel",
}
REF_EXEC_CREATE = {"exec.prepare", "exec.prestart", "exec.created", "exec.start", "exec.poststart"}
# rctl.md section 6.
REF_DENY_OK = {
    "datasize", "stacksize", "coredumpsize", "memorylocked", "maxproc", "openfiles", "vmemoryuse",
    "pseudoterminals", "swapuse", "nthr", "msgqqueued", "msgqsize", "nmsgq", "nsem", "nsemop", "nshm",
    "shmsize", "pcpu", "memoryuse",
}
REF_THROTTLE_OK = {"readbps", "writebps", "readiops", "writeiops"}
REF_RESOURCES = REF_DENY_OK | REF_THROTTLE_OK | {"cputime", "wallclock"}


def load_plan(name: str) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((DATA / "plans" / f"{name}.json").read_text())
    return plan


def racct_on(r: RecordingRunner) -> RecordingRunner:
    return r.reply(["sysctl", "-n", "kern.racct.enable"], stdout="1\n")


def check_against_reference(lines: list[list[str]], jail: str) -> None:
    """Every jail -c parameter exists, every rctl rule is legal and targets the jail."""
    assert lines, "no commands recorded"
    for argv in lines:
        if argv[:2] == ["jail", "-c"]:
            for item in argv[2:]:
                name = item.split("=", 1)[0]
                if "=" not in item:  # boolean: name or noname
                    head, dot, last = name.rpartition(".")
                    plain = f"{head}{dot}{last[2:]}" if last.startswith("no") else name
                    assert plain in REF_BOOL_PARAMS, f"{item}: not a boolean jail parameter"
                else:
                    assert name in REF_JAIL_PARAMS | REF_EXEC_CREATE, f"{item}: unknown jail parameter"
            assert f"name={jail}" in argv
        if argv[:2] == ["rctl", "-a"]:
            assert len(argv) == 3
            rule = parse_rctl_rule(argv[2])
            assert (rule.subject, rule.subject_id) == ("jail", jail)
            assert rule.resource in REF_RESOURCES
            if rule.action == "deny":
                assert rule.resource in REF_DENY_OK, argv[2]
            if rule.action == "throttle":
                assert rule.resource in REF_THROTTLE_OK, argv[2]
            assert rule.amount is not None and rule.amount >= 0


PODMAN_ROOT = "/var/lib/hetmig/jails/web/rootfs"
PODMAN_CREATE = [
    "sysctl -n kern.racct.enable",
    f"mount -t devfs devfs {PODMAN_ROOT}/dev",
    f"devfs -m {PODMAN_ROOT}/dev ruleset 4",
    f"devfs -m {PODMAN_ROOT}/dev rule applyset",
    f"mount -t linprocfs linprocfs {PODMAN_ROOT}/proc",
    f"mount -t linsysfs linsysfs {PODMAN_ROOT}/sys",
    f"mount -t tmpfs -o mode=1777,size=67108864 tmpfs {PODMAN_ROOT}/tmp",
    f"mount -t nullfs -o ro /srv/data {PODMAN_ROOT}/data",
    f"jail -c name=web path={PODMAN_ROOT} persist 'host.hostname=web container' linux=new "
    "linux.osrelease=5.15.0 enforce_statfs=1 devfs_ruleset=4 allow.nomount allow.raw_sockets "
    "ip4.addr=10.88.0.5 sysvshm=new",
    "rctl -a jail:web:memoryuse:deny=268435456",
    "rctl -a jail:web:vmemoryuse:deny=536870912",
    "rctl -a jail:web:maxproc:deny=64",
    "rctl -a jail:web:pcpu:deny=50",
    "rctl -a jail:web:openfiles:deny=1024",
    "rctl -a jail:web:writebps:throttle=10485760",
]


def test_podman_limits_create_sequence_is_exact() -> None:
    r = racct_on(RecordingRunner(strict=False))
    result = JailBackend(r).create(load_plan("podman-limits"))
    assert r.command_lines() == PODMAN_CREATE
    assert [list(c) for c in result.commands] == [shlex.split(c) for c in PODMAN_CREATE]
    check_against_reference([list(a) for a in r.argvs], "web")
    assert result.losses == ("linux.resources.cpu.shares=512: no RCTL equivalent (relative weight)",)
    assert len(result.unapplied) == 1 and "RLIMIT_MEMLOCK" in result.unapplied[0]


def test_plan_rule_amounts_accept_expand_number_suffixes() -> None:
    plan = load_plan("busybox-sleep")
    plan["rctl"] = ["memoryuse:deny=256m", "jail:sleeper:vmemoryuse:deny=1g", "maxproc:deny=64"]
    r = racct_on(RecordingRunner())
    JailBackend(r).create(plan)
    assert [a[2] for a in r.argvs if a[:2] == ("rctl", "-a")] == [
        "jail:sleeper:memoryuse:deny=268435456", "jail:sleeper:vmemoryuse:deny=1073741824", "jail:sleeper:maxproc:deny=64",
    ]


def test_busybox_sleep_needs_no_rctl_and_no_sysctl() -> None:
    r = RecordingRunner(strict=True)
    r.reply(
        ["jail", "-c", "name=sleeper", "path=/var/lib/hetmig/jails/sleeper/rootfs", "persist",
         "host.hostname=sleeper", "linux=new", "linux.osrelease=5.15.0", "enforce_statfs=2", "ip4=inherit"]
    )
    JailBackend(r).create(load_plan("busybox-sleep"))
    assert len(r.calls) == 1
    check_against_reference([list(a) for a in r.argvs], "sleeper")
    spec = spec_from_plan(load_plan("busybox-sleep"))
    assert jexec_argv(spec) == ["jexec", "sleeper", "/bin/sleep", "3600"]


def test_devfs_rules_fstab_mounts_and_create_hooks() -> None:
    r = racct_on(RecordingRunner())
    JailBackend(r).create(load_plan("devfs-hooks"))
    assert r.command_lines() == [
        "sysctl -n kern.racct.enable",
        "devfs rule -s 20 delset",
        "devfs rule -s 20 add hide",
        "devfs rule -s 20 add path null unhide",
        "devfs rule -s 20 add path zero unhide",
        "devfs rule -s 20 add path 'pts*' unhide",
        "mount -t devfs -o rw devfs /jails/svc/dev",
        "devfs -m /jails/svc/dev ruleset 20",
        "devfs -m /jails/svc/dev rule applyset",
        "mount -t fdescfs -o rw fdescfs /jails/svc/dev/fd",
        "jail -c name=svc path=/jails/svc persist host.hostname=svc devfs_ruleset=20 allow.mount "
        "allow.mount.tmpfs enforce_statfs=1 ip6=disable 'exec.prestart=logger -t hetmig starting svc'",
        "rctl -a jail:svc:nthr:deny=256",
        "rctl -a jail:svc:swapuse:log=1073741824",
    ]
    check_against_reference([list(a) for a in r.argvs], "svc")


def test_rctl_failure_on_second_rule_removes_first_rule_then_jail() -> None:
    r = racct_on(RecordingRunner())
    r.reply(["rctl", "-a", "jail:web:vmemoryuse:deny=536870912"], returncode=1,
            stderr="rctl: failed to add rule 'jail:web:vmemoryuse:deny=536870912': Operation not supported\n")
    with pytest.raises(PlatformError) as exc:
        JailBackend(r).create(load_plan("podman-limits"))
    assert exc.value.command == ["rctl", "-a", "jail:web:vmemoryuse:deny=536870912"]
    assert "Operation not supported" in str(exc.value)
    lines = r.command_lines()
    failed = lines.index("rctl -a jail:web:vmemoryuse:deny=536870912")
    assert lines[: failed + 1] == PODMAN_CREATE[:11]
    assert lines[failed + 1:] == [
        "rctl -r jail:web:memoryuse:deny=268435456",
        "jail -r web",
        f"umount {PODMAN_ROOT}/data",
        f"umount {PODMAN_ROOT}/tmp",
        f"umount {PODMAN_ROOT}/sys",
        f"umount {PODMAN_ROOT}/proc",
        f"umount {PODMAN_ROOT}/dev",
    ]


def test_jail_create_failure_unmounts_but_removes_no_jail() -> None:
    r = racct_on(RecordingRunner())
    jail_c = shlex.split(PODMAN_CREATE[8])
    r.reply(jail_c, returncode=1, stderr='jail: jail "web" already exists\n')
    with pytest.raises(PlatformError):
        JailBackend(r).create(load_plan("podman-limits"))
    after = r.command_lines()[9:]
    assert after == [f"umount {PODMAN_ROOT}/{d}" for d in ("data", "tmp", "sys", "proc", "dev")]
    assert not any(a[:2] == ("jail", "-r") for a in r.argvs), "must not remove a jail it did not create"


def test_devfs_rule_and_mount_failure_rollback() -> None:
    r = racct_on(RecordingRunner())
    r.reply(["mount", "-t", "devfs", "-o", "rw", "devfs", "/jails/svc/dev"], returncode=1, stderr="mount: busy\n")
    with pytest.raises(PlatformError):
        JailBackend(r).create(load_plan("devfs-hooks"))
    assert r.command_lines()[-1] == "devfs rule -s 20 delset"
    assert r.command_lines()[-2] == "mount -t devfs -o rw devfs /jails/svc/dev"


def test_incomplete_rollback_is_reported() -> None:
    r = racct_on(RecordingRunner())
    r.reply(["rctl", "-a", "jail:web:maxproc:deny=64"], returncode=1, stderr="boom\n")
    r.reply(["jail", "-r", "web"], returncode=1, stderr="jail: web: not found\n")
    with pytest.raises(PlatformError) as exc:
        JailBackend(r).create(load_plan("podman-limits"))
    assert "rollback incomplete" in str(exc.value) and "remove jail web" in str(exc.value)
    # the rest of the rollback still ran
    assert r.command_lines()[-1] == f"umount {PODMAN_ROOT}/dev"


def test_racct_disabled_refuses_before_touching_anything() -> None:
    for reply in ({"stdout": "0\n"}, {"returncode": 1, "stderr": "sysctl: unknown oid 'kern.racct.enable'\n"}):
        r = RecordingRunner(strict=True)
        r.reply(["sysctl", "-n", "kern.racct.enable"], **reply)
        with pytest.raises(RefusedError, match="kern.racct.enable"):
            JailBackend(r).create(load_plan("podman-limits"))
        assert r.command_lines() == ["sysctl -n kern.racct.enable"]


def test_jexec_with_env_cwd_and_nofile() -> None:
    spec = spec_from_plan(load_plan("podman-limits"))
    assert jexec_argv(spec) == [
        "jexec", "web", "/usr/bin/env", "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "GREETING=hello world",
        "/bin/sh", "-c", "{ ulimit -S -n 1024 2>/dev/null || :; } && ulimit -H -n 4096 && ulimit -S -n 1024 && cd -- '/srv/app dir' && exec \"$@\"",
        "sh", "/bin/sh", "-c", "while :; do echo tick; sleep 1; done",
    ]
    r = RecordingRunner()
    r.reply(jexec_argv(spec, ["/bin/echo", "hi"]), stdout="hi\n")
    res = JailBackend(r).exec(spec, ["/bin/echo", "hi"])
    assert res.stdout == "hi\n" and r.argvs[0][:2] == ("jexec", "web")


def test_delete_sequence_follows_jail8_remove_order() -> None:
    r = RecordingRunner(strict=True)
    for line in (
        "jail -r svc", "/bin/sh -c 'logger -t hetmig stopped svc'", "rctl -r jail:svc",
        "umount /jails/svc/dev/fd", "umount /jails/svc/dev", "devfs rule -s 20 delset",
    ):
        r.reply(shlex.split(line))
    JailBackend(r).delete(load_plan("devfs-hooks"))
    assert r.command_lines() == [
        "jail -r svc",
        "/bin/sh -c 'logger -t hetmig stopped svc'",
        "rctl -r jail:svc",
        "umount /jails/svc/dev/fd",
        "umount /jails/svc/dev",
        "devfs rule -s 20 delset",
    ]


def test_delete_attempts_every_step_and_reports_failures() -> None:
    r = RecordingRunner()
    r.reply(["jail", "-r", "web"], returncode=1, stderr="jail: web: not found\n")
    with pytest.raises(PlatformError, match="jail -r web"):
        JailBackend(r).delete(load_plan("podman-limits"))
    assert r.command_lines()[:2] == ["jail -r web", "rctl -r jail:web"]
    assert len(r.calls) == 2 + 5


def test_state_reads_jls_json() -> None:
    r = RecordingRunner(strict=True)
    r.reply(["jls", "--libxo", "json", "-n", "-j", "web"], stdout=(DATA / "jls_n_json.json").read_text())
    info = JailBackend(r).state("web")
    assert info is not None
    assert (info.jid, info.name, info.path) == (3, "web", "/jails/web")
    assert info.get("persist") is True and info.get("allow.mount") is False
    assert info.get("ip4.addr") == ("10.0.0.5", "10.0.0.6")


def test_state_of_absent_jail_is_none_confirmed_by_full_listing() -> None:
    r = RecordingRunner(strict=True)
    r.reply(["jls", "--libxo", "json", "-n", "-j", "gone"], returncode=1, stderr='jls: jail "gone" not found\n')
    r.reply(["jls", "--libxo", "json", "-n"], stdout=(DATA / "jls_n_json.json").read_text())
    assert JailBackend(r).state("gone") is None
    r2 = RecordingRunner(strict=True)
    r2.reply(["jls", "--libxo", "json", "-n", "-j", "web"], returncode=1, stderr="jls: weird\n")
    r2.reply(["jls", "--libxo", "json", "-n"], stdout=(DATA / "jls_n_json.json").read_text())
    with pytest.raises(PlatformError, match="existing jail"):
        JailBackend(r2).state("web")


def test_rules_and_usage() -> None:
    r = RecordingRunner(strict=True)
    rules_text = "\n".join(l for l in (DATA / "rctl_rules.txt").read_text().splitlines() if l.startswith("jail:web:"))
    r.reply(["rctl", "jail:web"], stdout=rules_text + "\n")
    r.reply(["rctl", "-u", "jail:web"], stdout=(DATA / "rctl_usage_jail.txt").read_text())
    b = JailBackend(r)
    rules = b.rules("web")
    assert [x.render() for x in rules][:2] == ["jail:web:memoryuse:deny=268435456", "jail:web:maxproc:deny=64"]
    usage = b.usage("web")
    assert usage["memoryuse"] == 25165824 and len(usage) == 25


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (lambda p: p["rctl"].append("cputime:deny=10"), "rctl[6]", "deny is not allowed for resource cputime"),
        (lambda p: p["rctl"].append("memoryuse:throttle=10"), "rctl[6]", "throttle is allowed only for"),
        (lambda p: p["rctl"].append("swapuse:deny=10/process"), "rctl[6]", "per=process is not allowed"),
        (lambda p: p["rctl"].append("jail:other:maxproc:deny=1"), "rctl[6]", "expected jail:web"),
        (lambda p: p["rctl"].append("bogus:deny=1"), "rctl[6]", "not an rctl resource"),
        (lambda p: p["mounts"].append({"type": "nullfs", "source": "/x", "target": "/a/../../etc"}),
         "mounts[5].target", "no '..'"),
        (lambda p: p["mounts"].append({"type": "nullfs", "source": "/x", "target": "rel"}), "mounts[5].target", "absolute"),
        (lambda p: p["mounts"].append({"type": "ext4", "source": "/x", "target": "/y"}), "mounts[5].type", "ext4"),
        (lambda p: p.update(extra=1), "$", "unknown keys ['extra']"),
        (lambda p: p["jail"].update(name="a.b"), "jail.name", "not a usable jail name"),
        (lambda p: p["jail"]["params"].update({"exec.start": "x"}), "jail.params.exec.start", "exec"),
        (lambda p: p["jail"]["params"].update({"persist": False}), "jail.params.persist", "persistent"),
        (lambda p: p["exec"].update(env=["NOEQUALS"]), "exec.env[0]", "KEY=VALUE"),
        (lambda p: p["jail"]["params"].update({"bad name": 1}), "jail.params.bad name", "without '='"),
        (lambda p: p["rctl"].append("maxproc:deny=12q"), "rctl[6]", "not an integer"),
    ],
)
def test_plan_validation_errors_name_field(mutate: Any, path: str, fragment: str) -> None:
    plan = load_plan("podman-limits")
    mutate(plan)
    r = RecordingRunner(strict=True)
    with pytest.raises(SpecError) as exc:
        JailBackend(r).create(plan)
    assert exc.value.path == path or (path == "$" and exc.value.path == "")
    assert fragment in str(exc.value)
    assert r.calls == [], "nothing may run for an invalid plan"


def test_recording_runner_replays_in_order_and_strict_mode() -> None:
    r = RecordingRunner()
    r.reply(["a"], stdout="1").reply(["a"], stdout="2")
    assert [r.run(["a"]).stdout for _ in range(3)] == ["1", "2", "2"]
    assert r.run(["b"]).returncode == 0
    with pytest.raises(UnexpectedCommand):
        RecordingRunner(strict=True).run(["c"])
    with pytest.raises(TypeError):
        r.run("ls -l")


def test_subprocess_runner_runs_real_commands() -> None:
    run = SubprocessRunner(timeout=10)
    res = run.run(["sh", "-c", 'read x; echo "got $x"; echo err >&2; exit 3'], input="hello\n")
    assert (res.returncode, res.stdout, res.stderr) == (3, "got hello\n", "err\n")
    with pytest.raises(PlatformError, match="not found"):
        run.run(["/nonexistent/hetmig-no-such-program"])


def test_reference_tables_copied_here_match_reference_text() -> None:
    if not REFERENCE.is_dir():
        pytest.skip("reference/freebsd not present on this machine")
    params_md = (REFERENCE / "jail-params.md").read_text()
    for name in REF_JAIL_PARAMS:
        assert f"`{name}`" in params_md or f"`{name.rsplit('.', 1)[0]}`, `{name}`" in params_md or (
            name in ("ip6.addr", "ip6.saddrsel") and "`ip6`, `ip6.addr`, `ip6.saddrsel`" in params_md
        ), name
    rctl_md = (REFERENCE / "rctl.md").read_text()
    section6 = rctl_md.split("## 6.")[1].split("## 7.")[0]
    deny_row = next(l for l in section6.splitlines() if l.startswith("| `deny`"))
    listed = set(re.findall(r"\b[a-z]+\b", deny_row.split("|")[2].split("Not:")[0])) - {"all", "d", "flag", "resources", "plus", "special", "enforcement"}
    assert listed == REF_DENY_OK
    throttle_row = next(l for l in section6.splitlines() if l.startswith("| `throttle`"))
    assert set(re.findall(r"(readbps|writebps|readiops|writeiops)", throttle_row)) == REF_THROTTLE_OK


def test_recording_file_replays_an_inspection_session(tmp_path: Path) -> None:
    r = RecordingRunner.load(str(DATA / "recordings" / "inspect-web.json"))
    b = JailBackend(r)
    info = b.state("web")
    assert info is not None and info.jid == 3
    assert [x.render() for x in b.rules("web")] == ["jail:web:memoryuse:deny=268435456", "jail:web:maxproc:deny=64"]
    assert b.usage("web")["nthr"] == 4
    assert b.state("gone") is None
    bad = tmp_path / "bad.json"
    bad.write_text('[{"argv": "jls"}]')
    with pytest.raises(ValueError, match="argv"):
        RecordingRunner.load(str(bad))
