"""The Redis-protocol (RESP) lane: the channel API for every Redis client, pipelined.

Why it exists: an HTTP request through hypercorn costs about a millisecond of CPU, the permission
decision a microsecond. Over RESP a gateway pays for a few parsed bytes per check, pipelines as
deep as it likes, and uses whatever Redis client its language has (redis-cli, redis-py, go-redis,
Jedis, ioredis). The commands are thin adapters over ``server/commands.py`` — the same
validation, the same error codes, the same ops and the same one-command-one-record durability as
their HTTP twins — so this module only decodes arguments and encodes replies.

Design notes
------------
* **One task per connection, one chunk at a time.** A ``recv`` yields a chunk of bytes; every
  complete command in it is run in order and its reply appended to an output list; then the
  chunk's writes are settled (below) and the replies are sent with one ``send``. A pipelined
  client therefore costs one wake-up, one parse and one send per chunk, not per command.
* **Pipelined writes share a group commit.** A write command is checked, logged and applied
  synchronously (``Roster.submit``) and leaves a ticket; before the chunk's replies go out the
  connection waits once for the newest ticket to be durable (``Roster.settle``), so a hundred
  pipelined ``WL.SET`` are one ``fdatasync``, and no ``+OK`` leaves before its record is durable.
  Reads in the same chunk see the writes before them (as in Redis); if the log fails, every write
  reply of the chunk becomes ``-UNAVAILABLE`` and the server stops.
* **Bounded everything.** The parser bounds unparsed input, bulk length and argument count
  (``server/resp_wire.py``); replies are flushed whenever ``OUTPUT_FLUSH`` bytes are pending, and
  a connection that reads no replies blocks in ``send`` (so it stops being read: backpressure)
  until the reaper closes it after ``SEND_STALL_S``. A protocol error is answered, then only that
  connection is closed.
* **The reaper** closes connections idle for ``--resp-idle-timeout`` from one task that looks at
  per-connection timestamps once a second, so the hot loop pays no cancel scope per ``recv``. It
  also closes, with an ``-ERR`` line, a connection that started a command and has not finished
  sending it within ``--resp-command-timeout`` (a slow sender holds no place for ever).
* **Accept failures** (out of descriptors or memory) are logged once per incident with a count,
  and the accept loop backs off (doubling up to ``ACCEPT_BACKOFF_MAX_S``) instead of spinning on a
  listener that stays readable; waiting clients stay in the kernel's backlog until a slot frees.
* **Auth** follows Redis: with a manager token, a connection must ``AUTH <token>`` (or
  ``AUTH default <token>``, or ``HELLO 3 AUTH default <token>``) before anything but ``PING``,
  ``HELLO``, ``AUTH`` and ``QUIT``; the compare is constant-time.
* **Errors** are ``-ERR <code> <msg>`` with the HTTP error ``code`` as the first word (``-ERR
  channel_not_found channel 'g1' of type 2 does not exist``), ``-NOAUTH``, ``-WRONGPASS``,
  ``-UNAVAILABLE`` (the log failed), ``-RESET <lsn>`` (``EVENTS.READ`` lost its place).

The command table is ``COMMANDS`` at the bottom: one row per command name.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server import commands
from server.commands import Command, Context
from server.errors import ApiError, BadRequest, NotLeader, Unavailable
from server.http import token_ok
from server.ops import FLAG_NAMES
from server.permission import REASON_NAMES, decide
from server.resp_wire import (
    NIL2,
    NIL3,
    OK,
    ErrorReply,
    ProtocolError,
    RequestParser,
    encode,
    int_array,
    integer,
)
from server.schema import (
    CHANNEL_TYPES_BYTES,
    VALID_ID_BYTES,
    Field,
    check_channel_type,
    check_flat,
    id_from_bytes,
    int_from_text,
)
from server.service import Ticket
from server.version import version
from wal import LogFailedError

log = logging.getLogger("roster")

#: bytes asked of the kernel per receive
RECV_BYTES: Final = 256 * 1024
#: replies are sent once this many bytes are pending, even mid-chunk
OUTPUT_FLUSH: Final = 1024 * 1024
#: a connection that has not taken a reply for this long is closed (it stopped reading)
SEND_STALL_S: Final = 60.0
#: how often the reaper looks for idle and stalled connections
REAP_EVERY_S: Final = 1.0
#: the longest WAITLSN timeout (ms)
MAX_WAITLSN_MS: Final = 60_000
#: the longest EVENTS.READ COUNT
MAX_EVENTS_COUNT: Final = 10_000
#: accept errors that mean "no capacity now" (a descriptor, memory): wait, never give up
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                           errno.ENOMEM})
#: the first and the longest pause after a failed accept
ACCEPT_BACKOFF_MIN_S: Final = 0.05
ACCEPT_BACKOFF_MAX_S: Final = 1.0

_INTEGER_KINDS: Final = frozenset({"channel_type", "flag", "int"})


class Refusal(Exception):
    """A reply-level error of this adapter (syntax, arity, auth): ``-<prefix> <msg>``."""

    def __init__(self, msg: str, code: str, prefix: str = "ERR") -> None:
        super().__init__(msg)
        self.msg, self.code, self.prefix = msg, code, prefix

    def reply(self) -> bytes:
        return ErrorReply(self.prefix, self.msg).encode()


# -- one connection --------------------------------------------------------------------------


class Connection:
    __slots__ = ("authed", "busy", "closing", "frame_since", "id", "last_seen", "name", "out",
                 "pending_events", "pending_lsn", "resp3", "scope", "sending_since", "timed_out",
                 "write_slots")

    def __init__(self, conn_id: int, authed: bool, now: float) -> None:
        self.id = conn_id
        self.authed = authed
        self.resp3 = False
        self.name: str | None = None
        self.scope = trio.CancelScope()
        #: trio time of the last byte received (the idle timeout counts from it)
        self.last_seen = now
        #: trio time the send in progress started; None when not sending
        self.sending_since: float | None = None
        #: running a chunk (or blocked in EVENTS.READ): not idle, not to be cut by a drain
        self.busy = False
        self.closing = False
        #: trio time the unfinished command in the parser began arriving; None when there is none
        self.frame_since: float | None = None
        #: closed by the reaper for taking longer than the command timeout to send a command
        self.timed_out = False
        # the chunk in progress: replies, the indexes of write replies, the newest ticket
        self.out: list[bytes] = []
        self.write_slots: list[int] = []
        self.pending_lsn = 0
        self.pending_events = False

    def close(self) -> None:
        self.scope.cancel()


Handler = Callable[["RespServer", Connection, list[bytes]], bytes]
AsyncHandler = Callable[["RespServer", Connection, list[bytes]], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Grammar:
    """How a RESP command's arguments map onto a command's named arguments.

    ``positional`` names the leading arguments; ``rest`` collects the remaining ones into a list
    (at least ``min_rest``); ``options`` are trailing ``NAME value`` pairs (name case-insensitive);
    ``fixed`` are constant arguments the RESP spelling implies (``SUB.SET`` is ``reset=1``).
    """

    positional: tuple[str, ...]
    rest: str | None = None
    min_rest: int = 0
    options: dict[bytes, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    def arity_ok(self, argc: int) -> bool:
        n = len(self.positional)
        if self.rest is None and not self.options:
            return argc == n
        return argc >= n + self.min_rest

    def decode(self, args: Sequence[bytes], integers: frozenset[str]) -> dict[str, Any]:
        """The mapping the command validates: text decoded, the ``integers`` parsed."""
        out: dict[str, Any] = dict(self.fixed)
        n = len(self.positional)
        end = len(args)
        if self.rest is None:
            # Only options follow the positional arguments: NAME value pairs, in any order.
            for i in range(n, end, 2):
                self._option(out, args[i], args[i + 1] if i + 1 < end else None, integers)
        elif self.options:
            # Options trail a list of uids: read NAME value pairs from the end. (So a uid that
            # is spelled like an option and followed by a number must not come last.)
            while end - 2 >= n + self.min_rest and args[end - 2].upper() in self.options:
                self._option(out, args[end - 2], args[end - 1], integers)
                end -= 2
        for name, raw in zip(self.positional, args, strict=False):
            out[name] = _value(raw, name, integers)
        if self.rest is not None:
            out[self.rest] = [_text(a) for a in args[n:end]]
        return out

    def _option(self, out: dict[str, Any], key: bytes, raw: bytes | None,
                integers: frozenset[str]) -> None:
        name = self.options.get(key.upper())
        if name is None:
            raise Refusal(f"syntax error ({_shown(key)} is not an option here)", "syntax")
        if raw is None:
            raise Refusal(f"syntax error ({_shown(key)} needs a value)", "syntax")
        if name in out:
            raise Refusal(f"syntax error ({_shown(key)} is given twice)", "syntax")
        out[name] = _value(raw, name, integers)


def integer_fields(fields: Sequence[Field]) -> frozenset[str]:
    """Names of the arguments that RESP sends as text but the command takes as integers."""
    return frozenset(f.name for f in fields if f.kind in _INTEGER_KINDS)


def _value(raw: bytes, name: str, integers: frozenset[str]) -> Any:
    return int_from_text(raw, name) if name in integers else _text(raw)


def _text(raw: bytes) -> str:
    # Undecodable bytes become lone surrogates, which every id rule refuses with its own code.
    return raw.decode("utf-8", "surrogateescape")


def _shown(raw: bytes) -> str:
    return repr(raw.decode("utf-8", "replace")[:40])


@dataclass(slots=True)
class Row:
    """One RESP command: its handler, and whether it may run before AUTH."""

    handler: Handler | None = None
    async_handler: AsyncHandler | None = None
    open: bool = False
    #: the command's lower-case name (its metrics label); set by the table below
    name: str = ""


# -- the server ------------------------------------------------------------------------------


class RespServer:
    """Listens on the RESP port and serves connections until ``stop``."""

    def __init__(self, ctx: Context, host: str, port: int, max_clients: int,
                 idle_timeout: float, token: str | None, command_timeout: float = 30.0) -> None:
        self.ctx = ctx
        self.roster = ctx.roster
        self.host, self.port = host, port
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        #: seconds a started command may take to arrive in full (0: no limit)
        self.command_timeout = command_timeout
        self.token = token.encode() if token else None
        self.connections: set[Connection] = set()
        self.addresses: list[str] = []
        self._listeners: list[trio.SocketListener] = []
        self.started = time.time()
        self._next_id = 0
        self._accepting = trio.CancelScope()
        self._drained = trio.Event()
        self._all_closed = trio.Event()
        self.stopping = False
        # counters (plain attributes and dicts: /metrics and INFO read them)
        self.calls: dict[str, int] = dict.fromkeys(_ROWS, 0)
        self.calls["unknown"] = 0
        #: the clock reading of the chunk being run (its CHECKs share one instant)
        self.now_ms = 0
        self.failed: dict[tuple[str, str], int] = {}
        self.connections_total = 0
        self.rejected = 0
        self.protocol_errors = 0
        self.idle_closed = 0
        self.stalled_closed = 0
        self.command_timeouts = 0
        #: accepts that failed for lack of capacity, ever; and those of the running incident
        self.accept_errors = 0
        self._accept_incident = 0
        self._accept_incident_since = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def listen(self) -> None:
        """Bind the port (raises ``OSError``); ``serve`` then accepts on it."""
        self._listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.addresses = []
        for listener in self._listeners:
            addr = listener.socket.getsockname()
            host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            self.addresses.append(f"{host}:{addr[1]}")

    async def serve(self, *, task_status: trio.TaskStatus[list[str]]
                    = trio.TASK_STATUS_IGNORED) -> None:
        if not self._listeners:
            await self.listen()
        listeners = self._listeners
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reap)
            with self._accepting:
                task_status.started(self.addresses)
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(self._accept_loop, listener, nursery)
            for listener in listeners:
                await listener.aclose()
            await self._drained.wait()
            nursery.cancel_scope.cancel()

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let every connection finish the chunk it is running, then close all.

        Idle connections (waiting for a command) are closed at once; a connection blocked in
        ``EVENTS.READ ... BLOCK`` ends when the event hub closes."""
        self.stopping = True
        self._accepting.cancel()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        if self.connections:
            with trio.move_on_after(grace_s):
                await self._all_closed.wait()  # each busy one leaves after its chunk
        for conn in list(self.connections):
            conn.close()
        self._drained.set()

    async def _accept_loop(self, listener: trio.SocketListener,
                           handlers: trio.Nursery) -> None:
        backoff = ACCEPT_BACKOFF_MIN_S
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                self._accept_failed(exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX_S)
                continue
            if self._accept_incident:
                self._accept_recovered()
            backoff = ACCEPT_BACKOFF_MIN_S
            handlers.start_soon(self._handle, stream)

    def _accept_failed(self, exc: OSError) -> None:
        self.accept_errors += 1
        if not self._accept_incident:
            self._accept_incident_since = trio.current_time()
            log.warning("RESP accept failed: %s (%d connections open); new connections wait in "
                        "the backlog, retrying with a growing pause up to %.1f s",
                        os.strerror(exc.errno or 0), len(self.connections), ACCEPT_BACKOFF_MAX_S)
        self._accept_incident += 1

    def _accept_recovered(self) -> None:
        log.warning("RESP accepting again after %d failed accept(s) over %.1f s",
                    self._accept_incident, trio.current_time() - self._accept_incident_since)
        self._accept_incident = 0

    async def _reap(self) -> None:
        while True:
            await trio.sleep(REAP_EVERY_S)
            now = trio.current_time()
            idle = self.idle_timeout
            command = self.command_timeout
            for conn in list(self.connections):
                since = conn.sending_since
                started = conn.frame_since
                if since is not None and now - since > SEND_STALL_S:
                    self.stalled_closed += 1
                    conn.close()
                elif command and started is not None and now - started > command:
                    self.command_timeouts += 1
                    conn.timed_out = True
                    conn.close()
                elif idle and not conn.busy and now - conn.last_seen > idle:
                    self.idle_closed += 1
                    conn.close()

    # -- a connection ------------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        # The connection runs on the plain socket, non-blocking, with trio's I/O waits called
        # directly: trio's socket methods add two scheduler round trips to every call, which was
        # a measurable share of an unpipelined CHECK.
        raw = socket.socket(fileno=stream.socket.detach())
        raw.setblocking(False)
        try:
            if len(self.connections) >= self.max_clients or self.stopping:
                self.rejected += 1
                with trio.move_on_after(1):
                    await _send_all(raw, b"-ERR max number of clients reached\r\n")
                return
            self._next_id += 1
            self.connections_total += 1
            conn = Connection(self._next_id, self.token is None, trio.current_time())
            self.connections.add(conn)
            try:
                with conn.scope:
                    await self._serve(conn, raw)
                if conn.timed_out:
                    with trio.move_on_after(1):
                        await _send_all(raw, ErrorReply(
                            "ERR", f"command not received in full within "
                            f"{self.command_timeout:g} s").encode())
            finally:
                self.connections.discard(conn)
                if self.stopping and not self.connections:
                    self._all_closed.set()
        except OSError:
            pass  # the peer went away (reset, broken pipe): nothing to answer
        except Exception:  # a bug must cost one connection, never the server
            log.exception("RESP connection failed")
        finally:
            trio.lowlevel.notify_closing(raw)
            raw.close()

    async def _serve(self, conn: Connection, raw: socket.socket) -> None:
        parser = RequestParser()
        wait_readable = trio.lowlevel.wait_readable
        while not conn.closing and not self.stopping:
            try:
                data = raw.recv(RECV_BYTES)
            except BlockingIOError:
                conn.busy = False
                await wait_readable(raw)
                continue
            if not data:
                return
            conn.busy = True
            conn.last_seen = trio.current_time()
            parser.feed(data)
            try:
                batch = parser.commands()
            except ProtocolError as exc:
                await self._protocol_error(conn, raw, exc)
                return
            i, n = 0, len(batch)
            while i < n and not conn.closing:
                i, awaiting = self._run(conn, batch, i)
                if i < n:
                    await self._flush(conn, raw)  # what came before is answered first
                if awaiting is not None:
                    # _run checked the connection may run it (auth) before handing it over.
                    self.calls[awaiting.name] += 1
                    assert awaiting.async_handler is not None
                    conn.out.append(await awaiting.async_handler(self, conn, batch[i]))
                    i += 1
            await self._flush(conn, raw)
            if parser.failed:  # broken input after the commands just answered: answer it now
                try:
                    parser.commands()
                except ProtocolError as exc:
                    await self._protocol_error(conn, raw, exc)
                return
            # A command left unfinished: the deadline counts from the chunk it began in.
            if not parser.buffered:
                conn.frame_since = None
            elif batch or conn.frame_since is None:
                conn.frame_since = conn.last_seen
            # Yield after every reply. Under a flood recv never has to wait, so this is what
            # lets the other connections run; and with many request-response clients it is
            # cheaper than it looks: by the time this task runs again its client has usually
            # sent the next command, so the recv finds it instead of failing and registering
            # with epoll (measured: 28k -> 42k CHECK/s at 64 connections, redis-benchmark).
            await trio.lowlevel.checkpoint()

    def _run(self, conn: Connection, batch: list[list[bytes]],
             start: int) -> tuple[int, Row | None]:
        """Run the commands of ``batch`` from ``start`` on, appending their replies, until one
        needs to await (``EVENTS.READ``) or the pending output is large.

        Returns where it stopped and, if it stopped at a command that awaits (and that this
        connection may run), that command's row for the caller to run."""
        table = COMMANDS
        calls = self.calls
        out = conn.out
        size = 0
        now = self.now_ms = self.roster.now_ms()  # the instant of this chunk's checks
        # CHECK is most of a gateway's traffic: a pipelined CHECK whose ids are in the validated
        # cache is answered right here (measured: 0.64 -> 0.35 us of dispatch per command).
        # Anything else, and any CHECK that needs validating, goes through its row.
        ids, types, state, reasons = VALID_ID_BYTES, CHANNEL_TYPES_BYTES, self.ctx.state, _REASONS
        checks = 0
        authed = conn.authed
        for i in range(start, len(batch)):
            argv = batch[i]
            if authed and len(argv) == 4 and (argv[0] == b"CHECK" or argv[0] == b"check"):
                uid, cid, ctype = ids.get(argv[1]), ids.get(argv[2]), types.get(argv[3])
                if uid is not None and cid is not None and ctype is not None:
                    out.append(reasons[decide(state, uid, cid, ctype, now)])
                    checks += 1
                    continue
            row = table.get(argv[0]) or table.get(argv[0].upper())
            if row is None:
                reply = self._unknown(argv)
            elif row.handler is None and (conn.authed or row.open):
                calls["check"] += checks
                return i, row  # a command that awaits: the caller runs it
            else:
                calls[row.name] += 1
                if not conn.authed and not row.open:
                    self._fail(row.name, "noauth")
                    reply = b"-NOAUTH Authentication required.\r\n"
                else:
                    assert row.handler is not None
                    reply = row.handler(self, conn, argv)
                    authed = conn.authed  # AUTH / HELLO may have just opened the connection
            out.append(reply)
            size += len(reply)
            if size > OUTPUT_FLUSH or conn.closing:
                calls["check"] += checks
                return i + 1, None
        calls["check"] += checks
        return len(batch), None

    async def _protocol_error(self, conn: Connection, raw: socket.socket,
                              exc: ProtocolError) -> None:
        """Answer what came before, then the error; the caller closes the connection."""
        self.protocol_errors += 1
        await self._flush(conn, raw)
        await _send_all(raw, ErrorReply("ERR", f"protocol error: {exc}").encode())

    async def _flush(self, conn: Connection, raw: socket.socket) -> None:
        """Settle the pending writes, then send the pending replies in order."""
        if conn.pending_lsn:
            ticket = Ticket(conn.pending_lsn, conn.pending_events)
            conn.pending_lsn, conn.pending_events = 0, False
            try:
                await self.roster.settle(ticket)
            except Unavailable as exc:
                failed = ErrorReply("UNAVAILABLE", exc.msg).encode()
                for i in conn.write_slots:
                    conn.out[i] = failed
        conn.write_slots.clear()
        if conn.out:
            data = conn.out[0] if len(conn.out) == 1 else b"".join(conn.out)
            conn.out.clear()
            conn.sending_since = trio.current_time()
            await _send_all(raw, data)
            conn.sending_since = None

    # -- running commands ----------------------------------------------------------------------

    def run_write(self, conn: Connection, key: str, cmd: Callable[[], Ticket | None]) -> bytes:
        """Run a write command now; its ``+OK`` stands in the output until the chunk settles."""
        try:
            ticket = cmd()
        except ApiError as exc:
            return self._api_error(key, exc)
        except LogFailedError as exc:  # pragma: no cover - submit turns it into Unavailable
            return self._api_error(key, Unavailable(str(exc)))
        if ticket is not None:
            conn.pending_lsn = max(conn.pending_lsn, ticket.lsn)
            conn.pending_events = conn.pending_events or ticket.has_events
            conn.write_slots.append(len(conn.out))
        return OK

    def _api_error(self, key: str, exc: ApiError) -> bytes:
        self._fail(key, exc.code)
        if isinstance(exc, NotLeader):  # cluster mode: a write sent to a follower
            where = exc.leader_resp or exc.leader_url
            return ErrorReply("READONLY", f"not the leader; leader at {where}").encode()
        prefix = "UNAVAILABLE" if isinstance(exc, Unavailable) else "ERR"
        return ErrorReply(prefix, f"{exc.code} {exc.msg}").encode()

    def _refused(self, key: str, exc: Refusal) -> bytes:
        self._fail(key, exc.code)
        return exc.reply()

    def _fail(self, key: str, code: str) -> None:
        self.failed[key, code] = self.failed.get((key, code), 0) + 1

    def _unknown(self, argv: list[bytes]) -> bytes:
        self.calls["unknown"] += 1
        self._fail("unknown", "unknown_command")
        return ErrorReply("ERR", f"unknown command {_shown(argv[0])}").encode()

    def nil(self, conn: Connection) -> bytes:
        return NIL3 if conn.resp3 else NIL2

    # -- /metrics and INFO -------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("roster_resp_commands", "RESP commands by command",
                                    labels=["command"])
        for name, n in sorted(self.calls.items()):
            calls.add_metric([name], n)
        yield calls
        errors = CounterMetricFamily("roster_resp_errors", "RESP error replies by command and code",
                                     labels=["command", "code"])
        for (name, code), n in sorted(self.failed.items()):
            errors.add_metric([name, code], n)
        yield errors
        yield GaugeMetricFamily("roster_resp_connections", "open RESP connections",
                                value=len(self.connections))
        yield CounterMetricFamily("roster_resp_connections_accepted", "RESP connections accepted",
                                  value=self.connections_total)
        closed = CounterMetricFamily("roster_resp_connections_closed",
                                     "RESP connections closed by the server, by reason",
                                     labels=["reason"])
        closed.add_metric(["max_clients"], self.rejected)
        closed.add_metric(["protocol_error"], self.protocol_errors)
        closed.add_metric(["idle"], self.idle_closed)
        closed.add_metric(["send_stalled"], self.stalled_closed)
        closed.add_metric(["command_timeout"], self.command_timeouts)
        yield closed
        yield CounterMetricFamily("roster_resp_accept_errors",
                                  "RESP accepts that failed for lack of descriptors or memory",
                                  value=self.accept_errors)

    def info(self, section: str) -> str:
        r = self.roster
        wal = r.wal
        counts = r.state.counts()
        port = self.addresses[0].rsplit(":", 1)[1] if self.addresses else ""
        sections: dict[str, list[str]] = {
            "server": [f"roster_version:{version()}", "redis_mode:standalone",
                       f"process_id:{os.getpid()}", f"tcp_port:{port}",
                       f"uptime_in_seconds:{int(time.time() - self.started)}"],
            "clients": [f"connected_clients:{len(self.connections)}",
                        f"maxclients:{self.max_clients}"],
            "stats": [f"total_connections_received:{self.connections_total}",
                      f"total_commands_processed:{sum(self.calls.values())}",
                      f"rejected_connections:{self.rejected}",
                      f"accept_errors:{self.accept_errors}",
                      f"command_timeouts:{self.command_timeouts}",
                      f"protocol_errors:{self.protocol_errors}",
                      *self._command_stats()],
            "persistence": [f"lsn:{wal.last_lsn}", f"durable_lsn:{wal.durable_lsn}",
                            f"fsync:{r.settings.fsync}",
                            f"bytes_since_snapshot:{wal.bytes_since_snapshot}",
                            f"snapshots:{r.snapshots_taken}"],
            "keyspace": [f"channels:{counts['channels']}",
                         f"subscribers:{counts['subscribers']}",
                         f"whitelist:{counts['whitelist']}", f"blacklist:{counts['blacklist']}",
                         f"system_uids:{counts['system_uids']}",
                         f"online_users:{r.state.presence.online_users()}"],
        }
        sections["commandstats"] = self._command_stats()
        wanted = section.lower()
        if wanted in ("", "all", "default", "everything"):
            names = [n for n in sections if n != "commandstats"]
        else:
            names = [wanted] if wanted in sections else []
        return "".join(f"# {n.capitalize()}\r\n" + "".join(f"{line}\r\n" for line in sections[n])
                       + "\r\n" for n in names)

    def _command_stats(self) -> list[str]:
        failed: dict[str, int] = {}
        for (name, _code), n in self.failed.items():
            failed[name] = failed.get(name, 0) + n
        return [f"cmdstat_{name}:calls={n},failed_calls={failed.get(name, 0)}"
                for name, n in sorted(self.calls.items()) if n]


async def _send_all(raw: socket.socket, data: bytes) -> None:
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)
    while sent < len(data):
        await trio.lowlevel.wait_writable(raw)
        try:
            sent += raw.send(view[sent:])
        except BlockingIOError:
            pass


# -- handlers: the permission checks (the hot path) ---------------------------------------------


def _check(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    """A CHECK that ``RespServer._run`` could not answer from the id cache: the full rules, the
    same as /permission/check's (``id_from_bytes`` fills the cache for the next time)."""
    if len(argv) != 4:
        return srv._refused("check", Refusal(_arity_text("check"), "wrong_arity"))
    try:
        uid = id_from_bytes(argv[1], "from_uid", channel=False)
        cid = id_from_bytes(argv[2], "channel_id", channel=True)
        ctype = CHANNEL_TYPES_BYTES.get(argv[3]) or check_channel_type(
            int_from_text(argv[3], "channel_type"))
    except ApiError as exc:
        return srv._api_error("check", exc)
    return integer(decide(srv.ctx.state, uid, cid, ctype, srv.now_ms))


def _checkm(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) < 4:
        return srv._refused("checkm", Refusal(_arity_text("checkm"), "wrong_arity"))
    try:
        checks = check_flat(argv[1:], srv.ctx.limits.max_checks)
    except ApiError as exc:
        return srv._api_error("checkm", exc)
    return int_array(commands.decide_all(srv.ctx, checks))


#: the CHECK replies, by reason code
_REASONS: Final = {code: integer(code) for code in REASON_NAMES}


def _arity_text(name: str) -> str:
    return f"wrong number of arguments for '{name}' command"


# -- handlers: commands of server/commands.py, by grammar -------------------------------------


def _command_handler(key: str, cmd: Command, grammar: Grammar,
                     encode_result: Callable[[Connection, Any], bytes] | None = None) -> Handler:
    """A handler that decodes ``argv`` by ``grammar`` and runs ``cmd``."""

    integers = integer_fields(cmd.fields)

    def handler(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
        args = argv[1:]
        if not grammar.arity_ok(len(args)):
            return srv._refused(key, Refusal(_arity_text(key), "wrong_arity"))
        try:
            decoded = grammar.decode(args, integers)
            if cmd.write:
                return srv.run_write(conn, key, lambda: cmd(srv.ctx, decoded))
            result = cmd(srv.ctx, decoded)
        except Refusal as exc:
            return srv._refused(key, exc)
        except ApiError as exc:
            return srv._api_error(key, exc)
        if encode_result is not None:
            return encode_result(conn, result)
        return encode(result, conn.resp3)

    return handler


def _channel_reply(conn: Connection, info: dict[str, Any] | None) -> bytes:
    return (NIL3 if conn.resp3 else NIL2) if info is None else encode(info, conn.resp3)


def _page_reply(conn: Connection, page: tuple[list[str], str | None]) -> bytes:
    uids, next_cursor = page
    return encode([next_cursor, uids], conn.resp3)


# -- handlers: presence and events -------------------------------------------------------------

_PRESENCE_SET = Grammar(("uid", "device_flag", "online"),
                        options={b"SESSION": "session_id", b"OS": "os", b"IP": "client_ip"})
_REPORT_INTEGERS = integer_fields(commands.REPORT)


def _presence_set(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    args = argv[1:]
    if not _PRESENCE_SET.arity_ok(len(args)):
        return srv._refused("presence.set", Refusal(_arity_text("presence.set"), "wrong_arity"))
    try:
        report = _PRESENCE_SET.decode(args, _REPORT_INTEGERS)
    except Refusal as exc:
        return srv._refused("presence.set", exc)
    except ApiError as exc:
        return srv._api_error("presence.set", exc)
    return srv.run_write(conn, "presence.set",
                         lambda: commands.presence_report(srv.ctx, report))


def _presence_get(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) < 2:
        return srv._refused("presence.get", Refusal(_arity_text("presence.get"), "wrong_arity"))
    try:
        # One entry per uid asked, in order (duplicates too): what a caller zips its list with.
        online = dict(commands.online_devices(srv.ctx, [_text(a) for a in argv[1:]]))
        flags = [list(online[id_from_bytes(a, "uids", channel=False)]) for a in argv[1:]]
    except ApiError as exc:
        return srv._api_error("presence.get", exc)
    return encode(flags, conn.resp3)


async def _events_read(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    """``EVENTS.READ last_lsn [COUNT n] [BLOCK ms]``: presence events after ``last_lsn``."""
    key = "events.read"
    if len(argv) < 2 or len(argv) % 2:
        return srv._refused(key, Refusal(_arity_text(key), "wrong_arity"))
    count, block_ms = 1000, None
    try:
        for i in range(2, len(argv), 2):
            option = argv[i].upper()
            if option == b"COUNT":
                count = int_from_text(argv[i + 1], "COUNT")
                if not 1 <= count <= MAX_EVENTS_COUNT:
                    raise BadRequest(f"COUNT must be 1-{MAX_EVENTS_COUNT}", "value_out_of_range")
            elif option == b"BLOCK":
                block_ms = int_from_text(argv[i + 1], "BLOCK")
                if block_ms < 0:
                    raise BadRequest("BLOCK must be 0 (wait until an event) or more ms",
                                     "value_out_of_range")
            else:
                raise Refusal(f"syntax error (unknown option {_shown(argv[i])})", "syntax")
        roster = srv.roster
        hub = roster.events
        # "$": everything after what is already published (not the log's acknowledged LSN:
        # events of a just-acknowledged record may still be on their way to the ring).
        last = hub.released_lsn if argv[1] == b"$" else int_from_text(argv[1], "last_lsn")
    except Refusal as exc:
        return srv._refused(key, exc)
    except ApiError as exc:
        return srv._api_error(key, exc)
    found = hub.after_lsn(last, count, roster.wal.acked_lsn)
    if isinstance(found, list) and not found and block_ms is not None:
        with trio.move_on_after(block_ms / 1000 if block_ms else float("inf")):
            while isinstance(found, list) and not found and not hub.closed:
                await hub.wait(hub.next_pos)
                found = hub.after_lsn(last, count, roster.wal.acked_lsn)
        if isinstance(found, list) and not found:
            return srv.nil(conn)
    if isinstance(found, int):
        srv._fail(key, "reset")
        return ErrorReply("RESET", str(found)).encode()
    return encode([[e.key[0], e.note.uid, int(e.note.online), e.note.time,
                    list(e.note.devices), list(e.note.subscribers)] for e in found], conn.resp3)


async def _waitlsn(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    """``WAITLSN lsn timeout_ms``: the applied LSN once ``lsn`` is applied here, ``-TIMEOUT``
    past the timeout (read-your-writes on any node of a cluster)."""
    key = "waitlsn"
    if len(argv) != 3:
        return srv._refused(key, Refusal(_arity_text(key), "wrong_arity"))
    try:
        lsn = int_from_text(argv[1], "lsn")
        timeout_ms = int_from_text(argv[2], "timeout_ms")
        if lsn < 0 or not 0 <= timeout_ms <= MAX_WAITLSN_MS:
            raise BadRequest(f"lsn must be >= 0 and timeout_ms 0-{MAX_WAITLSN_MS}",
                             "value_out_of_range")
    except ApiError as exc:
        return srv._api_error(key, exc)
    roster = srv.roster
    if not await roster.wait_applied(lsn, timeout_ms / 1000):
        srv._fail(key, "lsn_timeout")
        return ErrorReply("TIMEOUT", f"record {lsn} not applied within {timeout_ms} ms "
                          f"(applied: {roster.applied_lsn})").encode()
    return integer(roster.applied_lsn)


# -- handlers: connection housekeeping ------------------------------------------------------------


def _ping(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        return srv._refused("ping", Refusal(_arity_text("ping"), "wrong_arity"))
    return b"+PONG\r\n" if len(argv) == 1 else encode(argv[1], conn.resp3)


def _echo(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) != 2:
        return srv._refused("echo", Refusal(_arity_text("echo"), "wrong_arity"))
    return encode(argv[1], conn.resp3)


def _quit(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    conn.closing = True
    return OK


def _authenticate(srv: RespServer, conn: Connection, args: Sequence[bytes]) -> None:
    """``AUTH [user] token``; raises ``Refusal`` unless it opens the connection."""
    if srv.token is None:
        raise Refusal("AUTH <password> called without any password configured for the default "
                      "user. Are you sure your configuration is correct?", "auth_not_configured")
    user, given = (b"default", args[0]) if len(args) == 1 else (args[0], args[1])
    # Both compared, always: the time taken must not depend on which one is wrong.
    good = token_ok(given, srv.token) & (user == b"default")
    if not good:
        raise Refusal("invalid username-password pair or user is disabled.", "wrongpass",
                      "WRONGPASS")
    conn.authed = True


def _auth(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) not in (2, 3):
        return srv._refused("auth", Refusal(_arity_text("auth"), "wrong_arity"))
    try:
        _authenticate(srv, conn, argv[1:])
    except Refusal as exc:
        return srv._refused("auth", exc)
    return OK


def _hello(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    """``HELLO [protover [AUTH user token] [SETNAME name]]``: switch protocol, answer the map."""
    args = argv[1:]
    proto = 3 if conn.resp3 else 2
    name = conn.name
    try:
        if args:
            if args[0] not in (b"2", b"3"):
                raise Refusal("unsupported protocol version", "noproto", "NOPROTO")
            proto = int(args[0])
            i = 1
            while i < len(args):
                option = args[i].upper()
                if option == b"AUTH" and i + 2 < len(args):
                    _authenticate(srv, conn, args[i + 1: i + 3])
                    i += 3
                elif option == b"SETNAME" and i + 1 < len(args):
                    name = _text(args[i + 1])  # kept only if the whole HELLO succeeds
                    i += 2
                else:
                    raise Refusal(f"syntax error in HELLO option {_shown(args[i])}", "syntax")
        if not conn.authed:
            raise Refusal("HELLO must be called with the client already authenticated, "
                          "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                          "authenticate the client and select the RESP protocol version at the "
                          "same time", "noauth", "NOAUTH")
    except Refusal as exc:
        return srv._refused("hello", exc)
    conn.resp3 = proto == 3
    conn.name = name
    return encode({"server": "roster", "version": version(), "proto": proto, "id": conn.id,
                   "mode": "standalone", "role": "master", "modules": []}, conn.resp3)


def _select(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    if len(argv) != 2:
        return srv._refused("select", Refusal(_arity_text("select"), "wrong_arity"))
    if argv[1] == b"0":
        return OK
    if argv[1].lstrip(b"-").isdigit():
        return srv._refused("select", Refusal("DB index is out of range", "db_out_of_range"))
    return srv._refused("select", Refusal("value is not an integer or out of range",
                                          "not_integer"))


def _client(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    sub = argv[1].upper() if len(argv) > 1 else b""
    if sub == b"SETNAME" and len(argv) == 3:
        if b" " in argv[2] or b"\n" in argv[2]:
            return srv._refused("client", Refusal("Client names cannot contain spaces, newlines "
                                                  "or special characters.", "syntax"))
        conn.name = _text(argv[2]) or None
        return OK
    if sub == b"GETNAME" and len(argv) == 2:
        return encode(conn.name, conn.resp3)
    if sub == b"ID" and len(argv) == 2:
        return integer(conn.id)
    if sub == b"SETINFO" and len(argv) == 4:
        return OK  # library name and version: accepted, not kept
    if sub in (b"SETNAME", b"GETNAME", b"ID", b"SETINFO"):
        return srv._refused("client", Refusal(_arity_text("client|" + sub.decode().lower()),
                                              "wrong_arity"))
    return srv._refused("client", Refusal(f"unknown subcommand {_shown(sub)}. Try CLIENT HELP.",
                                          "syntax"))


def _command(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    sub = argv[1].upper() if len(argv) > 1 else b""
    if sub == b"COUNT":
        return integer(len(_ROWS))
    # COMMAND, COMMAND DOCS, COMMAND INFO ...: no command documentation is served (clients
    # such as redis-cli ask on connect and carry on without it).
    return encode({} if sub == b"DOCS" else [], conn.resp3)


def _info(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    section = _text(argv[1]) if len(argv) > 1 else ""
    text = srv.info(section)
    if conn.resp3:  # a verbatim string, as Redis answers INFO in RESP3
        data = b"txt:" + text.encode()
        return b"=%d\r\n%s\r\n" % (len(data), data)
    return encode(text.encode(), conn.resp3)


def _config(srv: RespServer, conn: Connection, argv: list[bytes]) -> bytes:
    # redis-benchmark asks CONFIG GET save/appendonly before it starts; there is nothing in
    # Redis's configuration that Roster has, so every GET answers "no such parameter".
    if len(argv) >= 3 and argv[1].upper() == b"GET":
        return encode({} if conn.resp3 else [], conn.resp3)
    return srv._refused("config", Refusal("CONFIG supports only GET here (Roster is configured "
                                          "with roster serve options)", "syntax"))


# -- the command table ---------------------------------------------------------------------------


def _grammar_rows() -> dict[str, Row]:
    c = commands.COMMANDS
    channel = ("channel_id", "channel_type")
    flags = {name.upper().encode(): name for name in FLAG_NAMES}

    def row(key: str, cmd: Command, grammar: Grammar,
            encode_result: Callable[[Connection, Any], bytes] | None = None) -> Row:
        return Row(_command_handler(key, cmd, grammar, encode_result))

    rows = {
        "channel.set": row("channel.set", c["channel_set"], Grammar(channel, options=flags)),
        "channel.get": row("channel.get", c["channel_get"], Grammar(channel), _channel_reply),
        "channel.del": row("channel.del", c["channel_delete"], Grammar(channel)),
        "sub.add": row("sub.add", c["subscriber_add"],
                       Grammar(channel, rest="subscribers", min_rest=1)),
        "sub.rem": row("sub.rem", c["subscriber_remove"],
                       Grammar(channel, rest="subscribers", min_rest=1)),
        "sub.set": row("sub.set", c["subscriber_add"],
                       Grammar(channel, rest="subscribers", fixed={"reset": 1})),
        "sub.clear": row("sub.clear", c["subscriber_remove_all"], Grammar(channel)),
        "sub.list": row("sub.list", c["subscribers"],
                        Grammar(channel, options={b"CURSOR": "cursor", b"COUNT": "limit"}),
                        _page_reply),
        "tmp.set": row("tmp.set", c["tmp_subscriber_set"],
                       Grammar(("channel_id",), rest="uids", min_rest=1,
                               options={b"TTL": "ttl"})),
        "sys.add": row("sys.add", c["system_add"], Grammar((), rest="uids", min_rest=1)),
        "sys.rem": row("sys.rem", c["system_remove"], Grammar((), rest="uids", min_rest=1)),
        "sys.list": row("sys.list", c["system_list"], Grammar(())),
    }
    for prefix, which in (("wl", "whitelist"), ("bl", "blacklist")):
        rows |= {
            f"{prefix}.add": row(f"{prefix}.add", c[f"{which}_add"],
                                 Grammar(channel, rest="uids", min_rest=1)),
            f"{prefix}.rem": row(f"{prefix}.rem", c[f"{which}_remove"],
                                 Grammar(channel, rest="uids", min_rest=1)),
            # WL.SET cid type with no uid clears: an explicit empty replacement.
            f"{prefix}.set": row(f"{prefix}.set", c[f"{which}_set"],
                                 Grammar(channel, rest="uids")),
            f"{prefix}.clear": row(f"{prefix}.clear", c[f"{which}_remove_all"],
                                   Grammar(channel)),
            f"{prefix}.list": row(f"{prefix}.list", c[which], Grammar(channel)),
        }
    return rows


_ROWS: dict[str, Row] = {
    "check": Row(_check),
    "checkm": Row(_checkm),
    **_grammar_rows(),
    "presence.set": Row(_presence_set),
    "presence.get": Row(_presence_get),
    "events.read": Row(async_handler=_events_read),
    "waitlsn": Row(async_handler=_waitlsn),
    "ping": Row(_ping, open=True),
    "echo": Row(_echo),
    "quit": Row(_quit, open=True),
    "auth": Row(_auth, open=True),
    "hello": Row(_hello, open=True),
    "select": Row(_select),
    "client": Row(_client),
    "command": Row(_command),
    "info": Row(_info),
    "config": Row(_config),
}

#: command name as sent (upper and lower case) -> row; other spellings are upper-cased first
COMMANDS: dict[bytes, Row] = {}
for _name, _row in _ROWS.items():
    _row.name = _name
    COMMANDS[_name.encode()] = COMMANDS[_name.upper().encode()] = _row
