"""FreeBSD facts the translator checks against: jail parameters and RCTL.

Restated from ``reference/freebsd/jail-params.md`` and ``rctl.md`` (jail(8),
kern_jail.c, kern_rctl.c, racct.h). These are literal tables, never read from
the host: the translator runs on Linux and must know FreeBSD as data.

This module refuses nothing by itself; :func:`check_rctl` and
:func:`check_param` return a reason string (or ``None``) for callers that
report it with their own file and path.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class ParamType(Enum):
    """Value kind of a jail parameter (jail(8) / libjail export format)."""

    BOOL = "bool"
    INT = "int"
    STRING = "string"
    JAILSYS = "jailsys"  # disable | new | inherit
    LIST = "list"


JAILSYS_VALUES: Final = ("disable", "new", "inherit")

# Kernel parameters (jail-params.md sections 2-4) that a jail description may set.
_KERNEL_PARAMS: Final[dict[str, ParamType]] = {
    "jid": ParamType.INT,
    "name": ParamType.STRING,
    "path": ParamType.STRING,
    "children.max": ParamType.INT,
    "securelevel": ParamType.INT,
    "enforce_statfs": ParamType.INT,
    "devfs_ruleset": ParamType.INT,
    "persist": ParamType.BOOL,
    "host": ParamType.JAILSYS,
    "host.hostname": ParamType.STRING,
    "host.domainname": ParamType.STRING,
    "host.hostuuid": ParamType.STRING,
    "host.hostid": ParamType.INT,
    "ip4": ParamType.JAILSYS,
    "ip4.addr": ParamType.LIST,
    "ip4.saddrsel": ParamType.BOOL,
    "ip6": ParamType.JAILSYS,
    "ip6.addr": ParamType.LIST,
    "ip6.saddrsel": ParamType.BOOL,
    "vnet": ParamType.JAILSYS,
    "osrelease": ParamType.STRING,
    "osreldate": ParamType.INT,
    "linux": ParamType.JAILSYS,
    "linux.osname": ParamType.STRING,
    "linux.osrelease": ParamType.STRING,
    "linux.oss_version": ParamType.INT,
    "sysvmsg": ParamType.JAILSYS,
    "sysvsem": ParamType.JAILSYS,
    "sysvshm": ParamType.JAILSYS,
    "zfs.mount_snapshot": ParamType.INT,
}

ALLOW_PARAMS: Final = (
    "allow.set_hostname",
    "allow.sysvipc",
    "allow.raw_sockets",
    "allow.chflags",
    "allow.mount",
    "allow.quotas",
    "allow.socket_af",
    "allow.mlock",
    "allow.read_msgbuf",
    "allow.unprivileged_proc_debug",
    "allow.suser",
    "allow.reserved_ports",
    "allow.nfsd",
    "allow.extattr",
    "allow.adjtime",
    "allow.settime",
    "allow.mount.devfs",
    "allow.mount.fdescfs",
    "allow.mount.fusefs",
    "allow.mount.nullfs",
    "allow.mount.procfs",
    "allow.mount.linprocfs",
    "allow.mount.linsysfs",
    "allow.mount.tmpfs",
    "allow.mount.zfs",
    "allow.vmm",
)

# jail(8) pseudo-parameters (section 5) the plan may carry.
_PSEUDO_PARAMS: Final[dict[str, ParamType]] = {
    "mount.devfs": ParamType.BOOL,
    "mount.fdescfs": ParamType.BOOL,
    "mount.procfs": ParamType.BOOL,
    "exec.clean": ParamType.BOOL,
    "exec.jail_user": ParamType.STRING,
    "exec.system_user": ParamType.STRING,
    "exec.system_jail_user": ParamType.BOOL,
    "exec.timeout": ParamType.INT,
    "exec.consolelog": ParamType.STRING,
    "exec.fib": ParamType.INT,
    "stop.timeout": ParamType.INT,
    "interface": ParamType.STRING,
    "ip_hostname": ParamType.BOOL,
    "vnet.interface": ParamType.LIST,
    "depend": ParamType.LIST,
}

# List-valued pseudo-parameters that the plan keeps in dedicated keys
# ("mounts", "exec") rather than in "params".
EXEC_PHASES: Final = (
    "prepare",
    "prestart",
    "created",
    "start",
    "poststart",
    "prestop",
    "stop",
    "poststop",
    "release",
)

JAIL_PARAMS: Final[dict[str, ParamType]] = {
    **_KERNEL_PARAMS,
    **{name: ParamType.BOOL for name in ALLOW_PARAMS},
    **_PSEUDO_PARAMS,
}


def param_type(name: str) -> ParamType | None:
    """Type of jail parameter *name*, or ``None`` if FreeBSD has no such one."""
    return JAIL_PARAMS.get(name)


def check_param(name: str, value: object) -> str | None:
    """Reason why ``name=value`` is not a valid jail parameter, or ``None``."""
    kind = param_type(name)
    if kind is None:
        return f"unknown jail parameter {name!r} (see jail(8))"
    if kind is ParamType.BOOL and not isinstance(value, bool):
        return f"jail parameter {name} is boolean, got {value!r}"
    if kind is ParamType.INT and (isinstance(value, bool) or not isinstance(value, int)):
        return f"jail parameter {name} is an integer, got {value!r}"
    if kind is ParamType.JAILSYS and value not in JAILSYS_VALUES:
        return f"jail parameter {name} takes one of {', '.join(JAILSYS_VALUES)}, got {value!r}"
    if kind is ParamType.STRING and not isinstance(value, str):
        return f"jail parameter {name} is a string, got {value!r}"
    if kind is ParamType.LIST and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return f"jail parameter {name} is a list of strings, got {value!r}"
    return None


# ---------------------------------------------------------------- RCTL


class RctlFlag(Enum):
    DENIABLE = "D"
    RECLAIMABLE = "R"
    INHERITED = "I"
    SLOPPY = "S"
    DECAYING = "Dec"
    MILLIONS = "M"


_D, _R, _I, _S, _DEC, _M = (
    RctlFlag.DENIABLE,
    RctlFlag.RECLAIMABLE,
    RctlFlag.INHERITED,
    RctlFlag.SLOPPY,
    RctlFlag.DECAYING,
    RctlFlag.MILLIONS,
)

# rctl.md table 4, in kernel id order.
RCTL_RESOURCES: Final[dict[str, frozenset[RctlFlag]]] = {
    "cputime": frozenset({_M}),
    "datasize": frozenset({_R, _I, _D}),
    "stacksize": frozenset({_R, _I, _D}),
    "coredumpsize": frozenset({_D}),
    "memoryuse": frozenset({_R}),
    "memorylocked": frozenset({_R, _D}),
    "maxproc": frozenset({_R, _D}),
    "openfiles": frozenset({_R, _I, _D}),
    "vmemoryuse": frozenset({_R, _I, _D}),
    "pseudoterminals": frozenset({_R, _D, _S}),
    "swapuse": frozenset({_R, _D, _S}),
    "nthr": frozenset({_R, _D}),
    "msgqqueued": frozenset({_R, _D, _S}),
    "msgqsize": frozenset({_R, _D, _S}),
    "nmsgq": frozenset({_R, _D, _S}),
    "nsem": frozenset({_R, _D, _S}),
    "nsemop": frozenset({_R, _I, _D}),
    "nshm": frozenset({_R, _D, _S}),
    "shmsize": frozenset({_R, _D, _S}),
    "wallclock": frozenset({_M}),
    "pcpu": frozenset({_DEC, _D, _M}),
    "readbps": frozenset({_DEC}),
    "writebps": frozenset({_DEC}),
    "readiops": frozenset({_DEC}),
    "writeiops": frozenset({_DEC}),
}

RCTL_SUBJECTS: Final = ("process", "user", "loginclass", "jail")

RCTL_SIGNALS: Final = tuple(
    "sig" + s
    for s in (
        "hup int quit ill trap abrt emt fpe kill bus segv sys pipe alrm term urg "
        "stop tstp chld ttin ttou io xcpu xfsz vtalrm prof winch info usr1 usr2 thr"
    ).split()
)
RCTL_ACTIONS: Final = ("deny", "log", "devctl", "throttle", *RCTL_SIGNALS)

THROTTLE_RESOURCES: Final = ("readbps", "writebps", "readiops", "writeiops")


def check_rctl(resource: str, action: str, per: str | None = None) -> str | None:
    """Reason why rctl(8) would refuse ``resource:action`` (EOPNOTSUPP/EINVAL), or None."""
    flags = RCTL_RESOURCES.get(resource)
    if flags is None:
        return f"unknown RCTL resource {resource!r} (see rctl(8))"
    if action not in RCTL_ACTIONS:
        return f"unknown RCTL action {action!r} (see rctl(8))"
    if action == "deny" and RctlFlag.DENIABLE not in flags and resource != "memoryuse":
        return f"action deny is not supported for {resource} (only for deniable resources)"
    if action == "throttle" and resource not in THROTTLE_RESOURCES:
        return f"action throttle is only allowed for {', '.join(THROTTLE_RESOURCES)}, not {resource}"
    if per is not None and per not in RCTL_SUBJECTS:
        return f"unknown RCTL per-subject {per!r}"
    if per == "process" and RctlFlag.SLOPPY in flags:
        return f"{resource} is accounted per credential; /process rules are refused"
    return None
