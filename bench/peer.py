"""``peer``: the http workloads against Redis, in the same run, reported as Roster / Redis.

Needs ``redis-server``, ``redis-cli`` and ``redis-benchmark`` (Debian: ``apt-get install -y
redis-server``); without them the record says so and nothing fails. A private redis-server is
started on 127.0.0.1 (a free port, a temp dir, AOF on, no RDB saves) and stopped afterwards.

Mapping of the workloads (the Roster side comes from the ``http`` record of the same run, or an
``http`` run made here first):

* state: the same generated shape loaded with ``redis-cli --pipe`` as one set per channel
  (``g:<12-digit id>`` holding ``u:<12-digit id>`` members; redis-benchmark's ``__rand_int__``
  makes 12-digit numbers), whitelists and blacklists as their own sets;
* ``/permission/check``  ~ ``SISMEMBER g:__rand_int__ u:__rand_int__``, 64 connections;
* ``/permission/check_batch`` of 1 000 ~ the same, pipelined 1 000 deep (``-P 1000``), 4 conns;
* ``whitelist_set`` ~ ``SADD wl:__rand_int__ u:__rand_int__`` at 1 and 64 connections with
  ``appendfsync always`` and ``appendfsync no`` (switched with CONFIG SET in the same server).

Redis does one check per command in C; Roster parses JSON in Python. The ratios say how far
Roster is from a C in-memory store on this machine, not that the two do identical work.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import procs
from bench.common import Record, log, new_record, table
from bench.gen import Shape, op_batches

_READY = re.compile(r"Ready to accept connections()")


def redis_available() -> bool:
    return all(shutil.which(t) for t in ("redis-server", "redis-cli", "redis-benchmark"))


def resp_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}:{int(name[1:]):012d}"


def write_preload(shape: Shape, path: Path) -> int:
    """RESP commands that build the shape in Redis; returns how many."""
    prefixes = {"sub_add": "g", "wl_add": "wl", "bl_add": "bl", "wl_set": "pwl"}
    n = 0
    with open(path, "wb") as f:
        for ops in op_batches(shape):
            buf = []
            for op in ops:
                buf.append(resp_command("SADD", _key(prefixes[op[0]], op[1]),
                                 *(_key("u", u) for u in op[3])))
            f.write(b"".join(buf))
            n += len(buf)
    return n


def redis_cli(port: int, *args: str) -> str:
    proc = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def benchmark(port: int, clients: int, requests: int, keyspace: int, command: list[str],
              pipeline: int = 1) -> dict[str, float]:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(requests), "-r", str(keyspace), "-P", str(pipeline), "--csv", *command]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = list(csv.reader(io.StringIO(proc.stdout.strip())))
    header, last = rows[0], rows[-1]
    row = dict(zip(header, last, strict=False))
    return {"rps": float(row["rps"]), "p50_ms": float(row.get("p50_latency_ms", 0)),
            "p99_ms": float(row.get("p99_latency_ms", 0)), "requests": float(requests),
            "connections": float(clients), "pipeline": float(pipeline)}


def _timed(port: int, clients: int, keyspace: int, command: list[str], duration: float,
           pipeline: int = 1) -> dict[str, float]:
    """Pilot run to learn the rate, then a run sized to last about ``duration`` seconds."""
    pilot = benchmark(port, clients, max(clients * pipeline * 2, 300), keyspace, command,
                      pipeline)
    n = int(max(pilot["rps"] * duration, clients * pipeline * 4))
    return benchmark(port, clients, n, keyspace, command, pipeline)


@contextlib.contextmanager
def redis_server(shape: Shape) -> Iterator[tuple[int, dict[str, Any]]]:
    """A private redis-server (free port, temp dir, AOF on, ``appendfsync no``) holding
    ``shape``; yields its port and a dict with its version and preload figures; stopped after."""
    root = Path(tempfile.mkdtemp(prefix="roster-bench-redis-"))
    port = procs.free_port()
    server = procs.Child([
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
        "--save", "", "--appendonly", "yes", "--appendfsync", "no", "--daemonize", "no",
        "--logfile", ""], log_path=root / "redis.log", ready=_READY, timeout=60)
    out: dict[str, Any] = {}
    try:
        server.start()
        info = redis_cli(port, "INFO", "server")
        out["version"] = info.split("redis_version:")[1].split()[0]
        preload = root / "preload.resp"
        n = write_preload(shape, preload)
        t0 = time.perf_counter()
        with open(preload, "rb") as f:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                           stdin=f, capture_output=True, check=True)
        out["preload_commands"] = n
        out["preload_s"] = time.perf_counter() - t0
        preload.unlink()
        info = redis_cli(port, "INFO", "memory")
        used = int(info.split("used_memory:")[1].split()[0])
        out["used_memory_bytes"] = used
        yield port, out
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


def measure_redis(shape: Shape, duration: float) -> dict[str, Any]:
    with redis_server(shape) as (port, out):
        keyspace = shape.channels
        check = ["SISMEMBER", "g:__rand_int__", "u:__rand_int__"]
        log("peer: SISMEMBER x64")
        out["check"] = _timed(port, 64, keyspace, check, duration)
        log("peer: SISMEMBER pipelined 1000 deep x4")
        out["check_pipelined_1000"] = _timed(port, 4, keyspace, check, duration, pipeline=1000)
        sadd = ["SADD", "wl:__rand_int__", "u:__rand_int__"]
        for policy in ("no", "always"):
            redis_cli(port, "CONFIG", "SET", "appendfsync", policy)
            for clients in (1, 64):
                log(f"peer: SADD appendfsync {policy} x{clients}")
                out[f"sadd_{policy}_{clients}"] = _timed(port, clients, keyspace, sadd, duration)
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def run(args: Any, shape: Shape, duration: float, quick: bool) -> Record:
    rec = new_record("peer", quick, {**shape.as_params(), "duration_s": duration})
    if not redis_available():
        rec["results"] = {"skipped": "redis-server/redis-cli/redis-benchmark not installed "
                                     "(apt-get install -y redis-server)"}
        return rec
    roster = getattr(args, "roster_http", None)
    if roster is None:
        from bench import httpbench

        roster = httpbench.main(args)
    if roster.get("error"):
        rec["error"] = f"the Roster http run failed: {roster['error']}"
        return rec
    log(f"peer: redis with {shape.channels:,} channels x {shape.members}")
    try:
        redis = measure_redis(shape, duration)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        rec["error"] = f"redis run failed: {exc}"
        return rec
    h = roster["results"]
    ws = h["whitelist_set"]
    memberships_ = shape.channels * shape.members  # about: Redis sets, same generated picks
    rec["results"] = {
        "redis": redis,
        "roster": {
            "check_rps": h["check"]["roster"]["rps"],
            "check_batch_1000_checks_per_s": h["check_batch"]["1000"]["checks_per_s"],
            **{f"whitelist_set_{k}_rps": v["rps"] for k, v in ws.items()},
        },
        "roster_over_redis": {
            "check": _ratio(h["check"]["roster"]["rps"], redis["check"]["rps"]),
            "check_batch_1000": _ratio(h["check_batch"]["1000"]["checks_per_s"],
                                       redis["check_pipelined_1000"]["rps"]),
            "write_fsync_always_1": _ratio(ws["always_1"]["rps"], redis["sadd_always_1"]["rps"]),
            "write_fsync_always_64": _ratio(ws["always_64"]["rps"],
                                            redis["sadd_always_64"]["rps"]),
            "write_fsync_none_64": _ratio(ws["none_64"]["rps"], redis["sadd_no_64"]["rps"]),
        },
        "redis_always_over_no": {
            "1": _ratio(redis["sadd_always_1"]["rps"], redis["sadd_no_1"]["rps"]),
            "64": _ratio(redis["sadd_always_64"]["rps"], redis["sadd_no_64"]["rps"]),
        },
        "redis_bytes_per_membership_approx": redis["used_memory_bytes"] / memberships_,
        "roster_http_started": roster["started"],
    }
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    if rec.get("error") or "skipped" in r:
        table("peer (Redis)", ("status",), [(rec.get("error") or r["skipped"],)], out)
        return
    red, ros, rat = r["redis"], r["roster"], r["roster_over_redis"]
    rows = [
        ("single check (64 conns)", ros["check_rps"], red["check"]["rps"], rat["check"]),
        ("batch of 1000 checks/s", ros["check_batch_1000_checks_per_s"],
         red["check_pipelined_1000"]["rps"], rat["check_batch_1000"]),
        ("write, fsync always, 1 conn", ros["whitelist_set_always_1_rps"],
         red["sadd_always_1"]["rps"], rat["write_fsync_always_1"]),
        ("write, fsync always, 64 conns", ros["whitelist_set_always_64_rps"],
         red["sadd_always_64"]["rps"], rat["write_fsync_always_64"]),
        ("write, fsync none/no, 64 conns", ros["whitelist_set_none_64_rps"],
         red["sadd_no_64"]["rps"], rat["write_fsync_none_64"]),
    ]
    table(f"peer: Roster vs Redis {red['version']} (redis-benchmark; Roster figures from the "
          "http run)", ("workload", "Roster /s", "Redis /s", "Roster/Redis"), rows, out)
    table("Redis extras", ("what", "value"), [
        ("Redis SADD always/no, 1 conn", r["redis_always_over_no"]["1"]),
        ("Redis SADD always/no, 64 conns", r["redis_always_over_no"]["64"]),
        ("Redis used_memory per membership (approx.)", r["redis_bytes_per_membership_approx"]),
        ("Redis preload (s)", red["preload_s"]),
    ], out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = getattr(args, "http_channels", 0) or args.channels or (
        10_000 if quick else 1_000_000)
    duration = args.duration or (2.0 if quick else 5.0)
    return run(args, Shape(channels=channels, members=args.members), duration, quick)
