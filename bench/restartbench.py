"""``restart``: ``roster serve`` start to the first ``/health`` 200 from a snapshot, against Redis
loading the same sets from its RDB, measured in the same run.

Goals (printed, never asserted): with 1M channels x 10 members, Roster start -> ``/health`` 200
in at most 10 s, and at most 4x the time Redis takes to load the same sets from an RDB.

Set-up, all in this run:

* Roster: the generated shape (``bench/gen.py``) written as a snapshot at lsn 0 into a template
  data dir (``procs.write_template``, as ``http`` and ``resp`` do), optionally followed by a log
  tail of ``--tail-records`` records (one ``sub_add`` or ``wl_set`` batch each, on existing
  channels) so that the start also replays;
* Redis: the same sets loaded into a private redis-server with ``redis-cli --pipe``
  (``peer.redis_server``), then ``SAVE``; the RDB is copied out and that server stopped.

Rounds (``--rounds``, best of them is the figure; Roster and Redis alternate):

* Roster: ``roster serve --data-dir <fresh copy of the template> --port 0 --resp-port 0
  --fsync none`` (at log level INFO, for its "recovered lsn ... in X s" line). Timed from just
  before the process is started to the first ``GET /health`` answered 200. The port opens only
  after recovery, so the time the "roster: listening" line appeared is recorded too (polled every
  50 ms), and the recovery time the server logs itself;
* Redis: a fresh ``redis-server --dir <that dir> --dbfilename dump.rdb --appendonly no`` timed
  from process start until it answers ``PING`` with ``PONG`` and ``INFO persistence`` says
  ``loading:0`` (polled every 10 ms), and the "DB loaded from disk: X seconds" line it logs.

RSS of each server is read from /proc right after it is up. Both read files that were just
written, so both load from the page cache: this is a warm restart, not a cold-disk one.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trio

from bench import peer, procs
from bench.common import Record, Stopwatch, log, new_record, table
from bench.gen import Shape, channel_id, generate, uid
from bench.respbench import resp_call
from server.state import GROUP
from wal import WriteAheadLog

#: the team's goals for 1M channels x 10 members
GOAL_SECONDS = 10.0
GOAL_RATIO = 4.0
GOAL_CHANNELS = 1_000_000

_RECOVERED = re.compile(r"recovered lsn (\d+) \(snapshot (\d+) \+ (\d+) records from (\d+) "
                        r"segments\) in ([\d.]+) s")
_REDIS_LOADED = re.compile(r"DB loaded from disk: ([\d.]+) seconds")
_MIB = 1048576


# -- building the two data sets -----------------------------------------------------------------


def _tail_batch(shape: Shape, i: int) -> tuple[int, list[tuple[Any, ...]]]:
    """One log record as a write request logs it, on a channel the snapshot holds."""
    pad = shape.padded_ids
    cid = channel_id((i * 7919) % shape.channels, pad)
    users = shape.user_count
    if i % 2:
        uids = [uid((i + k) % users, pad) for k in (0, 1)]
        return (1_700_000_000_000 + i, [("wl_set", cid, GROUP, uids)])
    return (1_700_000_000_000 + i,
            [("sub_add", cid, GROUP, [uid((i * 13 + k) % users, pad) for k in range(10)])])


async def _write_tail(data_dir: Path, shape: Shape, count: int) -> None:
    wal = WriteAheadLog(data_dir, next_lsn=1, fsync="none")
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run)
        for i in range(count):
            wal.submit(_tail_batch(shape, i))
            if i % 2000 == 1999:
                await trio.lowlevel.checkpoint()  # let the flusher take a batch
        await wal.wait_durable(wal.last_lsn)
        await wal.close()


def build_roster(shape: Shape, template: Path, tail_records: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Stopwatch() as sw:
        state = generate(shape)
    out["generate_s"] = sw.seconds
    out["template"] = procs.write_template(state, template)
    del state
    gc.collect()
    if tail_records:
        with Stopwatch() as sw:
            trio.run(_write_tail, template, shape, tail_records)
        out["tail_write_s"] = sw.seconds
        out["tail_bytes"] = sum(p.stat().st_size for p in (template / "wal").glob("*.wal"))
    out["tail_records"] = tail_records
    return out


def build_redis(shape: Shape, target: Path) -> dict[str, Any]:
    """Load ``shape`` into a private redis-server, SAVE, copy the RDB to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    with peer.redis_server(shape) as (port, info):
        out = dict(info)
        with Stopwatch() as sw:
            peer.redis_cli(port, "SAVE")
        out["save_s"] = sw.seconds
        out["dbsize"] = int(peer.redis_cli(port, "DBSIZE").strip())
        source_dir = peer.redis_cli(port, "CONFIG", "GET", "dir").split("\n")[1].strip()
        rdb = target / "dump.rdb"
        shutil.copyfile(Path(source_dir) / "dump.rdb", rdb)
    out["rdb_bytes"] = rdb.stat().st_size
    return out


# -- one timed start each -----------------------------------------------------------------------


def _health(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def roster_round(template: Path, root: Path, index: int, timeout: float) -> dict[str, Any]:
    data = procs.copy_data_dir(template, root / f"roster-data-{index}")
    # roster_command's --log-level WARNING hides the INFO "recovered" line; the last one wins
    cmd = [*procs.roster_command(data, "none"), "--log-level", "INFO"]
    child = procs.Child(cmd, name="roster serve", log_path=root / f"roster-{index}.log",
                        timeout=timeout)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        child.start()  # returns when the "roster: listening" line is in the log
        out["start_to_listening_s"] = child.startup_s
        deadline = t0 + timeout
        status, body = _health(child.url)
        while status != 200 and time.perf_counter() < deadline:
            time.sleep(0.01)
            status, body = _health(child.url)
        out["start_to_health_s"] = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"/health answered {status} for {timeout:g} s")
        out["rss_bytes"] = child.rss()
        out["health"] = body
        m = _RECOVERED.search(child.log_tail(1_000_000))
        if m:
            out["recovered_lsn"] = int(m.group(1))
            out["snapshot_lsn"] = int(m.group(2))
            out["records_replayed"] = int(m.group(3))
            out["segments"] = int(m.group(4))
            out["recovery_s"] = float(m.group(5))
            # interpreter start, imports, set-up, binding: everything but the recovery itself
            out["outside_recovery_s"] = out["start_to_listening_s"] - out["recovery_s"]
        with Stopwatch() as sw:
            code = child.stop()
        out["stop_s"] = sw.seconds
        out["exit_code"] = code
        warnings = [line for line in child.log_tail(1_000_000).splitlines()
                    if '"level": "warning"' in line or '"level": "error"' in line]
        if warnings:
            out["log_warnings"] = warnings[:5]
    finally:
        child.close()
        shutil.rmtree(data, ignore_errors=True)
    return out


def redis_round(rdb_dir: Path, root: Path, index: int, timeout: float) -> dict[str, Any]:
    port = procs.free_port()
    child = procs.Child([
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdb_dir),
        "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--daemonize", "no",
        "--logfile", ""], log_path=root / f"redis-{index}.log", ready=None)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        child.start()  # ready=None: returns right after the process started
        deadline = t0 + timeout
        loaded = False
        while time.perf_counter() < deadline:
            try:
                if resp_call(port, "PING") == "PONG":
                    out.setdefault("start_to_pong_s", time.perf_counter() - t0)
                    info = resp_call(port, "INFO", "persistence")
                    loaded = isinstance(info, str) and "loading:0" in info
            except OSError:
                pass  # not listening yet
            if loaded:
                break
            if child.proc is None or child.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {child.log_tail(500)}")
            time.sleep(0.01)
        out["start_to_loaded_s"] = time.perf_counter() - t0
        if not loaded:
            raise RuntimeError(f"redis-server not loaded after {timeout:g} s")
        out["rss_bytes"] = child.rss()
        out["dbsize"] = resp_call(port, "DBSIZE")
        m = _REDIS_LOADED.search(child.log_tail(100_000))
        if m:
            out["db_load_s"] = float(m.group(1))
        with Stopwatch() as sw:
            code = child.stop()
        out["stop_s"] = sw.seconds
        out["exit_code"] = code
    finally:
        child.close()
    return out


# -- the sub-command ----------------------------------------------------------------------------


def redis_tools() -> bool:
    return all(shutil.which(t) for t in ("redis-server", "redis-cli"))


def run(shape: Shape, rounds: int, tail_records: int, timeout: float, quick: bool) -> Record:
    rec = new_record("restart", quick, {**shape.as_params(), "rounds": rounds,
                                        "tail_records": tail_records, "timeout_s": timeout,
                                        "goal_seconds": GOAL_SECONDS, "goal_ratio": GOAL_RATIO,
                                        "goal_channels": GOAL_CHANNELS})
    res = rec["results"]
    have_redis = redis_tools()
    root = Path(tempfile.mkdtemp(prefix="roster-bench-restart-"))
    try:
        log(f"restart: generating {shape.channels:,} channels x {shape.members} and writing "
            f"the snapshot (+ {tail_records:,} log records)")
        res["build"] = build_roster(shape, root / "template", tail_records)
        if have_redis:
            log("restart: loading the same sets into redis-server (redis-cli --pipe), SAVE")
            res["build"]["redis"] = build_redis(shape, root / "rdb")
        else:
            res["redis_skipped"] = ("redis-server/redis-cli not installed "
                                    "(apt-get install -y redis-server): no Redis rows")
        roster_runs: list[dict[str, Any]] = []
        redis_runs: list[dict[str, Any]] = []
        for i in range(rounds):
            log(f"restart: round {i + 1}/{rounds}: roster serve")
            roster_runs.append(roster_round(root / "template", root, i, timeout))
            log(f"restart: round {i + 1}/{rounds}: roster up in "
                f"{roster_runs[-1]['start_to_health_s']:.2f} s")
            if have_redis:
                log(f"restart: round {i + 1}/{rounds}: redis-server")
                redis_runs.append(redis_round(root / "rdb", root, i, timeout))
                log(f"restart: round {i + 1}/{rounds}: redis loaded in "
                    f"{redis_runs[-1]['start_to_loaded_s']:.2f} s")
        best_roster = min(roster_runs, key=lambda r: r["start_to_health_s"])
        res["roster"] = {"best": best_roster,
                         "rounds_s": [r["start_to_health_s"] for r in roster_runs],
                         "rounds": roster_runs}
        roster_s = best_roster["start_to_health_s"]
        goals: dict[str, Any] = {
            "applies": shape.channels == GOAL_CHANNELS and shape.members == 10,
            "seconds": {"value": roster_s, "goal": GOAL_SECONDS,
                        "met": roster_s <= GOAL_SECONDS}}
        if redis_runs:
            best_redis = min(redis_runs, key=lambda r: r["start_to_loaded_s"])
            res["redis"] = {"best": best_redis,
                            "rounds_s": [r["start_to_loaded_s"] for r in redis_runs],
                            "rounds": redis_runs}
            ratio = roster_s / best_redis["start_to_loaded_s"]
            res["roster_over_redis"] = ratio
            goals["ratio"] = {"value": ratio, "goal": GOAL_RATIO, "met": ratio <= GOAL_RATIO}
        res["goals"] = goals
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
        for path in sorted(root.glob("*.log")):
            rec["notes"].append(f"{path.name} tail: {path.read_text(errors='replace')[-500:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rec["notes"].append("warm restart: both servers read files just written (page cache)")
    return rec


def _mib(n: float) -> float:
    return n / _MIB


def print_table(rec: Record, out: Any = None) -> None:
    if rec.get("error"):
        table("restart: FAILED", ("error",), [(rec["error"],)], out)
        return
    r, p = rec["results"], rec["params"]
    ros = r["roster"]["best"]
    rows: list[tuple[Any, ...]] = [
        ("roster start -> /health 200 (s)", ros["start_to_health_s"],
         " ".join(f"{x:.2f}" for x in r["roster"]["rounds_s"])),
        ("  start -> 'listening' line (s)", ros["start_to_listening_s"], ""),
        ("  recovery, its own log line (s)", ros.get("recovery_s", "?"),
         f"lsn {ros.get('recovered_lsn', '?')}, {ros.get('records_replayed', '?')} records"),
        ("  the rest: start-up, imports, bind (s)", ros.get("outside_recovery_s", "?"),
         "listening line - recovery"),
        ("  RSS after start (MiB)", _mib(ros["rss_bytes"]), ""),
        ("  stop after SIGTERM (s)", ros["stop_s"], f"exit {ros['exit_code']}"),
    ]
    red = r.get("redis", {}).get("best")
    if red:
        rows += [
            ("redis start -> loaded (s)", red["start_to_loaded_s"],
             " ".join(f"{x:.2f}" for x in r["redis"]["rounds_s"])),
            ("  'DB loaded from disk', its log (s)", red.get("db_load_s", "?"),
             f"{red['dbsize']:,} keys"),
            ("  RSS after load (MiB)", _mib(red["rss_bytes"]), ""),
        ]
    else:
        rows.append(("redis", r.get("redis_skipped", "not run"), ""))
    b = r["build"]
    rows.append(("build: generate / snapshot (s)",
                 f"{b['generate_s']:.1f} / {b['template']['snapshot_s']:.1f}",
                 f"{b['template']['snapshot_bytes'] / 1e6:,.0f} MB snapshot"))
    if "redis" in b:
        rows.append(("build: redis --pipe / SAVE (s)",
                     f"{b['redis']['preload_s']:.1f} / {b['redis']['save_s']:.1f}",
                     f"{b['redis']['rdb_bytes'] / 1e6:,.0f} MB RDB"))
    table(f"restart ({p['channels']:,} channels x {p['members']}, + {p['tail_records']:,} log "
          f"records; best of {p['rounds']} alternating rounds)",
          ("what", "value", "rounds / detail"), rows, out)
    g = r["goals"]
    scope = "" if g["applies"] else f" (goal is for {GOAL_CHANNELS:,} x 10)"
    lines = [("roster start -> /health (s)" + scope, g["seconds"]["value"],
              f"<= {GOAL_SECONDS:g}", "met" if g["seconds"]["met"] else "NOT met")]
    if "ratio" in g:
        lines.append(("roster / redis start" + scope, g["ratio"]["value"], f"<= {GOAL_RATIO:g}x",
                      "met" if g["ratio"]["met"] else "NOT met"))
    table("restart goals (measured in this run; printed, never asserted)",
          ("what", "value", "goal", ""), lines, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = args.channels or (100_000 if quick else 1_000_000)
    rounds = getattr(args, "rounds", 0) or (1 if quick else 3)
    tail = getattr(args, "tail_records", 0)
    timeout = 120.0 if quick else 600.0
    return run(Shape(channels=channels, members=args.members), rounds, tail, timeout, quick)

