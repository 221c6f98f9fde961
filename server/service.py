"""The running service: state engine + write-ahead log + the tasks that keep them tidy.

``Roster.commit`` is the one way a mutation happens: check the ops, submit the batch to the log
and apply it to the state in one synchronous step (so log order is apply order), then wait until
the record is durable under the fsync policy before the caller acknowledges anything.

The two halves are also available apart, for callers that pipeline: ``submit`` (synchronous:
check, log, apply; returns a ``Ticket``) and ``settle`` (wait until durable, then publish the
presence events). The RESP adapter submits every write of a pipelined chunk in order and settles
once, so the chunk shares one group commit and its replies still go out only when durable.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import trio

from server.config import Settings
from server.errors import Unavailable
from server.events import EventHub
from server.ops import check_ops, ps_expire, tmp_expire
from server.presence import StatusNote
from server.state import State
from server.webhook import WebhookSender
from wal import LogFailedError, SnapshotError, SnapshotInfo, WriteAheadLog

log = logging.getLogger("roster")

# After a failed automatic snapshot (disk full, out of descriptors) the next try waits this long
# instead of coming with the next write: one logged error per pause, not one per request.
SNAPSHOT_RETRY_S = 5.0


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the write-ahead log cannot be written ({exc}); the server is stopping")


class Ticket(NamedTuple):
    """A submitted record: what ``Roster.settle`` needs to wait for it."""

    lsn: int
    #: the record caused presence events (they are published once it is durable)
    has_events: bool


class Roster:
    def __init__(
        self,
        state: State,
        wal: WriteAheadLog,
        settings: Settings,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.state = state
        self.wal = wal
        self.settings = settings
        self.now_ms = clock
        self._snapshot_wanted = trio.Event()
        self._snapshot_lock = trio.Lock()
        self.last_snapshot: SnapshotInfo | None = None
        self.last_snapshot_at = 0.0  # time.monotonic() when it finished
        self.snapshots_taken = 0
        #: extra /metrics collectors (callables yielding prometheus Metric families), e.g. presence
        self.metric_sources: list[Callable[[], Iterable[Any]]] = []
        #: presence events: staged at apply, published once durable (server/events.py)
        self.events = EventHub(settings.events_retained, start_lsn=wal.last_lsn)
        #: readers waiting to see an LSN applied (``X-Min-LSN``, ``WAITLSN``): (lsn, event)
        self._lsn_waiters: list[tuple[int, trio.Event]] = []
        self.webhook: WebhookSender | None = None
        if settings.webhook_url:
            self.webhook = WebhookSender(settings.webhook_url, settings.rc_app_key,
                                         settings.rc_app_secret)
            self.events.listeners.append(self.webhook.offer)

    async def commit(self, ops: Sequence[Sequence[Any]], now_ms: int | None = None) -> int:
        """Log and apply ``ops`` as one atomic record; return its LSN once it is durable.

        ``now_ms`` is the batch's time when the caller decided on it (a command that checked
        expiries at that instant); by default the clock is read here. Presence events the batch
        causes are published once it is durable (server/events.py).
        """
        return await self.settle(self.submit(ops, now_ms))

    def submit(self, ops: Sequence[Sequence[Any]], now_ms: int | None = None) -> Ticket:
        """Check ``ops``, log them as one record and apply them, in one synchronous step.

        Raises ``MalformedOpError`` (a bug: nothing is logged) or ``Unavailable`` (the log
        failed). The caller must ``settle`` the ticket before acknowledging anything.
        """
        check_ops(ops)
        batch = (self.now_ms() if now_ms is None else now_ms, ops)
        try:
            lsn = self.wal.submit(batch)
        except LogFailedError as exc:
            raise _unavailable(exc) from None
        notes: list[StatusNote] = []
        self.state.apply(batch, notes)
        self.events.stage(lsn, notes)
        if self.wal.bytes_since_snapshot >= self.settings.snapshot_bytes:
            self._snapshot_wanted.set()
        if self._lsn_waiters:
            self.wake_lsn_waiters(lsn)
        return Ticket(lsn, bool(notes))

    @property
    def applied_lsn(self) -> int:
        """The newest record whose mutation readers can see."""
        return self.wal.last_lsn

    def role_fields(self) -> dict[str, object]:
        """What ``/health`` adds about this node's place in a cluster (nothing on its own)."""
        return {}

    async def wait_applied(self, lsn: int, timeout_s: float) -> bool:
        """Wait until record ``lsn`` is applied here (read-your-writes on any node); False if
        ``timeout_s`` passed first."""
        if lsn <= self.applied_lsn:
            return True
        event = trio.Event()
        entry = (lsn, event)
        self._lsn_waiters.append(entry)
        try:
            with trio.move_on_after(timeout_s):
                await event.wait()
        finally:
            if not event.is_set():
                self._lsn_waiters.remove(entry)
        return lsn <= self.applied_lsn

    def wake_lsn_waiters(self, applied: int) -> None:
        still = []
        for lsn, event in self._lsn_waiters:
            if lsn <= applied:
                event.set()
            else:
                still.append((lsn, event))
        self._lsn_waiters = still

    async def settle(self, ticket: Ticket) -> int:
        """Return ``ticket``'s LSN once it (and so every record before it) is durable."""
        try:
            if ticket.has_events:
                # A caller cancelled now (its client went away) must still publish the events.
                with trio.CancelScope(shield=True):
                    await self.wal.wait_durable(ticket.lsn)
            else:
                await self.wal.wait_durable(ticket.lsn)
        except LogFailedError as exc:
            raise _unavailable(exc) from None
        self.events.release(self.wal.acked_lsn)
        return ticket.lsn

    async def snapshot(self) -> SnapshotInfo:
        """Write a snapshot now (one at a time; a second caller waits for the running one)."""
        async with self._snapshot_lock:
            # LSN and the copy of the top-level dict are taken in one synchronous step.
            lsn = self.wal.last_lsn
            try:
                info = await self.wal.snapshot(lsn, self.state.snapshot_chunks())
            except LogFailedError as exc:
                # The log failed while the snapshot waited for it: the same fail-stop as a
                # request (the runner is already stopping); never a 500.
                raise _unavailable(exc) from None
            except (OSError, SnapshotError) as exc:
                # Only the snapshot file failed (e.g. disk full): the log is intact and still
                # the truth, so keep serving; the next threshold crossing tries again.
                log.error("snapshot at lsn %d failed: %r", lsn, exc)
                raise Unavailable(f"the snapshot could not be written ({exc})",
                                  "snapshot_failed") from None
        self.last_snapshot = info
        # What the snapshot just walked is long-lived state: keep full collections off it.
        gc.freeze()
        self.last_snapshot_at = time.monotonic()
        self.snapshots_taken += 1
        log.info("snapshot at lsn %d: %d bytes in %.3f s", info.lsn, info.bytes, info.seconds)
        return info

    async def snapshot_loop(self) -> None:
        """Take a snapshot whenever the log has grown past ``snapshot_bytes`` since the last one."""
        while True:
            await self._snapshot_wanted.wait()
            self._snapshot_wanted = trio.Event()
            if self.wal.bytes_since_snapshot >= self.settings.snapshot_bytes:
                try:
                    await self.snapshot()
                except Unavailable as exc:
                    if exc.code == "log_unavailable":
                        return  # the log failed; the runner is already stopping the process
                    await trio.sleep(SNAPSHOT_RETRY_S)

    async def purge_loop(self) -> None:
        """Remove expired temporary channels and subscriptions; each purge is logged."""
        while True:
            await trio.sleep(self.settings.purge_interval_s)
            try:
                await self.purge_expired()
            except Unavailable:
                return  # the log failed; the runner is already stopping the process

    async def purge_expired(self) -> int:
        now = self.now_ms()
        expired = self.state.expired_temp_channels(now)
        subs = self.state.presence.expired_subscriptions(now)
        ops = [tmp_expire(cid) for cid in expired]
        if subs:
            ops.append(ps_expire(subs))
        if ops:
            await self.commit(ops, now_ms=now)
            log.info("purged %d expired temporary channels and %d expired subscriptions",
                     len(expired), len(subs))
        return len(expired) + len(subs)

    async def webhook_loop(self) -> None:
        """Deliver presence webhooks until cancelled (returns at once if none is configured)."""
        if self.webhook is not None:
            await self.webhook.run()
