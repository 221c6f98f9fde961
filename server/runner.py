"""The process: lock the data dir, recover, then serve until told to stop.

Order matters (docs/architecture.md, "A mutation's way through" and "Recovery"): recovery
finishes **before** the ports open, so no request ever sees half-replayed state. The log flusher,
the snapshotter and the purge task run in our own nursery, not quart's (whose shutdown waits 5 s);
hypercorn is stopped through its shutdown trigger so in-flight requests finish, and the log is
flushed and fsynced in a ``finally`` after it returns.

Exit codes (server/startup.py keeps the table and maps each refusal to its code):

    0  clean stop          1  the log failed while serving (fail-stop)
    2  usage / config      3  cannot listen (port in use, host not ours, no permission)
    4  data dir unusable   5  data dir locked by another server      6  the log is corrupt

A refusal (2-6) happens before anything is served and is raised as a plain exception: errors
raised inside a trio nursery arrive wrapped in an ExceptionGroup, which :func:`run` unwraps so
the CLI prints one line instead of a group's traceback.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from server.app import create_app
from server.config import Settings
from server.edge import EdgeLimits, InFlight, raise_nofile_limit, serve_http
from server.resp import RespServer
from server.restore import load_state
from server.service import Roster
from server.startup import ListenError, sole_error, split_bind, unusable
from server.state import State
from server.version import version
from wal import DataDirLock, LogFailedError, RecoveryProgress, WriteAheadLog

if TYPE_CHECKING:
    from server.cluster.service import ClusterRoster

log = logging.getLogger("roster")

#: how long in-flight requests get to finish after SIGTERM/SIGINT
GRACEFUL_TIMEOUT_S = 10.0


class RecoveryLog:
    """Tells a person watching the log how recovery is going: one line a second once it has
    run for a second (a 1M-channel restart takes seconds; silence would look like a hang).

    The ports open only after recovery, so until then the progress lines are the way to see
    it; ``/health`` answers once the server serves.
    """

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self.started = time.monotonic()
        self._next = self.started + every_s
        self.channels_total = 0
        #: when the last snapshot chunk was loaded: the log replay starts there
        self._replay_from = self.started

    def _due(self) -> float | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.every_s
        return now - self.started

    def snapshot_chunk(self, state: State, chunk: object) -> None:
        self._replay_from = time.monotonic()
        if isinstance(chunk, dict) and chunk.get("kind") == "meta":
            self.channels_total = int(chunk.get("channels") or 0)
        elapsed = self._due()
        if elapsed is not None:
            loaded = state.counts()["channels"]
            share = f" ({100 * loaded / self.channels_total:.0f} %)" if self.channels_total else ""
            log.info("recovering: snapshot, %d of %d channels loaded%s, %.1f s", loaded,
                     self.channels_total, share, elapsed)

    def log_replay(self, p: RecoveryProgress) -> None:
        elapsed = self._due()
        if elapsed is not None:
            share = 100 * p.bytes_read / p.bytes_total if p.bytes_total else 100.0
            replaying = time.monotonic() - self._replay_from
            log.info("recovering: log %.0f %% read, %d records replayed (%.0f records/s), %.1f s",
                     share, p.records, p.records / max(replaying, 1e-9), elapsed)


def recover_state(settings: Settings) -> tuple[State, int]:
    """Rebuild the state from the newest valid snapshot and the log; return it and the last LSN."""
    state, report = load_state(settings.data_dir, mode=settings.wal_recovery,
                               system_uids=settings.system_uids, stream=bool(settings.cluster),
                               log=log.warning, watcher=RecoveryLog())
    log.info(
        "recovered lsn %d (snapshot %d + %d records from %d segments) in %.3f s",
        report.last_lsn, report.snapshot_lsn, report.records_replayed, report.segments,
        report.elapsed_s,
    )
    return state, report.last_lsn


def hypercorn_config(settings: Settings) -> HypercornConfig:
    cfg = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    cfg.bind = [f"{host}:{settings.port}"]
    cfg.graceful_timeout = GRACEFUL_TIMEOUT_S
    # Deadlines are kept by server/edge.py; these two matter only to hypercorn's own serve()
    # (bench/floor.py serves its floor app that way).
    cfg.keep_alive_timeout = settings.http_idle_timeout
    cfg.read_timeout = math.ceil(settings.http_idle_timeout)
    # hypercorn takes Logger objects: its lines then go through our (JSON) formatter.
    cfg.accesslog = logging.getLogger("hypercorn.access") if settings.access_log else None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    return cfg


async def serve(settings: Settings, *, task_status: trio.TaskStatus[list[str]]
                = trio.TASK_STATUS_IGNORED) -> int:
    """Run Roster until SIGINT/SIGTERM (or a log failure); return the process exit code."""
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    try:
        if settings.cluster:  # a node behind the stream's start fetches the stored snapshot
            from server.cluster.bootstrap import bootstrap

            await bootstrap(settings)
        try:
            state, last_lsn = recover_state(settings)
        except OSError as exc:  # e.g. a segment this user may not read
            raise unusable(str(settings.data_dir), exc, "cannot read the log") from None
        fatal: list[BaseException] = []
        stop = trio.Event()

        def on_fatal(exc: BaseException) -> None:
            # PostgreSQL's rule: an fsync failure is never retried. Waiters already got 503;
            # stop serving and exit non-zero so a supervisor restarts us into recovery.
            log.critical("write-ahead log failed, stopping: %r", exc)
            fatal.append(exc)
            stop.set()

        wal = WriteAheadLog(settings.data_dir, next_lsn=last_lsn + 1, fsync=settings.fsync,
                            segment_bytes=settings.segment_bytes, on_fatal=on_fatal)
        cluster: ClusterRoster | None = None
        roster: Roster
        if settings.cluster:
            from server.cluster.service import ClusterRoster

            roster = cluster = ClusterRoster(state, wal, settings, on_fatal)
        else:
            roster = Roster(state, wal, settings)
        requests = InFlight()
        app = create_app(roster)
        resp: RespServer | None = None
        if settings.resp_port is not None:
            resp = RespServer(app.extensions["command_context"],
                              settings.resp_host or settings.host, settings.resp_port,
                              settings.resp_max_clients, settings.resp_idle_timeout,
                              settings.token, settings.resp_command_timeout)
            roster.metric_sources.append(resp.collect)

        # Bind both ports before anything starts, so a port in use is one clear line, not a
        # traceback from inside a nursery.
        hcfg = hypercorn_config(settings)
        limits = EdgeLimits.from_settings(settings, raise_nofile_limit())
        http_sockets = _bind_http(hcfg)
        if resp is not None:
            try:
                await resp.listen()
            except OSError as exc:
                _close(http_sockets)
                raise ListenError.bind_failed("RESP", resp.host, resp.port, exc,
                                              host_flag="--resp-host",
                                              port_flag="--resp-port") from None
        if not settings.is_loopback() and not settings.token:
            log.warning(
                "LISTENING ON %s WITHOUT A MANAGER TOKEN: anyone who can reach this port can "
                "change every channel. Pass --token (or ROSTER_TOKEN).",
                " and ".join(sorted({settings.host, settings.resp_host or settings.host})))

        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(wal.run)
            except LogFailedError as exc:  # the first segment: a full disk, an I/O error
                cause = exc.__cause__
                if not isinstance(cause, OSError):
                    raise
                raise unusable(str(settings.data_dir), cause,
                               "cannot create the first log segment") from None
            if cluster is not None:  # connects to NATS: refuses to start if it cannot
                await nursery.start(cluster.run)
            nursery.start_soon(roster.snapshot_loop)
            nursery.start_soon(roster.purge_loop)
            nursery.start_soon(roster.webhook_loop)
            nursery.start_soon(_stop_on_signal, stop)
            try:
                async with trio.open_nursery() as web:
                    resp_addrs: list[str] = []
                    if resp is not None:
                        resp_addrs = await web.start(resp.serve)
                    addrs = await web.start(partial(
                        serve_http, wrap_app(requests.wrap(app), hcfg.wsgi_max_body_size, "asgi"),
                        hcfg, limits, sockets=http_sockets, shutdown_trigger=stop.wait,
                        in_flight=requests))
                    if resp is not None:
                        print(f"roster: resp on {' '.join(resp_addrs)}", flush=True)
                    print(f"roster: listening on {' '.join(addrs)} (version {version()}, data "
                          f"{settings.data_dir}, fsync {settings.fsync}, lsn {last_lsn})",
                          flush=True)
                    log.info("listening", extra={"addresses": addrs, "resp": resp_addrs,
                                                 "lsn": last_lsn, "version": version()})
                    if cluster is not None:
                        cluster.advertise(addrs[0], resp_addrs[0] if resp_addrs else None)
                    task_status.started(addrs)
                    await stop.wait()
                    roster.events.close()  # end the /events streams: they would never drain
                    # The HTTP port has stopped accepting and idle keep-alive connections are
                    # closed (server/edge.py). Let in-flight requests (and RESP chunks) finish,
                    # then close the rest.
                    with trio.move_on_after(GRACEFUL_TIMEOUT_S):
                        async with trio.open_nursery() as drain:
                            if resp is not None:
                                drain.start_soon(resp.stop, GRACEFUL_TIMEOUT_S)
                            await requests.drained()
                    web.cancel_scope.cancel()
            finally:
                # Whatever ended the server (signal, log failure, a protocol bug escaping
                # hypercorn), everything already acknowledged is durable; flush the rest.
                with trio.CancelScope(shield=True):
                    if cluster is not None:  # stop applying records (and give the lease up)
                        await cluster.stop()
                    await wal.close()
                nursery.cancel_scope.cancel()
        return 1 if fatal else 0
    finally:
        lock.release()


def _bind_http(cfg: HypercornConfig) -> Sockets:
    try:
        sockets = cfg.create_sockets()
    except OSError as exc:
        host, port = split_bind(cfg.bind[0])
        raise ListenError.bind_failed("HTTP", host, port, exc, host_flag="--host",
                                      port_flag="--port") from None
    for sock in sockets.insecure_sockets:
        sock.listen(cfg.backlog)
    return sockets


def _close(sockets: Sockets) -> None:
    for sock in sockets.insecure_sockets:
        sock.close()


async def _stop_on_signal(stop: trio.Event) -> None:
    """Set ``stop`` on the first SIGINT/SIGTERM, and keep receiving until cancelled.

    The receiver stays open through the whole drain: closed, it would hand SIGINT back to
    Python (a KeyboardInterrupt traceback in the middle of the drain) and SIGTERM back to the
    default action (death before the log's final flush). A repeated signal is logged once per
    signal name; the drain carries on. SIGKILL is the way to stop at once.
    """
    repeated: set[str] = set()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                log.info("received %s: finishing in-flight requests", name)
                stop.set()
            elif name not in repeated:
                repeated.add(name)
                log.warning("received %s while stopping: still finishing in-flight requests "
                            "(at most %.0f s); SIGKILL stops at once", name, GRACEFUL_TIMEOUT_S)


def run(settings: Settings) -> int:
    """Serve in this process; start-up refusals (server/startup.py) propagate to the CLI."""
    try:
        return trio.run(serve, settings)
    except BaseExceptionGroup as group:
        sole = sole_error(group)
        if sole is group:
            raise
        raise sole from None
