"""``hetmig image decode|encode|show`` against real crit on real CRIU dumps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from capture.images import image_name_for
from runtime_shim.cli import main
from tests.test_images_dumps import SCENARIOS, Dump, crit_batch, crit_x, get_dumps

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dump]:
    return get_dumps(tmp_path_factory)


def _hetmig(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_decode_pretty_matches_crit(dumps: dict[str, Dump], scenario: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps[scenario]
    files = [p.name for p in d.image_files() if image_name_for(p.name) != "PAGES"]
    theirs = crit_batch(d.dir, ["decode", "--pretty", "-i", "{}"], files)
    for name in files:
        code, out, err = _hetmig(capsys, "image", "decode", str(d.dir / name), "--pretty")
        assert code == 0, err
        assert json.loads(out) == json.loads(theirs[name]), name
        # Same key order and indentation too: the text is identical.
        assert out == theirs[name], name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_decode_plain_matches_crit(dumps: dict[str, Dump], scenario: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps[scenario]
    files = [p.name for p in d.image_files() if image_name_for(p.name) != "PAGES"]
    theirs = crit_batch(d.dir, ["decode", "-i", "{}"], files)
    for name in files:
        code, out, err = _hetmig(capsys, "image", "decode", str(d.dir / name))
        assert code == 0, err
        assert json.loads(out) == json.loads(theirs[name]), name


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("what", ["ps", "fds", "mems", "rss"])
def test_show_matches_crit_x(dumps: dict[str, Dump], scenario: str, what: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps[scenario]
    code, out, err = _hetmig(capsys, "image", "show", str(d.dir), what)
    assert code == 0, err
    theirs = crit_x(d.dir, what)
    assert len(theirs.splitlines()) >= 2
    assert out.splitlines() == theirs.splitlines()
    assert out == theirs


def test_encode_inverts_decode(dumps: dict[str, Dump], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps["pipeline"]
    for name in ("core-%d.img" % d.root_pid, "pipes-data.img", "mm-%d.img" % d.root_pid):
        src = d.dir / name
        for flag in (["--pretty"], []):
            js = tmp_path / f"{name}.json"
            code, _, err = _hetmig(capsys, "image", "decode", str(src), *flag, "-o", str(js))
            assert code == 0, err
            out = tmp_path / name
            code, _, err = _hetmig(capsys, "image", "encode", str(js), "-o", str(out))
            assert code == 0, err
            assert out.read_bytes() == src.read_bytes()


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, dumps: dict[str, Dump],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "core-1.img"
    bad.write_bytes(b"\x19\x43\x56\x54\x47\x38\x05\x55\xff\xff\xff\x7f")
    code, out, err = _hetmig(capsys, "image", "decode", str(bad))
    assert code == 2 and out == ""
    assert err.startswith("hetmig image: ") and str(bad) in err and "magic=0x55053847" in err
    assert len(err.strip().splitlines()) == 1
    pages = next(dumps["sleep"].dir.glob("pages-*.img"))
    code, out, err = _hetmig(capsys, "image", "decode", str(pages))
    assert code == 2 and "raw images have no JSON form" in err
    code, out, err = _hetmig(capsys, "image", "show", str(tmp_path), "ps")
    assert code == 2 and "no pstree.img" in err
    code, out, err = _hetmig(capsys, "image", "decode", str(tmp_path / "missing.img"))
    assert code == 2 and "cannot read" in err


def test_real_command_line_entry(dumps: dict[str, Dump]) -> None:
    d = dumps["sleep"]
    res = subprocess.run([sys.executable, "-m", "runtime_shim.cli", "image", "show", str(d.dir),
                          "ps"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == crit_x(d.dir, "ps")
    assert res.stdout.splitlines()[1].split()[-1] == "busybox"
