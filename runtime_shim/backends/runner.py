"""Running external commands: one small interface, a real runner, a recorder.

Backends never call :mod:`subprocess` themselves; they take a
:class:`CommandRunner` and hand it an argv list. Two implementations live here:

* :class:`SubprocessRunner` runs the command for real (no shell, argv as
  given, text I/O, a timeout). A missing program becomes a
  :class:`~capture.errors.PlatformError`.
* :class:`RecordingRunner` runs nothing. It records every argv it is given,
  in order, and answers with canned :class:`CompletedCommand` replies keyed by
  the exact argv (several replies for one argv are used in order, the last one
  repeating). Unknown commands get a default reply (exit 0, no output) or, in
  strict mode, fail the test with :class:`UnexpectedCommand`.

The FreeBSD jail backend is tested only through :class:`RecordingRunner` with
outputs composed from the FreeBSD reference tables: it is untested on a real
FreeBSD host.

This module refuses to use a shell: argv lists only, never a command string.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

from capture.errors import PlatformError

Argv = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompletedCommand:
    """What one command did: its argv, exit status and captured output."""

    argv: Argv
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandRunner(Protocol):
    """Runs one command (argv list, optional stdin text) to completion."""

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        ...


def check(result: CompletedCommand, what: str) -> CompletedCommand:
    """Return *result* if it exited 0, else raise PlatformError naming *what*."""
    if result.returncode != 0:
        raise PlatformError(
            f"{what} failed with exit status {result.returncode}",
            command=list(result.argv),
            stderr=result.stderr,
        )
    return result


def _validate_argv(argv: Sequence[str]) -> Argv:
    if isinstance(argv, str):
        raise TypeError(f"argv must be a sequence of strings, not the string {argv!r}")
    out = tuple(argv)
    if not out:
        raise ValueError("argv is empty")
    for i, a in enumerate(out):
        if not isinstance(a, str):
            raise TypeError(f"argv[{i}]={a!r} is not a string")
    return out


class SubprocessRunner:
    """Runs commands for real with :func:`subprocess.run` (no shell)."""

    def __init__(self, timeout: float | None = 120.0, env: Mapping[str, str] | None = None) -> None:
        self.timeout = timeout
        self.env = dict(env) if env is not None else None

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        args = _validate_argv(argv)
        try:
            proc = subprocess.run(
                list(args),
                input=input,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self.env,
                check=False,
            )
        except FileNotFoundError as err:
            raise PlatformError(f"program {args[0]!r} not found", errno=err.errno, command=list(args)) from err
        except PermissionError as err:
            raise PlatformError(f"program {args[0]!r} not executable", errno=err.errno, command=list(args)) from err
        except subprocess.TimeoutExpired as err:
            raise PlatformError(f"timed out after {self.timeout} s", command=list(args)) from err
        return CompletedCommand(args, proc.returncode, proc.stdout, proc.stderr)


class UnexpectedCommand(AssertionError):
    """A strict RecordingRunner was asked to run a command it has no reply for."""


@dataclass(slots=True)
class RecordedCall:
    """One call seen by a RecordingRunner (argv and the stdin text given)."""

    argv: Argv
    input: str | None


@dataclass(slots=True)
class RecordingRunner:
    """Records argv lists and replays canned outputs keyed by exact argv.

    ``replies`` maps an argv tuple to a list of replies used in order; once
    only one is left it is repeated. ``strict`` makes an argv without a reply
    raise :class:`UnexpectedCommand` instead of answering ``default``.
    """

    strict: bool = False
    default_returncode: int = 0
    replies: dict[Argv, list[CompletedCommand]] = field(default_factory=dict)
    calls: list[RecordedCall] = field(default_factory=list)

    def reply(
        self,
        argv: Sequence[str],
        *,
        returncode: int = 0,
        stdout: str = "",
        stderr: str = "",
    ) -> "RecordingRunner":
        """Queue one reply for *argv* (chainable)."""
        key = _validate_argv(argv)
        self.replies.setdefault(key, []).append(CompletedCommand(key, returncode, stdout, stderr))
        return self

    def run(self, argv: Sequence[str], input: str | None = None) -> CompletedCommand:
        key = _validate_argv(argv)
        self.calls.append(RecordedCall(key, input))
        queue = self.replies.get(key)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        if self.strict:
            raise UnexpectedCommand(f"no recorded reply for: {' '.join(key)}")
        return CompletedCommand(key, self.default_returncode, "", "")

    @classmethod
    def load(cls, path: str, *, strict: bool = True) -> "RecordingRunner":
        """A runner replaying a recording file: a JSON list of
        ``{"argv": [...], "returncode": 0, "stdout": "...", "stderr": "..."}``."""
        import json

        with open(path, encoding="utf-8") as fh:
            items = json.load(fh)
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON list of replies")
        runner = cls(strict=strict)
        for i, item in enumerate(items):
            argv = item.get("argv") if isinstance(item, dict) else None
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError(f"{path}: [{i}].argv must be a non-empty list of strings")
            rc = item.get("returncode", 0)
            out, err = item.get("stdout", ""), item.get("stderr", "")
            if isinstance(rc, bool) or not isinstance(rc, int) or not isinstance(out, str) or not isinstance(err, str):
                raise ValueError(f"{path}: [{i}] returncode must be an integer, stdout/stderr strings")
            runner.reply(argv, returncode=rc, stdout=out, stderr=err)
        return runner

    @property
    def argvs(self) -> list[Argv]:
        """Every argv run so far, in order."""
        return [c.argv for c in self.calls]

    def command_lines(self) -> list[str]:
        """Every command run so far as a shell-quoted line (for golden tests)."""
        import shlex

        return [shlex.join(c.argv) for c in self.calls]
