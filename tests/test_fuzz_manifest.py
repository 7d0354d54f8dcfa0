"""hetmig.json as an input: what ``verify_checksums`` (runtime_shim/backends/linux.py) does with hostile ones.

hetmig.json is read back by ``hetmig export`` and by the runtime's restore of
an image directory. The reader lives outside the files this fuzzing task
may change, so the hostile cases it mishandles are recorded here as strict
xfails: each asserts the right behaviour and fails today with the exception
named; once the reader is fixed the xfail turns into an XPASS, which strict
mode reports as a failure, so the marker is removed with the fix. See docs/security.md section 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capture.errors import HetmigError
from runtime_shim.backends.linux import HETMIG_JSON_VERSION, verify_checksums
from tests.test_fuzz_support import nested_json, outcome


def _dir(tmp_path: Path, content: bytes) -> Path:
    (tmp_path / "hetmig.json").write_bytes(content)
    (tmp_path / "inventory.img").write_bytes(b"x")
    return tmp_path


def _doc(**fields: object) -> bytes:
    return json.dumps({"version": HETMIG_JSON_VERSION, **fields}).encode()


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", _doc(checksums={"inventory.img": "0" * 64}), _doc(checksums={"nope.img": "0" * 64}),
     json.dumps({"version": 999}).encode()],
    ids=["empty", "truncated", "list", "bad-sum", "missing-file", "bad-version"],
)
def test_handled_cases_are_bad_input(tmp_path: Path, content: bytes) -> None:
    assert outcome(lambda: verify_checksums(_dir(tmp_path, content))) == "BadInputError"


GAP = "verify_checksums in runtime_shim/backends/linux.py (outside this task's files); docs/security.md section 8"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(nested_json(100_000).encode(), id="deep-nesting",
                     marks=pytest.mark.xfail(strict=True, raises=RecursionError, reason=GAP)),
        pytest.param(_doc(checksums=["inventory.img"]), id="checksums-a-list",
                     marks=pytest.mark.xfail(strict=True, raises=AttributeError, reason=GAP)),
        pytest.param(b"\xff\xfe", id="not-utf8",
                     marks=pytest.mark.xfail(strict=True, raises=UnicodeDecodeError, reason=GAP)),
    ],
)
def test_known_crashes(tmp_path: Path, content: bytes) -> None:
    """Should be bad input; each escapes as a non-HetmigError today (a traceback from `hetmig export`)."""
    assert outcome(lambda: verify_checksums(_dir(tmp_path, content))) == "BadInputError"


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=GAP)
def test_checksums_stay_inside_the_directory(tmp_path: Path) -> None:
    """A checksums key naming a file outside must not be read: today its SHA-256 is printed (a hash oracle)."""
    import hashlib

    target = tmp_path / "outside"
    target.write_text("secret\n")
    d = tmp_path / "img"
    d.mkdir()
    with pytest.raises(HetmigError) as err:
        verify_checksums(_dir(d, _doc(checksums={str(target): "0" * 64})))
    assert hashlib.sha256(b"secret\n").hexdigest() not in str(err.value), "read and hashed a file outside"
    with pytest.raises(HetmigError) as err:
        verify_checksums(_dir(d, _doc(checksums={"../outside": "0" * 64})))
    assert hashlib.sha256(b"secret\n").hexdigest() not in str(err.value), "read and hashed ../outside"
