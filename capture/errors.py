"""The one error hierarchy of hetmig.

Every error a user can cause or meet derives from :class:`HetmigError`; the
CLIs and the hook catch only that base and turn it into a one-line message
and an exit code. Anything else escaping is a bug and may show a traceback.

Exit codes (shared by every CLI): 0 success, 1 operational failure,
2 bad input or usage, 3 refused because something would be lost.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class HetmigError(Exception):
    """Base of every error hetmig raises on purpose."""

    exit_code: int = EXIT_FAILURE


class BadInputError(HetmigError):
    """Input that is wrong: a file, field or value the user must fix."""

    exit_code = EXIT_BAD_INPUT


class SpecError(BadInputError):
    """An OCI config.json (or jail description) that is invalid.

    ``source`` names the file, ``path`` the JSON path of the bad field.
    """

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source = source
        self.path = path
        self.reason = reason
        super().__init__(f"{source}: {path or '$'}: {reason}")


class MappingError(BadInputError):
    """A mapping file that breaks the schema or cannot be read."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source = source
        self.path = path
        self.reason = reason
        super().__init__(f"{source}: {path or '<root>'}: {reason}")


class RefusedError(HetmigError):
    """Refused because something would be lost (strict mode, pre-checks)."""

    exit_code = EXIT_REFUSED


class PlatformError(HetmigError):
    """An OS call or external command failed.

    Carries the errno (if any), the command line (if any) and its stderr.
    """

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        command: list[str] | None = None,
        stderr: str = "",
    ) -> None:
        self.errno = errno
        self.command = command
        self.stderr = stderr
        parts = [message]
        if errno is not None:
            parts.append(f"errno={errno}")
        if command:
            parts.append("command=" + " ".join(command))
        if stderr:
            parts.append("stderr=" + stderr.strip().splitlines()[-1] if stderr.strip() else "")
        super().__init__("; ".join(p for p in parts if p))


class ImageError(BadInputError):
    """An image file that is malformed or hostile.

    Names the file, the magic (hex), the entry index and the byte offset.
    """

    def __init__(
        self,
        file: str,
        reason: str,
        *,
        magic: int | None = None,
        entry: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.file = file
        self.reason = reason
        self.magic = magic
        self.entry = entry
        self.offset = offset
        where = [file]
        if magic is not None:
            where.append(f"magic=0x{magic:08x}")
        if entry is not None:
            where.append(f"entry={entry}")
        if offset is not None:
            where.append(f"offset={offset}")
        super().__init__(f"{' '.join(where)}: {reason}")


class CheckpointError(HetmigError):
    """A dump failed; the process tree was released and runs on."""


class RestoreError(HetmigError):
    """A restore failed; what was half-restored has been killed."""


class RestoreRefusedError(RestoreError):
    """The image set cannot be restored here; nothing was started."""

    exit_code = EXIT_REFUSED


class MigrationError(HetmigError):
    """A migration failed; the source container runs on."""
