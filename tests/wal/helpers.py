"""Building logs byte by byte, running a log, and recovering, for the WAL tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import trio

from wal import RecoveryReport, WriteAheadLog, pack, recover
from wal.framing import RT_OPS, encode_header, encode_record
from wal.layout import segment_path


@dataclass
class Built:
    """A segment file written by :func:`write_segment` and where each of its records starts."""

    path: Path
    offsets: list[int]
    ends: list[int]
    data: bytes


def write_segment(data_dir: Path, first_lsn: int, objs: list[object],
                  lsns: list[int] | None = None) -> Built:
    """A segment holding ``objs`` at consecutive LSNs (or at ``lsns``, to build bad ones)."""
    path = segment_path(data_dir, first_lsn)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = bytearray(encode_header(first_lsn))
    offsets, ends = [], []
    for i, obj in enumerate(objs):
        offsets.append(len(buf))
        lsn = lsns[i] if lsns is not None else first_lsn + i
        buf += encode_record(lsn, RT_OPS, pack(obj))
        ends.append(len(buf))
    path.write_bytes(bytes(buf))
    return Built(path, offsets, ends, bytes(buf))


def obj(lsn: int, size: int = 8) -> list[object]:
    """A recognisable op batch for ``lsn`` (``size`` bytes of filler)."""
    return [lsn, "x" * size]


@dataclass
class Recovered:
    report: RecoveryReport
    chunks: list[object] = field(default_factory=list)
    records: list[tuple[int, object]] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)

    @property
    def lsns(self) -> list[int]:
        return [lsn for lsn, _ in self.records]


def run_recover(data_dir: Path, mode: Literal["strict", "truncate"] = "strict") -> Recovered:
    chunks: list[object] = []
    records: list[tuple[int, object]] = []
    logged: list[str] = []
    report = recover(data_dir, mode=mode, load_snapshot_chunk=chunks.append,
                     apply_record=lambda lsn, o: records.append((lsn, o)), log=logged.append)
    return Recovered(report, chunks, records, logged)


def broken_files(data_dir: Path) -> dict[str, bytes]:
    directory = data_dir / "wal" / "broken"
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def fresh_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


@asynccontextmanager
async def running(data: Path, **kwargs: Any) -> AsyncIterator[WriteAheadLog]:
    """A started log in its own nursery, closed (shielded) on the way out."""
    kwargs.setdefault("next_lsn", 1)
    log = WriteAheadLog(data, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        try:
            yield log
        finally:
            with trio.CancelScope(shield=True):
                await log.close()


def tmp_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("*/*.tmp"))
