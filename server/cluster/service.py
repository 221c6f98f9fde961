"""``ClusterRoster``: the service whose log is the cluster's stream.

Only the commit path differs from ``server/service.py``. ``submit`` checks the ops and queues the
batch on the replica (a follower refuses: 307 to the leader, or 503 ``no_leader``); nothing is
applied at submit. Every record, this node's own included, is applied by ``apply_record`` in
stream order, after JetStream stored it; ``settle`` waits for that and returns the record's
stream sequence (a cluster ticket carries the replica's own rising record number: a sequence is
only known once stored, and a failed term's sequences are reused). A consequence for pipelined
RESP writes: a write that depends on an earlier one of the same chunk (create, then add to the
channel) sees the state before it, so send it after the earlier reply.

The local write-ahead log keeps working as a cache of the stream: each applied record is appended
to it under its stream sequence, so local snapshots and a restart replay work as on one node and
a restarted node only reads the stream after its local log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import nats
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.cluster.names import NodeInfo, advertised
from server.cluster.replica import Batch, Replica
from server.config import Settings
from server.ops import check_ops
from server.presence import StatusNote
from server.service import Roster, Ticket, wall_ms
from server.state import State
from wal import SnapshotInfo, WriteAheadLog

log = logging.getLogger("roster")

ROLES = ("leader", "follower", "candidate")


class ClusterRoster(Roster):
    def __init__(self, state: State, wal: WriteAheadLog, settings: Settings,
                 on_fatal: Callable[[BaseException], None],
                 clock: Callable[[], int] = wall_ms) -> None:
        super().__init__(state, wal, settings, clock)
        self.replica = Replica(settings, self.apply_record, applied_lsn=wal.last_lsn,
                               on_fatal=on_fatal)
        self.metric_sources.append(self.collect)
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        if self.webhook is not None:
            # Every node sees every event; only the leader delivers them, once.
            offer = self.webhook.offer
            self.events.listeners.remove(offer)
            self.events.listeners.append(self._leader_only(offer))

    def _leader_only(self, offer: Callable[[Any], None]) -> Callable[[Any], None]:
        def deliver(event: Any) -> None:
            if self.replica.role == "leader":
                offer(event)
        return deliver

    def advertise(self, http_addr: str, resp_addr: str | None) -> NodeInfo:
        """Tell the cluster where this node serves (once the ports are bound)."""
        s = self.settings
        me = advertised(s.node_id, s.advertise_url, http_addr, resp_addr)
        self.replica.advertise(me)
        return me

    # -- the commit path -------------------------------------------------------------------

    def submit(self, ops: Sequence[Sequence[Any]], now_ms: int | None = None) -> Ticket:
        check_ops(ops)
        # The ticket's number is the replica's (rising, never reused across terms); settle
        # turns it into the stream sequence the record got.
        number = self.replica.submit((self.now_ms() if now_ms is None else now_ms, ops))
        return Ticket(number, False)

    async def settle(self, ticket: Ticket) -> int:
        """Wait for the ticket's record; return its LSN (stream sequence) once applied here."""
        return await self.replica.wait(ticket.lsn)

    def apply_record(self, lsn: int, batches: list[Batch]) -> None:
        """Apply stream record ``lsn`` (called in stream order) and keep it in the local log."""
        logged = self.wal.submit(batches)
        if logged != lsn:
            raise RuntimeError(f"local log at {logged}, stream record {lsn}: they diverged")
        notes: list[StatusNote] = []
        for batch in batches:
            self.state.apply(batch, notes)
        self.events.stage(lsn, notes)
        self.events.release(lsn)
        if self._lsn_waiters:
            self.wake_lsn_waiters(lsn)
        if self.wal.bytes_since_snapshot >= self.settings.snapshot_bytes:
            self._snapshot_wanted.set()

    async def snapshot(self) -> SnapshotInfo:
        """A local snapshot; the leader also stores it for new nodes and purges the stream."""
        info = await super().snapshot()
        if self.replica.role == "leader":
            try:
                await self.replica.store_snapshot(info.lsn, info.path)
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                # The stream still holds everything: new nodes just read more of it.
                log.warning("could not store the snapshot at record %d: %r", info.lsn, exc)
        return info

    async def purge_expired(self) -> int:
        if self.replica.role != "leader":
            return 0  # the leader purges for everyone; its records reach every node
        return await super().purge_expired()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Replicate until :meth:`stop` (or cancellation)."""
        try:
            with self._scope:
                await self.replica.run(task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Stop replicating: the lease is given up and no record is applied after this."""
        self._scope.cancel()
        if self.replica.started:
            await self._stopped.wait()

    # -- what /health and /metrics say -------------------------------------------------------

    def role_fields(self) -> dict[str, object]:
        r = self.replica
        return {"role": r.role, "leader": r.leader.url if r.leader else None,
                "node_id": r.me.node_id if r.me else self.settings.node_id,
                "applied_lsn": r.applied}

    def collect(self) -> Iterator[Metric]:
        r = self.replica
        role = GaugeMetricFamily("roster_cluster_role", "1 for this node's role", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if r.role == name else 0.0)
        yield role
        yield GaugeMetricFamily("roster_cluster_applied_lsn", "last stream record applied here",
                                value=r.applied)
        yield GaugeMetricFamily("roster_cluster_replication_lag",
                                "stream records not yet applied here (stream last - applied)",
                                value=max(0, r.stream_last - r.applied))
        yield CounterMetricFamily("roster_cluster_lease_renewals",
                                  "lease renewals while this node led", value=r.lease_renewals)
        yield CounterMetricFamily("roster_cluster_records_published",
                                  "stream records this node stored as leader",
                                  value=r.records_published)
        yield CounterMetricFamily("roster_cluster_batches_published",
                                  "writes in those records (group commit: several per record)",
                                  value=r.batches_published)
        yield CounterMetricFamily("roster_cluster_publish_seconds",
                                  "time from a record's publish to JetStream's acknowledgement",
                                  value=r.publish_seconds)
        yield CounterMetricFamily("roster_cluster_snapshots_stored",
                                  "snapshots this node put in the cluster's snapshot store",
                                  value=r.snapshots_stored)
        yield CounterMetricFamily("roster_cluster_terms", "times this node became the leader",
                                  value=r.terms)
        yield CounterMetricFamily("roster_cluster_step_downs", "times this node stepped down",
                                  value=r.step_downs)

