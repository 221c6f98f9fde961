"""Roster's write-ahead log: framing, segments, group commit, snapshots, recovery
(docs/architecture.md, "The write-ahead log").

Typical use (what ``server/runner.py`` does)::

    with DataDirLock(data_dir):
        report = recover(data_dir, mode="strict", load_snapshot_chunk=state.load_chunk,
                         apply_record=lambda lsn, obj: state.apply(obj), log=print,
                         progress=None)   # or a callable taking RecoveryProgress
        log = WriteAheadLog(data_dir, next_lsn=report.last_lsn + 1, on_fatal=stop)
        async with trio.open_nursery() as nursery:
            await nursery.start(log.run)
            lsn = log.submit(ops)          # synchronous, in the same step as state.apply(ops)
            await log.wait_durable(lsn)    # then acknowledge
            ...
            await log.close()
"""

from wal.codec import pack, unpack
from wal.errors import (
    CorruptLogError,
    FrameError,
    FrameKind,
    LockedError,
    LogClosedError,
    LogFailedError,
    SnapshotError,
    WalError,
)
from wal.failpoints import failpoint
from wal.framing import MAX_RECORD_BYTES, RT_OPS, RT_SNAP_CHUNK, RT_SNAP_TRAILER
from wal.layout import SegmentFile, SnapshotFile, list_segments, list_snapshots
from wal.lock import DataDirLock
from wal.log import FsyncPolicy, WriteAheadLog
from wal.recovery import RecoveryMode, RecoveryReport, recover
from wal.snapshot import SnapshotInfo, read_snapshot, write_snapshot
from wal.walk import RecoveryProgress

__all__ = [
    "MAX_RECORD_BYTES",
    "RT_OPS",
    "RT_SNAP_CHUNK",
    "RT_SNAP_TRAILER",
    "CorruptLogError",
    "DataDirLock",
    "FrameError",
    "FrameKind",
    "FsyncPolicy",
    "LockedError",
    "LogClosedError",
    "LogFailedError",
    "RecoveryMode",
    "RecoveryProgress",
    "RecoveryReport",
    "SegmentFile",
    "SnapshotError",
    "SnapshotFile",
    "SnapshotInfo",
    "WalError",
    "WriteAheadLog",
    "failpoint",
    "list_segments",
    "list_snapshots",
    "pack",
    "read_snapshot",
    "recover",
    "unpack",
    "write_snapshot",
]
