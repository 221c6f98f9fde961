"""A real ``roster serve`` subprocess on 127.0.0.1 for end-to-end and crash tests.

The server is started with ``--port 0 --resp-port 0``; the addresses come from the lines it prints
once the ports are open ("roster: resp on 127.0.0.1:PORT", then "roster: listening on
http://127.0.0.1:PORT ..."), so tests never race the bind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx

_LISTENING = re.compile(r"roster: listening on (http://\S+)")
_RESP = re.compile(r"roster: resp on (\S+):(\d+)")
START_TIMEOUT_S = 30.0


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        #: (host, port) of the Redis-protocol lane; None when started with --resp-port off
        self.resp: tuple[str, int] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "server", "serve", "--data-dir", str(self.data_dir),
                "--host", "127.0.0.1", "--port", "0", "--resp-port", "0", *self.args]

    def start(self) -> ServerProcess:
        self.output = []
        self.resp = None
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=self.env)
        ready = threading.Event()
        proc = self.proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                r = _RESP.search(line)
                if r:
                    self.resp = (r.group(1), int(r.group(2)))
                m = _LISTENING.search(line)
                if m and not ready.is_set():
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(START_TIMEOUT_S) or not self.url:
            self.kill()
            raise RuntimeError("roster did not start:\n" + "".join(self.output))
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"token": token} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def kill(self) -> int:
        """SIGKILL: no flush, no goodbye — what a power cut or OOM kill looks like to the log.
        Returns the exit code (``-SIGKILL`` unless the server had already exited)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        return self.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader:
            self._reader.join(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return code

    def text(self) -> str:
        return "".join(self.output)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc and self.proc.poll() is None:
            self.stop()


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
            if proc.proc is not None and proc.proc.poll() is None:
                code = proc.stop()
                assert code == 0 or not clean_exit, proc.text()[-3000:]
        finally:
            proc.kill()


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
