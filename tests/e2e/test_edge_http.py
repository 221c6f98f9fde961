"""The HTTP edge against a real ``roster serve``, with raw sockets and the probe's exact requests.

* A request answered before its body has arrived (401/403/404/405/413/431, Content-Length or
  chunked) closes the connection without reading the rest of that body.
* ``Connection: close`` and HTTP/1.0 close after the answer; a client that half-closes after a
  complete request gets its whole answer (and a POST's write is applied and acknowledged).
* Deadlines: headers (408), body (408), idle keep-alive; a peer that has gone is closed at once.
* Slow senders are reaped while another client is answered; beyond ``--http-max-connections``
  clients wait in the listen backlog; a descriptor flood is logged once and then survived.

Every loop is bounded in bytes or rounds; waits are bounds, never the assertion.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, new_id
from tests.server_process import ServerProcess, read_until_closed, started, wait_until

KEY, SECRET = "edge-app-key", "edge-app-secret"
#: a rejected request may have read at most this much of the body it refused (socket buffers)
READ_BOUND = 64 * 1024 * 1024
#: how long one answer may take on loopback before the test fails (a bound, not a timing)
REPLY_S = 10.0
#: the descriptor limit of the flooded server (it needs about 16 of its own)
NOFILE = 64
CHUNK = b"x" * 65536


def address(proc: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(proc.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default deadlines (so nothing here is closed by a timeout), a token, RongCloud signing."""
    proc = ServerProcess(tmp_path_factory.mktemp("edge") / "data", "--token", TOKEN,
                         "--rc-app-key", KEY, "--rc-app-secret", SECRET)
    with started(proc):
        yield proc


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One-second deadlines for headers, bodies and idle keep-alive connections."""
    proc = ServerProcess(tmp_path_factory.mktemp("quick") / "data", "--token", TOKEN,
                         "--http-header-timeout", "1", "--http-body-timeout", "1",
                         "--http-idle-timeout", "1")
    with started(proc):
        yield proc


def connect(proc: ServerProcess) -> socket.socket:
    return socket.create_connection(address(proc), timeout=REPLY_S)


def flood_body(proc: ServerProcess, head: bytes, chunked: bool = False) -> tuple[bytes, int]:
    """Send ``head``, then body bytes for as long as the server reads them (at most
    READ_BOUND); return what the server answered and how many body bytes it took."""
    s = connect(proc)
    with s:
        s.sendall(head)
        s.setblocking(False)
        piece = b"10000\r\n" + CHUNK + b"\r\n" if chunked else CHUNK
        answer, sent, sending = b"", 0, True
        while sent < READ_BOUND:
            readable, writable, _ = select.select([s], [s] if sending else [], [], REPLY_S)
            assert readable or writable, "neither answered nor read within the bound"
            if readable:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
            if writable:
                try:
                    sent += s.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    sending = False  # closed by the server: read what it answered first
        return answer, sent


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


HUGE = b"Content-Length: 1000000000000\r\n"
BIG = b"Content-Length: 100000000\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
REJECTED = [
    # (what, request head, expected status)
    ("413 too large", b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\ntoken: " +
     TOKEN.encode() + b"\r\n" + HUGE + b"\r\n", 413),
    ("413 fast path", b"POST /permission/check HTTP/1.1\r\nHost: x\r\ntoken: " +
     TOKEN.encode() + b"\r\n" + HUGE + b"\r\n", 413),
    ("403 no token", b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\n" + BIG + b"\r\n", 403),
    ("403 no token, chunked", b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\n" + CHUNKED
     + b"\r\n", 403),
    ("403 fast path, chunked", b"POST /permission/check HTTP/1.1\r\nHost: x\r\n" + CHUNKED
     + b"\r\n", 403),
    ("401 unsigned RongCloud", b"POST /user/subscribe/set.json HTTP/1.1\r\nHost: x\r\n" + BIG
     + b"\r\n", 401),
    ("404 no route", b"POST /nope HTTP/1.1\r\nHost: x\r\ntoken: " + TOKEN.encode() + b"\r\n"
     + BIG + b"\r\n", 404),
    ("404 no route, chunked", b"POST /nope HTTP/1.1\r\nHost: x\r\ntoken: " + TOKEN.encode()
     + b"\r\n" + CHUNKED + b"\r\n", 404),
    ("405 method", b"POST /health HTTP/1.1\r\nHost: x\r\n" + BIG + b"\r\n", 405),
    ("400 malformed X-Min-LSN, chunked", b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\n"
     b"token: " + TOKEN.encode() + b"\r\nX-Min-LSN: x\r\n" + CHUNKED + b"\r\n", 400),
]


@pytest.mark.parametrize(("what", "head", "expected"), REJECTED, ids=[r[0] for r in REJECTED])
def test_a_rejected_request_closes_without_reading_its_body(
        edge: ServerProcess, what: str, head: bytes, expected: int) -> None:
    answer, sent = flood_body(edge, head, chunked=b"chunked" in head)
    assert status(answer) == expected, answer[:300]
    assert b"connection: close" in answer.lower()
    assert sent < READ_BOUND, f"{what}: the server read {sent} body bytes after answering"


def test_a_too_large_chunked_body_is_refused_once_it_passes_the_limit(
        edge: ServerProcess) -> None:
    head = (b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\ntoken: " + TOKEN.encode()
            + b"\r\n" + CHUNKED + b"\r\n")
    answer, sent = flood_body(edge, head, chunked=True)
    assert status(answer) == 413
    assert sent < READ_BOUND


def test_headers_too_large_are_431_and_closed(edge: ServerProcess) -> None:
    answer, sent = flood_body(edge, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
    assert status(answer) == 431
    assert sent < READ_BOUND


def test_a_refused_request_with_its_whole_body_keeps_the_connection(
        edge: ServerProcess) -> None:
    with connect(edge) as s:
        for _ in range(2):
            s.sendall(b"POST /channel/whitelist_set HTTP/1.1\r\nHost: x\r\nContent-Length: 2"
                      b"\r\n\r\n{}")
            answer = read_answer(s)
            assert status(answer) == 403 and b"connection: close" not in answer.lower()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status(read_until_closed(s)) == 200


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /permission/check HTTP/1.0\r\ntoken: " + TOKEN.encode() + b"\r\n"
    b"Content-Length: 50\r\n\r\n" b'{"from_uid":"u","channel_id":"g","channel_type":2}',
    b"GET /channel/info?channel_id=none&channel_type=2 HTTP/1.1\r\nHost: x\r\ntoken: "
    + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n",
], ids=["http1.0", "connection-close", "fast-path-http1.0", "quart-route-close"])
def test_connection_close_and_http10_close_after_the_answer(
        edge: ServerProcess, request_bytes: bytes) -> None:
    with connect(edge) as s:
        s.sendall(request_bytes)
        answer = read_until_closed(s)
    assert status(answer) in (200, 404)
    whole_answer(answer)


def read_answer(s: socket.socket) -> bytes:
    """One answer (headers and a Content-Length body) from a connection that stays open."""
    out = b""
    for _ in range(1000):  # bounded: each recv waits at most the socket timeout
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep and len(body) >= content_length(head):
            return out
        chunk = s.recv(65536)
        assert chunk, f"closed after {out!r}"
        out += chunk
    raise AssertionError("unbounded answer")


def content_length(head: bytes) -> int:
    return next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:"))


def whole_answer(answer: bytes) -> bytes:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert len(body) == content_length(head), answer
    return body


def test_a_half_closed_client_gets_its_whole_answer(edge: ServerProcess) -> None:
    gid, uid = new_id("g"), new_id("u")
    body = json.dumps({"channel_id": gid, "channel_type": 2, "subscribers": [uid]}).encode()
    for _ in range(10):  # the probe lost these in 10 of 20 (GET) and 20 of 20 (POST) runs
        with connect(edge) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            assert json.loads(whole_answer(read_until_closed(s)))["status"] == "ok"
    with connect(edge) as s:
        s.sendall(b"POST /channel/subscriber_add HTTP/1.1\r\nHost: x\r\ntoken: "
                  + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.shutdown(socket.SHUT_WR)
        answer = read_until_closed(s)
    assert status(answer) == 200
    assert json.loads(whole_answer(answer)) == {"status": "ok"}
    with client_for(edge.url, TOKEN) as c:
        r = c.get("/channel/subscribers", params={"channel_id": gid, "channel_type": 2})
        assert r.json()["uids"] == [uid]


def close_waits(proc: ServerProcess) -> int:
    """Server-side sockets of ``proc``'s HTTP port whose peer has closed (CLOSE-WAIT)."""
    port = address(proc)[1]
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "08":
            count += 1
    return count


def accept_queue(proc: ServerProcess) -> int:
    """Connections waiting in the HTTP port's listen backlog (not yet accepted)."""
    port = address(proc)[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return int(fields[4].split(":")[1], 16)
    raise AssertionError("the HTTP port is not listening")


def test_a_peer_that_has_gone_is_closed_at_once(edge: ServerProcess) -> None:
    # Default idle timeout (75 s): only noticing the peer's FIN can close these.
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(edge)) for _ in range(20)]
        for s in socks[:10]:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status(s.recv(65536)) == 200
    wait_until(lambda: close_waits(edge) == 0, REPLY_S, "no CLOSE-WAIT sockets")


def test_an_event_stream_whose_client_has_gone_is_closed_at_once(edge: ServerProcess) -> None:
    # Without noticing the FIN, the stream would run until a heartbeat write failed (15 s+).
    with connect(edge) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\ntoken: " + TOKEN.encode() + b"\r\n\r\n")
        assert status(s.recv(65536)) == 200
    wait_until(lambda: close_waits(edge) == 0, REPLY_S, "no CLOSE-WAIT sockets")


def test_headers_not_complete_in_time_are_408(quick: ServerProcess) -> None:
    with connect(quick) as silent, connect(quick) as partial:
        partial.sendall(b"GET /health HTTP/1.1\r\nHo")
        for s in (silent, partial):
            answer = read_until_closed(s)
            assert status(answer) == 408
            assert json.loads(whole_answer(answer))["code"] == "request_timeout"


def test_a_body_not_complete_in_time_is_408(quick: ServerProcess) -> None:
    with connect(quick) as s:
        s.sendall(b"POST /channel HTTP/1.1\r\nHost: x\r\ntoken: " + TOKEN.encode()
                  + b"\r\nContent-Length: 100\r\n\r\n{\"channel_id\":")
        answer = read_until_closed(s)
    assert status(answer) == 408
    assert b"request body" in answer


def test_an_idle_keepalive_connection_is_closed_after_the_idle_timeout(
        quick: ServerProcess) -> None:
    with connect(quick) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(s)  # the answer, then (after 1 s idle) the close
    assert answer.count(b"HTTP/1.1 ") == 1 and status(answer) == 200


def test_slowloris_connections_are_reaped_while_others_are_answered(
        quick: ServerProcess) -> None:
    slow_count, rounds = 50, 200
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"
    with ExitStack() as stack:
        slow = [stack.enter_context(connect(quick)) for _ in range(slow_count)]
        reaped: set[int] = set()
        stop = threading.Event()

        def trickle() -> None:
            # One header byte per connection per round; a connection counts as reaped when the
            # server answers it (408) or closes it. Bounded by rounds, never finishing a request.
            for i in range(rounds):
                for n, s in enumerate(slow):
                    if n in reaped:
                        continue
                    try:
                        s.sendall(request[i:i + 1])
                    except OSError:
                        reaped.add(n)
                        continue
                    if select.select([s], [], [], 0)[0]:
                        reaped.add(n)
                if len(reaped) == slow_count or stop.wait(0.05):
                    return

        worker = threading.Thread(target=trickle)
        worker.start()
        try:
            with client_for(quick.url, TOKEN) as c:
                for i in range(20):
                    assert c.get("/health").status_code == 200
                    r = c.post("/channel", json={"channel_id": f"loris{i}", "channel_type": 2})
                    assert r.status_code == 200
        finally:
            worker.join(REPLY_S * 2)
            stop.set()
            worker.join()
        assert len(reaped) == slow_count
        for s in slow:
            assert status(read_until_closed(s)) == 408


def test_beyond_the_cap_clients_wait_in_the_backlog(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, "--http-max-connections", "3")
    with started(proc), ExitStack() as stack:
        held = [stack.enter_context(connect(proc)) for _ in range(3)]
        waiting = stack.enter_context(connect(proc))
        waiting.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        wait_until(lambda: accept_queue(proc) == 1, REPLY_S, "the fourth client in the backlog")
        held[0].close()
        assert status(read_until_closed(waiting)) == 200
    assert "http: at most 3 connections" in proc.text()




def test_the_soft_descriptor_limit_is_raised_to_the_hard_one_and_sizes_the_cap(
        tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, nofile=(NOFILE, 4 * NOFILE))
    with started(proc):
        text = proc.text()
    assert text.count(f"raised the open-file limit from {NOFILE} to {4 * NOFILE}") == 1
    spare = 4 * NOFILE - 64  # what the reserve leaves; RESP (on) takes a quarter of it
    assert f"http: at most {spare - spare // 4} connections" in text


def test_a_descriptor_flood_is_logged_once_and_survived(tmp_path: Path) -> None:
    # A cap above the descriptor limit, so accept() itself runs out (EMFILE).
    proc = ServerProcess(tmp_path / "data", "--token", TOKEN, "--http-max-connections", "1000",
                         nofile=(NOFILE, NOFILE))
    with started(proc):
        def logged(line: str, times: int) -> bool:
            return proc.text().count(line) == times

        for incident in (1, 2):  # each logged once when it starts and once when it ends
            with ExitStack() as stack:
                for _ in range(NOFILE + 20):
                    stack.enter_context(connect(proc))
                wait_until(partial(logged, "cannot accept HTTP", incident), REPLY_S,
                           "the accept failure logged")
            with client_for(proc.url, TOKEN, keep_alive=False) as c:
                for i in range(5):
                    r = c.post("/channel", json={"channel_id": f"fd{incident}-{i}",
                                                 "channel_type": 2})
                    assert r.status_code == 200
            wait_until(partial(logged, "accepting HTTP connections again", incident), REPLY_S,
                       "the end of the incident logged")
        text = proc.text()
    assert text.count("cannot accept HTTP connections") == 2
    assert "Traceback" not in text and "Too many open files" in text


@pytest.mark.parametrize(("header", "query", "named"), [
    ("1:" + "9" * 5000, None, "Last-Event-ID"),  # the probe's: a 500 once
    ("9" * 5000, None, "Last-Event-ID"),
    ("+7", None, "Last-Event-ID"),
    (None, "7_0", "last_event_id"),
    (None, "007", "last_event_id"),
])
def test_a_malformed_last_event_id_is_400_naming_where_it_was_sent(
        edge: ServerProcess, header: str | None, query: str | None, named: str) -> None:
    with client_for(edge.url, TOKEN) as c:
        r = c.get("/events", headers={"Last-Event-ID": header} if header else {},
                  params={"last_event_id": query} if query else {})
    assert r.status_code == 400, r.text[:200]
    body = r.json()
    assert body["code"] == "field_type" and named in body["msg"]
    assert len(body["msg"]) < 300  # quotes a short prefix, not the 5 000 digits


def test_tokens_compare_as_the_bytes_sent_on_every_route(tmp_path: Path) -> None:
    # A token with a '?' must not be matched by a query token whose non-Latin-1 character was
    # once replaced by '?' before the comparison.
    proc = ServerProcess(tmp_path / "data", "--token", "t?k")
    with started(proc), client_for(proc.url) as c:
        assert c.get("/events", params={"token": "t\u20ack"}).status_code == 403
        assert c.get("/channel/info", params={"channel_id": "x", "channel_type": 2},
                     headers={"token": "t?k"}).status_code == 404
        check = {"from_uid": "u", "channel_id": "g", "channel_type": 2}
        assert c.post("/permission/check", json=check, headers={"token": "t?k"}
                      ).status_code == 200
        latin1 = {"token": b"t\xe9k"}  # the same bytes refused on the fast path and on quart
        assert c.post("/permission/check", json=check, headers=latin1).status_code == 403
        assert c.get("/channel/info", params={"channel_id": "x", "channel_type": 2},
                     headers=latin1).status_code == 403
