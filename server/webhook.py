"""RongCloud-format presence webhook: batched, signed, retried, never in the way.

The event hub hands every published run of events to :meth:`WebhookSender.offer`, which only
appends status flips to a bounded queue (synchronously: a mutation never waits for the webhook).
:meth:`WebhookSender.run`, a task of its own in the server's nursery, takes up to ``batch_max``
items at a time and POSTs them as one JSON array to the configured URL::

    POST <webhook_url>?appKey=…&nonce=…&signTimestamp=…&signature=sha1(secret+nonce+signTimestamp)
    [{"userid": "u1", "status": "0", "os": "iOS", "time": 1700000000000,
      "clientIp": "10.0.0.1", "sessionId": "…"}, …]

``status`` is RongCloud's: "0" online, "1" offline ("2" logout is never produced: Roster learns
only online/offline). A batch is delivered when the receiver answers 2xx; otherwise (error status,
refused connection, timeout) it is retried after 0.5 s, 1 s, 2 s, … (at most 30 s) up to
``max_attempts`` times, then dropped and counted. Items arriving meanwhile wait in the queue; when
it is full the oldest are dropped (counted): the newest status of a user matters most.

Nonces and signatures are fresh per attempt and never logged.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import trio

from server.events import PresenceEvent
from server.rcsign import signature

log = logging.getLogger("roster")

#: ``post(url, body) → HTTP status``; raises ``OSError`` or ``httpx.HTTPError`` when no answer
Post = Callable[[str, bytes], Awaitable[int]]

ONLINE: Final = "0"
OFFLINE: Final = "1"


def webhook_item(event: PresenceEvent) -> dict[str, Any]:
    note = event.note
    return {"userid": note.uid, "status": ONLINE if note.online else OFFLINE, "os": note.os,
            "time": note.time, "clientIp": note.client_ip, "sessionId": note.session_id}


@dataclass(frozen=True, slots=True)
class WebhookStatistics:
    """Items waiting and being delivered now, and what happened to the others so far."""

    queued: int
    in_flight: int
    enqueued: int
    delivered: int
    batches_delivered: int
    attempts: int
    failed_attempts: int
    dropped_queue_full: int
    dropped_gave_up: int


class WebhookSender:
    def __init__(
        self,
        url: str,
        app_key: str | None = None,
        app_secret: str | None = None,
        *,
        queue_max: int = 100_000,
        batch_max: int = 100,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_attempts: int = 10,
        post: Post | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.url = url
        self._key = app_key
        self._secret = app_secret
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self._post = post
        self._wall_ms = wall_ms
        self.queue: deque[dict[str, Any]] = deque()
        self._wake = trio.Event()
        # Counters: only the sender changes them; statistics() shows them.
        self._enqueued = 0
        self._delivered = 0  # items the receiver acknowledged
        self._batches_delivered = 0
        self._attempts = 0
        self._failed_attempts = 0
        self._dropped_queue_full = 0
        self._dropped_gave_up = 0
        self._in_flight = 0  # items of the batch being delivered

    def statistics(self) -> WebhookStatistics:
        return WebhookStatistics(
            queued=len(self.queue), in_flight=self._in_flight, enqueued=self._enqueued,
            delivered=self._delivered, batches_delivered=self._batches_delivered,
            attempts=self._attempts, failed_attempts=self._failed_attempts,
            dropped_queue_full=self._dropped_queue_full, dropped_gave_up=self._dropped_gave_up)

    # -- the synchronous side --------------------------------------------------------------

    def offer(self, events: Sequence[PresenceEvent]) -> None:
        """Queue the status flips among ``events``; never blocks, never raises."""
        added = False
        for event in events:
            if event.note.cause != "flip":
                continue  # a new subscription's first status is for the subscriber (SSE) only
            self.queue.append(webhook_item(event))
            self._enqueued += 1
            added = True
        while len(self.queue) > self.queue_max:
            self.queue.popleft()
            self._dropped_queue_full += 1
        if added:
            self._wake.set()

    def signed_url(self) -> str:
        if self._key is None or self._secret is None:
            return self.url
        nonce = str(secrets.randbelow(10**9))
        ts = str(self._wall_ms())
        query = urlencode({"appKey": self._key, "nonce": nonce, "signTimestamp": ts,
                           "signature": signature(self._secret, nonce, ts)})
        return f"{self.url}{'&' if urlsplit(self.url).query else '?'}{query}"

    # -- the task ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver forever (cancel to stop)."""
        if self._post is not None:
            await self._loop(self._post)
            return
        import httpx  # only a server with a webhook needs the client

        # httpx logs every request's URL at INFO: here that URL carries the signature.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:

            async def post(url: str, body: bytes) -> int:
                response = await client.post(
                    url, content=body, headers={"Content-Type": "application/json"})
                return response.status_code

            await self._loop(post)

    async def _loop(self, post: Post) -> None:
        while True:
            while not self.queue:
                await self._wake.wait()
                self._wake = trio.Event()
            size = min(self.batch_max, len(self.queue))
            batch = [self.queue.popleft() for _ in range(size)]
            self._in_flight = size
            try:
                await self._deliver(post, batch)
            finally:
                self._in_flight = 0

    async def _deliver(self, post: Post, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch, ensure_ascii=False, separators=(",", ":")).encode()
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            self._attempts += 1
            problem = await self._attempt(post, body)
            if problem is None:
                self._delivered += len(batch)
                self._batches_delivered += 1
                return
            self._failed_attempts += 1
            if attempt == self.max_attempts:
                break
            log.warning("presence webhook: %s; retrying %d events in %.1f s (attempt %d/%d)",
                        problem, len(batch), delay, attempt, self.max_attempts)
            await trio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)
        self._dropped_gave_up += len(batch)
        log.error("presence webhook: gave up on %d events after %d attempts", len(batch),
                  self.max_attempts)

    async def _attempt(self, post: Post, body: bytes) -> str | None:
        """One POST; None if the receiver took it, else what went wrong (for the log)."""
        try:
            with trio.fail_after(self.timeout_s):
                status = await post(self.signed_url(), body)
        except trio.TooSlowError:
            return f"no answer within {self.timeout_s} s"
        except Exception as exc:  # network errors of any client: retry, never crash the task
            return f"{type(exc).__name__}"
        if 200 <= status < 300:
            return None
        return f"receiver answered HTTP {status}"
