"""Property: whatever damage a log suffers, recovery either refuses with CorruptLogError or
returns a prefix of what was written, and truncate mode always returns a prefix that a strict
restart then accepts unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wal.helpers import obj, run_recover, write_segment
from wal import CorruptLogError, list_segments


@st.composite
def damaged_logs(draw: st.DrawFn) -> tuple[list[int], int, str, int, bytes]:
    sizes = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    segment = draw(st.integers(0, len(sizes) - 1))
    how = draw(st.sampled_from(["truncate", "overwrite", "flip"]))
    position = draw(st.integers(0, 10_000))
    data = draw(st.binary(min_size=1, max_size=600))
    return sizes, segment, how, position, data


def build(data_dir: Path, sizes: list[int]) -> list[Path]:
    lsn = 1
    paths = []
    for size in sizes:
        paths.append(write_segment(data_dir, lsn, [obj(i, i % 7 * 9) for i in
                                                   range(lsn, lsn + size)]).path)
        lsn += size
    return paths


def damage(path: Path, how: str, position: int, data: bytes) -> None:
    buf = bytearray(path.read_bytes())
    at = position % (len(buf) + 1)
    if how == "truncate":
        del buf[at:]
    elif how == "overwrite":
        buf[at : at + len(data)] = data[: max(0, len(buf) - at)]
    elif buf:
        buf[at % len(buf)] ^= 1 << (data[0] % 8)
    path.write_bytes(bytes(buf))


def assert_prefix(records: list[tuple[int, object]]) -> None:
    assert records == [(i, obj(i, i % 7 * 9)) for i in range(1, len(records) + 1)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_logs())
def test_recovery_returns_a_prefix_or_refuses(case: tuple[list[int], int, str, int, bytes]) -> None:
    sizes, segment, how, position, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        strict_dir, repair_dir = root / "strict", root / "repair"
        for directory in (strict_dir, repair_dir):
            damage(build(directory, sizes)[segment], how, position, data)
        try:
            assert_prefix(run_recover(strict_dir).records)
        except CorruptLogError as exc:
            assert exc.path in {str(s.path) for s in list_segments(strict_dir)}
        repaired = run_recover(repair_dir, mode="truncate").records
        assert_prefix(repaired)
        assert run_recover(repair_dir).records == repaired
