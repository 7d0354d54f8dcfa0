"""hetmig's OCI hook: ``python -m oci_hook`` / ``hetmig-hook`` (see :mod:`oci_hook.__main__`).

:mod:`oci_hook.jail` is its jail(8) ``exec.created``/``exec.poststop`` mode
(untested on a real FreeBSD host). Nothing here is imported by the engine.
"""
