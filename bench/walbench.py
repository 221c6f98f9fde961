"""``wal``: the write-ahead log on its own, through ``wal.WriteAheadLog`` and ``wal.recover``.

1. **appends**: for each fsync policy and writer count, ``writers`` trio tasks each loop
   ``lsn = log.submit(batch); await log.wait_durable(lsn)`` for a fixed time. Reported: durable
   acknowledgements per second, flushed batches, records per batch (group commit), fsyncs and
   their mean time. Each run gets a fresh data dir.
2. **replay**: ``records`` realistic mutation records (half ``wl_set`` of 2 uids, half ``sub_add``
   of 10) are written with ``--fsync none``, then ``wal.recover`` reads them back: applying to a
   fresh ``State`` (the server's restart path), the same with the cyclic GC off (to show its
   share), and with a no-op apply (framing, CRC and msgpack alone).
3. **snapshot**: the generated state (1M channels x 10 members by default) is snapshotted through
   ``WriteAheadLog.snapshot(lsn, state.snapshot_chunks())`` while a trio task sleeps 1 ms in a
   loop and records how late it wakes: the worst lateness is the longest the event loop was
   blocked, i.e. the longest a request would have waited. The synchronous
   ``state.snapshot_chunks()`` call is inside the measured window, as it is in the server. First
   with the cyclic GC tracking the state, then again after ``gc.freeze()`` (what the server
   does after recovery and after each snapshot) to show how much of the lag is the collector.
4. **restart**: ``wal.recover`` of that snapshot (plus the few records after it) into a fresh
   ``State``, the start-up path of ``roster serve``; then again with the GC disabled during the
   load, to show its share.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from bench.common import Record, Stopwatch, log, new_record, percentile, table
from bench.gen import Shape, generate, memberships
from server.state import GROUP, State
from wal import FsyncPolicy, WriteAheadLog, recover


def _batch(i: int) -> tuple[int, list[tuple[Any, ...]]]:
    """One realistic record: the batch a whitelist_set or subscriber_add request logs."""
    cid = f"g{i % 100_000}"
    if i % 2:
        return (1_700_000_000_000 + i, [("wl_set", cid, GROUP, [f"u{i}", f"u{i + 1}"])])
    return (1_700_000_000_000 + i, [("sub_add", cid, GROUP, [f"u{i + k}" for k in range(10)])])


# -- appends ------------------------------------------------------------------------------------

async def _appends(data_dir: Path, policy: FsyncPolicy, writers: int,
                   seconds: float) -> dict[str, float]:
    log_ = WriteAheadLog(data_dir, next_lsn=1, fsync=policy)
    payloads = [_batch(i) for i in range(256)]
    done = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(log_.run)
        deadline = trio.current_time() + seconds

        async def writer(k: int) -> None:
            nonlocal done
            record = payloads[k % len(payloads)]
            while trio.current_time() < deadline:
                lsn = log_.submit(record)
                await log_.wait_durable(lsn)
                done += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as tasks:
            for k in range(writers):
                tasks.start_soon(writer, k)
        elapsed = time.perf_counter() - t0
        batches, records = log_.batches, log_.records_written
        fsyncs, fsync_s = log_.fsync_count, log_.fsync_seconds_total
        await log_.close()
    return {
        "acks_per_s": done / elapsed,
        "records": records,
        "batches": batches,
        "records_per_batch": records / batches if batches else 0.0,
        "fsyncs": fsyncs,
        "fsync_mean_ms": fsync_s / fsyncs * 1000 if fsyncs else 0.0,
    }


# -- replay -------------------------------------------------------------------------------------

async def _write_records(data_dir: Path, count: int) -> float:
    log_ = WriteAheadLog(data_dir, next_lsn=1, fsync="none")
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(log_.run)
        for i in range(count):
            log_.submit(_batch(i))
            if i % 2000 == 1999:
                await trio.lowlevel.checkpoint()  # let the flusher take a batch
        await log_.wait_durable(log_.last_lsn)
        await log_.close()
    return time.perf_counter() - t0


def _replay(data_dir: Path, apply: bool, gc_off: bool = False) -> dict[str, float]:
    state = State()
    was = gc.isenabled()
    if gc_off:
        gc.disable()

    def apply_record(lsn: int, obj: object) -> None:
        state.apply(obj)  # type: ignore[arg-type]

    def ignore(lsn: int, obj: object) -> None:
        pass

    try:
        report = recover(data_dir, load_snapshot_chunk=state.load_chunk,
                         apply_record=apply_record if apply else ignore, log=lambda m: None)
    finally:
        if was:
            gc.enable()
    return {
        "records": report.records_replayed,
        "seconds": report.elapsed_s,
        "records_per_s": report.records_replayed / report.elapsed_s if report.elapsed_s else 0.0,
    }


# -- snapshot with the lag monitor --------------------------------------------------------------

class LagMonitor:
    """Sleeps ``interval`` in a loop; remembers how much later than asked each wake-up came."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.worst = 0.0
        self.worst_at = 0.0
        self._t_start = 0.0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._t_start = time.perf_counter()
        task_status.started()
        while True:
            t0 = time.perf_counter()
            await trio.sleep(self.interval)
            late = time.perf_counter() - t0 - self.interval
            self.lags.append(late)
            if late > self.worst:
                self.worst, self.worst_at = late, t0 - self._t_start

    def summary(self) -> dict[str, float]:
        lags = sorted(self.lags)
        return {
            "max_lag_ms": self.worst * 1000,
            "max_lag_at_s": self.worst_at,
            "p99_lag_ms": percentile(lags, 99) * 1000,
            "median_lag_ms": percentile(lags, 50) * 1000,
            "wakeups": len(lags),
        }


async def _snapshot(data_dir: Path, state: State) -> dict[str, Any]:
    """Two snapshots of ``state`` under the monitor: GC tracking the state, then frozen."""
    out: dict[str, Any] = {}
    log_ = WriteAheadLog(data_dir, next_lsn=1, fsync="always")
    async with trio.open_nursery() as nursery:
        await nursery.start(log_.run)
        for i in range(100):
            await log_.wait_durable(log_.submit(_batch(i)))
        for variant in ("gc_on", "gc_frozen"):
            if variant == "gc_frozen":
                gc.freeze()
            monitor = LagMonitor()
            async with trio.open_nursery() as watch:
                await watch.start(monitor.run)
                await trio.sleep(0.05)
                t0 = time.perf_counter()
                lsn = log_.last_lsn
                chunks = state.snapshot_chunks()  # synchronous, as in Roster.snapshot
                copy_s = time.perf_counter() - t0
                info = await log_.snapshot(lsn, chunks)
                total_s = time.perf_counter() - t0
                await trio.sleep(0.05)
                watch.cancel_scope.cancel()
            out[variant] = {"seconds": total_s, "copy_s": copy_s, "bytes": info.bytes,
                            "chunks": info.chunks, **monitor.summary()}
            # one more record so the next snapshot has a newer lsn than this one
            await log_.wait_durable(log_.submit(_batch(1000)))
        gc.unfreeze()
        await log_.close()
    return out


def _restart(data_dir: Path, gc_off: bool) -> dict[str, float]:
    state = State()
    was = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        with Stopwatch() as sw:
            report = recover(data_dir, load_snapshot_chunk=state.load_chunk,
                             apply_record=lambda lsn, obj: state.apply(obj),  # type: ignore[arg-type]
                             log=lambda m: None)
    finally:
        if was:
            gc.enable()
    # The state is freed on return (plain refcounting: it holds no cycles).
    return {"seconds": sw.seconds, "channels": len(state.channels),
            "memberships": memberships(state), "records_replayed": report.records_replayed}


# -- the sub-command ----------------------------------------------------------------------------

def run(shape: Shape, records: int, seconds: float, policies: list[FsyncPolicy],
        writer_counts: list[int], quick: bool) -> Record:
    rec = new_record("wal", quick, {**shape.as_params(), "records": records,
                                    "append_seconds": seconds, "policies": policies,
                                    "writers": writer_counts})
    res = rec["results"]
    root = Path(tempfile.mkdtemp(prefix="roster-bench-wal-"))
    try:
        appends: dict[str, dict[str, Any]] = {}
        for policy in policies:
            appends[policy] = {}
            for writers in writer_counts:
                log(f"wal: appends, fsync {policy}, {writers} writers, {seconds:g} s")
                appends[policy][str(writers)] = trio.run(
                    _appends, root / f"append-{policy}-{writers}", policy, writers, seconds)
        res["appends"] = appends

        log(f"wal: writing {records:,} records, then replaying them")
        replay_dir = root / "replay"
        write_s = trio.run(_write_records, replay_dir, records)
        res["write_unsynced_records_per_s"] = records / write_s
        res["replay_bytes"] = sum(p.stat().st_size for p in (replay_dir / "wal").glob("*.wal"))
        res["replay_apply"] = _replay(replay_dir, apply=True)
        gc.collect()
        res["replay_apply_gc_off"] = _replay(replay_dir, apply=True, gc_off=True)
        gc.collect()
        res["replay_no_apply"] = _replay(replay_dir, apply=False)
        shutil.rmtree(replay_dir)

        log(f"wal: generating {shape.channels:,} channels x {shape.members} for the snapshot")
        state = generate(shape)
        gc.collect()  # as after a real start-up: the state sits in the oldest generation
        res["state_memberships"] = memberships(state)
        log("wal: snapshot under the event-loop lag monitor (GC as is, then frozen)")
        snap_dir = root / "snap"
        res["snapshot"] = trio.run(_snapshot, snap_dir, state)
        del state
        gc.collect()
        log("wal: restart (recover) of that snapshot, GC as is, then GC off during the load")
        res["restart"] = _restart(snap_dir, gc_off=False)
        gc.collect()
        res["restart_gc_off"] = _restart(snap_dir, gc_off=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rec["notes"].append(f"data dir under {tempfile.gettempdir()} (the disk's fdatasync is "
                        "what the 'always' rows pay)")
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    rows: list[tuple[Any, ...]] = []
    for policy, by_writers in r["appends"].items():
        for writers, a in by_writers.items():
            rows.append((policy, int(writers), a["acks_per_s"], a["records_per_batch"],
                         a["batches"], a["fsyncs"], a["fsync_mean_ms"]))
    table("wal appends (WriteAheadLog.submit + wait_durable per writer task)",
          ("fsync", "writers", "acks/s", "records/batch", "batches", "fsyncs", "fsync ms"),
          rows, out)
    ra, rn = r["replay_apply"], r["replay_no_apply"]
    rg = r.get("replay_apply_gc_off", ra)
    rows = [
        ("replay with State.apply", ra["records"], ra["seconds"], ra["records_per_s"]),
        ("replay with State.apply, GC off", rg["records"], rg["seconds"], rg["records_per_s"]),
        ("replay, no-op apply (frame+CRC+msgpack)", rn["records"], rn["seconds"],
         rn["records_per_s"]),
    ]
    table(f"wal replay via wal.recover ({r['replay_bytes'] / 1e6:.1f} MB of segments; written "
          f"unsynced at {r['write_unsynced_records_per_s']:,.0f} rec/s)",
          ("what", "records", "seconds", "records/s"), rows, out)
    s = r["snapshot"]
    rows = [(f"snapshot, {name.replace('_', ' ')}", v["seconds"], v["copy_s"] * 1000,
             v["max_lag_ms"], v["p99_lag_ms"], v["bytes"] / 1e6)
            for name, v in s.items()]
    table(f"snapshot of {r['state_memberships']:,} memberships "
          f"({rec['params']['channels']:,} channels x {rec['params']['members']}) with a 1 ms "
          "lag monitor", ("what", "seconds", "sync copy ms", "max lag ms", "p99 lag ms", "MB"),
          rows, out)
    rows = [("recover (as roster serve does)", r["restart"]["seconds"],
             r["restart"]["channels"]),
            ("recover, GC disabled during load", r["restart_gc_off"]["seconds"],
             r["restart_gc_off"]["channels"])]
    table("restart", ("what", "seconds", "channels"), rows, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = args.channels or (100_000 if quick else 1_000_000)
    records = args.records or (100_000 if quick else 1_000_000)
    seconds = args.seconds or (0.5 if quick else 3.0)
    policies: list[FsyncPolicy] = []
    for p in args.policies.split(","):
        policy = p.strip()
        if policy == "always" or policy == "interval" or policy == "none":
            policies.append(policy)
        else:
            raise SystemExit(f"unknown fsync policy {p!r}")
    writer_counts = [int(w) for w in args.writers.split(",") if w.strip()]
    return run(Shape(channels=channels, members=args.members), records, seconds, policies,
               writer_counts, quick)
