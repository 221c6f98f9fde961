"""FROZEN reference: the segment walk of ``wal/recovery.py`` as it was before the shared walker
(``wal/walk.py``) replaced it. The differential test (``test_walk_differential.py``) holds the new
walker to this one's answers on random damaged logs. Do not "fix" or speed up anything here: its
value is that it does not change. It depends only on ``wal.framing``'s record reader, header
decoder and resync scan, ``wal.layout`` and ``wal.snapshot``, which the new walker does not use
for its hot loop.

Original module docstring follows.

Rebuild state at start: newest valid snapshot, then the log after it.

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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wal.codec import unpack
from wal.errors import CorruptLogError, FrameError, SnapshotError
from wal.framing import (
    HEADER_SIZE,
    RT_OPS,
    RecordReader,
    decode_header,
    find_valid_record_after,
)
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


@dataclass
class _Damage:
    segment: SegmentFile
    offset: int
    reason: str
    may_be_torn: bool  # a framing error (could be a torn write), not a wrong-but-intact record


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
        self, snapshot_lsn: int, apply_record: Callable[[int, object], None]
    ) -> RecoveryReport:
        segments = list_segments(self.data_dir)
        need = snapshot_lsn + 1  # the first LSN that must be replayed
        expected: int | None = None  # the LSN the next segment must start with
        report = RecoveryReport(snapshot_lsn, snapshot_lsn, 0, None, 0, self.messages)
        survivor: SegmentFile | None = None
        for index, seg in enumerate(segments):
            is_last = index == len(segments) - 1
            later = segments[index + 1 :]
            buf = seg.path.read_bytes()
            report.segments += 1
            if not buf:
                # Nothing in it to lose (the next segment's continuity check still catches a
                # gap). Remove it so a stray empty file never sorts after the writer's new one.
                seg.path.unlink()
                self.note(f"removed empty segment file {seg.path}")
                continue
            try:
                first = decode_header(buf)
            except FrameError as exc:
                bad_header = _Damage(seg, 0, f"segment header: {exc.reason}", may_be_torn=True)
                if is_last and self._is_torn(buf, bad_header, (expected or seg.first_lsn) - 1):
                    report.torn_tail = self._drop_torn_file(seg, buf, exc.reason)
                    break
                self._corrupt(bad_header, buf, later)
                break
            if first != seg.first_lsn:
                self._corrupt(_Damage(seg, 0, f"header says first lsn {first}, the file name "
                                      f"says {seg.first_lsn}", may_be_torn=False), buf, later)
                break
            lowest = expected if expected is not None else 1
            if expected is not None and first < expected:
                self._corrupt(_Damage(seg, 0, f"first lsn {first} but the previous segment "
                                      f"ended at {expected - 1} (duplicate lsn)",
                                      may_be_torn=False), buf, later)
                break
            if first > max(lowest, need):
                self._corrupt(_Damage(seg, 0, f"lsn gap: records {max(lowest, need)}.."
                                      f"{first - 1} are missing", may_be_torn=False), buf, later)
                break
            if expected is not None and first > expected:
                # (Before the first segment a gap is normal: retention deleted those segments.)
                self.note(f"records {lowest}..{first - 1} are missing before {seg.path}; the "
                          f"snapshot at lsn {snapshot_lsn} covers them")
            next_lsn, damage = self._replay_segment(seg, buf, first, snapshot_lsn, apply_record,
                                                    report)
            expected = next_lsn
            survivor = seg
            if damage is not None:
                if is_last and self._is_torn(buf, damage, next_lsn - 1):
                    report.torn_tail = self._truncate_torn(damage, buf)
                else:
                    if not is_last:
                        damage.reason += f"; {len(later)} later segment(s) follow"
                    self._corrupt(damage, buf, later)
                    break
        if survivor is not None:
            # Under --fsync interval/none the previous process may have died with this tail only
            # in the page cache. Make it durable before the writer creates a newer segment, or a
            # power loss could leave a gap in front of that segment.
            fsync_file(survivor.path)
        fsync_dir(wal_dir(self.data_dir))
        if expected is not None:
            report.last_lsn = max(snapshot_lsn, expected - 1)
        return report

    def _replay_segment(
        self,
        seg: SegmentFile,
        buf: bytes,
        first: int,
        snapshot_lsn: int,
        apply_record: Callable[[int, object], None],
        report: RecoveryReport,
    ) -> tuple[int, _Damage | None]:
        """Apply the segment's records after the snapshot; return the next LSN and any damage."""
        next_lsn = first
        reader = RecordReader(buf, HEADER_SIZE)
        for offset, lsn, rtype, payload in reader:
            if lsn != next_lsn:
                what = "duplicate lsn" if lsn < next_lsn else "lsn out of order"
                return next_lsn, _Damage(seg, offset, f"record lsn {lsn} where {next_lsn} "
                                         f"belongs ({what})", may_be_torn=False)
            if rtype != RT_OPS:
                return next_lsn, _Damage(seg, offset, f"unknown record type {rtype}",
                                         may_be_torn=False)
            if lsn > snapshot_lsn:
                try:
                    obj = unpack(payload)
                except ValueError as exc:
                    return next_lsn, _Damage(seg, offset, f"record {lsn} has a valid CRC but "
                                             f"does not decode: {exc}", may_be_torn=False)
                apply_record(lsn, obj)
                report.records_replayed += 1
            next_lsn += 1
        if reader.damage is not None:
            return next_lsn, _Damage(seg, reader.damage.offset, reader.damage.reason,
                                     may_be_torn=True)
        return next_lsn, None

    def _is_torn(self, buf: bytes, damage: _Damage, last_good_lsn: int) -> bool:
        if not damage.may_be_torn:
            return False
        found = find_valid_record_after(buf, damage.offset, last_good_lsn)
        if found is not None:
            damage.reason += f"; an intact record (lsn > {last_good_lsn}) follows at {found}"
            return False
        return True

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

    def _truncate_torn(self, damage: _Damage, buf: bytes) -> int:
        seg, offset = damage.segment, damage.offset
        copy = self._keep_bytes(f"{seg.path.name}.torn-{offset}", buf[offset:])
        os.truncate(seg.path, offset)
        fsync_file(seg.path)
        cut = len(buf) - offset
        self.note(f"torn tail in {seg.path} at offset {offset} ({damage.reason}): truncated "
                  f"{cut} bytes, copy kept in {copy}")
        return cut

    def _drop_torn_file(self, seg: SegmentFile, buf: bytes, reason: str) -> int:
        """The last segment's header itself is torn: the file never held a record."""
        if buf:
            copy = self._keep_bytes(f"{seg.path.name}.torn-0", buf)
            kept = f", copy kept in {copy}"
        else:
            kept = ""
        seg.path.unlink()
        fsync_dir(seg.path.parent)
        self.note(f"torn header in last segment {seg.path} ({reason}): removed{kept}")
        return len(buf)

    def _corrupt(self, damage: _Damage, buf: bytes, later: list[SegmentFile]) -> None:
        """Refuse (strict) or cut the log at the damage, keeping copies of all it drops."""
        seg, offset = damage.segment, damage.offset
        if self.mode != "truncate":
            raise CorruptLogError(str(seg.path), offset, damage.reason)
        broken = self._broken()
        if offset < HEADER_SIZE:
            kept = unique_path(broken / f"{seg.path.name}.corrupt-0")
            os.replace(seg.path, kept)
        else:
            kept = self._keep_bytes(f"{seg.path.name}.corrupt-{offset}", buf[offset:])
            os.truncate(seg.path, offset)
            fsync_file(seg.path)
        for other in later:
            os.replace(other.path, unique_path(broken / f"{other.path.name}.dropped"))
        fsync_dir(broken)
        fsync_dir(seg.path.parent)
        self.note(
            f"WAL CORRUPTION REPAIRED (--wal-recovery=truncate): {seg.path} at offset {offset}: "
            f"{damage.reason}. Dropped {len(buf) - offset} bytes of it and {len(later)} later "
            f"segment(s); everything dropped is kept in {broken} (this segment's part as "
            f"{kept.name}). Records after this point are LOST from the running state."
        )


def recover(
    data_dir: Path,
    *,
    mode: RecoveryMode = "strict",
    load_snapshot_chunk: Callable[[object], None],
    apply_record: Callable[[int, object], None],
    log: Callable[[str], None],
) -> RecoveryReport:
    """Load the newest valid snapshot and replay the log after it; see the module docstring.

    Raises :class:`CorruptLogError` (strict mode) or :class:`SnapshotError` (a snapshot whose CRC
    checks out but does not decode). Exceptions from the two callbacks propagate unchanged.
    """
    if mode not in ("strict", "truncate"):
        raise ValueError(f"mode must be 'strict' or 'truncate', not {mode!r}")
    started = time.perf_counter()
    recovery = _Recovery(Path(data_dir), mode, log)
    recovery.prepare_dirs()
    snapshot_lsn = recovery.load_snapshot(load_snapshot_chunk)
    report = recovery.replay(snapshot_lsn, apply_record)
    report.elapsed_s = time.perf_counter() - started
    return report
