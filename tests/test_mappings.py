"""Mapping files: shipped file is valid, the schema refuses broken files with
file + YAML path + reason, and user files layer over the shipped ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capture.errors import EXIT_BAD_INPUT, MappingError
from mappings.loader import ConvertKind, NsMode, load_rules, mapping_schema, shipped_paths
from runtime_shim.translate.freebsd import ALLOW_PARAMS, check_param, check_rctl


def test_shipped_mapping_loads_and_is_schema_valid() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(mapping_schema())
    (path,) = shipped_paths()
    assert path.name == "default.yaml" and path.is_file()
    data = yaml.safe_load(path.read_text())
    assert list(Draft202012Validator(mapping_schema()).iter_errors(data)) == []
    rules = load_rules()
    assert rules.sources == (str(path),)
    assert rules.resource("linux.resources.memory.limit") is not None


def test_shipped_mapping_obeys_freebsd_facts() -> None:
    rules = load_rules()
    for name, value in rules.base_params.items():
        assert check_param(name, value) is None, name
    for table in rules.namespaces.values():
        for rule in table.rules.values():
            for name, value in rule.params.items():
                assert check_param(name, value) is None, name
    for res_rule in rules.resources:
        if res_rule.rctl_resource is not None:
            assert res_rule.rctl_action is not None
            assert check_rctl(res_rule.rctl_resource, res_rule.rctl_action) is None, res_rule
    for cap_rule in rules.capabilities.values():
        for name in cap_rule.allow:
            assert name in ALLOW_PARAMS
    # the table, literally
    assert {(r.oci, r.rctl_resource, r.rctl_action) for r in rules.resources if r.rctl_resource} == {
        ("linux.resources.memory.limit", "memoryuse", "deny"),
        ("linux.resources.memory.swap", "swapuse", "deny"),
        ("linux.resources.cpu.quota", "pcpu", "deny"),
        ("linux.resources.pids.limit", "maxproc", "deny"),
        ("linux.resources.blockIO.throttleReadBpsDevice", "readbps", "throttle"),
        ("linux.resources.blockIO.throttleWriteBpsDevice", "writebps", "throttle"),
        ("linux.resources.blockIO.throttleReadIOPSDevice", "readiops", "throttle"),
        ("linux.resources.blockIO.throttleWriteIOPSDevice", "writeiops", "throttle"),
    }
    assert rules.namespaces["network"].rules[NsMode.NEW].params == {"vnet": "new"}
    assert rules.namespaces["network"].rules[NsMode.SHARED].params == {"ip4": "inherit", "ip6": "inherit"}
    assert rules.capabilities["CAP_NET_RAW"].allow == ("allow.raw_sockets",)
    assert rules.capabilities["CAP_IPC_LOCK"].allow == ("allow.mlock",)


BASE_RES = "version: 1\nresources:\n"


def _res(oci: str, body: str) -> str:
    return f"  - oci: {oci}\n" + "".join(f"    {line}\n" for line in body.splitlines())


# (file text, YAML path, exact reason)
BROKEN: list[tuple[str, str, str, str]] = [
    (
        "throttle-on-maxproc",
        BASE_RES
        + _res("linux.resources.memory.limit", "rctl: {resource: memoryuse, action: deny}\nconvert: {kind: scale}")
        + _res("linux.resources.cpu.shares", "loss: no weights")
        + _res("linux.resources.blockIO.weight", "loss: no weights")
        + _res("linux.resources.pids.limit", "rctl: {resource: maxproc, action: throttle}\nconvert: {kind: scale}"),
        "resources[3].rctl.action",
        "action throttle is only allowed for readbps, writebps, readiops, writeiops, not maxproc",
    ),
    (
        "deny-on-readbps",
        BASE_RES
        + _res("linux.resources.blockIO.throttleReadBpsDevice", "rctl: {resource: readbps, action: deny}\nconvert: {kind: device_rate}"),
        "resources[0].rctl.action",
        "action deny is not supported for readbps (only for deniable resources)",
    ),
    (
        "throttle-on-pcpu",
        BASE_RES
        + _res(
            "linux.resources.cpu.quota",
            "rctl: {resource: pcpu, action: throttle}\nconvert: {kind: percent, per: linux.resources.cpu.period, default_per: 100000}",
        ),
        "resources[0].rctl.action",
        "action throttle is only allowed for readbps, writebps, readiops, writeiops, not pcpu",
    ),
    (
        "unknown-resource",
        BASE_RES + _res("linux.resources.pids.limit", "rctl: {resource: maxprocs, action: deny}\nconvert: {kind: scale}"),
        "resources[0].rctl.resource",
        "unknown RCTL resource 'maxprocs' (see rctl(8))",
    ),
    (
        "rctl-and-loss",
        BASE_RES
        + _res("linux.resources.pids.limit", "rctl: {resource: maxproc, action: deny}\nconvert: {kind: scale}\nloss: both"),
        "resources[0]",
        "matches none or more than one of the allowed forms: rctl+convert | exec | loss",
    ),
    (
        "bad-convert-kind",
        BASE_RES + _res("linux.resources.pids.limit", "rctl: {resource: maxproc, action: deny}\nconvert: {kind: bogus}"),
        "resources[0].convert",
        "matches none or more than one of the allowed forms: kind: scale (factor) | kind: difference (minus)"
        " | kind: percent (per, default_per) | kind: device_rate",
    ),
    (
        "duplicate-resource",
        BASE_RES + _res("linux.resources.cpu.shares", "loss: no weights") + _res("linux.resources.cpu.shares", "loss: again"),
        "resources[1].oci",
        "linux.resources.cpu.shares is already mapped by resources[0]",
    ),
    (
        "resource-outside-resources",
        BASE_RES + _res("process.rlimits", "loss: nope"),
        "resources[0].oci",
        "process.rlimits is not under linux.resources",
    ),
    (
        "cap-typo",
        "version: 1\ncapabilities:\n  CAP_NET_RAW: {alow: [allow.raw_sockets]}\n",
        "capabilities.CAP_NET_RAW",
        "Additional properties are not allowed ('alow' was unexpected) (not a field of this mapping entry)",
    ),
    (
        "cap-unknown-allow",
        "version: 1\ncapabilities:\n  CAP_NET_RAW: {allow: [allow.raw_socket]}\n",
        "capabilities.CAP_NET_RAW.allow[0]",
        "unknown jail parameter 'allow.raw_socket' (see jail(8) allow.*)",
    ),
    (
        "ns-bad-jailsys",
        "version: 1\nnamespaces:\n  network:\n    new: {params: {vnet: fresh}}\n",
        "namespaces.network.new.params.vnet",
        "jail parameter vnet takes one of disable, new, inherit, got 'fresh'",
    ),
    (
        "ns-reverse-default-loss",
        "version: 1\nnamespaces:\n  pid:\n    shared: {loss: no way}\n    reverse_default: shared\n",
        "namespaces.pid.reverse_default",
        "mode 'shared' is a loss rule",
    ),
    (
        "base-param-typo",
        "version: 1\nbase_params: {linux.osrelase: '5.1'}\n",
        'base_params["linux.osrelase"]',
        "unknown jail parameter 'linux.osrelase' (see jail(8))",
    ),
    (
        "bool-param-not-bool",
        "version: 1\nbase_params: {persist: 'yes'}\n",
        "base_params.persist",
        "jail parameter persist is boolean, got 'yes'",
    ),
    (
        "mount-fstype",
        "version: 1\nmounts:\n  bind: {fstype: zfs}\n",
        "mounts.bind.fstype",
        "'zfs' is not one of ['nullfs', 'tmpfs', 'linprocfs', 'linsysfs', 'fdescfs', 'procfs']",
    ),
    ("version", "version: 2\n", "version", "1 was expected"),
    ("top-level-list", "- a\n", "", "top level must be a mapping, got list"),
    (
        "devfs-range",
        "version: 1\ndevfs: {ruleset_base: 60000, ruleset_span: 10000}\n",
        "devfs.ruleset_span",
        "ruleset_base + ruleset_span exceeds 65535 (devfs_ruleset range)",
    ),
]


@pytest.mark.parametrize("text,yaml_path,reason", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_mapping_is_refused_naming_file_path_reason(
    tmp_path: Path, text: str, yaml_path: str, reason: str
) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(text)
    with pytest.raises(MappingError) as info:
        load_rules([bad])
    err = info.value
    assert (err.source, err.path, err.reason) == (str(bad), yaml_path, reason)
    assert str(err) == f"{bad}: {yaml_path or '<root>'}: {reason}"
    assert err.exit_code == EXIT_BAD_INPUT


def test_yaml_syntax_error_names_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("version: 1\nresources: [\n")
    with pytest.raises(MappingError) as info:
        load_rules([bad])
    # the problem text differs between libyaml and the pure-Python parser
    assert (info.value.source, info.value.path) == (str(bad), "")
    assert info.value.reason.startswith("invalid YAML at line 3 column 1: ")
    assert "node content" in info.value.reason


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as info:
        load_rules([tmp_path / "nope.yaml"])
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: <root>: cannot read mapping file: No such file or directory"


def test_user_file_layers_over_shipped_later_wins(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(
        "version: 1\n"
        "base_params: {linux.osrelease: '6.1.0'}\n"
        "resources:\n"
        "  - oci: linux.resources.cpu.shares\n"
        "    loss: site one says no\n"
        "  - oci: linux.resources.memory.limit\n"
        "    rctl: {resource: memoryuse, action: deny}\n"
        "    convert: {kind: scale, factor: 1}\n"
        "    unlimited: [-1, 0]\n"
        "capabilities:\n"
        "  CAP_CHOWN: {allow: [allow.chflags]}\n"
        "namespaces:\n"
        "  pid:\n"
        "    shared: {params: {}}\n"
    )
    two = tmp_path / "two.yaml"
    two.write_text("version: 1\nresources:\n  - oci: linux.resources.cpu.shares\n    loss: site two wins\n")
    rules = load_rules([one, two])
    assert rules.sources[-2:] == (str(one), str(two))
    assert rules.base_params["linux.osrelease"] == "6.1.0"
    assert rules.base_params["linux"] == "new"  # untouched shipped entry stays
    shares = rules.resource("linux.resources.cpu.shares")
    assert shares is not None and shares.loss == "site two wins"
    mem = rules.resource("linux.resources.memory.limit")
    assert mem is not None and mem.unlimited == (-1, 0) and mem.kind is ConvertKind.SCALE
    # order of entries is kept (replaced in place)
    assert [r.oci for r in rules.resources] == [r.oci for r in load_rules().resources]
    assert rules.capabilities["CAP_CHOWN"].allow == ("allow.chflags",)
    assert rules.namespaces["pid"].rules[NsMode.SHARED].loss is None
    assert rules.namespaces["pid"].rules[NsMode.NEW].params == {}


def test_layered_file_is_checked_with_its_own_name(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrlimits:\n  RLIMIT_NOFILE: {freebsd: RLIMIT_FILES}\n")
    with pytest.raises(MappingError) as info:
        load_rules([good, bad])
    assert info.value.source == str(bad)
    assert info.value.path == "rlimits.RLIMIT_NOFILE.freebsd"


def test_spec_coverage_doc_names_every_mapping_entry() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "spec-coverage.md").read_text()
    rules = load_rules()
    missing = [r.oci for r in rules.resources if r.oci.rsplit(".", 1)[-1] not in doc]
    missing += [oci for oci in rules.losses if oci.rsplit(".", 1)[-1] not in doc]
    missing += [f"namespace {t}" for t in rules.namespaces if f"`{t}`" not in doc]
    missing += [cap for cap, r in rules.capabilities.items() if r.allow and cap not in doc]
    missing += [f"mount {t}" for t in rules.mounts if f"`{t}`" not in doc]
    assert missing == []
