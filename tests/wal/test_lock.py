"""DataDirLock: one process per data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wal import DataDirLock, LockedError

ROOT = Path(__file__).resolve().parents[2]


def test_second_lock_in_process_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DataDirLock(data)
    first.acquire()  # creates the directory
    assert first.held and (data / "LOCK").exists()
    # flock belongs to the open file description, so a second open conflicts in-process too.
    with pytest.raises(LockedError) as info:
        DataDirLock(data).acquire()
    assert str(data) in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    with pytest.raises(RuntimeError):
        first.acquire()
    first.release()
    first.release()  # idempotent
    with DataDirLock(data) as again:
        assert again.held
    assert not again.held


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from wal import DataDirLock; "
            "DataDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); "
            "sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline() == "locked\n"
        with pytest.raises(LockedError, match=f"pid {child.pid}"):
            DataDirLock(tmp_path).acquire()
        child.stdin.close()  # the child exits without releasing: the kernel drops the lock
        child.wait(timeout=30)
    with DataDirLock(tmp_path):
        pass
