"""Containers in a migration: what the source observes, what the destination recreates.

Source side (:func:`observe`): a running container's isolation as the kernel
shows it through its init pid: hostname (UTS), its network interfaces (name,
MAC, MTU, addresses), routes, and for each veth the addresses of the peer end
in the host namespace (the container's gateway), and its cgroup v1 limits
(memory.limit_in_bytes, pids.max, cpu.cfs_quota_us/cfs_period_us).

Destination side (:class:`Isolation`): recreates that isolation for the
restored tree, Linux only, cgroup v1 (hybrid layout: /sys/fs/cgroup/memory,
pids, cpu):

  * a per-container cgroup ``hetmig/<name>`` in each of memory, pids and cpu,
    limits taken from the OCI spec (``linux.resources``), falling back to the
    values observed on the source; the restore seed joins it before it forks
    anything, so the whole restored tree is inside;
  * a new named network namespace ``hetmig-<name>`` with a veth pair: the
    container end keeps the name, MAC, MTU and addresses it had, the host end
    (in the agent's network namespace) gets the gateway addresses the source's
    host end had; routes are re-added;
  * new mount (everything made private), UTS (the spec's hostname) and IPC
    namespaces and a fresh pid namespace (``capture.restore(pidns=True)``);
    the root directory is the rootfs received from the source, extracted
    under the agent's state dir; /proc of the new pid namespace is mounted
    in it.

The seam into the restore engine is its ``ops`` parameter: :class:`EnteringOps`
is the platform's injection module, except that the seed process enters the
isolation (cgroups, setns, unshare, sethostname) right before it makes the pid
namespace. The restored container is NOT a runc container on the destination:
it is recorded in ``<state-dir>/containers/<id>.json`` (pids, cgroups, netns,
rootfs), from where ``hetmig migrate`` can move it on (:class:`ManagedSource`)
and :func:`destroy_record` removes it. Refused: cgroup v2-only hosts, network
interfaces other than veth and loopback, user namespaces in the spec.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.errors import MigrationError, PlatformError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_root() -> Path:
    """The cgroup v1 mount point. (``ip netns exec`` mounts a fresh sysfs over /sys and
    hides the cgroup mounts: run the agent with ``nsenter --net=...`` instead.)"""
    return CGROUP_ROOT
CONTROLLERS = ("memory", "pids", "cpu", "freezer")  # freezer: the next migration freezes with it
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_NOSUID = 2
MS_BIND = 0x1000
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
MS_PRIVATE = 1 << 18


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _run(argv: list[str], what: str, *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise PlatformError(f"{what}: {' '.join(argv)} failed ({proc.returncode})", command=argv,
                            stderr=proc.stderr)
    return proc


# -- source: what the container is ---------------------------------------------------------

def _cgroup_paths(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                if c in CONTROLLERS:
                    out[c] = path
    return out


LIMIT_FILES = {"memory": ("memory.limit_in_bytes",), "pids": ("pids.max",),
               "cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us")}


def read_limits(paths: dict[str, str]) -> dict[str, str]:
    """The limit files of the cgroups *paths* (controller -> path under its hierarchy)."""
    out: dict[str, str] = {}
    for ctrl, names in LIMIT_FILES.items():
        rel = paths.get(ctrl)
        if rel is None:
            continue
        for name in names:
            try:
                out[name] = (cgroup_root() / ctrl / rel.lstrip("/") / name).read_text().strip()
            except OSError:
                pass
    return out


def observe(pid: int) -> dict[str, Any]:
    """The isolation of the container whose init is *pid*, as the kernel shows it."""
    net = f"/proc/{pid}/ns/net"
    hostname = _run(["nsenter", f"--uts=/proc/{pid}/ns/uts", "cat", "/proc/sys/kernel/hostname"],
                    "read the container's hostname").stdout.strip()
    links = json.loads(_run(["nsenter", f"--net={net}", "ip", "-j", "-d", "addr", "show"], "read interfaces").stdout)
    routes = json.loads(_run(["nsenter", f"--net={net}", "ip", "-j", "route", "show"], "read routes").stdout)
    same_netns = os.readlink(net) == os.readlink("/proc/self/ns/net")
    host_links: list[dict[str, Any]] = []
    if not same_netns:
        host_links = json.loads(_run(["ip", "-j", "addr", "show"], "read host interfaces").stdout)
    interfaces: list[dict[str, Any]] = []
    for link in links:
        name = str(link.get("ifname"))
        if name == "lo":
            continue
        kind = (link.get("linkinfo") or {}).get("info_kind")
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
        peer_addrs: list[str] = []
        if kind == "veth":
            peer_index = link.get("link_index")
            for h in host_links:
                if h.get("ifindex") == peer_index:
                    peer_addrs = [f"{a['local']}/{a['prefixlen']}" for a in h.get("addr_info", [])
                                  if a.get("family") == "inet"]
        interfaces.append({"name": name, "kind": kind or "", "mac": link.get("address", ""),
                           "mtu": int(link.get("mtu", 1500)), "addrs": addrs, "peer_addrs": peer_addrs})
    route_list = [{"dst": str(r.get("dst")), "gateway": str(r.get("gateway", "")), "dev": str(r.get("dev", ""))}
                  for r in routes if r.get("gateway")]
    cg = _cgroup_paths(pid)
    return {"hostname": hostname, "interfaces": interfaces, "routes": route_list, "cgroups": cg,
            "limits": read_limits(cg), "netns_shared_with_host": same_netns}


def remove_veths(pid: int, observed: dict[str, Any]) -> None:
    """Delete the container's veth ends (their host ends go with them): its address now
    lives on the destination. Called after the destination took over."""
    if observed.get("netns_shared_with_host"):
        return
    for iface in observed.get("interfaces", []):
        if iface.get("kind") == "veth":
            _run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "link", "del", str(iface["name"])],
                 "remove the source's veth", check=False)


# -- destination: recreate it --------------------------------------------------------------

def _limits_from_spec(spec: dict[str, Any], observed: dict[str, str]) -> dict[str, str]:
    res = ((spec.get("linux") or {}).get("resources") or {})
    out = dict(observed)
    mem = (res.get("memory") or {}).get("limit")
    if isinstance(mem, int) and mem > 0:
        out["memory.limit_in_bytes"] = str(mem)
    pids = (res.get("pids") or {}).get("limit")
    if isinstance(pids, int) and pids > 0:
        out["pids.max"] = str(pids)
    cpu = res.get("cpu") or {}
    if isinstance(cpu.get("period"), int) and cpu["period"] > 0:
        out["cpu.cfs_period_us"] = str(cpu["period"])
    if isinstance(cpu.get("quota"), int) and cpu["quota"] != 0:
        out["cpu.cfs_quota_us"] = str(cpu["quota"])
    return out


_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


def _check_observed(container_id: str, obs: dict[str, Any]) -> None:
    """Every value the peer sent that ends up in an ``ip`` argv or a cgroup file is
    checked for its shape first (no option injection, no odd strings)."""
    import ipaddress

    where = f"container {container_id}: begin.spec.observed"

    def bad(field: str, value: Any, expected: str) -> MigrationError:
        return MigrationError(f"{where}.{field}={value!r:.100} is invalid (expected {expected})")

    host = obs.get("hostname", "")
    if not isinstance(host, str) or (host and not _HOSTNAME_RE.fullmatch(host)):
        raise bad("hostname", host, "a host name")
    ifaces = obs.get("interfaces") or []
    if not isinstance(ifaces, list) or len(ifaces) > 16:
        raise bad("interfaces", ifaces, "a list of at most 16 interfaces")
    for i, iface in enumerate(ifaces):
        if not isinstance(iface, dict):
            raise bad(f"interfaces[{i}]", iface, "an object")
        name = iface.get("name")
        if not isinstance(name, str) or not _IFNAME_RE.fullmatch(name):
            raise bad(f"interfaces[{i}].name", name, "an interface name")
        mac = iface.get("mac", "")
        if not isinstance(mac, str) or (mac and not _MAC_RE.fullmatch(mac)):
            raise bad(f"interfaces[{i}].mac", mac, "a MAC address")
        mtu = iface.get("mtu", 1500)
        if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise bad(f"interfaces[{i}].mtu", mtu, "68..65535")
        for key in ("addrs", "peer_addrs"):
            addrs = iface.get(key) or []
            if not isinstance(addrs, list) or len(addrs) > 16:
                raise bad(f"interfaces[{i}].{key}", addrs, "a list of at most 16 addresses")
            for a in addrs:
                try:
                    ipaddress.IPv4Interface(str(a))
                except ValueError:
                    raise bad(f"interfaces[{i}].{key}", a, "an IPv4 address/prefix") from None
    routes = obs.get("routes") or []
    if not isinstance(routes, list) or len(routes) > 64:
        raise bad("routes", routes, "a list of at most 64 routes")
    for i, r in enumerate(routes):
        if not isinstance(r, dict):
            raise bad(f"routes[{i}]", r, "an object")
        try:
            if r.get("dst") != "default":
                ipaddress.IPv4Network(str(r.get("dst")), strict=False)
            ipaddress.IPv4Address(str(r.get("gateway")))
        except ValueError:
            raise bad(f"routes[{i}]", r, "dst 'default' or a network, gateway an address") from None
        if not isinstance(r.get("dev"), str) or not _IFNAME_RE.fullmatch(str(r.get("dev"))):
            raise bad(f"routes[{i}].dev", r.get("dev"), "an interface name")
    limits = obs.get("limits") or {}
    if not isinstance(limits, dict):
        raise bad("limits", limits, "an object")
    for k, v in limits.items():
        if k not in {n for names in LIMIT_FILES.values() for n in names}:
            raise bad(f"limits.{k}", v, "one of " + ", ".join(n for ns in LIMIT_FILES.values() for n in ns))
        if not isinstance(v, str) or not re.fullmatch(r"-?[0-9]{1,20}|max", v):
            raise bad(f"limits.{k}", v, "a number or 'max'")


@dataclass
class Isolation:
    """The destination's copy of a container's isolation (see the module docstring)."""

    name: str
    spec: dict[str, Any]
    observed: dict[str, Any]
    rootfs: Path | None = None
    netns: str = ""
    cgroups: dict[str, str] = field(default_factory=dict)   # controller -> absolute dir
    host_veths: list[str] = field(default_factory=list)
    _fds: list[int] = field(default_factory=list)
    _net_fd: int = -1

    @classmethod
    def check(cls, container_id: str, spec: dict[str, Any]) -> None:
        """Refuse what cannot be recreated here, before any page is sent."""
        oci = spec.get("oci")
        obs = spec.get("observed")
        if not isinstance(oci, dict) or not isinstance(obs, dict):
            raise MigrationError(f"container {container_id}: begin.spec must hold 'oci' and 'observed' objects")
        for ns in (oci.get("linux") or {}).get("namespaces") or []:
            if isinstance(ns, dict) and ns.get("type") == "user":
                raise MigrationError(f"container {container_id}: user namespaces are not recreated (spec "
                                     "linux.namespaces has type=user)")
        _check_observed(container_id, obs)
        for iface in obs.get("interfaces") or []:
            if not isinstance(iface, dict) or iface.get("kind") != "veth":
                raise MigrationError(f"container {container_id}: interface {iface!r:.200} is not a veth; only "
                                     "veth interfaces are recreated")
        for ctrl in CONTROLLERS:
            if not (cgroup_root() / ctrl / "cgroup.procs").exists():
                raise MigrationError(f"container {container_id}: {cgroup_root() / ctrl} is not a cgroup v1 "
                                     "hierarchy (cgroup v2-only host, or /sys remounted by `ip netns exec`); "
                                     "this destination cannot apply the container's limits")

    def create(self) -> None:
        """Cgroups with limits, netns with the veth and addresses (done at BEGIN, while the
        source still runs: none of it is visible to the source's host); the seed enters
        them at restore."""
        try:
            self._make_cgroups()
            self._make_network()
        except BaseException:
            self.destroy()
            raise

    def set_rootfs(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self._placeholders()

    def _make_cgroups(self) -> None:
        limits = _limits_from_spec(self.spec, dict(self.observed.get("limits") or {}))
        for ctrl in CONTROLLERS:
            d = cgroup_root() / ctrl / "hetmig" / self.name
            d.mkdir(parents=True, exist_ok=False)
            self.cgroups[ctrl] = str(d)
        # period before quota (a quota above the old period's limits may be refused otherwise)
        for name in ("memory.limit_in_bytes", "pids.max", "cpu.cfs_period_us", "cpu.cfs_quota_us"):
            if name in limits:
                ctrl = name.split(".")[0]
                try:
                    (Path(self.cgroups[ctrl]) / name).write_text(limits[name])
                except OSError as err:
                    raise MigrationError(f"cgroup {self.cgroups[ctrl]}/{name}: cannot set {limits[name]!r}: "
                                         f"{err.strerror}") from err
        for ctrl in CONTROLLERS:
            self._fds.append(os.open(Path(self.cgroups[ctrl]) / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))

    def _make_network(self) -> None:
        if self.observed.get("netns_shared_with_host"):
            raise MigrationError(f"container {self.name}: it shares the host's network namespace on the source; "
                                 "that is not recreated")
        self.netns = f"hetmig-{self.name}"[:60]
        _run(["ip", "netns", "add", self.netns], "create the container's network namespace")
        ns = ["ip", "-n", self.netns]
        _run([*ns, "link", "set", "lo", "up"], "bring up lo")
        for i, iface in enumerate(self.observed.get("interfaces") or []):
            host_end = f"hm{os.urandom(4).hex()}"
            _run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", str(iface["name"]), "netns",
                  self.netns], "create the veth pair")
            self.host_veths.append(host_end)
            if iface.get("mac"):
                _run([*ns, "link", "set", str(iface["name"]), "address", str(iface["mac"])], "set the MAC")
            _run([*ns, "link", "set", str(iface["name"]), "mtu", str(int(iface.get("mtu", 1500)))], "set the MTU")
            _run(["ip", "link", "set", host_end, "mtu", str(int(iface.get("mtu", 1500)))], "set the MTU")
            for addr in iface.get("addrs") or []:
                _run([*ns, "addr", "add", str(addr), "dev", str(iface["name"])], "set the container's address")
            for addr in iface.get("peer_addrs") or []:
                _run(["ip", "addr", "add", str(addr), "dev", host_end], "set the gateway address")
        # the links stay down until the restore (activate): the address must not answer
        # here while the container still runs on the source, nor after an agent died
        self._net_fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY | os.O_CLOEXEC)

    def activate(self) -> None:
        """Bring the veth ends up and add the routes (at cut-over, just before the restore):
        one ``ip -batch`` per side, both at once."""
        self.finish_activate(self.start_activate())

    def start_activate(self) -> list[tuple[list[str], subprocess.Popen[str]]]:
        """:meth:`activate` started in the background (it overlaps the restore);
        :meth:`finish_activate` waits for it and raises if it failed."""
        inside = [f"link set {iface['name']} up" for iface in self.observed.get("interfaces") or []]
        inside += [f"route add {r['dst']} via {r['gateway']} dev {r['dev']}"
                   for r in self.observed.get("routes") or []]
        outside = [f"link set {veth} up" for veth in self.host_veths]
        procs: list[tuple[list[str], subprocess.Popen[str]]] = []
        for argv, cmds in ((["ip", "-n", self.netns, "-batch", "-"], inside), (["ip", "-batch", "-"], outside)):
            if not cmds:
                continue
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            assert proc.stdin is not None
            proc.stdin.write("\n".join(cmds) + "\n")
            proc.stdin.close()
            procs.append((argv, proc))
        return procs

    @staticmethod
    def finish_activate(procs: list[tuple[list[str], subprocess.Popen[str]]]) -> None:
        failed: tuple[list[str], str] | None = None
        for argv, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
            if proc.returncode != 0 and failed is None:
                failed = (argv, err)
        if failed is not None:
            raise PlatformError("bring up the container's network", command=failed[0], stderr=failed[1])

    def enter(self) -> None:
        """In the restore seed (a fresh fork), before the pid namespace is made."""
        libc = _libc()
        me = str(os.getpid()).encode()
        for fd in self._fds:
            os.write(fd, me)
        if libc.setns(self._net_fd, CLONE_NEWNET) != 0:
            raise PlatformError("setns(net) failed", errno=ctypes.get_errno())
        if libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) != 0:
            raise PlatformError("unshare(mnt|uts|ipc) failed", errno=ctypes.get_errno())
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise PlatformError("mount --make-rprivate / failed", errno=ctypes.get_errno())
        if self.rootfs is not None:
            self._populate_dev(libc)
        host = str((self.spec.get("hostname") or self.observed.get("hostname") or self.name)).encode()[:64]
        if libc.sethostname(host, len(host)) != 0:
            raise PlatformError("sethostname failed", errno=ctypes.get_errno())

    def _placeholders(self) -> None:
        """Device nodes <rootfs>/dev/{null,zero,...} (created here, never taken from the
        peer's tar): the restore engine checks, in the agent's own mount namespace, that
        every file the image opens exists with its type; the seed also binds the host's
        devices over them in its private mount namespace (works on nodev mounts)."""
        assert self.rootfs is not None
        dev = self.rootfs / "dev"
        dev.mkdir(exist_ok=True)
        import stat

        for name, (major, minor) in DEVICES.items():
            target = dev / name
            if not target.exists() and not target.is_symlink():
                os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
                os.chmod(target, 0o666)

    def _populate_dev(self, libc: ctypes.CDLL) -> None:
        """The host's null, zero, full, random, urandom and tty bound over the placeholders
        (as runc gives a container); only in the seed's mount namespace."""
        assert self.rootfs is not None
        for name in DEVICES:
            target = self.rootfs / "dev" / name
            if libc.mount(f"/dev/{name}".encode(), str(target).encode(), None, MS_BIND, None) != 0:
                raise PlatformError(f"bind mount /dev/{name} on {target} failed", errno=ctypes.get_errno())

    def after_restore(self, pid: int) -> None:
        """Mount /proc of the new pid namespace inside the rootfs, in the background (it
        overlaps the confirmation round trip); :meth:`settle` collects the outcome."""
        self._proc_mount: subprocess.Popen[bytes] | None = None
        if self.rootfs is not None and (self.rootfs / "proc").is_dir():
            self._proc_mount = subprocess.Popen(
                ["nsenter", "-t", str(pid), "-m", "-p", "mount", "-t", "proc", "proc", str(self.rootfs / "proc")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def settle(self) -> list[str]:
        """Warnings of the background steps of :meth:`after_restore` (waits for them)."""
        proc = getattr(self, "_proc_mount", None)
        self._proc_mount = None
        if proc is None:
            return []
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            return [f"/proc not mounted in the container: {err.decode(errors='replace').strip()[:200]}"]
        return []

    def close_fds(self) -> None:
        for fd in self._fds + ([self._net_fd] if self._net_fd >= 0 else []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds, self._net_fd = [], -1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "netns": self.netns, "cgroups": self.cgroups, "host_veths": self.host_veths,
                "rootfs": str(self.rootfs) if self.rootfs else ""}

    def destroy(self) -> None:
        """Kill whatever is left in the cgroups, remove them, the netns and the veths."""
        try:
            self.settle()
        except (OSError, subprocess.SubprocessError):
            pass
        self.close_fds()
        destroy_parts(self.cgroups, self.netns, self.host_veths)
        self.cgroups, self.netns, self.host_veths = {}, "", []


def _cgroup_pids(d: str) -> list[int]:
    try:
        return [int(x) for x in Path(d, "cgroup.procs").read_text().split()]
    except OSError:
        return []


def destroy_parts(cgroups: dict[str, str], netns: str, host_veths: list[str]) -> None:
    for _ in range(100):
        pids = {p for d in cgroups.values() for p in _cgroup_pids(d)}
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for d in cgroups.values():
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    for d in cgroups.values():  # the shared "hetmig" parent goes with its last child
        try:
            os.rmdir(os.path.dirname(d))
        except OSError:
            pass
    for veth in host_veths:
        _run(["ip", "link", "del", veth], "remove a veth", check=False)
    if netns:
        _run(["ip", "netns", "delete", netns], "remove the netns", check=False)


def isolation_name(container_id: str, migration_id: str) -> str:
    return f"{container_id[:40]}-{migration_id[:8]}"


def cleanup_leftovers(container_id: str, migration_id: str = "") -> list[str]:
    """Remove cgroups and the netns of an isolation whose owner died (an agent killed
    mid-migration); *migration_id* empty: every migration of the container. Returns
    what was removed."""
    prefix = isolation_name(container_id, migration_id) if migration_id else f"{container_id[:40]}-"
    removed: list[str] = []
    cgroups: dict[str, str] = {}
    for ctrl in CONTROLLERS:
        base = cgroup_root() / ctrl / "hetmig"
        if base.is_dir():
            for d in base.iterdir():
                if d.name.startswith(prefix) and d.is_dir():
                    cgroups[f"{ctrl}:{d.name}"] = str(d)
    nets = [n for n in _run(["ip", "netns", "list"], "list netns", check=False).stdout.split()
            if n.startswith(f"hetmig-{prefix}")]
    destroy_parts(cgroups, "", [])
    for n in nets:
        _run(["ip", "netns", "delete", n], "remove the netns", check=False)
    removed += list(cgroups.values()) + nets
    return removed


class EnteringOps:
    """capture.restore's injection ops whose seed enters *isolation* first."""

    def __init__(self, inner: Any, isolation: Isolation) -> None:
        self._inner = inner
        self._iso = isolation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def unshare_pid_namespace(self) -> None:
        self._iso.enter()
        self._inner.unshare_pid_namespace()


# -- containers restored here: records ------------------------------------------------------

def records_dir(state_dir: Path) -> Path:
    return state_dir / "containers"


def write_record(state_dir: Path, container_id: str, data: dict[str, Any]) -> Path:
    d = records_dir(state_dir)
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / f"{container_id}.json"
    tmp = d / f".{container_id}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def read_record(state_dir: Path, container_id: str) -> dict[str, Any]:
    path = records_dir(state_dir) / f"{container_id}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MigrationError(f"container {container_id}: no hetmig record {path} ({err})") from None
    if not isinstance(data, dict):
        raise MigrationError(f"{path}: not a JSON object")
    return data


def destroy_record(state_dir: Path, container_id: str) -> None:
    """Kill a container restored here and remove its cgroups, netns, rootfs and record."""
    data = read_record(state_dir, container_id)
    iso = data.get("isolation") or {}
    for pid in (data.get("init_pid"), data.get("pid")):
        if isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    destroy_parts(dict(iso.get("cgroups") or {}), str(iso.get("netns") or ""), list(iso.get("host_veths") or []))
    rootfs = str(iso.get("rootfs") or "")
    if rootfs and Path(rootfs).resolve().is_relative_to(state_dir.resolve()):
        for _ in range(20):
            r = _run(["umount", "-l", os.path.join(rootfs, "proc")], "umount", check=False)
            if r.returncode != 0:
                break
        shutil.rmtree(Path(rootfs).parent, ignore_errors=True)
    try:
        os.unlink(records_dir(state_dir) / f"{container_id}.json")
    except FileNotFoundError:
        pass


def list_records(state_dir: Path) -> list[str]:
    d = records_dir(state_dir)
    if not d.is_dir():
        return []
    return sorted(p.name[:-5] for p in d.glob("*.json"))


def tar_rootfs(rootfs: Path, out: Path, since: float | None = None) -> int:
    """The rootfs as a tar (regular files, dirs, symlinks; other file systems mounted
    below it are skipped). With *since*: only entries whose mtime or ctime is at or
    after it, plus their parent directories (deletions are not carried). Returns
    the number of entries written."""
    import stat as st_mod
    import tarfile

    dev = rootfs.stat().st_dev
    count = 0

    def changed(st: os.stat_result) -> bool:
        return since is None or max(st.st_mtime, st.st_ctime) >= since

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        stack: list[tuple[Path, str]] = [(rootfs / c, c) for c in sorted(os.listdir(rootfs), reverse=True)]
        while stack:
            p, arc = stack.pop()
            try:  # the base is taken while the container runs: entries may vanish meanwhile
                st = p.lstat()
                if st_mod.S_ISDIR(st.st_mode):
                    if changed(st):
                        tar.add(str(p), arcname=arc, recursive=False)
                        count += 1
                    if st.st_dev != dev:
                        continue
                    stack.extend((p / c, f"{arc}/{c}") for c in sorted(os.listdir(p), reverse=True))
                elif (st_mod.S_ISREG(st.st_mode) or st_mod.S_ISLNK(st.st_mode)) and changed(st):
                    tar.add(str(p), arcname=arc, recursive=False)
                    count += 1
            except FileNotFoundError:
                continue
    return count


def rebase_image_paths(image_dir: Path, rootfs: Path) -> int:
    """Make the file paths of a dump container-relative.

    A container restored here runs chroot-ed into its rootfs inside its own
    mount namespace (not pivot_root-ed as under runc), so the kernel shows its
    files - and the dump records them - with the rootfs path in front. Every
    ``reg_file_entry.name`` under *rootfs* loses that prefix (the rootfs itself
    becomes "/"), in place; returns how many were changed. A path outside the
    rootfs is left as it is (the restore then refuses it by name)."""
    from google.protobuf.message import Message

    from capture.images import read_image, write_image

    prefix = os.path.realpath(rootfs)
    changed = 0

    def fix(msg: Message) -> bool:
        nonlocal changed
        hit = False
        if msg.DESCRIPTOR.name == "reg_file_entry":
            name = getattr(msg, "name", "")
            if name == prefix or name.startswith(prefix + "/"):
                msg.name = name[len(prefix):] or "/"  # type: ignore[attr-defined]
                changed += 1
                hit = True
        for fd, value in msg.ListFields():
            if fd.message_type is None:
                continue
            items = value if getattr(fd, "is_repeated", False) else [value]
            for item in items:
                hit = fix(item) or hit
        return hit

    for path in sorted(image_dir.glob("*.img")):
        if path.name.startswith("pages-"):
            continue
        try:
            img = read_image(path)
        except Exception:  # noqa: BLE001 - raw or unknown images carry no file entries
            continue
        if not img.entries:
            continue
        if any([fix(e) for e in img.entries]):
            write_image(path, img)
    return changed
