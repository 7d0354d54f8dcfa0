"""hetmig's shared capture engine.

Dumps a running process tree into the unified (CRIU-wire-compatible) image
format and restores it, on Linux and (untested on a real host) FreeBSD.
Everything OS-specific goes through one platform interface
(:mod:`capture.platform`). This package never imports the CLIs, the hook or
the runtime shim.
"""
