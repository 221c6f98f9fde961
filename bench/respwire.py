"""``python -m bench.respwire [--quick]``: RESP request parsing, hand-written vs hiredis.Reader.

Prints microseconds per parsed command for each parser and input shape:

* ``pipe100``: 100 pipelined ``CHECK u1 g1 2`` (about 40 bytes each) fed as one chunk, the
  shape of a pipelining client's read.
* ``pipe100-frag``: the same bytes fed in random fragments of 1..64 bytes, each followed by a
  ``commands()`` call (the worst case of a slow or byte-dribbling link; seeded, same cuts for
  every parser).
* ``wlset1000``: one ``WL.SET cid 2`` with 1000 uids, one chunk.
* ``ping10k``: 10 000 ``PING`` in one chunk (tiny commands: per-command overhead).

Parsers:

* ``hand``: ``server.resp_wire.RequestParser`` (the product).
* ``hiredis-raw``: ``hiredis.Reader`` fed everything, ``gets()`` until incomplete, each reply
  checked to be a list of bytes. **Not a valid server parser**: no inline commands, no
  max_bulk/max_args before allocation (hiredis creates the argument list from the ``*<n>``
  header, also for a nested array, so ``*1\r\n*100000000\r\n`` asks for 800 MB at once; the
  kernel hands it out lazily, so RSS grows only as elements arrive, but that is address space
  granted on a client's word and it fails outright under strict overcommit or ``ulimit -v``).
  It is the ceiling: what hiredis costs when nothing has to be checked.
* ``hiredis-scan``: a ``RequestParser``-compatible wrapper that is correct: a Python pre-scan
  walks the ``*``/``$`` headers of each command (limits, errors, inline detection and command
  boundaries, exactly as ``RequestParser``), and only complete, validated commands are handed to
  hiredis to build the argument lists. Inline commands are split in Python. This is the price of
  using hiredis in the server.

After the parsers, the same ``pipe100`` chunk is run through the server's dispatch
(``RespServer._run``: command lookup, the inline CHECK answer, the reply bytes) over a small
in-memory state, so the two halves of a pipelined CHECK's CPU cost are printed side by side.
hiredis is optional (``pip install -e '.[bench]'``); without it only ``hand`` is measured.

Correctness of the wrapper is checked here (same output as ``hand`` on every case) rather than in
the test suite, because it is not product code. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

try:
    import hiredis
except ImportError:  # optional: pip install -e '.[bench]'
    HAVE_HIREDIS = False
else:
    HAVE_HIREDIS = True

from server.resp_wire import INLINE_MAX, ProtocolError, RequestParser, split_inline

_MAX_HEADER = 32


class Parser(Protocol):
    def feed(self, data: bytes) -> None: ...
    def commands(self) -> list[list[bytes]]: ...


class HiredisRaw:
    """hiredis with only a post-check of each reply: the speed ceiling, not a safe parser."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def commands(self) -> list[list[bytes]]:
        gets = self._reader.gets
        out: list[list[bytes]] = []
        while (reply := gets()) is not False:
            if type(reply) is not list or not all(type(a) is bytes for a in reply):
                raise ProtocolError("expected '$'")
            if reply:
                out.append(reply)
        return out


class HiredisScan:
    """Correct wrapper: Python pre-scan for limits and boundaries, hiredis builds the lists."""

    def __init__(
        self,
        max_bulk: int = 64 * 1024,
        max_args: int = 30_003,
        max_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        self.max_bulk = max_bulk
        self.max_args = max_args
        self.max_buffer = max_buffer
        self._reader = hiredis.Reader()
        self._buf = b""
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buf += data

    def commands(self) -> list[list[bytes]]:
        if self._error is not None:
            raise self._error
        out: list[list[bytes]] = []
        buf = self._buf
        pos = 0
        multibulk_from = 0  # start of the validated run of multibulk commands not yet handed over
        count = 0  # commands in that run
        try:
            while pos < len(buf):
                if buf[pos] != 0x2A:
                    # Inline: hand the multibulk run before it to hiredis, then split in Python.
                    count = self._flush(buf, multibulk_from, pos, count, out)
                    eol = buf.find(b"\n", pos)
                    if (eol if eol >= 0 else len(buf)) - pos > INLINE_MAX:
                        raise ProtocolError("too big inline request")
                    if eol < 0:
                        break
                    args = split_inline(buf[pos:eol])
                    if args:
                        out.append(args)
                    pos = multibulk_from = eol + 1
                    continue
                end = self._scan(buf, pos)
                if end < 0:
                    break
                if end > pos:
                    count += 1
                pos = end
            self._flush(buf, multibulk_from, pos, count, out)
            self._buf = buf[pos:]
            if len(self._buf) > self.max_buffer:
                raise ProtocolError("too much unparsed input")
        except ProtocolError as exc:
            self._error = exc
            self._buf = b""
            # Commands validated before the fault are still answered.
            self._flush(buf, multibulk_from, pos, count, out)
            if not out:
                raise
        return out

    def _flush(self, buf: bytes, start: int, end: int, count: int, out: list[list[bytes]]) -> int:
        if end > start:
            reader = self._reader
            reader.feed(buf, start, end - start)
            gets = reader.gets
            for _ in range(count):
                reply = gets()
                if reply:  # "*0" / "*-1" come back as [] / None: skipped
                    out.append(reply)
        return 0

    def _scan(self, buf: bytes, pos: int) -> int:
        """End offset of the multibulk command at `pos`, -1 if incomplete; raises if invalid."""
        find = buf.find
        n = len(buf)
        eol = find(b"\r\n", pos, pos + _MAX_HEADER + 2)
        if eol < 0:
            if n - pos >= _MAX_HEADER + 2:
                raise ProtocolError("too big mbulk count string")
            return -1
        count = _int(buf[pos + 1 : eol])
        if count is None or count > self.max_args:
            raise ProtocolError("invalid multibulk length")
        pos = eol + 2
        for _ in range(count):
            if pos >= n:
                return -1
            if buf[pos] != 0x24:
                raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
            eol = find(b"\r\n", pos, pos + _MAX_HEADER + 2)
            if eol < 0:
                if n - pos >= _MAX_HEADER + 2:
                    raise ProtocolError("too big bulk count string")
                return -1
            size = _int(buf[pos + 1 : eol])
            if size is None or size < 0 or size > self.max_bulk:
                raise ProtocolError("invalid bulk length")
            pos = eol + 2 + size
            if pos + 2 > n:
                return -1
            if buf[pos : pos + 2] != b"\r\n":
                raise ProtocolError("expected CRLF after bulk data")
            pos += 2
        return pos


def _int(digits: bytes) -> int | None:
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit() or (body[0] == 0x30 and len(body) > 1):
        return None
    return int(digits)


def _mb(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _fragments(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 64)
        out.append(data[pos : pos + step])
        pos += step
    return out


CASES: dict[str, tuple[list[bytes], int]] = {}


def _build_cases() -> None:
    pipe = _mb(b"CHECK", b"u1", b"g1", b"2") * 100
    CASES["pipe100"] = ([pipe], 100)
    CASES["pipe100-frag"] = (_fragments(pipe, 1), 100)
    wl = _mb(b"WL.SET", b"cid", b"2", *[b"user%d" % i for i in range(1000)])
    CASES["wlset1000"] = ([wl], 1)
    CASES["ping10k"] = ([_mb(b"PING") * 10_000], 10_000)


PARSERS: dict[str, Callable[[], Parser]] = {"hand": RequestParser}
if HAVE_HIREDIS:
    PARSERS |= {"hiredis-raw": HiredisRaw, "hiredis-scan": HiredisScan}


def _run(factory: Callable[[], Parser], chunks: list[bytes]) -> list[list[bytes]]:
    p = factory()
    out: list[list[bytes]] = []
    for chunk in chunks:
        p.feed(chunk)
        out += p.commands()
    return out


def _time(factory: Callable[[], Parser], chunks: list[bytes], seconds: float) -> float:
    """Best-of-5 seconds per run (a new parser each run, as per connection read)."""
    runs = 1
    while True:  # calibrate so one timing batch lasts about seconds/5
        t0 = time.perf_counter()
        for _ in range(runs):
            _run(factory, chunks)
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 10:
            break
        runs *= 2
    best = elapsed / runs
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(runs):
            _run(factory, chunks)
        best = min(best, (time.perf_counter() - t0) / runs)
    return best


def _check_wrappers() -> None:
    """The hiredis-scan wrapper must agree with the product parser, errors included."""
    samples = [
        b"PING\r\n" + _mb(b"GET", b"k") + b'SET k "a b"\r\n*0\r\n' + _mb(b"X"),
        _mb(b"A") + b"*1\r\n$99999\r\n",
        _mb(b"A") + b"*99999\r\n",
        _mb(b"A") + b"*1\r\n:1\r\n",
        b"x" * (INLINE_MAX + 1),
    ]
    for data in samples:
        for chunks in ([data], _fragments(data, 7)):
            results = []
            for factory in (RequestParser, HiredisScan):
                p = factory()
                got: list[object] = []
                try:
                    for chunk in chunks:
                        p.feed(chunk)
                        got += p.commands()
                    got += p.commands()
                except ProtocolError as exc:
                    got.append(str(exc))
                results.append(got)
            assert results[0] == results[1], (data[:40], results)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.respwire", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter timings")
    opts = ap.parse_args(argv)
    seconds = 0.2 if opts.quick else 1.0
    _build_cases()
    if HAVE_HIREDIS:
        _check_wrappers()
    for name, (chunks, _n) in CASES.items():
        expected = _run(RequestParser, chunks)
        for pname, factory in PARSERS.items():
            assert _run(factory, chunks) == expected, (name, pname)
    version = hiredis.__version__ if HAVE_HIREDIS else "not installed"
    print(f"hiredis {version}, Python {sys.version.split()[0]}")
    print("us per command (best of 5; lower is better)")
    header = f"{'case':<14}" + "".join(f"{p:>14}" for p in PARSERS)
    print(header)
    print("-" * len(header))
    for name, (chunks, n) in CASES.items():
        row = f"{name:<14}"
        for factory in PARSERS.values():
            row += f"{_time(factory, chunks, seconds) / n * 1e6:>14.3f}"
        print(row)
    print(f"dispatch of pipe100 (RespServer._run, ids cached): {_dispatch(seconds):.3f} us per "
          f"command")
    return 0


def _dispatch(seconds: float) -> float:
    """Best-of-5 microseconds per command of the server's dispatch over a pipeline of CHECKs."""
    from types import SimpleNamespace

    from server.commands import Context
    from server.resp import Connection, RespServer
    from server.schema import Limits
    from server.state import State

    state = State()
    state.apply((0, [("ch_put", "g1", 2, {}), ("sub_add", "g1", 2, ["u1"])]))
    roster: Any = SimpleNamespace(state=state, now_ms=lambda: time.time_ns() // 1_000_000)
    server = RespServer(Context(roster, Limits()), "127.0.0.1", 0, 1, 0, None)
    conn = Connection(1, True, 0.0)
    batch = _run(RequestParser, CASES["pipe100"][0])
    best = float("inf")
    for _ in range(5):
        rounds, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            server._run(conn, batch, 0)
            conn.out.clear()
            rounds += 1
        best = min(best, (time.perf_counter() - start) / (rounds * len(batch)))
    return best * 1e6


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
