"""A real ``roster serve`` subprocess on 127.0.0.1 for end-to-end and crash tests.

``ServerProcess`` is ``server.spawn.RosterChild`` (the one child-process wrapper, shared with the
benchmarks) plus an HTTP client helper: started with ``--port 0 --resp-port 0``, it learns its
addresses from the lines the server prints once the ports are open, so tests never race the bind.
The rest of this module are the test-side helpers around it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from server.spawn import RosterChild

#: a start that takes longer than this is a failure (a loaded 2-core machine needs ~1 s)
START_TIMEOUT_S = 30.0


class ServerProcess(RosterChild):
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 nofile: tuple[int, int] | None = None) -> None:
        super().__init__(data_dir, *args, env=env, timeout=START_TIMEOUT_S, stop_timeout=30.0,
                         nofile=nofile)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"token": token} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def start(self) -> ServerProcess:
        super().start()
        return self

    def __enter__(self) -> ServerProcess:
        return self.start()


def run_cli(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m server <args>`` to completion (start refusals, wal tools)."""
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def wait_until(predicate: object, timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition on a real subprocess (not a timing assertion: it bounds a wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


@contextmanager
def started(proc: ServerProcess, *, clean_exit: bool = True) -> Iterator[ServerProcess]:
    """Start ``proc``; at the end SIGTERM it (with ``clean_exit``, asserting exit code 0, the
    log's own output in the message) and always reap it, closing its stdout pipe."""
    proc.start()
    try:
        yield proc
    finally:
        try:
            if proc.running():
                code = proc.stop()
                assert code == 0 or not clean_exit, proc.log_tail()
        finally:
            proc.close()


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; an assertion error if it is
    still open when a recv outlasts the socket's timeout."""
    out = b""
    for _ in range(10_000):  # bounded: each recv waits at most the socket timeout
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open after {out[:200]!r}") from None
        if not chunk:
            return out
        out += chunk
    raise AssertionError("unbounded answer")
