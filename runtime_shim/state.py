"""hetmig's state directory: one JSON record per migratable container.

Layout (default root ``/run/hetmig``, overridden by ``--state-dir`` or the
``HETMIG_STATE_DIR`` environment variable)::

    ROOT/containers/ID.json              the record the hook wrote at createRuntime
    ROOT/containers/ID.translation.json  its FreeBSD translation, written later
                                         (by the hook's background worker or by
                                         ``hetmig ps``)

Records are written atomically: the content goes to a temporary file in the
same directory first, which is then renamed over the record (updates) or
hard-linked to the record name (creation, which fails if the record exists:
the O_EXCL semantics without a window where a half-written file is visible).

This module only stores and loads; it never looks at processes or runs a
runtime. It refuses container ids that could escape the directory (``/``,
``..``, NUL, leading dot) and records that are not the JSON it wrote.

Import cost matters: the OCI hook imports this module on every container
start, so it imports nothing beyond the standard library's basics.
"""

from __future__ import annotations

import os
import time

from capture.errors import BadInputError, PlatformError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time on the hook's hot path
    from typing import Any, Iterator, Literal

    TranslationStateName = Literal["pending", "ok", "failed"]

DEFAULT_STATE_DIR = "/run/hetmig"
STATE_DIR_ENV = "HETMIG_STATE_DIR"
RECORD_VERSION = 1
MAX_ID_LEN = 255 - len(".translation.json")  # the longest file name made from an id fits NAME_MAX
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | frozenset("_.+-")


# -- JSON without the json package --------------------------------------------
# ``import json`` pulls in ``re`` and ``enum`` (about 8 ms on the CI VM), paid
# twice per container by the hook (createRuntime + poststop). The C scanner and
# string encoder of ``_json`` do the work without them.


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")


_scanner: Any = None


def loads(text: str, source: str) -> Any:
    """Parse one JSON document (no NaN/Infinity); BadInputError naming *source*."""
    global _scanner
    if _scanner is None:
        import _json  # CPython's C accelerator of the json package

        make_scanner: Any = getattr(_json, "make_scanner")
        _scanner = make_scanner(_ScanContext())
    doc = text.strip(" \t\n\r")
    if not doc:
        raise BadInputError(f"{source}: empty (expected JSON)")
    try:
        value, end = _scanner(doc, 0)
    except StopIteration as err:
        raise BadInputError(f"{source}: not JSON (syntax error at character {err.value})") from None
    except ValueError as err:
        raise BadInputError(f"{source}: not JSON ({err})") from None
    except RecursionError:
        raise BadInputError(f"{source}: not JSON (nested too deeply)") from None
    if end != len(doc):
        raise BadInputError(f"{source}: not JSON (extra data at character {end})")
    return value


def dumps(value: Any) -> str:
    """Serialise dicts, lists, str, int, finite float, bool and None; keys sorted."""
    from _json import encode_basestring_ascii as enc

    out: list[str] = []

    def emit(v: Any) -> None:
        if v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif isinstance(v, str):
            out.append(enc(v))
        elif isinstance(v, int):
            out.append(int.__repr__(v))
        elif isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"cannot store non-finite float {v!r} in a record")
            out.append(float.__repr__(v))
        elif isinstance(v, dict):
            out.append("{")
            for i, key in enumerate(sorted(v)):
                if not isinstance(key, str):
                    raise TypeError(f"record keys must be strings, got {key!r}")
                if i:
                    out.append(", ")
                out.append(enc(key))
                out.append(": ")
                emit(v[key])
            out.append("}")
        elif isinstance(v, (list, tuple)):
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(", ")
                emit(item)
            out.append("]")
        else:
            raise TypeError(f"cannot store {type(v).__name__} in a record")

    emit(value)
    return "".join(out)


class TranslationState:
    """Where the pre-computed FreeBSD translation of a container stands.

    A closed set of three strings rather than an ``Enum``: ``enum`` costs
    about 5 ms of import time on the hook's hot path.
    """

    PENDING: TranslationStateName = "pending"  # not computed yet, or no translator then
    OK: TranslationStateName = "ok"  # computed; see losses
    FAILED: TranslationStateName = "failed"  # the spec cannot be translated; see error
    ALL: tuple[str, ...] = ("pending", "ok", "failed")


class _Frozen:
    """Slotted, immutable value object (a hand-written frozen dataclass).

    ``dataclasses`` imports ``inspect`` (about 8 ms here); the hook imports this
    module on every container start, so the records are written by hand.
    """

    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (tried to set {name})")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # holds dicts

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Translation(_Frozen):
    """The FreeBSD translation status of one container."""

    __slots__ = ("state", "losses", "error", "plan")
    state: TranslationStateName
    losses: tuple[str, ...]
    error: str
    plan: dict[str, Any] | None

    def __init__(
        self,
        state: TranslationStateName,
        losses: tuple[str, ...] = (),
        error: str = "",
        plan: dict[str, Any] | None = None,
    ) -> None:
        if state not in TranslationState.ALL:
            raise ValueError(f"translation state {state!r} (expected one of {TranslationState.ALL})")
        self._set("state", state)
        self._set("losses", tuple(losses))
        self._set("error", error)
        self._set("plan", plan)

    @property
    def strict_ok(self) -> bool:
        """True when ``--strict`` translation would succeed (computed, no loss)."""
        return self.state == TranslationState.OK and not self.losses

    def summary(self) -> str:
        if self.state == TranslationState.PENDING:
            return "pending"
        if self.state == TranslationState.FAILED:
            return "failed"
        return "strict-ok" if self.strict_ok else f"{len(self.losses)} losses"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "losses": list(self.losses),
            "loss_count": len(self.losses),
            "strict_ok": self.strict_ok,
            "error": self.error,
            "plan": self.plan,
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> "Translation":
        if not isinstance(data, dict):
            raise BadInputError(f"{source}: translation: expected an object, got {type(data).__name__}")
        state = data.get("state")
        if state not in TranslationState.ALL:
            raise BadInputError(f"{source}: translation.state={state!r} (expected pending, ok or failed)")
        losses = data.get("losses", [])
        if not isinstance(losses, list):
            raise BadInputError(f"{source}: translation.losses: expected a list")
        plan = data.get("plan")
        return cls(
            state=state,
            losses=tuple(str(x) for x in losses),
            error=str(data.get("error", "")),
            plan=plan if isinstance(plan, dict) else None,
        )


PENDING = Translation("pending")


class ContainerRecord(_Frozen):
    """What hetmig knows about one running migratable container."""

    __slots__ = (
        "id",
        "pid",
        "bundle",
        "runtime",
        "runtime_root",
        "manager",
        "created",
        "annotations",
        "translation",
    )
    id: str
    pid: int
    bundle: str
    runtime: str  # the OCI runtime that ran the hook: runc, crun, jail, ...
    runtime_root: str  # runc --root, "" for the runtime's default
    manager: str  # podman, or "" when the runtime was driven directly
    created: float
    annotations: dict[str, str]
    translation: Translation

    def __init__(
        self,
        id: str,
        pid: int,
        bundle: str,
        runtime: str,
        runtime_root: str = "",
        manager: str = "",
        created: float = 0.0,
        annotations: dict[str, str] | None = None,
        translation: Translation = PENDING,
    ) -> None:
        self._set("id", id)
        self._set("pid", pid)
        self._set("bundle", bundle)
        self._set("runtime", runtime)
        self._set("runtime_root", runtime_root)
        self._set("manager", manager)
        self._set("created", created)
        self._set("annotations", dict(annotations or {}))
        self._set("translation", translation)

    def with_translation(self, translation: Translation) -> "ContainerRecord":
        return ContainerRecord(
            self.id,
            self.pid,
            self.bundle,
            self.runtime,
            self.runtime_root,
            self.manager,
            self.created,
            self.annotations,
            translation,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "id": self.id,
            "pid": self.pid,
            "bundle": self.bundle,
            "runtime": self.runtime,
            "runtime_root": self.runtime_root,
            "manager": self.manager,
            "created": self.created,
            "annotations": dict(self.annotations),
            "translation": self.translation.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> "ContainerRecord":
        if not isinstance(data, dict):
            raise BadInputError(f"{source}: expected a JSON object")
        if data.get("version") != RECORD_VERSION:
            raise BadInputError(f"{source}: version={data.get('version')!r} (expected {RECORD_VERSION})")
        for key, typ in (("id", str), ("pid", int), ("bundle", str), ("runtime", str)):
            if not isinstance(data.get(key), typ):
                raise BadInputError(f"{source}: {key}={data.get(key)!r} (expected {typ.__name__})")
        ann = data.get("annotations", {})
        if not isinstance(ann, dict):
            raise BadInputError(f"{source}: annotations: expected an object")
        return cls(
            id=data["id"],
            pid=data["pid"],
            bundle=data["bundle"],
            runtime=data["runtime"],
            runtime_root=str(data.get("runtime_root", "")),
            manager=str(data.get("manager", "")),
            created=float(data.get("created", 0.0)),
            annotations={str(k): str(v) for k, v in ann.items()},
            translation=Translation.from_json(data.get("translation", {"state": "pending"}), source),
        )


def check_id(container_id: str) -> str:
    """Return *container_id* if it is safe as a file name, else raise BadInputError."""
    if (
        not isinstance(container_id, str)
        or not 0 < len(container_id) <= MAX_ID_LEN
        or container_id[0] not in _ID_FIRST
        or not _ID_REST.issuperset(container_id)
    ):
        raise BadInputError(
            f"container id {container_id!r} is not valid "
            f"(expected [A-Za-z0-9][A-Za-z0-9_.+-]*, at most {MAX_ID_LEN} characters)"
        )
    return container_id


def resolve_state_dir(explicit: str | None = None) -> str:
    """The state directory: *explicit*, else $HETMIG_STATE_DIR, else /run/hetmig."""
    return explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


class StateDir:
    """The records under one state directory root (paths are plain strings:
    pathlib costs import time on the hook's hot path)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.containers = os.path.join(self.root, "containers")

    # -- paths -------------------------------------------------------------
    def record_path(self, container_id: str) -> str:
        return os.path.join(self.containers, f"{check_id(container_id)}.json")

    def translation_path(self, container_id: str) -> str:
        return os.path.join(self.containers, f"{check_id(container_id)}.translation.json")

    # -- writing -----------------------------------------------------------
    def _ensure(self) -> None:
        try:
            os.makedirs(self.containers, mode=0o700, exist_ok=True)
        except OSError as err:
            raise PlatformError(f"cannot create state directory {self.containers}", errno=err.errno) from err

    def _write_temp(self, data: dict[str, Any]) -> str:
        tmp = os.path.join(self.containers, f".tmp-{os.getpid()}-{time.monotonic_ns()}.json")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise PlatformError(f"cannot create {tmp}", errno=err.errno) from err
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(dumps(data) + "\n")
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def create(self, record: ContainerRecord, *, replace: bool = False) -> str:
        """Write a new record; if one exists, raise unless *replace*."""
        self._ensure()
        path = self.record_path(record.id)
        tmp = self._write_temp(record.to_json())
        try:
            if replace:
                os.replace(tmp, path)
                return path
            try:
                os.link(tmp, path)  # atomic and fails with EEXIST: O_EXCL for a complete file
            except FileExistsError:
                raise BadInputError(f"{path}: a record for container {record.id!r} already exists") from None
            except OSError as err:
                raise PlatformError(f"cannot write {path}", errno=err.errno) from err
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return path

    def update(self, record: ContainerRecord) -> str:
        """Replace an existing record atomically."""
        path = self.record_path(record.id)
        if not os.path.exists(path):
            raise BadInputError(f"{path}: no record for container {record.id!r}")
        tmp = self._write_temp(record.to_json())
        os.replace(tmp, path)
        return path

    def write_translation(self, container_id: str, translation: Translation) -> bool:
        """Store *translation* next to the record; False (nothing kept) if the record is gone."""
        self._ensure()
        path = self.translation_path(container_id)
        tmp = self._write_temp({"version": RECORD_VERSION, "translation": translation.to_json()})
        os.replace(tmp, path)
        # poststop may have removed the record meanwhile: leave no orphan behind
        if not os.path.exists(self.record_path(container_id)):
            self._unlink(path)
            return False
        return True

    def _unlink(self, path: str) -> bool:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as err:
            raise PlatformError(f"cannot remove {path}", errno=err.errno) from err

    def remove(self, container_id: str) -> bool:
        """Remove a container's record and translation; True if a record existed."""
        existed = self._unlink(self.record_path(container_id))
        self._unlink(self.translation_path(container_id))
        return existed

    # -- reading -----------------------------------------------------------
    @staticmethod
    def _read_json(path: str) -> Any:
        with open(path, encoding="utf-8") as fh:
            return loads(fh.read(), path)

    def load(self, container_id: str) -> ContainerRecord:
        path = self.record_path(container_id)
        try:
            data = self._read_json(path)
        except FileNotFoundError:
            raise BadInputError(f"{path}: no record for container {container_id!r}") from None
        record = ContainerRecord.from_json(data, path)
        tpath = self.translation_path(container_id)
        try:
            tdata = self._read_json(tpath)
        except FileNotFoundError:
            return record
        if not isinstance(tdata, dict):
            raise BadInputError(f"{tpath}: expected a JSON object")
        return record.with_translation(Translation.from_json(tdata.get("translation"), tpath))

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.containers)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json") and not name.endswith(".translation.json") and not name.startswith("."):
                out.append(name[: -len(".json")])
        return sorted(out)

    def pending_ids(self) -> list[str]:
        """Ids of records that have no translation file yet."""
        return [cid for cid in self.ids() if not os.path.exists(self.translation_path(cid))]

    def records(self) -> Iterator[ContainerRecord]:
        for cid in self.ids():
            try:
                yield self.load(cid)
            except BadInputError:
                # removed between listdir and load (poststop racing ps): skip it
                if os.path.exists(self.record_path(cid)):
                    raise


def _loss_text(loss: Any) -> str:
    import json

    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        path = loss.get("path") or loss.get("field") or ""
        reason = loss.get("reason") or loss.get("message") or ""
        if path or reason:
            return f"{path}: {reason}" if path and reason else str(path or reason)
        return json.dumps(loss, sort_keys=True)
    for attr in ("path", "field"):
        if hasattr(loss, attr):
            reason = getattr(loss, "reason", "")
            return f"{getattr(loss, attr)}: {reason}" if reason else str(getattr(loss, attr))
    return str(loss)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (records store finite numbers only)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} overflows a float (records store finite numbers only)")
    return value


def translate_bundle(bundle: str, name: str) -> Translation:
    """Translate the OCI spec in *bundle*/config.json to FreeBSD (jail + RCTL).

    Imports the translator lazily (it loads YAML rules and may validate with
    jsonschema: far too slow for the hook's hot path, so the hook runs this in
    a detached worker). Returns a PENDING translation (with the reason in
    ``error``) while the translator API is not available; a FAILED one, with
    the translator's message, when the spec cannot be translated.
    """
    import json

    from capture.errors import HetmigError

    config = os.path.join(bundle, "config.json")
    try:
        with open(config, encoding="utf-8") as fh:
            spec = json.load(fh, parse_constant=_no_constant, parse_float=_finite_float)
    except OSError as err:
        return Translation(TranslationState.FAILED, error=f"{config}: cannot read: {err.strerror}")
    except ValueError as err:  # JSONDecodeError, not UTF-8, an integer over the digit limit
        return Translation(TranslationState.FAILED, error=f"{config}: not JSON: {str(err)[:200]}")
    except RecursionError:
        return Translation(TranslationState.FAILED, error=f"{config}: not JSON: nested too deeply")
    try:
        from runtime_shim import translate
    except ImportError as err:
        return Translation(TranslationState.PENDING, error=f"translator not available: {err}")
    load_rules = getattr(translate, "load_rules", None)
    oci_to_freebsd = getattr(translate, "oci_to_freebsd", None)
    if load_rules is None or oci_to_freebsd is None:
        return Translation(
            TranslationState.PENDING,
            error="translator not available: runtime_shim.translate has no load_rules/oci_to_freebsd yet",
        )
    try:
        rules = load_rules()
        result = oci_to_freebsd(spec, name, rules, bundle=bundle)
    except HetmigError as err:
        return Translation(TranslationState.FAILED, error=str(err))
    plan = result.to_json() if hasattr(result, "to_json") else result
    if isinstance(plan, str):
        plan = json.loads(plan)
    if not isinstance(plan, dict):
        return Translation(TranslationState.FAILED, error=f"translator returned {type(plan).__name__}, expected an object")
    raw_losses = getattr(result, "losses", None)
    if raw_losses is None:
        raw_losses = plan.get("losses", [])
    losses = tuple(_loss_text(x) for x in raw_losses)
    return Translation(TranslationState.OK, losses=losses, plan=plan)
