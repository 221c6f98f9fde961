"""The log's lifecycle table, and the log refusing what its state does not allow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from tests.wal.helpers import running
from wal import LogClosedError, WriteAheadLog
from wal.lifecycle import TRANSITIONS, Lifecycle, LogAction, LogState


def test_final_states_only_take_close_and_stop() -> None:
    for final in (LogState.FAILED, LogState.CLOSED):
        assert set(TRANSITIONS[final]) <= {LogAction.CLOSE, LogAction.STOP}
        assert set(TRANSITIONS[final].values()) == {final}


def test_every_state_is_reachable_from_new() -> None:
    seen, todo = {LogState.NEW}, [LogState.NEW]
    while todo:
        for nxt in TRANSITIONS[todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(LogState)


def test_an_action_outside_the_table_is_a_clear_error() -> None:
    life = Lifecycle()
    with pytest.raises(RuntimeError, match="cannot started while new"):
        life.take(LogAction.STARTED)
    assert life.state is LogState.NEW  # a refused action moves nothing
    assert life.take(LogAction.RUN) is LogState.STARTING
    with pytest.raises(RuntimeError, match="cannot run while starting"):
        life.take(LogAction.RUN)


async def test_the_log_walks_new_running_closing_closed(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    assert log.state is LogState.NEW
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        assert log.state is LogState.RUNNING
        lsn = log.submit("a")
        await log.close()
    assert log.state is LogState.CLOSED and log.durable_lsn == lsn
    stats = log.statistics()
    assert (stats.state, stats.last_lsn, stats.durable_lsn, stats.records_written) == (
        LogState.CLOSED, lsn, lsn, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.fsync_count = 0  # type: ignore[misc]  # a snapshot, not a handle
    with pytest.raises(LogClosedError):
        log.submit("b")
    await log.close()  # again: a no-op
    assert log.state is LogState.CLOSED


async def test_a_snapshot_needs_a_running_flusher(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    with pytest.raises(RuntimeError, match="cannot snapshot while new"):
        await log.snapshot(0, [])
    async with running(tmp_path) as started:
        info = await started.snapshot(0, [])
        assert info.lsn == 0


async def test_close_before_run_closes_for_good(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    await log.close()
    assert log.state is LogState.CLOSED
    with pytest.raises(RuntimeError, match="cannot run while closed"):
        await log.run()
