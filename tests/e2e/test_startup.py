"""Start-up refusals of the real ``roster serve``: each is one line on stderr and its own exit code.

    3 cannot listen   4 data dir unusable   5 data dir locked   6 the log is corrupt

Log lines (JSON: stderr is not a terminal here) may come before the refusal; what is not a log
line must be exactly ``roster: refusing to start: <reason>``, and nothing may be a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, ok, running
from tests.server_process import run_cli
from wal import list_segments
from wal.failpoints import ENV_VAR
from wal.framing import HEADER_SIZE, RecordReader

PREFIX = "roster: refusing to start: "
#: what wal/failpoints.py itself prints when an injected error fires (test machinery, not roster)
INJECTED = "roster: injected "
#: TEST-NET-1 (RFC 5737): never an address of this machine
UNASSIGNABLE = "192.0.2.1"


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small file system of its own (root only): the one way root meets a read-only directory
    or a full disk for real."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True, timeout=30, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30, check=True)


def fill(directory: Path, max_bytes: int) -> None:
    """Write into ``directory`` until its file system is full (at most ``max_bytes``)."""
    with (directory / "filler").open("wb", buffering=0) as f:
        for _ in range(max_bytes // 4096 + 1):
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return
    raise AssertionError(f"{directory} took {max_bytes} bytes without filling up")


def serve(data: Path, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return run_cli("serve", "--data-dir", str(data), "--token", TOKEN, "--resp-port", "0",
                   *args, env={ENV_VAR: "", **(env or {})})


def refusal(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one refusal line, after checking the exit code and that nothing else was said."""
    assert done.returncode == code, done
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr, done.stderr
    assert "roster: listening" not in done.stdout, done.stdout
    human = []
    for line in done.stderr.splitlines():
        if line.startswith("{"):
            assert "exc" not in json.loads(line), line  # a log line, without a traceback
        elif not line.startswith(INJECTED):
            human.append(line)
    assert len(human) == 1 and human[0].startswith(PREFIX), done.stderr
    return human[0][len(PREFIX):]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path / "data", "--host", "127.0.0.1", "--port", str(port))
    said = refusal(done, 3)
    assert f"port {port} is already in use" in said and "--port" in said, said
    # the data dir lock was released on the way out: the same dir starts now
    with running(tmp_path / "data") as proc, client_for(proc.url, TOKEN) as c:
        assert c.get("/health").status_code == 200


def test_unassignable_host(tmp_path: Path) -> None:
    said = refusal(serve(tmp_path / "data", "--host", UNASSIGNABLE, "--port", "0"), 3)
    assert f"{UNASSIGNABLE} is not an address of this machine" in said and "--host" in said, said


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 4)
    assert said.startswith(f"data directory {data} is unusable: not a directory"), said
    assert data.read_text() == "not a directory"


def test_a_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    data = tmp_path / "file" / "data"
    said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 4)
    assert f"data directory {data} is unusable" in said, said
    assert f"a parent, {tmp_path / 'file'}, is a file" in said, said


def test_data_dir_not_writable(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits, not into a read-only mount
        with tmpfs(tmp_path / "ro", "ro,size=1m") as data:
            said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 4)
    else:
        data = tmp_path / "data"
        data.mkdir()
        data.chmod(0o500)
        try:
            said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 4)
        finally:
            data.chmod(0o700)
    assert f"data directory {data} is unusable: not writable" in said, said


def test_missing_parents_are_created(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"
    with running(data) as proc, client_for(proc.url, TOKEN) as c:
        ok(c, "/channel", {"channel_id": "g", "channel_type": 2})
        assert proc.stop() == 0, proc.text()
    assert list_segments(data)


def test_locked_by_another_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running(data) as first:
        said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 5)
        assert first.proc is not None
        assert said == (f"data directory {data} is locked by another process (pid "
                        f"{first.proc.pid}); is another roster running on it?"), said
        with client_for(first.url, TOKEN) as c:  # the first one is untouched
            assert c.get("/health").status_code == 200


def test_corrupt_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running(data, "--fsync", "always") as proc, client_for(proc.url, TOKEN) as c:
        for i in range(5):
            ok(c, "/channel", {"channel_id": f"g{i}", "channel_type": 2})
        assert proc.stop() == 0, proc.text()
    [seg] = list_segments(data)
    records = list(RecordReader(seg.path.read_bytes(), HEADER_SIZE))
    victim = records[len(records) // 2]
    with seg.path.open("r+b") as f:  # one flipped payload byte in a record followed by others
        f.seek(victim.offset + 20)
        byte = f.read(1)
        f.seek(victim.offset + 20)
        f.write(bytes([byte[0] ^ 0x40]))
    said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 6)
    assert f"corrupt write-ahead log: {seg.path} at offset {victim.offset}" in said, said
    assert f"roster wal verify --data-dir {data}" in said, said


def test_disk_full_at_start(tmp_path: Path) -> None:
    """The first write of a start (the new segment's header) fails with ENOSPC."""
    data = tmp_path / "data"
    done = serve(data, "--host", "127.0.0.1", "--port", "0", env={ENV_VAR: "write_enospc@1"})
    said = refusal(done, 4)
    assert said.startswith(f"data directory {data} is unusable: cannot create the first log "
                           "segment"), said
    assert "disk full" in said, said


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_really_full_disk_at_start(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=256k") as disk:
        data = disk / "data"
        data.mkdir()
        fill(disk, 1 << 20)
        said = refusal(serve(data, "--host", "127.0.0.1", "--port", "0"), 4)
    assert said.startswith(f"data directory {data} is unusable: "), said
    assert "disk full (No space left on device)" in said, said
