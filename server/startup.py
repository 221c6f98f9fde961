"""Why ``roster serve`` refused to start: one line for a person and an exit code for a supervisor.

    0  clean stop (SIGTERM/SIGINT, everything acknowledged is durable)
    1  the log failed while serving (a write or fsync error: fail-stop, restart into recovery)
    2  usage error or invalid configuration
    3  cannot listen: port in use, host not an address of this machine, no permission
    4  the data dir is unusable: not a directory, a parent is a file, not writable, disk full
    5  the data dir is locked by another server
    6  the log is corrupt (``roster wal verify`` shows where, ``roster wal repair`` repairs)
    130  SIGINT during recovery, before serving

Codes 2-6 are start-up refusals: nothing was served, and stderr holds exactly one line,
``roster: refusing to start: <reason>`` (``roster: invalid configuration: ...`` for 2). A
supervisor can tell "retrying will not help" (2, 4, 6) from "wait and retry" (3, 5).
"""

from __future__ import annotations

import enum
import errno
import socket

import trio

from wal.errors import (
    CorruptLogError,
    DataDirError,
    FrameError,
    LockedError,
    SnapshotError,
    WalError,
)
from wal.lock import os_reason


class ExitCode(enum.IntEnum):
    OK = 0
    LOG_FAILED = 1
    USAGE = 2
    CANNOT_LISTEN = 3
    DATA_DIR_UNUSABLE = 4
    DATA_DIR_LOCKED = 5
    CORRUPT_LOG = 6


class ListenError(Exception):
    """A port cannot be bound: start is refused with :attr:`ExitCode.CANNOT_LISTEN`."""

    @classmethod
    def bind_failed(cls, lane: str, host: str, port: int, exc: OSError, *, host_flag: str,
                    port_flag: str) -> ListenError:
        """Name what was asked for and what to change, in words rather than an errno."""
        said = exc.strerror or str(exc)
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if isinstance(exc, socket.gaierror):
            why = f"cannot resolve host {host!r} ({said}); check {host_flag}"
        elif exc.errno == errno.EADDRINUSE:
            why = (f"port {port} is already in use ({said}); stop what listens there or choose "
                   f"another port with {port_flag}")
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine ({said}); check {host_flag}"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            why = (f"no permission to listen on port {port} ({said}; ports below 1024 need "
                   f"privileges); choose another with {port_flag}")
        else:
            why = said
        return cls(f"cannot listen for {lane} on {where}: {why}")


def split_bind(bind: str) -> tuple[str, int]:
    """``"[::1]:5001"`` / ``"127.0.0.1:5001"`` (hypercorn's bind strings) -> host and port."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def exit_code(exc: BaseException) -> ExitCode | None:
    """The exit code of a start-up refusal, or None if ``exc`` is not one (then it is a bug and
    keeps its traceback)."""
    if isinstance(exc, ListenError):
        return ExitCode.CANNOT_LISTEN
    if isinstance(exc, LockedError):
        return ExitCode.DATA_DIR_LOCKED
    if isinstance(exc, (CorruptLogError, SnapshotError, FrameError)):
        return ExitCode.CORRUPT_LOG
    if isinstance(exc, WalError):  # DataDirError, and a log that cannot even be opened
        return ExitCode.DATA_DIR_UNUSABLE
    return None


def reason(exc: BaseException, data_dir: str) -> str:
    """The text after ``roster: refusing to start:`` (always one line)."""
    text = str(exc)
    if isinstance(exc, (CorruptLogError, SnapshotError, FrameError)):
        text += f"; `roster wal verify --data-dir {data_dir}` shows the damage"
    return " ".join(text.split())


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a trio nursery wrapped, when it is one error: the start-up refusal raised inside
    the nursery (the other tasks only saw Cancelled). Anything else stays the group."""
    leaves = list(_leaves(group))
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    return real[0] if len(real) == 1 else group


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def unusable(data_dir: str, exc: OSError, doing: str) -> DataDirError:
    """An OSError met while starting on ``data_dir`` (reading the log, creating its first
    segment) as the :class:`DataDirError` a person can act on."""
    where = f" ({exc.filename})" if exc.filename else ""
    return DataDirError(data_dir, f"{doing}{where}: {os_reason(exc)}")
