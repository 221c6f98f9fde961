"""Presence events: staged at apply, published once durable, kept in a bounded ring, streamed as
Server-Sent Events (docs/architecture.md, "Presence events").

The way of an event
-------------------
1. ``Roster.commit`` applies a batch with the presence engine's notes switched on; each note
   (a status flip, or a new subscription's first status) is **staged** under the record's LSN in
   the same synchronous step, so staging order is log order.
2. After the record is durable, the committer **releases** every staged event up to the log's
   acknowledged LSN. Releasing a prefix (never a single record) keeps publication in LSN order
   even when committers wake out of order.
3. Released events get their SSE id and frame, go into the **ring** (the last
   ``events_retained``), wake the streams and are handed to the listeners (the webhook).

Ids
---
An event's id is its record's LSN. A record that causes several events (a ``presence_batch``, a
subscription to several users) numbers them ``<lsn>:0``, ``<lsn>:1``, … and the **last** one is
plain ``<lsn>``: a plain ``<lsn>`` therefore always means "everything of record lsn", which is
also what a ``reset`` id or the start of a process means, and ids sort as ``(lsn, sub-index)``.

Resuming
--------
A client that reconnects with ``Last-Event-ID`` gets every retained event after it. If events after
that id may have been lost — evicted from the ring, or produced before this process started (the
ring is memory only) — or the id is from the future, the stream starts with an explicit
``event: reset`` whose id is the newest position, then continues live. A malformed id (not
``<lsn>`` or ``<lsn>:<n>`` in plain ASCII digits) is a 400 naming where it was sent.

Slow consumers
--------------
Streams hold no buffer of their own: each is a position in the shared ring, so publishing never
waits for a reader and costs the same with one stream or a thousand. A stream more than
``max_lag`` events behind (half the ring by default, so that it can still resume) is cut off: the
hub cancels it and its response ends at its next wait or write. A resumed stream's backlog does
not count toward that: it is read from the ring for as long as the ring still holds it.
(A client that stops reading altogether is closed when one write has waited the idle timeout,
``--http-idle-timeout``, in server/edge.py.)

Long streams
------------
A stream ends cleanly after ``MAX_STREAM_S`` and the client reconnects with ``Last-Event-ID``
(EventSource does so by itself, after the ``retry`` delay each stream announces first), losing
nothing: long-lived responses are what proxies and NATs cut without telling either side, and a
bounded stream also bounds how long a departed client's stream lingers (server/edge.py notices a
peer that has gone when a write fails, at the latest at the next heartbeat).
"""

from __future__ import annotations

import bisect
import json
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import trio
from quart.wrappers.response import ResponseBody

from server.errors import BadRequest
from server.presence import StatusNote

#: sub-index of the last (or only) event of a record: its id is the plain LSN
LAST: Final = 2**62
#: a stream that stayed silent this long sends an SSE comment (keeps proxies and NATs open)
HEARTBEAT_S: Final = 15.0
#: events written to the socket in one send
CHUNK_EVENTS: Final = 256
#: a stream ends (cleanly, to be resumed) after this long
MAX_STREAM_S: Final = 60.0
#: the reconnection delay announced to EventSource clients (ms)
RETRY_MS: Final = 500

Key = tuple[int, int]


def format_id(key: Key) -> str:
    lsn, sub = key
    return str(lsn) if sub == LAST else f"{lsn}:{sub}"


def parse_id(text: str) -> Key | None:
    """``<lsn>`` or ``<lsn>:<n>`` exactly as :func:`format_id` writes them, else None.

    Strict on purpose: ASCII digits only, no sign, spaces, underscores or leading zeros, at most
    19 digits each (matched before int(), so thousands of digits are "not an id", not a 500).
    """
    match = _ID.fullmatch(text)
    if match is None:
        return None
    lsn, sub = match.groups()
    if sub is None:
        return int(lsn), LAST
    return (int(lsn), int(sub)) if int(sub) < LAST else None


def check_event_id(text: str, name: str) -> None:
    """Refuse a malformed ``Last-Event-ID`` (``name``: where it came from) with a 400; a
    well-formed id this server cannot resume from still gets the stream's ``reset``."""
    if parse_id(text) is None:
        raise BadRequest(f"{name} must be an event id (<lsn> or <lsn>:<n>, ASCII digits without "
                         f"sign, spaces or leading zeros), got {text[:32]!r}", "field_type")


_ID: Final = re.compile(r"(0|[1-9][0-9]{0,18})(?::(0|[1-9][0-9]{0,18}))?", re.ASCII)


def event_data(note: StatusNote) -> dict[str, Any]:
    return {"uid": note.uid, "online": int(note.online), "devices": list(note.devices),
            "time": note.time, "subscribers": list(note.subscribers), "cause": note.cause}


def _frame(event: str, event_id: str, data: object) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {text}\n\n".encode()


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    key: Key
    id: str
    note: StatusNote
    #: the SSE message, built once and shared by every stream
    frame: bytes


@dataclass(frozen=True, slots=True)
class EventHubStatistics:
    """What the hub has done so far (counters) and holds now (retained, streams_open)."""

    published: int
    evicted: int
    retained: int
    streams_open: int
    streams_opened: int
    streams_cut: int
    resumed: int
    resets: int


class EventHub:
    """The ring of published events and the streams reading it."""

    def __init__(self, retained: int, start_lsn: int, max_lag: int | None = None) -> None:
        if retained < 1:
            raise ValueError("retained must be at least 1")
        self.retained = retained
        self.max_lag = max_lag if max_lag is not None else max(1, retained // 2)
        self._pending: deque[tuple[int, list[StatusNote]]] = deque()
        self._ring: list[PresenceEvent] = []
        self._head = 0  # index in _ring of the oldest retained event
        self._next_pos = 0  # position of the next event published (positions never repeat)
        #: every event with a key above this is known (retained or not yet published)
        self._horizon: Key = (start_lsn, LAST)
        self._new = trio.Event()
        #: every event of a record up to this LSN has been published
        self.released_lsn = start_lsn
        self._streams: set[EventStream] = set()
        self.closed = False
        #: called with each released run of events, in order (the webhook); must not block
        self.listeners: list[Callable[[Sequence[PresenceEvent]], None]] = []
        # Counters: only the hub and its streams change them; statistics() shows them.
        self._published = 0
        self._evicted = 0
        self._streams_opened = 0
        self._streams_cut = 0
        self._resumed = 0
        self._resets = 0

    def statistics(self) -> EventHubStatistics:
        return EventHubStatistics(
            published=self._published, evicted=self._evicted,
            retained=len(self._ring) - self._head, streams_open=len(self._streams),
            streams_opened=self._streams_opened, streams_cut=self._streams_cut,
            resumed=self._resumed, resets=self._resets)

    # -- publishing --------------------------------------------------------------------------

    def stage(self, lsn: int, notes: list[StatusNote]) -> None:
        """Hold the events of record ``lsn`` until it is durable (call in apply order)."""
        if notes:
            self._pending.append((lsn, notes))

    def release(self, durable_lsn: int) -> None:
        """Publish every staged event of records up to ``durable_lsn``."""
        # Records up to here are staged before this call (staging happens at submit), so after
        # it every event of a record <= released_lsn is in the ring.
        self.released_lsn = max(self.released_lsn, durable_lsn)
        pending = self._pending
        if not pending or pending[0][0] > durable_lsn:
            return
        released: list[PresenceEvent] = []
        while pending and pending[0][0] <= durable_lsn:
            lsn, notes = pending.popleft()
            last = len(notes) - 1
            for i, note in enumerate(notes):
                key = (lsn, LAST if i == last else i)
                event_id = format_id(key)
                released.append(PresenceEvent(key, event_id, note,
                                              _frame("presence", event_id, event_data(note))))
        self._append(released)
        for listener in self.listeners:
            listener(released)

    def _append(self, events: list[PresenceEvent]) -> None:
        ring = self._ring
        ring.extend(events)
        self._next_pos += len(events)
        self._published += len(events)
        excess = len(ring) - self._head - self.retained
        if excess > 0:
            self._head += excess
            self._evicted += excess
            self._horizon = ring[self._head - 1].key
            if self._head >= max(1024, self.retained):
                del ring[: self._head]
                self._head = 0
        self._new.set()
        self._new = trio.Event()
        for stream in list(self._streams):
            if stream.lag() > self.max_lag:
                stream.cut()

    # -- reading -----------------------------------------------------------------------------

    @property
    def first_pos(self) -> int:
        return self._next_pos - (len(self._ring) - self._head)

    def retained_events(self) -> list[PresenceEvent]:
        return self._ring[self._head:]

    def newest_id(self) -> str:
        return self._ring[-1].id if len(self._ring) > self._head else format_id(self._horizon)

    def read(self, pos: int, limit: int) -> list[PresenceEvent] | None:
        """Up to ``limit`` events from position ``pos`` on; None if ``pos`` was evicted."""
        first = self.first_pos
        if pos < first:
            return None
        start = self._head + (pos - first)
        return self._ring[start : start + limit]

    async def wait(self, pos: int) -> None:
        """Return once an event at ``pos`` or later exists, or the hub is closed."""
        while self._next_pos <= pos and not self.closed:
            await self._new.wait()

    def start(self, last_event_id: str | None, current_lsn: int) -> tuple[int, bytes]:
        """Where a new stream starts, and the bytes it begins with (a reset if it must)."""
        if last_event_id is None:
            return self._next_pos, b": roster presence events\nretry: %d\n\n" % RETRY_MS
        key = parse_id(last_event_id)
        if key is None:
            reason = "Last-Event-ID is not an event id of this server"
        elif key < self._horizon:
            reason = "events after Last-Event-ID are no longer retained"
        elif key[0] > current_lsn:
            reason = "Last-Event-ID is ahead of this server's log"
        else:
            index = bisect.bisect_right(self._ring, key, lo=self._head, key=lambda e: e.key)
            self._resumed += 1
            return self.first_pos + (index - self._head), b": resumed\nretry: %d\n\n" % RETRY_MS
        self._resets += 1
        newest = self.newest_id()
        return self._next_pos, b"retry: %d\n" % RETRY_MS + _frame(
            "reset", newest, {"reason": reason, "last_event_id": last_event_id[:64],
                              "resume_from": newest})

    @property
    def next_pos(self) -> int:
        """The position the next published event will take."""
        return self._next_pos

    def after_lsn(self, lsn: int, count: int, current_lsn: int) -> list[PresenceEvent] | int:
        """Retained events of the records after ``lsn`` (the RESP ``EVENTS.READ``), or, when
        events after ``lsn`` may have been lost (evicted, produced before this process started,
        or ``lsn`` is ahead of the log), the LSN to resume from instead.

        At least ``count`` events unless fewer exist, and never part of a record: a reader that
        resumes from the last LSN it saw therefore misses nothing and repeats nothing.
        """
        oldest = self._horizon[0]  # every event of a record after this one is retained
        if lsn < oldest:
            return oldest
        if lsn > current_lsn:
            return current_lsn
        ring, head = self._ring, self._head
        start = bisect.bisect_right(ring, (lsn, LAST), lo=head, key=lambda e: e.key)
        end = min(len(ring), start + count)
        while end < len(ring) and end > start and ring[end].key[0] == ring[end - 1].key[0]:
            end += 1
        return ring[start:end]

    def stream(self, last_event_id: str | None, current_lsn: int) -> EventStream:
        pos, first = self.start(last_event_id, current_lsn)
        return EventStream(self, pos, first)

    def close(self) -> None:
        """End every stream (shutdown): waiting ones finish, blocked ones are cancelled."""
        self.closed = True
        self._new.set()
        for stream in list(self._streams):
            stream.end()


class EventStream(ResponseBody):
    """The body of one ``GET /events`` response: a position in the hub's ring.

    Quart iterates it inside ``async with``; the cancel scope entered in ``__aenter__`` spans the
    socket writes too, so the hub can end a stream that is stuck writing to a client that does
    not read.
    """

    def __init__(self, hub: EventHub, pos: int, first: bytes,
                 max_seconds: float = MAX_STREAM_S) -> None:
        self.hub = hub
        self.pos = pos
        #: events published before the stream opened (a resume's backlog) are read from the
        #: ring while they last; only what arrives later can make the stream "too slow"
        self._live_from = hub._next_pos
        self._first = first
        self._scope = trio.CancelScope()
        self.was_cut = False
        self.max_seconds = max_seconds
        self._deadline = 0.0
        self._ending = False

    async def __aenter__(self) -> EventStream:
        self._deadline = trio.current_time() + self.max_seconds
        self._scope.__enter__()
        self.hub._streams.add(self)
        self.hub._streams_opened += 1
        return self

    async def __aexit__(  # type: ignore[override]  # True swallows our own cancellation
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.hub._streams.discard(self)
        return self._scope.__exit__(exc_type, exc_value, tb)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            return first
        hub = self.hub
        while not (hub.closed or self.was_cut or self._ending):
            left = self._deadline - trio.current_time()
            if left <= 0:  # even with events waiting: the rest is for the resumed stream
                self._ending = True
                return b": stream ends; reconnect with Last-Event-ID\n\n"
            events = hub.read(self.pos, CHUNK_EVENTS)
            if events is None or self.lag() > hub.max_lag:
                self.cut()
                break
            if events:
                self.pos += len(events)
                return b"".join(e.frame for e in events)
            with trio.move_on_after(min(HEARTBEAT_S, left)) as waited:
                await hub.wait(self.pos)
            if waited.cancelled_caught and left > HEARTBEAT_S:
                return b": keep-alive\n\n"
        raise StopAsyncIteration

    def lag(self) -> int:
        """Events published since the stream opened that it has not sent yet."""
        return self.hub._next_pos - max(self.pos, self._live_from)

    def cut(self) -> None:
        """Too far behind: end the response now (the client resumes with Last-Event-ID)."""
        if not self.was_cut:
            self.was_cut = True
            self.hub._streams_cut += 1
        self.end()

    def end(self) -> None:
        self.hub._streams.discard(self)
        self._scope.cancel()
