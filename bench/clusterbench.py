"""``cluster``: cluster mode against one node, in one run; printed as ratios (never asserted).

Set-up: three ``nats-server -js`` in one cluster on loopback ports
(``server/cluster/localnats.py``) and three ``roster serve --cluster`` nodes (stream replicas
3), beside one single-node ``roster serve --fsync always``. ``KEYSPACE`` channels
``g:000000000000``.. are created on both through RESP first (the ids redis-benchmark's
``__rand_int__`` makes).

Rows (``--duration`` seconds each, ``redis-benchmark``):

* writes: ``WL.SET g 2 u u`` at 64 connections on the single node and on the cluster's leader;
  goal: cluster >= 0.5 x single node;
* reads: ``CHECK u g 2`` at 64 connections on one follower alone, then on two followers at once
  (two redis-benchmark processes, rates added); goal: two >= 1.6 x one. On this two-core machine
  the two followers, the leader, three nats-servers and the load generators share two cores, so
  the figure is bounded by the cores, not by Roster: each follower is one process on one core,
  and with a core per follower (and per load generator) reads grow with the number of followers;
* failover: kill -9 of the leader, then the time until a write is acknowledged by the new leader
  (a client polling every node), median of ``FAILOVERS``; goal: <= 2 x lease;
* bridge: the cost of one trio -> asyncio -> trio round trip (``server/cluster/bridge.py``) for a
  no-op coroutine, beside ``trio.to_thread.run_sync`` of a no-op, in this process.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import procs
from bench.common import Record, log, new_record, table
from bench.respbench import resp_port_of, timed
from server.cluster.localnats import NATS_SERVER, NatsCluster

KEYSPACE = 1000
FAILOVERS = 10
LEASE_MS = 1500
BRIDGE_CALLS = 5000
WRITE = ["WL.SET", "g:__rand_int__", "2", "u:__rand_int__", "u:__rand_int__"]
READ = ["CHECK", "u:__rand_int__", "g:__rand_int__", "2"]


def roster_node(root: Path, name: str, nats_urls: str) -> procs.Child:
    cmd = [*procs.roster_command(root / name, "always"), "--cluster", nats_urls,
           "--node-id", name, "--lease-ms", str(LEASE_MS)]
    return procs.Child(cmd, name=f"roster {name}", log_path=root / f"{name}.log",
                       timeout=procs.START_TIMEOUT_S)


def create_channels(port: int, count: int) -> None:
    """``CHANNEL.SET`` of every benchmark channel, pipelined, and wait for every reply."""
    payload = b"".join(
        b"*3\r\n$11\r\nCHANNEL.SET\r\n$14\r\ng:%012d\r\n$1\r\n2\r\n" % i for i in range(count))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(payload)
        got = b""
        while got.count(b"\r\n") < count:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed while creating channels")
            got += chunk
    if b"-" in got:
        raise RuntimeError(f"creating channels failed: {got[:200]!r}")


def health(url: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = httpx.get(url + "/health", timeout=1.0).json()
        return body
    except (httpx.HTTPError, ValueError):
        return {}


def wait_leader(nodes: dict[str, procs.Child], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = {n: c for n, c in nodes.items() if c.proc is not None and c.proc.poll() is None}
        roles = {n: health(c.url) for n, c in live.items()}
        leaders = [n for n, h in roles.items() if h.get("role") == "leader"]
        if len(leaders) == 1 and all(h.get("leader") == nodes[leaders[0]].url
                                     for h in roles.values()):
            return leaders[0]
        time.sleep(0.02)
    raise RuntimeError("no leader")


def wait_applied(url: str, lsn: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while health(url).get("applied_lsn", -1) < lsn:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not apply record {lsn}")
        time.sleep(0.05)


def failover_once(nodes: dict[str, procs.Child], leader: str, index: int) -> float:
    """Kill -9 the leader; seconds until a write is acknowledged by whichever node leads."""
    victim = nodes[leader]
    assert victim.proc is not None
    others = [c.url for n, c in nodes.items() if n != leader]
    body = {"channel_id": "g:000000000000", "channel_type": 2, "uids": [f"f{index}"]}
    with httpx.Client(timeout=0.5) as client:
        victim.proc.kill()
        killed = time.perf_counter()
        victim.proc.wait()
        deadline = killed + 60
        while time.perf_counter() < deadline:
            for url in others:
                try:
                    if client.post(url + "/channel/whitelist_add", json=body).status_code == 200:
                        return time.perf_counter() - killed
                except httpx.HTTPError:
                    pass
            time.sleep(0.005)
    raise RuntimeError("no write acknowledged within 60 s of the kill")


async def _bridge_cost(calls: int) -> dict[str, float]:
    from server.cluster.bridge import AsyncioThread

    async def noop() -> None:
        return None

    bridge = AsyncioThread()
    bridge.start()
    try:
        for _ in range(100):
            await bridge.call(noop)
        t0 = time.perf_counter()
        for _ in range(calls):
            await bridge.call(noop)
        bridge_us = (time.perf_counter() - t0) / calls * 1e6
    finally:
        bridge.stop()
    t0 = time.perf_counter()
    for _ in range(calls):
        await trio.to_thread.run_sync(lambda: None)
    thread_us = (time.perf_counter() - t0) / calls * 1e6
    return {"bridge_call_us": round(bridge_us, 1), "to_thread_call_us": round(thread_us, 1)}


def run(duration: float, failovers: int, quick: bool) -> Record:
    rec = new_record("cluster", quick, {"duration_s": duration, "keyspace": KEYSPACE,
                                        "failovers": failovers, "lease_ms": LEASE_MS,
                                        "replicas": 3, "connections": 64})
    res = rec["results"]
    res["bridge"] = trio.run(_bridge_cost, BRIDGE_CALLS // (5 if quick else 1))
    if NATS_SERVER is None:
        rec["error"] = "nats-server is not installed"
        return rec
    root = Path(tempfile.mkdtemp(prefix="roster-bench-cluster-"))
    nats = NatsCluster(root / "nats")
    single = procs.roster(root / "single", "always", root / "single.log")
    nodes: dict[str, procs.Child] = {}
    try:
        nats.start()
        single.start()
        for name in ("a", "b", "c"):
            nodes[name] = roster_node(root, name, nats.urls).start()
        leader = wait_leader(nodes)
        ports = {name: resp_port_of(c) for name, c in nodes.items()}
        single_port = resp_port_of(single)
        log("cluster: creating channels")
        create_channels(single_port, KEYSPACE)
        create_channels(ports[leader], KEYSPACE)

        log("cluster: writes")
        res["write_single"] = timed(single_port, 64, KEYSPACE, WRITE, duration)
        res["write_cluster"] = timed(ports[leader], 64, KEYSPACE, WRITE, duration)
        lsn = health(nodes[leader].url)["applied_lsn"]
        followers = [n for n in nodes if n != leader]
        for n in followers:
            wait_applied(nodes[n].url, lsn)

        log("cluster: reads")
        res["check_one_follower"] = timed(ports[followers[0]], 64, KEYSPACE, READ, duration)
        n_req = int(res["check_one_follower"]["rps"] * duration)
        started = time.perf_counter()
        both = [subprocess.Popen(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(ports[f]), "-c", "64", "-n",
             str(n_req), "-r", str(KEYSPACE), "--csv", *READ],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for f in followers]
        outs = [p.communicate()[0] for p in both]
        res["check_two_followers"] = {
            "rps": round(2 * n_req / (time.perf_counter() - started)),
            "each_rps": [float(o.strip().splitlines()[-1].split(",")[1].strip('"'))
                         for o in outs]}

        log("cluster: failovers")
        times = []
        for i in range(failovers):
            leader = wait_leader(nodes)
            times.append(failover_once(nodes, leader, i))
            nodes[leader].start()  # back as a follower on its data dir
        res["failover_s"] = {"median": round(statistics.median(times), 3),
                             "min": round(min(times), 3), "max": round(max(times), 3),
                             "all": [round(t, 3) for t in times]}
    except Exception as exc:
        rec["error"] = repr(exc)
    finally:
        for c in nodes.values():
            c.close()
        single.close()
        nats.stop()
    w1, wc = res.get("write_single", {}).get("rps"), res.get("write_cluster", {}).get("rps")
    r1 = res.get("check_one_follower", {}).get("rps")
    r2 = res.get("check_two_followers", {}).get("rps")
    ratios: dict[str, Any] = {}
    if w1 and wc:
        ratios["write_cluster_vs_single"] = {"value": round(wc / w1, 2), "goal": 0.5,
                                             "meets_goal": wc / w1 >= 0.5}
    if r1 and r2:
        ratios["check_two_followers_vs_one"] = {"value": round(r2 / r1, 2), "goal": 1.6,
                                                "meets_goal": r2 / r1 >= 1.6}
    if "failover_s" in res:
        m = res["failover_s"]["median"]
        ratios["failover_median_vs_lease"] = {"value": round(m / (LEASE_MS / 1000), 2),
                                              "goal": 2.0, "meets_goal": m <= 2 * LEASE_MS / 1000}
    res["ratios"] = ratios
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    rows: list[tuple[Any, ...]] = []
    for key, label in (("write_single", "WL.SET, one node fsync always"),
                       ("write_cluster", "WL.SET, cluster leader (3 replicas)"),
                       ("check_one_follower", "CHECK, one follower"),
                       ("check_two_followers", "CHECK, two followers at once")):
        if key in r:
            rows.append((label, r[key]["rps"], "req/s"))
    if "failover_s" in r:
        f = r["failover_s"]
        rows.append((f"failover: kill -9 -> first ack (median of {len(f['all'])})",
                     f["median"], f"s (min {f['min']}, max {f['max']})"))
    b = r.get("bridge", {})
    if b:
        rows.append(("bridge round trip (no-op coroutine)", b["bridge_call_us"], "us"))
        rows.append(("trio.to_thread.run_sync (no-op)", b["to_thread_call_us"], "us"))
    if rec.get("error"):
        rows.append(("error", rec["error"], ""))
    p = rec["params"]
    table(f"cluster (redis-benchmark, 64 connections, {p['duration_s']:g} s per row, lease "
          f"{p['lease_ms']} ms)", ("what", "value", "unit"), rows, out)
    lines = [(name, v["value"], f"goal {v['goal']:g}", "yes" if v["meets_goal"] else "NO")
             for name, v in r.get("ratios", {}).items()]
    table("cluster ratios (goals printed, never asserted)", ("what", "value", "goal", "met"),
          lines, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    duration = args.duration or (1.0 if quick else 5.0)
    return run(duration, 3 if quick else FAILOVERS, quick)

