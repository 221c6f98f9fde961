"""One node of a cluster: follow the stream, hold the lease, or write to the stream as its leader.

The stream is the log. A record is one stream message: a msgpack array of batches
``[(now_ms, ops), ...]``; its LSN is its stream sequence. Every node applies records in stream
order through one callback (``apply``), the leader included: the leader applies a record when
JetStream acknowledges its publish, a follower when its consumer delivers it, so a node's state is
always the stream's first ``applied`` records.

Roles::

    follower   consumes the stream (an ordered push consumer from applied + 1); looks at the
               lease every lease/3; when there is none and it has applied the whole stream, it
               becomes a candidate and tries to create the lease key
    candidate  holds the new lease: stops its consumer, checks once more that nothing was
               appended, and publishes an empty record expecting the tail it has applied. That
               record fences the old leader (its next publish expects an older tail and is
               refused), and only once it is stored does the node answer writes as leader
    leader     group commit: writes submitted while a publish is in flight form the next record;
               one publish at a time (JetStream refuses a second one expecting a tail that is not
               stored yet), each with ``Nats-Expected-Last-Subject-Sequence`` = the sequence of
               the record before it; the publisher runs on the NATS thread (``_publish_loop``);
               renews the lease (update with the revision it holds) every lease/3

Stepping down (publish refused with ``wrong last sequence``, a publish or renewal error, or the
lease's deadline passed, e.g. after the process was stopped): every write waiting for a record
of this node gets 503 ``not_leader`` (its outcome is unknown: a timed-out publish may still be
stored, and the consumer, restarted from ``applied + 1``, applies it if so), the lease is given
up and the node follows again. A record acknowledged by JetStream after the lease's deadline is
applied (it is in the stream) but its writers get 503 too: a leader answers nothing once a
successor may exist.

Everything here runs on the trio side; the NATS client is only touched through the bridge.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import msgpack
import nats
import trio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from server.cluster.bootstrap import SNAPSHOT_OBJECT
from server.cluster.bridge import AsyncioThread
from server.cluster.names import LEASE_KEY, Names, NodeInfo
from server.config import Settings
from server.errors import ApiError, NotLeader, Unavailable
from server.startup import ListenError
from wal.codec import unpack

log = logging.getLogger("roster")

Role = Literal["leader", "follower", "candidate"]
Batch = Any
#: applies one record: (lsn, its batches); called in stream order on the trio thread
ApplyRecord = Callable[[int, list[Batch]], None]

#: JetStream's "wrong last sequence": the stream's tail is not the one this writer expected
WRONG_LAST_SEQUENCE = 10071
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
#: a record is closed (the next batches go to the next one) past this many bytes; NATS's default
#: max_payload is 1 MiB
RECORD_BYTES = 768 * 1024
#: records remembered for ``wait`` (a writer looks its record up right after submitting; only
#: one that waits through this many later records gets "outcome unknown" instead)
RECENT_RECORDS = 65_536
#: how long a NATS connection attempt at start-up may take before start is refused
CONNECT_TIMEOUT_S = 5.0
#: how long start-up waits for JetStream to accept the stream and the lease bucket
SETUP_TIMEOUT_S = 20.0


class ClusterError(ListenError):
    """The NATS cluster cannot be used at start-up (exit code 3: wait and retry)."""


class Deposed(Exception):
    """This node may no longer write to the stream."""


@dataclass(eq=False)
class _Batch:
    """Writes gathered into one stream record (being filled or published), and their waiters."""

    #: the sequence it is meant to get (the tail it follows + 1)
    lsn: int
    #: this node's number for it, never reused (a later term may reuse ``lsn``)
    ticket: int = 0
    items: list[bytes] = field(default_factory=list)
    size: int = 0
    done: trio.Event = field(default_factory=trio.Event)
    error: ApiError | None = None
    #: the sequence it was stored as (set before ``done``)
    seq: int = 0

    def payload(self) -> bytes:
        header: bytes = msgpack.Packer().pack_array_header(len(self.items))
        return header + b"".join(self.items)


class Replica:
    def __init__(self, settings: Settings, apply: ApplyRecord, applied_lsn: int,
                 on_fatal: Callable[[BaseException], None]) -> None:
        """``on_fatal`` is told when a record cannot be applied (the local log failed, or the
        stream and the local log disagree): the node must stop, as on a local log failure."""
        self.settings = settings
        self.names = Names.of(settings.cluster_name)
        self.lease_s = settings.lease_ms / 1000
        self.bridge = AsyncioThread()
        self._apply = apply
        self._on_fatal = on_fatal
        self.failed = False
        self.started = False
        self._pack = msgpack.Packer(use_bin_type=True).pack

        self.role: Role = "follower"
        self.leader: NodeInfo | None = None
        #: this node as the lease shows it; set once the ports are bound (``advertise``)
        self.me: NodeInfo | None = None
        self._advertised = trio.Event()
        self.applied = applied_lsn
        #: the stream's last sequence when last looked at (replication lag = this - applied)
        self.stream_last = applied_lsn
        self.lease_renewals = 0
        #: what this node stored as leader: records, the batches in them, time in publishes
        self.records_published = 0
        self.batches_published = 0
        self.publish_seconds = 0.0
        self.terms = 0
        self.step_downs = 0

        self.snapshots_stored = 0
        #: the stream holds no record below this one (after the last purge by this node)
        self.purged_to = 0
        self._store: ObjectStore | None = None
        self._stored_lsn = 0
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._sub: Any = None
        self._sub_generation = 0
        self._resubscribe = trio.Event()
        self._gap = False

        # leader side
        self._revision = 0
        self._lease_deadline = 0.0
        # Shared with the publisher on the NATS thread, under _lock: the records gathered and
        # not yet published (the last one open), the one being published, and the sequence the
        # next publish expects as the stream's tail.
        self._lock = threading.Lock()
        self._queue: list[_Batch] = []
        self._inflight: _Batch | None = None
        self._tail = 0
        #: bumped at every take-over and step-down; a publisher runs for one term only
        self._term = 0
        self._async_wake: asyncio.Event | None = None
        #: the records submitted here lately, by ticket (pending, in flight, done or failed)
        self._recent: OrderedDict[int, _Batch] = OrderedDict()
        self._tickets = 0
        self._lease_wake = trio.Event()

    # -- what the service calls ------------------------------------------------------------

    def advertise(self, me: NodeInfo) -> None:
        self.me = me
        self._advertised.set()

    def refusal(self) -> ApiError:
        """The answer to a write on a node that is not the leader."""
        if self.leader is not None and self.leader != self.me:
            return NotLeader(self.leader.url, self.leader.resp)
        return Unavailable("no leader is known yet; retry shortly", "no_leader")

    def submit(self, batch: Batch) -> int:
        """Queue ``batch`` for the next record; return that record's LSN (its sequence-to-be)."""
        if self.role != "leader":
            raise self.refusal()
        item = self._pack(batch)
        opened = False
        with self._lock:  # the publisher (NATS thread) takes records off this queue
            record = self._queue[-1] if self._queue else None
            if record is None or (record.size + len(item) > RECORD_BYTES and record.items):
                last = self._queue[-1].lsn if self._queue else (
                    self._inflight.lsn if self._inflight else self._tail)
                record = _Batch(last + 1)
                self._queue.append(record)
                opened = True
            record.items.append(item)
            record.size += len(item)
        if opened:
            self._tickets += 1
            record.ticket = self._tickets
            self._recent[record.ticket] = record
            if len(self._recent) > RECENT_RECORDS:
                self._recent.popitem(last=False)
            self._poke()
        return record.ticket

    async def wait(self, ticket: int) -> int:
        """Wait for the record ``submit`` numbered ``ticket``; return the sequence it was stored
        as, once applied here. 503 ``not_leader`` if it was not stored (or is too old to tell).
        """
        record = self._recent.get(ticket)
        if record is None:
            raise _lost()  # only after RECENT_RECORDS more records: answer "unknown", never OK
        await record.done.wait()
        if record.error is not None:
            raise record.error
        return record.seq

    # -- the node's life ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then follow / lead until cancelled; gives the lease up on the way out."""
        self._token = trio.lowlevel.current_trio_token()
        self.started = True
        self.bridge.start()
        try:
            await self._connect()
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._lease_loop)
                await self._follow_loop()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.lease_s):
                await self._close()
            self.bridge.stop()

    async def _connect(self) -> None:
        s = self.settings

        async def connect() -> NatsClient:
            return await nats.connect(
                servers=list(s.cluster), name=f"roster {s.node_id or ''}".strip(),
                connect_timeout=2.0, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                ping_interval=max(1, int(self.lease_s)), error_cb=_quiet, disconnected_cb=_none,
                reconnected_cb=_none, closed_cb=_none)

        with trio.move_on_after(CONNECT_TIMEOUT_S) as scope:
            try:
                self._nc = await self.bridge.call(connect)
            except (OSError, nats.errors.Error) as exc:
                raise ClusterError(f"cannot connect to NATS at {','.join(s.cluster)}: {exc}") \
                    from None
        if scope.cancelled_caught:
            raise ClusterError(f"cannot connect to NATS at {','.join(s.cluster)} within "
                               f"{CONNECT_TIMEOUT_S:.0f} s")
        assert self._nc is not None
        self._js = self._nc.jetstream(timeout=max(2.0, self.lease_s))
        # A JetStream cluster that has just started has no meta leader for a few seconds:
        # retry until SETUP_TIMEOUT_S, then refuse to start with the last error.
        deadline = trio.current_time() + SETUP_TIMEOUT_S
        while True:
            try:
                await self._ensure_stream()
                self._kv = await self._ensure_lease_bucket()
                return
            except (nats.errors.Error, TimeoutError) as exc:
                if trio.current_time() >= deadline:
                    raise ClusterError(f"cannot set up the JetStream stream "
                                       f"{self.names.stream}: {exc!r}") from None
                log.info("JetStream not ready (%r); retrying", exc)
            await trio.sleep(0.25)

    async def _ensure_stream(self) -> None:
        js = self._js
        assert js is not None
        try:
            info = await self.bridge.call(js.stream_info, self.names.stream)
        except NotFoundError:
            config = api.StreamConfig(
                name=self.names.stream, subjects=[self.names.subject],
                num_replicas=self.settings.cluster_replicas, storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.NEW)
            info = await self.bridge.call(js.add_stream, config)
        self.stream_last = info.state.last_seq

    async def _ensure_lease_bucket(self) -> KeyValue:
        js = self._js
        assert js is not None
        try:
            kv: KeyValue = await self.bridge.call(js.key_value, self.names.lease_bucket)
        except (NotFoundError, nats.js.errors.BucketNotFoundError):
            kv = await self.bridge.call(partial(
                js.create_key_value, bucket=self.names.lease_bucket, ttl=self.lease_s,
                history=1, replicas=self.settings.cluster_replicas))
        status = await self.bridge.call(kv.status)
        if status.ttl is not None and abs(status.ttl - self.lease_s) > 0.001:
            # The bucket keeps the TTL it was made with: every node must run the same lease.
            log.warning("the lease bucket %s expires keys after %.3f s but --lease-ms is %d: "
                        "run every node with the same lease (or delete the bucket while all are "
                        "stopped)", self.names.lease_bucket, status.ttl, self.settings.lease_ms)
        return kv

    async def store_snapshot(self, lsn: int, path: Path) -> None:
        """Put the snapshot at ``lsn`` in the object store, then purge the stream up to the one
        stored before it (a follower lagging by less than a snapshot interval keeps its records).
        """
        js = self._js
        assert js is not None
        store = self._store
        if store is None:
            try:
                store = await self.bridge.call(js.object_store, self.names.snapshot_bucket)
            except NotFoundError:
                store = await self.bridge.call(partial(
                    js.create_object_store, self.names.snapshot_bucket,
                    replicas=self.settings.cluster_replicas))
            self._store = store
            try:
                info = await self.bridge.call(store.get_info, SNAPSHOT_OBJECT)
                self._stored_lsn = int(info.description or 0)
            except NotFoundError:
                self._stored_lsn = 0
        data = await trio.to_thread.run_sync(path.read_bytes)
        await self.bridge.call(partial(store.put, SNAPSHOT_OBJECT, data, meta=api.ObjectMeta(
            name=SNAPSHOT_OBJECT, description=str(lsn))))
        previous, self._stored_lsn = self._stored_lsn, lsn
        self.snapshots_stored += 1
        if 1 < previous < lsn:
            await self.bridge.call(partial(js.purge_stream, self.names.stream, seq=previous))
            self.purged_to = previous
        log.info("stored the snapshot at record %d; the stream now starts at record %d", lsn,
                 max(previous, 1))

    async def _close(self) -> None:
        if self.role == "leader":
            self._step_down("this node is stopping")
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await self._resign()
                await self.bridge.call(nc.close)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.warning("closing the NATS connection: %r", exc)

    # -- following ---------------------------------------------------------------------------

    async def _follow_loop(self) -> None:
        """Keep a consumer from ``applied + 1`` while not the leader; restart it when asked."""
        while True:
            if self.role == "follower" and self._sub is None:
                try:
                    await self._subscribe()
                except (nats.errors.Error, TimeoutError) as exc:
                    log.warning("cannot consume the stream (%r); retrying", exc)
                    await trio.sleep(self.lease_s / 3)
                    continue
            await self._resubscribe.wait()
            self._resubscribe = trio.Event()
            await self._unsubscribe()
            if self._gap and await self._purged_past():
                return

    async def _purged_past(self) -> bool:
        """After a gap: True (and the node is stopping) if the stream no longer holds the next
        record this node needs; a restart fetches the stored snapshot (bootstrap.py)."""
        self._gap = False
        js = self._js
        assert js is not None
        try:
            info = await self.bridge.call(js.stream_info, self.names.stream)
        except (nats.errors.Error, TimeoutError):
            return False
        if info.state.first_seq <= self.applied + 1:
            return False
        self.failed = True
        self._on_fatal(RuntimeError(
            f"the stream now starts at record {info.state.first_seq} but this node has applied "
            f"only up to {self.applied}: restart it to start from the stored snapshot"))
        return True

    async def _subscribe(self) -> None:
        js, token = self._js, self._token
        assert js is not None and token is not None
        self._sub_generation += 1
        generation = self._sub_generation
        receive = self._receive

        async def deliver(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            try:
                token.run_sync_soon(receive, generation, seq, msg.data)
            except trio.RunFinishedError:
                pass

        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=self.applied + 1)
        self._sub = await self.bridge.call(partial(
            js.subscribe, self.names.subject, cb=deliver, ordered_consumer=True, config=config,
            idle_heartbeat=max(0.5, self.lease_s / 3)))

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        self._sub_generation += 1  # whatever the old one still delivers is dropped
        if sub is not None:
            try:
                await self.bridge.call(sub.unsubscribe)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("unsubscribe: %r", exc)

    def _receive(self, generation: int, seq: int, data: bytes) -> None:
        if generation != self._sub_generation or self.role == "leader" or seq <= self.applied:
            return
        if seq != self.applied + 1:
            log.warning("stream gap: expected record %d, got %d; re-reading from %d",
                        self.applied + 1, seq, self.applied + 1)
            self._gap = True
            self._resubscribe.set()
            return
        self._apply_record(seq, data)

    def _apply_record(self, seq: int, data: bytes) -> None:
        if self.failed:
            return
        try:
            batches = unpack(data)
            if not isinstance(batches, list):
                raise TypeError(f"record {seq} is not a list of batches")
            self._apply(seq, batches)
        except Exception as exc:
            # Applying runs as a trio callback from the consumer: an escaping error would kill
            # the event loop. A node that cannot apply a record must stop instead.
            self.failed = True
            self._step_down("a record could not be applied")
            self._on_fatal(exc)
            return
        self.applied = seq
        self.stream_last = max(self.stream_last, seq)

    # -- the lease -----------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        await self._advertised.wait()
        while True:
            try:
                with trio.fail_after(self.lease_s):
                    if self.role == "leader":
                        await self._renew()
                    elif self.role == "follower":
                        await self._look_for_leader()
            except (nats.errors.Error, TimeoutError, trio.TooSlowError) as exc:
                if self.role == "leader":
                    self._step_down(f"the lease could not be renewed ({exc!r})")
                else:
                    log.debug("lease lookup failed: %r", exc)
                    self.leader = None
            with trio.move_on_after(self.lease_s / 3):
                await self._lease_wake.wait()
            self._lease_wake = trio.Event()

    async def _renew(self) -> None:
        kv, me = self._kv, self.me
        assert kv is not None and me is not None
        started = time.monotonic()
        try:
            self._revision = await self.bridge.call(kv.update, LEASE_KEY, me.encode(),
                                                    self._revision)
        except KeyWrongLastSequenceError:
            self._step_down("the lease was taken over")
            return
        if self.role == "leader":
            self._lease_deadline = started + self.lease_s
            self.lease_renewals += 1

    async def _look_for_leader(self) -> None:
        kv, js, me = self._kv, self._js, self.me
        assert kv is not None and js is not None and me is not None
        info = await self.bridge.call(js.stream_info, self.names.stream)
        self.stream_last = info.state.last_seq
        try:
            entry = await self.bridge.call(kv.get, LEASE_KEY)
        except NotFoundError:
            entry = None
        if entry is not None and entry.value:
            holder = NodeInfo.decode(entry.value)
            if holder is not None and holder.node_id == me.node_id:
                # Our own lease from before a restart: nobody renews it; let it go now.
                await self.bridge.call(kv.delete, LEASE_KEY, entry.revision)
                holder = None
            self.leader = holder
            if holder is not None:
                return
        self.leader = None
        if self.applied < self.stream_last:
            return  # not caught up: another node, or this one next round
        started = time.monotonic()
        try:
            revision = await self.bridge.call(kv.create, LEASE_KEY, me.encode())
        except KeyWrongLastSequenceError:
            return  # another node was faster
        self._revision = revision
        self._lease_deadline = started + self.lease_s
        self.role = "candidate"
        await self._take_office()

    async def _take_office(self) -> None:
        js = self._js
        assert js is not None
        await self._unsubscribe()
        info = await self.bridge.call(js.stream_info, self.names.stream)
        self.stream_last = info.state.last_seq
        if self.applied != self.stream_last:
            self._step_down("records arrived while taking the lease")
            return
        # The fence: once this empty record is stored, no publish expecting an older tail can be.
        try:
            seq = await self._publish(b"\x90", self.applied)
        except Deposed as exc:
            self._step_down(str(exc))
            return
        self._apply_record(seq, b"\x90")
        if self.failed:
            return
        if time.monotonic() >= self._lease_deadline:
            self._step_down("the lease ran out while taking office")
            return
        with self._lock:
            self._tail = seq
            self._queue.clear()
            self._inflight = None
        self._term += 1
        self.role = "leader"
        self.leader = self.me
        self.terms += 1
        asyncio.run_coroutine_threadsafe(self._publish_loop(self._term), self.bridge.loop)
        log.info("leader from record %d on", seq)

    async def _resign(self) -> None:
        kv = self._kv
        if kv is not None and self._revision and self.role != "leader":
            try:
                await self.bridge.call(kv.delete, LEASE_KEY, self._revision)
            except (KeyWrongLastSequenceError, NotFoundError):
                pass  # already someone else's, or expired
            self._revision = 0

    # -- writing ---------------------------------------------------------------------------------

    def _poke(self) -> None:
        """Wake the publisher (from the trio thread)."""
        wake = self._async_wake
        if wake is not None:
            self.bridge.loop.call_soon_threadsafe(wake.set)

    async def _publish_loop(self, term: int) -> None:
        """The leader's publisher, on the NATS thread: one record at a time, back to back.

        It runs beside the NATS client rather than in trio because a record's round trip is
        what bounds write throughput: from here the next record goes out as soon as the last
        one is acknowledged, instead of after the trio loop's next turn (under load, that turn
        was as long as the replicated append itself). JetStream does not take a second publish
        with an expected sequence before the first is stored, so there is one in flight. What
        is stored is handed to trio in sequence order (``run_sync_soon`` keeps the order)."""
        wake = self._async_wake = asyncio.Event()
        try:
            while self._term == term:
                with self._lock:
                    record = self._queue.pop(0) if self._queue else None
                    self._inflight = record
                    expected = self._tail
                if record is None:
                    wake.clear()
                    with self._lock:
                        idle = not self._queue
                    if idle and self._term == term:
                        await wake.wait()
                    continue
                payload = record.payload()
                batches = len(record.items)
                record.items = []  # the payload holds them now; the record stays for wait()
                started = time.perf_counter()
                try:
                    seq = await self._publish_now(payload, expected)
                except Deposed as exc:
                    self._to_trio(self._refused, term, record, str(exc))
                    return
                with self._lock:
                    self._inflight = None
                    self._tail = seq
                self.publish_seconds += time.perf_counter() - started
                self.records_published += 1
                self.batches_published += batches
                self._to_trio(self._stored, term, record, seq, payload)
        except Exception as exc:  # a bug here must not leave writers waiting forever
            log.exception("the publisher failed")
            self._to_trio(self._crashed, term, repr(exc))
        finally:
            if self._async_wake is wake:
                self._async_wake = None

    def _to_trio(self, fn: Callable[..., None], *args: Any) -> None:
        token = self._token
        assert token is not None
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    def _stored(self, term: int, record: _Batch, seq: int, payload: bytes) -> None:
        """(trio) Record ``seq`` is in the stream: apply it, then answer its writers."""
        if seq == self.applied + 1:
            self._apply_record(seq, payload)
        if self.failed or term != self._term or self.role != "leader":
            self._fail(record)  # a step-down came first: its writers already got 503
            return
        if time.monotonic() >= self._lease_deadline:
            # Stored, so applied; but a successor may exist by now: answer nothing.
            self._fail(record)
            self._step_down("the lease ran out while a record was being stored")
            return
        record.seq = seq
        record.done.set()

    def _refused(self, term: int, record: _Batch, why: str) -> None:
        self._fail(record)
        if term == self._term and self.role == "leader":
            self._step_down(why)

    def _crashed(self, term: int, why: str) -> None:
        if term == self._term and self.role == "leader":
            self._step_down(f"the publisher failed: {why}")

    async def _publish(self, payload: bytes, expected: int) -> int:
        """(trio) Publish one record expecting ``expected`` as the stream's tail."""
        return await self.bridge.call(self._publish_now, payload, expected)

    async def _publish_now(self, payload: bytes, expected: int) -> int:
        """(NATS thread) Publish one record; raise ``Deposed`` when this node may not write."""
        js = self._js
        assert js is not None
        if time.monotonic() >= self._lease_deadline:
            raise Deposed("the lease ran out")
        try:
            ack = await js.publish(self.names.subject, payload, timeout=self.lease_s,
                                   headers={EXPECTED_LAST: str(expected)})
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Deposed("another writer appended to the stream") from None
            raise Deposed(f"publish refused: {exc}") from None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise Deposed(f"publish failed: {exc!r}") from None
        if ack.seq != expected + 1:
            raise Deposed(f"stored as {ack.seq}, expected {expected + 1}")
        return int(ack.seq)

    def _fail(self, record: _Batch) -> None:
        if not record.done.is_set():
            record.error = _lost()
            record.done.set()

    def _step_down(self, why: str) -> None:
        was = self.role
        self._term += 1  # the publisher of the old term stops
        with self._lock:
            lost = [*self._queue, *([self._inflight] if self._inflight else [])]
            self._queue.clear()
            self._inflight = None
        for record in lost:
            self._fail(record)
        self._poke()
        self.role = "follower"
        self.leader = None
        self._lease_deadline = 0.0
        if was != "follower":
            self.step_downs += 1
            log.warning("stepping down (%s) at record %d", why, self.applied)
            if self._token is not None:
                self._resubscribe.set()
                self._lease_wake.set()


def _lost() -> Unavailable:
    return Unavailable("this node stopped being the leader before the write was stored; its "
                       "outcome is unknown: read it back or retry", "not_leader")


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %r", exc)


async def _none() -> None:
    return None
