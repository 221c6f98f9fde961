"""A snapshot that cannot be written fails alone: the log goes on acknowledging, the error is
logged once, and the automatic snapshot tries again after a pause, not at every write. The clock
is trio's MockClock, moved by hand; the failure is real: a file sits where the snapshot directory
should be."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from server.ops import tmp_set
from server.service import SNAPSHOT_RETRY_S
from tests.app.conftest import NOW, in_process


def failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum("snapshot at lsn" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


async def settle(condition: Callable[[], bool]) -> None:
    """Let the tasks run (and worker threads finish) until ``condition`` holds; the clock is
    frozen, so no timer fires meanwhile. Bounded in steps and seconds."""
    deadline = time.monotonic() + 10
    for _ in range(1_000_000):
        if condition() or time.monotonic() > deadline:
            return
        await trio.lowlevel.checkpoint()


async def test_failed_snapshot_is_logged_once_and_retried_after_a_pause(
    tmp_path: Path, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roster")
    data = tmp_path / "data"
    async with in_process(data, snapshot_bytes=1) as rig:
        snap = data / "snap"
        shutil.rmtree(snap)
        snap.write_bytes(b"")  # a file where the snapshot directory should be
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.roster.snapshot_loop)
            for i in range(20):
                await rig.roster.commit([tmp_set(f"t{i}", ["u"], NOW + 60_000)])
            await settle(lambda: failures(caplog) > 0)
            for i in range(20, 40):  # every write asks for a snapshot; none is tried yet
                await rig.roster.commit([tmp_set(f"t{i}", ["u"], NOW + 60_000)])
            await trio.testing.wait_all_tasks_blocked()
            assert failures(caplog) == 1 and rig.roster.snapshots_taken == 0

            snap.unlink()
            mock_clock.jump(SNAPSHOT_RETRY_S - 0.001)
            await trio.testing.wait_all_tasks_blocked()
            assert rig.roster.snapshots_taken == 0  # still pausing
            mock_clock.jump(0.001)
            await rig.roster.commit([tmp_set("last", ["u"], NOW + 60_000)])
            await settle(lambda: rig.roster.snapshots_taken > 0)
            assert rig.roster.snapshots_taken == 1 and failures(caplog) == 1
            assert rig.roster.wal.acked_lsn == 41 and not rig.roster.wal.failed
            nursery.cancel_scope.cancel()
