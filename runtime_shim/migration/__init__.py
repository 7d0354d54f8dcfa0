"""Live migration: the agent (destination), the migration source, and what they share.

Modules:
  identity   key pair, self-signed certificate, fingerprint pinning, TLS contexts
  wire       framed messages (type u16, flags u16, length u32) with hard limits
  messages   the typed control messages and their validators
  safety     image-file names, files under the state dir, rootfs-delta tar checks
  hostinfo   what a host is (OS, arch, kernel, CPU features, xsave, resources) and
             the compatibility pre-check
  engine     the SourceContainer / DestinationRestore interfaces the dump and
             restore engines plug into
  agent      the destination server
  source     the migration driver (pre-copy loop, cut-over)

Nothing here pretends: a part whose engine is missing raises MigrationError.
"""
