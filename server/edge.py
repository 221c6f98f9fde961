"""The HTTP edge: our own accept loop, and hypercorn's HTTP/1.1 protocol run on each connection
with deadlines, a connection cap and a close path that cannot be cancelled away.

Why not hypercorn's ``worker_serve``/``TCPServer`` as they are
---------------------------------------------------------------
* **A close that never happened.** hypercorn closes a connection (``Connection: close``, HTTP/1.0,
  an answer given before the body arrived) from ``H11Protocol._maybe_recycle``, which runs inside
  the application's own ``send()``. quart-trio answers the ``http.disconnect`` that
  ``_maybe_recycle`` delivers first by cancelling its request nursery — the very task doing the
  close — so ``TCPServer._close`` died at its first checkpoint, the socket stayed open, and the
  reader went on feeding the unread body to a request that no longer existed (17 GB in 15 s after
  a 413). Here every close runs shielded, and the reader is cancelled by it.
* **The disconnect could block forever.** hypercorn hands request messages to the application
  through a 10-slot channel and puts ``http.disconnect`` into the same channel; an application
  that answered without reading a body left it full, so the close path hung. :class:`Inbox`
  delivers the disconnect without waiting.
* **A half-closed client lost its answer.** hypercorn reports a read EOF as "the peer has gone",
  and quart-trio then cancels the request (a POST's write was applied, its answer never sent). A
  client that shuts down its sending side after a complete request still reads: here such an EOF
  lets the answer go out first, and then the connection closes.
* **No header or body deadline**, and its keep-alive timer ran in that same cancelled nursery. The
  read deadline here follows the connection's phase: headers (from accept, or from the first byte
  of a later request), body, idle keep-alive; a request being answered has none. A peer that
  stops reading gets ``idle_timeout`` per write.
* **Descriptors.** ``trio.serve_listeners`` accepts without a cap and logs EMFILE with a traceback
  every 0.1 s. Here a connection slot is taken before ``accept()``, so beyond the cap clients wait
  in the kernel's backlog; accept errors are logged once per incident, with a count when it ends.

HTTP/2 (h2c upgrade, prior knowledge) is not offered: every Roster client speaks HTTP/1.1, and one
protocol keeps these rules in one place.
"""

from __future__ import annotations

import errno
import logging
import math
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup, _handle
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr, repr_socket_addr

from server.config import Settings
from server.errors import RequestTimeout
from server.http import error_body

log = logging.getLogger("roster")

#: descriptors kept back from HTTP clients when the cap is derived (see derived_max_connections)
FD_RESERVE: Final = 64
#: bytes read from a socket at once
MAX_RECV: Final = 2**16
#: accept() errors that mean "out of descriptors or buffers": wait and retry, never stop serving
CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: the longest pause between accept() retries during such an incident
ACCEPT_BACKOFF_MAX_S: Final = 1.0

Phase = Literal["header", "body", "idle", "busy"]


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings, nofile: int) -> EdgeLimits:
        resp_clients = settings.resp_max_clients if settings.resp_port is not None else 0
        return cls(settings.http_header_timeout, settings.http_body_timeout,
                   settings.http_idle_timeout,
                   settings.http_max_connections or derived_max_connections(nofile, resp_clients))


def derived_max_connections(nofile: int, resp_clients: int) -> int:
    """HTTP connections at once when ``--http-max-connections`` is 0, from the descriptor limit.

    ``FD_RESERVE`` descriptors are kept for everything that is not a client: the open log segment
    and the next one, snapshot files being written and read, the data-dir lock, the listening
    sockets, stdio and trio's own. RESP clients get up to a quarter of the rest (the RESP lane
    refuses beyond its own ``--resp-max-clients``), HTTP the remainder, and always at least one.
    A client beyond the cap waits in the kernel's listen backlog instead of taking a descriptor
    the log may need.
    """
    spare = max(nofile - FD_RESERVE, 0)
    return max(1, spare - min(resp_clients, spare // 4))


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (once, at start); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        else:
            log.info("raised the open-file limit from %d to %d", soft, hard)
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class AcceptErrors:
    """accept() failing for lack of descriptors is one incident: logged when it starts and, with
    the number of failed accepts, when it ends; meanwhile accepts back off (no log flood)."""

    def __init__(self) -> None:
        self.failures = 0
        self.incidents = 0
        self._since = 0.0

    def failed(self, exc: OSError) -> float:
        """Note a failed accept; return how long to wait before the next one."""
        if self.failures == 0:
            self.incidents += 1
            self._since = trio.current_time()
            log.warning("cannot accept HTTP connections: %s; retrying until descriptors are "
                        "free (clients wait in the listen backlog)", exc.strerror or exc)
        self.failures += 1
        return min(0.01 * 2.0 ** min(self.failures, 10), ACCEPT_BACKOFF_MAX_S)

    def accepted(self) -> None:
        if self.failures:
            log.warning("accepting HTTP connections again after %d failed accepts over %.1f s",
                        self.failures, trio.current_time() - self._since)
            self.failures = 0


class InFlight:
    """Requests under way, so shutdown can wait for exactly those and cancel the rest.

    A request counts from the moment its headers are parsed (the connection counts it, with no
    checkpoint between the parse and the count) until its answer is complete, and again while
    its application task runs (the app wrapper counts that): zero means no request on any
    connection is being answered.
    Counting at the application alone left a gap: a request parsed just before shutdown but
    whose task had not started yet looked like none, was cancelled, and got hypercorn's empty
    500 instead of its answer.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = trio.Event()
        self._idle.set()

    def begin(self) -> None:
        if self.count == 0:
            self._idle = trio.Event()
        self.count += 1

    def end(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    def wrap(self, app: Any) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)  # type: ignore[no-any-return]
            self.begin()
            try:
                await app(scope, receive, send)
            finally:
                self.end()

        return asgi

    async def drained(self) -> None:
        while self.count:
            await self._idle.wait()


class Inbox:
    """The request messages of one ASGI call. Unlike hypercorn's bare channel, the disconnect
    never waits for room: it closes the channel, so the application reads what was queued and
    then ``http.disconnect``, and a reader blocked on a full channel is released."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](size)

    async def put(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.disconnect":
            self._send.close()
            return
        try:
            await self._send.send(message)
        except trio.ClosedResourceError:
            pass  # the request has ended; the rest of its body is dropped

    async def receive(self) -> dict[str, Any]:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return {"type": "http.disconnect"}


class AppTasks(TaskGroup):
    """hypercorn's per-connection task group, with :class:`Inbox` as the request channel."""

    async def spawn_app(self, app: AppWrapper, config: HypercornConfig, scope: Any,
                        send: Callable[[Any], Awaitable[None]],
                        ) -> Callable[[Any], Awaitable[None]]:
        inbox = Inbox(config.max_app_queue_size)
        assert self._nursery is not None
        handle: Callable[..., Awaitable[None]] = _handle
        self._nursery.start_soon(handle, app, config, scope, inbox.receive, send,
                                 trio.to_thread.run_sync, trio.from_thread.run)
        return inbox.put


class EdgeH11(H11Protocol):
    """hypercorn's HTTP/1.1 protocol with the rules of the edge."""

    #: the answer under way has no Content-Length: a stream (``/events``) that ends when the
    #: client goes, rather than an answer a half-closed client is still waiting for
    streaming = False

    async def _check_protocol(self, event: h11.Request) -> None:
        """No upgrade to HTTP/2: the request is answered as HTTP/1.1 (an ``Upgrade: h2c``
        header is ignored, as RFC 9110 allows; ``PRI *`` reaches the app as an unknown route)."""

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and event.status_code >= 200:
            self.streaming = not any(name.lower() == b"content-length"
                                     for name, _ in event.headers)
            if (isinstance(self.connection, h11.Connection)
                    and self.connection.their_state is not h11.DONE):
                # Answered before the request body has arrived (401/403/404/405/413, any
                # framing): close after the answer instead of reading the rest of that body.
                event = Response(stream_id=event.stream_id, status_code=event.status_code,
                                 headers=[*event.headers, (b"connection", b"close")])
        await super().stream_send(event)


def timeout_answer(what: str, seconds: float) -> bytes:
    """The whole 408 answer, written past h11 (whose request may be half-parsed)."""
    body = error_body(RequestTimeout(f"{what} not complete within {seconds:g} s"))
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))


class Connection:
    """One accepted HTTP connection: reads with a deadline per phase, writes with a deadline,
    and closes once (shielded)."""

    def __init__(self, app: AppWrapper, config: HypercornConfig, context: WorkerContext,
                 state: LifespanState, stream: trio.SocketStream, limits: EdgeLimits,
                 in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight
        #: this connection's current request is counted in ``in_flight``
        self._counted = False
        self.config = config
        self.context = context
        self.state = state
        self.stream = stream
        self.limits = limits
        self.closed = False
        #: when the request now being received started (accept, or its first byte); None: idle
        self.header_from: float | None = trio.current_time()
        self.idle_since = self.header_from
        self.request_from = self.header_from
        #: the answer to the current request has started (a timeout can no longer answer 408)
        self.answering = False
        self.protocol: EdgeH11
        self._send_lock = trio.Lock()
        self._reader = trio.CancelScope()
        self._read: trio.CancelScope | None = None
        self._done = trio.Event()

    async def run(self) -> None:
        sock = self.stream.socket
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with AppTasks() as tasks:
                self.protocol = EdgeH11(self.app, self.config, self.context, tasks,
                                        ConnectionState(self.state.copy()), False, client, server,
                                        self.protocol_send)
                with self._reader:
                    await self._read_loop()
                with trio.CancelScope(shield=True):
                    await self.protocol.handle(Closed())  # the request, if any, is told
                    await self.close()
        except OSError:
            pass
        finally:
            with trio.CancelScope(shield=True):
                await self.close()

    # -- phases and deadlines ---------------------------------------------------------------

    def phase(self) -> Phase:
        conn = self.protocol.connection
        if not isinstance(conn, h11.Connection):
            return "busy"
        theirs = conn.their_state
        if theirs is h11.IDLE:
            return "idle" if self.header_from is None else "header"
        if theirs is h11.SEND_BODY:
            return "body"
        return "busy"

    def deadline(self, phase: Phase) -> float:
        if phase == "header":
            assert self.header_from is not None
            return self.header_from + self.limits.header_timeout
        if phase == "body":
            return self.request_from + self.limits.body_timeout
        if phase == "idle":
            return self.idle_since + self.limits.idle_timeout
        return math.inf

    def idle(self) -> bool:
        """Between requests with nothing of the next one received (shutdown may close it)."""
        if self.closed or not hasattr(self, "protocol"):
            return False
        return self.protocol.stream is None and self.phase() in (
            "idle", "header") and not self.protocol.connection.trailing_data[0]

    async def _read_loop(self) -> None:
        while not self.closed:
            data: bytes | None = None
            with trio.CancelScope(deadline=self.deadline(self.phase())) as self._read:
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # reset by the peer, or closed by us
            self._read = None
            if data is None:  # the deadline passed, or moved while we waited: look again
                if self._read_expired():
                    await self._expire()
                    return
                continue
            if not data:
                await self._peer_done_sending()
                return
            if self.header_from is None and self.phase() == "idle":
                self.header_from = trio.current_time()
            await self.protocol.handle(RawData(data))

    def _read_expired(self) -> bool:
        return not self.closed and trio.current_time() >= self.deadline(self.phase())

    async def _expire(self) -> None:
        phase = self.phase()
        if phase == "idle":
            await self.close()
            return
        if not self.answering:
            what = "request headers" if phase == "header" else "request body"
            seconds = self.limits.header_timeout if phase == "header" else \
                self.limits.body_timeout
            await self._write(timeout_answer(what, seconds))
        await self.close()

    async def _peer_done_sending(self) -> None:
        """EOF: a client that half-closed after a complete request still gets its answer; at
        any other point (or during a stream, which has no end to wait for) the peer has gone
        and the connection closes at once."""
        if (self.phase() == "busy" and self.protocol.stream is not None
                and not (self.answering and self.protocol.streaming)):
            await self.protocol.handle(RawData(b""))  # h11: their side is closed, no recycling
            await self._done.wait()
        else:
            await self.close()

    # -- what the protocol asks of the connection ------------------------------------------

    async def protocol_send(self, event: Event) -> None:
        # Runs inside the application's send(): shielded, so a cancelled request (quart-trio
        # cancels its nursery on disconnect) cannot abandon a write or a close half-way.
        with trio.CancelScope(shield=True):
            if isinstance(event, RawData):
                await self._write(event.data)
            elif isinstance(event, Closed):
                await self.close()
                await self.protocol.handle(Closed())
            elif isinstance(event, Updated):
                self._updated(event.idle)

    def _updated(self, idle: bool) -> None:
        now = trio.current_time()
        if idle:  # the answer is complete and the connection kept: wait for the next request
            self._uncount()
            self.idle_since = now
            self.header_from = now if self.protocol.connection.trailing_data[0] else None
        else:  # a request's headers are in
            # (a request parsed from what was buffered after the close, e.g. a shutdown closing
            # an idle connection, is never answered here: counting it would hold the drain)
            if not self._counted and not self.closed:
                self._counted = True
                self.in_flight.begin()
            self.request_from = now
            self.header_from = None
            self.answering = False
            self.protocol.streaming = False
        if self._read is not None:
            self._read.deadline = self.deadline(self.phase())

    async def _write(self, data: bytes) -> None:
        gone = False
        async with self._send_lock:
            if self.closed:
                return
            with trio.move_on_after(self.limits.idle_timeout) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    gone = True
            self.answering = True
        if gone or scope.cancelled_caught:  # the peer has gone, or stopped reading
            await self.close()
            await self.protocol.handle(Closed())

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.in_flight.end()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._uncount()  # a request cut off by the close is no longer under way
        with trio.CancelScope(shield=True):
            try:
                # A FIN before the close, unless a write is under way (a peer that stopped
                # reading): then the close alone ends it.
                self._send_lock.acquire_nowait()
            except trio.WouldBlock:
                pass
            else:
                try:
                    await self.stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                finally:
                    self._send_lock.release()
            await self.stream.aclose()
        self._reader.cancel()
        self._done.set()


class Edge:
    """The accept loops of the HTTP port and the connections they started."""

    def __init__(self, app: AppWrapper, config: HypercornConfig, context: WorkerContext,
                 state: LifespanState, limits: EdgeLimits, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight
        self.config = config
        self.context = context
        self.state = state
        self.limits = limits
        self.slots = trio.Semaphore(limits.max_connections)
        self.errors = AcceptErrors()
        self.connections: set[Connection] = set()

    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self.slots.acquire()  # beyond the cap, clients wait in the listen backlog
            try:
                stream = await listener.accept()
            except OSError as exc:
                self.slots.release()
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                await trio.sleep(self.errors.failed(exc))
                continue
            self.errors.accepted()
            nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = Connection(self.app, self.config, self.context, self.state, stream, self.limits,
                          self.in_flight)
        self.connections.add(conn)
        try:
            await conn.run()
        except Exception:  # a protocol bug must cost one connection, never the server
            log.exception("HTTP connection failed")
        finally:
            self.connections.discard(conn)
            self.slots.release()

    async def close_idle(self) -> None:
        for conn in list(self.connections):
            if conn.idle():
                await conn.close()


async def serve_http(app: AppWrapper, config: HypercornConfig, limits: EdgeLimits, *,
                     sockets: Sockets, shutdown_trigger: Callable[[], Awaitable[None]],
                     in_flight: InFlight | None = None,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on the bound, listening ``sockets`` until ``shutdown_trigger`` returns.

    Then the port closes, idle keep-alive connections close, and requests in flight finish in
    their connections (each closes after its answer). ``in_flight`` counts those requests; the
    caller waits for its ``drained()`` and bounds that wait by cancelling.
    """
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        edge = Edge(app, config, context, lifespan_state, limits, in_flight or InFlight())
        log.info("http: at most %d connections; deadlines: headers %g s, body %g s, idle %g s",
                 limits.max_connections, limits.header_timeout, limits.body_timeout,
                 limits.idle_timeout)
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                     for sock in sockets.insecure_sockets]
        binds = [f"http://{repr_socket_addr(sock.family, sock.getsockname())}"
                 for sock in sockets.insecure_sockets]
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(edge.accept_loop, listener, connections)
                task_status.started(binds)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            await context.terminated.set()  # answers from now on close their connection
            await edge.close_idle()
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
