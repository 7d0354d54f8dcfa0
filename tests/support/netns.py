"""Re-export of :mod:`runtime_shim.migration.netns` (the shipped two-host helper)."""

from runtime_shim.migration.netns import (  # noqa: F401
    CONTAINER_ADDR, GATEWAY_ADDR, PREFIX, SUBNET, Host, TestHosts, cleanup_stale, list_netns, make_busybox_rootfs,
    netns_pids)
