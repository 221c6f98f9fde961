"""Snapshot files: writing one without stalling the event loop, validating one before use, and
the retention rule that decides which snapshots and segments may go.

File layout (framing.py)::

    header (magic RSTRSNP\\0, version, lsn)
    RT_SNAP_CHUNK records, lsn field = chunk index 0, 1, ...; payload = msgpack of one chunk
    RT_SNAP_TRAILER record, lsn field = chunk count; payload = <QI chunk count, crc32 of all
        chunk payloads>

A snapshot is valid only with its trailer: a crash half-way leaves a file without one,
and the per-chunk indexes plus the running CRC catch reordered or missing chunks that each still
check out on their own.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.lowlevel

from wal.codec import new_packer
from wal.errors import FrameError, SnapshotError
from wal.failpoints import failpoint
from wal.framing import (
    HEADER_SIZE,
    RT_SNAP_CHUNK,
    RT_SNAP_TRAILER,
    SNAPSHOT_MAGIC,
    RecordReader,
    decode_header,
    encode_header,
    encode_record,
)
from wal.layout import (
    SegmentFile,
    fsync_dir,
    list_segments,
    list_snapshots,
    snap_dir,
    snapshot_path,
)

_TRAILER = struct.Struct("<QI")

# Bytes gathered before one write in a worker thread: large enough that thread hops are rare,
# small enough that memory stays bounded however big the state is.
_WRITE_BUFFER_BYTES = 1 << 20

KEEP_SNAPSHOTS = 2


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    lsn: int
    path: Path
    bytes: int
    chunks: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RetentionResult:
    deleted_snapshots: list[Path]
    deleted_segments: list[Path]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write returned {written} while writing a snapshot")
        view = view[written:]


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    failpoint("snap_before_rename")
    os.replace(tmp, final)
    failpoint("snap_after_rename_before_dirsync")
    fsync_dir(final.parent)


async def write_snapshot(
    data_dir: Path,
    lsn: int,
    chunks: Iterable[object],
    *,
    yield_every: int = 1,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> SnapshotInfo:
    """Write ``snap/<lsn>.snap`` from the caller's chunk objects.

    Chunks are packed in the event loop thread (msgpack holds the GIL, so a thread would stall the
    loop just the same) with a checkpoint every ``yield_every`` chunks; the caller keeps each chunk
    small. File writes and fsyncs run in worker threads. ``before_commit`` is awaited after the
    data is fsynced and before the rename makes the snapshot visible (the log uses it to make sure
    every record whose effect may be in the chunks is durable first).
    """
    if lsn < 0:
        raise SnapshotError(f"snapshot lsn must be >= 0, got {lsn}")
    if yield_every < 1:
        raise ValueError("yield_every must be >= 1")
    started = time.perf_counter()
    directory = snap_dir(data_dir)
    await trio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    final = snapshot_path(data_dir, lsn)
    tmp = final.with_name(final.name + ".tmp")
    fd = await trio.to_thread.run_sync(
        os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    pack = new_packer()
    buffer = bytearray(encode_header(lsn, SNAPSHOT_MAGIC))
    total = 0
    count = 0
    crc = 0
    try:
        for chunk in chunks:
            payload = pack(chunk)
            crc = zlib.crc32(payload, crc)
            buffer += encode_record(count, RT_SNAP_CHUNK, payload)
            count += 1
            if len(buffer) >= _WRITE_BUFFER_BYTES:
                data, buffer = bytes(buffer), bytearray()
                total += len(data)
                await trio.to_thread.run_sync(_write_all, fd, data)
            if count % yield_every == 0:
                await trio.lowlevel.checkpoint()
        buffer += encode_record(count, RT_SNAP_TRAILER, _TRAILER.pack(count, crc))
        total += len(buffer)
        await trio.to_thread.run_sync(_write_all, fd, bytes(buffer))
        fd, to_close = -1, fd
        await trio.to_thread.run_sync(_fsync_and_close, to_close)
        if before_commit is not None:
            await before_commit()
        await trio.to_thread.run_sync(_commit, tmp, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return SnapshotInfo(lsn, final, total, count, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class ValidSnapshot:
    """A snapshot file that passed every check; ``payloads`` are the packed chunks in order."""

    lsn: int
    path: Path
    payloads: list[bytes]


def read_snapshot(path: Path) -> ValidSnapshot:
    """Read and validate a whole snapshot file; raise :class:`SnapshotError` saying what is wrong.

    Validation is complete before anything is returned, so a caller that loads the chunks never
    has to undo a half-loaded snapshot because of damage found later in the file.
    """
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc}") from exc
    try:
        lsn = decode_header(buf, SNAPSHOT_MAGIC)
    except FrameError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    if path.name != f"{lsn:020d}.snap":
        raise SnapshotError(f"{path}: header says lsn {lsn}, the file name disagrees")
    payloads: list[bytes] = []
    crc = 0
    reader = RecordReader(buf, HEADER_SIZE)
    trailer: tuple[int, int] | None = None
    for record in reader:
        if trailer is not None:
            raise SnapshotError(f"{path}: data after the trailer at offset {record.offset}")
        if record.rtype == RT_SNAP_CHUNK:
            if record.lsn != len(payloads):
                raise SnapshotError(f"{path}: chunk {record.lsn} where chunk {len(payloads)} "
                                    f"belongs (offset {record.offset})")
            payloads.append(record.payload)
            crc = zlib.crc32(record.payload, crc)
        elif record.rtype == RT_SNAP_TRAILER and len(record.payload) == _TRAILER.size:
            trailer = _TRAILER.unpack(record.payload)
        else:
            raise SnapshotError(f"{path}: unexpected record type {record.rtype} at offset "
                                f"{record.offset}")
    if reader.damage is not None:
        raise SnapshotError(f"{path}: {reader.damage}")
    if trailer is None:
        raise SnapshotError(f"{path}: no trailer (the snapshot was never finished)")
    if trailer != (len(payloads), crc):
        raise SnapshotError(
            f"{path}: trailer says {trailer[0]} chunks / crc {trailer[1]:#010x}, "
            f"file has {len(payloads)} / {crc:#010x}")
    return ValidSnapshot(lsn, path, payloads)


def covered_segments(segments: list[SegmentFile], lsn: int) -> list[SegmentFile]:
    """Segments whose every record is <= ``lsn``: the next segment starts at or before lsn+1.

    The last segment is never covered: it may be the one being written.
    """
    return [seg for seg, nxt in itertools.pairwise(segments)
            if nxt.first_lsn - 1 <= lsn]


def apply_retention(data_dir: Path, keep: int = KEEP_SNAPSHOTS) -> RetentionResult:
    """Keep the newest ``keep`` snapshots; delete older ones and the segments wholly covered by
    the *oldest kept* one, so that a damaged newest snapshot can still fall back to the older
    snapshot plus the log without losing anything. Blocking: run it in a thread."""
    snapshots = list_snapshots(data_dir)
    old, kept = snapshots[:-keep], snapshots[-keep:]
    for snap in old:
        snap.path.unlink(missing_ok=True)
    deleted: list[Path] = []
    if len(kept) == keep:
        for seg in covered_segments(list_segments(data_dir), kept[0].lsn):
            failpoint("before_segment_delete")
            seg.path.unlink(missing_ok=True)
            deleted.append(seg.path)
    if old:
        fsync_dir(snap_dir(data_dir))
    if deleted:
        fsync_dir(deleted[0].parent)
    return RetentionResult([s.path for s in old], deleted)
