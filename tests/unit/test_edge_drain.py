"""Shutdown waits for every request under way: ``InFlight`` counts a request from the moment
its headers are in, before its application task has started.

Counting only inside the application left a window: a request parsed just before a fail-stop,
whose task had not run yet, looked like none; the server cancelled it and hypercorn answered an
empty 500 (seen under load in tests/crash/test_io_errors_server.py). Driven here in-process on
a real loopback socket, with an application that holds the answer until the test releases it.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from server.edge import EdgeLimits, InFlight, serve_http

LIMITS = EdgeLimits(header_timeout=10, body_timeout=10, idle_timeout=10, max_connections=10)


class HeldApp:
    """An ASGI app whose answers wait for ``release``; it does not count itself in flight."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        self.entered.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


async def serve(nursery: trio.Nursery, app: HeldApp, in_flight: InFlight,
                stop: trio.Event, sock: socket.socket) -> int:
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    await nursery.start(partial(
        serve_http, wrap_app(app, 1 << 20, "asgi"), HypercornConfig(), LIMITS,
        sockets=Sockets([], [sock], []), shutdown_trigger=stop.wait, in_flight=in_flight))
    port: int = sock.getsockname()[1]
    return port


async def read_until(client: trio.SocketStream, end: bytes) -> bytes:
    """What the server sends until ``end`` has arrived, or until it closes the connection."""
    out = b""
    with trio.fail_after(10):
        while not out.endswith(end):
            chunk = await client.receive_some(4096)
            if not chunk:
                break
            out += chunk
    return out


async def test_a_request_is_in_flight_from_its_headers_until_its_answer() -> None:
    app, in_flight, stop = HeldApp(), InFlight(), trio.Event()
    with socket.socket() as sock:
        async with trio.open_nursery() as nursery:
            port = await serve(nursery, app, in_flight, stop, sock)
            await one_request_counted(app, in_flight, port)
            stop.set()


async def one_request_counted(app: HeldApp, in_flight: InFlight, port: int) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as client:
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half the headers
        await trio.testing.wait_all_tasks_blocked()
        assert in_flight.count == 0
        await client.send_all(b"\r\n")
        await app.entered.wait()
        assert in_flight.count == 1  # the connection's count: the app does not count itself
        app.release.set()
        answer = await read_until(client, b"ok")
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
        await trio.testing.wait_all_tasks_blocked()
        assert in_flight.count == 0  # answered, the connection idle


async def test_shutdown_waits_for_a_request_whose_headers_are_in() -> None:
    app, in_flight, stop = HeldApp(), InFlight(), trio.Event()
    drained = trio.Event()

    async def drain() -> None:
        await in_flight.drained()
        drained.set()

    with socket.socket() as sock:
        async with trio.open_nursery() as nursery:
            port = await serve(nursery, app, in_flight, stop, sock)
            async with await trio.open_tcp_stream("127.0.0.1", port) as client:
                await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await app.entered.wait()
                stop.set()  # as a fail-stop or SIGTERM does; then the runner drains as here
                nursery.start_soon(drain)
                await trio.testing.wait_all_tasks_blocked()
                assert not drained.is_set()
                app.release.set()
                # answered in full, then closed: no next request on a stopping server
                answer = await read_until(client, b"\0never")
                assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
                await drained.wait()
