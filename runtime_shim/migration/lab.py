"""Two hosts and a counter container on one machine (``hetmig demo`` and the tests).

:class:`Lab` (a context manager) builds, under one temporary directory:
  * hosts A and B: network namespaces joined by a veth pair
    (:class:`runtime_shim.migration.netns.TestHosts`, 10.210.0.1 / 10.210.0.2);
  * a container network namespace on A: ``eth0`` 10.210.1.2/24, gateway
    10.210.1.1 on A's end of its veth;
  * a busybox rootfs and a runc bundle whose process writes an increasing
    number to /data/c every 100 ms (through a rename, so a reader never sees a
    half-written file) and holds ``memory_mib`` MiB in a shell variable (plus a
    small string it extends every tick); memory, pids and CPU limits in the spec.
    With ``workload="memwriter"`` the process is instead the static C program
    ``tests/programs/memwriter.c`` (built with ``gcc -static`` and copied into
    the rootfs as /bin/memwriter): it holds ``memory_mib`` MiB, rewrites pages
    at ``rate_bytes`` bytes per second and writes the same /data/c counter;
  * identities for both hosts (``hetmig agent init``), each pinning the other;
  * agents started on request inside a host (``nsenter --net``, which keeps
    /sys/fs/cgroup visible), ``hetmig migrate`` run inside a host.

Closing it removes everything it made, whatever state things are in: agents
(SIGTERM, then SIGKILL), the runc container, containers the agents restored
(their cgroups, netns, veths, rootfs), the namespaces, the temporary
directory. It refuses nothing by itself; missing tools (runc, ip, nsenter,
busybox) surface as the errors of the commands that need them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from capture.errors import MigrationError
from runtime_shim.migration import container, netns

REPO = Path(__file__).resolve().parents[2]
MEMWRITER_SOURCE = REPO / "tests" / "programs" / "memwriter.c"
WORKLOADS = ("shell", "memwriter")
COUNTER_SCRIPT = ("m=$(head -c {size} /dev/zero | tr '\\0' x); i=0; d=; "
                  "while true; do i=$((i+1)); echo $i > /data/c.tmp; mv /data/c.tmp /data/c; "
                  "d=\"$d$i\"; [ ${{#d}} -gt 65536 ] && d=; sleep 0.1; done")
LIMITS = {"memory": 256 << 20, "pids": 64, "cpu_quota": 50000, "cpu_period": 100000}


def hetmig_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime_shim.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def build_memwriter(dest: Path) -> Path:
    """Compile tests/programs/memwriter.c statically (it runs in the busybox rootfs) to *dest*."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise MigrationError("the memwriter workload needs gcc (with static libc) to build "
                             f"{MEMWRITER_SOURCE}")
    proc = subprocess.run([gcc, "-static", "-O2", "-o", str(dest), str(MEMWRITER_SOURCE)], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise MigrationError(f"gcc -static {MEMWRITER_SOURCE} failed: {proc.stderr.strip()[-1000:]}")
    return dest


class Agent:
    """A running ``hetmig agent`` inside one host."""

    def __init__(self, host: netns.Host, state: Path, fault: str | None = None) -> None:
        self.host = host
        self.state = state
        extra = ["--inject-fault", fault] if fault else []
        self.proc = host.popen(hetmig_argv("agent", "--listen", f"{host.addr}:0", "--state-dir", str(state), "--json",
                                           *extra), env=_env(), stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line:
            self.proc.wait(timeout=10)
            raise MigrationError(f"agent on {host.netns} did not start (exit {self.proc.returncode})")
        self.address = str(json.loads(line)["listening"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Lab:
    def __init__(self, *, memory_mib: int = 8, prefix: str = "hetmig-demo-",
                 log: Callable[[str], None] | None = None, workload: str = "shell",
                 rate_bytes: int = 5_000_000, memwriter: Path | None = None) -> None:
        if workload not in WORKLOADS:
            raise MigrationError(f"Lab workload={workload!r} is not one of {', '.join(WORKLOADS)}")
        self.memory_mib = memory_mib
        self.workload = workload
        self.rate_bytes = rate_bytes
        self.memwriter = memwriter  # a prebuilt static memwriter binary; built on demand when None
        self.log = log or (lambda msg: None)
        self.tmp = Path(tempfile.mkdtemp(prefix="hetmig-lab-"))
        self.hosts = netns.TestHosts(prefix=prefix)
        self.cid = "counter-" + uuid.uuid4().hex[:8]
        self.runc_root = self.tmp / "runc-root"
        self.bundle = self.tmp / "bundle"
        self.state = {"a": self.tmp / "state-a", "b": self.tmp / "state-b"}
        self.agents: dict[str, Agent] = {}
        self.started = False

    # -- set-up -----------------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        try:
            self.hosts.__enter__()
            self._keys()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _hetmig(self, *args: str) -> str:
        proc = subprocess.run(hetmig_argv(*args), capture_output=True, text=True, env=_env(), timeout=60)
        if proc.returncode != 0:
            raise MigrationError(f"hetmig {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def _keys(self) -> None:
        fps = {}
        for name, state in self.state.items():
            self._hetmig("agent", "init", "--state-dir", str(state))
            fps[name] = self._hetmig("agent", "fingerprint", "--state-dir", str(state))
        for me, other in (("a", "b"), ("b", "a")):
            self._hetmig("agent", "trust", fps[other], "--cert", str(self.state[other] / "cert.pem"),
                         "--state-dir", str(self.state[me]))
        self.log(f"identities: A {fps['a'][:16]}..., B {fps['b'][:16]}... (pinned both ways)")

    def spec(self, netns_path: str) -> dict[str, Any]:
        proc = subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            raise MigrationError(f"runc spec failed: {proc.stderr.strip()}")
        cfg: dict[str, Any] = json.loads((self.bundle / "config.json").read_text())
        cfg["process"]["terminal"] = False
        if self.workload == "memwriter":
            cfg["process"]["args"] = ["/bin/memwriter", "--mib", str(self.memory_mib),
                                      "--rate-bytes", str(self.rate_bytes)]
        else:
            cfg["process"]["args"] = ["sh", "-c", COUNTER_SCRIPT.format(size=self.memory_mib << 20)]
        cfg["root"]["readonly"] = False
        cfg["hostname"] = "counter"
        cfg["linux"]["namespaces"] = [ns if ns["type"] != "network" else {"type": "network", "path": netns_path}
                                      for ns in cfg["linux"]["namespaces"]]
        cfg["linux"]["resources"] = {**(cfg["linux"].get("resources") or {}),
                                     "memory": {"limit": LIMITS["memory"] + (self.memory_mib << 21)},
                                     "pids": {"limit": LIMITS["pids"]},
                                     "cpu": {"quota": LIMITS["cpu_quota"], "period": LIMITS["cpu_period"]}}
        return cfg

    def start_container(self) -> None:
        """The counter container under runc on host A."""
        path = self.hosts.container_net()
        netns.make_busybox_rootfs(self.bundle / "rootfs")
        if self.workload == "memwriter":
            binary = self.memwriter or build_memwriter(self.tmp / "memwriter")
            shutil.copy2(binary, self.bundle / "rootfs" / "bin" / "memwriter")
        cfg = self.spec(path)
        (self.bundle / "config.json").write_text(json.dumps(cfg, indent=1))
        # the container inherits runc's stdio: /dev/null for all three (a pipe would keep
        # runc's caller waiting for EOF; a file would be an open file the restore needs)
        self.started = True
        proc = subprocess.run(["runc", "--root", str(self.runc_root), "run", "-d", "--bundle", str(self.bundle),
                               self.cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60)
        if proc.returncode != 0:
            raise MigrationError(f"runc run {self.cid} failed (exit {proc.returncode}); run it by hand to see why")
        self.log(f"container {self.cid} runs under runc on host A ({netns.CONTAINER_ADDR}, "
                 f"{self.memory_mib} MiB held)")

    def start_agent(self, host: str, fault: str | None = None) -> Agent:
        h = self.hosts.a if host == "a" else self.hosts.b
        agent = Agent(h, self.state[host], fault)
        self.agents[host] = agent
        self.log(f"agent on host {host.upper()} listens on {agent.address}")
        return agent

    # -- doing things -----------------------------------------------------------------------
    def migrate(self, src: str, dst: str, *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``hetmig migrate`` run on host *src* towards the agent on host *dst*."""
        host = self.hosts.a if src == "a" else self.hosts.b
        args = ["migrate", self.cid, "--to", self.agents[dst].address, "--state-dir", str(self.state[src]),
                "--json"]
        if self.where() == ("runc", "a") and src == "a":
            args += ["--runc-root", str(self.runc_root)]
        else:
            args += ["--agent-state", str(self.state[src])]
        return host.run(hetmig_argv(*args), env=_env(), timeout=timeout)

    def where(self) -> tuple[str, str]:
        """("runc", "a") while runc runs it on A, ("agent", host) where an agent restored it,
        ("none", "") when it runs nowhere we know."""
        if self.started and self._runc_state() == "running":
            return "runc", "a"
        for host, state in self.state.items():
            if self.cid in container.list_records(state):
                pid = int(container.read_record(state, self.cid).get("pid", 0))
                if pid > 0 and os.path.exists(f"/proc/{pid}"):
                    return "agent", host
        return "none", ""

    def _runc_state(self) -> str:
        proc = subprocess.run(["runc", "--root", str(self.runc_root), "state", self.cid], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            return ""
        return str(json.loads(proc.stdout).get("status", ""))

    def counter_file(self, host: str) -> Path:
        """The counter file of the copy on *host*: an agent's restored copy if there is one,
        else (on A) the runc bundle's (which keeps the last value A wrote)."""
        if self.cid in container.list_records(self.state[host]):
            rec = container.read_record(self.state[host], self.cid)
            return Path(str(rec["isolation"]["rootfs"])) / "data" / "c"
        if host == "a":
            return self.bundle / "rootfs" / "data" / "c"
        raise MigrationError(f"no copy of {self.cid} on host {host.upper()}")

    def read_counter(self, host: str, *, wait: float = 5.0) -> int:
        deadline = time.monotonic() + wait
        while True:
            try:
                text = self.counter_file(host).read_text().strip()
                if text:
                    return int(text)
            except (OSError, ValueError, MigrationError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise MigrationError(f"no counter value on host {host.upper()}")
            time.sleep(0.01)

    def container_pid(self) -> int:
        kind, host = self.where()
        if kind == "runc":
            out = subprocess.run(["runc", "--root", str(self.runc_root), "state", self.cid], capture_output=True,
                                 text=True, timeout=30).stdout
            return int(json.loads(out)["pid"])
        if kind == "agent":
            return int(container.read_record(self.state[host], self.cid)["pid"])
        raise MigrationError(f"container {self.cid} runs nowhere")

    def limits(self) -> dict[str, str]:
        """The cgroup limit files of the container where it runs now."""
        return container.read_limits(container._cgroup_paths(self.container_pid()))

    def ping(self, host: str) -> bool:
        h = self.hosts.a if host == "a" else self.hosts.b
        return h.run(["ping", "-c", "1", "-W", "2", netns.CONTAINER_ADDR], timeout=10).returncode == 0

    # -- tear-down --------------------------------------------------------------------------
    def close(self) -> None:
        for agent in self.agents.values():
            try:
                agent.stop()
            except OSError:
                pass
        self.agents.clear()
        if self.started:
            subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", self.cid],
                           capture_output=True, timeout=60)
        for state in self.state.values():
            for cid in container.list_records(state):
                try:
                    container.destroy_record(state, cid)
                except MigrationError:
                    pass
        container.cleanup_leftovers(self.cid)
        self.hosts.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
