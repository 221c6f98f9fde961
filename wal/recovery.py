"""Rebuild state at start: newest valid snapshot, then the log after it.

The rules, in the order they are applied:

* ``*.tmp`` files are half-written leftovers of a crash and are deleted.
* Snapshots are tried newest first. Each is validated completely (every CRC, the trailer) before
  its first chunk is handed to the caller, so a bad snapshot never leaves the caller's state
  half-loaded; a bad one is renamed ``.broken`` and the next older one is tried.
* Segments are read in LSN order. Every record is CRC-checked, also those at or below the
  snapshot's LSN (which are not applied). Inside a segment LSNs rise by exactly one from the
  header's first LSN; a segment starts where the previous one ended. A gap among the records that
  must be replayed is fatal; a gap wholly covered by the snapshot is only logged.
* Damage in the **last** segment with no intact later record after it is a **torn tail** (a crash
  while appending): the torn bytes are copied to ``wal/broken/<segment>.torn-<offset>``, the
  segment is truncated there, and recovery continues. Anything else — damage in an earlier
  segment, damage followed by an intact record, a record with the wrong LSN or type — is
  **corruption**: :class:`CorruptLogError` naming file and offset, unless ``mode="truncate"``,
  which copies everything from the damage on (and every later segment) to ``wal/broken/`` and
  keeps the prefix.

Known limit: after a *power loss* the kernel may have persisted a later page of the last,
not-yet-fsynced batch but not an earlier one; that also looks like "damage followed by a valid
record" and is refused. The records involved were never acknowledged under ``--fsync always``,
so ``truncate`` loses nothing that was promised; strict refusal is still the safe default because
the same picture can mean real corruption.

The writer never appends to a repaired segment: it opens a fresh one at ``last_lsn + 1``.

The segment rules above are written once, in ``wal/walk.py``: its pure walk applies the records
and returns a plan (verdict and actions); this module loads the snapshot, runs the walk and
carries out the plan's actions. ``roster wal inspect`` prints the same plan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wal.codec import unpack
from wal.errors import CorruptLogError, SnapshotError
from wal.framing import HEADER_SIZE
from wal.layout import (
    SegmentFile,
    broken_dir,
    fsync_dir,
    fsync_file,
    list_segments,
    list_snapshots,
    snap_dir,
    unique_path,
    wal_dir,
    write_durably,
)
from wal.snapshot import read_snapshot
from wal.walk import (
    CutAtCorruption,
    DropTornFile,
    Note,
    RecoveryProgress,
    RemoveEmpty,
    TruncateTorn,
    walk,
)

RecoveryMode = Literal["strict", "truncate"]


@dataclass
class RecoveryReport:
    snapshot_lsn: int
    """LSN of the snapshot loaded (0: none)."""
    last_lsn: int
    """Highest LSN recovered (0 for an empty data dir); the writer continues at last_lsn + 1."""
    records_replayed: int
    torn_tail: int | None
    """Bytes cut off a torn last segment, or None if there was no torn tail."""
    segments: int
    messages: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


class _Recovery:
    def __init__(self, data_dir: Path, mode: RecoveryMode, log: Callable[[str], None]) -> None:
        self.data_dir = data_dir
        self.mode = mode
        self._log = log
        self.messages: list[str] = []

    def note(self, message: str) -> None:
        self.messages.append(message)
        self._log(message)

    # -- start-up chores -------------------------------------------------------------------

    def prepare_dirs(self) -> None:
        for directory in (wal_dir(self.data_dir), snap_dir(self.data_dir)):
            directory.mkdir(parents=True, exist_ok=True)
            leftovers = sorted(directory.glob("*.tmp"))
            for tmp in leftovers:
                tmp.unlink()
                self.note(f"removed half-written {tmp}")
            if leftovers:
                fsync_dir(directory)

    # -- snapshot --------------------------------------------------------------------------

    def load_snapshot(self, load_chunk: Callable[[object], None]) -> int:
        for snap in reversed(list_snapshots(self.data_dir)):
            try:
                valid = read_snapshot(snap.path)
            except SnapshotError as exc:
                target = unique_path(snap.path.with_name(snap.path.name + ".broken"))
                os.replace(snap.path, target)
                fsync_dir(snap.path.parent)
                self.note(f"snapshot unusable, renamed to {target.name}, trying an older one: "
                          f"{exc}")
                continue
            for index, payload in enumerate(valid.payloads):
                try:
                    chunk = unpack(payload)
                except ValueError as exc:
                    # The CRC matched, so these are the bytes we wrote: a bug, not damage. The
                    # caller's state is half-loaded now, so no fallback: refuse to start.
                    raise SnapshotError(
                        f"{snap.path}: chunk {index} has a valid CRC but does not decode: {exc}"
                    ) from exc
                load_chunk(chunk)
            return valid.lsn
        return 0

    # -- log -------------------------------------------------------------------------------

    def replay(
        self,
        snapshot_lsn: int,
        apply_record: Callable[[int, object], None],
        progress: Callable[[RecoveryProgress], None] | None,
        started: float,
    ) -> RecoveryReport:
        """Walk the segments (wal/walk.py applies the records as it goes), then carry out the
        plan's actions in order: the first corruption raises unless ``mode="truncate"``."""
        plan = walk(list_segments(self.data_dir), _read, snapshot_lsn, apply_record,
                    progress=progress, started=started)
        report = RecoveryReport(snapshot_lsn, plan.last_lsn, plan.records_replayed, None,
                                plan.segments_read, self.messages)
        for action in plan.actions:
            if isinstance(action, Note):
                self.note(action.message)
            elif isinstance(action, RemoveEmpty):
                action.segment.path.unlink()
                self.note(f"removed empty segment file {action.segment.path}")
            elif isinstance(action, TruncateTorn):
                report.torn_tail = self._truncate_torn(action)
            elif isinstance(action, DropTornFile):
                report.torn_tail = self._drop_torn_file(action)
            else:
                self._corrupt(action)
        if plan.survivor is not None:
            # Under --fsync interval/none the previous process may have died with this tail only
            # in the page cache. Make it durable before the writer creates a newer segment, or a
            # power loss could leave a gap in front of that segment.
            fsync_file(plan.survivor.path)
        fsync_dir(wal_dir(self.data_dir))
        return report

    # -- repairs ---------------------------------------------------------------------------

    def _broken(self) -> Path:
        directory = broken_dir(self.data_dir)
        directory.mkdir(exist_ok=True)
        return directory

    def _keep_bytes(self, name: str, data: bytes) -> Path:
        copy = unique_path(self._broken() / name)
        write_durably(copy, data)
        fsync_dir(copy.parent)
        return copy

    def _truncate_torn(self, torn: TruncateTorn) -> int:
        seg, offset = torn.segment, torn.offset
        with seg.path.open("rb") as f:
            f.seek(offset)
            tail = f.read()
        copy = self._keep_bytes(f"{seg.path.name}.torn-{offset}", tail)
        os.truncate(seg.path, offset)
        fsync_file(seg.path)
        self.note(f"torn tail in {seg.path} at offset {offset} ({torn.reason}): truncated "
                  f"{torn.cut} bytes, copy kept in {copy}")
        return torn.cut

    def _drop_torn_file(self, torn: DropTornFile) -> int:
        """The last segment's header itself is torn: the file never held a record."""
        seg = torn.segment
        data = seg.path.read_bytes()
        if data:
            copy = self._keep_bytes(f"{seg.path.name}.torn-0", data)
            kept = f", copy kept in {copy}"
        else:
            kept = ""
        seg.path.unlink()
        fsync_dir(seg.path.parent)
        self.note(f"torn header in last segment {seg.path} ({torn.reason}): removed{kept}")
        return torn.size

    def _corrupt(self, cut: CutAtCorruption) -> None:
        """Refuse (strict) or cut the log at the damage, keeping copies of all it drops."""
        seg, offset, later = cut.segment, cut.offset, cut.later
        if self.mode != "truncate":
            raise CorruptLogError(str(seg.path), offset, cut.reason)
        broken = self._broken()
        size = seg.path.stat().st_size
        if offset < HEADER_SIZE:
            kept = unique_path(broken / f"{seg.path.name}.corrupt-0")
            os.replace(seg.path, kept)
        else:
            with seg.path.open("rb") as f:
                f.seek(offset)
                tail = f.read()
            kept = self._keep_bytes(f"{seg.path.name}.corrupt-{offset}", tail)
            os.truncate(seg.path, offset)
            fsync_file(seg.path)
        for other in later:
            os.replace(other.path, unique_path(broken / f"{other.path.name}.dropped"))
        fsync_dir(broken)
        fsync_dir(seg.path.parent)
        self.note(
            f"WAL CORRUPTION REPAIRED (--wal-recovery=truncate): {seg.path} at offset {offset}: "
            f"{cut.reason}. Dropped {size - offset} bytes of it and {len(later)} later "
            f"segment(s); everything dropped is kept in {broken} (this segment's part as "
            f"{kept.name}). Records after this point are LOST from the running state."
        )


def _read(segment: SegmentFile) -> bytes:
    return segment.path.read_bytes()


def recover(
    data_dir: Path,
    *,
    mode: RecoveryMode = "strict",
    load_snapshot_chunk: Callable[[object], None],
    apply_record: Callable[[int, object], None],
    log: Callable[[str], None],
    progress: Callable[[RecoveryProgress], None] | None = None,
) -> RecoveryReport:
    """Load the newest valid snapshot and replay the log after it; see the module docstring.

    ``progress``, if given, is called about every 64k records (and once when the log is read)
    with the records replayed and the segment bytes read so far, the bytes to read in all, and
    the seconds since the start.

    Raises :class:`CorruptLogError` (strict mode) or :class:`SnapshotError` (a snapshot whose CRC
    checks out but does not decode). Exceptions from the callbacks propagate unchanged.
    """
    if mode not in ("strict", "truncate"):
        raise ValueError(f"mode must be 'strict' or 'truncate', not {mode!r}")
    started = time.perf_counter()
    recovery = _Recovery(Path(data_dir), mode, log)
    recovery.prepare_dirs()
    snapshot_lsn = recovery.load_snapshot(load_snapshot_chunk)
    report = recovery.replay(snapshot_lsn, apply_record, progress, started)
    report.elapsed_s = time.perf_counter() - started
    return report
