"""Snapshots: file validation, fallback to the older one, retention, rotation at the snapshot
LSN, and recovery from snapshot + log tail equalling a plain dict model."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.wal.helpers import obj, patch, running, tmp_files, write_segment
from wal import (
    LogClosedError,
    LogFailedError,
    SnapshotError,
    list_segments,
    list_snapshots,
    read_snapshot,
    recover,
    write_snapshot,
)
from wal.framing import (
    HEADER_SIZE,
    RT_SNAP_CHUNK,
    RT_SNAP_TRAILER,
    SNAPSHOT_MAGIC,
    RecordReader,
    encode_header,
)
from wal.framing import encode_record as frame
from wal.layout import SegmentFile, segment_path, snapshot_path
from wal.snapshot import covered_segments


def chunks_of(model: dict[str, Any], per: int = 4) -> Iterator[object]:
    items = sorted(model.items())
    for start in range(0, len(items), per):
        yield [list(pair) for pair in items[start : start + per]]


def restore(data: Path, mode: Any = "strict") -> tuple[dict[str, Any], Any]:
    state: dict[str, Any] = {}

    def load(chunk: object) -> None:
        assert isinstance(chunk, list)
        for key, value in chunk:
            state[key] = value

    def apply(lsn: int, op: object) -> None:
        assert isinstance(op, list)
        _, key, value = op
        state[key] = value

    report = recover(data, mode=mode, load_snapshot_chunk=load, apply_record=apply,
                     log=lambda _: None)
    return state, report


async def test_write_and_read_round_trip(tmp_path: Path) -> None:
    objs: list[object] = [{"kind": "meta"}, [1, 2, 3], "x" * 3000, b"\x00\x01"]
    info = await write_snapshot(tmp_path, 7, iter(objs))
    assert info.path == snapshot_path(tmp_path, 7) and info.lsn == 7 and info.chunks == 4
    assert info.bytes == info.path.stat().st_size
    valid = read_snapshot(info.path)
    assert valid.lsn == 7 and len(valid.payloads) == 4
    assert [s.lsn for s in list_snapshots(tmp_path)] == [7]
    assert tmp_files(tmp_path) == []


async def test_snapshot_yields_to_the_loop_between_chunks(tmp_path: Path) -> None:
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    def chunks() -> Iterator[object]:
        for i in range(10):
            seen.append(ticks)
            yield {"i": i}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await write_snapshot(tmp_path, 1, chunks())
        nursery.cancel_scope.cancel()
    # Without a checkpoint between chunks the ticker could not run at all while they are made;
    # with one it runs once per scheduler batch (order inside a batch is random, hence the -1).
    assert seen[-1] - seen[0] >= len(seen) - 2, seen


async def test_failing_chunk_iterator_leaves_nothing_behind(tmp_path: Path) -> None:
    def chunks() -> Iterator[object]:
        yield {"ok": 1}
        raise RuntimeError("state copy failed")

    with pytest.raises(RuntimeError, match="state copy failed"):
        await write_snapshot(tmp_path, 3, chunks())
    assert list((tmp_path / "snap").iterdir()) == []
    with pytest.raises(SnapshotError):
        await write_snapshot(tmp_path, -1, iter([]))


def log_of(data: Path, count: int) -> dict[str, Any]:
    """Segments holding ``set k<i> = i`` for i in 1..count; returns the resulting model."""
    write_segment(data, 1, [["set", f"k{i}", i] for i in range(1, count + 1)])
    return {f"k{i}": i for i in range(1, count + 1)}


async def two_snapshots(data: Path) -> dict[str, Any]:
    model = log_of(data, 10)
    await write_snapshot(data, 5, chunks_of({f"k{i}": i for i in range(1, 6)}))
    await write_snapshot(data, 8, chunks_of({f"k{i}": i for i in range(1, 9)}))
    return model


def drop_trailer(path: Path) -> None:
    reader = RecordReader(path.read_bytes(), HEADER_SIZE)
    offsets = [record.offset for record in reader]
    with path.open("r+b") as f:
        f.truncate(offsets[-1])


@pytest.mark.parametrize("damage", ["no_trailer", "bad_crc", "wrong_lsn", "empty"])
async def test_bad_newest_snapshot_falls_back_to_older(tmp_path: Path, damage: str) -> None:
    model = await two_snapshots(tmp_path)
    newest = snapshot_path(tmp_path, 8)
    if damage == "no_trailer":
        drop_trailer(newest)
    elif damage == "bad_crc":
        patch(newest, newest.stat().st_size - 40, b"\xff")
    elif damage == "wrong_lsn":
        newest.write_bytes(encode_header(9, SNAPSHOT_MAGIC) + newest.read_bytes()[HEADER_SIZE:])
    else:
        newest.write_bytes(b"")
    state, report = restore(tmp_path)
    assert state == model
    assert report.snapshot_lsn == 5 and report.records_replayed == 5
    assert (tmp_path / "snap" / f"{newest.name}.broken").exists()
    assert any("renamed to" in m for m in report.messages)
    assert [s.lsn for s in list_snapshots(tmp_path)] == [5]


async def test_all_snapshots_bad_replays_whole_log(tmp_path: Path) -> None:
    model = await two_snapshots(tmp_path)
    drop_trailer(snapshot_path(tmp_path, 8))
    drop_trailer(snapshot_path(tmp_path, 5))
    state, report = restore(tmp_path)
    assert state == model and report.snapshot_lsn == 0 and report.records_replayed == 10


async def test_trailer_with_wrong_count_or_data_after_it(tmp_path: Path) -> None:
    info = await write_snapshot(tmp_path, 2, iter([1, 2]))
    data = info.path.read_bytes()
    info.path.write_bytes(data + frame(3, RT_SNAP_CHUNK, b"\x01"))
    with pytest.raises(SnapshotError, match="after the trailer"):
        read_snapshot(info.path)
    # Chunks out of order: each frame checks out, the index does not.
    chunk0 = frame(1, RT_SNAP_CHUNK, b"\x01")
    info.path.write_bytes(encode_header(2, SNAPSHOT_MAGIC) + chunk0)
    with pytest.raises(SnapshotError, match="chunk 1 where chunk 0 belongs"):
        read_snapshot(info.path)


async def test_undecodable_chunk_with_valid_crc_refuses_start(tmp_path: Path) -> None:
    log_of(tmp_path, 3)
    await write_snapshot(tmp_path, 2, iter([[["k1", 1]]]))
    valid = read_snapshot(snapshot_path(tmp_path, 2))
    # Rebuild the file with a chunk that frames correctly but is not msgpack.
    bad = b"\xc1"
    body = (encode_header(2, SNAPSHOT_MAGIC) + frame(0, RT_SNAP_CHUNK, bad)
            + frame(1, RT_SNAP_TRAILER, struct.pack("<QI", 1, zlib.crc32(bad))))
    valid.path.write_bytes(body)
    with pytest.raises(SnapshotError, match="valid CRC but does not decode"):
        restore(tmp_path)


def test_covered_segments() -> None:
    segs = [SegmentFile(first, Path(f"{first}"), 0) for first in (1, 11, 21)]
    assert covered_segments(segs, 9) == []
    assert covered_segments(segs, 10) == segs[:1]
    assert covered_segments(segs, 25) == segs[:2]  # never the last one


async def test_snapshots_keep_two_delete_covered_segments_and_recover_everything(
    tmp_path: Path,
) -> None:
    model: dict[str, Any] = {}
    lsns: list[int] = []
    async with running(tmp_path, segment_bytes=300) as log:

        async def put(key: str, value: int) -> None:
            lsn = log.submit(["set", key, value])
            model[key] = value
            await log.wait_durable(lsn)

        for round_ in range(3):
            for i in range(30):
                await put(f"k{i % 17}", round_ * 100 + i)
            lsn = log.last_lsn
            info = await log.snapshot(lsn, chunks_of(dict(model)))
            lsns.append(lsn)
            assert (info.lsn, info.chunks) == (lsn, 5)
            assert log.bytes_since_snapshot == 0
            await put("after", round_)
            # The first record after the snapshot opened a new segment.
            assert segment_path(tmp_path, lsn + 1).exists()
            assert log.bytes_since_snapshot > 0
        for i in range(10):
            await put(f"tail{i}", i)

    assert [s.lsn for s in list_snapshots(tmp_path)] == lsns[1:]
    segments = list_segments(tmp_path)
    # Everything after the older kept snapshot is still there, nothing it covers is.
    assert segments[0].first_lsn == lsns[1] + 1
    assert covered_segments(segments, lsns[1]) == []

    state, report = restore(tmp_path)
    assert state == model
    assert report.snapshot_lsn == lsns[2]
    assert report.messages == []  # segments deleted by retention are not news
    assert report.last_lsn == lsns[2] + 11

    # If the newest snapshot is lost, the older one plus the log still has everything.
    drop_trailer(snapshot_path(tmp_path, lsns[2]))
    state, report = restore(tmp_path)
    assert state == model and report.snapshot_lsn == lsns[1]


async def test_snapshot_rotation_splits_a_batch_at_the_snapshot_lsn(tmp_path: Path) -> None:
    gate = threading.Event()
    async with running(tmp_path) as log:
        real_write = log._write

        def gated(fd: int, data: memoryview) -> int:
            gate.wait(10)
            return real_write(fd, data)

        log._write = gated
        log.submit(obj(1))  # taken by the flusher, stuck in the write
        await trio.testing.wait_all_tasks_blocked()
        for i in range(2, 6):
            log.submit(obj(i))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.snapshot, 5, iter([{"state": "at 5"}]))
            await trio.testing.wait_all_tasks_blocked()
            for i in range(6, 9):
                log.submit(obj(i))  # same pending batch as 2..5
            gate.set()
        await log.wait_durable(8)
        assert log.statistics().batches == 2

    segments = list_segments(tmp_path)
    assert [s.first_lsn for s in segments] == [1, 6]
    lsns = [[r.lsn for r in RecordReader(s.path.read_bytes())] for s in segments]
    assert lsns == [[1, 2, 3, 4, 5], [6, 7, 8]]


async def test_snapshot_makes_the_log_durable_first_even_without_fsync(tmp_path: Path) -> None:
    async with running(tmp_path, fsync="none") as log:
        for i in range(5):
            log.submit(obj(i))

        def chunks() -> Iterator[object]:
            yield {"a": 1}
            log.submit(obj(99))  # a write while the snapshot is being taken
            yield {"b": 2}

        await log.snapshot(5, chunks())
        assert log.durable_lsn >= 6


async def test_snapshot_preconditions(tmp_path: Path) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, on_fatal=fatal.append) as log:
        log.submit("a")
        with pytest.raises(SnapshotError, match="outside"):
            await log.snapshot(2, iter([]))
        gate = threading.Event()
        real_write = log._write

        def gated(fd: int, data: memoryview) -> int:
            gate.wait(10)
            return real_write(fd, data)

        log._write = gated
        log.submit("b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.snapshot, 2, iter([{}]))
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(SnapshotError, match="already running"):
                await log.snapshot(2, iter([]))
            gate.set()
        log._fdatasync = lambda fd: (_ for _ in ()).throw(OSError(5, "injected EIO"))
        with pytest.raises(LogFailedError):
            await log.wait_durable(log.submit("c"))
        with pytest.raises(LogFailedError):
            await log.snapshot(2, iter([]))
    async with running(tmp_path / "other") as log:
        await log.close()
        with pytest.raises(LogClosedError):
            await log.snapshot(0, iter([]))


async def test_large_snapshot_is_written_in_bounded_pieces(tmp_path: Path) -> None:
    chunks = [{"blob": bytes([i]) * 700_000} for i in range(4)]  # > 1 MiB buffer, twice
    info = await write_snapshot(tmp_path, 1, iter(chunks), yield_every=2)
    assert info.chunks == 4 and info.bytes == info.path.stat().st_size > 2_800_000
    assert len(read_snapshot(info.path).payloads) == 4
    with pytest.raises(ValueError, match="yield_every"):
        await write_snapshot(tmp_path, 2, iter(chunks), yield_every=0)


async def test_trailer_count_mismatch_and_foreign_record_type(tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, 1)
    path.parent.mkdir(parents=True)
    head = encode_header(1, SNAPSHOT_MAGIC) + frame(0, RT_SNAP_CHUNK, b"\x01")
    path.write_bytes(head + frame(1, RT_SNAP_TRAILER, struct.pack("<QI", 2, zlib.crc32(b"\x01"))))
    with pytest.raises(SnapshotError, match="trailer says 2 chunks"):
        read_snapshot(path)
    path.write_bytes(head + frame(1, 1, b""))
    with pytest.raises(SnapshotError, match="unexpected record type 1"):
        read_snapshot(path)
    with pytest.raises(SnapshotError, match="cannot read"):
        read_snapshot(tmp_path / "snap" / "00000000000000000009.snap")


async def test_snapshot_is_not_committed_if_the_log_cannot_be_made_durable(
    tmp_path: Path,
) -> None:
    fatal: list[BaseException] = []
    async with running(tmp_path, fsync="none", on_fatal=fatal.append) as log:
        await log.wait_durable(log.submit(obj(1)))  # written, not synced
        log._fdatasync = lambda fd: (_ for _ in ()).throw(OSError(5, "injected EIO"))
        with pytest.raises(LogFailedError, match="injected EIO"):
            await log.snapshot(1, iter([{"a": 1}]))
        assert len(fatal) == 1
    assert list_snapshots(tmp_path) == [] and tmp_files(tmp_path) == []


async def test_gap_between_segments_covered_by_the_snapshot_is_only_noted(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [["set", "a", 1], ["set", "b", 2], ["set", "c", 3]])
    write_segment(tmp_path, 6, [["set", "f", 6]])
    await write_snapshot(tmp_path, 5, iter([[["a", 1], ["b", 2], ["c", 3], ["e", 5]]]))
    state, report = restore(tmp_path)
    assert state == {"a": 1, "b": 2, "c": 3, "e": 5, "f": 6}
    assert report.last_lsn == 6
    assert any("4..5 are missing" in m and "covers them" in m for m in report.messages)
