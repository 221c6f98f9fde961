"""Recovery against hand-built damaged logs (after LevelDB's and etcd's corruption suites).

Every test writes real files under tmp_path and runs the real recover(), fsyncs included.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Literal

import pytest

from server.state import State
from tests.wal.helpers import (
    broken_files,
    fresh_copy,
    obj,
    patch,
    run_recover,
    running,
    write_segment,
)
from wal import CorruptLogError, list_segments, pack, recover
from wal.framing import HEADER_SIZE, encode_header, encode_record
from wal.layout import segment_path

SECTOR = 512


def test_empty_dir_creates_layout(tmp_path: Path) -> None:
    data = tmp_path / "data"
    got = run_recover(data)
    assert (data / "wal").is_dir() and (data / "snap").is_dir()
    r = got.report
    assert (r.snapshot_lsn, r.last_lsn, r.records_replayed, r.torn_tail, r.segments) == (
        0, 0, 0, None, 0)
    assert r.messages == [] and r.elapsed_s >= 0


def test_leftover_tmp_files_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    (tmp_path / "snap").mkdir()
    (tmp_path / "wal" / "00000000000000000001.wal.tmp").write_bytes(b"junk")
    (tmp_path / "snap" / "00000000000000000009.snap.tmp").write_bytes(b"junk")
    got = run_recover(tmp_path)
    assert not list(tmp_path.glob("*/*.tmp"))
    assert len(got.report.messages) == 2 and got.logged == got.report.messages


def test_clean_multi_segment_log(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(i) for i in range(1, 4)])
    write_segment(tmp_path, 4, [obj(i) for i in range(4, 6)])
    got = run_recover(tmp_path)
    assert got.records == [(i, obj(i)) for i in range(1, 6)]
    assert (got.report.last_lsn, got.report.segments, got.report.torn_tail) == (5, 2, None)


def test_truncation_at_every_offset_keeps_exactly_the_complete_records(tmp_path: Path) -> None:
    """LevelDB's truncated-tail test: cut the last segment at every byte, recover what is whole."""
    src = tmp_path / "src"
    write_segment(src, 1, [obj(1), obj(2)])
    built = write_segment(src, 3, [obj(3), obj(4, 30), obj(5, 40)])
    original = built.data
    for cut in range(len(original)):
        data = fresh_copy(src, tmp_path / "work")
        seg = segment_path(data, 3)
        seg.write_bytes(original[:cut])
        got = run_recover(data)
        whole = [3 + i for i, end in enumerate(built.ends) if end <= cut]
        assert got.lsns == [1, 2, *whole], cut
        assert got.report.last_lsn == (whole[-1] if whole else 2)
        if cut < HEADER_SIZE:
            # A torn header: the file never held a record and is removed (copy kept if not empty).
            assert not seg.exists()
            assert got.report.torn_tail == (cut or None)
            assert broken_files(data) == ({f"{seg.name}.torn-0": original[:cut]} if cut else {})
            continue
        good_end = built.ends[len(whole) - 1] if whole else HEADER_SIZE
        assert seg.read_bytes() == original[:good_end], cut
        if good_end == cut:
            assert got.report.torn_tail is None and broken_files(data) == {}
        else:
            assert got.report.torn_tail == cut - good_end
            assert broken_files(data) == {f"{seg.name}.torn-{good_end}": original[good_end:cut]}
            assert any("torn tail" in m for m in got.report.messages)
        # Idempotent: a second start finds a clean log.
        again = run_recover(data)
        assert again.lsns == got.lsns and again.report.torn_tail is None


def big_records(data_dir: Path, count: int) -> tuple[list[int], list[int], Path]:
    """Records of ~1.2 KB, so a 512-byte sector lies wholly inside each of them."""
    built = write_segment(data_dir, 1, [obj(i, 1200) for i in range(1, count + 1)])
    return built.offsets, built.ends, built.path


def sector_inside(start: int, end: int) -> int:
    offset = (start // SECTOR + 1) * SECTOR
    assert offset + SECTOR <= end
    return offset


def test_zeroed_sector_in_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    offsets, ends, seg = big_records(tmp_path, 4)
    patch(seg, sector_inside(offsets[-1], ends[-1]), bytes(SECTOR))
    got = run_recover(tmp_path)
    assert got.lsns == [1, 2, 3]
    assert got.report.torn_tail == ends[-1] - offsets[-1]
    assert seg.stat().st_size == offsets[-1]
    assert f"{seg.name}.torn-{offsets[-1]}" in broken_files(tmp_path)


def test_zeroed_sector_in_middle_record_is_refused(tmp_path: Path) -> None:
    offsets, ends, seg = big_records(tmp_path, 4)
    write_segment(tmp_path, 5, [obj(5), obj(6)])
    original = seg.read_bytes()
    patch(seg, sector_inside(offsets[1], ends[1]), bytes(SECTOR))
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    err = info.value
    assert (err.path, err.offset) == (str(seg), offsets[1])
    assert str(seg) in str(err) and f"offset {offsets[1]}" in str(err)
    assert "1 later segment(s) follow" in err.reason
    # Strict mode touched nothing.
    assert seg.read_bytes()[: offsets[1]] == original[: offsets[1]]
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1, 5]
    assert broken_files(tmp_path) == {}


def test_truncate_mode_recovers_the_prefix_and_keeps_copies(tmp_path: Path) -> None:
    offsets, ends, seg = big_records(tmp_path, 4)
    later = write_segment(tmp_path, 5, [obj(5), obj(6)])
    patch(seg, sector_inside(offsets[1], ends[1]), bytes(SECTOR))
    damaged = seg.read_bytes()
    got = run_recover(tmp_path, mode="truncate")
    assert got.lsns == [1]
    assert got.report.last_lsn == 1
    assert seg.stat().st_size == offsets[1]
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1]
    kept = broken_files(tmp_path)
    assert kept == {f"{seg.name}.corrupt-{offsets[1]}": damaged[offsets[1]:],
                    f"{later.path.name}.dropped": later.data}
    assert any("CORRUPTION" in m for m in got.logged)
    # The repaired log is now clean in strict mode.
    assert run_recover(tmp_path).lsns == [1]


@pytest.mark.parametrize("where", ["length", "crc", "lsn", "type", "payload"])
def test_flipped_bit_in_middle_record_is_refused(tmp_path: Path, where: str) -> None:
    built = write_segment(tmp_path, 1, [obj(i, 20) for i in range(1, 6)])
    start = built.offsets[2]
    position = start + {"length": 1, "crc": 5, "lsn": 8, "type": 16, "payload": 25}[where]
    data = bytearray(built.data)
    data[position] ^= 0x10
    built.path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    assert info.value.offset == start
    got = run_recover(tmp_path, mode="truncate")
    assert got.lsns == [1, 2]


def test_length_field_larger_than_file(tmp_path: Path) -> None:
    built = write_segment(tmp_path, 1, [obj(i) for i in range(1, 5)])
    # In the last record: nothing intact can follow, so it is a torn tail.
    patch(built.path, built.offsets[3], struct.pack("<I", 10_000))
    got = run_recover(tmp_path)
    assert got.lsns == [1, 2, 3] and got.report.torn_tail == built.ends[3] - built.offsets[3]
    # In a middle record: the records after it are intact, so it is corruption.
    built = write_segment(tmp_path, 1, [obj(i) for i in range(1, 5)])
    patch(built.path, built.offsets[1], struct.pack("<I", 10_000))
    with pytest.raises(CorruptLogError, match="runs past the end of the file") as info:
        run_recover(tmp_path)
    assert info.value.offset == built.offsets[1]


def test_damage_in_non_last_segment_is_fatal_even_at_its_tail(tmp_path: Path) -> None:
    first = write_segment(tmp_path, 1, [obj(1), obj(2)])
    write_segment(tmp_path, 3, [obj(3)])
    first.path.write_bytes(first.data[:-3])  # looks torn, but a later segment exists
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    assert (info.value.path, info.value.offset) == (str(first.path), first.offsets[1])


def test_lsn_gap_between_segments(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1), obj(2)])
    gap = write_segment(tmp_path, 4, [obj(4)])
    with pytest.raises(CorruptLogError, match=r"lsn gap: records 3\.\.3 are missing") as info:
        run_recover(tmp_path)
    assert info.value.path == str(gap.path) and info.value.offset == 0
    got = run_recover(tmp_path, mode="truncate")
    assert got.lsns == [1, 2]
    assert list(broken_files(tmp_path)) == [f"{gap.path.name}.corrupt-0"]


def test_log_not_starting_at_one_without_snapshot_is_a_gap(tmp_path: Path) -> None:
    write_segment(tmp_path, 5, [obj(5)])
    with pytest.raises(CorruptLogError, match=r"records 1\.\.4 are missing"):
        run_recover(tmp_path)


def test_duplicate_lsn_inside_a_segment(tmp_path: Path) -> None:
    built = write_segment(tmp_path, 1, [obj(1), obj(2), obj(2), obj(3)], lsns=[1, 2, 2, 3])
    with pytest.raises(CorruptLogError, match="duplicate lsn") as info:
        run_recover(tmp_path)
    assert info.value.offset == built.offsets[2]


def test_duplicate_lsn_as_last_record_is_not_mistaken_for_a_torn_tail(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1), obj(2), obj(2)], lsns=[1, 2, 2])
    with pytest.raises(CorruptLogError, match="duplicate lsn"):
        run_recover(tmp_path)
    assert run_recover(tmp_path, mode="truncate").lsns == [1, 2]


def test_overlapping_segments_are_a_duplicate(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1), obj(2), obj(3)])
    write_segment(tmp_path, 3, [obj(3), obj(4)])
    with pytest.raises(CorruptLogError, match="duplicate lsn"):
        run_recover(tmp_path)
    assert run_recover(tmp_path, mode="truncate").lsns == [1, 2, 3]


def test_header_lsn_must_match_file_name(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1)])
    built = write_segment(tmp_path, 2, [obj(2)])
    built.path.rename(segment_path(tmp_path, 3))
    write_segment(tmp_path, 2, [obj(2)])
    with pytest.raises(CorruptLogError, match="file name says 3"):
        run_recover(tmp_path)
    got = run_recover(tmp_path, mode="truncate")
    assert got.lsns == [1, 2] and list(broken_files(tmp_path)) == [
        "00000000000000000003.wal.corrupt-0"]


def test_unknown_record_type_is_refused(tmp_path: Path) -> None:
    seg = segment_path(tmp_path, 1)
    seg.parent.mkdir(parents=True)
    seg.write_bytes(encode_header(1) + encode_record(1, 1, pack("a")) + encode_record(2, 99, b""))
    with pytest.raises(CorruptLogError, match="unknown record type 99"):
        run_recover(tmp_path)


def test_header_only_and_empty_segments_are_fine(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1), obj(2)])
    write_segment(tmp_path, 3, [])  # a writer that started and stopped without records
    got = run_recover(tmp_path)
    assert got.lsns == [1, 2] and got.report.last_lsn == 2 and got.report.torn_tail is None
    # An empty (0-byte) file holds nothing: removed wherever it is.
    segment_path(tmp_path, 3).write_bytes(b"")
    got = run_recover(tmp_path)
    assert got.lsns == [1, 2] and not segment_path(tmp_path, 3).exists()
    # Only a header-only segment: an empty log that continues at its first LSN.
    other = tmp_path / "other"
    write_segment(other, 1, [])
    assert run_recover(other).report.last_lsn == 0


def test_torn_header_in_middle_segment_is_fatal(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, [obj(1)])
    mid = write_segment(tmp_path, 2, [obj(2)])
    write_segment(tmp_path, 3, [obj(3)])
    mid.path.write_bytes(mid.data[:10])
    with pytest.raises(CorruptLogError, match="segment header"):
        run_recover(tmp_path)


def test_garbage_header_with_records_after_is_corruption(tmp_path: Path) -> None:
    built = write_segment(tmp_path, 1, [obj(1), obj(2)])
    patch(built.path, 0, bytes(HEADER_SIZE))
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    assert info.value.offset == 0
    got = run_recover(tmp_path, mode="truncate")
    assert got.lsns == [] and list(broken_files(tmp_path)) == [f"{built.path.name}.corrupt-0"]


def test_undecodable_payload_with_valid_crc_is_corruption(tmp_path: Path) -> None:
    seg = segment_path(tmp_path, 1)
    seg.parent.mkdir(parents=True)
    seg.write_bytes(encode_header(1) + encode_record(1, 1, b"\xc1"))  # 0xc1: never used
    with pytest.raises(CorruptLogError, match="does not decode"):
        run_recover(tmp_path)


def test_invalid_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        run_recover(tmp_path, mode="lenient")  # type: ignore[arg-type]


def test_damage_followed_by_intact_record_in_last_segment_is_refused(tmp_path: Path) -> None:
    offsets, ends, seg = big_records(tmp_path, 4)
    patch(seg, sector_inside(offsets[2], ends[2]), bytes(SECTOR))
    with pytest.raises(CorruptLogError) as info:
        run_recover(tmp_path)
    assert info.value.offset == offsets[2]
    assert f"an intact record (lsn > 2) follows at {offsets[3]}" in info.value.reason


def _batches(count: int) -> list[object]:
    """Real state-engine batches, so 'the prefix' is checked as state, not only as LSNs."""
    out: list[object] = [[1000, [["ch_put", "g", 2, {"large": 1}]]]]
    out += [[1000 + i, [["wl_add", "g", 2, [f"u{i}"]], ["sub_add", "g", 2, [f"s{i}"]]]]
            for i in range(1, count)]
    return out


def _state_of(batches: list[object]) -> dict[str, object]:
    state = State()
    for batch in batches:
        state.apply(batch)  # type: ignore[arg-type]
    return state.as_plain()


def _recovered_state(data_dir: Path, mode: Literal["strict", "truncate"]) -> dict[str, object]:
    state = State()
    recover(data_dir, mode=mode, load_snapshot_chunk=state.load_chunk,
            apply_record=lambda lsn, batch: state.apply(batch),  # type: ignore[arg-type]
            log=lambda _: None)
    return state.as_plain()


def test_every_single_bit_flip_in_a_middle_record_is_refused_then_repaired(
        tmp_path: Path) -> None:
    """All 8 x len bits of record 3 of 5: a strict start refuses, naming the segment and the
    record's offset, and leaves the file alone; repair (truncate mode) recovers exactly the state
    of records 1-2."""
    batches = _batches(5)
    built = write_segment(tmp_path, 1, batches)
    start, end = built.offsets[2], built.ends[2]
    prefix = _state_of(batches[:2])
    data, seg = tmp_path, built.path
    flipped = 0
    for position in range(start, end):
        for bit in range(8):
            shutil.rmtree(data / "wal" / "broken", ignore_errors=True)
            damaged = bytearray(built.data)
            damaged[position] ^= 1 << bit
            seg.write_bytes(bytes(damaged))
            with pytest.raises(CorruptLogError) as info:
                _recovered_state(data, "strict")
            assert (info.value.path, info.value.offset) == (str(seg), start), (position, bit)
            assert f"{seg} at offset {start}" in str(info.value)
            assert seg.read_bytes() == damaged  # strict touched nothing
            assert _recovered_state(data, "truncate") == prefix, (position, bit)
            assert seg.stat().st_size == start
            flipped += 1
    assert flipped == 8 * (end - start)


async def test_appending_after_a_corruption_repair_reads_back_cleanly(tmp_path: Path) -> None:
    batches = _batches(6)
    built = write_segment(tmp_path, 1, batches)
    patch(built.path, built.offsets[3] + 20, b"\xee")
    with pytest.raises(CorruptLogError):
        run_recover(tmp_path)
    report = run_recover(tmp_path, mode="truncate").report
    assert report.last_lsn == 3
    more = [[2000 + i, [["bl_add", "g", 2, [f"b{i}"]]]] for i in range(3)]
    async with running(tmp_path, next_lsn=report.last_lsn + 1) as log:
        for batch in more:
            await log.wait_durable(log.submit(batch))
    assert [s.first_lsn for s in list_segments(tmp_path)] == [1, 4]  # never appended to it
    got = run_recover(tmp_path)
    assert got.lsns == [1, 2, 3, 4, 5, 6] and got.report.torn_tail is None
    assert _recovered_state(tmp_path, "strict") == _state_of(batches[:3] + more)
