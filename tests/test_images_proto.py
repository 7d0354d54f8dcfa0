"""proto/: the committed generated modules are current, and wire-compatible with CRIU.

The compatibility test dumps every message and enum descriptor (field names,
numbers, types, labels, defaults, packing and the (criu) options) from CRIU
4.1's own pycriu inside the trixie root and from our generated modules, and
requires the two to be equal.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import CRIU_ROOT, require

REPO = Path(__file__).resolve().parent.parent

# Walks the descriptors of every *_pb2 module in a directory and prints JSON.
# Runs under our venv (protobuf 7) and under trixie's python3 (pycriu), so it
# sticks to the descriptor API both have.
_DUMPER = r'''
import glob, importlib, json, os, sys
from google.protobuf.descriptor import FieldDescriptor as FD
directory, package, opts_module = sys.argv[1], sys.argv[2], sys.argv[3]
if package:
    sys.path.insert(0, os.path.dirname(directory))
else:
    sys.path.insert(0, directory)
opts = importlib.import_module(opts_module)
def label(f):
    if hasattr(f, "label"):
        return {1: "optional", 2: "required", 3: "repeated"}[f.label]
    return "repeated" if f.is_repeated else ("required" if f.is_required else "optional")
def options(f):
    o = f.GetOptions()
    if not o.HasExtension(opts.criu):
        return {}
    ext = o.Extensions[opts.criu]
    return {d.name: v for d, v in ext.ListFields()}
out = {}
def walk(m):
    fields = {}
    for f in m.fields:
        tn = f.message_type.full_name if f.message_type else (
            f.enum_type.full_name if f.enum_type else None)
        fields[f.name] = [f.number, f.type, label(f), tn, options(f),
                          repr(f.default_value) if f.has_default_value else None,
                          bool(f.GetOptions().packed)]
    out[m.full_name] = fields
    for n in m.nested_types:
        walk(n)
    for e in m.enum_types:
        out["enum " + e.full_name] = {v.name: v.number for v in e.values}
for path in sorted(glob.glob(os.path.join(directory, "*_pb2.py"))):
    name = os.path.basename(path)[:-3]
    mod = importlib.import_module((package + "." if package else "") + name)
    for m in mod.DESCRIPTOR.message_types_by_name.values():
        walk(m)
    for e in mod.DESCRIPTOR.enum_types_by_name.values():
        out["enum " + e.full_name] = {v.name: v.number for v in e.values}
print(json.dumps(out, sort_keys=True))
'''

def test_generated_modules_are_up_to_date() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) not installed")
    res = subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_every_proto_has_a_generated_module() -> None:
    protos = sorted(p.stem.replace("-", "_") for p in (REPO / "proto").glob("*.proto"))
    assert len(protos) >= 60
    for stem in protos:
        mod = importlib.import_module(f"proto.{stem}_pb2")
        assert mod.DESCRIPTOR.name == f"proto/{stem.replace('_', '-')}.proto" or \
            mod.DESCRIPTOR.name == f"proto/{stem}.proto"


def _ours() -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-c", _DUMPER, str(REPO / "proto"), "proto",
                          "proto.opts_pb2"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    result: dict[str, Any] = json.loads(res.stdout)
    return result


def _criu() -> dict[str, Any]:
    require("crit")
    images = CRIU_ROOT / "usr/lib/python3/dist-packages/pycriu/images"
    if not images.is_dir():
        pytest.skip("pycriu not installed in the CRIU root (run scripts/provision.sh)")
    script = CRIU_ROOT / "tmp" / f"hetmig-desc-{uuid.uuid4().hex}.py"
    script.write_text(_DUMPER)
    try:
        res = subprocess.run(["chroot", str(CRIU_ROOT), "python3", "/tmp/" + script.name,
                              "/usr/lib/python3/dist-packages/pycriu/images", "", "opts_pb2"],
                             capture_output=True, text=True, timeout=120)
    finally:
        script.unlink()
    assert res.returncode == 0, res.stderr
    result: dict[str, Any] = json.loads(res.stdout)
    return result


@pytest.mark.integration
def test_descriptors_match_criu() -> None:
    ours, theirs = _ours(), _criu()
    assert len(theirs) > 150
    missing = sorted(n for n in theirs if n not in ours)
    assert not missing, f"messages/enums CRIU has and we lack: {missing}"
    extra = sorted(n for n in ours if n not in theirs)
    assert not extra, f"messages/enums we have and CRIU lacks: {extra}"
    for name, fields in ours.items():
        assert fields == theirs[name], name
    assert ours == theirs
