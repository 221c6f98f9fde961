"""Where things live in a data directory, and the small file-system chores around them.

    data_dir/
        LOCK                         flock'ed by the running process (lock.py)
        wal/<first_lsn:020d>.wal     log segments; the zero-padded name sorts in LSN order
        wal/broken/                  torn tails and dropped segments, kept for forensics
        wal/next.spare               the next segment, created and held open ahead of time so a
                                     rotation needs no new descriptor; never read by recovery
        snap/<last_lsn:020d>.snap    snapshots; ``.snap.broken`` = failed validation
        */*.tmp                      half-written files, deleted at start
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

WAL_DIR = "wal"
SNAP_DIR = "snap"
BROKEN_DIR = "broken"
LOCK_FILE = "LOCK"
SPARE_SEGMENT = "next.spare"

_SEGMENT_RE = re.compile(r"^(\d{20})\.wal$")
_SNAPSHOT_RE = re.compile(r"^(\d{20})\.snap$")


class SegmentFile(NamedTuple):
    first_lsn: int
    path: Path
    size: int


class SnapshotFile(NamedTuple):
    lsn: int
    path: Path
    size: int


def wal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / WAL_DIR


def snap_dir(data_dir: Path) -> Path:
    return Path(data_dir) / SNAP_DIR


def broken_dir(data_dir: Path) -> Path:
    return wal_dir(data_dir) / BROKEN_DIR


def segment_path(data_dir: Path, first_lsn: int) -> Path:
    return wal_dir(data_dir) / f"{first_lsn:020d}.wal"


def spare_segment_path(data_dir: Path) -> Path:
    """The spare segment: empty or a header without records, and not a segment until the log
    renames it to one, so a leftover is truncated and reused by the next start."""
    return wal_dir(data_dir) / SPARE_SEGMENT


def snapshot_path(data_dir: Path, lsn: int) -> Path:
    return snap_dir(data_dir) / f"{lsn:020d}.snap"


def _listing(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path, int]]:
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((int(match.group(1)), Path(entry.path), entry.stat().st_size))
    found.sort()
    return found


def list_segments(data_dir: Path) -> list[SegmentFile]:
    """Segment files in LSN order (by the name; recovery checks the header agrees)."""
    return [SegmentFile(*item) for item in _listing(wal_dir(data_dir), _SEGMENT_RE)]


def list_snapshots(data_dir: Path) -> list[SnapshotFile]:
    """Snapshot files (``.snap`` only, not ``.broken`` or ``.tmp``), oldest first."""
    return [SnapshotFile(*item) for item in _listing(snap_dir(data_dir), _SNAPSHOT_RE)]


def fsync_dir(directory: Path) -> None:
    """Make a create/rename/unlink in ``directory`` durable (a file's fsync does not do that)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_path(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... whichever does not exist yet (never overwrite
    evidence kept from an earlier repair)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def write_durably(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` and fsync it (the caller fsyncs the directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
