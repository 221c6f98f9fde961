"""Quick figures for the foundation: in-process decision time and whitelist_set throughput.

    python -m bench.quick                 # both
    python -m bench.quick decide          # median ns per in-process decision, random access
    python -m bench.quick http            # whitelist_set req/s, 64 clients, fsync always vs none

The HTTP load comes from a minimal keep-alive client on raw trio sockets (one pre-built request,
Content-Length framed response), which costs far less CPU per request than the server does, so
the server is what is measured. Figures from one run are comparable to each other; across runs this
shared 2-core machine varies by ±20 %.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from server.permission import decide
from server.state import State


def bench_decide(channels: int = 100_000, members: int = 10,
                 checks: int = 200_000) -> dict[str, float]:
    rng = random.Random(7)
    state = State()
    uids = [f"user{i}" for i in range(channels * 2)]
    ops: list[tuple[object, ...]] = []
    for c in range(channels):
        cid = f"group{c}"
        ops.append(("ch_put", cid, 2, {}))
        ops.append(("sub_add", cid, 2, rng.sample(uids, members)))
        if c % 10 == 0:
            ops.append(("wl_add", cid, 2, rng.sample(uids, 3)))
        if c % 7 == 0:
            ops.append(("bl_add", cid, 2, rng.sample(uids, 2)))
    state.apply((0, ops))
    keys = list(state.channels)
    # random access: each check picks a random channel and (half the time) one of its members
    work = []
    for _ in range(checks):
        cid, ctype = keys[rng.randrange(len(keys))]
        subs = list(state.channels[(cid, ctype)].subscribers)
        uid = rng.choice(subs) if rng.random() < 0.5 else uids[rng.randrange(len(uids))]
        work.append((uid, cid, ctype))
    per_batch = []
    batch = 1000
    for start in range(0, checks, batch):
        chunk = work[start : start + batch]
        t0 = time.perf_counter_ns()
        for uid, cid, ctype in chunk:
            decide(state, uid, cid, ctype, 0)
        per_batch.append((time.perf_counter_ns() - t0) / len(chunk))
    return {"channels": channels, "members": members, "checks": checks,
            "median_ns": statistics.median(per_batch),
            "p99_batch_ns": sorted(per_batch)[int(len(per_batch) * 0.99)]}


async def _client(host: str, port: int, requests: list[bytes], deadline: float,
                  done: list[int]) -> None:
    stream = await trio.open_tcp_stream(host, port)
    buf = b""
    async with stream:
        for req in requests:
            if time.monotonic() > deadline:
                return
            await stream.send_all(req)
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            body, buf = buf[:length], buf[length:]
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:40]!r} {body[:200]!r}")
            done[0] += 1


def _request(host: str, port: int, path: str, body: dict[str, object]) -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw


async def _load(url: str, clients: int, per_client: int, seconds: float) -> float:
    host, port_text = url.removeprefix("http://").rsplit(":", 1)
    port = int(port_text)
    setup = _request(host, port, "/channel", {"channel_id": "bench", "channel_type": 2})
    await _client(host, port, [setup], time.monotonic() + 30, [0])
    done = [0]
    deadline = time.monotonic() + seconds
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for c in range(clients):
            reqs = [_request(host, port, "/channel/whitelist_set",
                             {"channel_id": "bench", "channel_type": 2,
                              "uids": [f"u{c}_{i}", f"v{i}"]}) for i in range(per_client)]
            nursery.start_soon(_client, host, port, reqs, deadline, done)
    return done[0] / (time.perf_counter() - t0)


def bench_whitelist_set(fsync: str, clients: int = 64, per_client: int = 100,
                        seconds: float = 10.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--data-dir", str(Path(tmp) / "data"),
             "--port", "0", "--resp-port", "off", "--fsync", fsync, "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    url = m.group(1)
                    break
            if not url:
                raise RuntimeError("server did not start")
            return trio.run(_load, url, clients, per_client, seconds)
        finally:
            proc.terminate()
            proc.wait(30)


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "all"
    if what in ("all", "decide"):
        d = bench_decide()
        print(f"decide: {d['channels']:,} channels x {d['members']} members, random access: "
              f"median {d['median_ns']:.0f} ns/check (p99 of 1000-check batches "
              f"{d['p99_batch_ns']:.0f} ns)")
    if what in ("all", "http"):
        rates = {policy: bench_whitelist_set(policy) for policy in ("always", "none")}
        print(f"whitelist_set, 64 clients: fsync always {rates['always']:.0f} req/s, "
              f"none {rates['none']:.0f} req/s, always/none = "
              f"{rates['always'] / rates['none']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
