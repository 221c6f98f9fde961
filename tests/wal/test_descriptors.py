"""The log under descriptor exhaustion: a child process lowers RLIMIT_NOFILE to 64 and takes every
free slot with dup() (tests/wal/fd_child.py), then writes through many rotations. A rotation needs
no new descriptor (the spare segment was opened ahead of time), and when even the spare is gone the
rotation waits instead of failing the log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.wal.helpers import obj, run_recover, running
from wal import list_segments
from wal.layout import spare_segment_path
from wal.tools import inspect

ROOT = Path(__file__).resolve().parents[2]


def run_fd_child(data: Path, mode: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "tests.wal.fd_child", str(data), mode],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    seen["stderr"] = proc.stderr
    return seen


def assert_clean(data: Path) -> None:
    """What ``roster wal verify`` would say, and recovery found nothing to repair."""
    assert inspect(data).exit_code == 0


def assert_all_records(data: Path) -> None:
    assert_clean(data)
    got = run_recover(data)
    assert got.report.torn_tail is None
    assert got.records == [(i, ["set", f"k{i}", i]) for i in range(1, 101)]


def test_rotations_with_a_full_descriptor_table_keep_acknowledging(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = run_fd_child(data, "plain")
    assert seen["acked"] == 100 and seen["held"] > 0
    assert seen["full_throughout"]  # not one free slot while the records were written
    assert seen["most_postponed"] == 0  # every rotation found its spare ready
    # The snapshot could not open its file: it failed alone, and the log went on; once slots
    # were free again, the next one was written.
    assert seen["snapshot_errno"] == "EMFILE" and seen["snapshot_lsn"] == 100
    assert seen["segments"] >= 5
    assert not spare_segment_path(data).exists()  # a clean close removes the spare
    got = run_recover(data)
    assert got.report.snapshot_lsn == 100 and got.records == []


def test_rotation_without_spare_or_descriptor_waits_then_happens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = run_fd_child(data, "steal")
    assert seen["acked"] == 100
    assert seen["most_postponed"] > 0
    # One warning when the rotations start waiting, one when a rotation gets through.
    assert seen["stderr"].count("rotation postponed") == 1
    assert seen["stderr"].count("rotation done after") == 1
    segments = list_segments(data)
    # Records 1..60 went on into the first segment while no rotation could happen.
    assert segments[0].first_lsn == 1 and segments[1].first_lsn == 61
    assert len(segments) >= 3
    assert_all_records(data)


@pytest.mark.parametrize("leftover", [b"", b"not a header at all", b"\x00" * 4096])
async def test_a_leftover_spare_is_ignored_by_recovery_and_reused(
    tmp_path: Path, leftover: bytes
) -> None:
    async with running(tmp_path, segment_bytes=600) as log:
        for i in range(1, 21):
            await log.wait_durable(log.submit(obj(i)))
    spare = spare_segment_path(tmp_path)
    spare.write_bytes(leftover)
    assert_clean(tmp_path)
    first = run_recover(tmp_path)
    assert first.report.torn_tail is None and first.report.last_lsn == 20
    assert spare.read_bytes() == leftover  # recovery never reads or changes it
    async with running(tmp_path, next_lsn=21, segment_bytes=600) as log:
        assert spare.stat().st_size == 0  # truncated and held open as the next spare
        for i in range(21, 41):
            await log.wait_durable(log.submit(obj(i)))
    assert_clean(tmp_path)
    got = run_recover(tmp_path)
    assert got.records == [(i, obj(i)) for i in range(1, 41)]
