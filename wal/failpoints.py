"""Named crash points for the crash-safety tests (DESIGN §5).

``ROSTER_FAILPOINTS=before_write,snap_before_rename roster serve ...`` makes the process die with
``os._exit(77)`` the first time it reaches one of the named points: no ``finally`` blocks, no
buffered-file flushes, just like ``kill -9`` at that exact line. The environment is read once
(the first call), so an unset variable costs one attribute check per call on the hot path.

Points: ``before_write``, ``after_write_before_fsync`` (flusher), ``snap_before_rename``,
``snap_after_rename_before_dirsync`` (snapshot writer), ``before_segment_delete`` (snapshot
retention).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "ROSTER_FAILPOINTS"
EXIT_CODE = 77

_armed: frozenset[str] | None = None


def _load() -> frozenset[str]:
    global _armed
    raw = os.environ.get(ENV_VAR, "")
    _armed = frozenset(name.strip() for name in raw.split(",") if name.strip())
    return _armed


def reload() -> None:
    """Re-read ``ROSTER_FAILPOINTS`` (for a test process that arms a point part-way through)."""
    _load()


def failpoint(name: str) -> None:
    """Exit the process immediately if ``name`` is armed in ``ROSTER_FAILPOINTS``."""
    armed = _armed if _armed is not None else _load()
    if name in armed:
        # os.write, not print: nothing buffered, works from the flusher's worker thread too.
        os.write(sys.stderr.fileno(), f"roster: failpoint {name} hit, exiting\n".encode())
        os._exit(EXIT_CODE)
