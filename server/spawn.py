"""Run a server as a child process and know when it is ready.

``roster serve --port 0 --resp-port 0`` picks free ports and prints one line per open listener
("roster: resp on HOST:PORT", then "roster: listening on http://HOST:PORT ..."). A parent learns
the addresses from those lines instead of guessing a port and racing the bind. ``Child`` is that
parent's half, for any program that prints such a line (the benchmark's bare-ASGI floor,
redis-server, nats-server); ``RosterChild`` adds the roster command line and its RESP address.

One implementation, used by the benchmark harness (``roster bench``), the test suite and anyone
supervising roster from Python, e.g. a gateway that keeps it in a process of its own.

Why the output goes to a file and never to a pipe: a pipe nobody drains blocks the child once
64 KiB are buffered, and a server blocked on a log write stops answering. Without a ``log_path``
the file is an unnamed temporary one, gone when the ``Child`` is closed.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["LISTENING", "Child", "ChildError", "RosterChild", "free_port", "roster_command",
           "rss_bytes", "with_nofile_limit"]

#: the line ``roster serve`` (and the floor) prints once HTTP accepts connections
LISTENING = re.compile(r"listening on (http://\S+)")
_RESP = re.compile(r"roster: resp on (\S+):(\d+)")
#: how often the output is looked at while waiting for the ready line: short, because tests
#: start hundreds of servers and each wait ends on the first look after the line appears
_POLL_S = 0.005


class ChildError(RuntimeError):
    """The child did not become ready: it exited, or its line did not appear in time. The
    message carries the end of its output. (A slow exit after a signal is
    ``subprocess.TimeoutExpired``, as from ``Popen.wait``.)"""


class Child:
    """One subprocess with its output in a file; ``start()`` returns once ``ready`` matched.

    ``ready=None`` returns at once (the caller has its own probe, e.g. a health check). The first
    group of the ready pattern, when it has one, becomes ``url``. Use as a context manager: the
    exit stops the child (SIGTERM, then SIGKILL if it outlives ``stop_timeout``).
    """

    def __init__(self, cmd: Sequence[str], *, name: str = "", log_path: Path | None = None,
                 ready: re.Pattern[str] | None = LISTENING, env: Mapping[str, str] | None = None,
                 timeout: float = 60.0, stop_timeout: float = 60.0) -> None:
        self.cmd = list(cmd)
        self.name = name or Path(self.cmd[0]).name
        self.log_path = log_path
        self.ready = ready
        self.env = dict(os.environ if env is None else env)
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        #: seconds from Popen to the ready line (0.0 with ``ready=None``)
        self.startup_s = 0.0
        self._log: IO[bytes] | None = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> Child:
        """Start (or start again: the output of an earlier run is discarded)."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self.url, self.startup_s = "", 0.0
        self._log = self._open_log()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env)
        if self.ready is None:
            return self
        deadline = t0 + self.timeout
        while True:
            m = self.ready.search(self.text())
            if m:
                self.url = m.group(1) if m.groups() else ""
                self.startup_s = time.perf_counter() - t0
                return self
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                break
            time.sleep(_POLL_S)
        exited = self.proc.poll()
        self.kill()
        why = f"exited with {exited}" if exited is not None else f"not ready in {self.timeout:g} s"
        raise ChildError(f"{self.name} did not start ({why}):\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless the child has already exited."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code once the child has exited (``subprocess.TimeoutExpired`` if it has not
        within ``timeout``); negative for a signal, as ``Popen.returncode``."""
        assert self.proc is not None, "not started"
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Send ``sig`` and wait for the exit; its code. A child still running after ``timeout``
        (default ``stop_timeout``) raises ``subprocess.TimeoutExpired`` and is left running, so a
        caller can look at it; ``kill()`` or the context manager's exit ends it."""
        self.send_signal(sig)
        return self.wait(self.stop_timeout if timeout is None else timeout)

    def kill(self) -> int:
        """SIGKILL: no flush, no goodbye — what a power cut or an OOM kill looks like to the data
        on disk. The exit code (``-SIGKILL`` unless the child had already exited)."""
        self.send_signal(signal.SIGKILL)
        return self.wait()

    def close(self) -> int | None:
        """Stop the child if it runs (SIGTERM, SIGKILL if it outlives ``stop_timeout``); never
        raises for a slow exit, so it belongs in ``finally``. The exit code, None if never
        started. The output stays readable until the next ``start()``."""
        if self.proc is None:
            return None
        if self.running():
            try:
                return self.stop()
            except subprocess.TimeoutExpired:
                return self.kill()
        return self.proc.wait()

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- output ------------------------------------------------------------------------------

    def text(self) -> str:
        """Everything the child has written so far (stdout and stderr, interleaved)."""
        if self._log is None:
            return ""
        # pread: the child shares this file's offset, so the parent must never move it
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]

    def rss(self) -> int:
        """Resident memory of the child in bytes (0 when it is not running)."""
        return rss_bytes(self.pid) if self.running() else 0

    def _open_log(self) -> IO[bytes]:
        if self.log_path is None:
            return tempfile.TemporaryFile(prefix="roster-child-")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.log_path, "w+b")  # closed by the next start()

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def __del__(self) -> None:
        # the unnamed file is a descriptor; a test suite starting hundreds of children must not
        # keep one open per finished child
        with contextlib.suppress(Exception):
            if not self.running():
                self._close_log()


def roster_command(data_dir: Path, *args: str, host: str = "127.0.0.1") -> list[str]:
    """``roster serve`` on free ports (HTTP and RESP) with this interpreter, as the tests and the
    benchmarks run it; ``args`` come last, so they can override any of these."""
    return [sys.executable, "-m", "server", "serve", "--data-dir", str(data_dir),
            "--host", host, "--port", "0", "--resp-port", "0", *args]


def with_nofile_limit(cmd: Sequence[str], soft: int, hard: int | None = None) -> list[str]:
    """``cmd`` (a ``python -m server …`` line, as ``roster_command`` makes it) run with its
    RLIMIT_NOFILE set to ``soft``/``hard`` (default: ``soft``) before the server starts: how the
    tests and the edge benchmark put a server at a descriptor limit without touching their own."""
    python, dash_m, module, *args = cmd
    if (dash_m, module) != ("-m", "server"):
        raise ValueError(f"not a python -m server command: {list(cmd)[:3]}")
    limits = (soft, soft if hard is None else hard)
    boot = ("import resource, runpy; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, {limits}); "
            "runpy.run_module('server', run_name='__main__', alter_sys=True)")
    return [python, "-c", boot, *args]


class RosterChild(Child):
    """``roster serve`` on ``data_dir`` (free ports; ``args`` appended to the command line);
    ``nofile=(soft, hard)`` starts it at that descriptor limit."""

    def __init__(self, data_dir: Path, *args: str, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, name: str = "roster", timeout: float = 60.0,
                 stop_timeout: float = 30.0, nofile: tuple[int, int] | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.nofile = nofile
        super().__init__(self.command(), name=name, log_path=log_path,
                         env={**os.environ, **(env or {})}, timeout=timeout,
                         stop_timeout=stop_timeout)

    def command(self) -> list[str]:
        """The command line ``start()`` runs."""
        cmd = roster_command(self.data_dir, *self.args)
        return cmd if self.nofile is None else with_nofile_limit(cmd, *self.nofile)

    def start(self) -> RosterChild:
        # built at each start: a caller may change ``args`` between runs of the same data dir
        self.cmd = self.command()
        super().start()
        return self

    @property
    def resp(self) -> tuple[str, int] | None:
        """(host, port) of the RESP listener; None when started with ``--resp-port off``."""
        m = _RESP.search(self.text())
        return (m.group(1), int(m.group(2))) if m else None

    def __enter__(self) -> RosterChild:
        return self.start()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago, for programs that cannot take port 0
    (nats-server's cluster routes name each other's ports up front).

    Picked at random below the kernel's ephemeral range: a port from that range (what a bind to
    port 0 returns) can be taken, between the pick and the program's own bind, by any other
    process binding port 0 or opening an outgoing connection, which a busy test run does all
    the time. Below the range only another explicit pick can collide.
    """
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(max(1024, low - 20_000), low)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ChildError("no free loopback port below the ephemeral range")


def _ephemeral_low(default: int = 32768) -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return max(2048, int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return default


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux /proc), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
