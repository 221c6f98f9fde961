"""``/metrics``: Prometheus text via prometheus-client, cheap on the hot path.

Only two things are recorded per request (a counter and a latency histogram, labelled by route,
method and status — route is the matched rule, never the raw path, so label sets stay bounded).
Everything else — log position, fsync totals, snapshot age, channel and membership counts — is
read from the live objects when Prometheus scrapes, by a collector, so it costs nothing between
scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.service import Roster

# The *_created series double every counter's output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

ASGIApp = Callable[[dict[str, Any], Any, Any], Any]


class _LiveCollector(Collector):
    def __init__(self, roster: Roster) -> None:
        self.roster = roster

    def collect(self) -> Iterator[Metric]:
        r = self.roster
        wal = r.wal.statistics()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield gauge("roster_wal_lsn", "LSN of the last record submitted to the log", wal.last_lsn)
        yield gauge("roster_wal_durable_lsn", "LSN up to which the log is durable",
                    wal.durable_lsn)
        yield counter("roster_wal_bytes", "bytes written to the log", wal.bytes_written)
        yield counter("roster_wal_records", "records written to the log", wal.records_written)
        yield counter("roster_wal_batches", "group-commit batches (one write each)", wal.batches)
        yield gauge("roster_wal_last_batch_records", "records in the last group-commit batch",
                    wal.last_batch_records)
        yield counter("roster_wal_fsyncs", "fdatasync calls on the log", wal.fsync_count)
        yield counter("roster_wal_fsync_seconds", "time spent in fdatasync",
                      wal.fsync_seconds_total)
        yield gauge("roster_wal_bytes_since_snapshot", "log bytes not yet covered by a snapshot",
                    wal.bytes_since_snapshot)
        yield counter("roster_snapshots", "snapshots written by this process", r.snapshots_taken)
        last = r.last_snapshot
        if last is not None:
            yield gauge("roster_snapshot_age_seconds", "seconds since the last snapshot finished",
                        time.monotonic() - r.last_snapshot_at)
            yield gauge("roster_snapshot_duration_seconds", "duration of the last snapshot",
                        last.seconds)
            yield gauge("roster_snapshot_bytes", "size of the last snapshot", last.bytes)
            yield gauge("roster_snapshot_lsn", "LSN covered by the last snapshot", last.lsn)
        counts = r.state.counts()
        yield gauge("roster_channels", "channels held (all types)", counts["channels"])
        members = GaugeMetricFamily("roster_memberships", "members over all channels, by list",
                                    labels=["list"])
        for kind in ("subscribers", "whitelist", "blacklist"):
            members.add_metric([kind], counts[kind])
        yield members
        yield gauge("roster_system_uids", "system accounts", counts["system_uids"])
        presence = r.state.presence
        yield gauge("roster_online_users", "users with at least one online device",
                    presence.online_users())
        yield gauge("roster_subscriptions", "status subscriptions held (expired ones until purged)",
                    presence.subscription_count)
        hub = r.events.statistics()
        yield counter("roster_events_published", "presence events published", hub.published)
        yield gauge("roster_event_streams", "open /events streams", hub.streams_open)
        yield counter("roster_event_streams_cut", "/events streams cut off for falling behind",
                      hub.streams_cut)
        yield counter("roster_event_stream_resets", "/events resumes answered with reset",
                      hub.resets)
        if r.webhook is not None:
            hook = r.webhook.statistics()
            yield gauge("roster_webhook_queue", "webhook items waiting", hook.queued)
            yield counter("roster_webhook_enqueued", "webhook items queued", hook.enqueued)
            yield counter("roster_webhook_delivered", "webhook items acknowledged by the receiver",
                          hook.delivered)
            yield counter("roster_webhook_attempts", "webhook POSTs tried", hook.attempts)
            yield counter("roster_webhook_failed_attempts", "webhook POSTs that failed",
                          hook.failed_attempts)
            dropped = CounterMetricFamily("roster_webhook_dropped", "webhook items given up",
                                          labels=["reason"])
            dropped.add_metric(["queue_full"], hook.dropped_queue_full)
            dropped.add_metric(["gave_up"], hook.dropped_gave_up)
            yield dropped
        for extra in r.metric_sources:
            yield from extra()


class Metrics:
    def __init__(self, roster: Roster) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("roster_http_requests", "HTTP requests by route, method, status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("roster_http_request_duration_seconds",
                                 "time from request to the end of the response, by route",
                                 ["route"], buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_LiveCollector(roster))
        self.routes: frozenset[str] = frozenset()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting every HTTP request, including 404s and auth failures."""
        requests, latency = self.requests, self.latency

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            path = scope["path"]
            route = path if path in self.routes else "unmatched"
            status = 500
            start = time.perf_counter()

            async def send_and_note(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_and_note)
            finally:
                requests.labels(route, scope["method"], str(status)).inc()
                latency.labels(route).observe(time.perf_counter() - start)

        return asgi
