"""Load, check and layer the YAML mapping files that drive the translator.

The shipped ``default.yaml`` is read first, then every user file in order;
a later file replaces entries of an earlier one by key (namespace type and
mode, resource ``oci`` path, capability name, mount type, device path,
rlimit type, loss path) and adds new ones. Every file is checked against
``mapping.schema.json`` (JSON Schema draft 2020-12) and against the FreeBSD
facts (jail parameter names and types, RCTL resource/action compatibility).

Refuses: unreadable files, YAML syntax errors, files over MAX_MAPPING_BYTES,
documents over MAX_NODES values (YAML aliases counted where used: alias
bombs), nested over MAX_DEPTH or holding integers beyond 64 bits, schema
violations and FreeBSD-impossible rules, each with :class:`MappingError` naming the file,
the YAML path of the bad entry (``resources[3].rctl.action``) and the reason.
It never touches the OS beyond reading the files it is given.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from capture.errors import MappingError

SHIPPED_FILES: tuple[str, ...] = ("default.yaml",)
SCHEMA_FILE = "mapping.schema.json"
MAX_MAPPING_BYTES = 1 << 20  # default.yaml is ~10 KiB
MAX_NODES = 100_000  # values in one file counted through aliases (a billion-laughs bomb is 10**9)
MAX_DEPTH = 64  # nesting of one file (default.yaml: 6)

ParamValue = str | int | bool


class NsMode(Enum):
    """How an OCI namespace entry relates to the host."""

    NEW = "new"  # entry without path
    PATH = "path"  # entry joining an existing namespace
    SHARED = "shared"  # no entry: the host's namespace


class ConvertKind(Enum):
    SCALE = "scale"
    DIFFERENCE = "difference"
    PERCENT = "percent"
    DEVICE_RATE = "device_rate"


@dataclass(frozen=True, slots=True)
class NsRule:
    params: Mapping[str, ParamValue]
    loss: str | None


@dataclass(frozen=True, slots=True)
class NsTable:
    rules: Mapping[NsMode, NsRule]
    reverse_default: NsMode | None


@dataclass(frozen=True, slots=True)
class ResourceRule:
    oci: str
    rctl_resource: str | None = None
    rctl_action: str | None = None
    kind: ConvertKind | None = None
    factor: int = 1
    minus: str | None = None
    per: str | None = None
    default_per: int = 100000
    unlimited: tuple[int, ...] = ()
    exec_phase: str | None = None
    exec_command: str | None = None
    loss: str | None = None


@dataclass(frozen=True, slots=True)
class CapRule:
    allow: tuple[str, ...]
    explicit_false: bool
    loss: str | None


@dataclass(frozen=True, slots=True)
class MountRule:
    fstype: str | None
    devfs: bool
    keep: tuple[str, ...]
    implied: Mapping[str, str]
    loss: str | None


@dataclass(frozen=True, slots=True)
class DeviceRule:
    devfs: str | None
    loss: str | None
    type: str | None = None
    major: int | None = None
    minor: int | None = None


@dataclass(frozen=True, slots=True)
class DevfsConfig:
    destination: str
    ruleset_base: int
    ruleset_span: int
    implied_options: Mapping[str, str]
    default_devices: Mapping[str, str]
    devices: Mapping[str, DeviceRule]


@dataclass(frozen=True, slots=True)
class RlimitRule:
    freebsd: str | None
    loss: str | None


@dataclass(frozen=True, slots=True)
class MappingRules:
    """The merged, checked mapping: what the translator reads."""

    sources: tuple[str, ...]
    base_params: Mapping[str, ParamValue]
    namespaces: Mapping[str, NsTable]
    resources: tuple[ResourceRule, ...]
    capabilities: Mapping[str, CapRule]
    mounts: Mapping[str, MountRule]
    devfs: DevfsConfig
    rlimits: Mapping[str, RlimitRule]
    losses: Mapping[str, str]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def resource(self, oci: str) -> ResourceRule | None:
        for rule in self.resources:
            if rule.oci == oci:
                return rule
        return None


# ------------------------------------------------------------------ paths

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def yaml_path(parts: Sequence[str | int]) -> str:
    """``['resources', 3, 'rctl', 'action']`` -> ``resources[3].rctl.action``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


# ------------------------------------------------------------------ reading


def _shipped_dir() -> Path:
    return Path(str(importlib_resources.files("mappings")))


def shipped_paths() -> tuple[Path, ...]:
    """The mapping files that ship inside the package, in load order."""
    base = _shipped_dir()
    return tuple(base / name for name in SHIPPED_FILES)


_SCHEMA_CACHE: dict[str, Any] = {}


def mapping_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every mapping file must satisfy."""
    if "schema" not in _SCHEMA_CACHE:
        text = (_shipped_dir() / SCHEMA_FILE).read_text(encoding="utf-8")
        _SCHEMA_CACHE["schema"] = json.loads(text)
    schema: dict[str, Any] = _SCHEMA_CACHE["schema"]
    return schema


def read_mapping_file(path: str | Path) -> dict[str, Any]:
    """Parse one YAML mapping file and check it (schema + FreeBSD facts)."""
    import yaml

    source = str(path)
    try:
        if Path(path).stat().st_size > MAX_MAPPING_BYTES:
            raise MappingError(source, "", f"larger than {MAX_MAPPING_BYTES} bytes (not a mapping file)")
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise MappingError(source, "", f"cannot read mapping file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise MappingError(source, "", f"not UTF-8 text: {err}") from err
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise MappingError(source, "", f"invalid YAML{where}: {problem}") from err
    except (ValueError, RecursionError) as err:  # an int beyond the digit limit; nesting beyond the stack
        raise MappingError(source, "", f"invalid YAML: {type(err).__name__}: {str(err)[:200]}") from None
    _check_size(data, source)
    if not isinstance(data, dict):
        raise MappingError(source, "", f"top level must be a mapping, got {type(data).__name__}")
    check_mapping_data(data, source)
    return data


def _check_size(data: Any, source: str) -> None:
    """Refuse more than MAX_NODES values (aliases counted each time they are used), MAX_DEPTH nesting
    or integers beyond 64 bits.

    Runs before the schema check: jsonschema would walk an alias bomb's 10**9
    nodes (and print them in its message).
    """
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise MappingError(source, "", f"more than {MAX_NODES} nodes (counting YAML aliases where used)")
        if depth > MAX_DEPTH:
            raise MappingError(source, "", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, int) and node.bit_length() > 64:  # repr() of a 5000-digit int raises ValueError
            raise MappingError(source, "", f"integer of {node.bit_length()} bits (at most 64)")


def check_mapping_data(data: Mapping[str, Any], source: str) -> None:
    """Raise MappingError(source, YAML path, reason) unless *data* is a valid mapping."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(mapping_schema())
    error = best_match(validator.iter_errors(data), key=_error_rank)
    if error is not None:
        raise MappingError(source, yaml_path(list(error.absolute_path)), _schema_reason(error))
    _check_freebsd_facts(data, source)


def _error_rank(error: Any) -> tuple[int, int]:
    # Prefer the deepest error, then one that is not a oneOf/anyOf summary.
    return (-len(error.absolute_path), 0 if error.validator in ("oneOf", "anyOf") else 1)


def _schema_reason(error: Any) -> str:
    validator = error.validator
    if validator == "additionalProperties":
        return f"{error.message} (not a field of this mapping entry)"
    if validator == "oneOf":
        forms = [_describe_form(alt) for alt in error.validator_value]
        return "matches none or more than one of the allowed forms: " + " | ".join(forms)
    if validator == "required":
        return str(error.message)
    return str(error.message)


def _describe_form(alt: Mapping[str, Any]) -> str:
    kind = (alt.get("properties") or {}).get("kind") or {}
    if "const" in kind:
        fields = [k for k in (alt.get("properties") or {}) if k != "kind"]
        return f"kind: {kind['const']}" + (f" ({', '.join(fields)})" if fields else "")
    required = alt.get("required") or []
    return "+".join(required) if required else "(other)"


def _check_freebsd_facts(data: Mapping[str, Any], source: str) -> None:
    from runtime_shim.translate.freebsd import ALLOW_PARAMS, RCTL_RESOURCES, check_param, check_rctl

    def bad(parts: Sequence[str | int], reason: str) -> MappingError:
        return MappingError(source, yaml_path(parts), reason)

    for name, value in (data.get("base_params") or {}).items():
        reason = check_param(name, value)
        if reason:
            raise bad(["base_params", name], reason)
    for ns_type, table in (data.get("namespaces") or {}).items():
        for mode in ("new", "path", "shared"):
            rule = table.get(mode)
            if rule is None:
                continue
            for name, value in (rule.get("params") or {}).items():
                reason = check_param(name, value)
                if reason:
                    raise bad(["namespaces", ns_type, mode, "params", name], reason)
        default = table.get("reverse_default")
        if default is not None and table.get(default, {}).get("loss") is not None:
            raise bad(["namespaces", ns_type, "reverse_default"], f"mode {default!r} is a loss rule")
    seen: dict[str, int] = {}
    for i, entry in enumerate(data.get("resources") or []):
        oci = entry["oci"]
        if oci in seen:
            raise bad(["resources", i, "oci"], f"{oci} is already mapped by resources[{seen[oci]}]")
        seen[oci] = i
        if not oci.startswith("linux.resources."):
            raise bad(["resources", i, "oci"], f"{oci} is not under linux.resources")
        rctl = entry.get("rctl")
        if rctl is not None:
            if rctl["resource"] not in RCTL_RESOURCES:
                raise bad(["resources", i, "rctl", "resource"], f"unknown RCTL resource {rctl['resource']!r} (see rctl(8))")
            reason = check_rctl(rctl["resource"], rctl["action"])
            if reason:
                raise bad(["resources", i, "rctl", "action"], reason)
    for cap, rule in (data.get("capabilities") or {}).items():
        for j, name in enumerate(rule.get("allow") or []):
            if name not in ALLOW_PARAMS:
                raise bad(["capabilities", cap, "allow", j], f"unknown jail parameter {name!r} (see jail(8) allow.*)")
    devfs = data.get("devfs") or {}
    if "ruleset_base" in devfs and "ruleset_span" in devfs:
        if devfs["ruleset_base"] + devfs["ruleset_span"] > 65536:
            raise bad(["devfs", "ruleset_span"], "ruleset_base + ruleset_span exceeds 65535 (devfs_ruleset range)")


# ------------------------------------------------------------------ layering


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if key == "version":
            out[key] = value
        elif key in ("base_params", "capabilities", "mounts", "rlimits"):
            merged = dict(out.get(key) or {})
            merged.update(copy.deepcopy(value))
            out[key] = merged
        elif key == "namespaces":
            merged_ns = dict(out.get(key) or {})
            for ns_type, table in value.items():
                t = dict(merged_ns.get(ns_type) or {})
                t.update(copy.deepcopy(table))
                merged_ns[ns_type] = t
            out[key] = merged_ns
        elif key == "devfs":
            d = dict(out.get(key) or {})
            for k, v in value.items():
                if k in ("implied_options", "default_devices", "devices"):
                    inner = dict(d.get(k) or {})
                    inner.update(copy.deepcopy(v))
                    d[k] = inner
                else:
                    d[k] = v
            out[key] = d
        elif key in ("resources", "losses"):
            items: list[dict[str, Any]] = list(out.get(key) or [])
            index = {entry["oci"]: n for n, entry in enumerate(items)}
            for entry in value:
                if entry["oci"] in index:
                    items[index[entry["oci"]]] = copy.deepcopy(entry)
                else:
                    index[entry["oci"]] = len(items)
                    items.append(copy.deepcopy(entry))
            out[key] = items
    return out


def load_rules(extra: Sequence[str | Path] = ()) -> MappingRules:
    """Shipped mapping files, then *extra* user files layered on top (later wins)."""
    sources = [*shipped_paths(), *(Path(p) for p in extra)]
    merged: dict[str, Any] = {}
    for path in sources:
        merged = _merge(merged, read_mapping_file(path))
    return _build(merged, tuple(str(p) for p in sources))


def _build(data: Mapping[str, Any], sources: tuple[str, ...]) -> MappingRules:
    source = sources[-1] if sources else "<mapping>"
    namespaces: dict[str, NsTable] = {}
    for ns_type, table in (data.get("namespaces") or {}).items():
        rules = {
            NsMode(mode): NsRule(params=dict(rule.get("params") or {}), loss=rule.get("loss"))
            for mode, rule in table.items()
            if mode in ("new", "path", "shared")
        }
        default = table.get("reverse_default")
        namespaces[ns_type] = NsTable(rules=rules, reverse_default=NsMode(default) if default else None)
    resources = []
    for entry in data.get("resources") or []:
        rctl = entry.get("rctl") or {}
        conv = entry.get("convert") or {}
        ex = entry.get("exec") or {}
        resources.append(
            ResourceRule(
                oci=entry["oci"],
                rctl_resource=rctl.get("resource"),
                rctl_action=rctl.get("action"),
                kind=ConvertKind(conv["kind"]) if conv else None,
                factor=int(conv.get("factor", 1)),
                minus=conv.get("minus"),
                per=conv.get("per"),
                default_per=int(conv.get("default_per", 100000)),
                unlimited=tuple(entry.get("unlimited") or ()),
                exec_phase=ex.get("phase"),
                exec_command=ex.get("command"),
                loss=entry.get("loss"),
            )
        )
    caps = {
        name: CapRule(
            allow=tuple(rule.get("allow") or ()),
            explicit_false=bool(rule.get("explicit_false", False)),
            loss=rule.get("loss"),
        )
        for name, rule in (data.get("capabilities") or {}).items()
    }
    mounts = {
        name: MountRule(
            fstype=rule.get("fstype"),
            devfs=bool(rule.get("devfs", False)),
            keep=tuple((rule.get("options") or {}).get("keep") or ()),
            implied=dict((rule.get("options") or {}).get("implied") or {}),
            loss=rule.get("loss"),
        )
        for name, rule in (data.get("mounts") or {}).items()
    }
    d = data.get("devfs") or {}
    for required in ("destination", "ruleset_base", "ruleset_span"):
        if required not in d:
            raise MappingError(source, yaml_path(["devfs", required]), "required after layering all mapping files")
    devfs = DevfsConfig(
        destination=d["destination"],
        ruleset_base=int(d["ruleset_base"]),
        ruleset_span=int(d["ruleset_span"]),
        implied_options=dict(d.get("implied_options") or {}),
        default_devices=dict(d.get("default_devices") or {}),
        devices={
            path: DeviceRule(
                devfs=rule.get("devfs"),
                loss=rule.get("loss"),
                type=rule.get("type"),
                major=rule.get("major"),
                minor=rule.get("minor"),
            )
            for path, rule in (d.get("devices") or {}).items()
        },
    )
    rlimits = {
        name: RlimitRule(freebsd=rule.get("freebsd"), loss=rule.get("loss"))
        for name, rule in (data.get("rlimits") or {}).items()
    }
    losses = {entry["oci"]: entry["reason"] for entry in data.get("losses") or []}
    return MappingRules(
        sources=sources,
        base_params=dict(data.get("base_params") or {}),
        namespaces=namespaces,
        resources=tuple(resources),
        capabilities=caps,
        mounts=mounts,
        devfs=devfs,
        rlimits=rlimits,
        losses=losses,
        raw=copy.deepcopy(dict(data)),
    )
