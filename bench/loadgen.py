"""HTTP load generators: ``wrk`` (with a generated Lua script) or an in-repo raw trio client.

Both take the same job: POST each of ``bodies`` in turn (per connection, each connection starting
at a different offset) to one path, over ``connections`` keep-alive connections, for ``duration``
seconds, and report requests/s, latency percentiles and failures (socket errors and non-2xx).

``wrk`` is C + LuaJIT and costs the 2-core machine far less CPU per request than the Python server
under test, so it is preferred when installed. The trio client is the fallback; it is h11-free
(one pre-built request per body, ``Content-Length`` framing, one regex per response head) but it
is still Python and shares the CPU with the server, so its figures are lower bounds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

from bench.common import percentile


@dataclass
class LoadResult:
    client: str
    path: str
    connections: int
    seconds: float
    requests: int
    rps: float
    errors: int  # socket errors, timeouts
    non_2xx: int
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def choose_client(wanted: str) -> str:
    if wanted == "wrk" and not wrk_available():
        raise SystemExit("--client wrk: wrk is not installed (apt-get install -y wrk)")
    if wanted == "auto":
        return "wrk" if wrk_available() else "trio"
    return wanted


def split_url(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# -- wrk ----------------------------------------------------------------------------------------

_LUA = """\
local bodies = {
%s
}
local path = %s
local reqs = {}
local i = 0

function init(args)
  local headers = {}
  headers["Content-Type"] = "application/json"
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", path, headers, b)
  end
  i = math.random(#reqs) - 1
end

function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""


def _lua_string(data: bytes) -> str:
    text = data.decode()
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def run_wrk(url: str, path: str, bodies: list[bytes], connections: int,
            duration: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="roster-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA % (",\n".join(_lua_string(b) for b in bodies), _lua_string(
            path.encode())), encoding="utf-8")
        threads = 1 if connections < 8 else 2
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--latency", "--timeout", "30s", "-s", str(script), url]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or out}")
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    requests = int(m.group(1)) if m else 0
    seconds = _ms(f"{m.group(2)}{m.group(3)}") / 1000 if m else duration
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return LoadResult(
        client="wrk", path=path, connections=connections, seconds=seconds, requests=requests,
        rps=float(rps_m.group(1)) if rps_m else requests / seconds,
        errors=sum(int(g) for g in errs.groups()) if errs else 0,
        non_2xx=int(non2.group(1)) if non2 else 0,
        p50_ms=_ms(p50.group(1)) if p50 else 0.0, p99_ms=_ms(p99.group(1)) if p99 else 0.0)


# -- the in-repo trio client --------------------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


class _Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.non_2xx = 0
        self.errors = 0
        self.latencies: list[float] = []


async def _connection(host: str, port: int, requests: list[bytes], offset: int,
                      deadline: float, tally: _Tally) -> None:
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        tally.errors += 1
        return
    clock = time.perf_counter
    buf = bytearray()
    n = len(requests)
    i = offset
    async with stream:
        try:
            while clock() < deadline:
                t0 = clock()
                await stream.send_all(requests[i % n])
                i += 1
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        break
                    data = await stream.receive_some(262144)
                    if not data:
                        raise ConnectionError("server closed the connection")
                    buf += data
                head = bytes(buf[: end + 2])
                m = _CONTENT_LENGTH.search(head)
                total = end + 4 + (int(m.group(1)) if m else 0)
                while len(buf) < total:
                    data = await stream.receive_some(262144)
                    if not data:
                        raise ConnectionError("server closed the connection")
                    buf += data
                del buf[:total]
                tally.latencies.append(clock() - t0)
                tally.requests += 1
                if not head.startswith(b"HTTP/1.1 2"):
                    tally.non_2xx += 1
        except (OSError, ConnectionError, trio.BrokenResourceError):
            tally.errors += 1


async def _trio_load(url: str, path: str, bodies: list[bytes], connections: int,
                     duration: float) -> LoadResult:
    host, port = split_url(url)
    requests = [build_request(host, port, path, b) for b in bodies]
    tally = _Tally()
    t0 = time.perf_counter()
    deadline = t0 + duration
    async with trio.open_nursery() as nursery:
        for c in range(connections):
            nursery.start_soon(_connection, host, port, requests,
                               c * max(1, len(requests) // connections), deadline, tally)
    elapsed = time.perf_counter() - t0
    lat = sorted(tally.latencies)
    return LoadResult(
        client="trio", path=path, connections=connections, seconds=elapsed,
        requests=tally.requests, rps=tally.requests / elapsed, errors=tally.errors,
        non_2xx=tally.non_2xx, p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000)


def run_trio(url: str, path: str, bodies: list[bytes], connections: int,
             duration: float) -> LoadResult:
    return trio.run(_trio_load, url, path, bodies, connections, duration)


def run_load(client: str, url: str, path: str, bodies: list[bytes], connections: int,
             duration: float) -> LoadResult:
    if client == "wrk":
        return run_wrk(url, path, bodies, connections, duration)
    return run_trio(url, path, bodies, connections, duration)
