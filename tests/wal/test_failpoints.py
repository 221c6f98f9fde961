"""Named failpoints: a child process dies with os._exit(77) at each point, then recovery holds
every record the child saw acknowledged, and nothing that was never submitted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wal import failpoint, list_snapshots, recover
from wal.failpoints import ENV_VAR, EXIT_CODE

ROOT = Path(__file__).resolve().parents[2]


def run_child(data: Path, point: str, after: int) -> tuple[subprocess.CompletedProcess[str],
                                                           list[int]]:
    env = {**os.environ, ENV_VAR: point if after == 0 else ""}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.wal.crash_child", str(data), point, str(after)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    acked = [int(line) for line in proc.stdout.splitlines() if line.isdigit()]
    return proc, acked


def restore(data: Path) -> tuple[dict[str, Any], Any]:
    state: dict[str, Any] = {}

    def load(chunk: object) -> None:
        assert isinstance(chunk, list)
        state.update((k, v) for k, v in chunk)

    def apply(lsn: int, op: object) -> None:
        assert isinstance(op, list)
        state[op[1]] = op[2]

    report = recover(data, mode="strict", load_snapshot_chunk=load, apply_record=apply,
                     log=lambda _: None)
    return state, report


@pytest.mark.parametrize(
    ("point", "after", "acked_count"),
    [
        ("before_write", 0, 0),  # armed through the environment from the start
        ("before_write", 7, 7),
        ("after_write_before_fsync", 7, 7),
        # Armed after 15 records; the child dies in the snapshot it takes after record 20.
        ("snap_before_rename", 15, 20),
        ("snap_after_rename_before_dirsync", 15, 20),
        ("before_segment_delete", 15, 20),
    ],
)
def test_crash_at_failpoint_then_recover(
    tmp_path: Path, point: str, after: int, acked_count: int
) -> None:
    data = tmp_path / "data"
    proc, acked = run_child(data, point, after)
    assert proc.returncode == EXIT_CODE, proc.stderr
    assert f"failpoint {point} hit" in proc.stderr
    assert acked == list(range(1, acked_count + 1))
    state, report = restore(data)
    # Every acknowledged record is there; at most the one in-flight record beyond them.
    assert acked_count <= report.last_lsn <= acked_count + 1
    assert state == {f"k{i}": i for i in range(1, report.last_lsn + 1)}
    if point == "snap_before_rename":
        assert report.snapshot_lsn == 10 and not list((data / "snap").glob("*.tmp"))
    if point == "snap_after_rename_before_dirsync":
        assert report.snapshot_lsn == 20  # renamed, and the page cache kept the rename
    if point == "before_segment_delete":
        assert [s.lsn for s in list_snapshots(data)] == [10, 20]


def test_unarmed_failpoint_is_a_no_op() -> None:
    failpoint("no_such_point")
