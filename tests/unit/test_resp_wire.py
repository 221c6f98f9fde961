"""RESP wire module: request parsing (multibulk, inline, limits, errors) and reply encoding."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.resp_wire import (
    INLINE_MAX,
    NIL2,
    NIL3,
    OK,
    ErrorReply,
    ProtocolError,
    RequestParser,
    SimpleString,
    encode,
    int_array,
    integer,
    split_inline,
)


def mb(*args: bytes) -> bytes:
    """Multibulk encoding of one command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def parse(data: bytes, **limits: int) -> list[list[bytes]]:
    p = RequestParser(**limits)
    p.feed(data)
    return p.commands()


def parse_error(data: bytes, **limits: int) -> str:
    p = RequestParser(**limits)
    p.feed(data)
    with pytest.raises(ProtocolError) as info:
        p.commands()
    return str(info.value)


def parse_fragments(chunks: list[bytes], **limits: int) -> list[list[bytes]]:
    p = RequestParser(**limits)
    out: list[list[bytes]] = []
    for chunk in chunks:
        p.feed(chunk)
        out += p.commands()
    assert p.buffered == 0
    return out


# --- multibulk ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (mb(b"CHECK", b"u1", b"g1", b"2"), [[b"CHECK", b"u1", b"g1", b"2"]]),
        (mb(b"ping"), [[b"ping"]]),  # case unchanged
        (mb(b"SET", b"", b"a\r\nb"), [[b"SET", b"", b"a\r\nb"]]),  # empty arg, CRLF inside
        (mb(b"x" * 5000), [[b"x" * 5000]]),  # length beyond the cached header table
        (b"*0\r\n", []),
        (b"*-1\r\n", []),
        (b"*0\r\n*-1\r\n" + mb(b"PING") + b"*0\r\n", [[b"PING"]]),
        (mb(b"A") + mb(b"B", b"C"), [[b"A"], [b"B", b"C"]]),
        (b"*2000\r\n" + b"$1\r\nx\r\n" * 2000, [[b"x"] * 2000]),
    ],
)
def test_multibulk(data: bytes, expected: list[list[bytes]]) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*x\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"* 1\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*1_0\r\n", "invalid multibulk length"),
        (b"*1.5\r\n", "invalid multibulk length"),
        (b"*30004\r\n", "invalid multibulk length"),  # announced only: no data needed
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$01\r\n", "invalid bulk length"),
        (b"*1\r\n$+1\r\n", "invalid bulk length"),
        (b"*1\r\n$65537\r\n", "invalid bulk length"),  # announced only: no data needed
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
        (b"*2\r\n$1\r\na\r\n*1\r\n", "expected '$', got '*'"),
        (b"*1\r\nPING\r\n", "expected '$', got 'P'"),
        (b"*1\r\n\r\n", "expected '$', got '\\x0d'"),  # control bytes never echoed raw
        (b"*1\r\n$4\r\nPINGxx", "expected CRLF after bulk data"),
        (b"*1\r\n$4\r\nPING\n\r", "expected CRLF after bulk data"),
        (b"*" + b"1" * 40, "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * 40, "too big bulk count string"),
        (b"*1" + b"0" * 32 + b"\r\n", "too big mbulk count string"),  # CRLF came too late
    ],
)
def test_multibulk_errors(data: bytes, message: str) -> None:
    assert parse_error(data) == message


def test_header_line_length_bound() -> None:
    # A 32-byte header line is accepted (then judged on its value); 33 bytes are not.
    assert parse_error(b"*1\r\n$" + b"9" * 31 + b"\r\n") == "invalid bulk length"
    assert parse_error(b"*1\r\n$" + b"9" * 32 + b"\r\n") == "too big bulk count string"
    # Up to 33 bytes without CRLF we still wait: the CRLF may be on its way.
    p = RequestParser()
    p.feed(b"*1\r\n$" + b"9" * 28)
    assert p.commands() == []


@pytest.mark.parametrize("limit", [1, 100, 64 * 1024])
def test_max_bulk_at_and_past_bound(limit: int) -> None:
    assert parse(mb(b"x" * limit), max_bulk=limit) == [[b"x" * limit]]
    p = RequestParser(max_bulk=limit)
    p.feed(b"*1\r\n$%d\r\n" % (limit + 1))  # the data never comes: rejected on the header
    with pytest.raises(ProtocolError, match=r"^invalid bulk length$"):
        p.commands()


def test_max_args_at_and_past_bound() -> None:
    assert parse(mb(*[b"a"] * 30_003)) == [[b"a"] * 30_003]
    assert parse_error(b"*30004\r\n") == "invalid multibulk length"
    assert parse(mb(b"a", b"b", b"c"), max_args=3) == [[b"a", b"b", b"c"]]
    assert parse_error(b"*4\r\n", max_args=3) == "invalid multibulk length"


def test_max_buffer_at_and_past_bound() -> None:
    # An incomplete command holding exactly max_buffer bytes is fine; one more byte is not.
    head = b"*3\r\n$4\r\nSET1\r\n$10\r\n"
    limit = len(head) + 5
    p = RequestParser(max_buffer=limit)
    p.feed(head + b"x" * 5)
    assert p.commands() == []
    assert p.buffered == limit
    p.feed(b"y")
    with pytest.raises(ProtocolError, match=r"^too much unparsed input$"):
        p.commands()


def test_max_buffer_counts_arguments_already_parsed() -> None:
    # The finished arguments of an incomplete command are still memory we hold for the client.
    p = RequestParser(max_buffer=100)
    p.feed(b"*1000\r\n")
    for _ in range(10):
        p.feed(b"$1\r\nx\r\n")
        assert p.commands() == []
    assert p.buffered == 7 + 70
    p.feed(b"$1\r\nx\r\n" * 4)
    with pytest.raises(ProtocolError, match=r"^too much unparsed input$"):
        p.commands()


def test_max_buffer_complete_commands_do_not_count() -> None:
    data = mb(b"PING") * 1000
    assert parse(data, max_buffer=64) == [[b"PING"]] * 1000


def test_max_buffer_bounds_a_slow_huge_command() -> None:
    # 30 003 args of 64 KiB would be ~2 GB: the buffer limit stops it first.
    p = RequestParser()
    p.feed(b"*30003\r\n")
    chunk = b"$65536\r\n" + b"x" * 65536 + b"\r\n"
    with pytest.raises(ProtocolError, match=r"^too much unparsed input$"):
        for _ in range(100):
            p.feed(chunk)
            assert p.commands() == []


# --- inline ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"PING", [b"PING"]),
        (b"  set  k   v ", [b"set", b"k", b"v"]),
        (b"a\tb\x0bc\x0cd", [b"a", b"b", b"c", b"d"]),
        (b'"hello world"', [b"hello world"]),
        (b'"a\\nb\\rc\\td\\be\\af"', [b"a\nb\rc\td\be\af"]),
        (b'"\\\\ \\" \\q"', [b'\\ " q']),  # unknown escape: the char itself
        (b'"\\x41\\x7a\\xff"', [b"Az\xff"]),
        (b'"\\x4"', [b"x4"]),  # not two hex digits: \x is just x
        (b'"\\xZZ"', [b"xZZ"]),
        (b"'it\\'s'", [b"it's"]),
        (b"'a\\nb'", [b"a\\nb"]),  # no escapes in single quotes besides \'
        (b"'\"'", [b'"']),
        (b'"\'"', [b"'"]),
        (b'ab"c d"e', None),  # closing quote followed by a non-space
        (b'ab"c d" e', [b"abc d", b"e"]),  # a quote inside a word opens a quoted part
        (b'"" x', [b"", b"x"]),
        (b"''", [b""]),
        (b'"unterminated', None),
        (b"'unterminated", None),
        (b"'a'b", None),
        (b'"a\\"', None),
        (b"a\0b c", [b"a"]),  # NUL ends the line, as in Redis
        (b"", []),
        (b"   \t ", []),
    ],
)
def test_split_inline(line: bytes, expected: list[bytes] | None) -> None:
    if expected is None:
        with pytest.raises(ProtocolError, match=r"^unbalanced quotes in request$"):
            split_inline(line)
    else:
        assert split_inline(line) == expected


def test_inline_line_ends() -> None:
    assert parse(b"PING\r\nECHO a\nx y\r\n") == [[b"PING"], [b"ECHO", b"a"], [b"x", b"y"]]
    assert parse(b"\r\n\n   \r\nPING\n") == [[b"PING"]]  # blank lines skipped
    p = RequestParser()
    p.feed(b"PING")
    assert p.commands() == []
    assert p.buffered == 4
    p.feed(b"\r\n")
    assert p.commands() == [[b"PING"]]


def test_inline_unbalanced_quotes_error() -> None:
    assert parse_error(b'SET k "v\r\n') == "unbalanced quotes in request"


def test_inline_limit_at_and_past_bound() -> None:
    at = b"x" * INLINE_MAX
    assert parse(at + b"\n") == [[at]]
    p = RequestParser()
    p.feed(at)  # no newline yet, at the bound: keep waiting
    assert p.commands() == []
    p.feed(b"x")
    with pytest.raises(ProtocolError, match=r"^too big inline request$"):
        p.commands()
    # The bound does not depend on whether the newline came in the same read.
    assert parse_error(at + b"x\n") == "too big inline request"


def test_mixed_inline_and_multibulk() -> None:
    data = b"PING\r\n" + mb(b"GET", b"k") + b'SET k "a b"\r\n' + b"*0\r\n" + mb(b"X") + b"Y\n"
    expected = [[b"PING"], [b"GET", b"k"], [b"SET", b"k", b"a b"], [b"X"], [b"Y"]]
    assert parse(data) == expected
    assert parse_fragments([data[i : i + 1] for i in range(len(data))]) == expected


# --- error ordering ----------------------------------------------------------------------------


def test_good_commands_returned_before_the_error_then_broken_for_good() -> None:
    p = RequestParser()
    p.feed(mb(b"A") + mb(b"B") + b"*1\r\n$x\r\n" + mb(b"C"))
    assert p.commands() == [[b"A"], [b"B"]]
    for _ in range(3):
        with pytest.raises(ProtocolError, match=r"^invalid bulk length$"):
            p.commands()
    p.feed(mb(b"D"))
    with pytest.raises(ProtocolError):
        p.commands()


def test_error_with_no_good_command_raises_at_once_and_stays() -> None:
    p = RequestParser()
    p.feed(b"*1\r\n:1\r\n")
    with pytest.raises(ProtocolError):
        p.commands()
    with pytest.raises(ProtocolError):
        p.commands()


def test_limit_error_raised_before_waiting_for_data() -> None:
    p = RequestParser()
    p.feed(mb(b"OK1"))
    p.feed(b"*99999\r\n")
    assert p.commands() == [[b"OK1"]]
    with pytest.raises(ProtocolError, match=r"^invalid multibulk length$"):
        p.commands()


# --- fragmentation -----------------------------------------------------------------------------

SPLIT_CASES = [
    mb(b"CHECK", b"u1", b"g1", b"2"),
    mb(b"SET", b"k\r\n", b"") + mb(b"PING"),
    b"*0\r\n" + mb(b"WL.SET", b"cid", b"2", *[b"u%d" % i for i in range(20)]),
    b'PING\r\nSET k "a\\x41 b"\n' + mb(b"GET", b"k"),
]


@pytest.mark.parametrize("data", SPLIT_CASES)
def test_split_at_every_boundary(data: bytes) -> None:
    expected = parse(data)
    for i in range(len(data) + 1):
        assert parse_fragments([data[:i], data[i:]]) == expected, i
    for i in range(len(data) + 1):
        for j in range(i, min(len(data), i + 12) + 1):
            assert parse_fragments([data[:i], data[i:j], data[j:]]) == expected, (i, j)
    assert parse_fragments([data[i : i + 1] for i in range(len(data))]) == expected


@pytest.mark.parametrize(
    "data",
    [b"*1\r\n$x\r\n", b"*1\r\n$65537\r\n", b"*1\r\n$4\r\nPINGxx", b"X 'a\n", b"*1\r\n+x"],
)
def test_errors_same_at_every_boundary(data: bytes) -> None:
    message = parse_error(data)
    for i in range(len(data) + 1):
        p = RequestParser()
        with pytest.raises(ProtocolError) as info:
            for chunk in (data[:i], data[i:]):
                p.feed(chunk)
                assert p.commands() == []
        assert str(info.value) == message


def test_buffered_tracks_partial_input() -> None:
    data = mb(b"SET", b"key", b"value")
    p = RequestParser()
    for i, byte in enumerate(data[:-1]):
        p.feed(bytes([byte]))
        assert p.commands() == []
        assert p.buffered == i + 1
    p.feed(data[-1:])
    assert p.commands() == [[b"SET", b"key", b"value"]]
    assert p.buffered == 0


args_strategy = st.lists(
    st.lists(st.binary(max_size=40) | st.sampled_from([b"\r\n", b"$3\r\n", b"*1\r", b""])),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(cmds=args_strategy, data=st.data())
def test_property_random_commands_random_fragments(
    cmds: list[list[bytes]], data: st.DataObject
) -> None:
    wire = b"".join(mb(*c) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert parse_fragments(pieces) == [c for c in cmds if c]  # "*0" is skipped


@settings(max_examples=200, deadline=None)
@given(line=st.binary(max_size=60))
def test_property_inline_never_crashes(line: bytes) -> None:
    # Any inline line either splits or is an unbalanced-quotes error, never another exception.
    try:
        split_inline(line)
    except ProtocolError as exc:
        assert str(exc) == "unbalanced quotes in request"


def test_redis_py_encoder_round_trip() -> None:
    from redis._parsers.encoders import Encoder
    from redis.connection import PythonRespSerializer

    encoder = Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)
    serializer = PythonRespSerializer(buffer_cutoff=6000, encode=encoder.encode)
    commands: list[tuple[object, ...]] = [
        ("CHECK", "u1", "g1", 2),
        ("WL.SET", "cid", 2, *[f"u{i}" for i in range(1000)]),
        ("SET", "k", b"bin\r\n\x00\xff", 1.5),
        ("SET", "big", b"x" * 10_000),  # above buffer_cutoff: redis-py sends it in pieces
        ("ECHO", "héllo"),
    ]
    wire = b"".join(b"".join(serializer.pack(*c)) for c in commands)
    expected = [[encoder.encode(a) for a in c] for c in commands]
    assert parse(wire) == expected
    assert parse_fragments([wire[i : i + 7] for i in range(0, len(wire), 7)]) == expected


# --- replies -----------------------------------------------------------------------------------

ENCODE_CASES: list[tuple[object, bytes, bytes]] = [
    # value, RESP2, RESP3
    (None, b"$-1\r\n", b"_\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (0, b":0\r\n", b":0\r\n"),
    (1023, b":1023\r\n", b":1023\r\n"),
    (1024, b":1024\r\n", b":1024\r\n"),
    (-7, b":-7\r\n", b":-7\r\n"),
    (2**70, b":%d\r\n" % 2**70, b":%d\r\n" % 2**70),
    ("", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("héllo", b"$6\r\nh\xc3\xa9llo\r\n", b"$6\r\nh\xc3\xa9llo\r\n"),
    (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
    (bytearray(b"xy"), b"$2\r\nxy\r\n", b"$2\r\nxy\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (-0.25, b"$5\r\n-0.25\r\n", b",-0.25\r\n"),
    (1e20, b"$5\r\n1e+20\r\n", b",1e+20\r\n"),
    (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
    (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
    (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
    (SimpleString("a\r\nb\nc"), b"+a b c\r\n", b"+a b c\r\n"),
    (
        ErrorReply("ERR", "unknown command"),
        b"-ERR unknown command\r\n",
        b"-ERR unknown command\r\n",
    ),
    (ErrorReply("WRONGTYPE", "x\ny\r\nz\r"), b"-WRONGTYPE x y z \r\n", b"-WRONGTYPE x y z \r\n"),
    (
        ErrorReply("ERR", "channel_not_found channel 'g' of type 2 does not exist"),
        b"-ERR channel_not_found channel 'g' of type 2 does not exist\r\n",
        b"-ERR channel_not_found channel 'g' of type 2 does not exist\r\n",
    ),
    ([], b"*0\r\n", b"*0\r\n"),
    ([1, "a", None], b"*3\r\n:1\r\n$1\r\na\r\n$-1\r\n", b"*3\r\n:1\r\n$1\r\na\r\n_\r\n"),
    (
        (True, [2, [b"x"]]),
        b"*2\r\n:1\r\n*2\r\n:2\r\n*1\r\n$1\r\nx\r\n",
        b"*2\r\n#t\r\n*2\r\n:2\r\n*1\r\n$1\r\nx\r\n",
    ),
    ({}, b"*0\r\n", b"%0\r\n"),
    (
        {"a": 1, "b": [None, {"c": False}]},
        b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n$-1\r\n*2\r\n$1\r\nc\r\n:0\r\n",
        b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n_\r\n%1\r\n$1\r\nc\r\n#f\r\n",
    ),
    ({"s"}, b"*1\r\n$1\r\ns\r\n", b"~1\r\n$1\r\ns\r\n"),
]


@pytest.mark.parametrize(("value", "resp2", "resp3"), ENCODE_CASES)
def test_encode(value: object, resp2: bytes, resp3: bytes) -> None:
    assert encode(value, resp3=False) == resp2
    assert encode(value, resp3=True) == resp3


def test_encode_int_and_str_subclasses() -> None:
    import enum

    class Code(enum.IntEnum):
        DENIED = 3

    class Name(str):
        pass

    assert encode(Code.DENIED, resp3=True) == b":3\r\n"
    assert encode(Name("ab"), resp3=False) == b"$2\r\nab\r\n"


def test_encode_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        encode(object(), resp3=True)


def test_constants_and_helpers() -> None:
    assert OK == b"+OK\r\n" == encode(SimpleString("OK"), resp3=True)
    assert encode(None, resp3=False) == NIL2
    assert encode(None, resp3=True) == NIL3
    for n in (0, 1, 7, 1023, 1024, -1, 10**12):
        assert integer(n) == b":%d\r\n" % n
    assert integer(5) is integer(5)  # cached
    assert int_array([]) == b"*0\r\n"
    values = [0, 3, 1023, 1024, -2]
    assert int_array(values) == encode(values, resp3=True) == encode(values, resp3=False)
    assert int_array(range(3)) == b"*3\r\n:0\r\n:1\r\n:2\r\n"


def test_encoded_replies_parse_as_resp() -> None:
    # Cross-check the encoder with an independent RESP reader (hiredis, the C client parser).
    import hiredis

    value = [1, "a", b"\r\n", None, [True, 2.5], {"k": [SimpleString("OK")]}]
    reader = hiredis.Reader()
    reader.feed(encode(value, resp3=False))
    assert reader.gets() == [1, b"a", b"\r\n", None, [1, b"2.5"], [b"k", [b"OK"]]]
    reader = hiredis.Reader()
    reader.feed(encode(value, resp3=True))
    assert reader.gets() == [1, b"a", b"\r\n", None, [True, 2.5], {b"k": [b"OK"]}]


@settings(max_examples=200, deadline=None)
@given(cmds=args_strategy)
def test_property_fast_and_general_paths_agree(cmds: list[list[bytes]]) -> None:
    # max_bulk below the cached header range turns the split-based fast path off.
    wire = b"".join(mb(*c) for c in cmds) + b"PING\r\n" + mb(b"a\r\n", b"x" * 900) + mb(b"Z")
    assert (
        parse(wire)
        == parse(wire, max_bulk=1000)
        == [c for c in cmds if c]
        + [
            [b"PING"],
            [b"a\r\n", b"x" * 900],
            [b"Z"],
        ]
    )
