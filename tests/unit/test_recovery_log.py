"""The progress lines a person sees while a long recovery runs (server/runner.py RecoveryLog)."""

from __future__ import annotations

import logging
import re

import pytest

from server import ops
from server.runner import RecoveryLog
from server.state import State
from wal import RecoveryProgress


def test_snapshot_progress_counts_channels_against_the_snapshot_total(
        caplog: pytest.LogCaptureFixture) -> None:
    source = State()
    source.apply((1, [ops.ch_put(f"g{i}", 2, {}) for i in range(3)]))
    target = State()
    progress = RecoveryLog(every_s=0.0)  # every call is due: one line per chunk
    with caplog.at_level(logging.INFO, logger="roster"):
        for chunk in source.snapshot_chunks():
            target.load_chunk(chunk)
            progress.snapshot_chunk(target, chunk)
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(line.startswith("recovering: snapshot") for line in lines)
    assert "3 of 3 channels loaded (100 %)" in lines[-1]


def test_replay_progress_reports_share_of_the_log_and_rate(
        caplog: pytest.LogCaptureFixture) -> None:
    progress = RecoveryLog(every_s=0.0)
    with caplog.at_level(logging.INFO, logger="roster"):
        progress.log_replay(RecoveryProgress(records=50_000, bytes_read=250, bytes_total=1000,
                                             elapsed_s=0.5))
    line = caplog.records[-1].getMessage()
    assert line.startswith("recovering: log 25 % read, 50000 records replayed (")
    assert re.search(r"\(\d+ records/s\)", line)


def test_quiet_before_the_first_second(caplog: pytest.LogCaptureFixture) -> None:
    progress = RecoveryLog(every_s=3600.0)  # a recovery shorter than that: no lines
    with caplog.at_level(logging.INFO, logger="roster"):
        progress.log_replay(RecoveryProgress(records=1, bytes_read=1, bytes_total=1,
                                             elapsed_s=0.001))
    assert not caplog.records
