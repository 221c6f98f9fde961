"""``python -m bench edge``: the HTTP edge under slow senders and a descriptor flood.

* **slowloris** — ``--slow`` connections send a request's headers one byte every
  ``--trickle`` seconds to a ``roster serve`` started with ``--http-header-timeout``; meanwhile
  one normal keep-alive client sends ``POST /permission/check`` back to back. Figures: the slow
  connections held, the normal client's p50/p99 latency beside its latency on an idle server, and
  how long after being opened the slow ones were closed by the server (p50/max).
* **flood** — a server whose RLIMIT_NOFILE is ``--nofile`` (soft and hard) gets ``--flood``
  connections opened and held, twice: once with the derived connection cap (the extra clients
  wait in the listen backlog) and once with a cap above the descriptor limit (accept() fails with
  EMFILE). Figures: connections held, whether a keep-alive client opened before the flood was
  still answered during it, the time from releasing the flood to the first fresh connection
  answered, and the accept-error lines the server logged.

It prints figures; nothing here asserts a timing.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Record, log, new_record, percentile, table
from bench.procs import Child, roster_command
from server.spawn import with_nofile_limit

CHECK = json.dumps({"from_uid": "u1", "channel_id": "g1", "channel_type": 2}).encode()
CHECK_REQUEST = (b"POST /permission/check HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(CHECK), CHECK))
SLOW_REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n"
HEALTH_CLOSE = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _read_answer(stream: trio.SocketStream) -> bytes:
    """One answer with a Content-Length body from a keep-alive connection."""
    buf = b""
    while True:
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            if len(body) >= length:
                return buf
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf[:80]!r}")
        buf += chunk


async def _latencies(addr: tuple[str, int], seconds: float) -> list[float]:
    """Back-to-back permission checks on keep-alive connections for ``seconds`` (a new one
    when the server closes one: hypercorn ends a connection after 1000 requests)."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        stream = await trio.open_tcp_stream(*addr)
        async with stream:
            out += await _latencies_on(stream, end - time.perf_counter())
    return out


async def _slow_one(addr: tuple[str, int], trickle: float, limit: float,
                    reaped: list[float], held: list[int]) -> None:
    try:
        stream = await trio.open_tcp_stream(*addr)
    except OSError:
        return
    held[0] += 1
    opened = time.perf_counter()
    async with stream:
        with trio.move_on_after(limit):
            for i in range(len(SLOW_REQUEST) - 2):  # never the final CRLF
                try:
                    await stream.send_all(SLOW_REQUEST[i:i + 1])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                with trio.move_on_after(trickle):
                    data = await stream.receive_some(65536)
                    if data or data == b"":  # an answer (408) or the close
                        break
            reaped.append(time.perf_counter() - opened)


async def _slowloris(url: str, slow: int, trickle: float, seconds: float,
                     limit: float) -> dict[str, Any]:
    addr = _address(url)
    idle = sorted(await _latencies(addr, seconds))
    reaped: list[float] = []
    held = [0]
    busy: list[float] = []
    async with trio.open_nursery() as nursery:
        for _ in range(slow):
            nursery.start_soon(_slow_one, addr, trickle, limit, reaped, held)
        await trio.sleep(trickle)  # all of them connected and trickling
        busy = sorted(await _latencies(addr, seconds))
    ms = 1000.0
    reaped.sort()
    return {
        "slow_connections_held": held[0],
        "slow_connections_reaped": len(reaped),
        "reaped_after_p50_s": percentile(reaped, 50),
        "reaped_after_max_s": reaped[-1] if reaped else 0.0,
        "idle_p50_ms": percentile(idle, 50) * ms, "idle_p99_ms": percentile(idle, 99) * ms,
        "busy_p50_ms": percentile(busy, 50) * ms, "busy_p99_ms": percentile(busy, 99) * ms,
        "busy_requests": len(busy),
    }


async def _flood(url: str, count: int, seconds: float) -> dict[str, Any]:
    addr = _address(url)
    keeper = await trio.open_tcp_stream(*addr)  # opened before the flood
    held: list[trio.SocketStream] = []
    during: list[float] = []
    async with keeper:
        async def open_one() -> None:
            with trio.move_on_after(3.0):  # beyond the backlog, the kernel drops the SYN
                try:
                    held.append(await trio.open_tcp_stream(*addr))
                except OSError:
                    pass

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(open_one)
        answered = True
        try:
            with trio.fail_after(10.0):
                during = await _latencies_on(keeper, seconds)
        except (trio.TooSlowError, ConnectionError, trio.BrokenResourceError):
            answered = False
        for stream in held:
            await stream.aclose()
        released = time.perf_counter()
        recovered = None
        with trio.move_on_after(30.0):
            while recovered is None:
                try:
                    fresh = await trio.open_tcp_stream(*addr)
                    async with fresh:
                        with trio.fail_after(2.0):
                            await fresh.send_all(HEALTH_CLOSE)
                            if (await fresh.receive_some(100)).startswith(b"HTTP/1.1 200"):
                                recovered = time.perf_counter() - released
                except (OSError, trio.TooSlowError, trio.BrokenResourceError):
                    await trio.sleep(0.01)
    during.sort()
    return {"held": len(held), "old_client_answered_during": answered,
            "old_client_p50_ms": percentile(during, 50) * 1000.0,
            "recovered_after_s": recovered}


async def _latencies_on(stream: trio.SocketStream, seconds: float) -> list[float]:
    """Checks on one connection until ``seconds`` pass or the server says it closes it."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await stream.send_all(CHECK_REQUEST)
        answer = await _read_answer(stream)
        out.append(time.perf_counter() - t0)
        if b"connection: close" in answer.lower():
            break
    return out


def run(params: dict[str, Any], quick: bool) -> Record:
    rec = new_record("edge", quick, params)
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        root = Path(tmp)
        cmd = [*roster_command(root / "slow", "none"), "--log-level", "INFO",
               "--http-header-timeout", str(params["header_timeout"])]
        log(f"slowloris: {params['slow']} connections, header timeout "
            f"{params['header_timeout']} s")
        with Child(cmd, name="roster (slowloris)", log_path=root / "slow.log") as child:
            rec["results"]["slowloris"] = trio.run(
                _slowloris, child.url, params["slow"], params["trickle"], params["seconds"],
                params["header_timeout"] * 3 + 10)
        rec["results"]["flood"] = {}
        for cap in ("derived", "above-limit"):
            extra = [] if cap == "derived" else ["--http-max-connections", "100000"]
            cmd = with_nofile_limit([*roster_command(root / f"flood-{cap}", "none"),
                                     "--log-level", "INFO", *extra], params["nofile"])
            log(f"flood: {params['flood']} connections, RLIMIT_NOFILE {params['nofile']}, "
                f"cap {cap}")
            with Child(cmd, name=f"roster (flood, {cap})",
                       log_path=root / f"flood-{cap}.log") as child:
                figures = trio.run(_flood, child.url, params["flood"], params["seconds"])
                text = child.log_tail(1_000_000)
            figures["accept_error_lines"] = text.count("cannot accept HTTP connections")
            figures["accept_resumed_lines"] = text.count("accepting HTTP connections again")
            figures["traceback_lines"] = text.count("Traceback")
            cap_line = re.search(r"http: at most (\d+) connections", text)
            figures["cap"] = int(cap_line.group(1)) if cap_line else None
            rec["results"]["flood"][cap] = figures
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    stream = out or sys.stdout
    if rec.get("error"):
        print(f"edge: {rec['error']}", file=stream)
        return
    s = rec["results"]["slowloris"]
    p = rec["params"]
    table(f"slowloris: {s['slow_connections_held']} connections trickling a header byte every "
          f"{p['trickle']} s, --http-header-timeout {p['header_timeout']}",
          ("figure", "value"),
          [("normal client p50 / p99, idle server (ms)",
            f"{s['idle_p50_ms']:.2f} / {s['idle_p99_ms']:.2f}"),
           ("normal client p50 / p99, during slowloris (ms)",
            f"{s['busy_p50_ms']:.2f} / {s['busy_p99_ms']:.2f}"),
           ("requests answered during slowloris", s["busy_requests"]),
           ("slow connections closed by the server", s["slow_connections_reaped"]),
           ("closed after p50 / max (s)",
            f"{s['reaped_after_p50_s']:.2f} / {s['reaped_after_max_s']:.2f}")], stream)
    rows = []
    for cap, f in rec["results"]["flood"].items():
        rows.append((cap, f["cap"], f["held"], f["old_client_answered_during"],
                     f["recovered_after_s"] if f["recovered_after_s"] is not None else "never",
                     f"{f['accept_error_lines']} / {f['accept_resumed_lines']}",
                     f["traceback_lines"]))
    table(f"descriptor flood: {p['flood']} connections held, RLIMIT_NOFILE {p['nofile']}",
          ("cap", "max conns", "held", "old client answered", "recovered after (s)",
           "accept-error / resumed lines", "tracebacks"), rows, stream)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    params = {
        "slow": args.slow or (100 if quick else 500),
        "trickle": args.trickle,
        "header_timeout": args.header_timeout,
        "seconds": args.seconds or (2.0 if quick else 5.0),
        "nofile": args.nofile,
        "flood": args.flood or (300 if quick else 1000),
    }
    return run(params, quick)
