"""Validation of OCI config.json input and JSON-path helpers.

Checks the parts of an OCI runtime config (runtime-spec 1.x) that the
translator reads against ``oci-config.schema.json`` (JSON Schema draft
2020-12); fields it does not read are allowed and reported as losses by the
translator. Refuses invalid input with :class:`SpecError` naming the file,
the JSON path (``linux.resources.memory.limit``) and the reason. Pure: no
file or OS access beyond reading the packaged schema.
"""

from __future__ import annotations

import json
import re
from importlib import resources as importlib_resources
from typing import Any, Iterator, Sequence

from capture.errors import SpecError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CACHE: dict[str, Any] = {}

Path_ = tuple[str | int, ...]


def json_path(parts: Sequence[str | int]) -> str:
    """``('mounts', 3, 'options', 1)`` -> ``mounts[3].options[1]``; odd keys in ["..."]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def split_dotted(path: str) -> tuple[str, ...]:
    """``linux.resources.cpu.quota`` -> ('linux', 'resources', 'cpu', 'quota')."""
    return tuple(path.split("."))


def get_path(doc: Any, parts: Sequence[str | int]) -> Any:
    """Value at *parts* in *doc*, or ``None`` when any step is missing."""
    cur = doc
    for part in parts:
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return None
            cur = cur[part]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
    return cur


def set_path(doc: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set *value* at the dotted key path, creating objects on the way."""
    cur = doc
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def oci_schema() -> dict[str, Any]:
    if "oci" not in _CACHE:
        text = importlib_resources.files("runtime_shim.translate").joinpath("oci-config.schema.json").read_text("utf-8")
        _CACHE["oci"] = json.loads(text)
    schema: dict[str, Any] = _CACHE["oci"]
    return schema


def validate_oci(spec: Any, source: str) -> None:
    """Raise SpecError(source, JSON path, reason) unless *spec* fits the schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if not isinstance(spec, dict):
        raise SpecError(source, "", f"expected a JSON object (OCI runtime config), got {type(spec).__name__}")
    validator = Draft202012Validator(oci_schema())
    error = best_match(validator.iter_errors(spec), key=lambda e: -len(e.absolute_path))
    if error is not None:
        raise SpecError(source, json_path(list(error.absolute_path)), _reason(error))


def _reason(error: Any) -> str:
    if error.validator == "type":
        return f"{json.dumps(error.instance)} is not of type {error.validator_value!r}"
    if error.validator == "pattern":
        return f"{json.dumps(error.instance)} does not match {error.validator_value!r}"
    return str(error.message)


def load_json_text(text: str, source: str) -> Any:
    """Parse JSON text; SpecError with line/column on syntax errors."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(source, "", f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err
    except RecursionError:
        raise SpecError(source, "", "invalid JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer beyond the interpreter's digit limit
        raise SpecError(source, "", f"invalid JSON: {err}") from None


def iter_uncovered(doc: Any, covered: set[Path_], prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Highest nodes of *doc* with no covered prefix and no covered descendant.

    Empty objects and lists carry no configuration and are not yielded.
    """
    if prefix in covered or any(prefix[:n] in covered for n in range(len(prefix))):
        return
    has_desc = any(len(c) > len(prefix) and c[: len(prefix)] == prefix for c in covered)
    if not has_desc:
        if doc in ({}, [], None):
            return
        yield prefix, doc
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from iter_uncovered(value, covered, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from iter_uncovered(value, covered, prefix + (i,))
