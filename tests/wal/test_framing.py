"""Framing: round trips and every way a header or record can fail to decode (pure, sync)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wal.errors import FrameError, FrameKind
from wal.framing import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAX_RECORD_BYTES,
    RECORD_OVERHEAD,
    RT_OPS,
    SEGMENT_MAGIC,
    SNAPSHOT_MAGIC,
    RecordReader,
    decode_header,
    decode_record,
    encode_header,
    encode_record,
    find_valid_record_after,
)


def header_with(magic: bytes, version: int, lsn: int) -> bytes:
    body = struct.pack("<8sIQ", magic, version, lsn)
    return body + struct.pack("<I", zlib.crc32(body))


def test_header_layout_and_round_trip() -> None:
    header = encode_header(42)
    assert len(header) == HEADER_SIZE == 24
    assert header[:8] == b"RSTRWAL\x00"
    assert struct.unpack_from("<IQ", header, 8) == (FORMAT_VERSION, 42)
    assert decode_header(header) == 42
    assert decode_header(encode_header(7, SNAPSHOT_MAGIC), SNAPSHOT_MAGIC) == 7


@pytest.mark.parametrize(
    ("buf", "kind", "words"),
    [
        (encode_header(1)[:23], FrameKind.TRUNCATED_HEADER, "23 of 24 bytes"),
        (b"", FrameKind.TRUNCATED_HEADER, "0 of 24 bytes"),
        (b"\x00" * 24, FrameKind.CRC_MISMATCH, "crc mismatch"),
        (encode_header(1)[:-1] + b"\x00", FrameKind.CRC_MISMATCH, "crc mismatch"),
        (header_with(b"NOTAWAL\x00", FORMAT_VERSION, 1), FrameKind.BAD_MAGIC, "bad magic"),
        (encode_header(1, SNAPSHOT_MAGIC), FrameKind.BAD_MAGIC, "bad magic"),
        (header_with(SEGMENT_MAGIC, FORMAT_VERSION + 1, 1), FrameKind.BAD_VERSION,
         "format version 2"),
    ],
    ids=["short", "empty", "zeros", "crc", "magic", "snapshot-magic", "version"],
)
def test_header_errors(buf: bytes, kind: FrameKind, words: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_header(buf)
    assert info.value.kind is kind
    assert info.value.offset == 0
    assert words in str(info.value)


def test_record_layout() -> None:
    frame = encode_record(5, RT_OPS, b"abc")
    length, crc, lsn, rtype = struct.unpack_from("<IIQB", frame)
    assert (length, lsn, rtype, frame[RECORD_OVERHEAD:]) == (3, 5, RT_OPS, b"abc")
    # The CRC covers length, lsn, type and payload.
    assert crc == zlib.crc32(b"abc", zlib.crc32(struct.pack("<IQB", 3, 5, RT_OPS)))


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 255), st.binary(max_size=64)),
                max_size=20))
def test_records_round_trip(records: list[tuple[int, int, bytes]]) -> None:
    buf = encode_header(1) + b"".join(encode_record(*r) for r in records)
    reader = RecordReader(buf)
    decoded = [(lsn, rtype, payload) for _, lsn, rtype, payload in reader]
    assert decoded == records
    assert reader.damage is None and reader.end == len(buf)


def test_empty_payload_and_offsets() -> None:
    buf = encode_header(1) + encode_record(1, RT_OPS, b"") + encode_record(2, RT_OPS, b"z")
    records = list(RecordReader(buf))
    assert [r.offset for r in records] == [HEADER_SIZE, HEADER_SIZE + RECORD_OVERHEAD]
    assert records[0].payload == b"" and records[1].payload == b"z"


def good_pair() -> bytes:
    return encode_record(1, RT_OPS, b"first") + encode_record(2, RT_OPS, b"second")


def test_truncated_record_header() -> None:
    buf = good_pair()
    cut = buf[: len(encode_record(1, RT_OPS, b"first")) + 10]
    with pytest.raises(FrameError) as info:
        decode_record(cut, 22)
    assert info.value.kind is FrameKind.TRUNCATED_HEADER and info.value.offset == 22
    assert "10 of 17" in info.value.reason


def test_length_beyond_end() -> None:
    buf = bytearray(good_pair())
    struct.pack_into("<I", buf, 0, 1000)
    with pytest.raises(FrameError) as info:
        decode_record(buf, 0)
    assert info.value.kind is FrameKind.LENGTH_PAST_END and info.value.offset == 0
    assert "1000" in str(info.value)


def test_length_above_maximum_is_rejected_before_reading() -> None:
    buf = bytearray(good_pair())
    struct.pack_into("<I", buf, 0, MAX_RECORD_BYTES + 1)
    with pytest.raises(FrameError) as info:
        decode_record(buf, 0)
    assert info.value.kind is FrameKind.LENGTH_TOO_LARGE


@pytest.mark.parametrize("position", [0, 4, 8, 16, RECORD_OVERHEAD + 2])
def test_any_flipped_bit_is_a_crc_mismatch(position: int) -> None:
    buf = bytearray(encode_record(9, RT_OPS, b"payload"))
    buf[position] ^= 0x01
    with pytest.raises(FrameError) as info:
        decode_record(buf, 0)
    assert info.value.kind is FrameKind.CRC_MISMATCH


def test_encode_refuses_oversized_payload() -> None:
    with pytest.raises(ValueError, match="MAX_RECORD_BYTES"):
        encode_record(1, RT_OPS, bytes(MAX_RECORD_BYTES + 1))


def test_reader_stops_at_first_damage_with_its_offset() -> None:
    a = encode_record(1, RT_OPS, b"a" * 5)
    b = bytearray(encode_record(2, RT_OPS, b"b" * 5))
    b[-1] ^= 0xFF
    c = encode_record(3, RT_OPS, b"c" * 5)
    buf = encode_header(1) + a + bytes(b) + c
    reader = RecordReader(buf)
    assert [r.lsn for r in reader] == [1]
    assert reader.end == HEADER_SIZE + len(a)
    assert reader.damage is not None
    assert reader.damage.offset == reader.end
    assert reader.damage.kind is FrameKind.CRC_MISMATCH


def test_find_valid_record_after() -> None:
    a = encode_record(1, RT_OPS, b"a")
    c = encode_record(3, RT_OPS, b"c")
    buf = a + b"\x00" * 40 + c
    assert find_valid_record_after(buf, 0, 0) == 0
    assert find_valid_record_after(buf, 1, 0) == len(a) + 40
    # Only records *after* the last good LSN count: an old one is not evidence of corruption.
    assert find_valid_record_after(buf, 1, 3) is None
    assert find_valid_record_after(b"\x00" * 100, 0, 0) is None
    assert find_valid_record_after(b"", 0, 0) is None
