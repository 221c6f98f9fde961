"""Named crash points and injected I/O errors for the crash-safety tests
(docs/architecture.md, "How we test").

``ROSTER_FAILPOINTS`` is a comma-separated list of ``name`` or ``name@N`` (N >= 1; ``name`` is
``name@1``). The same name may appear several times with different N. The environment is read
once (the first call), so an unset variable costs one attribute check per crash point and nothing
at all on the I/O path (:func:`io_hooks` then hands back the real functions).

**Crash points** make the process die with ``os._exit(77)`` the N-th time it reaches them: no
``finally`` blocks, no buffered-file flushes, just like ``kill -9`` at that exact line.

    before_write                      flusher, before a batch's write
    after_write_before_fsync          flusher, after the write, before the fdatasync
    snap_before_rename                snapshot writer: data fsynced, ``*.tmp`` not yet renamed
    snap_after_rename_before_dirsync  snapshot writer: renamed, directory not yet fsynced
    before_segment_delete             snapshot retention, before each covered segment's unlink
    spare_before_rename               rotation: the spare segment holds its header (fsynced) and
                                      is not yet renamed to its segment name (hit 1 is at start)

**Injected I/O errors** replace the log's ``write`` / ``fdatasync`` (``WriteAheadLog._write`` and
``_fdatasync``) so that their N-th call fails. Every call the log makes counts, in order: the
segment header's write and fdatasync when a segment is created (one each at start, one each per
rotation), then each batch's write(s) and, under ``--fsync always``, its fdatasync.

    fsync_eio        the N-th fdatasync raises EIO (nothing is synced)
    fsync_enospc     the N-th fdatasync raises ENOSPC
    write_eio        the N-th write raises EIO (nothing is written)
    write_enospc     the N-th write raises ENOSPC
    write_short      the N-th write writes only the first half of its bytes and returns that
                     count (the log retries the rest once; ``write_short@5,write_enospc@6`` is a
                     disk filling up mid-batch)

Counters of crash points are per process; counters of injected errors are per
:func:`io_hooks` call, i.e. per ``WriteAheadLog``.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable, Mapping

ENV_VAR = "ROSTER_FAILPOINTS"
EXIT_CODE = 77

CRASH_POINTS = frozenset({
    "before_write",
    "after_write_before_fsync",
    "snap_before_rename",
    "snap_after_rename_before_dirsync",
    "before_segment_delete",
    "spare_before_rename",
})
IO_ERRORS = frozenset({"fsync_eio", "fsync_enospc", "write_eio", "write_enospc", "write_short"})

WriteFn = Callable[[int, memoryview], int]
SyncFn = Callable[[int], None]

_armed: Mapping[str, frozenset[int]] | None = None
_hits: dict[str, int] = {}
_lock = threading.Lock()


def parse(raw: str) -> dict[str, frozenset[int]]:
    """``"a,b@3,b@5"`` -> ``{"a": {1}, "b": {3, 5}}``; raise ValueError for a bad entry."""
    armed: dict[str, set[int]] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, at, count = entry.partition("@")
        name = name.strip()
        if name not in CRASH_POINTS and name not in IO_ERRORS:
            raise ValueError(f"{ENV_VAR}: unknown failpoint {name!r}")
        try:
            n = int(count) if at else 1
        except ValueError:
            raise ValueError(f"{ENV_VAR}: {entry!r}: N in name@N must be an integer") from None
        if n < 1:
            raise ValueError(f"{ENV_VAR}: {entry!r}: N must be >= 1")
        armed.setdefault(name, set()).add(n)
    return {name: frozenset(ns) for name, ns in armed.items()}


def _say(message: str) -> None:
    # os.write, not print: nothing buffered, works from the flusher's worker thread too.
    os.write(sys.stderr.fileno(), f"roster: {message}\n".encode())


def _load() -> Mapping[str, frozenset[int]]:
    global _armed
    try:
        armed = parse(os.environ.get(ENV_VAR, ""))
    except ValueError as exc:
        # A typo must not pass silently (the test would "pass" without crashing), but this runs
        # deep inside the log: say it loudly and arm nothing.
        _say(f"ignoring {ENV_VAR}: {exc}")
        armed = {}
    with _lock:
        _hits.clear()
        _armed = armed
    return armed


def reload() -> None:
    """Re-read ``ROSTER_FAILPOINTS`` and reset the hit counters (for a test process that arms a
    point part-way through)."""
    _load()


def armed() -> Mapping[str, frozenset[int]]:
    """What is armed: name -> the hit numbers that fire."""
    return _armed if _armed is not None else _load()


def failpoint(name: str) -> None:
    """Exit the process immediately if this is an armed hit of crash point ``name``."""
    points = _armed if _armed is not None else _load()
    if name in points:
        with _lock:
            hit = _hits[name] = _hits.get(name, 0) + 1
        if hit in points[name]:
            _say(f"failpoint {name} hit, exiting")
            os._exit(EXIT_CODE)


def io_hooks(write: WriteFn, fdatasync: SyncFn) -> tuple[WriteFn, SyncFn]:
    """The log's ``write`` and ``fdatasync``: the real ones unless an I/O error is armed."""
    points = armed()
    write_plan = {name: points[name] for name in ("write_eio", "write_enospc", "write_short")
                  if name in points}
    sync_plan = {name: points[name] for name in ("fsync_eio", "fsync_enospc") if name in points}
    lock = threading.Lock()
    calls = {"write": 0, "fsync": 0}

    def count(kind: str) -> int:
        with lock:
            calls[kind] += 1
            return calls[kind]

    def injected_write(fd: int, data: memoryview) -> int:
        n = count("write")
        if n in write_plan.get("write_eio", ()):
            _say(f"injected EIO on write call {n}")
            raise OSError(errno.EIO, f"injected EIO (write call {n})")
        if n in write_plan.get("write_enospc", ()):
            _say(f"injected ENOSPC on write call {n}")
            raise OSError(errno.ENOSPC, f"injected ENOSPC (write call {n})")
        if n in write_plan.get("write_short", ()) and len(data) > 1:
            _say(f"injected short write on write call {n}")
            return write(fd, data[: len(data) // 2])
        return write(fd, data)

    def injected_fdatasync(fd: int) -> None:
        n = count("fsync")
        if n in sync_plan.get("fsync_eio", ()):
            _say(f"injected EIO on fdatasync call {n}")
            raise OSError(errno.EIO, f"injected EIO (fdatasync call {n})")
        if n in sync_plan.get("fsync_enospc", ()):
            _say(f"injected ENOSPC on fdatasync call {n}")
            raise OSError(errno.ENOSPC, f"injected ENOSPC (fdatasync call {n})")
        fdatasync(fd)

    return (injected_write if write_plan else write,
            injected_fdatasync if sync_plan else fdatasync)
