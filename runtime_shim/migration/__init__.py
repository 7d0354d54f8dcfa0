"""Live migration: the agent (destination), the migration source, and what they share.

Modules:
  identity   key pair, self-signed certificate, fingerprint pinning, TLS contexts
  wire       framed messages (type u16, flags u16, length u32) with hard limits
  safety     image-file names, files under the state dir, rootfs-delta tar checks
  hostinfo   what a host is (OS, arch, kernel, CPU flags, XCR0 + XSAVE size,
             Linuxulator, free memory/disk) and the compatibility pre-check
  engine     the SourceContainer / DestinationRestore seams and their
             implementations (plain process; runc container; staging restore)
  agent      the destination server
  source     the migration driver (pre-copy loop, cut-over, roll-back)

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
    checks of capture.restore_checks still apply). Containers are refused
    until their isolation can be recreated (never restored without it).
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
