"""DataDirLock: one process per data directory, and a data directory that can be used."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wal import DataDirLock, LockedError
from wal.errors import DataDirError
from wal.tools import lock_holder

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


def test_deleting_the_lock_file_does_not_unlock(tmp_path: Path) -> None:
    """The flock is on the directory: removing LOCK (by hand, or a cleanup script) must not let
    a second process in, and the tools still see the holder."""
    with DataDirLock(tmp_path):
        (tmp_path / "LOCK").unlink()
        with pytest.raises(LockedError) as info:
            DataDirLock(tmp_path).acquire()
        assert info.value.holder == "unknown" and info.value.path == str(tmp_path)
        assert lock_holder(tmp_path) == "unknown"
        assert not (tmp_path / "LOCK").exists()  # the failed attempt wrote nothing
    assert lock_holder(tmp_path) is None
    with DataDirLock(tmp_path):
        assert (tmp_path / "LOCK").read_text() == f"{os.getpid()}\n"
        assert lock_holder(tmp_path) == str(os.getpid())


def test_missing_parents_are_created(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"
    with DataDirLock(data):
        assert data.is_dir()
    assert [p.name for p in data.iterdir()] == ["LOCK"]  # the write probe left nothing behind


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(DataDirError) as info:
        DataDirLock(tmp_path / "data").acquire()
    assert info.value.path == str(tmp_path / "data")
    assert info.value.reason == "not a directory (a file is in the way)"


def test_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    data = tmp_path / "file" / "sub" / "data"
    with pytest.raises(DataDirError) as info:
        DataDirLock(data).acquire()
    assert info.value.path == str(data)
    assert info.value.reason == f"a parent, {tmp_path / 'file'}, is a file, not a directory"
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits; "
                    "tests/e2e/test_startup.py covers a read-only mount")
def test_directory_without_write_permission(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        with pytest.raises(DataDirError) as info:
            DataDirLock(data).acquire()
        assert info.value.reason.startswith("not writable (")
    finally:
        data.chmod(0o755)
    with DataDirLock(data):
        pass


def test_write_probe_falls_back_without_o_tmpfile(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """File systems without O_TMPFILE (EOPNOTSUPP) get a named probe file, removed again."""
    real_open = os.open
    refused: list[int] = []

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(flags)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    with DataDirLock(tmp_path / "data"):
        pass
    assert refused
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["LOCK"]
