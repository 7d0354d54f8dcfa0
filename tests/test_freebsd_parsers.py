"""Parsers of FreeBSD tool output, on outputs composed from reference/freebsd/.

Untested on a real FreeBSD host: tests/data/freebsd/ holds text written by
hand to the formats tools-output.md, rctl.md and linuxulator.md document.
Expected values below are literal, never derived from the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime_shim.backends.freebsd_parsers import (
    RCTL_RESOURCE_IDS,
    FreeBSDParseError,
    JlsRow,
    RctlRule,
    VmEntry,
    parse_jail_e,
    parse_jls,
    parse_jls_json,
    parse_jls_params,
    parse_linprocfs_maps,
    parse_procstat_files,
    parse_procstat_vm,
    parse_procstat_vm_json,
    parse_rctl_rule,
    parse_rctl_rules,
    parse_rctl_usage,
    quote_jail_e_value,
    rctl_rule_problem,
    render_jail_e_line,
    render_jail_param,
    render_jls_row,
    render_procstat_vm,
)

DATA = Path(__file__).parent / "data" / "freebsd"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_jls_default_columns() -> None:
    text = read("jls.txt")
    # the header is the one tools-output.md 1.1 gives, byte for byte
    assert text.splitlines()[0] == "   JID  IP Address      Hostname                      Path"
    assert text.splitlines()[0].index("IP Address") == 8
    assert parse_jls(text) == [
        JlsRow(1, None, "10.0.0.5", "web.example.org", "/jails/web"),
        JlsRow(12, None, "", "db", "/jails/db"),
        JlsRow(137, None, "192.168.100.200", "a-very-long-hostname-that-is-", "/usr/local/jails/with space/root"),
    ]


def test_jls_dash_n_capital() -> None:
    assert parse_jls(read("jls_N.txt")) == [
        JlsRow(None, "web", "10.0.0.5", "web.example.org", "/jails/web"),
        JlsRow(None, "averyveryverylongjailname", "", "db", "/jails/db"),
    ]


def test_jls_render_row_matches_recorded() -> None:
    assert render_jls_row(1, "10.0.0.5", "web.example.org", "/jails/web") == read("jls.txt").splitlines()[1]


@pytest.mark.parametrize(
    "bad",
    ["", "JID Hostname\n", "   JID  IP Address      Hostname                      Path\n  xx  1.2.3.4\n"],
)
def test_jls_refuses_malformed(bad: str) -> None:
    with pytest.raises(FreeBSDParseError):
        parse_jls(bad)


def test_jls_params_nq() -> None:
    web, db = parse_jls_params(read("jls_nq.txt"))
    assert web == {
        "jid": "3", "name": "web", "path": "/jails/web", "host": "new", "host.hostname": "web",
        "host.domainname": "", "persist": True, "allow.mount": False, "allow.set_hostname": True,
        "ip4.addr": "10.0.0.5,10.0.0.6", "enforce_statfs": "2", "devfs_ruleset": "4",
        "meta": "owner=ops team", "osrelease": '14.1-"custom"',
    }
    assert db["persist"] is False and db["allow.mount.nullfs"] is False and db["linux"] == "new"


def test_jls_json_param_mode_and_default_mode() -> None:
    (web,) = parse_jls_json(read("jls_n_json.json"))
    assert (web.jid, web.name, web.path) == (3, "web", "/jails/web")
    assert web.get("ip4.addr") == ("10.0.0.5", "10.0.0.6") and web.get("ip6.addr") == ()
    assert web.get("persist") is True and web.get("host.domainname") == ""
    rows = parse_jls_json(read("jls_default_json.json"))
    assert [(j.jid, j.get("ipv4"), j.get("hostname")) for j in rows] == [(1, "10.0.0.5", "web.example.org"), (12, "", "db")]
    assert parse_jls_json(read("jls_empty_json.json")) == []
    for bad in ("[]", "{}", '{"jail-information": {"jail": {}}}', "not json"):
        with pytest.raises(FreeBSDParseError):
            parse_jls_json(bad)


def test_jail_e_quoting() -> None:
    web, db = parse_jail_e(read("jail_e_pipe.txt"), "|")
    assert web == [
        ("name", "web"), ("path", "/jails/web"), ("host.hostname", "my host"), ("persist", None),
        ("exec.start", "sh /etc/rc"), ("exec.stop", 'echo "bye"'), ("mount.devfs", None),
        ("host.domainname", ""), ("exec.poststop", "printf 'a \"b\"\\n'"), ("ip4.addr", "10.0.0.5,10.0.0.6"),
    ]
    assert db == [("name", "db"), ("path", "/jails/db"), ("allow.nomount", None)]
    # the renderer reproduces the recorded line exactly
    assert render_jail_e_line(web, "|") == read("jail_e_pipe.txt").splitlines()[0]


def test_jail_e_quote_rules() -> None:
    assert quote_jail_e_value("") == '""'
    assert quote_jail_e_value("plain") == "plain"
    assert quote_jail_e_value("a b") == '"a b"'
    assert quote_jail_e_value("it's") == '"it\'s"'
    assert quote_jail_e_value('say "x"') == "'say \"x\"'"
    assert quote_jail_e_value("a\tb") == '"a\tb"'


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.]{0,12}", fullmatch=True),
                          st.one_of(st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n\r|"), max_size=20))),
                min_size=0, max_size=6))
def test_jail_e_roundtrip(items: list[tuple[str, str | None]]) -> None:
    line = [("name", "j1"), *items]
    assert parse_jail_e(render_jail_e_line(line, "|"), "|") == [line]


def test_render_jail_param() -> None:
    assert render_jail_param("persist", True) == ["persist"]
    assert render_jail_param("allow.mount", False) == ["allow.nomount"]
    assert render_jail_param("allow.mount.nullfs", False) == ["allow.mount.nonullfs"]
    assert render_jail_param("enforce_statfs", 1) == ["enforce_statfs=1"]
    assert render_jail_param("host.hostname", "a b") == ["host.hostname=a b"]
    assert render_jail_param("ip4.addr", ("10.0.0.1", "10.0.0.2")) == ["ip4.addr=10.0.0.1,10.0.0.2"]
    assert render_jail_param("exec.start", ("a,b", "c")) == ["exec.start=a,b", "exec.start=c"]
    with pytest.raises(ValueError):
        render_jail_param("bad name", "x")


def test_rctl_rules() -> None:
    rules = parse_rctl_rules(read("rctl_rules.txt"))
    assert rules[0] == RctlRule("jail", "web", "memoryuse", "deny", 268435456, None)
    assert rules[5] == RctlRule("user", "1001", "vmemoryuse", "deny", 1073741824, "process")
    assert rules[6] == RctlRule("process", "4242", "cputime", "sigxcpu", 3600, None)
    assert [r.render() for r in rules] == read("rctl_rules.txt").splitlines()
    assert all(rctl_rule_problem(r) is None for r in rules)
    # per equal to the subject is not printed (rctl.md section 7)
    assert RctlRule("jail", "web", "maxproc", "deny", 5, "jail").render() == "jail:web:maxproc:deny=5"
    assert parse_rctl_rule("j:web:maxproc:deny=5").subject == "jail"
    with pytest.raises(FreeBSDParseError):
        parse_rctl_rule("jail:web:maxproc")
    with pytest.raises(FreeBSDParseError):
        parse_rctl_rule("jail:web:maxproc:deny=5k")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("jail:w:cputime:deny=1", "not allowed for resource cputime"),
        ("jail:w:wallclock:deny=1", "not allowed for resource wallclock"),
        ("jail:w:readbps:deny=1", "not allowed for resource readbps"),
        ("jail:w:pcpu:throttle=1", "throttle is allowed only"),
        ("jail:w:nshm:deny=1/process", "per=process is not allowed"),
        ("jail:w:nosuch:deny=1", "not an rctl resource"),
        ("jail:w:maxproc:explode=1", "not an rctl action"),
        ("group:w:maxproc:deny=1", "subject 'group'"),
        ("jail::maxproc:deny=1", "subject-id is empty"),
    ],
)
def test_rctl_illegal_pairs(rule: str, problem: str) -> None:
    found = rctl_rule_problem(parse_rctl_rule(rule))
    assert found is not None and problem in found


def test_rctl_legal_pairs() -> None:
    for rule in ("jail:w:memoryuse:deny=1", "jail:w:cputime:sigterm=1", "jail:w:wallclock:log=1",
                 "jail:w:writeiops:throttle=1", "jail:w:pcpu:deny=50", "jail:w:openfiles:deny=1/process"):
        assert rctl_rule_problem(parse_rctl_rule(rule)) is None, rule


def test_rctl_usage_all_25_in_kernel_order() -> None:
    usage = parse_rctl_usage(read("rctl_usage_jail.txt"))
    assert list(usage) == list(RCTL_RESOURCE_IDS)
    assert RCTL_RESOURCE_IDS["cputime"] == 0 and RCTL_RESOURCE_IDS["pcpu"] == 20 and RCTL_RESOURCE_IDS["writeiops"] == 24
    assert usage["memoryuse"] == 25165824 and usage["wallclock"] == 3721
    for bad in ("memoryuse\n", "bogus=1\n", "nthr=x\n", "nthr=1\nnthr=2\n"):
        with pytest.raises(FreeBSDParseError):
            parse_rctl_usage(bad)


def test_procstat_vm_text() -> None:
    entries = parse_procstat_vm(read("procstat_v.txt"))
    assert len(entries) == 7
    assert entries[0] == VmEntry(
        pid=4242, start=0x400000, end=0x401000, read=True, write=False, execute=False, resident=1,
        private_resident=0, ref_count=3, shadow_count=1, copy_on_write=True, needs_copy=True,
        super_pages=False, grows_up=False, grows_down=False, wired=False, type="vn",
        path="/jails/web/bin/busybox",
    )
    stack = entries[5]
    assert (stack.start, stack.end, stack.grows_down, stack.type, stack.path) == (0x7FFFFFFDF000, 0x7FFFFFFFF000, True, "df", "")
    assert render_procstat_vm(entries) == read("procstat_v.txt")


def test_procstat_vm_json_equals_text() -> None:
    entries = parse_procstat_vm_json(read("procstat_v.json"))
    text_entries = parse_procstat_vm(read("procstat_v.txt"))
    assert entries == [text_entries[0], text_entries[4], text_entries[5]]


@pytest.mark.parametrize(
    "line",
    [
        " 4242           0x400000           0x401000 rq-    1    0   3   1 CN--- vn /x",
        " 4242           0x400000           0x401000 r--    1    0   3   1 CNX-- vn /x",
        " 4242           0x400000           0x401000 r--    1    0   3   1 CN--- zz /x",
        " 4242           0x401000           0x400000 r--    1    0   3   1 CN--- vn /x",
        " 4242           0x400000",
    ],
)
def test_procstat_vm_refuses_malformed(line: str) -> None:
    header = read("procstat_v.txt").splitlines()[0]
    with pytest.raises(FreeBSDParseError):
        parse_procstat_vm(header + "\n" + line + "\n")


def test_procstat_files() -> None:
    files = parse_procstat_files(read("procstat_f.txt"))
    assert [f.fd for f in files] == ["text", "ctty", "cwd", "root", "jail", 0, 1, 3, 4, 5]
    reg = files[7]
    assert (reg.type, reg.vnode_type, reg.flags, reg.ref_count, reg.offset, reg.name) == (
        "v", "r", frozenset("r"), 1, 8192, "/jails/web/etc/passwd"
    )
    pipe = files[6]
    assert (pipe.type, pipe.vnode_type, pipe.offset, pipe.protocol) == ("p", "-", None, "-")
    tcp = files[8]
    assert tcp.protocol == "TCP" and tcp.flags == frozenset("rwn") and tcp.name == "0 0 10.0.0.5:8080 0.0.0.0:0"
    with pytest.raises(FreeBSDParseError):
        parse_procstat_files(read("procstat_f.txt").replace("rw---n--", "rw--n---"))


def test_linprocfs_maps() -> None:
    maps = parse_linprocfs_maps(read("linprocfs_maps.txt"))
    assert len(maps) == 7
    assert (maps[1].start, maps[1].end, maps[1].execute, maps[1].offset, maps[1].inode, maps[1].path) == (
        0x401000, 0x4A5000, True, 0x1000, 1234567, "/bin/busybox"
    )
    assert maps[3].path == "" and maps[3].private
    assert not maps[4].private
    assert maps[5].path == "[vdso]" and maps[6].path == "[stack]"
    assert all(m.device == "00:00" for m in maps)
    with pytest.raises(FreeBSDParseError):
        parse_linprocfs_maps("0000000000400000-0000000000401000 r--q 00000000 00:00 0\n")


_RESOURCES = sorted(RCTL_RESOURCE_IDS)


@given(
    st.sampled_from(_RESOURCES),
    st.sampled_from(["deny", "log", "devctl", "throttle", "sigterm", "sigkill"]),
    st.integers(min_value=0, max_value=2**62),
    st.sampled_from([None, "process", "user", "loginclass", "jail"]),
    st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
)
def test_rctl_rule_render_parse_roundtrip(resource: str, action: str, amount: int, per: str | None, jail: str) -> None:
    rule = RctlRule("jail", jail, resource, action, amount, per)
    back = parse_rctl_rule(rule.render())
    assert back.render() == rule.render()
    assert back == RctlRule("jail", jail, resource, action, amount, None if per in (None, "jail") else per)


@given(st.lists(
    st.builds(
        VmEntry,
        pid=st.integers(1, 99999), start=st.integers(0, 2**46).map(lambda x: x * 4096),
        end=st.just(0), read=st.booleans(), write=st.booleans(), execute=st.booleans(),
        resident=st.integers(0, 9999), private_resident=st.integers(0, 9999), ref_count=st.integers(0, 999),
        shadow_count=st.integers(0, 999), copy_on_write=st.booleans(), needs_copy=st.booleans(),
        super_pages=st.booleans(), grows_up=st.just(False), grows_down=st.booleans(), wired=st.booleans(),
        type=st.sampled_from(sorted(["--", "df", "vn", "sw", "dv", "ph", "dd", "sg", "md", "gd", "??"])),
        path=st.sampled_from(["", "/bin/busybox", "/usr/lib/with space.so"]),
    ),
    max_size=8,
))
def test_procstat_vm_render_parse_roundtrip(raw: list[VmEntry]) -> None:
    entries = [
        VmEntry(**{**{f: getattr(e, f) for f in VmEntry.__dataclass_fields__}, "end": e.start + 4096 * (1 + i)})
        for i, e in enumerate(raw)
    ]
    assert parse_procstat_vm(render_procstat_vm(entries)) == entries
