"""The RESP lane under slow senders and descriptor floods, against a real ``roster serve``.

* A client that starts a command and does not finish sending it within
  ``--resp-command-timeout`` gets an ``-ERR`` line and is closed, however slowly it trickles;
  an idle connection between commands is not touched by that deadline.
* With its descriptors exhausted (RLIMIT_NOFILE lowered in the child, a flood of raw
  connections), the server logs the accept failure once, backs off, keeps serving the clients it
  has, and accepts again when the flood ends; meanwhile the log rotates its segments (from the
  spare it holds open) and every write is acknowledged.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import redis

from tests.conftest import TOKEN
from tests.resp.conftest import connect
from tests.server_process import ServerProcess, read_until_closed, started, wait_until
from wal import list_segments

AUTH = f"AUTH {TOKEN}\r\n".encode()
#: how long a reply may take on loopback before the test fails (a bound, not a timing)
REPLY_S = 10.0
#: the descriptor limit of the flooded server (it needs about 16 of its own)
NOFILE = 64
TIMEOUT_LINE = b"-ERR command not received in full within 1 s\r\n"


def addr(proc: ServerProcess) -> tuple[str, int]:
    assert proc.resp is not None
    return proc.resp


def test_a_stalled_command_is_closed_with_an_error(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, "--resp-command-timeout", "1")
    with started(proc), connect(proc) as r, ExitStack() as stack:
        idle = stack.enter_context(socket.create_connection(addr(proc), timeout=REPLY_S))
        idle.sendall(AUTH)
        assert idle.recv(100) == b"+OK\r\n"
        stalled = stack.enter_context(socket.create_connection(addr(proc), timeout=REPLY_S))
        # Two whole commands, then one whose second argument never completes.
        stalled.sendall(AUTH + b"PING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nab")
        assert read_until_closed(stalled) == b"+OK\r\n+PONG\r\n" + TIMEOUT_LINE
        # The connection that sat between commands all along is still served.
        idle.sendall(b"PING\r\n")
        assert idle.recv(100) == b"+PONG\r\n"
        assert r.ping() is True
        assert int(r.info("stats")["command_timeouts"]) == 1


def test_a_trickling_command_is_closed_at_its_deadline(tmp_path: Path) -> None:
    """Bytes keep arriving (every 0.2 s), but the command they belong to began too long ago."""
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, "--resp-command-timeout", "1")
    with started(proc), socket.create_connection(addr(proc), timeout=REPLY_S) as s:
        s.sendall(AUTH)
        assert s.recv(100) == b"+OK\r\n"
        frame = b"*3\r\n$4\r\nECHO\r\n$1000\r\n" + b"x" * 1000
        got, i = b"", 0
        for i in range(len(frame)):  # bounded: the frame would complete after 1000 sends
            try:
                s.sendall(frame[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.2)  # this is the client's pace, not a measurement
            try:
                got = s.recv(4096)
            except TimeoutError:
                continue
            finally:
                s.settimeout(REPLY_S)
            break
        got += read_until_closed(s)
        assert got == TIMEOUT_LINE
        assert i < 100  # closed long before the frame could have completed


def test_descriptor_flood_is_survived_and_logged_once(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, nofile=(NOFILE, NOFILE))
    with started(proc), connect(proc) as r, ExitStack() as stack:
        assert r.ping() is True  # this connection holds its descriptor through the flood
        flood = []
        for _ in range(NOFILE + 16):  # more than the server has descriptors for
            flood.append(stack.enter_context(socket.create_connection(addr(proc),
                                                                       timeout=REPLY_S)))

        def failed_accepts() -> int:
            return int(r.info("stats")["accept_errors"])

        wait_until(lambda: failed_accepts() >= 4, timeout=30,
                   what="the server to retry its accept a few times")
        assert r.ping() is True and r.echo("still here") == "still here"
        assert proc.text().count("RESP accept failed") == 1, proc.text()[-3000:]

        stack.close()  # the flood ends
        fresh: list[redis.Redis] = []

        def accepts_again() -> bool:
            try:
                client = connect(proc)
                client.ping()
            except redis.ConnectionError:
                return False
            fresh.append(client)
            return True

        wait_until(accepts_again, timeout=30, what="a new connection to be served")
        for client in fresh:
            client.close()
        text = proc.text()
        assert text.count("RESP accepting again after") == 1, text[-3000:]
        assert "Traceback" not in text and "accept returned" not in text, text[-3000:]
        assert proc.proc is not None and proc.proc.poll() is None


def test_log_rotates_while_clients_hold_every_descriptor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = ServerProcess(data, "--token", TOKEN, "--segment-bytes", "4096",
                         nofile=(NOFILE, NOFILE))
    with started(proc), connect(proc) as r, ExitStack() as stack:
        assert r.ping() is True  # connected before the flood (redis-py connects lazily)
        for _ in range(NOFILE + 16):
            stack.enter_context(socket.create_connection(addr(proc), timeout=REPLY_S))
        wait_until(lambda: int(r.info("stats")["accept_errors"]) >= 1, timeout=30,
                   what="the descriptor table to be full")
        for i in range(300):  # about 20 segments of 4 KiB
            assert r.execute_command("SUB.ADD", f"g{i}", 2, "u" * 40, "v" * 40) == "OK"
        assert len(list_segments(data)) >= 10
        assert int(r.info("persistence")["lsn"]) == 300
        assert "Too many open files" not in proc.text().replace("RESP accept failed: Too many "
                                                                "open files", "")
