"""The running log: synchronous submit, one flusher task, group commit, fail-stop.

How a record travels (docs/architecture.md, "A mutation's way through")::

    submit(obj)           pack + frame, append to the *pending* batch, return its LSN (no await,
                          so the caller can apply the same mutation in the same synchronous step)
    flusher (run)         takes the whole pending batch: one os.write (+ one fdatasync under
                          --fsync always) in a worker thread; whatever is submitted meanwhile
                          becomes the next batch. That is group commit: the busier the server,
                          the more records share one fsync.
    wait_durable(lsn)     sleeps on the Event of the batch holding lsn; one Event per batch, not
                          per record, replaced when the flusher takes the batch.

Policies: ``always`` acknowledges after the batch's fdatasync; ``interval`` after the write, with
an fdatasync at most every ``fsync_interval_s`` while there are unsynced writes; ``none`` after the
write, fsyncing only at rotation, snapshot and close. Every batch is written promptly in every
mode, so a process crash loses nothing acknowledged in any mode.

Failure is fail-stop: the first OSError from a write or fsync marks the log failed, cuts the
segment back to the end of the last acknowledged batch (so nothing un-acknowledged survives in
the file that a later restart could replay), wakes every waiter with :class:`LogFailedError`,
makes every later ``submit`` raise it, and calls ``on_fatal`` exactly once. An fsync is never
retried: after a failed fsync Linux may already have dropped the dirty pages, so a retry that
"succeeds" proves nothing (the PostgreSQL fsyncgate lesson).

Descriptors: a rotation needs none; the open segment, the directory and a spare next segment
are held by :class:`wal.segment.Segment`. When clients have taken every descriptor and no spare
could be made, a rotation is postponed (the segment grows past ``segment_bytes``) and retried at
the next batch, with one warning per incident: running out of descriptors never stops the log.

The flusher calls ``self._write`` and ``self._fdatasync`` (``os.write`` / ``os.fdatasync`` by
default), so tests can replace them to inject EIO, ENOSPC or short writes; in a real server process
``ROSTER_FAILPOINTS=fsync_eio@N`` and friends do the same (wal/failpoints.py).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trio

from wal.checkpoint import SnapshotTaker
from wal.codec import new_packer
from wal.errors import LogClosedError, LogFailedError, SnapshotError
from wal.failpoints import failpoint, io_hooks
from wal.framing import HEADER_SIZE, RT_OPS, encode_record
from wal.layout import (
    fsync_dir,
    list_segments,
    list_snapshots,
    wal_dir,
)
from wal.lifecycle import REFUSING, Lifecycle, LogAction, LogState
from wal.segment import Segment
from wal.snapshot import SnapshotInfo

FsyncPolicy = Literal["always", "interval", "none"]

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

# A short write to a regular file means the disk is (nearly) full or failing. The rest is retried
# once; a second short write in the same batch is treated like ENOSPC.
_MAX_SHORT_WRITES = 1

_fdatasync_default: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


log = logging.getLogger("roster")

# Record-carrying actions: refusing them is the log's normal answer once it failed or closed.
_CALLER_ACTIONS = (LogAction.SUBMIT, LogAction.SNAPSHOT)


@dataclass(frozen=True, slots=True)
class LogStatistics:
    """One consistent look at the log (taken in one synchronous step, so the LSNs agree)."""

    state: LogState
    last_lsn: int
    written_lsn: int
    durable_lsn: int
    acked_lsn: int
    bytes_since_snapshot: int
    bytes_written: int
    records_written: int
    batches: int  # group-commit batches (one write each, two when a snapshot splits one)
    last_batch_records: int
    fsync_count: int
    fsync_seconds_total: float
    postponed_rotations: int  # rotations put off: no descriptor was free for the spare


class WriteAheadLog:
    def __init__(
        self,
        data_dir: Path,
        *,
        next_lsn: int,
        fsync: FsyncPolicy = "always",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync_interval_s: float = 1.0,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``next_lsn`` is ``RecoveryReport.last_lsn + 1``. Without ``on_fatal``, a failure
        makes :meth:`run` raise :class:`LogFailedError` (after waiters were woken), which
        crashes the caller's nursery: still fail-stop, just less graceful."""
        if fsync not in ("always", "interval", "none"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'none', not {fsync!r}")
        if next_lsn < 1:
            raise ValueError(f"next_lsn must be >= 1, got {next_lsn}")
        if segment_bytes <= HEADER_SIZE:
            raise ValueError(f"segment_bytes must exceed the {HEADER_SIZE}-byte header")
        if fsync_interval_s <= 0:
            raise ValueError("fsync_interval_s must be > 0")
        self.data_dir = Path(data_dir)
        self.fsync_policy: FsyncPolicy = fsync
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self._on_fatal = on_fatal
        # Injection points for failure tests; only the flusher's worker threads call them.
        # io_hooks returns os.write / fdatasync themselves unless ROSTER_FAILPOINTS arms an
        # injected I/O error (wal/failpoints.py).
        self._write: Callable[[int, memoryview], int]
        self._fdatasync: Callable[[int], None]
        self._write, self._fdatasync = io_hooks(os.write, _fdatasync_default)

        self._pack = new_packer()
        # The lifecycle decides what may happen (wal/lifecycle.py); _error is what callers are
        # told once records are refused, _failure the OSError behind it.
        self._life = Lifecycle()
        self._error: LogFailedError | None = None
        self._failure: BaseException | None = None
        self._stopped = trio.Event()
        self._wake = trio.Event()

        # Submission side: the batch being gathered, and the Event its waiters sleep on.
        self._next_lsn = next_lsn
        self._pending: list[bytes] = []
        self._pending_event = trio.Event()
        self._submitted_bytes = 0
        self._snapshot_mark = 0
        self._bytes_before_start = 0

        # Flusher side: the batch being written, and how far each guarantee has got.
        self._inflight_last = next_lsn - 1
        self._inflight_event = trio.Event()
        self._acked_lsn = next_lsn - 1
        self._written_lsn = next_lsn - 1
        self._durable_lsn = next_lsn - 1
        self._sync_target = 0
        self._synced_event = trio.Event()
        self._last_sync_time = 0.0

        # The open segment (wal/segment.py). Its I/O goes through this log's hooks, looked up
        # at each call so a test can swap them after construction.
        self._segment = Segment(self.data_dir, write=lambda fd, view: self._write(fd, view),
                                fdatasync=lambda fd: self._fdatasync(fd))
        self._postponed_rotations = 0
        self._rotate_due = False
        self._rotate_after: int | None = None
        self._snapshots = SnapshotTaker(self.data_dir)

        self._bytes_written = 0
        self._records_written = 0
        self._batches = 0
        self._last_batch_records = 0
        self._fsync_seconds_total = 0.0
        self._fsync_count = 0

    # -- counters --------------------------------------------------------------------------

    @property
    def last_lsn(self) -> int:
        """LSN of the last submitted record (take a snapshot's LSN from here)."""
        return self._next_lsn - 1

    @property
    def durable_lsn(self) -> int:
        """Every record up to here has been fdatasync'ed."""
        return self._durable_lsn

    @property
    def written_lsn(self) -> int:
        """Every record up to here has been written to the file (maybe only the page cache)."""
        return self._written_lsn

    @property
    def acked_lsn(self) -> int:
        """Every record up to here satisfies the fsync policy; ``wait_durable`` returns for it."""
        return self._acked_lsn

    @property
    def bytes_since_snapshot(self) -> int:
        """Framed bytes submitted since the last snapshot's LSN (at start: the size of the
        segments after the newest snapshot, as found on disk)."""
        return self._bytes_before_start + self._submitted_bytes - self._snapshot_mark

    def statistics(self) -> LogStatistics:
        return LogStatistics(
            state=self._life.state, last_lsn=self.last_lsn, written_lsn=self._written_lsn,
            durable_lsn=self._durable_lsn, acked_lsn=self._acked_lsn,
            bytes_since_snapshot=self.bytes_since_snapshot, bytes_written=self._bytes_written,
            records_written=self._records_written, batches=self._batches,
            last_batch_records=self._last_batch_records, fsync_count=self._fsync_count,
            fsync_seconds_total=self._fsync_seconds_total,
            postponed_rotations=self._postponed_rotations)

    @property
    def state(self) -> LogState:
        return self._life.state

    @property
    def failed(self) -> bool:
        """True once a write or fsync failed (not merely closed)."""
        return self._life.state is LogState.FAILED

    def _require(self, action: LogAction) -> None:
        """Take ``action`` if the lifecycle allows it. A refused submit or snapshot gets the
        log's own error (the failure, or closed); anything else not in the table is a bug in
        the caller (RuntimeError from the table)."""
        if action in _CALLER_ACTIONS and not self._life.allows(action):
            if self._error is not None:
                raise self._raise_error()
            if self._life.state in REFUSING:
                raise LogClosedError("the write-ahead log is closed")
        self._life.take(action)

    # -- submitting and waiting ------------------------------------------------------------

    def submit(self, obj: object, rtype: int = RT_OPS) -> int:
        """Append ``obj`` to the pending batch and return its LSN. Never awaits.

        Raises :class:`LogFailedError` once the log failed, :class:`LogClosedError` once
        :meth:`close` was called; ``TypeError`` / ``ValueError`` for an object that cannot be
        packed or is too large (no LSN is used up then).
        """
        self._require(LogAction.SUBMIT)
        lsn = self._next_lsn
        frame = encode_record(lsn, rtype, self._pack(obj))
        self._next_lsn = lsn + 1
        self._pending.append(frame)
        self._submitted_bytes += len(frame)
        self._wake.set()
        return lsn

    async def wait_durable(self, lsn: int) -> None:
        """Return once ``lsn`` is acknowledged under the fsync policy; raise
        :class:`LogFailedError` if the log failed (or closed) before that."""
        if lsn <= self._acked_lsn:
            await trio.lowlevel.checkpoint()
            return
        if lsn > self.last_lsn:
            raise ValueError(f"lsn {lsn} was never submitted (last is {self.last_lsn})")
        while True:
            if self._error is not None:
                raise self._raise_error()
            event = self._inflight_event if lsn <= self._inflight_last else self._pending_event
            await event.wait()
            if lsn <= self._acked_lsn:
                return

    def _raise_error(self) -> LogFailedError:
        """A fresh exception per raise: many tasks raising one instance would tangle tracebacks."""
        assert self._error is not None
        exc = type(self._error)(str(self._error))
        exc.__cause__ = self._failure
        return exc

    async def _wait_synced(self, lsn: int) -> None:
        """Return once every record up to ``lsn`` is fdatasync'ed, whatever the policy."""
        if self._sync_target < lsn:
            self._sync_target = lsn
            self._wake.set()
        while self._durable_lsn < lsn:
            if self._error is not None:
                raise self._raise_error()
            await self._synced_event.wait()

    # -- the flusher -----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open a fresh segment at the next LSN, report started, then flush until closed.

        Returns after :meth:`close` (or after a failure when ``on_fatal`` is set). If the first
        segment cannot be created, raises :class:`LogFailedError` before ``started``.
        """
        self._require(LogAction.RUN)
        try:
            try:
                await trio.to_thread.run_sync(self._startup)
            except OSError as exc:
                self._set_error(exc)
                self._wake_everyone()
                raise LogFailedError(f"cannot open a log segment in {wal_dir(self.data_dir)}: "
                                     f"{exc}") from exc
            self._last_sync_time = trio.current_time()
            self._life.take(LogAction.STARTED)
            task_status.started()
            try:
                await self._flush_loop()
            except OSError as exc:
                await self._fail(exc)
                if self._on_fatal is None:
                    raise self._raise_error() from exc
        finally:
            self._stop()

    def _startup(self) -> None:
        """Blocking part of run(): measure the log since the newest snapshot, open a segment."""
        directory = wal_dir(self.data_dir)
        if not directory.is_dir():  # normally recover() made it; a bare log makes its own
            directory.mkdir(parents=True)
            fsync_dir(directory.parent)
        snapshots = list_snapshots(self.data_dir)
        newest = snapshots[-1].lsn if snapshots else 0
        self._bytes_before_start = sum(
            seg.size - HEADER_SIZE for seg in list_segments(self.data_dir)
            if seg.first_lsn > newest and seg.size > HEADER_SIZE)
        self._segment.open(self._acked_lsn + 1)

    async def _flush_loop(self) -> None:
        interval = self.fsync_policy == "interval"
        while True:
            # Replace the wake Event before looking at the work, so a submit that happens while
            # we are busy below is never missed.
            self._wake = trio.Event()
            unsynced = self._written_lsn > self._durable_lsn
            if self._sync_due(unsynced):
                await self._sync()
            elif self._pending:
                await self._flush_batch()
            elif self._life.state is LogState.CLOSING:
                if unsynced:
                    await self._sync()
                await trio.to_thread.run_sync(self._segment.close)
                return
            elif interval and unsynced:
                with trio.move_on_at(self._last_sync_time + self.fsync_interval_s):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    def _sync_due(self, unsynced: bool) -> bool:
        # Checked before every batch, so neither a snapshot's request nor the interval fsync
        # starves while submitters keep the pending batch non-empty.
        if self._durable_lsn < self._sync_target <= self._written_lsn:
            return True
        return (self.fsync_policy == "interval" and unsynced
                and trio.current_time() >= self._last_sync_time + self.fsync_interval_s)

    async def _flush_batch(self) -> None:
        frames, first = self._pending, self._acked_lsn + 1
        last = first + len(frames) - 1
        event = self._pending_event
        self._pending, self._pending_event = [], trio.Event()
        self._inflight_last, self._inflight_event = last, event
        self._batches += 1
        self._last_batch_records = len(frames)

        # A requested snapshot rotation splits the batch: records <= the snapshot LSN end the
        # old segment, later ones start the new one, so a segment never mixes the two.
        parts = [(first, frames)]
        cut = self._rotate_after
        if cut is not None and first <= cut < last:
            parts = [(first, frames[: cut - first + 1]), (cut + 1, frames[cut - first + 1 :])]
        always = self.fsync_policy == "always"
        for n, (part_first, part) in enumerate(parts, 1):
            if self._rotate_due or (cut is not None
                                    and self._segment.first_lsn <= cut < part_first):
                await self._rotate(part_first)
            data = b"".join(part)
            # Under fsync always the last part is written and fdatasync'ed in one trip to the
            # worker thread: a thread hand-off less per batch, which is latency every waiting
            # writer pays (the group commit's cycle is write + fsync + the hops around them).
            synced = always and n == len(parts)
            seconds = await trio.to_thread.run_sync(self._write_all, self._segment.fd, data,
                                                    synced)
            self._segment.advance(len(data))
            self._written_lsn = part_first + len(part) - 1
            self._bytes_written += len(data)
            self._records_written += len(part)
            if synced:
                self._note_sync(seconds, self._written_lsn)
            if self._segment.offset >= self.segment_bytes:
                self._rotate_due = True
        self._acked_lsn = last
        self._segment.mark_good()
        event.set()

    def _write_all(self, fd: int, data: bytes, sync: bool = False) -> float:
        """Worker thread: write all of ``data`` (then fdatasync if ``sync``) or raise OSError;
        return the seconds the fdatasync took (0.0 without one)."""
        failpoint("before_write")
        view = memoryview(data)
        shorts = 0
        while view:
            written = self._write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, f"write returned {written} with {len(view)} bytes left")
            if written < len(view):
                shorts += 1
                if shorts > _MAX_SHORT_WRITES:
                    raise OSError(errno.ENOSPC, f"repeated short writes ({len(view) - written} "
                                  "bytes left); is the disk full?")
            view = view[written:]
        failpoint("after_write_before_fsync")
        return self._timed_fdatasync(fd) if sync else 0.0

    def _timed_fdatasync(self, fd: int) -> float:
        started = time.perf_counter()
        self._fdatasync(fd)
        return time.perf_counter() - started

    async def _sync(self) -> None:
        target = self._written_lsn
        self._note_sync(await trio.to_thread.run_sync(self._timed_fdatasync, self._segment.fd),
                        target)

    def _note_sync(self, seconds: float, target: int) -> None:
        self._fsync_seconds_total += seconds
        self._fsync_count += 1
        self._durable_lsn = target
        self._last_sync_time = trio.current_time()
        event, self._synced_event = self._synced_event, trio.Event()
        event.set()

    async def _rotate(self, first_lsn: int) -> None:
        target = self._written_lsn
        seconds = await trio.to_thread.run_sync(self._segment.rotate, first_lsn)
        if seconds is None:
            # The batch goes on into the current segment (records stay contiguous, retention
            # just keeps this longer segment until a later snapshot covers it); _rotate_due or
            # the snapshot cut stays set, so the next batch tries again.
            if self._postponed_rotations == 0:
                log.warning("log segment rotation postponed: the process is out of file "
                            "descriptors; appending to %s until one is free",
                            self._segment.name)
            self._postponed_rotations += 1
            self._rotate_due = True
            return
        if self._postponed_rotations:
            log.warning("log segment rotation done after %d postponed attempt(s)",
                        self._postponed_rotations)
            self._postponed_rotations = 0
        self._note_sync(seconds, target)
        self._rotate_due = False
        if self._rotate_after is not None and first_lsn > self._rotate_after:
            self._rotate_after = None

    # -- failure and shutdown --------------------------------------------------------------

    def _set_error(self, exc: BaseException) -> None:
        """From here on submit() and wait_durable() raise; sleeping waiters are woken later."""
        self._life.take(LogAction.FAIL)
        self._failure = exc
        self._error = LogFailedError(
            f"the write-ahead log failed and stopped ({exc}); records after lsn "
            f"{self._acked_lsn} were not acknowledged")
        self._pending = []

    def _wake_everyone(self) -> None:
        self._pending_event.set()
        self._inflight_event.set()
        self._synced_event.set()

    async def _fail(self, exc: OSError) -> None:
        # Called once at most: only run() calls it, and run() ends right after.
        self._set_error(exc)
        await trio.to_thread.run_sync(self._segment.cut_back)
        # Waiters learn of the failure only now, when the file no longer holds their records,
        # and on_fatal runs in the same step, before any of them can answer a client.
        self._wake_everyone()
        if self._on_fatal is not None:
            self._on_fatal(exc)

    def _stop(self) -> None:
        """run() is ending, normally or not: fail whatever was not written."""
        self._life.take(LogAction.STOP)
        self._release()

    def _release(self) -> None:
        # Cancelled mid-flight or failed: nothing to flush into any more.
        self._segment.close_descriptors()
        if self._error is None and self.last_lsn > self._acked_lsn:
            self._error = LogClosedError(
                f"the log flusher stopped before lsn {self._acked_lsn + 1}..{self.last_lsn} "
                "were written")
            self._pending = []
        self._wake_everyone()
        self._stopped.set()

    async def close(self) -> None:
        """Write and fdatasync everything pending, close the segment; later submits raise.

        Never raises LogFailedError: a failure was already reported to the waiters and to
        ``on_fatal``, and close() is meant for ``finally`` blocks.
        """
        before = self._life.state
        self._life.take(LogAction.CLOSE)
        if before is LogState.NEW:
            self._release()
            return
        self._wake.set()
        await self._stopped.wait()

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(self, lsn: int, chunks: Iterable[object]) -> SnapshotInfo:
        """Write a snapshot of the state as of ``lsn`` (take it from :attr:`last_lsn` in the
        same synchronous step as the state copy), then apply retention (wal/checkpoint.py).

        The next record after ``lsn`` starts a new segment, so later retention can delete whole
        segments. Before the snapshot becomes visible, every record submitted so far is made
        durable: the chunks are fuzzy and may include effects of records after ``lsn``, and a
        crash must not keep such an effect while losing its record (a batch half-applied).
        """
        self._snapshots.check_idle()
        if not 0 <= lsn <= self.last_lsn:
            raise SnapshotError(f"snapshot lsn {lsn} is outside 0..{self.last_lsn}")
        self._require(LogAction.SNAPSHOT)
        mark = self._submitted_bytes

        def cut_after(cut: int) -> None:
            self._rotate_after = max(cut, self._rotate_after or 0)

        async def make_log_durable() -> None:
            await self._wait_synced(self.last_lsn)

        def note_written() -> None:
            self._snapshot_mark = mark + self._bytes_before_start

        return await self._snapshots.take(lsn, chunks, cut_after=cut_after,
                                          make_durable=make_log_durable, on_written=note_written)
