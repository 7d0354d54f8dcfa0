#!/usr/bin/env bash
# Provision a fresh Debian 12 machine for hetmig: runc, podman, busybox,
# iproute2, build tools, and CRIU 4.x from a Debian 13 (trixie) minbase
# chroot run through its own dynamic loader (see docs/environment.md).
# Idempotent: a second run only checks.
set -euo pipefail

CRIU_ROOT=${HETMIG_CRIU_ROOT:-/opt/hetmig/criu-root}
MIRROR=${HETMIG_DEBIAN_MIRROR:-http://deb.debian.org/debian}

need_apt=()
for pair in runc:runc podman:podman busybox:busybox-static debootstrap:debootstrap \
            ip:iproute2 gcc:gcc iptables:iptables ping:iputils-ping zstd:zstd; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
[ -e /usr/include/linux/userfaultfd.h ] || need_apt+=(linux-libc-dev)
# headers and the static C library: test programs, and memwriter is linked -static
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" uidmap slirp4netns fuse-overlayfs containernetworking-plugins >/dev/null
fi

# podman: this machine cannot raise RLIMIT_NOFILE and crun refuses hybrid cgroups.
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
if ! grep -q 'hetmig-provisioned' "$conf" 2>/dev/null; then
    cat > "$conf" <<'CONF'
# hetmig-provisioned
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
fi

# CRIU 4.x from trixie, run through trixie's loader.
if [ ! -x "$CRIU_ROOT/usr/sbin/criu" ]; then
    rm -rf "$CRIU_ROOT.tmp"
    mkdir -p "$(dirname "$CRIU_ROOT")"
    debootstrap --variant=minbase --include=criu,python3-pycriu trixie "$CRIU_ROOT.tmp" "$MIRROR" >/dev/null
    mv "$CRIU_ROOT.tmp" "$CRIU_ROOT"
fi
cat > /usr/local/bin/criu <<WRAP
#!/bin/sh
exec $CRIU_ROOT/usr/lib64/ld-linux-x86-64.so.2 --library-path $CRIU_ROOT/usr/lib/x86_64-linux-gnu $CRIU_ROOT/usr/sbin/criu "\$@"
WRAP
chmod 755 /usr/local/bin/criu
cat > /usr/local/bin/crit <<'WRAP'
#!/bin/sh
# crit runs inside the trixie root; paths given to it must lie under that root.
WRAP
cat >> /usr/local/bin/crit <<WRAP
exec chroot $CRIU_ROOT crit "\$@"
WRAP
chmod 755 /usr/local/bin/crit
echo "HETMIG_CRIU_ROOT=$CRIU_ROOT" > /etc/hetmig-criu.env
criu --version | head -1
