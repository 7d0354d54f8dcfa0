"""Pure parsers (and a few renderers) for the text FreeBSD tools print.

Written strictly against ``reference/freebsd/tools-output.md``,
``rctl.md``, ``jail-params.md`` and ``linuxulator.md`` (section 7, linprocfs
maps) and tested only on outputs composed by hand from those tables: this
module is untested on a real FreeBSD host.

Covered formats:

* ``jls`` default form (and ``-N``), ``jls -n`` / ``-s`` name=value form
  (``-q`` quoting), ``jls --libxo json`` (default and parameter modes);
* ``jail -e SEP`` lines (with its quoting rules) and a renderer for them;
* rctl(8) rule lines and ``rctl -u`` usage lines; a rule renderer and the
  action/resource legality table of rctl.md section 6;
* ``procstat -v`` text and ``--libxo json``; ``procstat -f`` text;
* linprocfs ``/proc/PID/maps`` lines;
* jail(8) command-line parameter rendering (``name=value``, ``name`` /
  ``noname`` booleans, comma-joined lists).

Nothing here runs a command or touches the host. Malformed input raises
:class:`FreeBSDParseError` naming the format, the line number and the text;
nothing is skipped silently. Refused (documented limits): ``jls -n`` output
without ``-q`` whose values contain spaces is ambiguous and parsed as if
unquoted tokens never contain spaces; ``procstat -f`` COMM values containing
spaces are not supported; the top-level nesting of ``procstat --libxo json``
is not in the reference, so the parser looks for the ``vm`` list anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

from capture.errors import BadInputError


class FreeBSDParseError(BadInputError):
    """Text that does not follow the documented FreeBSD tool format."""

    def __init__(self, fmt: str, reason: str, *, line_no: int | None = None, line: str | None = None) -> None:
        self.fmt = fmt
        self.reason = reason
        self.line_no = line_no
        self.line = line
        where = fmt if line_no is None else f"{fmt} line {line_no}"
        text = "" if line is None else f": {line!r}"
        super().__init__(f"{where}: {reason}{text}")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # only "\n" ends a line: tool output may legitimately hold other control characters
    for i, raw in enumerate(text.split("\n"), start=1):
        raw = raw[:-1] if raw.endswith("\r") else raw
        if raw.strip(" \t"):
            yield i, raw


# ---------------------------------------------------------------------------
# jail(8) parameter values

JailValue = Union[bool, int, str, tuple[str, ...]]


def negate_bool_name(name: str) -> str:
    """``persist`` -> ``nopersist``; ``allow.mount`` -> ``allow.nomount``."""
    head, dot, last = name.rpartition(".")
    return f"{head}{dot}no{last}"


def render_jail_param(name: str, value: JailValue) -> list[str]:
    """argv element(s) for one parameter of ``jail -c`` (no shell involved).

    Booleans become ``name`` / ``noname`` (jail-params.md section 1); lists are
    comma-joined, or given as repeated ``name=v`` elements when an element
    itself contains a comma (equivalent per the 2024 jail.8). Values need no
    quoting because they are passed as argv elements, not through a shell.
    """
    if not name or "=" in name or any(c.isspace() for c in name):
        raise ValueError(f"jail parameter name {name!r} is empty or contains '=' or whitespace")
    if isinstance(value, bool):
        return [name if value else negate_bool_name(name)]
    if isinstance(value, int):
        return [f"{name}={value}"]
    if isinstance(value, str):
        return [f"{name}={value}"]
    items = list(value)
    if any("," in v for v in items):
        return [f"{name}={v}" for v in items]
    return [f"{name}={','.join(items)}"]


# ---------------------------------------------------------------------------
# jls default form


@dataclass(frozen=True, slots=True)
class JlsRow:
    """One row of ``jls`` default output (``name`` set only with ``-N``)."""

    jid: int | None
    name: str | None
    ip4: str
    hostname: str
    path: str


JLS_HEADER = "   JID  IP Address      Hostname                      Path"
JLS_HEADER_N = " JID             IP Address      Hostname                      Path"


def render_jls_row(jid: int, ip4: str, hostname: str, path: str) -> str:
    """One default-form row: ``%6d  %-15.15s %-29.29s %.74s``."""
    return f"{jid:6d}  {ip4[:15]:<15} {hostname[:29]:<29} {path[:74]}".rstrip()


def _jls_tail(fmt: str, i: int, line: str, tail: str) -> tuple[str, str, str]:
    # tail = "%-15.15s %-29.29s %s" (ip, hostname, path)
    tail = tail.ljust(46)
    if tail[15] != " " or tail[45] != " ":
        raise FreeBSDParseError(fmt, "columns not at the documented offsets", line_no=i, line=line)
    return tail[:15].rstrip(), tail[16:45].rstrip(), tail[46:].rstrip()


def parse_jls(text: str) -> list[JlsRow]:
    """Parse ``jls`` or ``jls -N`` default output (header line required)."""
    fmt = "jls"
    rows: list[JlsRow] = []
    mode: str | None = None
    for i, line in _lines(text):
        if mode is None:
            if line.rstrip() == JLS_HEADER:
                mode = "jid"
            elif line.rstrip() == JLS_HEADER_N:
                mode = "name"
            else:
                raise FreeBSDParseError(fmt, "first line is not the jls header", line_no=i, line=line)
            continue
        if mode == "jid":
            head = line[:6]
            try:
                jid = int(head)
            except ValueError:
                raise FreeBSDParseError(fmt, "JID column is not an integer", line_no=i, line=line) from None
            if line[6:8].strip():
                raise FreeBSDParseError(fmt, "expected two spaces after JID", line_no=i, line=line)
            ip4, host, path = _jls_tail(fmt, i, line, line[8:])
            rows.append(JlsRow(jid, None, ip4, host, path))
        else:
            if not line.startswith(" ") or line[1:2] == " ":
                raise FreeBSDParseError(fmt, "expected one space then the jail name", line_no=i, line=line)
            name = line[1:].split(" ", 1)[0]
            start = 1 + max(15, len(name)) + 1
            ip4, host, path = _jls_tail(fmt, i, line, line[start:])
            rows.append(JlsRow(None, name, ip4, host, path))
    if mode is None:
        raise FreeBSDParseError(fmt, "empty output (no header line)")
    return rows


# ---------------------------------------------------------------------------
# jls -n / -s (name=value, optional -q quoting)


def _split_quoted_words(fmt: str, i: int, line: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    in_word = False
    for ch in line:
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
            continue
        if ch in "\"'":
            quote = ch
            in_word = True
        elif ch in " \t":
            if in_word:
                words.append("".join(cur))
                cur = []
                in_word = False
        else:
            cur.append(ch)
            in_word = True
    if quote is not None:
        raise FreeBSDParseError(fmt, f"unterminated {quote} quote", line_no=i, line=line)
    if in_word:
        words.append("".join(cur))
    return words


def parse_jls_params(text: str) -> list[dict[str, JailValue]]:
    """Parse ``jls -n`` / ``jls -nq`` / ``jls -s`` output: one dict per jail.

    ``name=value`` gives a string; a bare ``name`` is True, a bare name whose
    last dotted component starts with ``no`` is that name without ``no``,
    False. Values stay strings (the caller knows each parameter's type).
    """
    fmt = "jls -n"
    out: list[dict[str, JailValue]] = []
    for i, line in _lines(text):
        params: dict[str, JailValue] = {}
        for word in _split_quoted_words(fmt, i, line):
            # quotes were removed around the value only; the name never has '='
            if "=" in word:
                name, _, value = word.partition("=")
                if not name:
                    raise FreeBSDParseError(fmt, f"empty parameter name in {word!r}", line_no=i, line=line)
                params[name] = value
            else:
                head, dot, last = word.rpartition(".")
                if last.startswith("no") and len(last) > 2:
                    params[f"{head}{dot}{last[2:]}"] = False
                else:
                    params[word] = True
        out.append(params)
    return out


# ---------------------------------------------------------------------------
# libxo JSON (jls, procstat)


def _load_json(fmt: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FreeBSDParseError(fmt, f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from err


def _ip_list(fmt: str, key: str, value: Any) -> tuple[str, ...]:
    # The exact nesting of ip4.addr/ip6.addr in jls JSON is unconfirmed in
    # the reference: accept a string (comma list), a list of strings, or a
    # list of {"ipv4_addr": ...}/{"ipv6_addr": ...} objects.
    if isinstance(value, str):
        return tuple(v for v in value.split(",") if v)
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and len(item) == 1:
                (leaf,) = item.values()
                if not isinstance(leaf, str):
                    raise FreeBSDParseError(fmt, f"{key} entry {item!r} is not an address string")
                out.append(leaf)
            else:
                raise FreeBSDParseError(fmt, f"{key} entry {item!r} is not an address")
        return tuple(out)
    raise FreeBSDParseError(fmt, f"{key}={value!r} is not an address list")


@dataclass(frozen=True, slots=True)
class JailInfo:
    """One jail as read from ``jls --libxo json``: parameters by name."""

    params: Mapping[str, Any]

    @property
    def name(self) -> str | None:
        v = self.params.get("name")
        return v if isinstance(v, str) else None

    @property
    def jid(self) -> int | None:
        v = self.params.get("jid")
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.isdigit():
            return int(v)
        return None

    @property
    def path(self) -> str | None:
        v = self.params.get("path")
        return v if isinstance(v, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


def parse_jls_json(text: str) -> list[JailInfo]:
    """Parse ``jls [-n|-v] --libxo json``: container ``jail-information``, list ``jail``."""
    fmt = "jls --libxo json"
    doc = _load_json(fmt, text)
    if not isinstance(doc, dict) or "jail-information" not in doc:
        raise FreeBSDParseError(fmt, "top-level object has no 'jail-information' container")
    info = doc["jail-information"]
    if not isinstance(info, dict):
        raise FreeBSDParseError(fmt, "'jail-information' is not an object")
    jails = info.get("jail", [])
    if not isinstance(jails, list):
        raise FreeBSDParseError(fmt, "'jail-information.jail' is not a list")
    out: list[JailInfo] = []
    for idx, entry in enumerate(jails):
        if not isinstance(entry, dict):
            raise FreeBSDParseError(fmt, f"jail[{idx}] is not an object")
        params: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("ip4.addr", "ip6.addr", "ipv4-addrs", "ipv6-addrs"):
                params[key] = _ip_list(fmt, key, value)
            elif key == "jid" and isinstance(value, str):
                if not value.isdigit():
                    raise FreeBSDParseError(fmt, f"jail[{idx}].jid={value!r} is not an integer")
                params[key] = int(value)
            else:
                params[key] = value
        out.append(JailInfo(params))
    return out


# ---------------------------------------------------------------------------
# jail -e SEP


def quote_jail_e_value(value: str) -> str:
    """Quote one value the way ``jail -e`` prints it (tools-output.md section 2)."""
    if value == "":
        return '""'
    if "'" in value:
        q = '"'
    elif '"' in value:
        q = "'"
    elif " " in value or "\t" in value:
        q = '"'
    else:
        return value
    escaped = value.replace("\\", "\\\\").replace(q, "\\" + q)
    return f"{q}{escaped}{q}"


def render_jail_e_line(params: Sequence[tuple[str, str | None]], sep: str) -> str:
    """One ``jail -e SEP`` line: ``name=value`` items (bare name when no value)."""
    items = [n if v is None else f"{n}={quote_jail_e_value(v)}" for n, v in params]
    return sep.join(items)


def _parse_jail_e_item(fmt: str, i: int, line: str, item: str) -> tuple[str, str | None]:
    name, eq, raw = item.partition("=")
    if not name:
        raise FreeBSDParseError(fmt, f"item {item!r} has no parameter name", line_no=i, line=line)
    if not eq:
        return name, None
    if raw[:1] in ("'", '"'):
        q = raw[0]
        out: list[str] = []
        j = 1
        while j < len(raw):
            ch = raw[j]
            if ch == "\\" and j + 1 < len(raw):
                out.append(raw[j + 1])
                j += 2
                continue
            if ch == q:
                if j != len(raw) - 1:
                    raise FreeBSDParseError(fmt, f"text after closing quote in {item!r}", line_no=i, line=line)
                return name, "".join(out)
            out.append(ch)
            j += 1
        raise FreeBSDParseError(fmt, f"unterminated quote in {item!r}", line_no=i, line=line)
    return name, raw


def _split_outside_quotes(line: str, sep: str) -> list[str]:
    # A value may be quoted only as a whole, right after the item's first '='.
    items: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    has_eq = False
    j = 0
    while j < len(line):
        ch = line[j]
        if quote is not None:
            cur.append(ch)
            if ch == "\\" and j + 1 < len(line):
                cur.append(line[j + 1])
                j += 2
                continue
            if ch == quote:
                quote = None
            j += 1
            continue
        if line.startswith(sep, j):
            items.append("".join(cur))
            cur = []
            has_eq = False
            j += len(sep)
            continue
        if ch in "\"'" and has_eq and cur and cur[-1] == "=" and cur.count("=") == 1:
            quote = ch
        if ch == "=":
            has_eq = True
        cur.append(ch)
        j += 1
    items.append("".join(cur))
    return items


def parse_jail_e(text: str, sep: str) -> list[list[tuple[str, str | None]]]:
    """Parse ``jail -e SEP`` output: per jail, (name, value or None) in order."""
    if not sep:
        raise ValueError("separator must not be empty")
    fmt = "jail -e"
    out: list[list[tuple[str, str | None]]] = []
    for i, line in _lines(text):
        items = [_parse_jail_e_item(fmt, i, line, it) for it in _split_outside_quotes(line, sep)]
        if not items or items[0][0] != "name":
            raise FreeBSDParseError(fmt, "first item is not name=...", line_no=i, line=line)
        out.append(items)
    return out


# ---------------------------------------------------------------------------
# rctl(8)

RCTL_SUBJECTS: tuple[str, ...] = ("process", "user", "loginclass", "jail")
RCTL_SUBJECT_ABBREV: Mapping[str, str] = {
    "u": "user", "p": "process", "l": "loginclass", "c": "loginclass", "class": "loginclass", "j": "jail",
}


class RctlFlag(Enum):
    DENIABLE = "D"
    RECLAIMABLE = "R"
    INHERITED = "I"
    SLOPPY = "S"
    DECAYING = "Dec"
    MILLIONS = "M"


_F = RctlFlag
# rctl.md section 4, in kernel id order (0..24).
RCTL_RESOURCES: Mapping[str, frozenset[RctlFlag]] = {
    "cputime": frozenset({_F.MILLIONS}),
    "datasize": frozenset({_F.RECLAIMABLE, _F.INHERITED, _F.DENIABLE}),
    "stacksize": frozenset({_F.RECLAIMABLE, _F.INHERITED, _F.DENIABLE}),
    "coredumpsize": frozenset({_F.DENIABLE}),
    "memoryuse": frozenset({_F.RECLAIMABLE}),
    "memorylocked": frozenset({_F.RECLAIMABLE, _F.DENIABLE}),
    "maxproc": frozenset({_F.RECLAIMABLE, _F.DENIABLE}),
    "openfiles": frozenset({_F.RECLAIMABLE, _F.INHERITED, _F.DENIABLE}),
    "vmemoryuse": frozenset({_F.RECLAIMABLE, _F.INHERITED, _F.DENIABLE}),
    "pseudoterminals": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "swapuse": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "nthr": frozenset({_F.RECLAIMABLE, _F.DENIABLE}),
    "msgqqueued": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "msgqsize": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "nmsgq": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "nsem": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "nsemop": frozenset({_F.RECLAIMABLE, _F.INHERITED, _F.DENIABLE}),
    "nshm": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "shmsize": frozenset({_F.RECLAIMABLE, _F.DENIABLE, _F.SLOPPY}),
    "wallclock": frozenset({_F.MILLIONS}),
    "pcpu": frozenset({_F.DECAYING, _F.DENIABLE, _F.MILLIONS}),
    "readbps": frozenset({_F.DECAYING}),
    "writebps": frozenset({_F.DECAYING}),
    "readiops": frozenset({_F.DECAYING}),
    "writeiops": frozenset({_F.DECAYING}),
}
RCTL_RESOURCE_IDS: Mapping[str, int] = {name: i for i, name in enumerate(RCTL_RESOURCES)}
RCTL_SIGNAL_ACTIONS: tuple[str, ...] = (
    "sighup", "sigint", "sigquit", "sigill", "sigtrap", "sigabrt", "sigemt", "sigfpe", "sigkill",
    "sigbus", "sigsegv", "sigsys", "sigpipe", "sigalrm", "sigterm", "sigurg", "sigstop", "sigtstp",
    "sigchld", "sigttin", "sigttou", "sigio", "sigxcpu", "sigxfsz", "sigvtalrm", "sigprof",
    "sigwinch", "siginfo", "sigusr1", "sigusr2", "sigthr",
)
RCTL_ACTIONS: tuple[str, ...] = ("deny", "log", "devctl", "throttle", *RCTL_SIGNAL_ACTIONS)
_THROTTLE_OK = frozenset({"readbps", "writebps", "readiops", "writeiops"})


@dataclass(frozen=True, slots=True)
class RctlRule:
    """``subject:subject-id:resource:action=amount/per`` (rctl.md section 2)."""

    subject: str
    subject_id: str
    resource: str
    action: str
    amount: int | None = None
    per: str | None = None

    def render(self) -> str:
        """The kernel's rule form: ``/per`` only when per differs from subject."""
        text = f"{self.subject}:{self.subject_id}:{self.resource}:{self.action}"
        if self.amount is not None:
            text += f"={self.amount}"
        if self.per is not None and self.per != self.subject:
            text += f"/{self.per}"
        return text

    def filter(self) -> str:
        """``subject:subject-id`` (matches every rule of that subject)."""
        return f"{self.subject}:{self.subject_id}"


def rctl_rule_problem(rule: RctlRule) -> str | None:
    """Why the kernel would refuse *rule* (rctl.md sections 3-6), or None."""
    if rule.subject not in RCTL_SUBJECTS:
        return f"subject {rule.subject!r} is not one of {', '.join(RCTL_SUBJECTS)}"
    if not rule.subject_id:
        return "subject-id is empty"
    if ":" in rule.subject_id or "," in rule.subject_id:
        return f"subject-id {rule.subject_id!r} contains ':' or ','"
    flags = RCTL_RESOURCES.get(rule.resource)
    if flags is None:
        return f"resource {rule.resource!r} is not an rctl resource"
    if rule.action not in RCTL_ACTIONS:
        return f"action {rule.action!r} is not an rctl action"
    if rule.amount is None:
        return "amount is missing"
    if rule.amount < 0:
        return f"amount {rule.amount} is negative"
    if rule.action == "deny" and _F.DENIABLE not in flags and rule.resource != "memoryuse":
        return f"action deny is not allowed for resource {rule.resource} (EOPNOTSUPP; not deniable)"
    if rule.action == "throttle" and rule.resource not in _THROTTLE_OK:
        return f"action throttle is allowed only for {', '.join(sorted(_THROTTLE_OK))}, not {rule.resource}"
    if rule.per is not None and rule.per not in RCTL_SUBJECTS:
        return f"per {rule.per!r} is not one of {', '.join(RCTL_SUBJECTS)}"
    if rule.per == "process" and _F.SLOPPY in flags:
        return f"per=process is not allowed for sloppy resource {rule.resource} (EOPNOTSUPP)"
    return None


def parse_rctl_rule(text: str) -> RctlRule:
    """Parse one rule line (subject abbreviations expanded; amount integer)."""
    fmt = "rctl rule"
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise FreeBSDParseError(fmt, f"expected subject:id:resource:action=amount, got {len(parts)} fields", line=text)
    subject, sid, resource, rest = parts
    subject = RCTL_SUBJECT_ABBREV.get(subject, subject)
    action, eq, amount_per = rest.partition("=")
    per: str | None = None
    if eq:
        amount_text, slash, per_text = amount_per.partition("/")
        per = per_text if slash else None
    else:
        action, slash, per_text = action.partition("/")
        amount_text = ""
        per = per_text if slash else None
    amount: int | None = None
    if amount_text:
        try:
            amount = int(amount_text)
        except ValueError:
            raise FreeBSDParseError(fmt, f"amount {amount_text!r} is not an integer", line=text) from None
    return RctlRule(subject, sid, resource, action, amount, per)


def parse_rctl_rules(text: str) -> list[RctlRule]:
    """Parse ``rctl [FILTER]`` / ``rctl -l`` output: one rule per line."""
    rules: list[RctlRule] = []
    for i, line in _lines(text):
        try:
            rules.append(parse_rctl_rule(line))
        except FreeBSDParseError as err:
            raise FreeBSDParseError("rctl", err.reason, line_no=i, line=line) from None
    return rules


def parse_rctl_usage(text: str) -> dict[str, int]:
    """Parse ``rctl -u FILTER``: ``resource=value`` lines, resources known."""
    fmt = "rctl -u"
    out: dict[str, int] = {}
    for i, line in _lines(text):
        name, eq, value = line.strip().partition("=")
        if not eq:
            raise FreeBSDParseError(fmt, "expected resource=value", line_no=i, line=line)
        if name not in RCTL_RESOURCES:
            raise FreeBSDParseError(fmt, f"unknown resource {name!r}", line_no=i, line=line)
        if name in out:
            raise FreeBSDParseError(fmt, f"resource {name!r} repeated", line_no=i, line=line)
        try:
            out[name] = int(value)
        except ValueError:
            raise FreeBSDParseError(fmt, f"value {value!r} is not an integer", line_no=i, line=line) from None
    return out


# ---------------------------------------------------------------------------
# procstat -v

PROCSTAT_VM_HEADER = "  PID              START                END PRT  RES PRES REF SHD FLAG  TP PATH"
PROCSTAT_VM_TYPES: Mapping[str, str] = {
    "--": "none", "df": "default", "vn": "vnode", "sw": "swap", "dv": "device", "ph": "physical",
    "dd": "dead", "sg": "scatter/gather", "md": "managed_device", "gd": "guard", "??": "unknown",
}
_VM_LONG_TO_SHORT = {v: k for k, v in PROCSTAT_VM_TYPES.items()}


@dataclass(frozen=True, slots=True)
class VmEntry:
    """One map entry from ``procstat -v`` (end exclusive, as kve_end)."""

    pid: int
    start: int
    end: int
    read: bool
    write: bool
    execute: bool
    resident: int
    private_resident: int
    ref_count: int
    shadow_count: int
    copy_on_write: bool
    needs_copy: bool
    super_pages: bool
    grows_up: bool
    grows_down: bool
    wired: bool
    type: str  # two-letter TP code, e.g. "df", "vn"
    path: str


def _hex(fmt: str, i: int, line: str, text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise FreeBSDParseError(fmt, f"{text!r} is not a hex address", line_no=i, line=line) from None


def _int(fmt: str, i: int, line: str, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FreeBSDParseError(fmt, f"{what} {text!r} is not an integer", line_no=i, line=line) from None


def parse_procstat_vm(text: str) -> list[VmEntry]:
    """Parse ``procstat -v PID`` text (header required)."""
    fmt = "procstat -v"
    out: list[VmEntry] = []
    seen_header = False
    for i, line in _lines(text):
        if not seen_header:
            if line.split() != PROCSTAT_VM_HEADER.split():
                raise FreeBSDParseError(fmt, "first line is not the procstat -v header", line_no=i, line=line)
            seen_header = True
            continue
        f = line.split(None, 10)
        if len(f) < 10:
            raise FreeBSDParseError(fmt, f"expected at least 10 columns, got {len(f)}", line_no=i, line=line)
        prt, flag, tp = f[3], f[8], f[9]
        if len(prt) != 3 or prt[0] not in "r-" or prt[1] not in "w-" or prt[2] not in "x-":
            raise FreeBSDParseError(fmt, f"PRT {prt!r} is not [r-][w-][x-]", line_no=i, line=line)
        if (
            len(flag) != 5 or flag[0] not in "C-" or flag[1] not in "N-" or flag[2] not in "S-"
            or flag[3] not in "UD-" or flag[4] not in "W-"
        ):
            raise FreeBSDParseError(fmt, f"FLAG {flag!r} is not [C-][N-][S-][UD-][W-]", line_no=i, line=line)
        if tp not in PROCSTAT_VM_TYPES:
            raise FreeBSDParseError(fmt, f"TP {tp!r} is not a known object type", line_no=i, line=line)
        start = _hex(fmt, i, line, f[1])
        end = _hex(fmt, i, line, f[2])
        if end <= start:
            raise FreeBSDParseError(fmt, "END is not above START", line_no=i, line=line)
        out.append(VmEntry(
            pid=_int(fmt, i, line, f[0], "PID"), start=start, end=end,
            read=prt[0] == "r", write=prt[1] == "w", execute=prt[2] == "x",
            resident=_int(fmt, i, line, f[4], "RES"), private_resident=_int(fmt, i, line, f[5], "PRES"),
            ref_count=_int(fmt, i, line, f[6], "REF"), shadow_count=_int(fmt, i, line, f[7], "SHD"),
            copy_on_write=flag[0] == "C", needs_copy=flag[1] == "N", super_pages=flag[2] == "S",
            grows_up=flag[3] == "U", grows_down=flag[3] == "D", wired=flag[4] == "W",
            type=tp, path=f[10] if len(f) > 10 else "",
        ))
    if not seen_header:
        raise FreeBSDParseError(fmt, "empty output (no header line)")
    return out


def render_procstat_vm(entries: Iterable[VmEntry]) -> str:
    """Render entries in ``procstat -v`` text form (for tests and doubles)."""
    lines = [PROCSTAT_VM_HEADER]
    for e in entries:
        prt = ("r" if e.read else "-") + ("w" if e.write else "-") + ("x" if e.execute else "-")
        flag = (
            ("C" if e.copy_on_write else "-") + ("N" if e.needs_copy else "-") + ("S" if e.super_pages else "-")
            + ("U" if e.grows_up else "D" if e.grows_down else "-") + ("W" if e.wired else "-")
        )
        lines.append(
            f"{e.pid:5d} {e.start:#18x} {e.end:#18x} {prt} {e.resident:4d} {e.private_resident:4d} "
            f"{e.ref_count:3d} {e.shadow_count:3d} {flag} {e.type:<2} {e.path}".rstrip()
        )
    return "\n".join(lines) + "\n"


def _find_vm_list(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        vm = node.get("vm")
        if isinstance(vm, list) and all(isinstance(x, dict) and "kve_start" in x for x in vm):
            return vm
        for value in node.values():
            found = _find_vm_list(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_vm_list(value)
            if found is not None:
                return found
    return None


def _json_int(fmt: str, idx: int, entry: Mapping[str, Any], key: str, *, hex_ok: bool = False) -> int:
    if key not in entry:
        raise FreeBSDParseError(fmt, f"vm[{idx}] has no {key!r}")
    v = entry[key]
    if isinstance(v, bool):
        raise FreeBSDParseError(fmt, f"vm[{idx}].{key}={v!r} is not a number")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 16) if hex_ok else int(v)
        except ValueError:
            pass
    raise FreeBSDParseError(fmt, f"vm[{idx}].{key}={v!r} is not a number")


def _json_flags(fmt: str, idx: int, entry: Mapping[str, Any], key: str, names: Sequence[str]) -> dict[str, bool]:
    box = entry.get(key, {})
    if not isinstance(box, dict):
        raise FreeBSDParseError(fmt, f"vm[{idx}].{key} is not an object")
    out: dict[str, bool] = {}
    for n in names:
        v = box.get(n, False)
        if not isinstance(v, bool):
            raise FreeBSDParseError(fmt, f"vm[{idx}].{key}.{n}={v!r} is not a boolean")
        out[n] = v
    return out


def parse_procstat_vm_json(text: str) -> list[VmEntry]:
    """Parse ``procstat --libxo json -v PID`` (the ``vm`` list, kve_* keys)."""
    fmt = "procstat -v --libxo json"
    doc = _load_json(fmt, text)
    vm = _find_vm_list(doc)
    if vm is None:
        raise FreeBSDParseError(fmt, "no 'vm' list of kve_* entries found")
    out: list[VmEntry] = []
    for idx, e in enumerate(vm):
        prot = _json_flags(fmt, idx, e, "kve_protection", ("read", "write", "exec"))
        fl = _json_flags(
            fmt, idx, e, "kve_flags", ("copy_on_write", "needs_copy", "super_pages", "grows_up", "grows_down", "wired")
        )
        long_type = e.get("kve_type", "none")
        if long_type not in _VM_LONG_TO_SHORT:
            raise FreeBSDParseError(fmt, f"vm[{idx}].kve_type={long_type!r} is not a known object type")
        path = e.get("kve_path", "")
        if not isinstance(path, str):
            raise FreeBSDParseError(fmt, f"vm[{idx}].kve_path={path!r} is not a string")
        start = _json_int(fmt, idx, e, "kve_start", hex_ok=True)
        end = _json_int(fmt, idx, e, "kve_end", hex_ok=True)
        if end <= start:
            raise FreeBSDParseError(fmt, f"vm[{idx}]: kve_end is not above kve_start")
        out.append(VmEntry(
            pid=_json_int(fmt, idx, e, "process_id"), start=start, end=end,
            read=prot["read"], write=prot["write"], execute=prot["exec"],
            resident=_json_int(fmt, idx, e, "kve_resident"),
            private_resident=_json_int(fmt, idx, e, "kve_private_resident"),
            ref_count=_json_int(fmt, idx, e, "kve_ref_count"),
            shadow_count=_json_int(fmt, idx, e, "kve_shadow_count"),
            copy_on_write=fl["copy_on_write"], needs_copy=fl["needs_copy"], super_pages=fl["super_pages"],
            grows_up=fl["grows_up"], grows_down=fl["grows_down"], wired=fl["wired"],
            type=_VM_LONG_TO_SHORT[long_type], path=path,
        ))
    return out


# ---------------------------------------------------------------------------
# procstat -f

PROCSTAT_FILES_HEADER = "  PID COMM                FD T V FLAGS    REF  OFFSET PRO NAME"
PROCSTAT_FD_SPECIAL = frozenset({"ctty", "cwd", "jail", "root", "text", "trace"})
PROCSTAT_FILE_TYPES = frozenset("vspfkmhtePDE?")
PROCSTAT_VNODE_TYPES = frozenset("rdbclsfx?-")
_FD_FLAG_LETTERS = "rwasfndl"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One row of ``procstat -f`` (without ``-C``)."""

    pid: int
    comm: str
    fd: int | str  # number, or one of ctty/cwd/jail/root/text/trace
    type: str
    vnode_type: str
    flags: frozenset[str]  # subset of r w a s f n d l
    ref_count: int | None
    offset: int | None
    protocol: str
    name: str


def parse_procstat_files(text: str) -> list[FileEntry]:
    """Parse ``procstat -f PID`` text (header required; COMM without spaces)."""
    fmt = "procstat -f"
    out: list[FileEntry] = []
    seen_header = False
    for i, line in _lines(text):
        if not seen_header:
            if line.split() != PROCSTAT_FILES_HEADER.split():
                raise FreeBSDParseError(fmt, "first line is not the procstat -f header", line_no=i, line=line)
            seen_header = True
            continue
        f = line.split(None, 9)
        if len(f) < 9:
            raise FreeBSDParseError(fmt, f"expected at least 9 columns, got {len(f)}", line_no=i, line=line)
        pid = _int(fmt, i, line, f[0], "PID")
        fd: int | str
        if f[2] in PROCSTAT_FD_SPECIAL:
            fd = f[2]
        else:
            fd = _int(fmt, i, line, f[2], "FD")
        if f[3] not in PROCSTAT_FILE_TYPES or len(f[3]) != 1:
            raise FreeBSDParseError(fmt, f"T {f[3]!r} is not a file type letter", line_no=i, line=line)
        if f[4] not in PROCSTAT_VNODE_TYPES or len(f[4]) != 1:
            raise FreeBSDParseError(fmt, f"V {f[4]!r} is not a vnode type letter", line_no=i, line=line)
        flags_text = f[5]
        if len(flags_text) != 8 or any(c != "-" and c != _FD_FLAG_LETTERS[k] for k, c in enumerate(flags_text)):
            raise FreeBSDParseError(fmt, f"FLAGS {flags_text!r} is not 8 positions of rwasfndl or -", line_no=i, line=line)
        ref = None if f[6] == "-" else _int(fmt, i, line, f[6], "REF")
        off = None if f[7] == "-" else _int(fmt, i, line, f[7], "OFFSET")
        out.append(FileEntry(
            pid=pid, comm=f[1], fd=fd, type=f[3], vnode_type=f[4],
            flags=frozenset(c for c in flags_text if c != "-"), ref_count=ref, offset=off,
            protocol=f[8], name=f[9] if len(f) > 9 else "",
        ))
    if not seen_header:
        raise FreeBSDParseError(fmt, "empty output (no header line)")
    return out


# ---------------------------------------------------------------------------
# linprocfs /proc/PID/maps


@dataclass(frozen=True, slots=True)
class MapsEntry:
    """One linprocfs maps line (end exclusive, Linux convention)."""

    start: int
    end: int
    read: bool
    write: bool
    execute: bool
    private: bool
    offset: int
    device: str
    inode: int
    path: str


def parse_linprocfs_maps(text: str) -> list[MapsEntry]:
    """Parse ``/compat/linux/proc/PID/maps`` (linuxulator.md section 7)."""
    fmt = "linprocfs maps"
    out: list[MapsEntry] = []
    for i, line in _lines(text):
        f = line.split(None, 5)
        if len(f) < 5:
            raise FreeBSDParseError(fmt, f"expected at least 5 fields, got {len(f)}", line_no=i, line=line)
        rng, perms, off, dev, ino = f[:5]
        lo, dash, hi = rng.partition("-")
        if not dash:
            raise FreeBSDParseError(fmt, "address range has no '-'", line_no=i, line=line)
        start, end = _hex(fmt, i, line, lo), _hex(fmt, i, line, hi)
        if end <= start:
            raise FreeBSDParseError(fmt, "end is not above start", line_no=i, line=line)
        if (
            len(perms) != 4 or perms[0] not in "r-" or perms[1] not in "w-" or perms[2] not in "x-"
            or perms[3] not in "ps"
        ):
            raise FreeBSDParseError(fmt, f"perms {perms!r} is not [r-][w-][x-][ps]", line_no=i, line=line)
        out.append(MapsEntry(
            start=start, end=end, read=perms[0] == "r", write=perms[1] == "w", execute=perms[2] == "x",
            private=perms[3] == "p", offset=_hex(fmt, i, line, off), device=dev,
            inode=_int(fmt, i, line, ino, "inode"), path=f[5].strip() if len(f) > 5 else "",
        ))
    return out
