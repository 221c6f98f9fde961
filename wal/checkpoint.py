"""Taking a snapshot for a running log: one at a time, the log made durable before the commit,
then retention.

The steps and why they are in this order:

1. the log is told to start a new segment after the snapshot's LSN, so retention can later
   delete whole segments (a segment never mixes records before and after a snapshot);
2. the snapshot is written (wal/snapshot.py); right before it becomes visible, every record
   submitted so far is made durable: the chunks are fuzzy and may include effects of records
   after the LSN, and a crash must not keep such an effect while losing its record;
3. the log learns the snapshot is on disk (its "bytes since snapshot" restarts);
4. retention deletes what the new snapshot made unnecessary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import trio

from wal.errors import SnapshotError
from wal.snapshot import SnapshotInfo, apply_retention, write_snapshot


class SnapshotTaker:
    """Runs the steps above for one data directory; refuses a second snapshot meanwhile."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.running = False

    def check_idle(self) -> None:
        if self.running:
            raise SnapshotError("a snapshot is already running")

    async def take(
        self,
        lsn: int,
        chunks: Iterable[object],
        *,
        cut_after: Callable[[int], None],
        make_durable: Callable[[], Awaitable[None]],
        on_written: Callable[[], None],
    ) -> SnapshotInfo:
        self.check_idle()
        self.running = True
        try:
            cut_after(lsn)
            info = await write_snapshot(self.data_dir, lsn, chunks, before_commit=make_durable)
            on_written()
            await trio.to_thread.run_sync(apply_retention, self.data_dir)
        finally:
            self.running = False
        return info
