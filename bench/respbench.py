"""``resp``: Roster's RESP lane under ``redis-benchmark``, beside HTTP on the same servers and a
private redis-server, in one run; printed as ratios (never asserted).

Set-up: the generated state (``bench/gen.py``) with ``padded_ids``: channels
``g:000000000042`` and uids ``u:000000000042``, the strings redis-benchmark's ``__rand_int__``
makes (``-r N``: 0..N-1, one draw per placeholder per command) and the very keys of the Redis
preload in ``bench/peer.py``, so redis-benchmark hits random ids of the preloaded state. The
state is written once as a snapshot; two ``roster serve`` processes start on copies of it, in
parallel: ``--fsync none`` (every read row runs there) and ``--fsync always``, each with
``--resp-port 0``, so each process serves HTTP and RESP at once and the HTTP rows of a ratio come
from the same process as the RESP rows. The private redis-server (``peer.redis_server``: AOF on,
``CONFIG SET appendfsync always|no`` per row) holds the same picks.

Access: every row is **random** (ids drawn uniformly from 0..N-1 on both sides, N = channels:
redis-benchmark ``-r N``, and the HTTP bodies drawn the same way), except the one row marked
**hot** (one subscriber of ``g:000000000001``, a channel without lists: always allowed). With N
channels of M subscribers a random pair is almost never a subscriber, so random checks mostly
answer "not a subscriber", as SISMEMBER mostly answers 0.

Rows (``--duration`` seconds each; reads first, then writes, each phase best of ``rounds``
rounds, the rows of a round in turn):

* RESP ``CHECK u g 2`` at 1 and 64 connections, hot at 64, pipelined 100 deep (``-P 100``);
  ``CHECKM`` with 1 000 triples at 4 connections (checks/s = req/s x 1 000);
* HTTP ``/permission/check`` at 64 connections and ``/permission/check_batch`` x1 000 at 4
  (``bench/loadgen.py``: wrk when installed, else the in-repo trio client);
* Redis ``SISMEMBER g u`` at 64, ``-P 100`` and ``-P 1000`` (4 connections);
* writes: RESP ``WL.SET g 2 u u``, HTTP ``whitelist_set`` (2 uids) and Redis ``SADD wl u`` at
  1 and 64 connections, under fsync none/always (``appendfsync no/always``).

redis-benchmark stops at the first error answer; a failed row is recorded with the error and
left out of the ratios. Before the load, a few probe commands check that RESP and HTTP give the
same answers for the same triple. Without redis-benchmark only the HTTP rows run (the record
says so); without redis-server/redis-cli the Redis rows are skipped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import json
import math
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import loadgen, peer, procs
from bench.common import Record, Stopwatch, log, new_record, table
from bench.gen import Shape, channel_id, generate, uid
from server.state import GROUP

RESP_LINE = re.compile(r"roster: resp on (\S+):(\d+)")
#: connections of the pipelined rows (RESP CHECK -P 100, SISMEMBER -P 100)
PIPELINE_CONNS = 8
PIPELINE = 100
BATCH = 1000
BATCH_CONNS = 4

#: name: (numerator row, denominator row, goal or 0)
#: distinct check bodies the HTTP rows replay (and the ids the like-for-like RESP row draws from)
HTTP_SAMPLE = 2000

RATIOS: dict[str, tuple[str, str, float]] = {
    "resp_check_64_sampled_over_http_check_64": ("resp_check_64_sampled", "http_check_64",
                                                 20.0),
    "resp_check_64_over_http_check_64": ("resp_check_64", "http_check_64", 0.0),
    "resp_check_64_over_redis_sismember_64": ("resp_check_64", "redis_sismember_64", 0.25),
    "resp_check_p100_over_redis_sismember_p100": ("resp_check_p100", "redis_sismember_p100",
                                                  0.3),
    "resp_wl_set_always_64_over_http_whitelist_set_always_64": (
        "resp_wl_set_always_64", "http_whitelist_set_always_64", 10.0),
    "resp_wl_set_always_64_over_resp_wl_set_none_64": (
        "resp_wl_set_always_64", "resp_wl_set_none_64", 0.8),
    "resp_checkm_1000_over_http_check_batch_1000": ("resp_checkm_1000", "http_check_batch_1000",
                                                    0.0),
    "resp_checkm_1000_over_redis_sismember_p1000": ("resp_checkm_1000", "redis_sismember_p1000",
                                                    0.0),
    "resp_check_1_over_resp_check_64": ("resp_check_1", "resp_check_64", 0.0),
    "resp_wl_set_always_1_over_http_whitelist_set_always_1": (
        "resp_wl_set_always_1", "http_whitelist_set_always_1", 0.0),
    "resp_wl_set_always_64_over_redis_sadd_always_64": ("resp_wl_set_always_64",
                                                        "redis_sadd_always_64", 0.0),
}


@dataclass
class Row:
    key: str
    lane: str  # resp | http | redis
    server: str  # none | always | redis
    workload: str
    connections: int
    run: Callable[[], dict[str, Any]]
    pipeline: int = 1
    checks_per_request: int = 1
    access: str = "random"
    write: bool = False


# -- request bodies and commands (ids drawn like redis-benchmark -r N) ---------------------------


def _pair(rng: random.Random, keyspace: int) -> tuple[str, str]:
    return uid(rng.randrange(keyspace), True), channel_id(rng.randrange(keyspace), True)


def check_bodies(keyspace: int, count: int, seed: int = 23) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"from_uid": u, "channel_id": c, "channel_type": GROUP}).encode()
            for u, c in (_pair(rng, keyspace) for _ in range(count))]


def batch_bodies(keyspace: int, size: int, count: int, seed: int = 100) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"checks": [
        {"from_uid": u, "channel_id": c, "channel_type": GROUP}
        for u, c in (_pair(rng, keyspace) for _ in range(size))]}).encode()
        for _ in range(count)]


def whitelist_bodies(keyspace: int, count: int, seed: int = 31) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"channel_id": channel_id(rng.randrange(keyspace), True),
                        "channel_type": GROUP,
                        "uids": [uid(rng.randrange(keyspace), True),
                                 uid(rng.randrange(keyspace), True)]}).encode()
            for _ in range(count)]


CHECK = ["CHECK", "u:__rand_int__", "g:__rand_int__", str(GROUP)]
CHECKM = ["CHECKM", *(["u:__rand_int__", "g:__rand_int__", str(GROUP)] * BATCH)]
WL_SET = ["WL.SET", "g:__rand_int__", str(GROUP), "u:__rand_int__", "u:__rand_int__"]
SISMEMBER = ["SISMEMBER", "g:__rand_int__", "u:__rand_int__"]
SADD = ["SADD", "wl:__rand_int__", "u:__rand_int__"]


# -- a minimal RESP client for the probes --------------------------------------------------------


def _read_reply(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"short RESP reply: {line!r}")
    kind, body = line[:1], line[1:-2].decode()
    if kind == b"+":
        return body
    if kind == b"-":
        return {"error": body}
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unknown RESP reply: {line!r}")


def resp_call(port: int, *parts: str) -> Any:
    """One command on a fresh connection; an error answer comes back as ``{"error": text}``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(peer.resp_command(*parts))
        with s.makefile("rb") as f:
            return _read_reply(f)


def http_post(url: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as exc:
        return {"http_status": exc.code, "body": exc.read().decode(errors="replace")[:200]}


def probe(resp_port: int, url: str, member: tuple[str, str], keyspace: int) -> dict[str, Any]:
    """A few answers by hand: RESP and HTTP must agree on the same triple."""
    rng = random.Random(5)
    triples = [(*member, GROUP), *((*_pair(rng, keyspace), GROUP) for _ in range(3))]
    out: dict[str, Any] = {"ping": resp_call(resp_port, "PING")}
    resp_answers = [resp_call(resp_port, "CHECK", u, c, str(t)) for u, c, t in triples]
    http_answers = [http_post(url, "/permission/check", {"from_uid": u, "channel_id": c,
                                                         "channel_type": t})
                    for u, c, t in triples]
    out["check_member"] = resp_answers[0]
    out["check"] = resp_answers
    out["http_check"] = [a.get("reason", a) for a in http_answers]
    out["checkm"] = resp_call(resp_port, "CHECKM",
                              *(str(x) for triple in triples for x in triple))
    out["agree"] = out["check"] == out["http_check"] == out["checkm"]
    out["wl_set_missing_channel"] = resp_call(resp_port, "WL.SET", "g:no-such-channel",
                                              str(GROUP), member[0])
    return out


# -- servers ------------------------------------------------------------------------------------


def start_roster(template: Path, root: Path, fsync: str) -> procs.Child:
    data = procs.copy_data_dir(template, root / f"data-{fsync}")
    return procs.Child([*procs.roster_command(data, fsync), "--resp-port", "0"],
                       name=f"roster (fsync {fsync})", log_path=root / f"roster-{fsync}.log",
                       timeout=procs.START_TIMEOUT_S).start()


def resp_port_of(child: procs.Child, timeout: float = 30.0) -> int:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        m = RESP_LINE.search(child.log_tail(100_000))
        if m:
            return int(m.group(2))
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} printed no 'roster: resp on' line: {child.log_tail(500)}")


@contextlib.contextmanager
def maybe_redis(shape: Shape, wanted: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    if not wanted:
        yield 0, {}
        return
    # peer's preload turns g42/u42 into the keys g:000000000042/u:000000000042 itself
    with peer.redis_server(replace(shape, padded_ids=False)) as (port, info):
        yield port, info


def timed(port: int, clients: int, keyspace: int, command: list[str], duration: float,
          pipeline: int = 1, pilot: int = 0) -> dict[str, Any]:
    """``peer.benchmark`` sized to last about ``duration`` s after a pilot of ``pilot`` requests
    (default as in peer: clients x pipeline x 2, at least 300), grown tenfold while it takes
    under 50 ms (redis-benchmark's clock is in ms: a shorter pilot says little, or "inf")."""
    pilot = pilot or max(clients * pipeline * 2, 300)
    for _ in range(4):
        first = peer.benchmark(port, clients, pilot, keyspace, command, pipeline)
        if math.isfinite(first["rps"]) and pilot / first["rps"] >= 0.05:
            break
        pilot *= 10
    rate = first["rps"] if math.isfinite(first["rps"]) else pilot / 0.05
    n = int(max(rate * duration, clients * pipeline * 4))
    return peer.benchmark(port, clients, n, keyspace, command, pipeline)


# -- the run ------------------------------------------------------------------------------------


def build_rows(ports: dict[str, int], urls: dict[str, str], redis_port: int, keyspace: int,
               member: tuple[str, str], client: str, duration: float,
               have_benchmark: bool) -> list[Row]:
    checks = check_bodies(keyspace, HTTP_SAMPLE)
    batches = batch_bodies(keyspace, BATCH, 8)
    whitelist = whitelist_bodies(keyspace, 4000)
    rows: list[Row] = []

    def rb(port: int, conns: int, command: list[str], pipeline: int = 1,
           pilot: int = 0, ids: int = keyspace) -> Callable[[], dict[str, Any]]:
        return lambda: timed(port, conns, ids, command, duration, pipeline, pilot)

    def http(server: str, path: str, bodies: list[bytes], conns: int
             ) -> Callable[[], dict[str, Any]]:
        return lambda: loadgen.run_load(client, urls[server], path, bodies, conns,
                                        duration).as_dict()

    def sadd(policy: str, conns: int) -> Callable[[], dict[str, Any]]:
        def go() -> dict[str, Any]:
            peer.redis_cli(redis_port, "CONFIG", "SET", "appendfsync", policy)
            return timed(redis_port, conns, keyspace, SADD, duration)
        return go

    none = ports.get("none", 0)
    hot = ["CHECK", member[0], member[1], str(GROUP)]
    if have_benchmark:
        rows += [
            Row("resp_check_1", "resp", "none", "CHECK", 1, rb(none, 1, CHECK)),
            Row("resp_check_64", "resp", "none", "CHECK", 64, rb(none, 64, CHECK)),
            Row("resp_check_64_hot", "resp", "none", "CHECK (one subscribed pair)", 64,
                rb(none, 64, hot), access="hot"),
            # The HTTP check rows replay a fixed sample of request bodies (HTTP_SAMPLE pairs),
            # so their ids stay in the validation cache and their channels in the CPU caches;
            # this row draws from as many ids, so the HTTP ratio compares like with like.
            Row("resp_check_64_sampled", "resp", "none", "CHECK", 64,
                rb(none, 64, CHECK, ids=min(keyspace, HTTP_SAMPLE)),
                access=f"{min(keyspace, HTTP_SAMPLE):,} ids"),
            Row("resp_check_p100", "resp", "none", "CHECK", PIPELINE_CONNS,
                rb(none, PIPELINE_CONNS, CHECK, PIPELINE), pipeline=PIPELINE),
            Row("resp_checkm_1000", "resp", "none", f"CHECKM x{BATCH:,}", BATCH_CONNS,
                rb(none, BATCH_CONNS, CHECKM, pilot=BATCH_CONNS * 4),
                checks_per_request=BATCH),
        ]
    rows += [
        Row("http_check_64", "http", "none", "/permission/check", 64,
            http("none", "/permission/check", checks, 64)),
        Row("http_check_batch_1000", "http", "none", f"/permission/check_batch x{BATCH:,}",
            BATCH_CONNS, http("none", "/permission/check_batch", batches, BATCH_CONNS),
            checks_per_request=BATCH),
    ]
    if redis_port:
        rows += [
            Row("redis_sismember_64", "redis", "redis", "SISMEMBER", 64,
                rb(redis_port, 64, SISMEMBER)),
            Row("redis_sismember_p100", "redis", "redis", "SISMEMBER", PIPELINE_CONNS,
                rb(redis_port, PIPELINE_CONNS, SISMEMBER, PIPELINE), pipeline=PIPELINE),
            Row("redis_sismember_p1000", "redis", "redis", "SISMEMBER", BATCH_CONNS,
                rb(redis_port, BATCH_CONNS, SISMEMBER, BATCH), pipeline=BATCH),
        ]
    for conns in (1, 64):
        for policy in ("none", "always"):
            if have_benchmark:
                rows.append(Row(f"resp_wl_set_{policy}_{conns}", "resp", policy,
                                "WL.SET (2 uids)", conns,
                                rb(ports[policy], conns, WL_SET, pilot=max(conns * 2, 100)),
                                write=True))
            rows.append(Row(f"http_whitelist_set_{policy}_{conns}", "http", policy,
                            "/channel/whitelist_set (2 uids)", conns,
                            http(policy, "/channel/whitelist_set", whitelist, conns),
                            write=True))
            if redis_port:
                redis_policy = "no" if policy == "none" else policy
                rows.append(Row(f"redis_sadd_{redis_policy}_{conns}", "redis", f"appendfsync "
                                f"{redis_policy}", "SADD", conns, sadd(redis_policy, conns),
                                write=True))
    return rows


def measure(rows: list[Row], rounds: int, rec: Record) -> dict[str, dict[str, Any]]:
    """Reads first, then writes (the writes change whitelists); best of ``rounds`` per row."""
    runs: dict[str, list[dict[str, Any]]] = {row.key: [] for row in rows}
    errors: dict[str, str] = {}
    for phase in (False, True):
        for rnd in range(rounds):
            for row in (r for r in rows if r.write == phase):
                log(f"resp: round {rnd + 1}/{rounds} {row.key} ({row.workload} "
                    f"x{row.connections}" + (f" -P {row.pipeline}" if row.pipeline > 1 else "")
                    + ")")
                try:
                    result = row.run()
                except subprocess.CalledProcessError as exc:
                    errors[row.key] = (f"{exc.cmd[0]} exited {exc.returncode}: "
                                       f"{(exc.stderr or exc.stdout or '').strip()[:300]}")
                    continue
                except RuntimeError as exc:  # wrk failed
                    errors[row.key] = str(exc)[:300]
                    continue
                if result.get("errors") or result.get("non_2xx"):
                    rec["notes"].append(f"{row.key}: {result['errors']} socket errors, "
                                        f"{result['non_2xx']} non-2xx answers")
                runs[row.key].append(result)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry: dict[str, Any] = {
            "lane": row.lane, "server": row.server, "workload": row.workload,
            "access": row.access, "connections": row.connections, "pipeline": row.pipeline,
            "checks_per_request": row.checks_per_request}
        if runs[row.key]:
            best = max(runs[row.key], key=lambda r: r["rps"])
            entry.update(rps=best["rps"], rate=best["rps"] * row.checks_per_request,
                         unit="checks/s" if row.checks_per_request > 1 else "req/s",
                         p50_ms=best["p50_ms"], p99_ms=best["p99_ms"],
                         rounds_rps=[r["rps"] for r in runs[row.key]])
            if row.lane == "http":
                entry.update(errors=best["errors"], non_2xx=best["non_2xx"])
        if row.key in errors:
            entry["error"] = errors[row.key]
            rec["notes"].append(f"{row.key} failed: {errors[row.key]}")
        out[row.key] = entry
    return out


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, (num, den, goal) in RATIOS.items():
        a, b = rows.get(num, {}).get("rate"), rows.get(den, {}).get("rate")
        if not a or not b:
            continue
        out[name] = {"value": a / b, "numerator": num, "denominator": den}
        if goal:
            out[name]["goal"] = goal
            out[name]["meets_goal"] = a / b >= goal
    return out


def run(shape: Shape, client: str, duration: float, rounds: int, quick: bool) -> Record:
    client = loadgen.choose_client(client)
    shape = replace(shape, padded_ids=True)
    keyspace = shape.channels
    tools = {t: shutil.which(t) is not None
             for t in ("redis-benchmark", "redis-server", "redis-cli")}
    have_benchmark = tools["redis-benchmark"]
    have_redis = all(tools.values())
    rec = new_record("resp", quick, {
        **shape.as_params(), "client": client, "duration_s": duration, "rounds": rounds,
        "keyspace": keyspace, "pipeline": PIPELINE, "pipeline_connections": PIPELINE_CONNS,
        "batch": BATCH, "batch_connections": BATCH_CONNS})
    res = rec["results"]
    res["tools"] = tools
    res["client"] = client
    if not have_benchmark:
        res["skipped"] = ("redis-benchmark not installed (apt-get install -y redis-server): "
                          "only the HTTP rows ran")
    elif not have_redis:
        res["skipped"] = "redis-server/redis-cli not installed: no Redis rows"
    log(f"resp: generating {shape.channels:,} channels x {shape.members} (padded ids)")
    root = Path(tempfile.mkdtemp(prefix="roster-bench-resp-"))
    children: list[procs.Child] = []
    servers: dict[str, procs.Child] = {}
    try:
        with Stopwatch() as sw:
            state = generate(shape)
        res["generate_s"] = sw.seconds
        first = channel_id(1, True)  # g0 has a whitelist (every 10th), g1 has no lists
        ch = state.channels.get((first, GROUP))
        member = (min(ch.subscribers) if ch is not None and ch.subscribers
                  else uid(0, True), first)
        res["template"] = procs.write_template(state, root / "template")
        del state, ch
        gc.collect()

        log("resp: starting roster --fsync none and --fsync always (they recover the snapshot)")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {policy: pool.submit(start_roster, root / "template", root, policy)
                       for policy in ("none", "always")}
            redis_ctx = maybe_redis(shape, have_redis)
            with redis_ctx as (redis_port, redis_info):
                if have_redis:
                    log("resp: redis-server started and preloaded with the same picks")
                errors = []
                for policy, fut in futures.items():
                    try:
                        servers[policy] = fut.result()
                        children.append(servers[policy])
                    except RuntimeError as exc:
                        errors.append(str(exc))
                if errors:
                    raise RuntimeError("; ".join(errors))
                ports = {p: resp_port_of(c) for p, c in servers.items()}
                urls = {p: c.url for p, c in servers.items()}
                res["servers"] = {p: {"startup_s": c.startup_s, "rss_bytes": c.rss(),
                                      "url": c.url, "resp_port": ports[p]}
                                  for p, c in servers.items()}
                res["probe"] = probe(ports["none"], urls["none"], member, keyspace)
                rows = build_rows(ports, urls, redis_port, keyspace, member, client, duration,
                                  have_benchmark)
                res["rows"] = measure(rows, rounds, rec)
                res["redis"] = redis_info
        res["ratios"] = ratios(res["rows"])
        failed = [k for k, row in res["rows"].items() if "rate" not in row]
        problems = [f"rows without a figure: {', '.join(failed)}"] if failed else []
        if not res["probe"]["agree"]:
            problems.append("RESP and HTTP answers differ (see results.probe)")
        if problems:
            rec["error"] = "; ".join(problems)
        for p, c in servers.items():
            res["servers"][p]["rss_after_bytes"] = c.rss()
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


_RATIO_LABELS = {
    "resp_check_64_sampled_over_http_check_64":
        "RESP CHECK x64 / HTTP check x64, same id sample",
    "resp_check_64_over_http_check_64": "RESP CHECK x64 random / HTTP check x64 sample",
    "resp_check_64_over_redis_sismember_64": "RESP CHECK x64 / Redis SISMEMBER x64",
    "resp_check_p100_over_redis_sismember_p100": "RESP CHECK -P 100 / Redis SISMEMBER -P 100",
    "resp_wl_set_always_64_over_http_whitelist_set_always_64":
        "WL.SET x64 always / HTTP whitelist_set x64 always",
    "resp_wl_set_always_64_over_resp_wl_set_none_64": "WL.SET x64: fsync always / none",
    "resp_checkm_1000_over_http_check_batch_1000": "CHECKM x1000 / HTTP check_batch x1000",
    "resp_checkm_1000_over_redis_sismember_p1000": "CHECKM x1000 / SISMEMBER -P 1000",
    "resp_check_1_over_resp_check_64": "RESP CHECK x1 / x64",
    "resp_wl_set_always_1_over_http_whitelist_set_always_1":
        "WL.SET x1 always / HTTP whitelist_set x1 always",
    "resp_wl_set_always_64_over_redis_sadd_always_64": "WL.SET x64 always / Redis SADD x64",
}


def print_table(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    if rec.get("error"):
        table("resp: FAILED", ("error",), [(rec["error"],)], out)
        if "rows" not in r:
            return
    p = rec["params"]
    rows = []
    for row in r.get("rows", {}).values():
        lane = {"resp": "RESP", "http": "HTTP", "redis": "Redis"}[row["lane"]]
        rows.append((f"{lane} {row['workload']}", row["server"], row["access"],
                     row["connections"], row["pipeline"],
                     row.get("rate", "FAILED"), row.get("unit", ""),
                     row.get("p50_ms", ""), row.get("p99_ms", "")))
    version = r.get("redis", {}).get("version", "-")
    table(f"resp (redis-benchmark; HTTP: {r['client']}; Redis {version}; "
          f"{p['channels']:,} channels x {p['members']} preloaded, random = ids uniform over "
          f"0..{p['keyspace'] - 1:,}; {p['duration_s']:g} s per row, best of {p['rounds']})",
          ("workload", "server/fsync", "access", "conns", "pipe", "rate", "unit", "p50 ms",
           "p99 ms"), rows, out)
    lines: list[tuple[Any, ...]] = []
    for name, ratio in r.get("ratios", {}).items():
        goal = ratio.get("goal")
        lines.append((_RATIO_LABELS.get(name, name), ratio["value"],
                      f">= {goal:g}" if goal else "",
                      ("yes" if ratio["meets_goal"] else "NO") if goal else ""))
    for name, s in r.get("servers", {}).items():
        lines.append((f"roster fsync {name}: start-up s / RSS MiB",
                      f"{s['startup_s']:.1f} / {s.get('rss_after_bytes', 0) / 1048576:,.0f}",
                      "", ""))
    probe_ = r.get("probe", {})
    if probe_:
        lines.append(("probe: RESP CHECK = HTTP check = CHECKM", probe_["agree"], "", ""))
    if r.get("skipped"):
        lines.append(("skipped", r["skipped"], "", ""))
    table("resp ratios (measured in this run; goals are printed, never asserted)",
          ("what", "value", "goal", "met"), lines, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = getattr(args, "http_channels", 0) or args.channels or (
        10_000 if quick else 1_000_000)
    duration = args.duration or (1.0 if quick else 5.0)
    rounds = 1 if quick else 3
    return run(Shape(channels=channels, members=args.members), args.client, duration, rounds,
               quick)
