"""The kill -9 loop, bounded for CI: at most 5 cycles and 40 s (``python -m tests.crash.killloop``
runs the long version). Every acknowledged write must survive each SIGKILL, and the recovered
state must be a replay of a prefix of what the writers sent (tests/crash/oracle.py explains why)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SEED_ENV, run_seed
from tests.crash.killloop import run_loop

CYCLES = 5
SECONDS = 40.0


def test_kill_minus_nine_loop(tmp_path: Path) -> None:
    seed = run_seed()
    lines: list[str] = []
    result = run_loop(cycles=CYCLES, seconds=SECONDS, writers=4, seed=seed, max_run_s=1.0,
                      data_dir=tmp_path, log=lines.append)
    report = (f"{SEED_ENV}={seed} replays this workload\n" + result.summary(4, seed, 16_384) + "\n"
              + "\n".join(lines))
    assert result.violation is None, report
    assert result.lost == 0, report
    assert 1 <= result.cycles <= CYCLES
    assert result.acked > 0, report
    print(report)
