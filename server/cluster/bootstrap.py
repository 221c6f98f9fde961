"""A node whose local log ends before the stream begins starts from the cluster's snapshot store.

The leader puts each snapshot it takes into a JetStream object store and purges the stream up to
the snapshot *before* it (so a follower that lags by less than a snapshot interval still finds
every record it needs in the stream). A node whose local data dir is empty, or ends before the
stream's first record, downloads the stored snapshot into its own ``snap/`` directory before
recovery; recovery then loads it like a local snapshot, and the node reads the stream after it.

Runs before the server starts (in a worker thread, with a short-lived asyncio loop and NATS
connection of its own); when NATS cannot be reached here, it does nothing and the replica's own
connection refuses the start with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import nats
import trio
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from server.cluster.names import Names
from server.config import Settings
from wal.layout import fsync_dir, list_segments, list_snapshots, snap_dir, snapshot_path

log = logging.getLogger("roster")

#: the stored snapshot's object name; its description holds the LSN it covers
SNAPSHOT_OBJECT = "snapshot"
BOOTSTRAP_TIMEOUT_S = 60.0


def local_position(data_dir: Path) -> int:
    """A lower bound of the last record in the local data dir (from file names only)."""
    snaps = list_snapshots(data_dir)
    segments = list_segments(data_dir)
    return max([s.lsn for s in snaps] + [s.first_lsn - 1 for s in segments] + [0])


async def bootstrap(settings: Settings) -> int | None:
    """Fetch the stored snapshot when the stream no longer holds what this node lacks; return the
    LSN it covers, or None when nothing was fetched."""
    fetched = await trio.to_thread.run_sync(asyncio.run, _fetch(settings))
    if fetched is None:
        return None
    lsn, data = fetched
    await trio.to_thread.run_sync(_install, settings.data_dir, lsn, data)
    return lsn


def _install(data_dir: Path, lsn: int, data: bytes) -> None:
    """Write the snapshot as recovery expects a local one: tmp, fsync, rename, fsync the dir."""
    path = snapshot_path(data_dir, lsn)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(snap_dir(data_dir))


async def _fetch(settings: Settings) -> tuple[int, bytes] | None:
    names = Names.of(settings.cluster_name)
    try:
        nc = await asyncio.wait_for(
            nats.connect(servers=list(settings.cluster), connect_timeout=2.0,
                         max_reconnect_attempts=1, allow_reconnect=False,
                         error_cb=_quiet), 10.0)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.info("bootstrap: NATS not reachable (%r); starting from the local data", exc)
        return None
    try:
        return await asyncio.wait_for(_fetch_with(nc, names, settings.data_dir),
                                      BOOTSTRAP_TIMEOUT_S)
    except (TimeoutError, nats.errors.Error) as exc:
        log.warning("bootstrap: could not fetch the stored snapshot (%r)", exc)
        return None
    finally:
        await nc.close()


async def _fetch_with(nc: NatsClient, names: Names, data_dir: Path) -> tuple[int, bytes] | None:
    js = nc.jetstream()
    try:
        info = await js.stream_info(names.stream)
    except NotFoundError:
        return None  # a new cluster: the stream starts at record 1
    local = local_position(data_dir)
    first = info.state.first_seq
    if info.state.messages == 0 or first <= local + 1:
        return None  # the stream still holds every record after the local ones
    try:
        store = await js.object_store(names.snapshot_bucket)
        result = await store.get(SNAPSHOT_OBJECT)
    except NotFoundError:
        log.error("bootstrap: the stream starts at record %d, this node has %d, and no snapshot "
                  "is stored", first, local)
        return None
    lsn = int(result.info.description or 0)
    if lsn <= local:
        return None
    data = result.data or b""
    log.info("bootstrap: fetched the stored snapshot at record %d (%d bytes); the stream starts "
             "at record %d", lsn, len(data), first)
    return lsn, data


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %r", exc)
