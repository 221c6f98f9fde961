"""RESP wire format for the RESP server lane: request parsing and reply encoding, with no I/O.

The connection loop (``server/resp.py``) owns the socket; this module only turns received bytes
into commands and Python values into reply bytes, so it is testable without sockets and can be
fuzzed byte by byte.

Design notes:

* **Parser state survives between reads.** A pipelined client sends commands cut at arbitrary
  byte boundaries. A multibulk command that is partly received keeps its finished arguments and
  the announced length of the bulk in progress, so a large command trickling in is scanned once,
  not re-parsed from its start on every read.
* **Received chunks are joined lazily.** ``feed`` only queues the chunk; the parse joins the queue
  onto the unparsed tail when it can make progress (enough bytes for the bulk it waits for, or a
  newline for a line). A 64 KiB bulk arriving in many small reads is therefore copied a few
  times, not once per read. The buffer is ``bytes`` rather than ``bytearray`` because slices of
  ``bytes`` are the ``bytes`` arguments we return (no second copy) and are hashable, which lets
  the common ``$<len>`` / ``*<n>`` header lines be decoded by one dict lookup.
* **No per-byte Python loop on the multibulk path, and mostly no per-argument one.** Pipelined
  commands as client libraries send them (canonical headers, no CRLF inside an argument) are
  taken by a fast path: one ``split`` of the buffer at CRLF, then per command a few C-level list
  operations that check every ``$<len>`` token against the length of the data token after it.
  Anything else (a partial command, CRLF inside an argument, inline, an error) is left to the
  general loop, which costs a ``find``, a dict lookup and a slice per argument. Only inline
  commands with quotes (a human in telnet, never a client library) take a character loop.
  Measured with ``python -m bench.respwire``, which also shows why this is not built on
  ``hiredis.Reader``: hiredis alone is about twice as fast, but it cannot parse inline commands
  and checks no limit before allocating, and the Python pre-scan needed to make it safe costs
  more than the whole hand-written parse.
* **Limits are checked as soon as the offending header is seen**, before waiting for the data it
  announces, and the total of unparsed input is bounded, so a client cannot make us buffer
  without limit by announcing a huge command and never finishing it.
* **Errors are deferred by one call.** Commands completed before a protocol error are returned
  first so the server can answer them, then the error is raised; the parser then stays broken,
  since after a framing error nothing later on the stream can be trusted.
* Rules and messages follow Redis (``processMultibulkBuffer``, ``processInlineBuffer``,
  ``sdssplitargs``) so redis-cli and client libraries see familiar errors. Deliberate
  differences: a missing CRLF after bulk data is an error (Redis skips two bytes blindly), and the
  inline length limit applies whether or not the newline has arrived yet, so the outcome does not
  depend on how the input was fragmented.

Replies: ``encode`` maps Python values to RESP2 or RESP3. The hot replies (``OK``, nil, small
integers such as the CHECK reason code, integer arrays for batch checks) are precomputed or have
dedicated helpers because they are produced once per command under pipelined load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "INLINE_MAX",
    "NIL2",
    "NIL3",
    "OK",
    "ErrorReply",
    "ProtocolError",
    "RequestParser",
    "SimpleString",
    "encode",
    "int_array",
    "integer",
    "nil",
    "split_inline",
]

# Longest inline command line (Redis PROTO_INLINE_MAX_SIZE).
INLINE_MAX = 64 * 1024
# Longest "*<n>" / "$<len>" line, type byte included. 32 bytes hold any 64-bit integer; anything
# longer without CRLF is junk and must not be buffered while we wait for a newline.
_MAX_HEADER = 32
# Header lines decoded by a dict lookup instead of validation + int(): covers every length a
# normal command uses. Others go through _strict_int.
_CACHED_HEADERS = 1024
_BULK_HEADERS: dict[bytes, int] = {b"$%d" % i: i for i in range(_CACHED_HEADERS)}
# The same headers by length: the fast path compares a header token with the one its data needs.
_HEADER_OF: tuple[bytes, ...] = tuple(b"$%d" % i for i in range(_CACHED_HEADERS))
_ARRAY_HEADERS: dict[bytes, int] = {b"*%d" % i: i for i in range(-1, _CACHED_HEADERS)}
_STAR = 0x2A
_DOLLAR = 0x24
_CRLF = b"\r\n"


class ProtocolError(Exception):
    """The client broke the protocol; the message is sent as '-ERR protocol error: <msg>' then the
    connection closes."""


def _strict_int(digits: bytes) -> int | None:
    """Decimal integer as Redis ``string2ll`` accepts it: optional '-', no '+', no spaces, no
    leading zeros, no '_' (all of which Python's ``int()`` would let through)."""
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit() or (body[0] == 0x30 and len(body) > 1) or not body.isascii():
        return None
    return int(digits)


def _show_byte(b: int) -> str:
    # The byte ends up inside an error line: never echo CR/LF or other control bytes raw.
    return chr(b) if 0x20 < b < 0x7F else f"\\x{b:02x}"


class RequestParser:
    """Incremental parser of client requests (multibulk and inline) into argument lists."""

    __slots__ = (
        "_args",
        "_buf",
        "_bulk",
        "_chunks",
        "_chunks_len",
        "_error",
        "_left",
        "_partial",
        "_pos",
        "_want_bytes",
        "_want_newline",
        "max_args",
        "max_buffer",
        "max_bulk",
    )

    def __init__(
        self,
        max_bulk: int = 64 * 1024,
        max_args: int = 30_003,
        max_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        self.max_bulk = max_bulk
        self.max_args = max_args
        self.max_buffer = max_buffer
        self._buf = b""  # unparsed bytes start at _pos
        self._pos = 0
        self._chunks: list[bytes] = []  # fed but not yet joined onto _buf
        self._chunks_len = 0
        # Join _chunks once they hold this many bytes (or a newline, if _want_newline).
        self._want_bytes = 1
        self._want_newline = False
        # The multibulk command in progress: its finished arguments, how many are still to come,
        # the length of the bulk whose data we wait for (-1: its "$" line is not parsed yet), and
        # how many bytes of it were already consumed from the buffer (for `buffered`).
        self._args: list[bytes] = []
        self._left = 0
        self._bulk = -1
        self._partial = 0
        self._error: ProtocolError | None = None

    @property
    def failed(self) -> bool:
        """True once the input is broken: the next ``commands()`` raises the error."""
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as commands."""
        return len(self._buf) - self._pos + self._chunks_len + self._partial

    def feed(self, data: bytes) -> None:
        """Queue received bytes; parsing happens in `commands`."""
        if data and self._error is None:
            self._chunks.append(bytes(data))
            self._chunks_len += len(data)

    def commands(self) -> list[list[bytes]]:
        """Every complete command received so far, in order.

        Raises ProtocolError if the input is broken and no complete command precedes the fault;
        otherwise the complete commands are returned and the next call raises.
        """
        if self._error is not None:
            raise self._error
        out: list[list[bytes]] = []
        if self._chunks and self._ready():
            self._join()
        try:
            self._parse(out)
            if self.buffered > self.max_buffer:
                raise ProtocolError("too much unparsed input")
        except ProtocolError as exc:
            self._break(exc)
            if not out:
                raise
        return out

    def _ready(self) -> bool:
        if self._chunks_len >= self._want_bytes:
            return True
        return self._want_newline and any(b"\n" in c for c in self._chunks)

    def _join(self) -> None:
        self._buf = b"".join([self._buf[self._pos :], *self._chunks])
        self._pos = 0
        self._chunks = []
        self._chunks_len = 0

    def _break(self, exc: ProtocolError) -> None:
        # Free the input: nothing after a framing error will ever be parsed.
        self._error = exc
        self._buf = b""
        self._pos = 0
        self._chunks = []
        self._chunks_len = 0
        self._args = []
        self._partial = 0

    def _parse(self, out: list[list[bytes]]) -> None:
        # Locals for speed: this loop runs once per argument of every pipelined command.
        buf = self._buf
        pos = self._pos
        n = len(buf)
        args = self._args
        left = self._left
        if not left and pos < n and buf[pos] == _STAR and self.max_bulk >= _CACHED_HEADERS:
            pos = self._parse_canonical(buf, pos, out)
        bulk = self._bulk
        find = buf.find
        max_bulk = self.max_bulk
        # Where the command in progress started in `buf`, and what it consumed of earlier buffers.
        start = 0
        consumed_before = self._partial
        want_bytes = 1
        want_newline = False
        try:
            while True:
                if not left:
                    if pos >= n:
                        break
                    if buf[pos] != _STAR:
                        end = self._inline(buf, pos, out)
                        if end < 0:
                            want_newline = True
                            want_bytes = INLINE_MAX + 1 - (n - pos)
                            break
                        pos = end
                        continue
                    eol = find(_CRLF, pos, pos + _MAX_HEADER + 2)
                    if eol < 0:
                        if n - pos >= _MAX_HEADER + 2:
                            raise ProtocolError("too big mbulk count string")
                        break
                    line = buf[pos:eol]
                    count = _ARRAY_HEADERS.get(line)
                    if count is None:
                        count = _strict_int(line[1:])
                        if count is None:
                            raise ProtocolError("invalid multibulk length")
                    if count > self.max_args:
                        raise ProtocolError("invalid multibulk length")
                    start = pos
                    consumed_before = 0
                    pos = eol + 2
                    if count <= 0:
                        continue  # "*0" / "*-1": an empty command, skipped like Redis does
                    left = count
                    args = []
                while left:
                    if bulk < 0:
                        if pos >= n:
                            break
                        if buf[pos] != _DOLLAR:
                            raise ProtocolError(f"expected '$', got '{_show_byte(buf[pos])}'")
                        eol = find(_CRLF, pos, pos + _MAX_HEADER + 2)
                        if eol < 0:
                            if n - pos >= _MAX_HEADER + 2:
                                raise ProtocolError("too big bulk count string")
                            break
                        line = buf[pos:eol]
                        got = _BULK_HEADERS.get(line)
                        if got is None:
                            got = _strict_int(line[1:])
                            if got is None or got < 0:
                                raise ProtocolError("invalid bulk length")
                        if got > max_bulk:
                            raise ProtocolError("invalid bulk length")
                        bulk = got
                        pos = eol + 2
                    end = pos + bulk
                    if end + 2 > n:
                        want_bytes = end + 2 - n
                        break
                    if buf[end] != 0x0D or buf[end + 1] != 0x0A:
                        raise ProtocolError("expected CRLF after bulk data")
                    args.append(buf[pos:end])
                    pos = end + 2
                    bulk = -1
                    left -= 1
                if left:
                    break  # incomplete: wait for more input
                out.append(args)
        finally:
            self._buf = buf if pos < n else b""
            self._pos = pos if pos < n else 0
            self._args = args if left else []
            self._left = left
            self._bulk = bulk
            self._partial = consumed_before + (pos - start) if left else 0
            self._want_bytes = max(want_bytes, 1)
            self._want_newline = want_newline
        # Drop the consumed head so a large chunk does not stay alive for a small tail.
        if self._pos:
            self._buf = self._buf[self._pos :]
            self._pos = 0

    def _parse_canonical(self, buf: bytes, pos: int, out: list[list[bytes]]) -> int:
        """Fast path: take the leading run of complete, canonically encoded multibulk commands
        whose arguments contain no CRLF, and return the offset after it.

        One C-level ``split`` cuts the whole buffer at CRLF; a command is then accepted with a
        handful of C-level list operations whatever its argument count: each ``$<len>`` token
        must be exactly the header of the data token after it. When that holds, the bytes are the
        one encoding of those arguments, so the general loop would return the same thing. At the
        first command that does not fit (incomplete, inline, CRLF inside an argument, header
        outside the cached range, or invalid) we stop and the general loop takes over there,
        with all its checks and error messages. Callers make sure ``max_bulk`` is at least the
        cached header range, since the token check implies a bulk length below it.
        """
        tokens = buf[pos:].split(_CRLF) if pos else buf.split(_CRLF)
        complete = len(tokens) - 1  # the last token has no CRLF after it (yet)
        count_of = _ARRAY_HEADERS.get
        header = _HEADER_OF
        max_args = self.max_args
        append = out.append
        i = 0
        try:
            while i < complete:
                head = tokens[i]
                count = count_of(head)
                if count is None:
                    if head[:1] != b"*" or len(head) > _MAX_HEADER:
                        break
                    count = _strict_int(head[1:])
                    if count is None:
                        break
                if count <= 0:
                    i += 1
                    continue
                end = i + 1 + 2 * count
                if end > complete or count > max_args:
                    break
                args = tokens[i + 2 : end : 2]
                if count == 4:
                    # Unrolled for the most common shape (CHECK, PRESENCE.SET, WL.SET with one
                    # uid): measured 0.83 -> 0.58 us per command on a pipeline of CHECKs.
                    a, b, c, d = args
                    if (tokens[i + 1] != header[len(a)] or tokens[i + 3] != header[len(b)]
                            or tokens[i + 5] != header[len(c)]
                            or tokens[i + 7] != header[len(d)]):
                        break
                elif tokens[i + 1 : end : 2] != [header[len(x)] for x in args]:
                    break
                append(args)
                i = end
        except IndexError:  # an argument longer than the cached headers: the general loop
            pass
        # Every accepted token was followed by a CRLF: the offset follows from their lengths.
        return pos + sum(map(len, tokens[:i])) + 2 * i if i else pos

    @staticmethod
    def _inline(buf: bytes, pos: int, out: list[list[bytes]]) -> int:
        """Parse one inline command at `pos`; return the offset after it, or -1 if incomplete."""
        eol = buf.find(b"\n", pos)
        if (eol if eol >= 0 else len(buf)) - pos > INLINE_MAX:
            raise ProtocolError("too big inline request")
        if eol < 0:
            return -1
        line = buf[pos:eol]
        args = split_inline(line)
        if args:
            out.append(args)
        return eol + 1


_SPACE = frozenset(b" \t\n\r\v\f")
_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line like Redis ``sdssplitargs``.

    A trailing CR (of a CRLF line end) is whitespace anyway. Redis works on a C string, so a NUL
    byte ends the line there; we do the same so both servers agree on what was sent.
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line:
        return line.split()  # bytes.split() splits on the same six whitespace bytes as isspace()
    return _split_quoted(line)


def _split_quoted(line: bytes) -> list[bytes]:
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        quote = 0  # 0, or the quote byte we are inside
        while True:
            c = line[i] if i < n else -1
            if quote == 0x22:  # "..."
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == 0x78
                    and (line[i + 2] in _HEX and line[i + 3] in _HEX)
                ):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    cur.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                elif c < 0:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    cur.append(c)
            elif quote == 0x27:  # '...'
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                elif c < 0:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    cur.append(c)
            elif c < 0 or c in _SPACE:
                break
            elif c == 0x22 or c == 0x27:
                quote = c  # a quote inside a word opens a quoted part of the same argument
            else:
                cur.append(c)
            i += 1
        args.append(bytes(cur))


# ---------------------------------------------------------------------------------------------
# Replies


class SimpleString(str):
    """A status reply: encodes as ``+text`` (e.g. ``SimpleString("PONG")``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply: ``-PREFIX message``, e.g. ``ErrorReply("ERR", "unknown command")``."""

    prefix: str
    message: str

    def encode(self) -> bytes:
        text = f"-{self.prefix} {self.message}" if self.message else f"-{self.prefix}"
        return _one_line(text) + _CRLF


def _one_line(text: str) -> bytes:
    # A CR or LF inside a simple/error line would end it early and desynchronise the client.
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").encode()


OK = b"+OK\r\n"
NIL2 = b"$-1\r\n"
NIL3 = b"_\r\n"
_INTEGERS = tuple(b":%d\r\n" % i for i in range(1024))


def nil(resp3: bool) -> bytes:
    return NIL3 if resp3 else NIL2


def integer(n: int) -> bytes:
    """``:n`` reply; 0..1023 come from a table (the CHECK reason codes are in it)."""
    if 0 <= n < 1024:
        return _INTEGERS[n]
    return b":%d\r\n" % n


def int_array(values: Iterable[int]) -> bytes:
    """Array of integers (a batch of CHECK results): one join, no per-item type dispatch."""
    table = _INTEGERS
    parts = [table[v] if 0 <= v < 1024 else b":%d\r\n" % v for v in values]
    return b"*%d\r\n%s" % (len(parts), b"".join(parts))


def encode(value: object, resp3: bool) -> bytes:
    """Encode a reply value; see `_encode_into` for the type mapping."""
    parts: list[bytes] = []
    _encode_into(value, resp3, parts)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _encode_into(value: object, resp3: bool, out: list[bytes]) -> None:
    t = type(value)
    # Exact-type checks first (the common case and the cheapest), bool before int since bool is
    # an int subclass, SimpleString before str for the same reason.
    if t is int:
        out.append(integer(value))  # type: ignore[arg-type]
    elif t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))  # type: ignore[arg-type]
    elif t is str:
        data = value.encode()  # type: ignore[attr-defined]
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif value is None:
        out.append(NIL3 if resp3 else NIL2)
    elif t is bool:
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else _INTEGERS[int(value)])  # type: ignore[call-overload]
    elif isinstance(value, SimpleString):
        out.append(b"+" + _one_line(str(value)) + _CRLF)
    elif isinstance(value, ErrorReply):
        out.append(value.encode())
    elif isinstance(value, (list, tuple)):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif isinstance(value, Mapping):
        out.append(b"%%%d\r\n" % len(value) if resp3 else b"*%d\r\n" % (2 * len(value)))
        for key, item in value.items():
            _encode_into(key, resp3, out)
            _encode_into(item, resp3, out)
    elif isinstance(value, (set, frozenset)):
        out.append(b"~%d\r\n" % len(value) if resp3 else b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif isinstance(value, bool):
        _encode_into(bool(value), resp3, out)
    elif isinstance(value, int):
        out.append(integer(int(value)))
    elif isinstance(value, float):
        out.append(_double(value, resp3))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, str):
        data = str(value).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode {t.__name__} as RESP")


def _double(value: float, resp3: bool) -> bytes:
    if math.isnan(value):
        text = "nan"
    elif math.isinf(value):
        text = "inf" if value > 0 else "-inf"
    else:
        text = repr(value)
    data = text.encode()
    if resp3:
        return b"," + data + _CRLF
    return b"$%d\r\n%s\r\n" % (len(data), data)
