"""``http``: load against real ``roster serve`` subprocesses and the bare-ASGI floor, one run.

Set-up: the generated state is written as a snapshot into a template data dir; three servers
start on copies of it and so answer over the same state: Roster ``--fsync none``, Roster
``--fsync always`` and the floor (``bench/floor.py``). Their start-up time (process start to the
"listening" line: imports plus recovery of the snapshot) and RSS are reported too.

Measurements (``--duration`` seconds each, loopback, keep-alive):

* ``/permission/check``, 64 connections: Roster and the floor, alternately, ``rounds`` times
  (best of the rounds is the figure; this machine is shared, and a slower round means someone
  else was busy, not that the server got slower);
* ``/permission/check_batch`` with 1 000 and 10 000 checks per request: checks/s;
* ``/channel/whitelist_set`` (2 uids, a different channel per request) at 1 and 64 connections,
  on the ``--fsync none`` and the ``--fsync always`` server, alternately, best of ``rounds``:
  req/s and always/none.

Any socket error or non-2xx answer is counted and reported: a run with failures is not a figure.
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.common import Record, Stopwatch, log, new_record, table
from bench.decide import random_work
from bench.gen import Shape, generate
from server.state import State

BATCH_SIZES = (1000, 10_000)


def _check_bodies(state: State, shape: Shape, count: int) -> list[bytes]:
    return [json.dumps({"from_uid": u, "channel_id": c, "channel_type": t}).encode()
            for u, c, t in random_work(state, shape, count, seed=23)]


def _batch_bodies(state: State, shape: Shape, size: int, count: int) -> list[bytes]:
    bodies = []
    for k in range(count):
        work = random_work(state, shape, size, seed=100 + k)
        bodies.append(json.dumps({"checks": [
            {"from_uid": u, "channel_id": c, "channel_type": t} for u, c, t in work
        ]}).encode())
    return bodies


def _whitelist_bodies(shape: Shape, count: int) -> list[bytes]:
    rng = random.Random(31)
    users = shape.user_count
    return [json.dumps({"channel_id": f"g{rng.randrange(shape.channels)}", "channel_type": 2,
                        "uids": [f"u{rng.randrange(users)}", f"u{rng.randrange(users)}"]}
                       ).encode() for _ in range(count)]


def run(shape: Shape, client: str, duration: float, rounds: int, quick: bool) -> Record:
    client = loadgen.choose_client(client)
    rec = new_record("http", quick, {**shape.as_params(), "client": client,
                                     "duration_s": duration, "rounds": rounds,
                                     "check_connections": 64, "batch_sizes": list(BATCH_SIZES)})
    res = rec["results"]
    res["client"] = client
    log(f"http: load client {client}; generating {shape.channels:,} channels x "
        f"{shape.members} for the servers")
    root = Path(tempfile.mkdtemp(prefix="roster-bench-http-"))
    children: list[procs.Child] = []
    try:
        with Stopwatch() as sw:
            state = generate(shape)
        res["generate_s"] = sw.seconds
        checks = _check_bodies(state, shape, 2000)
        batches = {size: _batch_bodies(state, shape, size, 8 if size <= 1000 else 3)
                   for size in BATCH_SIZES}
        whitelist = _whitelist_bodies(shape, 4000)
        template = root / "template"
        res["template"] = procs.write_template(state, template)
        del state
        gc.collect()

        servers: dict[str, procs.Child] = {}
        for name in ("none", "always", "floor"):
            log(f"http: starting {name} (recovers the snapshot)")
            data = procs.copy_data_dir(template, root / f"data-{name}")
            child = (procs.floor(data, root / "floor.log") if name == "floor"
                     else procs.roster(data, name, root / f"roster-{name}.log"))
            children.append(child)
            child.start()
            servers[name] = child
        res["servers"] = {name: {"startup_s": c.startup_s, "rss_bytes": c.rss(), "url": c.url}
                          for name, c in servers.items()}

        def load(target: str, path: str, bodies: list[bytes], conns: int) -> dict[str, Any]:
            log(f"http: {target} {path} x{conns} for {duration:g} s")
            result = loadgen.run_load(client, servers[target].url, path, bodies, conns,
                                      duration).as_dict()
            if result["errors"] or result["non_2xx"]:
                rec["notes"].append(f"{target} {path} x{conns}: {result['errors']} socket "
                                    f"errors, {result['non_2xx']} non-2xx answers")
            return result

        rounds_out: dict[str, list[dict[str, Any]]] = {"roster": [], "floor": []}
        for _ in range(rounds):
            rounds_out["roster"].append(load("none", "/permission/check", checks, 64))
            rounds_out["floor"].append(load("floor", "/permission/check", checks, 64))
        best = {k: max(v, key=lambda r: r["rps"]) for k, v in rounds_out.items()}
        res["check"] = {"roster": best["roster"], "floor": best["floor"],
                        "roster_rounds_rps": [r["rps"] for r in rounds_out["roster"]],
                        "floor_rounds_rps": [r["rps"] for r in rounds_out["floor"]],
                        "roster_over_floor": best["roster"]["rps"] / best["floor"]["rps"]
                        if best["floor"]["rps"] else 0.0}

        res["check_batch"] = {}
        for size in BATCH_SIZES:
            conns = 4 if size <= 1000 else 2
            r = load("none", "/permission/check_batch", batches[size], conns)
            r["checks_per_s"] = r["rps"] * size
            res["check_batch"][str(size)] = r
        r = load("floor", "/permission/check_batch", batches[1000], 4)
        r["checks_per_s"] = r["rps"] * 1000
        res["check_batch_floor_1000"] = r

        # none and always alternate, best of the rounds, like the check above: the ratio of
        # two runs minutes apart on a shared machine says more about the neighbours than fsync.
        res["whitelist_set"] = {}
        res["whitelist_set_rounds_rps"] = {}
        for conns in (1, 64):
            runs: dict[str, list[dict[str, Any]]] = {"none": [], "always": []}
            for _ in range(rounds):
                for policy in ("none", "always"):
                    runs[policy].append(load(policy, "/channel/whitelist_set", whitelist, conns))
            for policy, results in runs.items():
                res["whitelist_set"][f"{policy}_{conns}"] = max(results, key=lambda x: x["rps"])
                res["whitelist_set_rounds_rps"][f"{policy}_{conns}"] = [x["rps"] for x in results]
        ws = res["whitelist_set"]
        res["whitelist_set_always_over_none"] = {
            str(c): ws[f"always_{c}"]["rps"] / ws[f"none_{c}"]["rps"]
            if ws[f"none_{c}"]["rps"] else 0.0 for c in (1, 64)}
        for name, c in servers.items():
            res["servers"][name]["rss_after_bytes"] = c.rss()
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
        for c in children:
            rec["notes"].append(f"{c.name} log tail: {c.log_tail(500)}")
    finally:
        for c in children:
            code = c.close()
            if code not in (0, None, -15):
                rec["notes"].append(f"{c.name} exited with {code}: {c.log_tail(500)}")
        shutil.rmtree(root, ignore_errors=True)
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    if rec.get("error"):
        table("http: FAILED", ("error",), [(rec["error"],)], out)
        return
    r = rec["results"]
    p = rec["params"]
    rows: list[tuple[Any, ...]] = []
    c = r["check"]
    rows.append(("/permission/check  Roster", 64, c["roster"]["rps"], "req/s",
                 c["roster"]["p50_ms"], c["roster"]["p99_ms"]))
    rows.append(("/permission/check  floor (bare ASGI)", 64, c["floor"]["rps"], "req/s",
                 c["floor"]["p50_ms"], c["floor"]["p99_ms"]))
    for size, b in r["check_batch"].items():
        rows.append((f"/permission/check_batch x{int(size):,}", b["connections"],
                     b["checks_per_s"], "checks/s", b["p50_ms"], b["p99_ms"]))
    fb = r["check_batch_floor_1000"]
    rows.append(("/permission/check_batch x1,000 floor", fb["connections"], fb["checks_per_s"],
                 "checks/s", fb["p50_ms"], fb["p99_ms"]))
    for key, w in r["whitelist_set"].items():
        policy, conns = key.split("_")
        rows.append((f"/channel/whitelist_set fsync {policy}", int(conns), w["rps"], "req/s",
                     w["p50_ms"], w["p99_ms"]))
    table(f"http ({r['client']}; {p['channels']:,} channels x {p['members']} preloaded; "
          f"{p['duration_s']:g} s per row; check: best of {p['rounds']} alternating rounds)",
          ("workload", "conns", "rate", "unit", "p50 ms", "p99 ms"), rows, out)
    ratios = [
        ("single check Roster / floor", c["roster_over_floor"]),
        ("  rounds Roster req/s", " ".join(f"{x:,.0f}" for x in c["roster_rounds_rps"])),
        ("  rounds floor req/s", " ".join(f"{x:,.0f}" for x in c["floor_rounds_rps"])),
        ("whitelist_set always / none, 1 conn", r["whitelist_set_always_over_none"]["1"]),
        ("whitelist_set always / none, 64 conns", r["whitelist_set_always_over_none"]["64"]),
    ]
    for key, values in r.get("whitelist_set_rounds_rps", {}).items():
        ratios.append((f"  rounds whitelist_set {key.replace('_', ' x')} req/s",
                       " ".join(f"{x:,.0f}" for x in values)))
    for name, s in r["servers"].items():
        ratios.append((f"{name}: start-up s / RSS MiB", f"{s['startup_s']:.1f} / "
                       f"{s['rss_after_bytes'] / 1048576:,.0f}"))
    table("http ratios and servers", ("what", "value"), ratios, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = getattr(args, "http_channels", 0) or args.channels or (
        10_000 if quick else 1_000_000)
    duration = args.duration or (2.0 if quick else 5.0)
    rounds = 1 if quick else 3
    return run(Shape(channels=channels, members=args.members), args.client, duration, rounds,
               quick)
