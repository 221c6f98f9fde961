"""Edge cases of the RESP lane on raw sockets against real ``roster serve`` processes.

Inline commands, broken and oversized input, clients that never read, many and too many
connections, start-up options, SIGTERM with clients connected, and AUTH on every command.
Every broken input must cost exactly its own connection: a second connection keeps getting
answers and the server's state (its LSN) is unchanged.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.resp import COMMANDS
from server.resp_wire import ProtocolError, RequestParser
from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, get_list, new_id, running, stop_within, subscribers
from tests.resp.conftest import connect, raw_socket
from tests.server_process import ServerProcess, read_until_closed, run_cli, wait_until

AUTH = f"AUTH {TOKEN}\r\n".encode()
NOAUTH = b"-NOAUTH Authentication required.\r\n"
#: how long a reply may take to arrive on loopback before the test fails (a bound, not a timing)
REPLY_S = 10.0
#: a prompt answer while other connections flood or idle (generous: loopback answers take ms)
PROMPT_S = 2.0


# -- a tiny RESP reply reader ------------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection."""


class Raw:
    """One raw TCP connection to the RESP port; replies are read one RESP value at a time."""

    def __init__(self, addr: tuple[str, int], timeout: float = REPLY_S) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise Closed(self.buf)
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> object:
        """The next reply: ``bytes`` for +/-/$ (errors keep their ``-``), int, list or None."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return line
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise AssertionError(f"not a RESP2 reply: {line!r}")

    def replies(self, n: int) -> list[object]:
        return [self.reply() for _ in range(n)]

    def until_closed(self) -> bytes:
        """Everything the server still sends, then its close (a timeout fails the test)."""
        out = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Parsed(Raw):
    """Replies already received (the whole output of a closed connection)."""

    def __init__(self, data: bytes) -> None:  # no socket
        self.buf = data

    def _fill(self) -> None:
        raise AssertionError(f"truncated reply: {self.buf!r}")


def parse_all(data: bytes) -> list[object]:
    p = Parsed(data)
    out = []
    while p.buf:
        out.append(p.reply())
    return out


def cmd(*args: str | bytes) -> bytes:
    """One command as a client library encodes it (multibulk)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def lsn(api: httpx.Client) -> int:
    value: int = api.get("/health").json()["lsn"]
    return value


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_serving(proc: ServerProcess) -> None:
    """A fresh, well-behaved connection gets answers."""
    with Raw(resp(proc)) as good:
        good.send(AUTH + b"PING\r\n" + cmd("ECHO", "still here"))
        assert good.replies(3) == [b"OK", b"PONG", b"still here"]


def resp(proc: ServerProcess) -> tuple[str, int]:
    assert proc.resp is not None
    return proc.resp


def no_connection_bug(proc: ServerProcess) -> None:
    text = proc.text()
    assert "RESP connection failed" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


# -- inline commands ---------------------------------------------------------------------------


def test_inline_commands_auth_and_quoting(shared_server: ServerProcess,
                                          api: httpx.Client) -> None:
    gid, uid = new_id("g"), new_id("u")
    with Raw(resp(shared_server)) as c:
        c.send(b"PING\r\n")
        assert c.reply() == b"PONG"
        c.send(f"CHECK {uid} {gid} 2\r\n".encode())
        assert c.reply() == NOAUTH.rstrip(b"\r\n")
        c.send(b"AUTH wrong-token\r\n")
        assert c.reply().startswith(b"-WRONGPASS")  # type: ignore[union-attr]
        c.send(f'AUTH "{TOKEN}"\r\n'.encode())
        assert c.reply() == b"OK"
        c.send(f"CHECK {uid} {gid} 2\r\n".encode())
        assert c.reply() == 5  # ChannelNotExist
        # quoted arguments: double quotes with escapes, single quotes, tabs as separators
        c.send(f"SUB.ADD \"{gid}\"\t'2' {uid}\r\n".encode())
        assert c.reply() == b"OK"
        c.send(f"check '{uid}' \"{gid}\" \"2\"\r\n".encode())
        assert c.reply() == 1
        c.send(b'ECHO "a\\x41\\n\\"b" \r\n' + b"ECHO 'it\\'s'\n" + b"ECHO \"\"\r\n")
        assert c.replies(3) == [b"aA\n\"b", b"it's", b""]
        # blank lines are no commands; LF alone ends a line
        c.send(b"\r\n   \r\nPING\nPING hi\r\n")
        assert c.replies(2) == [b"PONG", b"hi"]
    assert subscribers(api, gid, 2) == [uid]


def test_inline_and_multibulk_mixed_on_one_connection(shared_server: ServerProcess,
                                                       api: httpx.Client) -> None:
    gid, u1, u2 = new_id("g"), new_id("u"), new_id("u")
    with Raw(resp(shared_server)) as c:
        # one packet: inline AUTH, multibulk write, inline read, multibulk read, inline write
        c.send(AUTH + cmd("SUB.ADD", gid, "2", u1) + f"CHECK {u1} {gid} 2\r\n".encode()
               + cmd("CHECK", u2, gid, "2") + f"WL.ADD {gid} 2 {u2}\r\n".encode()
               + cmd("WL.LIST", gid, "2"))
        assert c.replies(6) == [b"OK", b"OK", 1, 3, b"OK", [u2.encode()]]  # 3: not a subscriber
        # the same, cut at every few bytes: the parser keeps its place across reads
        data = (f"SUB.ADD {gid} 2 {u2}\r\n".encode() + cmd("CHECK", u2, gid, "2")
                + b"PING\r\n" + cmd("SUB.LIST", gid, "2"))
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
        assert c.replies(4) == [b"OK", 1, b"PONG", [None, sorted([u1.encode(), u2.encode()])]]
    assert subscribers(api, gid, 2) == sorted([u1, u2])
    assert get_list(api, "whitelist", gid, 2) == [u2]


# -- broken input ------------------------------------------------------------------------------

# (name, bytes after AUTH, the protocol error's message)
BROKEN = [
    ("star_abc", b"*abc\r\n", "invalid multibulk length"),
    ("negative_bulk", b"*1\r\n$-5\r\n", "invalid bulk length"),
    ("bulk_10GB", b"*1\r\n$10737418240\r\n", "invalid bulk length"),
    ("args_1M", b"*1000000\r\n", "invalid multibulk length"),
    ("args_30004", b"*30004\r\n", "invalid multibulk length"),
    # refused at the header, before its data is waited for (sending the data too could make the
    # close a reset that loses the reply)
    ("bulk_64KiB_plus_1", b"*2\r\n$4\r\nECHO\r\n$65537\r\n", "invalid bulk length"),
    ("not_dollar", b"*2\r\n$4\r\nECHO\r\n:5\r\n", "expected '$', got ':'"),
    ("no_crlf_after_bulk", b"*2\r\n$4\r\nECHO\r\n$1\r\nabc\r\n", "expected CRLF after bulk data"),
    ("long_count", b"*1\r\n$" + b"9" * 40 + b"\r\n", "too big bulk count string"),
    ("long_mbulk_count", b"*" + b"1" * 40 + b"\r\n", "too big mbulk count string"),
    ("bulk_leading_zero", b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
    ("unbalanced_quotes", b'ECHO "abc\r\n', "unbalanced quotes in request"),
    ("inline_64KiB_plus_1", b"ECHO " + b"a" * (64 * 1024 - 4), "too big inline request"),
]


@pytest.mark.parametrize(("payload", "message"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_protocol_error_closes_only_that_connection(shared_server: ServerProcess,
                                                    api: httpx.Client, payload: bytes,
                                                    message: str) -> None:
    before = lsn(api)
    with Raw(resp(shared_server)) as good, Raw(resp(shared_server)) as bad:
        good.send(AUTH)
        assert good.reply() == b"OK"
        bad.send(AUTH + b"PING\r\n")
        assert bad.replies(2) == [b"OK", b"PONG"]
        bad.send(payload)
        rest = bad.until_closed()
        assert rest == f"-ERR protocol error: {message}\r\n".encode()
        # the other connection (opened before) is untouched, and new ones are served
        good.send(b"PING\r\n" + cmd("ECHO", "x"))
        assert good.replies(2) == [b"PONG", b"x"]
    assert_serving(shared_server)
    assert lsn(api) == before
    no_connection_bug(shared_server)


def test_limits_are_inclusive(shared_server: ServerProcess) -> None:
    """A bulk of exactly 64 KiB and 30 003 arguments are accepted (the limits are not off by
    one), and an inline line of 64 KiB too."""
    with Raw(resp(shared_server)) as c:
        c.send(AUTH + cmd("ECHO", b"b" * 65536))
        assert c.replies(2) == [b"OK", b"b" * 65536]
        c.send(b"*30003\r\n" + b"".join(b"$1\r\nx\r\n" for _ in range(30_003)))
        assert c.reply() == b"-ERR unknown command 'x'"
        line = b"ECHO " + b"i" * (64 * 1024 - 6) + b"\r"  # 64 KiB before the LF
        assert len(line) == 64 * 1024
        c.send(line + b"\n")
        assert c.reply() == b"i" * (64 * 1024 - 6)
        c.send(b"PING\r\n")
        assert c.reply() == b"PONG"


def test_too_much_unparsed_input(shared_server: ServerProcess, api: httpx.Client) -> None:
    """An unfinished command of more than 4 MiB (in bulks under the bulk limit) is refused."""
    before = lsn(api)
    limit = 4 * 1024 * 1024
    bulk = b"$60000\r\n" + b"z" * 60000 + b"\r\n"
    head = b"*30000\r\n"
    n = (limit - len(head)) // len(bulk) + 1
    data = head + bulk * n
    assert len(data) > limit
    # Send exactly one byte past the limit, so the server has read everything when it answers
    # (closing with unread input would reset the connection and could lose the reply).
    data = data[: limit + 1]
    with Raw(resp(shared_server)) as good, Raw(resp(shared_server)) as bad:
        good.send(AUTH)
        bad.send(AUTH)
        assert bad.reply() == b"OK"
        bad.send(data)
        assert bad.until_closed() == b"-ERR protocol error: too much unparsed input\r\n"
        assert good.reply() == b"OK"
        good.send(b"PING\r\n")
        assert good.reply() == b"PONG"
    # one byte less is still waited for, not refused
    with Raw(resp(shared_server), timeout=1.0) as patient:
        patient.send(AUTH + data[:limit])
        assert patient.reply() == b"OK"
        with pytest.raises(TimeoutError):
            patient.reply()
    assert lsn(api) == before
    no_connection_bug(shared_server)


def test_commands_before_the_error_are_answered_first(shared_server: ServerProcess,
                                                      api: httpx.Client) -> None:
    gid, u1, u2 = new_id("g"), new_id("u"), new_id("u")
    with Raw(resp(shared_server)) as c:
        c.send(AUTH + cmd("SUB.ADD", gid, "2", u1) + f"WL.ADD {gid} 2 {u1}\r\n".encode()
               + cmd("CHECK", u1, gid, "2") + cmd("SUB.ADD", gid, "2", u2)
               + b"*2\r\n$4\r\nECHO\r\n$-7\r\n" + cmd("SUB.ADD", gid, "2", "never"))
        assert c.until_closed() == (b"+OK\r\n+OK\r\n+OK\r\n:1\r\n+OK\r\n"
                                    b"-ERR protocol error: invalid bulk length\r\n")
    assert subscribers(api, gid, 2) == sorted([u1, u2])
    assert get_list(api, "whitelist", gid, 2) == [u1]
    no_connection_bug(shared_server)


@pytest.mark.parametrize("broken", [b"*abc\r\n", b"*1\r\n$-5\r\n", b'ECHO "x\r\n'])
def test_protocol_error_after_complete_commands_in_the_same_packet(
        shared_server: ServerProcess, broken: bytes) -> None:
    """The error is answered at once, not when the client happens to send more (a client
    waiting for the reply to its broken command would wait forever)."""
    with Raw(resp(shared_server), timeout=5.0) as c:
        c.send(b"PING\r\n" + broken)
        assert c.reply() == b"PONG"
        assert c.until_closed().startswith(b"-ERR protocol error: ")


def test_acknowledged_writes_before_a_protocol_error_survive_kill(tmp_path: Path) -> None:
    gid, uid = new_id("g"), new_id("u")
    data = tmp_path / "data"
    with running(data, "--fsync", "always") as proc, Raw(resp(proc)) as c:
        c.send(AUTH + cmd("SUB.ADD", gid, "2", uid) + cmd("WL.ADD", gid, "2", uid)
               + b"*1\r\n$x\r\n")
        assert c.replies(3) == [b"OK", b"OK", b"OK"]
        proc.kill()
    with running(data, "--fsync", "always") as proc, client_for(proc.url, TOKEN) as api:
        assert subscribers(api, gid, 2) == [uid]
        assert get_list(api, "whitelist", gid, 2) == [uid]
        with connect(proc) as r:
            assert r.execute_command("WL.LIST", gid, 2) == [uid]


def test_truncated_frames_then_close(shared_server: ServerProcess, api: httpx.Client) -> None:
    gid, uid = new_id("g"), new_id("u")
    with Raw(resp(shared_server)) as c:
        c.send(AUTH + cmd("SUB.ADD", gid, "2", uid))
        assert c.replies(2) == [b"OK", b"OK"]
    before = lsn(api)
    whole = cmd("WL.ADD", gid, "2", uid)
    inline = f"WL.ADD {gid} 2 {uid}".encode()  # no newline: never complete
    cuts = [whole[:n] for n in range(1, len(whole))] + [inline]
    for part in cuts:
        with Raw(resp(shared_server)) as c:
            c.send(AUTH + part)
            assert c.reply() == b"OK"
            c.sock.shutdown(socket.SHUT_WR)
            assert c.until_closed() == b""  # nothing answered, and the server closed
    assert get_list(api, "whitelist", gid, 2) == []
    assert lsn(api) == before
    assert_serving(shared_server)
    no_connection_bug(shared_server)


def wire_parse(data: bytes) -> tuple[list[list[bytes]], str | None]:
    """The commands in ``data`` and the protocol error after them (None if none)."""
    parser = RequestParser()
    parser.feed(data)
    commands: list[list[bytes]] = []
    try:
        while got := parser.commands():
            commands += got
    except ProtocolError as exc:
        return commands, str(exc)
    return commands, None


def test_random_garbage(shared_server: ServerProcess, api: httpx.Client) -> None:
    """Seeded random bytes and mangled pipelines: every connection is answered with well-formed
    replies, a protocol error (if any) is the last thing it gets, and nothing is written."""
    gid, uid = new_id("g"), new_id("u")
    with Raw(resp(shared_server)) as c:
        c.send(AUTH + cmd("SUB.ADD", gid, "2", uid))
        assert c.replies(2) == [b"OK", b"OK"]
    before = lsn(api)
    rng = random.Random(20240613)
    # reads only: a mangled pipeline of these can never write
    valid = (cmd("CHECK", uid, gid, "2") + cmd("PING") + cmd("ECHO", "hello world")
             + f"CHECKM {uid} {gid} 2 {uid} {gid} 2\r\n".encode() + cmd("SUB.LIST", gid, "2"))
    errors = 0
    for case in range(300):
        if case % 2:
            payload = rng.randbytes(rng.randrange(1, 400))
            if case % 4 == 1:
                payload = rng.choice([b"*", b"$", b"*3\r\n", b"*2\r\n$"]) + payload
        else:
            mangled = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(mangled))
                op = rng.randrange(3)
                if op == 0:
                    mangled[i] = rng.randrange(256)
                elif op == 1:
                    del mangled[i]
                else:
                    mangled.insert(i, rng.choice(b"*$\r\n0123456789-"))
            payload = bytes(mangled)
        with Raw(resp(shared_server)) as c:
            c.send(AUTH)
            assert c.reply() == b"OK"
            c.send(payload)
            c.sock.shutdown(socket.SHUT_WR)
            out = c.until_closed()
        # the output parses as replies: one per command the wire parser finds in the input,
        # then the protocol error if the input is broken (whatever its fragmentation)
        replies = parse_all(out)
        commands, error = wire_parse(payload)
        quits = [i for i, argv in enumerate(commands) if argv[0].upper() == b"QUIT"]
        if quits:  # the server stops reading after QUIT
            commands, error = commands[: quits[0] + 1], None
        expected = len(commands) + (error is not None)
        assert len(replies) == expected, (case, payload, commands, error, replies)
        if error is not None:
            assert replies[-1] == f"-ERR protocol error: {error}".encode(), (case, payload)
            errors += 1
    assert errors > 50  # the cases did reach the parser's error paths
    assert lsn(api) == before
    assert_serving(shared_server)
    no_connection_bug(shared_server)


# -- clients that never read, many clients, too many clients -------------------------------------


@pytest.mark.parametrize("kind", ["check", "echo"])
def test_client_that_never_reads_does_not_hold_up_others(shared_server: ServerProcess,
                                                         kind: str) -> None:
    """20 MB of pipelined commands, replies never read: other clients keep getting answers
    promptly, and the server's memory stays bounded (backpressure, not buffering)."""
    assert shared_server.proc is not None
    pid = shared_server.proc.pid
    if kind == "check":
        unit = cmd("CHECK", "u_never_reads", "g_never_reads", "2")
    else:  # a reply as large as the command: the server must stop reading this connection
        unit = cmd("ECHO", b"e" * 4000)
    chunk = unit * max(1, (256 * 1024) // len(unit))
    total = 20 * 1024 * 1024
    deadline = time.monotonic() + 15.0
    sent = [0]
    stalled = threading.Event()
    done = threading.Event()
    errors: list[OSError] = []
    hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # small buffers on our side, so what the kernel holds for us is small against 20 MB
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    hog.connect(resp(shared_server))
    hog.settimeout(0.2)

    def flood() -> None:
        try:
            hog.sendall(AUTH)
            progress = time.monotonic()
            view = memoryview(chunk)
            while sent[0] < total and time.monotonic() < deadline:
                try:
                    # a send may take part of the chunk: go on from there (the chunk is whole
                    # commands, so going round it is a valid stream)
                    off = sent[0] % len(chunk)
                    n = hog.send(view[off:])
                except TimeoutError:
                    if time.monotonic() - progress > 2.0:
                        stalled.set()  # the server stopped reading us: backpressure
                        return
                    continue
                sent[0] += n
                progress = time.monotonic()
        except OSError as exc:
            errors.append(exc)
        finally:
            done.set()

    rss_before = vm_rss_kb(pid)
    rss_max = rss_before
    pings = 0
    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    try:
        # A prompt answer, generously bounded: the hog gets one chunk at a time, and a PING
        # that waited behind the flood would hit this connection's timeout.
        with Raw(resp(shared_server), timeout=PROMPT_S) as other:
            other.send(AUTH)
            assert other.reply() == b"OK"
            while not done.is_set() or pings < 10:
                other.send(b"PING\r\n")
                assert other.reply() == b"PONG"
                pings += 1
                rss_max = max(rss_max, vm_rss_kb(pid))
                done.wait(0.05)
                if time.monotonic() > deadline + 5:
                    break
    finally:
        writer.join(10)
        hog.close()
    assert not writer.is_alive()
    assert not errors, errors  # the server did not drop the flooding connection
    assert pings >= 10
    grown_mb = (rss_max - rss_before) / 1024
    assert grown_mb < 200, f"server RSS grew by {grown_mb:.0f} MB"
    if kind == "echo":
        # backpressure: with 64 KiB of our receive buffer, the server stopped reading long
        # before 20 MB (it blocks sending replies nobody takes)
        assert stalled.is_set() and sent[0] < total, (
            f"sent {sent[0]} bytes: the server read without sending")
    assert_serving(shared_server)
    no_connection_bug(shared_server)


@contextmanager
def raw_sockets(addr: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            s = socket.create_connection(addr, timeout=REPLY_S)
            stack.callback(s.close)
            socks.append(s)
        yield socks


def test_many_idle_connections_do_not_stop_others(shared_server: ServerProcess) -> None:
    count = 2000
    with raw_sockets(resp(shared_server), count) as idle, connect(shared_server) as r, \
            connect(shared_server, timeout=PROMPT_S) as prompt:
        wait_until(lambda: int(r.info("clients")["connected_clients"]) > count,
                   timeout=30, what="the idle connections to be accepted")
        assert prompt.ping() is True  # within PROMPT_S, or redis.TimeoutError
        # the idle ones are served too, the first and the last
        for s in (idle[0], idle[-1]):
            s.sendall(b"PING\r\n")
            assert s.recv(100) == b"+PONG\r\n"
    assert_serving(shared_server)


def test_max_clients(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--resp-max-clients", "50") as proc:
        addr = resp(proc)
        with raw_sockets(addr, 50) as socks:
            for s in socks:  # each is served: it holds one of the 50 places
                s.sendall(b"PING\r\n")
                assert s.recv(100) == b"+PONG\r\n"
            with socket.create_connection(addr, timeout=REPLY_S) as extra:
                assert read_until_closed(extra) == b"-ERR max number of clients reached\r\n"
            for s in socks[:5]:
                s.close()
            kept: list[socket.socket] = []

            def one_more() -> bool:
                # the server notices the closes: new connections are accepted again
                probe = socket.create_connection(addr, timeout=REPLY_S)
                try:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(100) == b"+PONG\r\n":
                        kept.append(probe)
                        return len(kept) == 5
                except OSError:
                    pass
                probe.close()
                return False

            try:
                wait_until(one_more, timeout=10, what="five places after closing five")
                with socket.create_connection(addr, timeout=REPLY_S) as extra:
                    assert read_until_closed(extra) == b"-ERR max number of clients reached\r\n"
                for s in socks[5:]:
                    s.sendall(b"PING\r\n")
                    assert s.recv(100) == b"+PONG\r\n"
            finally:
                for s in kept:
                    s.close()
        with client_for(proc.url, TOKEN) as api:
            metrics = api.get("/metrics").text
        found = re.search(r'^roster_resp_connections_closed_total\{reason="max_clients"\} (\S+)$',
                          metrics, re.M)
        assert found and float(found.group(1)) >= 2, (
            [line for line in metrics.splitlines() if "resp_connections" in line])


# -- start-up options ----------------------------------------------------------------------------


def test_resp_port_off(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--resp-port", "off") as proc:
        assert proc.resp is None
        assert "roster: resp on" not in proc.text()
        with client_for(proc.url, TOKEN) as api:
            assert api.get("/health").status_code == 200
            assert "roster_resp_connections" not in api.get("/metrics").text
    assert "roster: resp on" not in proc.text()


def test_resp_host(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--resp-host", "127.0.0.2") as proc:
        host, port = resp(proc)
        assert host == "127.0.0.2"
        assert proc.url.startswith("http://127.0.0.1:")
        with socket.create_connection((host, port), timeout=REPLY_S) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(100) == b"+PONG\r\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=REPLY_S).close()


def test_resp_port_in_use_refuses_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
                       "--port", "0", "--resp-port", str(port), "--token", TOKEN, timeout=60)
    assert done.returncode == 3, done  # 3: cannot listen
    assert "roster: listening" not in done.stdout and "roster: resp on" not in done.stdout
    # stderr: JSON log lines, and one line for a human
    human = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert human == [f"roster: refusing to start: cannot listen for RESP on 127.0.0.1:{port}: "
                     f"port {port} is already in use (Address already in use); stop what listens "
                     "there or choose another port with --resp-port"], done.stderr
    for line in done.stderr.splitlines():
        if line.startswith("{"):
            json.loads(line)
    # and the data dir lock was released: the same dir starts now
    with running(tmp_path / "data") as proc:
        assert proc.resp is not None


# -- SIGTERM with clients connected --------------------------------------------------------------


def test_sigterm_with_resp_clients_connected(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gid = new_id("g")
    acked: list[str] = []
    stop_writing = threading.Event()
    failures: list[BaseException] = []
    with running(data, "--fsync", "always") as proc:
        with connect(proc) as r:
            assert r.execute_command("SUB.ADD", gid, 2, "seed") == "OK"

        def writer() -> None:
            n = 0
            try:
                with connect(proc) as w:
                    while not stop_writing.is_set() and n < 200_000:
                        pipe = w.pipeline(transaction=False)
                        batch = [f"u{n + i}" for i in range(50)]
                        n += 50
                        for u in batch:
                            pipe.execute_command("WL.ADD", gid, 2, u)
                        try:
                            results = pipe.execute(raise_on_error=False)
                        except (redis.ConnectionError, redis.TimeoutError):
                            return
                        acked.extend(u for u, res in zip(batch, results, strict=True)
                                     if res == "OK")
                        if any(res != "OK" for res in results):
                            return
            except redis.ConnectionError:
                return
            except BaseException as exc:
                failures.append(exc)

        with ExitStack() as stack:
            idle = []
            for _ in range(20):
                s = raw_socket(proc)
                stack.callback(s.close)
                idle.append(s)
            idle[0].sendall(AUTH)
            assert idle[0].recv(100) == b"+OK\r\n"
            t = threading.Thread(target=writer, daemon=True)
            t.start()
            try:
                wait_until(lambda: len(acked) >= 500 or not t.is_alive(), timeout=30,
                           what="acknowledged writes")
                # idle connections do not hold up the exit (the graceful timeout is 10 s)
                code = stop_within(proc, 8.0)
            finally:
                stop_writing.set()
                t.join(30)
            assert not failures, failures
            assert code == 0, proc.text()[-3000:]
            for s in idle:
                assert read_until_closed(s) == b""  # closed by the server, nothing sent
    assert len(acked) >= 500
    with running(data, "--fsync", "always") as proc, client_for(proc.url, TOKEN) as api:
        present = set(get_list(api, "whitelist", gid, 2))
        missing = [u for u in acked if u not in present]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        with connect(proc) as r:
            assert set(r.execute_command("WL.LIST", gid, 2)) == present


# -- authentication ------------------------------------------------------------------------------

OPEN = {b"PING", b"HELLO", b"AUTH", b"QUIT"}


def test_no_command_works_without_the_token(shared_server: ServerProcess,
                                            api: httpx.Client) -> None:
    gid, uid = new_id("g"), new_id("u")
    before = lsn(api)
    names = sorted(COMMANDS)
    assert b"WL.ADD" in names and b"wl.add" in names and b"EVENTS.READ" in names
    with Raw(resp(shared_server)) as c:
        for name in names:
            if name.upper() in OPEN:
                continue
            # plausible arguments (a write that would succeed), and none
            for args in ((gid, "2", uid), ()):
                c.send(cmd(name, *args))
                assert c.reply() == NOAUTH.rstrip(b"\r\n"), name
            c.send(name.title() + f" {gid} 2 {uid}\r\n".encode())  # inline, odd case
            assert c.reply() == NOAUTH.rstrip(b"\r\n"), name
        c.send(cmd("EVENTS.READ", "0", "BLOCK", "0"))  # must not block before AUTH
        assert c.reply() == NOAUTH.rstrip(b"\r\n")
        c.send(cmd("AUTH", "default", "wrong") + cmd("SUB.ADD", gid, "2", uid)
               + cmd("HELLO", "3") + cmd("AUTH", "someone", TOKEN) + cmd("CHECK", uid, gid, "2"))
        replies = c.replies(5)
        assert replies[0].startswith(b"-WRONGPASS")  # type: ignore[union-attr]
        assert replies[1] == NOAUTH.rstrip(b"\r\n")
        assert replies[2].startswith(b"-NOAUTH")  # type: ignore[union-attr]
        assert replies[3].startswith(b"-WRONGPASS")  # type: ignore[union-attr]
        assert replies[4] == NOAUTH.rstrip(b"\r\n")
        c.send(b"PING\r\n")
        assert c.reply() == b"PONG"
    assert lsn(api) == before
    host, port = resp(shared_server)
    # (no retries: redis-py retries an AuthenticationError, a ConnectionError, with backoff)
    with redis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0),
                     socket_timeout=REPLY_S) as anon, pytest.raises(redis.AuthenticationError):
        anon.execute_command("SUB.LIST", gid, 2)
    # with the token the same connection-level commands work
    with Raw(resp(shared_server)) as c:
        c.send(cmd("HELLO", "2", "AUTH", "default", TOKEN) + cmd("SUB.ADD", gid, "2", uid))
        hello = c.reply()
        assert isinstance(hello, list) and b"roster" in hello
        assert c.reply() == b"OK"
    assert subscribers(api, gid, 2) == [uid]
