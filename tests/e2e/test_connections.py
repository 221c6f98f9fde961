"""Slow and idle clients cannot starve the server (bounded counts, bounded waits)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import httpx

from tests.conftest import TOKEN
from tests.e2e.helpers import stop_within
from tests.server_process import ServerProcess

IDLE = 200
SLOW = 20


@contextmanager
def sockets(url: str, count: int) -> Iterator[list[socket.socket]]:
    parts = urlsplit(url)
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            s = stack.enter_context(socket.create_connection((parts.hostname, parts.port), 5))
            socks.append(s)
        yield socks


def test_idle_and_half_sent_requests_do_not_block_others(server: ServerProcess) -> None:
    with sockets(server.url, IDLE) as idle, sockets(server.url, SLOW) as slow:
        # Slowloris: half a request line and a few headers, never finished.
        for i, s in enumerate(slow):
            s.sendall(b"POST /channel HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            if i % 2:
                s.sendall(b"\r\n{\"channel_id\":")  # and half a body
        with httpx.Client(base_url=server.url, headers={"token": TOKEN}, timeout=5.0) as c:
            # a starved server would miss the client's 5 s timeout on some request
            for i in range(20):
                r = c.post("/channel", json={"channel_id": f"busy{i}", "channel_type": 2})
                assert r.status_code == 200
            assert c.get("/channel/info", params={"channel_id": "busy19",
                                                  "channel_type": 2}).status_code == 200
        assert len(idle) == IDLE


def test_sigterm_with_idle_keepalive_connections_exits_promptly(server: ServerProcess) -> None:
    with sockets(server.url, 50) as idle:
        for s in idle[:25]:  # keep-alive connections that served one request, then went idle
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        # hypercorn would sit out its graceful timeout (10 s) on idle connections; Roster drains
        # in-flight requests only. Bounded well below that timeout.
        assert stop_within(server, 8.0) == 0
    assert "received SIGTERM" in server.text()
