"""``hetmig translate``: flags, output formats and exit codes (0, 2, 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime_shim.cli import main
from runtime_shim.translate import parse_jail_conf, parse_rctl
from tests.test_translate import base_spec

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def lossless_spec() -> dict[str, Any]:
    spec = base_spec(hostname="box")
    spec["process"]["capabilities"] = {"bounding": ["CAP_NET_BIND_SERVICE"]}
    spec["linux"]["resources"] = {"memory": {"limit": 1 << 26}, "pids": {"limit": 10}}
    return spec


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["translate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_default_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "config.json", lossless_spec())
    code, out, err = run(capsys, "--to", "freebsd", "--name", "box", str(cfg))
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["jail"]["name"] == "box"
    assert doc["jail"]["params"]["path"] == str(tmp_path / "rootfs")  # bundle = the config's folder
    assert doc["jail"]["params"]["host.hostname"] == "box"
    assert doc["rctl"] == ["jail:box:memoryuse:deny=67108864", "jail:box:maxproc:deny=10"]
    assert doc["losses"] == [] and doc["mounts"] == []


def test_bundle_flag_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "config.json", lossless_spec())
    code, out, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--bundle", "/b", "--format", "jail.conf")
    assert code == 0
    assert 'path = "/b/rootfs";' in out and out.splitlines()[-1] == "}"
    assert parse_jail_conf(out).params["host.hostname"] == "box"
    code, out, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--format", "rctl")
    assert code == 0
    assert out == "jail:box:memoryuse:deny=67108864\njail:box:maxproc:deny=10\n"
    assert [str(r) for r in parse_rctl(out)] == out.split()


def test_strict_exits_3_and_prints_losses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = lossless_spec()
    spec["linux"]["resources"]["cpu"] = {"shares": 512}
    cfg = write(tmp_path / "config.json", spec)
    code, out, err = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--strict")
    assert (code, out) == (3, "")
    assert err.splitlines() == [
        "hetmig translate: lost: linux.resources.cpu.shares=512: RCTL has no proportional CPU weight (only pcpu caps)",
        "hetmig translate: refused (--strict): 1 field(s) would be lost",
    ]
    # without --strict the same input translates (exit 0) and reports the loss
    code, out, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg))
    assert code == 0
    assert json.loads(out)["losses"] == [
        {"path": "linux.resources.cpu.shares", "value": 512, "reason": "RCTL has no proportional CPU weight (only pcpu caps)"}
    ]
    # a lossless config passes --strict
    cfg2 = write(tmp_path / "ok.json", lossless_spec())
    assert run(capsys, "--to", "freebsd", "--name", "box", str(cfg2), "--strict")[0] == 0


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"ociVersion": "1.0.2",', "{f}: $: invalid JSON at line 1 column 24: Expecting property name enclosed in double quotes"),
        (
            json.dumps(base_spec(linux={"resources": {"memory": {"limit": "64m"}}})),
            "{f}: linux.resources.memory.limit: \"64m\" is not of type 'integer'",
        ),
        (
            json.dumps(base_spec(mounts=[{"destination": "/x", "options": "ro"}])),
            "{f}: mounts[0].options: \"ro\" is not of type 'array'",
        ),
        (json.dumps([1, 2]), "{f}: $: expected a JSON object (OCI runtime config), got list"),
    ],
)
def test_bad_input_exits_2_naming_file_and_json_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    cfg = write(tmp_path / "config.json", content)
    code, out, err = run(capsys, "--to", "freebsd", "--name", "box", str(cfg))
    assert (code, out) == (2, "")
    assert err == "hetmig translate: " + message.format(f=cfg) + "\n"


def test_missing_file_and_bad_name_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--to", "freebsd", "--name", "box", str(tmp_path / "nope.json"))
    assert code == 2 and err == f"hetmig translate: {tmp_path / 'nope.json'}: $: cannot read: No such file or directory\n"
    cfg = write(tmp_path / "config.json", lossless_spec())
    code, _, err = run(capsys, "--to", "freebsd", "--name", "a.b", str(cfg))
    assert code == 2 and "must not contain '.'" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--to", "freebsd", "X.json"], "--to freebsd needs --name NAME"),
        (["--to", "freebsd", "--name", "n"], "--to freebsd needs CONFIG.json"),
        (["--to", "freebsd", "--name", "n", "X.json", "--jail-conf", "j"], "--jail-conf is only valid with --to oci"),
        (["--to", "oci"], "--to oci needs JAIL.json or --jail-conf FILE [--rctl FILE]"),
        (["--to", "oci", "J.json", "--format", "rctl"], "--format is only valid with --to freebsd"),
        (["--to", "oci", "J.json", "--bundle", "/b"], "--bundle is only valid with --to freebsd"),
        (["--to", "oci", "J.json", "--jail-conf", "j"], "give either JAIL.json or --jail-conf FILE, not both"),
        (["--to", "oci", "--rctl", "r"], "--rctl FILE goes with --jail-conf FILE"),
    ],
)
def test_flag_misuse_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", f"hetmig translate: {message}\n")


def test_to_oci_from_json_and_from_jail_conf_plus_rctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "config.json", lossless_spec())
    _, out, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg))
    jail_json = write(tmp_path / "jail.json", out)
    code, out, err = run(capsys, "--to", "oci", str(jail_json))
    assert (code, err) == (0, "")
    spec = json.loads(out)
    assert spec["linux"]["resources"]["memory"] == {"limit": 1 << 26}
    assert spec["hostname"] == "box"

    _, conf, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--format", "jail.conf")
    _, rctl, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--format", "rctl")
    jc = write(tmp_path / "box.conf", conf)
    rc = write(tmp_path / "box.rctl", rctl)
    code, out, err = run(capsys, "--to", "oci", "--jail-conf", str(jc), "--rctl", str(rc))
    assert (code, err) == (0, "")
    spec2 = json.loads(out)
    assert spec2["linux"]["resources"] == spec["linux"]["resources"]
    assert spec2["hostname"] == "box"
    # process args/env are not jail parameters: the jail.conf form has none
    assert "args" not in spec2["process"]


def test_to_oci_strict_and_losses_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jc = write(tmp_path / "j.conf", 'j { path = "/j"; securelevel = 3; }\n')
    code, out, err = run(capsys, "--to", "oci", "--jail-conf", str(jc), "--strict")
    assert (code, out) == (3, "")
    assert "hetmig translate: lost: jail.params.securelevel=3: jail parameter has no OCI mapping" in err
    code, out, err = run(capsys, "--to", "oci", "--jail-conf", str(jc))
    assert code == 0 and json.loads(out)["root"]["path"] == "/j"
    assert "jail.params.securelevel" in err


def test_to_oci_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "jail.json", {"jail": {"name": "w", "params": {"vnet": 1}}})
    code, _, err = run(capsys, "--to", "oci", str(bad))
    assert code == 2
    assert err == f'hetmig translate: {bad}: jail.params["vnet"]: jail parameter vnet takes one of disable, new, inherit, got 1\n'
    jc = write(tmp_path / "j.conf", "j { path = /j; bogus.param = 1; }\n")
    code, _, err = run(capsys, "--to", "oci", "--jail-conf", str(jc))
    assert code == 2 and err == f"hetmig translate: {jc}: j.bogus.param: unknown jail parameter 'bogus.param' (see jail(8))\n"
    rc = write(tmp_path / "r.rctl", "jail:j:pcpu:throttle=10\n")
    jc2 = write(tmp_path / "j2.conf", 'j { path = "/j"; }\n')
    code, _, err = run(capsys, "--to", "oci", "--jail-conf", str(jc2), "--rctl", str(rc))
    assert code == 2 and "action throttle is only allowed for readbps" in err and "line 1" in err


def test_mapping_flag_layers_and_bad_mapping_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = lossless_spec()
    spec["linux"]["resources"]["cpu"] = {"shares": 512}
    cfg = write(tmp_path / "config.json", spec)
    site = tmp_path / "site.yaml"
    site.write_text("version: 1\nresources:\n  - oci: linux.resources.cpu.shares\n    loss: our site drops shares\n")
    site2 = tmp_path / "site2.yaml"
    site2.write_text("version: 1\nbase_params: {linux.osrelease: '6.1.0'}\n")
    code, out, _ = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--mapping", str(site), "--mapping", str(site2))
    doc = json.loads(out)
    assert code == 0
    assert doc["losses"][0]["reason"] == "our site drops shares"
    assert doc["jail"]["params"]["linux.osrelease"] == "6.1.0"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nresources:\n"
        + "".join(f"  - oci: linux.resources.x{i}\n    loss: lost here\n" for i in range(3))
        + "  - oci: linux.resources.pids.limit\n    rctl: {resource: maxproc, action: throttle}\n    convert: {kind: scale}\n"
    )
    code, out, err = run(capsys, "--to", "freebsd", "--name", "box", str(cfg), "--mapping", str(bad))
    assert (code, out) == (2, "")
    assert err == (
        f"hetmig translate: {bad}: resources[3].rctl.action: "
        "action throttle is only allowed for readbps, writebps, readiops, writeiops, not maxproc\n"
    )


def test_help_says_freebsd_is_untested_and_real_exit_codes(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "runtime_shim.cli", "translate"]
    res = subprocess.run([*env_cmd, "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0
    assert "untested on a real FreeBSD host" in " ".join(res.stdout.split())
    assert "--to freebsd --name NAME CONFIG.json [--bundle DIR] [--mapping FILE]..." in res.stdout
    spec = lossless_spec()
    spec["linux"]["resources"]["blockIO"] = {"weight": 10}
    cfg = write(tmp_path / "config.json", spec)
    res = subprocess.run([*env_cmd, "--to", "freebsd", "--name", "x", str(cfg), "--strict"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (res.returncode, res.stdout) == (3, "")
    write(tmp_path / "bad.json", "{")
    res = subprocess.run([*env_cmd, "--to", "freebsd", "--name", "x", str(tmp_path / "bad.json")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 2 and "invalid JSON" in res.stderr
    res = subprocess.run([*env_cmd, "--to", "sideways"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 2  # argparse usage error


def test_config_from_stdin_uses_cwd_as_bundle(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "runtime_shim.cli", "translate", "--to", "freebsd", "--name", "s", "-", "--format", "rctl"],
        input=json.dumps(lossless_spec()),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert (res.returncode, res.stdout) == (0, "jail:s:memoryuse:deny=67108864\njail:s:maxproc:deny=10\n"), res.stderr
