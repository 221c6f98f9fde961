"""``wal``: the write-ahead log on its own, through ``wal.WriteAheadLog`` and ``wal.recover``.

1. **appends**: for each fsync policy and writer count, ``writers`` trio tasks each loop
   ``lsn = log.submit(batch); await log.wait_durable(lsn)`` for a fixed time. Reported: durable
   acknowledgements per second, flushed batches, records per batch (group commit), fsyncs and
   their mean time. Each run gets a fresh data dir.
2. **replay**: ``records`` realistic mutation records (half ``wl_set`` of 2 uids, half ``sub_add``
   of 10) are written with ``--fsync none``, then ``wal.recover`` reads them back: applying to a
   fresh ``State`` (the server's restart path), the same with the cyclic GC off (to show its
   share), the same with a progress hook (to show it costs nothing), with a no-op apply
   (framing, CRC and msgpack alone: the walker's own share), and ``State.apply`` alone over the
   already decoded records (the engine's share, the floor for any walker).
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

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from bench.common import Record, Stopwatch, log, new_record, percentile, table
from bench.gen import Shape, generate, memberships
from server.restore import replayer
from server.state import GROUP, State
from wal import FsyncPolicy, RecoveryProgress, WriteAheadLog, pack, recover
from wal.codec import unpack

Recover = Callable[..., Any]


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
        stats = log_.statistics()
        batches, records = stats.batches, stats.records_written
        fsyncs, fsync_s = stats.fsync_count, stats.fsync_seconds_total
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


def _replay(data_dir: Path, apply: bool, gc_off: bool = False, progress: bool = False,
            recover_fn: Recover = recover) -> dict[str, float]:
    state = State()
    was = gc.isenabled()
    if gc_off:
        gc.disable()
    ticks: list[RecoveryProgress] = []

    apply_record = replayer(state)

    def ignore(lsn: int, obj: object) -> None:
        pass

    extra: dict[str, Any] = {"progress": ticks.append} if progress else {}
    try:
        report = recover_fn(data_dir, load_snapshot_chunk=state.load_chunk,
                            apply_record=apply_record if apply else ignore, log=lambda m: None,
                            **extra)
    finally:
        if was:
            gc.enable()
    out = {
        "records": report.records_replayed,
        "seconds": report.elapsed_s,
        "records_per_s": report.records_replayed / report.elapsed_s if report.elapsed_s else 0.0,
    }
    if progress:
        out["progress_calls"] = len(ticks)
    return out


def _apply_only(records: int) -> dict[str, float]:
    """``State.apply`` alone, GC off, over the bench's records already decoded (as msgpack hands
    them back: lists): what the engine costs however fast the walker gets."""
    batches = [unpack(pack(_batch(i))) for i in range(records)]
    state = State()
    was = gc.isenabled()
    gc.disable()
    try:
        apply = state.apply
        t0 = time.perf_counter()
        for batch in batches:
            apply(batch)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
    finally:
        if was:
            gc.enable()
    return {"records": records, "seconds": seconds, "records_per_s": records / seconds}


def _reference_recover() -> Recover | None:
    """The walk recovery had before wal/walk.py, frozen in the tests, for a same-run "before"."""
    try:
        from tests.wal.reference_walk import recover as reference
    except ImportError:
        return None
    return reference


def replay_compare(records: int, rounds: int) -> Record:
    """``--replay-only``: the new walker and the frozen old one on the same files, in the same
    process, alternating, ``rounds`` times each; best and median of each."""
    rec = new_record("wal_replay", False, {"records": records, "rounds": rounds})
    root = Path(tempfile.mkdtemp(prefix="roster-bench-replay-"))
    reference = _reference_recover()
    variants: dict[str, Callable[[], dict[str, float]]] = {
        "new_apply_gc_off": lambda: _replay(root, apply=True, gc_off=True),
        "new_apply_gc_off_progress": lambda: _replay(root, apply=True, gc_off=True,
                                                     progress=True),
        "new_read_only": lambda: _replay(root, apply=False, gc_off=True),
        "apply_only": lambda: _apply_only(records),
    }
    if reference is not None:
        variants["old_apply_gc_off"] = lambda: _replay(root, apply=True, gc_off=True,
                                                       recover_fn=reference)
        variants["old_read_only"] = lambda: _replay(root, apply=False, gc_off=True,
                                                    recover_fn=reference)
    else:
        rec["notes"].append("tests.wal.reference_walk not importable: no old-walk figures")
    try:
        log(f"wal replay: writing {records:,} records")
        trio.run(_write_records, root, records)
        rec["results"]["replay_bytes"] = sum(p.stat().st_size for p in (root / "wal").glob("*"))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for r in range(rounds):
            for name, fn in variants.items():
                gc.collect()
                runs[name].append(fn())
            log(f"wal replay: round {r + 1}/{rounds} done")
        for name, results in runs.items():
            rates = [x["records_per_s"] for x in results]
            rec["results"][name] = {"best_records_per_s": max(rates),
                                    "median_records_per_s": statistics.median(rates),
                                    "runs": results}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rec


def print_replay_compare(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    names = [n for n in ("old_apply_gc_off", "new_apply_gc_off", "new_apply_gc_off_progress",
                         "old_read_only", "new_read_only", "apply_only") if n in r]
    rows = [(name, r[name]["best_records_per_s"], r[name]["median_records_per_s"])
            for name in names]
    table(f"wal replay, {rec['params']['records']:,} records ({r['replay_bytes'] / 1e6:.1f} MB), "
          f"{rec['params']['rounds']} alternating rounds, GC off",
          ("what", "best records/s", "median records/s"), rows, out)
    ratios = []
    for new, old in (("new_apply_gc_off", "old_apply_gc_off"),
                     ("new_read_only", "old_read_only")):
        if new in r and old in r:
            ratios.append((f"{new} / {old}",
                           r[new]["best_records_per_s"] / r[old]["best_records_per_s"],
                           r[new]["median_records_per_s"] / r[old]["median_records_per_s"]))
    if ratios:
        table("ratios (same run, same files)", ("what", "best", "median"), ratios, out)


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
                             apply_record=replayer(state),
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
        res["replay_apply_gc_off_progress"] = _replay(replay_dir, apply=True, gc_off=True,
                                                      progress=True)
        gc.collect()
        res["replay_no_apply"] = _replay(replay_dir, apply=False)
        gc.collect()
        res["replay_apply_only"] = _apply_only(records)
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
    ]
    if "replay_apply_gc_off_progress" in r:
        rp = r["replay_apply_gc_off_progress"]
        rows.append(("  the same with a progress hook", rp["records"], rp["seconds"],
                     rp["records_per_s"]))
    rows.append(("replay, no-op apply (frame+CRC+msgpack)", rn["records"], rn["seconds"],
                 rn["records_per_s"]))
    if "replay_apply_only" in r:
        rs = r["replay_apply_only"]
        rows.append(("State.apply alone, decoded records, GC off", rs["records"], rs["seconds"],
                     rs["records_per_s"]))
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


def _cli(argv: list[str] | None = None) -> int:
    """``python -m bench.walbench --replay-only [--records N] [--rounds R] [--json]``: only the
    replay figures, old walk beside new (the full ``python -m bench wal`` has everything)."""
    parser = argparse.ArgumentParser(prog="python -m bench.walbench", description=_cli.__doc__)
    parser.add_argument("--replay-only", action="store_true", required=True,
                        help="measure replay only (new walker vs the frozen old walk)")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the record as JSON on stdout")
    args = parser.parse_args(argv)
    rec = replay_compare(args.records, args.rounds)
    print_replay_compare(rec, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(rec, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
