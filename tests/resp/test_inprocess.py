"""The RESP lane's timers in virtual time: idle timeout, the send-stall reaper, ``stop()``.

A real ``RespServer`` over a real ``Roster`` (``tests/app/conftest.py``'s ``in_process``) listens
on 127.0.0.1 in this trio run; the test talks to it over real loopback sockets while
pytest-trio's ``autojump_clock`` moves time forward whenever every task is blocked: exactly "the
client is idle".

Real sockets and autojump: loopback data is normally in the peer's buffer when ``send`` returns,
but on a loaded machine the kernel may deliver it a little later (softirq work deferred), and a
threshold of 0 then lets the clock race ahead by many reaper ticks (each tick is microseconds of
real time) while a byte is in flight -- seen as a spurious 55 s jump under three parallel runs.
The ``clock`` fixture therefore jumps only after ``AUTOJUMP_S`` of real idleness, and the tests
keep their virtual durations short (every virtual second costs one reaper tick, so one jump).
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from server import resp as resp_module
from server.resp import REAP_EVERY_S, SEND_STALL_S, RespServer
from tests.app.conftest import in_process

TOKEN = "inprocess-token"
#: real seconds the run must be idle before the mock clock jumps
AUTOJUMP_S = 0.01


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    autojump_clock.autojump_threshold = AUTOJUMP_S
    return autojump_clock


@asynccontextmanager
async def resp_server(tmp_path: Path, *, idle_timeout: float = 0.0, max_clients: int = 100,
                      token: str | None = None) -> AsyncIterator[RespServer]:
    async with in_process(tmp_path / "data") as ip, trio.open_nursery() as nursery:
        ctx = ip.app.extensions["command_context"]
        srv = RespServer(ctx, "127.0.0.1", 0, max_clients, idle_timeout, token)
        await nursery.start(srv.serve)
        try:
            yield srv
        finally:
            if not srv.stopping:
                await srv.stop(0)


async def connect(srv: RespServer) -> trio.SocketStream:
    host, port = srv.addresses[0].rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def ask(stream: trio.SocketStream, data: bytes, expect: bytes) -> None:
    await stream.send_all(data)
    got = b""
    while len(got) < len(expect):
        chunk = await stream.receive_some()
        assert chunk, f"closed after {got!r}, expected {expect!r}"
        got += chunk
    assert got == expect


async def closed_at(stream: trio.SocketStream) -> float:
    """Wait for the server to close ``stream`` (nothing else may arrive); the time it did."""
    while True:
        try:
            chunk = await stream.receive_some()
        except trio.BrokenResourceError:  # a reset: closed too
            return trio.current_time()
        if not chunk:
            return trio.current_time()
        raise AssertionError(f"unexpected data {chunk!r}")


# -- idle timeout ---------------------------------------------------------------------------------


async def test_idle_connection_closed_after_idle_timeout(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    idle = 30.0
    async with resp_server(tmp_path, idle_timeout=idle) as srv:
        async with await connect(srv) as s:
            await ask(s, b"PING\r\n", b"+PONG\r\n")
            t0 = trio.current_time()
            t = await closed_at(s)
        # not before the timeout; within one reaper round after it
        assert idle <= t - t0 <= idle + 2 * REAP_EVERY_S
        assert srv.idle_closed == 1
        assert not srv.connections


async def test_never_sending_anything_is_idle_too(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path, idle_timeout=10) as srv:
        t0 = trio.current_time()
        async with await connect(srv) as s:
            t = await closed_at(s)
        assert 10 <= t - t0 <= 10 + 2 * REAP_EVERY_S
        assert srv.idle_closed == 1


async def test_half_sent_command_counts_as_idle(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    """A client that stops in the middle of a command is idle (not busy) from its last byte."""
    async with resp_server(tmp_path, idle_timeout=10) as srv:
        async with await connect(srv) as s:
            await s.send_all(b"*2\r\n$4\r\nECHO\r\n$10\r\nabc")
            t0 = trio.current_time()
            await trio.sleep(9)
            await s.send_all(b"def")  # a byte resets the clock, even mid-command
            t1 = trio.current_time()
            t = await closed_at(s)
        assert t0 + 9 <= t1
        assert 10 <= t - t1 <= 10 + 2 * REAP_EVERY_S
        assert srv.idle_closed == 1


async def test_a_connection_that_keeps_talking_stays_open(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    idle = 10.0
    async with resp_server(tmp_path, idle_timeout=idle) as srv:
        async with await connect(srv) as talker, await connect(srv) as quiet:
            await ask(quiet, b"PING\r\n", b"+PONG\r\n")
            t0 = trio.current_time()
            quiet_closed: list[float] = []

            async def watch() -> None:
                quiet_closed.append(await closed_at(quiet))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                for i in range(12):  # 6 idle timeouts' worth, a command every idle/2
                    await ask(talker, b"ECHO %d\r\n" % i, b"$%d\r\n%d\r\n" % (len(str(i)), i))
                    await trio.sleep(idle / 2)
                await ask(talker, b"PING\r\n", b"+PONG\r\n")
            assert trio.current_time() - t0 >= 6 * idle
            # the quiet one, meanwhile, was closed after its timeout
            assert quiet_closed and idle <= quiet_closed[0] - t0 <= idle + 2 * REAP_EVERY_S
        assert srv.idle_closed == 1


async def test_idle_timeout_zero_never_closes(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path, idle_timeout=0) as srv:
        async with await connect(srv) as s, await connect(srv) as never:
            await ask(s, b"PING\r\n", b"+PONG\r\n")
            await trio.sleep(120)  # 120 reaper rounds (each virtual second costs AUTOJUMP_S real)
            await ask(s, b"PING\r\n", b"+PONG\r\n")
            await ask(never, b"PING\r\n", b"+PONG\r\n")
        assert srv.idle_closed == 0


# -- a client that does not read: the send-stall reaper ------------------------------------------


async def test_client_that_stops_reading_is_closed_after_send_stall(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path, idle_timeout=10) as srv:
        # The server keeps "not sending" as sending_since == 0.0, and the mock clock starts at
        # 0.0: a send blocked at the very first instant would never count as stalled. (trio's
        # real clock starts at a large random offset, so this only matters under MockClock.)
        await trio.sleep(1)
        async with await connect(srv) as hog:
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            payload = b"ECHO " + b"x" * 60_000 + b"\r\n"  # a reply as large as the command
            sent = 0
            with trio.move_on_after(10 * SEND_STALL_S) as guard:
                while True:
                    before = trio.current_time()
                    try:
                        await hog.send_all(payload)
                    except trio.BrokenResourceError:
                        break  # the server closed us (a reset: our unread input was dropped)
                    sent += 1
                    assert sent < 10_000, "the server never stopped reading"
            assert not guard.cancelled_caught, "the stalled connection was never closed"
            closed = trio.current_time()
            # the send that waited (the server had stopped reading: it was blocked sending
            # replies nobody took) ended when the server gave up on us
            stall = closed - before
            # closed by the stall rule (not the 10 s idle rule: a blocked send is busy), after
            # SEND_STALL_S of not taking replies
            assert SEND_STALL_S <= stall <= SEND_STALL_S + 3 * REAP_EVERY_S, stall
            assert srv.stalled_closed == 1 and srv.idle_closed == 0
        assert not srv.connections
        async with await connect(srv) as other:  # and the server serves on
            await ask(other, b"PING\r\n", b"+PONG\r\n")


# -- stop() ---------------------------------------------------------------------------------------


async def test_stop_closes_idle_connections_at_once_and_lets_a_busy_one_finish(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path, idle_timeout=300) as srv:
        roster = srv.roster
        idle = [await connect(srv) for _ in range(3)]
        busy = await connect(srv)
        try:
            for s in idle:
                await ask(s, b"PING\r\n", b"+PONG\r\n")
            # busy: blocked in EVENTS.READ until a presence event arrives
            await busy.send_all(b"EVENTS.READ $ BLOCK 0\r\n")
            await trio.sleep(5)
            assert len(srv.connections) == 4
            t0 = trio.current_time()
            stopped: list[float] = []

            async def stop() -> None:
                await srv.stop(grace_s=60)
                stopped.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop)
                for s in idle:
                    assert await closed_at(s) == t0  # no time passed
                assert not stopped  # still waiting for the busy one
                await trio.sleep(20)
                assert not stopped
                # new connections are refused while stopping
                with pytest.raises(OSError):
                    late = await connect(srv)
                    await late.aclose()
                # the event the busy one waits for: it gets its answer, then is closed
                ctx = srv.ctx
                ticket = resp_module.commands.presence_report(
                    ctx, {"uid": "stop_u1", "device_flag": 0, "online": 1})
                # The log writes in a worker thread, which autojump cannot see: while it runs,
                # every task looks blocked and the clock would jump to the next deadline (the
                # stop's grace). No virtual time passes while it writes.
                clock.autojump_threshold = math.inf
                await roster.settle(ticket)
                clock.autojump_threshold = AUTOJUMP_S
                got = b""
                while True:
                    chunk = await busy.receive_some()
                    if not chunk:
                        break
                    got += chunk
                assert got.startswith(b"*1\r\n*6\r\n"), got
                assert b"stop_u1" in got
            assert stopped and stopped[0] - t0 == 20  # once the busy one finished, not at 60
            assert not srv.connections
        finally:
            for s in [*idle, busy]:
                await s.aclose()


async def test_stop_closes_a_busy_connection_after_the_grace(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path) as srv, await connect(srv) as busy:
        await busy.send_all(b"EVENTS.READ $ BLOCK 0\r\n")
        await trio.sleep(1)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(srv.stop, 15)
            t = await closed_at(busy)
        assert t - t0 == pytest.approx(15, abs=0.01)
        assert not srv.connections


async def test_auth_required_in_process(
        tmp_path: Path, clock: trio.testing.MockClock) -> None:
    async with resp_server(tmp_path, token=TOKEN) as srv, await connect(srv) as s:
        await ask(s, b"CHECK u g 2\r\n", b"-NOAUTH Authentication required.\r\n")
        await ask(s, b"AUTH " + TOKEN.encode() + b"\r\nCHECK u g 2\r\n", b"+OK\r\n:5\r\n")
