"""hetmig.json as an input: what ``verify_checksums`` (runtime_shim/backends/linux.py) does with hostile ones.

hetmig.json is read back by ``hetmig export`` and by the runtime's restore of
an image directory: every hostile case below must be bad input, and the
checksum table must never make the reader open a file outside the directory.
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


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(nested_json(100_000).encode(), id="deep-nesting"),
        pytest.param(_doc(checksums=["inventory.img"]), id="checksums-a-list"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(_doc(checksums={"inventory.img": 5}), id="sum-not-a-string"),
    ],
)
def test_hostile_documents_are_bad_input(tmp_path: Path, content: bytes) -> None:
    """Each used to escape as a non-HetmigError (a traceback from `hetmig export`)."""
    assert outcome(lambda: verify_checksums(_dir(tmp_path, content))) == "BadInputError"


def test_checksums_stay_inside_the_directory(tmp_path: Path) -> None:
    """A checksums key naming a file outside must not be read (its SHA-256 in the error was a hash oracle)."""
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
