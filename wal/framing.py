"""Byte layout of segment and snapshot files: pure encode/decode, no I/O, no trio.

A file starts with a 24-byte header::

    magic (8) | u32 format version | u64 first_lsn | u32 crc32 of the preceding 20 bytes

(segments: magic ``RSTRWAL\\0`` and the LSN of their first record; snapshots: ``RSTRSNP\\0`` and
the LSN they cover). Then records, each::

    u32 length of payload | u32 crc32 | u64 lsn | u8 type | payload

all little-endian. The CRC covers length, lsn, type and payload, i.e. ``crc32`` of the packed
``<IQB`` fields followed by the payload. msgpack on its own detects nothing (most single-bit flips
still decode, and a truncated stream just ends), hence the frame. The length is checked against
``MAX_RECORD_BYTES`` and against the bytes left in the buffer *before* anything is read, so a
damaged length field can neither make us allocate gigabytes nor read past the end.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

from wal.errors import FrameError, FrameKind

SEGMENT_MAGIC = b"RSTRWAL\x00"
SNAPSHOT_MAGIC = b"RSTRSNP\x00"
FORMAT_VERSION = 1

MAX_RECORD_BYTES = 64 * 1024 * 1024

# Record types. Segments hold only RT_OPS; snapshot files hold chunks and one trailer.
RT_OPS = 1
RT_SNAP_CHUNK = 2
RT_SNAP_TRAILER = 3

_HEADER_BODY = struct.Struct("<8sIQ")
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _HEADER_CRC.size  # 24

RECORD_HEAD = struct.Struct("<IIQB")  # length, crc, lsn, type
RECORD_OVERHEAD = RECORD_HEAD.size  # 17
_CRC_FIELDS = struct.Struct("<IQB")  # the CRC'd fields, in the order the CRC sees them

Buffer = bytes | bytearray | memoryview


class Record(NamedTuple):
    """One decoded record; ``offset`` is where its frame starts in the buffer."""

    offset: int
    lsn: int
    rtype: int
    payload: bytes


def encode_header(first_lsn: int, magic: bytes = SEGMENT_MAGIC) -> bytes:
    body = _HEADER_BODY.pack(magic, FORMAT_VERSION, first_lsn)
    return body + _HEADER_CRC.pack(zlib.crc32(body))


def decode_header(buf: Buffer, magic: bytes = SEGMENT_MAGIC) -> int:
    """Return the header's LSN; raise :class:`FrameError` (offset 0) if it is not intact."""
    if len(buf) < HEADER_SIZE:
        raise FrameError(FrameKind.TRUNCATED_HEADER, 0,
                         f"truncated file header ({len(buf)} of {HEADER_SIZE} bytes)")
    (crc,) = _HEADER_CRC.unpack_from(buf, _HEADER_BODY.size)
    # CRC first: a torn header is far more likely than a foreign file, and "crc mismatch" is the
    # more useful word for it.
    if zlib.crc32(memoryview(buf)[: _HEADER_BODY.size]) != crc:
        raise FrameError(FrameKind.CRC_MISMATCH, 0, "file header crc mismatch")
    found_magic, version, lsn = _HEADER_BODY.unpack_from(buf, 0)
    if found_magic != magic:
        raise FrameError(FrameKind.BAD_MAGIC, 0, f"bad magic {found_magic!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise FrameError(FrameKind.BAD_VERSION, 0,
                         f"format version {version}, this build reads {FORMAT_VERSION}")
    return int(lsn)


def record_crc(length: int, lsn: int, rtype: int, payload: Buffer) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(length, lsn, rtype)))


def encode_record(lsn: int, rtype: int, payload: Buffer) -> bytes:
    length = len(payload)
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"record of {length} bytes exceeds MAX_RECORD_BYTES ({MAX_RECORD_BYTES})")
    crc = record_crc(length, lsn, rtype, payload)
    return RECORD_HEAD.pack(length, crc, lsn, rtype) + payload


def decode_record(buf: Buffer, offset: int) -> Record:
    """Decode the record whose frame starts at ``offset``; raise :class:`FrameError` if damaged."""
    view = memoryview(buf)
    left = len(view) - offset
    if left < RECORD_OVERHEAD:
        raise FrameError(FrameKind.TRUNCATED_HEADER, offset,
                         f"truncated record header ({left} of {RECORD_OVERHEAD} bytes)")
    length, crc, lsn, rtype = RECORD_HEAD.unpack_from(view, offset)
    if length > MAX_RECORD_BYTES:
        raise FrameError(FrameKind.LENGTH_TOO_LARGE, offset,
                         f"record length {length} exceeds the maximum {MAX_RECORD_BYTES}")
    end = offset + RECORD_OVERHEAD + length
    if end > len(view):
        raise FrameError(FrameKind.LENGTH_PAST_END, offset,
                         f"record length {length} runs past the end of the file "
                         f"({left - RECORD_OVERHEAD} payload bytes left)")
    # length sits before the stored crc, lsn/type/payload after it and contiguous: two crc calls.
    actual = zlib.crc32(view[offset + 8 : end], zlib.crc32(view[offset : offset + 4]))
    if actual != crc:
        raise FrameError(FrameKind.CRC_MISMATCH, offset,
                         f"record crc mismatch (stored {crc:#010x}, computed {actual:#010x})")
    return Record(offset, lsn, rtype, bytes(view[offset + RECORD_OVERHEAD : end]))


class RecordReader:
    """Walk the records of a buffer from ``offset`` until its end or the first damaged frame.

    Iterate it for :class:`Record` tuples ``(offset, lsn, rtype, payload)``. Afterwards ``end`` is
    the offset just past the last good record and ``damage`` is ``None`` if the buffer ended
    cleanly there, or the :class:`FrameError` describing the first problem (its ``offset`` equals
    ``end``). LSN order is not checked here; that is recovery's business.
    """

    def __init__(self, buf: Buffer, offset: int = HEADER_SIZE) -> None:
        self._buf = buf
        self.end = offset
        self.damage: FrameError | None = None

    def __iter__(self) -> Iterator[Record]:
        size = len(self._buf)
        while self.end < size:
            try:
                record = decode_record(self._buf, self.end)
            except FrameError as exc:
                self.damage = exc
                return
            self.end += RECORD_OVERHEAD + len(record.payload)
            yield record


def find_valid_record_after(buf: Buffer, offset: int, min_lsn: int) -> int | None:
    """Offset of the first intact frame at or after ``offset`` whose lsn is > ``min_lsn``.

    Recovery's test for "torn tail or corruption": a crash while appending leaves garbage or zeros
    after the last good record but never a *later* intact record. This scans byte by byte (a
    damaged length field tells us nothing about where the next frame starts) and is only run on
    damage, so its Python-speed cost (about 1 s per few MB) is paid in the rare case only. Cheap
    integer checks reject almost every position before any CRC is computed.
    """
    view = memoryview(buf)
    size = len(view)
    unpack = RECORD_HEAD.unpack_from
    for pos in range(offset, size - RECORD_OVERHEAD + 1):
        length, crc, lsn, _rtype = unpack(view, pos)
        if lsn <= min_lsn or length > MAX_RECORD_BYTES or pos + RECORD_OVERHEAD + length > size:
            continue
        end = pos + RECORD_OVERHEAD + length
        if zlib.crc32(view[pos + 8 : end], zlib.crc32(view[pos : pos + 4])) == crc:
            return pos
    return None
