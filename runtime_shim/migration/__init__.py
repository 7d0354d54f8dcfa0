"""Live migration: the agent (destination), the migration source, and what they share.

Modules:
  identity   key pair, self-signed certificate, fingerprint pinning, TLS contexts
  wire       framed messages (type u16, flags u16, length u32) with hard limits
  safety     image-file names, files under the state dir, rootfs-delta tar checks
  hostinfo   what a host is (OS, arch, kernel, CPU flags, XCR0 + XSAVE size,
             Linuxulator, free memory/disk) and the compatibility pre-check
  engine     the SourceContainer / DestinationRestore seams and their
             implementations (plain process; runc container; a container an
             agent restored; staging restore)
  container  a container's isolation: observed on the source (hostname,
             veth interfaces + addresses + gateway, routes, cgroup v1 limits),
             recreated on the destination (cgroups with the spec's limits, a
             named netns + veth keeping the IP, mnt/uts/ipc/pid namespaces,
             the received rootfs), records of containers restored here
  agent      the destination server
  source     the migration driver (pre-copy loop, cut-over, roll-back)
  netns, lab two hosts as network namespaces and a counter container on one
             machine (``hetmig demo`` and the tests)

How a migration runs: connect (TLS 1.3, both sides pinned) -> HELLO with fresh
nonces and a never-used migration id -> CHECK/VERDICT (exit 3 before anything is
touched when the destination lacks CPU flags, XSAVE components, the
Linuxulator, memory or disk) -> BEGIN -> pre-copy rounds while the process runs
(capture.dirty: uffd-wp + PAGEMAP_SCAN, or hashing) -> ptrace freeze -> final
dirty round -> dump (capture.dump, inside our freeze) -> image files; each
pages-N.img is rebuilt by the agent from the pre-copied pages, only pages it
cannot trust cross the wire at cut-over -> COMMIT -> restore (capture.restore,
fresh pid namespace; the copy is held stopped) -> CONFIRM -> FINISH (the agent
releases its copy) -> ACK -> the source is killed. Any failure before that ACK
releases the source, which runs on untouched.

Containers (Linux, runc source; cgroup v1 hybrid hosts): BEGIN carries the
OCI config.json and what the source observed of the running container; the
agent checks it (shapes of every interface name, address, route and limit),
then creates the per-container cgroups (memory, pids, cpu: limits from the
spec) and the network namespace with a veth pair carrying the container's
address, MAC and routes while the source still runs. The whole rootfs goes
as a checked tar during pre-copy, the files changed since then at cut-over
(deletions are not carried). The freeze is a ptrace freeze of the container's
whole process tree, not the cgroup freezer: a task frozen by the cgroup
freezer cannot be ptrace-stopped, and the dump and our userfaultfd injection
need ptrace. At COMMIT the restore engine's seed process joins the cgroups
and the netns, unshares mount/UTS/IPC namespaces (mounts private, the host's
null/zero/full/random/urandom/tty bound into the rootfs's /dev, the spec's
hostname) and then the pid namespace; the tree is chroot-ed into the rootfs
(under the agent's state dir) and /proc of its pid namespace is mounted
there. The restored container is NOT a runc container on the destination: it
is recorded in <state-dir>/containers/<id>.json and moves on with
``hetmig migrate ID --agent-state DIR`` (its dump's paths are rebased to the
rootfs). After the agent's ACK of FINISH the source removes the container's
veth (the address now lives on the destination), kills the tree and runs
``runc kill`` + ``runc delete --force``. Any failure before that thaws the
source; the agent removes the isolation it made (a killed agent's leftovers
are removed when it starts again). Seccomp filters go with the process
images (restored per thread). Not recreated: user namespaces (refused),
non-veth interfaces (refused), AppArmor/SELinux labels, devices cgroup rules, bind mounts other than the rootfs, /dev/pts, /dev/shm, /sys.

Security model (what this package guarantees and what it does not):
  * Authenticated: both ends, by certificate fingerprint pins in the state
    dir (no CA, no trust on first use). An agent refuses a client whose
    certificate is not pinned during the TLS handshake and checks the pin again
    before reading a byte; the refusal is logged. The source refuses an agent
    whose fingerprint it has not pinned before sending anything.
  * Encrypted and integrity-protected: everything after the handshake (TLS 1.3
    only). An unauthenticated peer sees only the agent's certificate (public).
  * Replay: TLS 1.3 itself (fresh keys per connection; no 0-RTT), plus an
    application nonce echoed by the agent and a migration id the agent refuses
    to see twice (its directory exists).
  * Bounded: every frame, page batch, run count, file size, file count, tar
    member count and announced total is checked before it is allocated or
    written; the announced disk use must fit the state dir's free space.
  * Confined: a peer names files only as single components of
    [A-Za-z0-9._-] created with O_EXCL|O_NOFOLLOW under the per-migration
    directory; rootfs deltas with absolute paths, '..', device nodes, FIFOs or
    links leaving the tree are refused before extraction.
  * Not guarded: the agent runs as root and restores what an authenticated
    peer sends; a pinned peer is trusted to send a sane process (the image
    checks of capture.restore_checks still apply). A container is never
    restored without its isolation: no rootfs or no spec, no restore. The
    peer's description of the container's network and limits reaches ``ip``
    and cgroup files only after its shape is checked; device nodes in the
    rootfs are made by the agent, never taken from the peer's tar.
  * Exactly one copy: the agent holds the restored copy stopped under ptrace
    with EXITKILL (it dies if the agent dies) until FINISH; the source kills
    its own copy only after the agent's ACK of FINISH. If that ACK is lost,
    the source asks STATUS on a new connection ("done": kill the source;
    "aborted": thaw it). If the agent cannot be asked, the source is left
    stopped (SIGSTOP) with a message saying so, never thawed into a second
    copy (tests/test_migration_netns.py exercises kill/drop at FINISH).

The FreeBSD host probe is written against FreeBSD's documented interfaces and
is untested on FreeBSD. Nothing here pretends: a missing engine is a
MigrationError naming it.
"""
