"""Subprocesses the HTTP benchmarks load: ``roster serve``, the bare-ASGI floor, redis-server.

Each writes its output to a log file (never to a pipe nobody drains, which would block the
server once the pipe is full); the start-up line is found by polling that file.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import trio

from bench.common import rss_bytes
from server.state import State
from wal import write_snapshot

_LISTENING = re.compile(r"listening on (http://\S+)")


class Child:
    """One started subprocess with its log file; use as a context manager."""

    def __init__(self, name: str, cmd: list[str], log_path: Path,
                 ready: re.Pattern[str] | None = _LISTENING, timeout: float = 600.0) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.ready = ready
        self.timeout = timeout
        self.url = ""
        self.startup_s = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        if self.ready is None:
            return self
        deadline = t0 + self.timeout
        while time.perf_counter() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = self.ready.search(text)
            if m:
                self.url = m.group(1) if m.groups() else ""
                self.startup_s = time.perf_counter() - t0
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.log_tail()}")

    def rss(self) -> int:
        return rss_bytes(self.proc.pid) if self.proc is not None else 0

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def roster_command(data_dir: Path, fsync: str) -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--data-dir", str(data_dir),
            "--port", "0", "--resp-port", "0", "--fsync", fsync, "--log-level", "WARNING"]


def roster(data_dir: Path, fsync: str, log_path: Path) -> Child:
    return Child(f"roster (fsync {fsync})", roster_command(data_dir, fsync), log_path)


def floor(data_dir: Path, log_path: Path) -> Child:
    return Child("floor", [sys.executable, "-m", "bench.floor", "--data-dir", str(data_dir),
                           "--port", "0"], log_path)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_template(state: State, data_dir: Path) -> dict[str, float]:
    """Make ``data_dir`` a Roster data dir whose snapshot (at lsn 0) holds ``state``; the
    servers of a run each start on a copy of it, so they all recover the same state."""
    info = trio.run(write_snapshot, data_dir, 0, state.snapshot_chunks())
    return {"snapshot_bytes": float(info.bytes), "snapshot_s": info.seconds}


def copy_data_dir(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target
