"""``hetmig demo``: placeholder main job - translate an example OCI config.

Translates an embedded OCI config (memory, CPU and pids limits, a bind mount,
a hostname) to a FreeBSD jail and prints the jail.conf(5) block and the
rctl(8) rules. Touches nothing on the host. (The live-migration demo will
replace this.) FreeBSD output is untested on a real FreeBSD host.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "translate an example OCI config and print its jail.conf and rctl rules (placeholder demo)"

EXAMPLE_CONFIG: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {
        "args": ["sh", "-c", "while true; do date; sleep 1; done"],
        "cwd": "/",
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]},
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "demo",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": "/srv/demo-data", "options": ["rbind", "ro"]},
    ],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "resources": {
            "memory": {"limit": 268435456, "swap": 536870912},
            "cpu": {"quota": 50000, "period": 100000},
            "pids": {"limit": 64},
        },
    },
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="demo", help="jail name (default: demo)")


def run(args: argparse.Namespace) -> int:
    from runtime_shim.translate import load_rules, oci_to_freebsd, render_jail_conf, render_rctl

    plan = oci_to_freebsd(EXAMPLE_CONFIG, args.name, load_rules(), bundle="/var/lib/hetmig/bundles/demo")
    sys.stdout.write(render_jail_conf(plan))
    sys.stdout.write("\n# rctl(8) rules (rctl -a each line):\n")
    sys.stdout.write(render_rctl(plan))
    return 0
