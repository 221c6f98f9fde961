"""Named failpoints: a child process dies with os._exit(77) at each point, then recovery holds
every record the child saw acknowledged, and nothing that was never submitted."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wal.helpers import obj, run_recover, running
from wal import LogFailedError, WriteAheadLog, failpoint, failpoints, list_snapshots, recover
from wal.failpoints import ENV_VAR, EXIT_CODE
from wal.framing import HEADER_SIZE
from wal.layout import spare_segment_path

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


@pytest.mark.parametrize(("armed", "exits"), [
    ("", False),  # nothing armed
    ("after_write_before_fsync", False),  # another point armed
    ("before_write@2", False),  # this point, for a later hit
    ("before_write", True),  # the control: an armed hit does end the process
])
def test_unarmed_failpoint_is_a_no_op(armed: str, exits: bool) -> None:
    # in a child: a failpoint that fires ends the process it runs in
    code = "from wal import failpoint; failpoint('before_write'); print('survived')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, ENV_VAR: armed}, timeout=60, check=False)
    if exits:
        assert (proc.returncode, proc.stdout) == (EXIT_CODE, ""), proc.stderr
    else:
        assert (proc.returncode, proc.stdout) == (0, "survived\n"), proc.stderr


# -- name@N, parsing, and injected I/O errors ---------------------------------------------------

@pytest.fixture
def arm() -> Iterator[Callable[[str], None]]:
    """Set ROSTER_FAILPOINTS for this process (and re-read it); restored afterwards."""
    saved = os.environ.get(ENV_VAR)

    def set_points(value: str) -> None:
        os.environ[ENV_VAR] = value
        failpoints.reload()

    try:
        yield set_points
    finally:
        if saved is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = saved
        failpoints.reload()


def test_crash_at_the_nth_hit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, ENV_VAR: "before_write@8"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.wal.crash_child", str(data), "before_write", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == EXIT_CODE, proc.stderr
    acked = [int(line) for line in proc.stdout.splitlines() if line.isdigit()]
    assert acked == list(range(1, 8))  # one record per batch: the 8th write never happened
    state, report = restore(data)
    assert report.last_lsn == 7 and state == {f"k{i}": i for i in range(1, 8)}


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", {}),
        (" before_write , ", {"before_write": {1}}),
        ("fsync_eio@3,fsync_eio@5,write_short@2", {"fsync_eio": {3, 5}, "write_short": {2}}),
    ],
)
def test_parse(raw: str, parsed: dict[str, set[int]]) -> None:
    assert failpoints.parse(raw) == parsed


@pytest.mark.parametrize("raw", ["no_such_point", "before_write@0", "before_write@x"])
def test_parse_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=ENV_VAR):
        failpoints.parse(raw)


def test_a_bad_setting_arms_nothing_and_says_so(
    arm: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    arm("before_write,typo_point")
    assert failpoints.armed() == {}
    assert "ignoring ROSTER_FAILPOINTS" in capfd.readouterr().err
    failpoint("before_write")  # not armed: returns


def test_unarmed_io_hooks_are_the_real_functions(arm: Callable[[str], None]) -> None:
    arm("before_write")
    write, sync = failpoints.io_hooks(os.write, os.fsync)
    assert write is os.write and sync is os.fsync
    log = WriteAheadLog(Path("unused"), next_lsn=1)
    assert log._write is os.write


def test_injected_io_errors_fail_the_nth_call(
    arm: Callable[[str], None], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    arm("write_eio@2,write_enospc@3,write_short@4,fsync_eio@1,fsync_enospc@3")
    write, sync = failpoints.io_hooks(os.write, os.fsync)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        assert write(fd, memoryview(b"abcd")) == 4
        with pytest.raises(OSError, match="injected EIO") as eio:
            write(fd, memoryview(b"efgh"))
        assert eio.value.errno == errno.EIO
        with pytest.raises(OSError) as enospc:
            write(fd, memoryview(b"efgh"))
        assert enospc.value.errno == errno.ENOSPC
        assert write(fd, memoryview(b"123456")) == 3  # short: half of it
        assert write(fd, memoryview(b"xy")) == 2
        with pytest.raises(OSError) as sync_eio:
            sync(fd)
        assert sync_eio.value.errno == errno.EIO
        sync(fd)
        with pytest.raises(OSError) as sync_enospc:
            sync(fd)
        assert sync_enospc.value.errno == errno.ENOSPC
        sync(fd)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcd123xy"
    err = capfd.readouterr().err
    assert "injected EIO on write call 2" in err and "injected short write on write call 4" in err
    # A second set of hooks (a second WriteAheadLog) counts from one again.
    write2, _ = failpoints.io_hooks(os.write, os.fsync)
    with pytest.raises(OSError):
        write2(-1, memoryview(b"x"))  # call 1 is not armed: the real os.write fails on fd -1
    with pytest.raises(OSError, match="injected EIO"):
        write2(-1, memoryview(b"x"))


async def test_env_injected_fsync_error_fails_the_log(
    arm: Callable[[str], None], tmp_path: Path
) -> None:
    # fdatasync calls: 1 = the first segment's header, 2 = the first batch, 3 = the second batch.
    arm("fsync_eio@3")
    fatal: list[BaseException] = []
    async with running(tmp_path, on_fatal=fatal.append) as log:
        await log.wait_durable(log.submit(obj(1)))
        with pytest.raises(LogFailedError, match="injected EIO"):
            await log.wait_durable(log.submit(obj(2)))
    assert len(fatal) == 1
    assert run_recover(tmp_path).lsns == [1]


async def test_crash_with_a_spare_segment_present_recovers_cleanly(tmp_path: Path) -> None:
    """The child dies in its first rotation, after the spare got its header and before the rename:
    the spare is a complete-looking segment under a name recovery never reads."""
    data = tmp_path / "data"
    proc, acked = run_child(data, "spare_before_rename@2", 0)
    assert proc.returncode == EXIT_CODE, proc.stderr
    assert acked and spare_segment_path(data).stat().st_size == HEADER_SIZE
    state, report = restore(data)
    assert report.torn_tail is None and not report.messages
    # The batch that wanted the new segment was never written.
    assert report.last_lsn == len(acked)
    assert state == {f"k{i}": i for i in acked}
    async with running(data, next_lsn=report.last_lsn + 1, segment_bytes=256) as log:
        for i in range(report.last_lsn + 1, report.last_lsn + 31):
            await log.wait_durable(log.submit(["set", f"k{i}", i]))
    state, report = restore(data)
    assert report.last_lsn == len(acked) + 30 and len(state) == report.last_lsn
