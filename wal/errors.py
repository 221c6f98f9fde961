"""Every error the write-ahead log raises, in one place.

    WalError                    base class: catch this to catch anything the log raises
    ├── FrameError              bytes do not decode as a header or record (framing.py); carries
    │                           ``kind``, ``offset`` and ``reason``. Recovery turns it into one of
    │                           the errors below or into a repaired torn tail; callers of the
    │                           framing functions see it directly.
    ├── CorruptLogError         start must be refused: damage that is not a torn tail (a bad
    │                           record followed by valid ones, damage in a non-last segment, an
    │                           LSN gap or duplicate). Carries ``path``, ``offset``, ``reason``.
    │                           ``recover(mode="truncate")`` repairs instead of raising.
    ├── LogFailedError          a write or fsync failed and the log is fail-stopped: every waiter
    │   │                       and every later ``submit`` gets this. Never retried (PostgreSQL's
    │   │                       lesson: after a failed fsync the page cache state is unknown).
    │   └── LogClosedError      the log was closed (or its flusher stopped) before the record
    │                           could be written; a subclass so that "cannot log" is one except
    │                           clause for callers that answer 503 either way.
    ├── LockedError             the data directory is locked by another process. Carries
    │                           ``path`` and ``holder`` (the pid text from its LOCK file).
    ├── DataDirError            the data directory cannot be used: not a directory, a parent is
    │                           a file, not writable, disk full. Carries ``path`` and ``reason``.
    └── SnapshotError           a snapshot cannot be read (no trailer, bad CRC, undecodable chunk)
                                or written (one is already running, LSN out of range).

Programming errors (an object msgpack cannot pack, a record larger than ``MAX_RECORD_BYTES``,
waiting for an LSN never submitted) raise the usual ``TypeError`` / ``ValueError`` instead.
"""

from __future__ import annotations

import enum


class WalError(Exception):
    """Base class of every error raised by the ``wal`` package."""


class FrameKind(enum.Enum):
    """What exactly is wrong with a frame; recovery uses it to word its messages."""

    BAD_MAGIC = "bad magic"
    BAD_VERSION = "unsupported format version"
    TRUNCATED_HEADER = "truncated header"
    LENGTH_PAST_END = "length beyond end of file"
    LENGTH_TOO_LARGE = "length larger than the maximum record size"
    CRC_MISMATCH = "crc mismatch"


class FrameError(WalError):
    """A header or record at ``offset`` does not decode."""

    def __init__(self, kind: FrameKind, offset: int, reason: str) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.kind = kind
        self.offset = offset
        self.reason = reason


class CorruptLogError(WalError):
    """The log is damaged in a way recovery must not paper over; start is refused."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"corrupt write-ahead log: {path} at offset {offset}: {reason} "
            "(start refused; --wal-recovery=truncate drops everything from this point, "
            "keeping a copy)"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class LogFailedError(WalError):
    """The log hit a write or fsync error and stopped; nothing after it was acknowledged."""


class LogClosedError(LogFailedError):
    """The log is closed, or its flusher stopped before this record was written."""


class LockedError(WalError):
    """Another process holds the data directory's lock."""

    def __init__(self, path: str, holder: str = "unknown") -> None:
        super().__init__(
            f"data directory {path} is locked by another process (pid {holder}); "
            "is another roster running on it?"
        )
        self.path = path
        self.holder = holder


class DataDirError(WalError):
    """The data directory (or a file the log needs in it) cannot be created or written.

    ``reason`` is for a person: what is wrong, with the operating system's words in brackets
    (``"not writable (Read-only file system)"``).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"data directory {path} is unusable: {reason}")
        self.path = path
        self.reason = reason


class SnapshotError(WalError):
    """A snapshot cannot be read or written."""
