"""hetmig's runtime shim: the translator, the runtime backends and the CLIs.

The translator (:mod:`runtime_shim.translate`) is pure. Backends
(:mod:`runtime_shim.backends`) are the only part that runs runc, podman,
jail(8), jexec or rctl(8). CLIs live in :mod:`runtime_shim.cli`, one module
per verb.
"""
