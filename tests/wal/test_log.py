"""WriteAheadLog: round trips under each fsync policy, group commit, rotation, fail-stop, close.

Real files and real fdatasync throughout; failures are injected through the flusher's ``_write``
and ``_fdatasync`` hooks; time-dependent behaviour runs on trio's autojump clock.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.wal.helpers import obj, run_recover, running, tmp_files, write_segment
from wal import (
    LogClosedError,
    LogFailedError,
    WriteAheadLog,
    list_segments,
)
from wal.framing import HEADER_SIZE
from wal.layout import segment_path


def segment_bytes_on_disk(data: Path) -> int:
    return sum(seg.size - HEADER_SIZE for seg in list_segments(data))


@pytest.mark.parametrize("policy", ["always", "interval", "none"])
async def test_round_trip_under_each_policy(tmp_path: Path, policy: Any) -> None:
    async with running(tmp_path, fsync=policy, segment_bytes=600) as log:
        for i in range(1, 61):
            lsn = log.submit(obj(i))
            assert lsn == i == log.last_lsn
            await log.wait_durable(lsn)
            assert log.written_lsn >= lsn and log.acked_lsn >= lsn
            if policy == "always":
                assert log.durable_lsn >= lsn
    assert log.durable_lsn == log.written_lsn == 60  # close() syncs in every mode
    assert log.statistics().records_written == 60
    assert log.statistics().bytes_written == segment_bytes_on_disk(tmp_path)
    got = run_recover(tmp_path)
    assert got.records == [(i, obj(i)) for i in range(1, 61)]
    assert len(list_segments(tmp_path)) >= 3  # rotated by size


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    async with running(tmp_path) as log:
        async def writer(i: int) -> None:
            for j in range(5):
                await log.wait_durable(log.submit((i, j)))

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(writer, i)
        assert log.durable_lsn == log.last_lsn == 500
        # 100 concurrent writers: each batch carries many records.
        assert log.statistics().batches <= 50
        assert log.statistics().fsync_count <= log.statistics().batches
        assert log.statistics().last_batch_records >= 1
    assert len(run_recover(tmp_path).records) == 500


async def test_records_submitted_during_a_flush_form_the_next_batch(tmp_path: Path) -> None:
    gate = threading.Event()
    async with running(tmp_path) as log:
        real_write = log._write

        def slow_write(fd: int, data: memoryview) -> int:
            gate.wait(10)
            return real_write(fd, data)

        log._write = slow_write
        first = log.submit("a")
        await trio.testing.wait_all_tasks_blocked()  # the flusher is now inside the write
        later = [log.submit(i) for i in range(10)]
        gate.set()
        await log.wait_durable(later[-1])
        assert log.statistics().batches == 2 and log.statistics().last_batch_records == 10
        await log.wait_durable(first)


async def _until(condition: Callable[[], bool]) -> None:
    """Let the flusher's worker thread finish while virtual time stands still (the mock clock
    only moves when the test jumps it). Bounded: a log that never gets there fails the test."""
    for _ in range(200_000):
        if condition():
            return
        await trio.lowlevel.checkpoint()
    pytest.fail("the log did not get there")


async def test_interval_fsyncs_at_most_every_interval(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # A hand-moved clock: it never moves while a fsync thread runs, so each interval fsync
    # happens at a virtual time this test can name exactly.
    async with running(tmp_path, fsync="interval", fsync_interval_s=1.0) as log:
        await log.wait_durable(log.submit("a"))  # acknowledged once written
        assert (log.written_lsn, log.durable_lsn, log.statistics().fsync_count) == (1, 0, 0)
        mock_clock.jump(0.5)
        await trio.testing.wait_all_tasks_blocked()
        # Not yet: the interval runs to 1.0.
        assert (log.durable_lsn, log.statistics().fsync_count) == (0, 0)
        mock_clock.jump(0.5)
        await _until(lambda: log.durable_lsn == 1)
        assert log.statistics().fsync_count == 1
        mock_clock.jump(10)
        await trio.testing.wait_all_tasks_blocked()
        assert log.statistics().fsync_count == 1  # idle: nothing to sync
        # Under steady load (a record every 0.25 s for 10 s) the fsync happens once per
        # interval: after the first write at least 1.0 s past the previous fsync (at 1.0).
        last_sync, expected = 1.0, 1
        for i in range(40):
            await log.wait_durable(log.submit(i))
            if trio.current_time() >= last_sync + 1.0:
                # Due: the fsync runs before this write (the interval ran out while the last
                # write was unsynced) or right after it (the log was idle and synced).
                expected += 1
                await _until(lambda n=expected: log.statistics().fsync_count == n)
                last_sync = trio.current_time()
            assert log.statistics().fsync_count == expected
            mock_clock.jump(0.25)
        assert expected == 11  # at 1.0, then 11.0, 12.0, ... 20.0


async def test_none_policy_never_fsyncs_until_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path, fsync="none") as log:
        for i in range(20):
            await log.wait_durable(log.submit(i))
        await trio.sleep(60)
        assert (log.written_lsn, log.durable_lsn, log.statistics().fsync_count) == (20, 0, 0)
    assert (log.durable_lsn, log.statistics().fsync_count) == (20, 1)


async def test_none_policy_fsyncs_at_rotation(tmp_path: Path) -> None:
    async with running(tmp_path, fsync="none", segment_bytes=200) as log:
        for i in range(30):
            await log.wait_durable(log.submit(obj(i)))
        rotations = len(list_segments(tmp_path)) - 1
        assert rotations > 2
        assert log.statistics().fsync_count == rotations
    assert len(run_recover(tmp_path).records) == 30


def fail_with(code: int, calls: list[int]) -> Any:
    def fail(*args: Any) -> Any:
        calls.append(args[0])
        raise OSError(code, f"injected {errno.errorcode[code]}")

    return fail


async def submit_many(log: WriteAheadLog, objs: list[object]) -> list[str]:
    """Submit each object from its own task and wait; report 'ok' or 'failed' per record."""
    results: list[str] = ["?"] * len(objs)

    async def one(i: int, value: object) -> None:
        lsn = log.submit(value)
        try:
            await log.wait_durable(lsn)
            results[i] = "ok"
        except LogFailedError:
            results[i] = "failed"

    async with trio.open_nursery() as nursery:
        for i, value in enumerate(objs):
            nursery.start_soon(one, i, value)
    return results


async def test_fsync_eio_is_fail_stop(tmp_path: Path) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, on_fatal=fatal.append) as log:
        assert await submit_many(log, [obj(1), obj(2), obj(3)]) == ["ok"] * 3
        good_size = segment_path(tmp_path, 1).stat().st_size
        calls: list[int] = []
        log._fdatasync = fail_with(errno.EIO, calls)
        assert await submit_many(log, [obj(i) for i in range(4, 10)]) == ["failed"] * 6
        assert len(calls) == 1  # an fsync is never retried
        assert len(fatal) == 1
        assert isinstance(fatal[0], OSError) and fatal[0].errno == errno.EIO
        assert log.failed
        with pytest.raises(LogFailedError, match="injected EIO") as info:
            log.submit(obj(10))
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(LogFailedError):
            await log.wait_durable(9)
        await log.wait_durable(3)  # acknowledged before the failure: still fine
    assert len(fatal) == 1
    # The un-acknowledged batch was written to the page cache, then cut back off.
    assert segment_path(tmp_path, 1).stat().st_size == good_size
    assert run_recover(tmp_path).lsns == [1, 2, 3]


async def test_write_enospc_after_partial_write_is_cut_back(tmp_path: Path) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, on_fatal=fatal.append) as log:
        assert await submit_many(log, [obj(1), obj(2)]) == ["ok", "ok"]
        good_size = segment_path(tmp_path, 1).stat().st_size
        real_write = log._write
        state = {"calls": 0}

        def half_then_enospc(fd: int, data: memoryview) -> int:
            state["calls"] += 1
            if state["calls"] == 1:
                return real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "injected ENOSPC")

        log._write = half_then_enospc
        assert await submit_many(log, [obj(i, 100) for i in range(3, 8)]) == ["failed"] * 5
        assert segment_path(tmp_path, 1).stat().st_size == good_size
        assert [type(e) for e in fatal] == [OSError]
        with pytest.raises(LogFailedError):
            log.submit("more")
    assert run_recover(tmp_path).lsns == [1, 2]


@pytest.mark.parametrize(
    ("behaviour", "ok"),
    [("one_short", True), ("always_short", False), ("zero", False)],
)
async def test_short_writes(tmp_path: Path, behaviour: str, ok: bool) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, on_fatal=fatal.append) as log:
        real_write = log._write
        shorts = {"n": 0}

        def write(fd: int, data: memoryview) -> int:
            if behaviour == "zero":
                return 0
            if behaviour == "always_short" or shorts["n"] == 0:
                shorts["n"] += 1
                return real_write(fd, data[: max(1, len(data) - 3)])
            return real_write(fd, data)

        log._write = write
        result = await submit_many(log, [obj(1), obj(2)])
        assert result == (["ok"] * 2 if ok else ["failed"] * 2)
        assert log.failed is not ok and len(fatal) == (0 if ok else 1)
    assert run_recover(tmp_path).lsns == ([1, 2] if ok else [])


async def test_without_on_fatal_run_raises(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    with pytest.RaisesGroup(pytest.RaisesExc(LogFailedError, match="injected EIO")):
        async with trio.open_nursery() as nursery:
            await nursery.start(log.run)
            log._fdatasync = fail_with(errno.EIO, [])
            with pytest.raises(LogFailedError):
                await log.wait_durable(log.submit("x"))


async def test_close_flushes_pending_and_refuses_later_submits(tmp_path: Path) -> None:
    async with running(tmp_path, fsync="none") as log:
        lsns = [log.submit(i) for i in range(5)]  # nobody waits
        await log.close()
        assert log.durable_lsn == 5
        await log.wait_durable(lsns[-1])
        with pytest.raises(LogClosedError):
            log.submit("late")
        with pytest.raises(LogFailedError):  # LogClosedError is a LogFailedError
            log.submit("late")
        await log.close()  # idempotent
        assert not log.failed
    assert run_recover(tmp_path).lsns == [1, 2, 3, 4, 5]


async def test_close_before_run(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    lsn = log.submit("never written")
    await log.close()
    with pytest.raises(LogClosedError, match="stopped before lsn 1"):
        await log.wait_durable(lsn)
    with pytest.raises(LogClosedError):
        log.submit("x")


async def test_cancelled_flusher_fails_unwritten_waiters(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    gate = threading.Event()
    async with trio.open_nursery() as inner:
        await inner.start(log.run)
        real_write = log._write

        def gated(fd: int, data: memoryview) -> int:
            gate.wait(10)
            return real_write(fd, data)

        log._write = gated
        first = log.submit("in flight")
        await trio.testing.wait_all_tasks_blocked()
        second = log.submit("pending")
        inner.cancel_scope.cancel()
        gate.set()
    # The batch in the worker thread was written and fdatasync'ed in that one trip before the
    # flusher saw the cancellation: it is durable, so it is acknowledged. What was still pending
    # never reached the file and fails.
    await log.wait_durable(first)
    with pytest.raises(LogClosedError):
        await log.wait_durable(second)
    with pytest.raises(LogClosedError):
        log.submit("x")
    await log.close()  # returns at once: the flusher is gone


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


async def test_bad_input_uses_no_lsn(tmp_path: Path) -> None:
    async with running(tmp_path) as log:
        with pytest.raises(TypeError):
            log.submit(object())
        with pytest.raises(ValueError):  # UnicodeEncodeError: ids must be validated upstream
            log.submit(["uid", "a\ud800"])
        with pytest.raises(ValueError):  # msgpack's nesting limit
            log.submit(nested(1000))
        assert log.submit("fine") == 1
        with pytest.raises(ValueError, match="never submitted"):
            await log.wait_durable(2)
        with pytest.raises(RuntimeError, match="cannot run while"):
            await log.run()


async def test_refuses_to_overwrite_a_segment_with_records(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1)])
    log = WriteAheadLog(tmp_path, next_lsn=1)
    with pytest.raises(LogFailedError, match="already holds records"):
        await log.run()
    assert run_recover(tmp_path).lsns == [1]


async def test_header_only_segment_is_reused_on_restart(tmp_path: Path) -> None:
    async with running(tmp_path):
        pass
    async with running(tmp_path) as log:
        await log.wait_durable(log.submit("a"))
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1]
    assert run_recover(tmp_path).lsns == [1]


async def test_appending_after_a_repaired_tail_uses_a_new_segment(tmp_path: Path) -> None:
    async with running(tmp_path) as log:
        for i in range(1, 4):
            await log.wait_durable(log.submit(obj(i)))
    seg = segment_path(tmp_path, 1)
    with seg.open("ab") as f:
        f.write(b"\x07" * 30)  # a torn append
    report = run_recover(tmp_path).report
    assert report.torn_tail == 30 and report.last_lsn == 3
    async with running(tmp_path, next_lsn=report.last_lsn + 1) as log:
        for i in range(4, 7):
            await log.wait_durable(log.submit(obj(i)))
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1, 4]
    got = run_recover(tmp_path)
    assert got.records == [(i, obj(i)) for i in range(1, 7)]
    assert got.report.torn_tail is None


async def test_bytes_since_snapshot_counts_submits_and_log_on_disk(tmp_path: Path) -> None:
    async with running(tmp_path) as log:
        assert log.bytes_since_snapshot == 0
        await log.wait_durable(log.submit(obj(1)))
        first = log.bytes_since_snapshot
        assert first == log.statistics().bytes_written > 0
    async with running(tmp_path, next_lsn=2) as log:
        assert log.bytes_since_snapshot == first  # measured from the segments at start


def test_constructor_validation(tmp_path: Path) -> None:
    for kwargs in ({"fsync": "sometimes"}, {"next_lsn": 0}, {"segment_bytes": 10},
                   {"fsync_interval_s": 0}):
        args: dict[str, Any] = {"next_lsn": 1, **kwargs}
        with pytest.raises(ValueError):
            WriteAheadLog(tmp_path, **args)


def test_fdatasync_hook_defaults_to_the_real_call(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path, next_lsn=1)
    assert log._write is os.write
    assert log._fdatasync is getattr(os, "fdatasync", os.fsync)


async def test_rotation_failure_is_fail_stop(tmp_path: Path) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, segment_bytes=100, on_fatal=fatal.append) as log:
        assert await submit_many(log, [obj(1, 90)]) == ["ok"]  # fills the first segment
        real_write = log._write

        def no_room_for_headers(fd: int, data: memoryview) -> int:
            return 10 if len(data) == HEADER_SIZE else real_write(fd, data)

        log._write = no_room_for_headers
        assert await submit_many(log, [obj(2)]) == ["failed"]
        assert "segment header" in str(fatal[0])
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1]
    assert tmp_files(tmp_path) == []
    assert run_recover(tmp_path).lsns == [1]
