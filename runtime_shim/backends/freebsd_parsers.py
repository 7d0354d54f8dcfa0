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
nothing is skipped silently. (The procstat and linprocfs parsers are defined
in :mod:`capture.platform.freebsd` and re-exported here.) Refused (documented limits): ``jls -n`` output
without ``-q`` whose values contain spaces is ambiguous and parsed as if
unquoted tokens never contain spaces; ``procstat -f`` COMM values containing
spaces are not supported; the top-level nesting of ``procstat --libxo json``
is not in the reference, so the parser looks for the ``vm`` list anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Sequence, Union

# The procstat/linprocfs parsers live with the FreeBSD platform module (capture
# must not import runtime_shim); they are re-exported here with the rest.
from capture.platform.freebsd import (
    PROCSTAT_FILES_HEADER,
    PROCSTAT_VM_HEADER,
    PROCSTAT_VM_TYPES,
    FileEntry,
    FreeBSDParseError,
    MapsEntry,
    VmEntry,
    _lines,
    _load_json,
    parse_linprocfs_maps,
    parse_procstat_files,
    parse_procstat_vm,
    parse_procstat_vm_json,
    render_procstat_vm,
)


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


_EXPAND_SUFFIX: Mapping[str, int] = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def parse_rctl_rule(text: str, *, allow_suffix: bool = False) -> RctlRule:
    """Parse one rule line (subject abbreviations expanded; amount integer).

    With *allow_suffix* the amount may carry an expand_number(3) suffix
    (k, m, g, t, p, e; powers of 1024) as rctl(8) accepts on input; the
    kernel's output never has one.
    """
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
        scale = 1
        if allow_suffix and amount_text[-1:].lower() in _EXPAND_SUFFIX:
            scale = _EXPAND_SUFFIX[amount_text[-1].lower()]
            amount_text = amount_text[:-1]
        try:
            amount = int(amount_text) * scale
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



__all__ = [
    "FileEntry", "FreeBSDParseError", "JailInfo", "JailValue", "JlsRow", "MapsEntry", "PROCSTAT_FILES_HEADER",
    "PROCSTAT_VM_HEADER", "PROCSTAT_VM_TYPES", "RCTL_ACTIONS", "RCTL_RESOURCES", "RCTL_RESOURCE_IDS",
    "RCTL_SUBJECTS", "RctlFlag", "RctlRule", "VmEntry", "negate_bool_name", "parse_jail_e", "parse_jls",
    "parse_jls_json", "parse_jls_params", "parse_linprocfs_maps", "parse_procstat_files", "parse_procstat_vm",
    "parse_procstat_vm_json", "parse_rctl_rule", "parse_rctl_rules", "parse_rctl_usage", "quote_jail_e_value",
    "rctl_rule_problem", "render_jail_e_line", "render_jail_param", "render_jls_row", "render_procstat_vm",
]
