"""A FreeBSD interface double over real Linux processes (test support only).

Never shipped (not in setup.cfg packages). Built strictly from
``reference/freebsd/tools-output.md``, ``linuxulator.md``, ``jail-params.md``
and ``rctl.md``; every layout, number and text format is written out here
from those tables, never imported from the FreeBSD modules under test.

* :mod:`tests.freebsd_double.kernel`: ``ptrace(2)`` with FreeBSD requests,
  structs and errno values, ``waitpid`` with FreeBSD wait statuses and
  ``kill`` with FreeBSD signal numbers, implemented over the real Linux
  ptrace/process_vm_* of real processes.
* :mod:`tests.freebsd_double.linprocfs`: a linprocfs-style
  ``/compat/linux/proc`` tree (temp dir) made from the real ``/proc``.
* :mod:`tests.freebsd_double.tools`: ``procstat``, ``jls``, ``jail``,
  ``jexec``, ``rctl``, ``sysctl``, ``mount``/``umount``, ``devfs`` behind the
  CommandRunner protocol, with a stateful jail registry.
* :mod:`tests.freebsd_double.engine`: the FreeBSD platform module wired to
  the doubles (the capture engine takes it as it is, for the dump and,
  through ``capture.platform.freebsd_inject``, for the restore).

Verified against this double, not on a FreeBSD host.
"""
