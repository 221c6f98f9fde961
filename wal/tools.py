"""Offline tools over a data directory: ``roster wal inspect | verify | repair``.

* :func:`inspect` reads every segment and snapshot and says what recovery would do with them. It is
  strictly read-only: it never creates, truncates, renames or deletes anything (recovery does all
  four), so it is safe next to a running server (whose last segment may then look torn mid-append).
  Its verdict is the plan of the walker that recovery itself runs (``wal/walk.py``), so the two
  cannot disagree; the tests still hold them to the same answer on randomly damaged logs.
* :func:`verify` is :func:`inspect` reduced to a verdict and an exit code.
* :func:`repair` takes the data directory's lock (so it refuses while a server runs), copies every
  file it is about to change or delete into a backup directory, and then runs the server's own
  recovery with no-op callbacks: a torn tail is truncated, unusable snapshots are renamed
  ``.broken``, half-written ``*.tmp`` files are removed. Corruption (damage followed by intact
  records, a gap, a duplicate) is repaired only with ``drop_after_corruption=True``, which keeps the
  prefix before the first damaged record and moves everything after it to ``wal/broken/``.

Exit codes (:attr:`Inspection.exit_code`, :attr:`RepairResult.exit_code`): 0 clean (or repaired);
1 a strict start would be refused (corruption), or repair refused; 2 not a data directory;
3 damage that a start repairs by itself without losing anything acknowledged (a torn tail, an
unusable snapshot with an older one or the full log to fall back on).

Everything here returns plain dataclasses; :func:`format_inspection`, :func:`format_verify`,
:func:`format_repair` turn them into text and :func:`to_json` into JSON.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wal.codec import unpack
from wal.errors import SnapshotError
from wal.layout import (
    SnapshotFile,
    broken_dir,
    fsync_dir,
    list_segments,
    list_snapshots,
    snap_dir,
    unique_path,
    wal_dir,
)
from wal.lock import DataDirLock, lock_holder_text, open_dir
from wal.recovery import recover
from wal.snapshot import read_snapshot
from wal.walk import DropTornFile, Note, Plan, RemoveEmpty, SegmentScan, TruncateTorn, walk

EXIT_CLEAN = 0
EXIT_REFUSED = 1
EXIT_NOT_A_DATA_DIR = 2
EXIT_REPAIRABLE = 3

ProblemKind = Literal["torn_tail", "corruption", "snapshot"]


class NotADataDir(Exception):
    """The path holds no ``wal/`` or ``snap/`` directory."""


# -- results ---------------------------------------------------------------------------------


@dataclass
class Damage:
    """The first damaged spot inside one file."""

    offset: int
    reason: str


@dataclass
class SegmentReport:
    name: str
    path: str
    first_lsn: int
    """From the file name (recovery checks the header agrees)."""
    last_lsn: int | None
    """LSN of the last intact record before any damage; None if it holds no record."""
    records: int
    """Intact records before any damage."""
    bytes: int
    valid_bytes: int
    """Where the intact part ends (= ``bytes`` for an undamaged segment)."""
    damage: Damage | None = None


@dataclass
class SnapshotReport:
    name: str
    path: str
    lsn: int
    bytes: int
    chunks: int | None
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None


@dataclass
class Problem:
    kind: ProblemKind
    path: str
    offset: int
    reason: str
    fatal: bool
    """True if a strict start refuses because of it (repair needs ``--drop-after-corruption``)."""

    def describe(self) -> str:
        what = {"torn_tail": "torn tail", "corruption": "CORRUPTION", "snapshot": "bad snapshot"}
        consequence = ("start refused; `roster wal repair --drop-after-corruption` keeps the "
                       "prefix before it" if self.fatal else "a start repairs this by itself")
        return f"{what[self.kind]}: {self.path} at offset {self.offset}: {self.reason} " \
               f"({consequence})"


@dataclass
class Inspection:
    data_dir: str
    locked_by: str | None
    """pid (as the LOCK file says) of a process holding the data directory, else None."""
    snapshots: list[SnapshotReport]
    segments: list[SegmentReport]
    snapshot_lsn: int
    """LSN of the snapshot recovery would load (0: none)."""
    last_lsn: int
    """Where recovery would end (meaningful when there is no fatal problem)."""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return EXIT_REFUSED
        return EXIT_REPAIRABLE if self.problems else EXIT_CLEAN

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)


@dataclass
class RepairResult:
    data_dir: str
    action: Literal["nothing_to_do", "repaired", "refused"]
    before: Inspection
    after: Inspection | None = None
    backup_dir: str | None = None
    backed_up: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    refusal: str | None = None

    @property
    def exit_code(self) -> int:
        if self.action == "refused":
            return EXIT_REFUSED
        if self.after is not None and self.after.problems:
            return self.after.exit_code
        return EXIT_CLEAN


# -- reading ---------------------------------------------------------------------------------


def lock_holder(data_dir: Path) -> str | None:
    """Who holds the data directory (the pid text from its LOCK file), or None. Probes the same
    flock a server takes, on the directory itself, with a shared lock released at once, so a
    live server is seen even if its LOCK file was deleted; never creates or writes anything."""
    try:
        fd = open_dir(Path(data_dir))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return lock_holder_text(Path(data_dir))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _check_snapshot(snap: SnapshotFile, decode: bool) -> tuple[SnapshotReport, bool]:
    """Validate like recovery; the flag is True for a CRC-valid chunk that does not decode
    (recovery refuses to start then instead of falling back)."""
    report = SnapshotReport(snap.path.name, str(snap.path), snap.lsn, snap.size, None)
    try:
        valid = read_snapshot(snap.path)
    except SnapshotError as exc:
        report.problem = str(exc).removeprefix(f"{snap.path}: ")
        return report, False
    report.chunks = len(valid.payloads)
    if decode:
        for index, payload in enumerate(valid.payloads):
            try:
                unpack(payload)
            except ValueError as exc:
                report.problem = f"chunk {index} has a valid CRC but does not decode: {exc}"
                return report, True
    return report, False


def _segment_report(scan: SegmentScan) -> SegmentReport:
    seg = scan.segment
    damage = None if scan.damage is None else Damage(scan.damage.offset, scan.damage.reason)
    return SegmentReport(seg.path.name, str(seg.path), seg.first_lsn, scan.last_lsn,
                         scan.records, scan.size, scan.valid_end, damage)


def _segment_problem(plan: Plan) -> Problem | None:
    """The walk's verdict as a problem, worded for people (what a start does about it)."""
    verdict = plan.verdict
    if verdict.kind == "clean" or verdict.path is None:
        return None
    if verdict.kind == "corrupt":
        return Problem("corruption", verdict.path, verdict.offset, verdict.reason, True)
    for action in plan.actions:
        if isinstance(action, DropTornFile):
            return Problem("torn_tail", verdict.path, 0, verdict.reason + (
                f"; the file never held a record and is removed ({action.size} bytes)"), False)
        if isinstance(action, TruncateTorn):
            return Problem("torn_tail", verdict.path, verdict.offset, verdict.reason + (
                f"; {action.cut} bytes are cut off at start"), False)
    raise AssertionError(f"torn verdict without its action: {plan.actions}")


def _leftovers(data_dir: Path) -> list[str]:
    notes = []
    for directory in (wal_dir(data_dir), snap_dir(data_dir)):
        tmp = sorted(p.name for p in directory.glob("*.tmp"))
        if tmp:
            notes.append(f"{len(tmp)} half-written file(s) in {directory} (removed at start): "
                         + ", ".join(tmp))
    broken = broken_dir(data_dir)
    if broken.is_dir():
        kept = sorted(p.name for p in broken.iterdir())
        if kept:
            notes.append(f"{len(kept)} file(s) kept from earlier repairs in {broken}: "
                         + ", ".join(kept))
    bad_snaps = sorted(p.name for p in snap_dir(data_dir).glob("*.broken*"))
    if bad_snaps:
        notes.append(f"{len(bad_snaps)} snapshot(s) set aside as broken: " + ", ".join(bad_snaps))
    return notes


def _require_data_dir(data_dir: Path) -> None:
    if not wal_dir(data_dir).is_dir() and not snap_dir(data_dir).is_dir():
        raise NotADataDir(f"{data_dir} is not a Roster data directory (no wal/ or snap/ in it)")


def inspect(data_dir: Path, *, check_lock: bool = True) -> Inspection:
    """Everything about the log and snapshots in ``data_dir``, and recovery's verdict on it.

    Raises :class:`NotADataDir` if there is neither ``wal/`` nor ``snap/``.
    """
    data_dir = Path(data_dir)
    _require_data_dir(data_dir)
    notes = _leftovers(data_dir)
    problems: list[Problem] = []

    # Snapshots, newest first, as recovery tries them: the first valid one is loaded.
    snaps = list_snapshots(data_dir)
    snapshot_lsn = 0
    chosen: SnapshotReport | None = None
    reports: dict[str, SnapshotReport] = {}
    for snap in reversed(snaps):
        report, undecodable = _check_snapshot(snap, decode=chosen is None)
        reports[snap.path.name] = report
        if chosen is None:
            if report.problem is None:
                chosen, snapshot_lsn = report, snap.lsn
            elif undecodable:
                # CRC-valid but undecodable: recovery refuses rather than falling back.
                problems.append(Problem("snapshot", report.path, 0, report.problem, True))
                chosen, snapshot_lsn = report, snap.lsn
            else:
                problems.append(Problem("snapshot", report.path, 0, report.problem + (
                    "; renamed .broken at start, an older snapshot or the log is used"), False))
        elif report.problem is not None:
            problems.append(Problem("snapshot", report.path, 0, report.problem + (
                "; not used while a newer snapshot is valid, but no longer a fallback"), False))
    snapshot_reports = [reports[s.path.name] for s in snaps]

    # Segments in LSN order, walked by recovery's own walker (wal/walk.py), applying nothing.
    segments = list_segments(data_dir)
    plan = walk(segments, lambda seg: seg.path.read_bytes(), snapshot_lsn, scan_all=True)
    seg_reports = [_segment_report(scan) for scan in plan.scans]
    for action in plan.actions:
        if isinstance(action, RemoveEmpty):
            notes.append(f"empty segment file {action.segment.path.name} (removed at start)")
        elif isinstance(action, Note):
            notes.append(action.message)
    problem = _segment_problem(plan)
    if problem is not None:
        problems.append(problem)
    last_lsn = plan.last_lsn
    return Inspection(str(data_dir), lock_holder(data_dir) if check_lock else None,
                      snapshot_reports, seg_reports, snapshot_lsn, last_lsn, problems, notes)


def verify(data_dir: Path) -> Inspection:
    """Same as :func:`inspect`; use ``exit_code`` and ``problems[0]``."""
    return inspect(data_dir)


# -- repairing -------------------------------------------------------------------------------


def _files_to_back_up(data_dir: Path, before: Inspection) -> list[Path]:
    """Every file recovery may truncate, move or delete, given what inspect found."""
    files: list[Path] = []
    for directory in (wal_dir(data_dir), snap_dir(data_dir)):
        files.extend(sorted(directory.glob("*.tmp")))
    segment_paths = [Path(s.path) for s in before.segments]
    damaged = [Path(p.path) for p in before.problems if p.kind != "snapshot"]
    if damaged:
        # The damaged segment and, if recovery drops them, every later one.
        files.extend(segment_paths[segment_paths.index(damaged[0]):])
    return files


def _first_fatal(ins: Inspection) -> Problem:
    return next(p for p in ins.problems if p.fatal)


def _dropped_summary(before: Inspection) -> str:
    problem = _first_fatal(before)
    if problem.kind == "snapshot":
        return (f"the snapshot {Path(problem.path).name} would be set aside (renamed .broken) "
                "and recovery would fall back to an older one or the full log")
    names = [s.path for s in before.segments]
    index = names.index(problem.path)
    seg = before.segments[index]
    later = before.segments[index + 1 :]
    records = sum(s.records for s in later)
    lost_here = seg.bytes - problem.offset
    lsns = [s.last_lsn for s in later if s.last_lsn is not None]
    span = f" (up to lsn {max(lsns)})" if lsns else ""
    return (f"would drop {lost_here} bytes of {seg.name} from offset {problem.offset} and "
            f"{len(later)} later segment(s) holding {records} intact record(s){span}")


def repair(
    data_dir: Path,
    *,
    drop_after_corruption: bool = False,
    backup_dir: Path | None = None,
) -> RepairResult:
    """Repair ``data_dir`` the way a start would (see the module docstring).

    Raises :class:`wal.LockedError` while a server holds the data directory and
    :class:`NotADataDir` for a path that is not one.
    """
    data_dir = Path(data_dir)
    _require_data_dir(data_dir)  # before DataDirLock, which would create the directory
    with DataDirLock(data_dir):
        before = inspect(data_dir, check_lock=False)
        result = RepairResult(str(data_dir), "nothing_to_do", before)
        if before.clean:
            result.after = before
            return result
        if before.fatal and not drop_after_corruption:
            result.action = "refused"
            result.refusal = (f"{_first_fatal(before).describe()}. Repairing "
                              f"{_dropped_summary(before)}; pass --drop-after-corruption to do "
                              "that (a backup is kept)")
            return result

        files = _files_to_back_up(data_dir, before)
        if files:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            target = unique_path(Path(backup_dir) if backup_dir is not None
                                 else data_dir / f"repair-backup-{stamp}")
            for path in files:
                copy = target / path.relative_to(data_dir)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
                with copy.open("rb") as f:
                    os.fsync(f.fileno())
                result.backed_up.append(str(path))
            for directory in {target / Path(p).parent.relative_to(data_dir)
                              for p in result.backed_up} | {target}:
                fsync_dir(directory)
            fsync_dir(target.parent)
            result.backup_dir = str(target)

        # Snapshots recovery will not look at (older than a valid one) are set aside here, and an
        # undecodable one (recovery would refuse) only with the explicit flag.
        for snap in before.snapshots:
            if snap.problem is not None:
                path = Path(snap.path)
                moved = unique_path(path.with_name(path.name + ".broken"))
                os.replace(path, moved)
                fsync_dir(path.parent)
                result.messages.append(f"snapshot {path.name} set aside as {moved.name}: "
                                       f"{snap.problem}")

        def ignore(*_: object) -> None:
            pass

        report = recover(data_dir, mode="truncate" if drop_after_corruption else "strict",
                         load_snapshot_chunk=ignore, apply_record=ignore,
                         log=result.messages.append)
        result.action = "repaired"
        result.after = inspect(data_dir, check_lock=False)
        result.messages.append(f"recovered to lsn {report.last_lsn} (snapshot "
                               f"{report.snapshot_lsn} + {report.records_replayed} records)")
        return result


# -- text and JSON ---------------------------------------------------------------------------


def _segment_line(s: SegmentReport) -> str:
    lsns = f"lsn {s.first_lsn}..{s.last_lsn}" if s.last_lsn is not None else \
        f"lsn {s.first_lsn} (no records)"
    state = "ok" if s.damage is None else f"DAMAGED at offset {s.damage.offset}: {s.damage.reason}"
    return f"  {s.name}  {lsns}  {s.records} records  {s.bytes} bytes  {state}"


def _snapshot_line(s: SnapshotReport) -> str:
    chunks = f"{s.chunks} chunks" if s.chunks is not None else "? chunks"
    state = "ok" if s.problem is None else f"BAD: {s.problem}"
    return f"  {s.name}  lsn {s.lsn}  {s.bytes} bytes  {chunks}  {state}"


def _verdict(ins: Inspection) -> str:
    if ins.clean:
        return (f"clean: a start loads snapshot {ins.snapshot_lsn} and replays to lsn "
                f"{ins.last_lsn}")
    if ins.fatal:
        return f"start refused: {_first_fatal(ins).describe()}"
    return (f"repairable: a start fixes {len(ins.problems)} problem(s) by itself and recovers to "
            f"lsn {ins.last_lsn}; nothing acknowledged under --fsync always is lost")


def format_inspection(ins: Inspection) -> str:
    lines = [f"data dir {ins.data_dir}"]
    if ins.locked_by is not None:
        lines.append(f"  locked by pid {ins.locked_by}: a server is running; its last segment "
                     "may be mid-append")
    lines.append(f"snapshots ({len(ins.snapshots)}):")
    lines.extend(_snapshot_line(s) for s in ins.snapshots)
    lines.append(f"segments ({len(ins.segments)}, {ins.records} records, "
                 f"{sum(s.bytes for s in ins.segments)} bytes):")
    lines.extend(_segment_line(s) for s in ins.segments)
    if ins.problems:
        lines.append("problems (in the order recovery meets them):")
        lines.extend(f"  {p.describe()}" for p in ins.problems)
    if ins.notes:
        lines.append("notes:")
        lines.extend(f"  {n}" for n in ins.notes)
    lines.append(_verdict(ins))
    return "\n".join(lines)


def format_verify(ins: Inspection) -> str:
    if ins.clean:
        text = f"ok: {ins.data_dir}: {len(ins.segments)} segment(s), {ins.records} records, " \
               f"{len(ins.snapshots)} snapshot(s); {_verdict(ins)}"
    else:
        first = _first_fatal(ins) if ins.fatal else ins.problems[0]
        text = f"{'FAILED' if ins.fatal else 'DAMAGED'}: {first.describe()}"
        if len(ins.problems) > 1:
            text += f"\n({len(ins.problems) - 1} more problem(s); `roster wal inspect` lists them)"
    if ins.locked_by is not None:
        text += f"\nnote: a server (pid {ins.locked_by}) holds the data directory"
    return text


def format_repair(res: RepairResult) -> str:
    if res.action == "refused":
        return f"repair refused: {res.refusal}"
    if res.action == "nothing_to_do":
        return f"nothing to repair: {_verdict(res.before)}"
    lines = [f"repaired {res.data_dir}:"]
    lines.extend(f"  {m}" for m in res.messages)
    if res.backup_dir is not None:
        lines.append(f"backup of {len(res.backed_up)} file(s) in {res.backup_dir}")
    if res.after is not None:
        lines.append(f"now: {_verdict(res.after)}")
    return "\n".join(lines)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for extra in ("valid", "clean", "fatal", "exit_code", "records"):
            if isinstance(getattr(type(obj), extra, None), property):
                out[extra] = getattr(obj, extra)
        if isinstance(obj, Problem):
            out["description"] = obj.describe()
        return out
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    return obj


def to_json(result: Inspection | RepairResult) -> str:
    return json.dumps(_plain(result), indent=2, sort_keys=True)


__all__ = [
    "EXIT_CLEAN",
    "EXIT_NOT_A_DATA_DIR",
    "EXIT_REFUSED",
    "EXIT_REPAIRABLE",
    "Damage",
    "Inspection",
    "NotADataDir",
    "Problem",
    "RepairResult",
    "SegmentReport",
    "SnapshotReport",
    "format_inspection",
    "format_repair",
    "format_verify",
    "inspect",
    "lock_holder",
    "repair",
    "to_json",
    "verify",
]
