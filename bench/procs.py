"""The servers the benchmarks load: ``roster serve`` and the bare-ASGI floor on a data dir made
from one template snapshot, each a ``server.spawn.Child`` with its output in a named log file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import trio

from server import spawn
from server.spawn import Child, free_port
from server.state import State
from wal import write_snapshot

__all__ = ["Child", "copy_data_dir", "floor", "free_port", "roster", "roster_command",
           "write_template"]


#: a loaded benchmark host may take minutes to recover a large template
START_TIMEOUT_S = 600.0


def roster_command(data_dir: Path, fsync: str) -> list[str]:
    return spawn.roster_command(data_dir, "--fsync", fsync, "--log-level", "WARNING")


def roster(data_dir: Path, fsync: str, log_path: Path) -> Child:
    return Child(roster_command(data_dir, fsync), name=f"roster (fsync {fsync})",
                 log_path=log_path, timeout=START_TIMEOUT_S)


def floor(data_dir: Path, log_path: Path) -> Child:
    return Child([sys.executable, "-m", "bench.floor", "--data-dir", str(data_dir),
                  "--port", "0"], name="floor", log_path=log_path, timeout=START_TIMEOUT_S)


def write_template(state: State, data_dir: Path) -> dict[str, float]:
    """Make ``data_dir`` a Roster data dir whose snapshot (at lsn 0) holds ``state``; the
    servers of a run each start on a copy of it, so they all recover the same state."""
    info = trio.run(write_snapshot, data_dir, 0, state.snapshot_chunks())
    return {"snapshot_bytes": float(info.bytes), "snapshot_s": info.seconds}


def copy_data_dir(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target
