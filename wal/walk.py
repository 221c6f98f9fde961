"""The one walk over the log's segments: segments in, a :class:`Plan` out.

``recover`` executes the plan (truncates a torn tail, refuses or cuts at corruption),
``tools.inspect`` prints it and ``tools.repair`` applies it through ``recover``. The rules are
those in ``wal/recovery.py``'s docstring; they are written here once, and so is the fast record
loop below, so a speed-up or a fix cannot make the tools and the restart disagree.

Pure: no file access and no trio. The caller hands in the segment list, a ``read`` function that
returns a segment's bytes (called once per segment, in order, never for segments after the walk
stopped unless ``scan_all``), and an ``apply`` callback for the records after the snapshot.

The plan:

* ``verdict``: ``clean``; ``torn`` (the last segment is damaged with no intact later record:
  a crash mid-append, repaired by cutting it off); or ``corrupt`` (anything else), each with the
  file, the offset and the reason.
* ``actions``, in the order recovery must carry them out: remove an empty segment file, truncate
  a torn tail, remove a last segment whose header is torn, or cut the log at corruption (which a
  strict recovery refuses to do).
* ``scans``: what each segment holds (header LSN, intact records, where the intact part ends, the
  first damage), for the tools' listing.

Records are checked in the order the frame demands (room for a header, length, CRC) and only then
for their LSN and type; a record after the snapshot is decoded (a CRC-valid record that does not
decode is corruption) and handed to ``apply`` before the next one is read. Damage is re-read
through :func:`wal.framing.decode_record`, so the words of a framing error come from one place.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgpack

from wal.errors import FrameError
from wal.framing import (
    HEADER_SIZE,
    MAX_RECORD_BYTES,
    RECORD_HEAD,
    RECORD_OVERHEAD,
    RT_OPS,
    Buffer,
    decode_header,
    decode_record,
    find_valid_record_after,
)
from wal.layout import SegmentFile

VerdictKind = Literal["clean", "torn", "corrupt"]

PROGRESS_EVERY_RECORDS = 1 << 16


@dataclass(frozen=True, slots=True)
class RecoveryProgress:
    """Handed to ``recover(progress=...)`` about every 64k records, and once at the end."""

    records: int
    """Records replayed (applied) so far."""
    bytes_read: int
    """Segment bytes walked so far (records at or below the snapshot count too)."""
    bytes_total: int
    """Bytes of all segments listed at the start."""
    elapsed_s: float
    """Seconds since recovery started (snapshot loading included)."""


@dataclass(frozen=True, slots=True)
class Damage:
    """The first damaged spot in a segment."""

    offset: int
    reason: str
    may_be_torn: bool
    """A framing error (could be a torn write), not a wrong-but-intact record."""


@dataclass(slots=True)
class SegmentScan:
    """One segment as the walk found it."""

    segment: SegmentFile
    size: int
    """Bytes in the file when it was read."""
    first: int | None
    """The header's LSN; None if the header is damaged or the file is empty."""
    records: int = 0
    """Intact records before any damage (also those the snapshot covers)."""
    last_lsn: int | None = None
    valid_end: int = 0
    """Where the intact part ends (= ``size`` for an undamaged segment)."""
    replayed: int = 0
    """Records handed to ``apply``."""
    damage: Damage | None = None

    @property
    def next_lsn(self) -> int:
        """The LSN the next segment must start with."""
        return (self.last_lsn if self.last_lsn is not None else
                (self.first if self.first is not None else self.segment.first_lsn) - 1) + 1


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    path: str | None = None
    offset: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth logging that needs no repair (a gap the snapshot covers)."""

    message: str


@dataclass(frozen=True, slots=True)
class RemoveEmpty:
    """An empty segment file: nothing in it to lose; remove it so that it never sorts after the
    writer's next segment."""

    segment: SegmentFile


@dataclass(frozen=True, slots=True)
class TruncateTorn:
    """Cut the last segment at ``offset`` (keeping a copy of the cut bytes)."""

    segment: SegmentFile
    offset: int
    cut: int
    reason: str


@dataclass(frozen=True, slots=True)
class DropTornFile:
    """The last segment's header itself is torn: the file never held a record."""

    segment: SegmentFile
    size: int
    reason: str
    """What is wrong with the header (the verdict's reason says "segment header: " first)."""


@dataclass(frozen=True, slots=True)
class CutAtCorruption:
    """Refused by a strict recovery; ``truncate`` keeps the prefix before ``offset`` and moves
    the rest of the segment and every ``later`` segment aside."""

    segment: SegmentFile
    offset: int
    reason: str
    later: tuple[SegmentFile, ...]


Action = Note | RemoveEmpty | TruncateTorn | DropTornFile | CutAtCorruption


@dataclass
class Plan:
    snapshot_lsn: int
    scans: list[SegmentScan] = field(default_factory=list)
    """Every segment read, in order (with ``scan_all``: every listed segment)."""
    actions: list[Action] = field(default_factory=list)
    """In the order they are met; recovery carries them out in this order."""
    verdict: Verdict = Verdict("clean")
    last_lsn: int = 0
    """Where the log ends once the actions are carried out (the writer continues after it)."""
    records_replayed: int = 0
    segments_read: int = 0
    """Segments the walk went through before it stopped (empty files included)."""
    survivor: SegmentFile | None = None
    """The last segment whose header was intact (recovery fsyncs it)."""

    @property
    def notes(self) -> list[str]:
        return [a.message for a in self.actions if isinstance(a, Note)]


ApplyRecord = Callable[[int, object], None]


class _Progress:
    """Counts bytes and records across segments; calls the hook every ``every`` records."""

    def __init__(self, hook: Callable[[RecoveryProgress], None] | None, total: int,
                 started: float, every: int) -> None:
        self.hook = hook
        self.total = total
        self.started = started
        self.every = every
        self.done_bytes = 0  # bytes of the segments already walked
        self.replayed = 0

    def report(self, pos: int, replayed: int) -> None:
        if self.hook is not None:
            self.hook(RecoveryProgress(self.replayed + replayed, self.done_bytes + pos, self.total,
                                       time.perf_counter() - self.started))


def scan_records(
    buf: Buffer,
    scan: SegmentScan,
    snapshot_lsn: int,
    apply: ApplyRecord | None,
    progress: _Progress | None = None,
) -> None:
    """Walk the records of ``buf`` (a segment whose header said ``scan.first``) into ``scan``.

    The hot loop: one bound ``unpack_from`` per record header, the CRC of the length field
    cached per length, one ``crc32`` over a memoryview of the rest, one ``unpackb`` for records
    after the snapshot. Anything unusual leaves the loop for the slow path below it.
    """
    assert scan.first is not None
    view = memoryview(buf)
    size = len(view)
    unpack_head = RECORD_HEAD.unpack_from
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    length_crcs: dict[int, int] = {}
    overhead = RECORD_OVERHEAD
    limit = size - overhead  # a record header fits at pos <= limit
    pos = HEADER_SIZE
    first = next_lsn = scan.first
    replayed = 0
    every = progress.every if progress is not None and progress.hook is not None else 0
    mark = first + every if every else -1  # the next_lsn at which to report
    damage: Damage | None = None
    while pos <= limit:
        length, crc, lsn, rtype = unpack_head(view, pos)
        end = pos + overhead + length
        if length > MAX_RECORD_BYTES or end > size:
            break
        # crc32(length field) then the rest (lsn, type, payload), as record_crc defines it
        seed = length_crcs.get(length)
        if seed is None:
            seed = length_crcs[length] = crc32(view[pos : pos + 4])
        if crc32(view[pos + 8 : end], seed) != crc:
            break
        if lsn != next_lsn or rtype != RT_OPS:
            damage = _wrong_record(pos, lsn, rtype, next_lsn)
            break
        if lsn > snapshot_lsn:
            try:
                obj = unpackb(view[pos + overhead : end], raw=False, strict_map_key=False)
            except ValueError as exc:
                damage = Damage(pos, f"record {lsn} has a valid CRC but does not decode: "
                                f"{exc}", False)
                break
            if apply is not None:
                apply(lsn, obj)
            replayed += 1
        next_lsn += 1
        pos = end
        if next_lsn == mark:
            assert progress is not None
            progress.report(pos, replayed)
            mark += every
    if damage is None and pos < size:
        # Left the loop on a framing problem: let framing describe it.
        try:
            decode_record(view, pos)
        except FrameError as exc:
            damage = Damage(exc.offset, exc.reason, True)
        else:  # pragma: no cover - the loop and decode_record disagree: a bug here
            raise AssertionError(f"record at {pos} is intact but the walk stopped there")
    scan.records = next_lsn - first
    scan.last_lsn = next_lsn - 1 if scan.records else None
    scan.valid_end = pos
    scan.replayed = replayed
    scan.damage = damage


def _wrong_record(offset: int, lsn: int, rtype: int, expected: int) -> Damage:
    if lsn != expected:
        what = "duplicate lsn" if lsn < expected else "lsn out of order"
        return Damage(offset, f"record lsn {lsn} where {expected} belongs ({what})", False)
    return Damage(offset, f"unknown record type {rtype}", False)


def scan_segment(
    segment: SegmentFile,
    buf: Buffer,
    snapshot_lsn: int,
    apply: ApplyRecord | None = None,
    progress: _Progress | None = None,
) -> SegmentScan:
    """One segment on its own: its header, then its records (see :func:`scan_records`)."""
    try:
        first = decode_header(buf)
    except FrameError as exc:
        return SegmentScan(segment, len(buf), None,
                           damage=Damage(0, f"segment header: {exc.reason}", True))
    scan = SegmentScan(segment, len(buf), first, valid_end=HEADER_SIZE)
    scan_records(buf, scan, snapshot_lsn, apply, progress)
    return scan


def walk(
    segments: Sequence[SegmentFile],
    read: Callable[[SegmentFile], Buffer],
    snapshot_lsn: int,
    apply: ApplyRecord | None = None,
    *,
    scan_all: bool = False,
    progress: Callable[[RecoveryProgress], None] | None = None,
    progress_every: int = PROGRESS_EVERY_RECORDS,
    started: float | None = None,
) -> Plan:
    """Walk ``segments`` (in LSN order) after a snapshot at ``snapshot_lsn`` (0: none).

    Records after the snapshot are decoded and passed to ``apply(lsn, obj)`` as they are met, up
    to the first damage. The walk stops at the verdict's segment; with ``scan_all`` the later
    segments are still read and scanned on their own (for a listing), but nothing in them is
    applied. ``progress`` is called every ``progress_every`` records and once at the end.
    """
    plan = Plan(snapshot_lsn, last_lsn=snapshot_lsn)
    ticker = _Progress(progress, sum(s.size for s in segments),
                       time.perf_counter() if started is None else started, progress_every)
    need = snapshot_lsn + 1  # the first LSN that must be replayed
    expected: int | None = None  # the LSN the next segment must start with
    stopped = False
    for index, seg in enumerate(segments):
        if stopped:
            if scan_all:
                plan.scans.append(scan_segment(seg, read(seg), snapshot_lsn))
            continue
        is_last = index == len(segments) - 1
        later = tuple(segments[index + 1 :])
        buf = read(seg)
        plan.segments_read += 1
        if not len(buf):
            # The next segment's continuity check still catches a gap.
            plan.scans.append(scan_segment(seg, buf, snapshot_lsn))
            plan.actions.append(RemoveEmpty(seg))
            continue
        try:
            first = decode_header(buf)
        except FrameError as exc:
            reason = f"segment header: {exc.reason}"
            plan.scans.append(SegmentScan(seg, len(buf), None, damage=Damage(0, reason, True)))
            if is_last:
                found = find_valid_record_after(buf, 0, (expected or seg.first_lsn) - 1)
                if found is None:
                    plan.actions.append(DropTornFile(seg, len(buf), exc.reason))
                    plan.verdict = Verdict("torn", str(seg.path), 0, reason)
                    break
                reason += f"; an intact record (lsn > {(expected or seg.first_lsn) - 1}) " \
                          f"follows at {found}"
            _corrupt(plan, seg, 0, reason, later)
            stopped = True
            continue
        scan = SegmentScan(seg, len(buf), first, valid_end=HEADER_SIZE)
        plan.scans.append(scan)
        wrong: str | None = None
        lowest = expected if expected is not None else 1
        if first != seg.first_lsn:
            wrong = f"header says first lsn {first}, the file name says {seg.first_lsn}"
        elif expected is not None and first < expected:
            wrong = f"first lsn {first} but the previous segment ended at {expected - 1} " \
                    "(duplicate lsn)"
        elif first > max(lowest, need):
            wrong = f"lsn gap: records {max(lowest, need)}..{first - 1} are missing"
        if wrong is not None:
            if scan_all:  # for the listing only; nothing is applied from it
                scan_records(buf, scan, snapshot_lsn, None)
            _corrupt(plan, seg, 0, wrong, later)
            stopped = True
            continue
        if expected is not None and first > expected:
            # (Before the first segment a gap is normal: retention deleted those segments.)
            plan.actions.append(Note(f"records {lowest}..{first - 1} are missing before "
                                     f"{seg.path}; the snapshot at lsn {snapshot_lsn} covers them"))
        scan_records(buf, scan, snapshot_lsn, apply, ticker)
        ticker.done_bytes += len(buf)
        ticker.replayed += scan.replayed
        plan.records_replayed += scan.replayed
        expected = scan.next_lsn
        plan.survivor = seg
        damage = scan.damage
        if damage is None:
            continue
        reason = damage.reason
        if is_last and damage.may_be_torn:
            found = find_valid_record_after(buf, damage.offset, expected - 1)
            if found is None:
                plan.actions.append(TruncateTorn(seg, damage.offset, len(buf) - damage.offset,
                                                 reason))
                plan.verdict = Verdict("torn", str(seg.path), damage.offset, reason)
                continue
            reason += f"; an intact record (lsn > {expected - 1}) follows at {found}"
        if not is_last:
            reason += f"; {len(later)} later segment(s) follow"
        _corrupt(plan, seg, damage.offset, reason, later)
        stopped = True
    if expected is not None:
        plan.last_lsn = max(snapshot_lsn, expected - 1)
    ticker.report(0, 0)
    return plan


def _corrupt(plan: Plan, seg: SegmentFile, offset: int, reason: str,
             later: tuple[SegmentFile, ...]) -> None:
    plan.actions.append(CutAtCorruption(seg, offset, reason, later))
    plan.verdict = Verdict("corrupt", str(seg.path), offset, reason)
