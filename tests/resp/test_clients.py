"""Real Redis clients against a real ``roster serve``: redis-py (sync RESP2/RESP3, pipelines,
asyncio) and redis-cli, with the HTTP side of the same process as the referee.

Every RESP command is an adapter over the same command layer as its HTTP twin, so these tests
check the two against each other: reply shapes per protocol version, the same error ``code``
for the same bad input (and no change of state), a change made over one protocol visible over
the other, auth, housekeeping commands, metrics and the ``EVENTS.READ`` presence feed.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import TOKEN
from tests.e2e.helpers import (
    assert_ok,
    client_for,
    get_list,
    info,
    new_id,
    ok,
    running,
    snapshot,
    subscribers,
    system_uids,
)
from tests.resp.conftest import REDIS_CLI, connect, raw_socket, resp_address
from tests.server_process import ServerProcess, wait_until

FLAG_OPTIONS = ("BAN", "DISBAND", "SEND_BAN", "ALLOW_STRANGER", "LARGE")
INFO_KEYS = {"channel_id", "channel_type", "ban", "disband", "send_ban", "allow_stranger",
             "large", "subscriber_count", "whitelist_count", "blacklist_count", "created_at",
             "updated_at"}


# -- helpers -------------------------------------------------------------------------------------


def code_of(exc: BaseException) -> str:
    """The first word of an ``-ERR <code> <msg>`` reply (redis-py strips the ``ERR``)."""
    return str(exc).split(" ", 1)[0]


def as_map(reply: Any) -> dict[str, Any]:
    """A RESP3 map, or the flat ``[k, v, k, v]`` array RESP2 sends for it."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def lsn(api: httpx.Client) -> int:
    value: int = api.get("/health").json()["lsn"]
    return value


def metric(api: httpx.Client, name: str, **labels: str) -> float:
    """One sample of ``/metrics`` (0 if absent)."""
    text = api.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            sample, _, value = line.rpartition(" ")
            got = sample[len(name):].strip("{}")
            if ",".join(sorted(got.split(","))) == want:
                return float(value)
    return 0.0


def pack(*argv: str | bytes | int) -> bytes:
    """One command in RESP multibulk form."""
    out = [b"*%d\r\n" % len(argv)]
    for a in argv:
        data = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Err(str):
    """An error reply read off the wire."""


class Simple(str):
    """A simple-string reply read off the wire."""


class Wire:
    """A hand-driven RESP connection that keeps the reply types (for exact shape checks)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, *argv: str | bytes | int) -> None:
        self.sock.sendall(pack(*argv))

    def call(self, *argv: str | bytes | int) -> Any:
        self.send(*argv)
        return self.reply()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return Simple(rest)
        if kind == b"-":
            return Err(rest)
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == "t"
        if kind in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n).decode()
            return ("verbatim", data[:3], data[4:]) if kind == b"=" else data
        if kind in (b"*", b"~"):
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if kind == b"%":
            return {self.reply(): self.reply() for _ in range(int(rest))}
        raise AssertionError(f"unexpected reply line {line!r}")

    def closed_by_peer(self) -> bool:
        try:
            return not self.buf and not self.sock.recv(1)
        except ConnectionResetError:
            return True


@pytest.fixture
def wire(shared_server: ServerProcess) -> Iterator[Wire]:
    with raw_socket(shared_server) as sock:
        yield Wire(sock)


def bare_connection(proc: ServerProcess) -> redis.Connection:
    """A redis-py connection that has not authenticated (RESP2; no CLIENT SETINFO, which the
    server refuses before AUTH like Redis does)."""
    host, port = resp_address(proc)
    conn = redis.Connection(host=host, port=port, protocol=2, decode_responses=True,
                            driver_info=None, socket_timeout=10)
    conn.connect()
    return conn


def call(conn: redis.Connection, *argv: Any) -> Any:
    conn.send_command(*argv)
    return conn.read_response()


def subscribe(api: httpx.Client, watcher: str, *targets: str) -> None:
    """``watcher`` follows ``targets`` (RongCloud form; the shared server has no app key)."""
    r = api.post("/user/subscribe/set.json", data={
        "userId": watcher, "subUserIds": ",".join(targets), "opType": "0", "expiry": "3600"})
    assert r.status_code == 200 and r.json() == {"code": 200}, r.text


# -- every command, RESP2 and RESP3 ------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_every_command_and_its_reply_shape(shared_server: ServerProcess, api: httpx.Client,
                                           protocol: int) -> None:
    with connect(shared_server, protocol=protocol) as c:
        x = c.execute_command
        g, tmp = new_id("g"), new_id("t")
        a, b, d, s = new_id("a"), new_id("b"), new_id("d"), new_id("s")

        assert x("CHANNEL.GET", g, 2) is None
        assert x("CHANNEL.SET", g, 2, "ALLOW_STRANGER", 1, "LARGE", 1) == "OK"
        got = x("CHANNEL.GET", g, 2)
        assert isinstance(got, dict if protocol == 3 else list), got
        ch = as_map(got)
        assert set(ch) == INFO_KEYS
        assert ch["channel_id"] == g and ch["channel_type"] == 2
        assert (ch["ban"], ch["disband"], ch["send_ban"], ch["allow_stranger"],
                ch["large"]) == (0, 0, 0, 1, 1)
        assert all(type(ch[k]) is int for k in INFO_KEYS - {"channel_id"}), ch
        assert ch == info(api, g, 2)  # the HTTP twin says the same

        # subscribers
        assert x("SUB.ADD", g, 2, a, b, d) == "OK"
        assert x("SUB.LIST", g, 2) == [None, [a, b, d]]
        first = x("SUB.LIST", g, 2, "COUNT", 2)
        assert first == [b, [a, b]]
        assert x("SUB.LIST", g, 2, "CURSOR", first[0], "COUNT", 2) == [None, [d]]
        assert x("SUB.REM", g, 2, b) == "OK"
        assert x("SUB.SET", g, 2, s, a) == "OK"
        assert x("SUB.LIST", g, 2) == [None, sorted([a, s])]
        assert x("SUB.CLEAR", g, 2) == "OK"
        assert x("SUB.LIST", g, 2) == [None, []]
        assert x("SUB.SET", g, 2, a, b) == "OK"

        # whitelist and blacklist: the same five commands
        for prefix in ("WL", "BL"):
            assert x(f"{prefix}.ADD", g, 2, b, a) == "OK"
            assert x(f"{prefix}.LIST", g, 2) == [a, b]
            assert x(f"{prefix}.REM", g, 2, a) == "OK"
            assert x(f"{prefix}.LIST", g, 2) == [b]
            assert x(f"{prefix}.SET", g, 2, d, s) == "OK"
            assert x(f"{prefix}.LIST", g, 2) == [d, s]
            assert x(f"{prefix}.SET", g, 2) == "OK"  # no uid: clears
            assert x(f"{prefix}.LIST", g, 2) == []
            assert x(f"{prefix}.ADD", g, 2, d) == "OK"
            assert x(f"{prefix}.CLEAR", g, 2) == "OK"
            assert x(f"{prefix}.LIST", g, 2) == []
        assert x("BL.ADD", g, 2, b) == "OK"
        assert x("WL.ADD", g, 2, a) == "OK"

        # the decision
        assert x("CHECK", a, g, 2) == 1
        assert x("CHECK", b, g, 2) == 4
        assert x("CHECK", d, g, 2) == 3
        assert x("CHECK", a, new_id("missing"), 2) == 5
        assert x("CHECKM", a, g, 2, b, g, 2, d, g, 2, s, g, 2) == [1, 4, 3, 3]
        assert x("CHANNEL.SET", g, 2, "SEND_BAN", 1) == "OK"
        assert x("CHECKM", a, g, 2) == [1]
        assert x("CHANNEL.SET", g, 2, "BAN", 1, "DISBAND", 0) == "OK"
        assert x("CHECK", a, g, 2) == 19
        assert x("CHANNEL.SET", g, 2, "DISBAND", 1) == "OK"
        assert x("CHECK", a, g, 2) == 24
        ch = as_map(x("CHANNEL.GET", g, 2))
        assert (ch["ban"], ch["disband"], ch["send_ban"], ch["subscriber_count"],
                ch["whitelist_count"], ch["blacklist_count"]) == (1, 1, 1, 2, 1, 1)

        # temporary channels and system accounts
        assert x("TMP.SET", tmp, a, b, "TTL", 600) == "OK"
        assert x("SUB.LIST", tmp, 8) == [None, [a, b]]
        assert x("CHECKM", a, tmp, 8, d, tmp, 8) == [1, 3]
        assert x("SYS.ADD", d, s) == "OK"
        assert {d, s} <= set(x("SYS.LIST"))
        assert x("CHECK", d, tmp, 8) == 1
        assert x("SYS.REM", d, s) == "OK"
        assert not {d, s} & set(x("SYS.LIST"))

        # presence
        assert x("PRESENCE.SET", a, 0, 1, "SESSION", "s-1", "OS", "iOS", "IP", "10.0.0.7") == "OK"
        assert x("PRESENCE.SET", a, 2, 1) == "OK"
        assert x("PRESENCE.GET", a, b, a) == [[0, 2], [], [0, 2]]
        assert x("PRESENCE.SET", a, 0, 0) == "OK"
        assert x("PRESENCE.GET", a) == [[2]]
        assert x("PRESENCE.SET", a, 2, 0) == "OK"
        assert x("PRESENCE.GET", a) == [[]]

        # events: without BLOCK an empty array, with BLOCK and nothing new a nil
        assert x("EVENTS.READ", "$") == []
        assert x("EVENTS.READ", "$", "COUNT", 5, "BLOCK", 10) is None

        # delete
        assert x("CHANNEL.DEL", g, 2) == "OK"
        assert x("CHANNEL.GET", g, 2) is None
        assert x("CHANNEL.DEL", g, 2) == "OK"  # a missing channel: no-op
        assert info(api, g, 2) is None
        assert x("CHECK", a, g, 2) == 5


@pytest.mark.parametrize("protocol", [2, 3])
def test_reply_bytes_per_protocol(shared_server: ServerProcess, protocol: int) -> None:
    """The exact reply types on the wire: maps vs flat arrays, ``_`` vs ``$-1``, verbatim INFO."""
    g = new_id("g")
    with raw_socket(shared_server) as sock:
        w = Wire(sock)
        assert w.call("AUTH", TOKEN) == Simple("OK")
        hello = w.call("HELLO", protocol)
        if protocol == 3:
            assert isinstance(hello, dict) and hello["proto"] == 3
        else:
            assert isinstance(hello, list) and as_map(hello)["proto"] == 2
        assert w.call("CHANNEL.SET", g, 2) == Simple("OK")
        assert isinstance(w.call("CHANNEL.GET", g, 2), dict if protocol == 3 else list)
        w.send("CHANNEL.GET", new_id("nope"), 2)
        assert w._line() == (b"_" if protocol == 3 else b"$-1")
        w.send("EVENTS.READ", "$", "BLOCK", 1)
        assert w._line() == (b"_" if protocol == 3 else b"$-1")
        assert w.call("SUB.LIST", g, 2) == [None, []]
        text = w.call("INFO", "persistence")
        if protocol == 3:
            assert text[:2] == ("verbatim", "txt") and "# Persistence" in text[2]
        else:
            assert isinstance(text, str) and text.startswith("# Persistence\r\n")
        assert w.call("CLIENT", "GETNAME") is None
        assert w.call("COMMAND", "DOCS") == ({} if protocol == 3 else [])
        assert w.call("PING", "x") == "x" and w.call("PING") == Simple("PONG")


# -- pipelines ---------------------------------------------------------------------------------


def test_pipeline_mixes_writes_reads_and_failures(r: redis.Redis, api: httpx.Client) -> None:
    g, missing = new_id("g"), new_id("missing")
    a, b = new_id("a"), new_id("b")
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("CHANNEL.SET", g, 2, "LARGE", 1)
    pipe.execute_command("SUB.ADD", g, 2, a, b)
    pipe.execute_command("CHECK", a, g, 2)  # sees the SUB.ADD before it
    pipe.execute_command("WL.ADD", missing, 2, a)  # fails alone
    pipe.execute_command("WL.SET", g, 2, a)
    pipe.execute_command("CHECKM", a, g, 2, b, g, 2)
    pipe.execute_command("SUB.ADD", g, 2)  # wrong arity, answered in its place
    pipe.execute_command("BL.ADD", g, 2, a)
    pipe.execute_command("CHECK", a, g, 2)
    pipe.execute_command("CHANNEL.GET", g, 2)
    pipe.execute_command("WL.LIST", missing, 2)
    pipe.execute_command("SUB.LIST", g, 2)
    replies = pipe.execute(raise_on_error=False)
    assert len(replies) == 12
    assert replies[:3] == ["OK", "OK", 1]
    assert isinstance(replies[3], redis.ResponseError)
    assert code_of(replies[3]) == "channel_not_found" and missing in str(replies[3])
    assert replies[4:6] == ["OK", [1, 13]]
    assert isinstance(replies[6], redis.ResponseError)
    assert str(replies[6]) == "wrong number of arguments for 'sub.add' command"
    assert replies[7:9] == ["OK", 4]
    ch = as_map(replies[9])
    assert (ch["large"], ch["subscriber_count"], ch["whitelist_count"],
            ch["blacklist_count"]) == (1, 2, 1, 1)
    assert isinstance(replies[10], redis.ResponseError)
    assert code_of(replies[10]) == "channel_not_found"
    assert replies[11] == [None, sorted([a, b])]
    # and the failures changed nothing: the missing channel is still missing
    assert info(api, missing, 2) is None
    assert get_list(api, "whitelist", g, 2) == [a]
    assert get_list(api, "blacklist", g, 2) == [a]


def test_long_pipeline_of_writes_is_all_durable(r: redis.Redis, api: httpx.Client) -> None:
    g = new_id("g")
    uids = [f"{g}_{i:04d}" for i in range(1500)]
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("CHANNEL.SET", g, 3)
    for uid in uids:
        pipe.execute_command("SUB.ADD", g, 3, uid)
    pipe.execute_command("SUB.LIST", g, 3, "COUNT", 10000)
    replies = pipe.execute()
    assert replies[:-1] == ["OK"] * (len(uids) + 1)
    assert replies[-1] == [None, uids]
    assert subscribers(api, g, 3) == uids


# -- redis.asyncio -------------------------------------------------------------------------------


def test_asyncio_clients_pipeline_concurrently(shared_server: ServerProcess,
                                               api: httpx.Client) -> None:
    """Several asyncio connections pipelining writes at once (pytest runs trio, so the asyncio
    client gets an event loop of its own)."""
    g = new_id("g")
    writers, per = 5, 60
    host, port = resp_address(shared_server)

    async def main() -> list[list[Any]]:
        clients = [redis.asyncio.Redis(host=host, port=port, password=TOKEN, protocol=proto,
                                       decode_responses=True, socket_timeout=30)
                   for proto in (2, 3, 2, 3, 2)[:writers]]

        async def write(k: int, c: redis.asyncio.Redis) -> list[Any]:
            pipe = c.pipeline(transaction=False)
            for i in range(per):
                uid = f"{g}_w{k}_{i:03d}"
                pipe.execute_command("SUB.ADD", g, 2, uid)
                if i % 10 == 0:
                    pipe.execute_command("WL.ADD", g, 2, uid)
                pipe.execute_command("CHECK", uid, g, 2)
            pipe.execute_command("SUB.LIST", g, 2, "COUNT", 10000)
            result: list[Any] = await pipe.execute()
            return result

        try:
            return await asyncio.wait_for(
                asyncio.gather(*(write(k, c) for k, c in enumerate(clients))), 30)
        finally:
            for c in clients:
                await c.aclose()

    results = asyncio.run(main())
    every = {f"{g}_w{k}_{i:03d}" for k in range(writers) for i in range(per)}
    listed = {f"{g}_w{k}_{i:03d}" for k in range(writers) for i in range(0, per, 10)}
    for k, replies in enumerate(results):
        *writes, page = replies
        assert all(w == "OK" or type(w) is int for w in writes), writes
        # each writer's own subscribers are in the page it read after them
        assert page[0] is None and {f"{g}_w{k}_{i:03d}" for i in range(per)} <= set(page[1])
        checks = [w for w in writes if type(w) is int]
        assert len(checks) == per and set(checks) <= {1, 13}
    assert set(subscribers(api, g, 2)) == every
    assert set(get_list(api, "whitelist", g, 2)) == listed
    results_http = api.post("/permission/check_batch", json={"checks": [
        {"from_uid": uid, "channel_id": g, "channel_type": 2} for uid in sorted(every)]})
    assert [x["reason"] for x in results_http.json()["results"]] == [1 if uid in listed else 13
                                              for uid in sorted(every)]


# -- the same error codes as HTTP ------------------------------------------------------------

LONG = "x" * 65
#: name -> (RESP argv, HTTP twin (method, path, body or query), the code both must answer).
#: ``{g}`` is an existing group channel, ``{m}`` a missing one, ``{u}`` a fresh uid.
BAD: dict[str, tuple[list[str], tuple[str, str, Any], str]] = {
    "cid_blank": (["CHANNEL.SET", "   ", "2"],
                  ("POST", "/channel/info", {"channel_id": "   ", "channel_type": 2}),
                  "channel_id_empty"),
    "cid_at": (["CHANNEL.SET", "a@b", "2"],
               ("POST", "/channel/info", {"channel_id": "a@b", "channel_type": 2}),
               "channel_id_special_char"),
    "cid_hash": (["WL.ADD", "a#b", "2", "{u}"],
                 ("POST", "/channel/whitelist_add",
                  {"channel_id": "a#b", "channel_type": 2, "uids": ["{u}"]}),
                 "channel_id_special_char"),
    "cid_amp": (["SUB.ADD", "a&b", "2", "{u}"],
                ("POST", "/channel/subscriber_add",
                 {"channel_id": "a&b", "channel_type": 2, "subscribers": ["{u}"]}),
                "channel_id_special_char"),
    "cid_space": (["BL.SET", "a b", "2", "{u}"],
                  ("POST", "/channel/blacklist_set",
                   {"channel_id": "a b", "channel_type": 2, "uids": ["{u}"]}),
                  "channel_id_special_char"),
    "cid_tab": (["CHANNEL.GET", "a\tb", "2"],
                ("GET", "/channel/info", {"channel_id": "a\tb", "channel_type": 2}),
                "channel_id_special_char"),
    "cid_65": (["CHANNEL.SET", LONG, "2"],
               ("POST", "/channel/info", {"channel_id": LONG, "channel_type": 2}),
               "channel_id_too_long"),
    "cid_65_tmp": (["TMP.SET", LONG, "{u}"],
                   ("POST", "/tmpchannel/subscriber_set", {"channel_id": LONG, "uids": ["{u}"]}),
                   "channel_id_too_long"),
    "type_0": (["CHANNEL.SET", "{g}", "0"],
               ("POST", "/channel/info", {"channel_id": "{g}", "channel_type": 0}),
               "channel_type_invalid"),
    "type_256": (["WL.SET", "{g}", "256", "{u}"],
                 ("POST", "/channel/whitelist_set",
                  {"channel_id": "{g}", "channel_type": 256, "uids": ["{u}"]}),
                 "channel_type_invalid"),
    "type_abc": (["CHANNEL.SET", "{g}", "abc"],
                 ("POST", "/channel/info", {"channel_id": "{g}", "channel_type": "abc"}),
                 "field_type"),
    "type_abc_query": (["SUB.LIST", "{g}", "abc"],
                       ("GET", "/channel/subscribers", {"channel_id": "{g}",
                                                         "channel_type": "abc"}),
                       "field_type"),
    "flag_2": (["CHANNEL.SET", "{g}", "2", "BAN", "2"],
               ("POST", "/channel/info", {"channel_id": "{g}", "channel_type": 2, "ban": 2}),
               "flag_invalid"),
    "flag_2_large": (["CHANNEL.SET", "{g}", "2", "DISBAND", "0", "LARGE", "2"],
                     ("POST", "/channel/info",
                      {"channel_id": "{g}", "channel_type": 2, "disband": 0, "large": 2}),
                     "flag_invalid"),
    "uid_at": (["SUB.ADD", "{g}", "2", "{u}", "u@x"],
               ("POST", "/channel/subscriber_add",
                {"channel_id": "{g}", "channel_type": 2, "subscribers": ["{u}", "u@x"]}),
               "uid_invalid"),
    "uid_blank": (["WL.ADD", "{g}", "2", "  "],
                  ("POST", "/channel/whitelist_add",
                   {"channel_id": "{g}", "channel_type": 2, "uids": ["  "]}),
                  "uid_invalid"),
    "uid_65": (["BL.ADD", "{g}", "2", LONG],
               ("POST", "/channel/blacklist_add",
                {"channel_id": "{g}", "channel_type": 2, "uids": [LONG]}),
               "uid_invalid"),
    "uid_newline": (["SYS.ADD", "a\nb"],
                    ("POST", "/user/systemuids_add", {"uids": ["a\nb"]}), "uid_invalid"),
    "uid_hash_tmp": (["TMP.SET", "{m}", "{u}", "#x"],
                     ("POST", "/tmpchannel/subscriber_set",
                      {"channel_id": "{m}", "uids": ["{u}", "#x"]}), "uid_invalid"),
    "cursor_bad": (["SUB.LIST", "{g}", "2", "CURSOR", "a&b"],
                   ("GET", "/channel/subscribers",
                    {"channel_id": "{g}", "channel_type": 2, "cursor": "a&b"}), "uid_invalid"),
    "count_0": (["SUB.LIST", "{g}", "2", "COUNT", "0"],
                ("GET", "/channel/subscribers",
                 {"channel_id": "{g}", "channel_type": 2, "limit": 0}), "value_out_of_range"),
    "ttl_59": (["TMP.SET", "{m}", "{u}", "TTL", "59"],
               ("POST", "/tmpchannel/subscriber_set",
                {"channel_id": "{m}", "uids": ["{u}"], "ttl": 59}), "value_out_of_range"),
    "ttl_abc": (["TMP.SET", "{m}", "{u}", "TTL", "abc"],
                ("POST", "/tmpchannel/subscriber_set",
                 {"channel_id": "{m}", "uids": ["{u}"], "ttl": "abc"}), "field_type"),
    "person_sub_add": (["SUB.ADD", "{u}", "1", "{g}"],
                       ("POST", "/channel/subscriber_add",
                        {"channel_id": "{u}", "channel_type": 1, "subscribers": ["{g}"]}),
                       "person_channel_unsupported"),
    "person_sub_set": (["SUB.SET", "{u}", "1", "{g}"],
                       ("POST", "/channel/subscriber_add", {"channel_id": "{u}", "channel_type": 1,
                                                            "subscribers": ["{g}"], "reset": 1}),
                       "person_channel_unsupported"),
    "person_sub_list": (["SUB.LIST", "{u}", "1"],
                        ("GET", "/channel/subscribers", {"channel_id": "{u}", "channel_type": 1}),
                        "person_channel_unsupported"),
    "person_sub_clear": (["SUB.CLEAR", "{u}", "1"],
                         ("POST", "/channel/subscriber_remove_all",
                          {"channel_id": "{u}", "channel_type": 1}),
                         "person_channel_unsupported"),
    "temp_create": (["CHANNEL.SET", "{m}", "8", "BAN", "1"],
                    ("POST", "/channel/info", {"channel_id": "{m}", "channel_type": 8, "ban": 1}),
                    "temp_channel_unsupported"),
    "temp_sub_add": (["SUB.ADD", "{m}", "8", "{u}"],
                     ("POST", "/channel/subscriber_add",
                      {"channel_id": "{m}", "channel_type": 8, "subscribers": ["{u}"]}),
                     "temp_channel_unsupported"),
    "missing_wl_add": (["WL.ADD", "{m}", "2", "{u}"],
                       ("POST", "/channel/whitelist_add",
                        {"channel_id": "{m}", "channel_type": 2, "uids": ["{u}"]}),
                       "channel_not_found"),
    "missing_bl_set_empty": (["BL.SET", "{m}", "3"],
                             ("POST", "/channel/blacklist_set",
                              {"channel_id": "{m}", "channel_type": 3, "uids": []}),
                             "channel_not_found"),
    "missing_wl_clear": (["WL.CLEAR", "{m}", "2"],
                         ("POST", "/channel/whitelist_remove_all",
                          {"channel_id": "{m}", "channel_type": 2}), "channel_not_found"),
    "missing_bl_rem": (["BL.REM", "{m}", "9", "{u}"],
                       ("POST", "/channel/blacklist_remove",
                        {"channel_id": "{m}", "channel_type": 9, "uids": ["{u}"]}),
                       "channel_not_found"),
    "missing_sub_rem": (["SUB.REM", "{m}", "2", "{u}"],
                        ("POST", "/channel/subscriber_remove",
                         {"channel_id": "{m}", "channel_type": 2, "subscribers": ["{u}"]}),
                        "channel_not_found"),
    "missing_sub_clear": (["SUB.CLEAR", "{m}", "2"],
                          ("POST", "/channel/subscriber_remove_all",
                           {"channel_id": "{m}", "channel_type": 2}), "channel_not_found"),
    "missing_sub_list": (["SUB.LIST", "{m}", "2"],
                         ("GET", "/channel/subscribers", {"channel_id": "{m}", "channel_type": 2}),
                         "channel_not_found"),
    "missing_wl_list": (["WL.LIST", "{m}", "4"],
                        ("GET", "/channel/whitelist", {"channel_id": "{m}", "channel_type": 4}),
                        "channel_not_found"),
    "missing_tmp_wl": (["WL.ADD", "{m}", "8", "{u}"],
                       ("POST", "/channel/whitelist_add",
                        {"channel_id": "{m}", "channel_type": 8, "uids": ["{u}"]}),
                       "channel_not_found"),
    "check_uid": (["CHECK", "a@b", "{g}", "2"],
                  ("POST", "/permission/check",
                   {"from_uid": "a@b", "channel_id": "{g}", "channel_type": 2}), "uid_invalid"),
    "check_cid_empty": (["CHECK", "{u}", "", "2"],
                        ("POST", "/permission/check",
                         {"from_uid": "{u}", "channel_id": "", "channel_type": 2}),
                        "channel_id_empty"),
    "check_type_0": (["CHECK", "{u}", "{g}", "0"],
                     ("POST", "/permission/check",
                      {"from_uid": "{u}", "channel_id": "{g}", "channel_type": 0}),
                     "channel_type_invalid"),
    "checkm_second_bad": (["CHECKM", "{u}", "{g}", "2", "{u}", "g#1", "2"],
                          ("POST", "/permission/check_batch", {"checks": [
                              {"from_uid": "{u}", "channel_id": "{g}", "channel_type": 2},
                              {"from_uid": "{u}", "channel_id": "g#1", "channel_type": 2}]}),
                          "channel_id_special_char"),
    "checkm_type_256": (["CHECKM", "{u}", "{g}", "256"],
                        ("POST", "/permission/check_batch", {"checks": [
                            {"from_uid": "{u}", "channel_id": "{g}", "channel_type": 256}]}),
                        "channel_type_invalid"),
    "presence_device_3": (["PRESENCE.SET", "{u}", "3", "1"],
                          ("POST", "/user/presence", {"uid": "{u}", "device_flag": 3,
                                                      "online": 1}),
                          "value_out_of_range"),
    "presence_online_2": (["PRESENCE.SET", "{u}", "0", "2"],
                          ("POST", "/user/presence", {"uid": "{u}", "device_flag": 0,
                                                      "online": 2}),
                          "flag_invalid"),
    "presence_uid": (["PRESENCE.SET", "u&1", "0", "1"],
                     ("POST", "/user/presence", {"uid": "u&1", "device_flag": 0, "online": 1}),
                     "uid_invalid"),
    "presence_os_long": (["PRESENCE.SET", "{u}", "0", "1", "OS", "o" * 33],
                         ("POST", "/user/presence", {"uid": "{u}", "device_flag": 0, "online": 1,
                                                     "os": "o" * 33}),
                         "value_out_of_range"),
    "presence_get_uid": (["PRESENCE.GET", "{u}", "a b"],
                         ("POST", "/user/onlinestatus", ["{u}", "a b"]), "uid_invalid"),
}


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, name in names.items():
            value = value.replace("{" + key + "}", name)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def base_group(api: httpx.Client) -> str:
    """An existing group with a member, a whitelist and a blacklist (must never change)."""
    g = new_id("base")
    ok(api, "/channel", {"channel_id": g, "channel_type": 2, "send_ban": 1,
                         "subscribers": ["m1", "m2"]})
    ok(api, "/channel/whitelist_set", {"channel_id": g, "channel_type": 2, "uids": ["m1"]})
    ok(api, "/channel/blacklist_set", {"channel_id": g, "channel_type": 2, "uids": ["m3"]})
    return g


@pytest.mark.parametrize("case", sorted(BAD))
def test_validation_errors_match_http(r: redis.Redis, api: httpx.Client, base_group: str,
                                      case: str) -> None:
    argv, (method, path, payload), want = BAD[case]
    names = {"g": base_group, "m": new_id("m"), "u": new_id("u")}
    argv, payload = _fill(argv, names), _fill(payload, names)
    before_lsn, before = lsn(api), snapshot(api, base_group, 2)

    with pytest.raises(redis.ResponseError) as raised:
        r.execute_command(*argv)
    http = api.get(path, params=payload) if method == "GET" else api.post(path, json=payload)
    assert http.status_code in (400, 404), http.text
    body = http.json()
    assert code_of(raised.value) == body["code"] == want, (str(raised.value), body)
    if want != "field_type":  # (text arguments have no JSON type to name)
        # the message after the code is the HTTP message
        assert str(raised.value) == f"{body['code']} {body['msg']}"
    # nothing was logged, nothing changed
    assert lsn(api) == before_lsn
    assert snapshot(api, base_group, 2) == before
    assert info(api, names["m"], 2) is None and info(api, names["m"], 8) is None


@pytest.mark.parametrize(("argv", "http"), [
    (["SUB.ADD", "{g}", "2"], ("/channel/subscriber_add",
                               {"channel_id": "{g}", "channel_type": 2, "subscribers": []})),
    (["SUB.REM", "{g}", "2"], ("/channel/subscriber_remove",
                               {"channel_id": "{g}", "channel_type": 2, "subscribers": []})),
    (["WL.ADD", "{g}", "2"], ("/channel/whitelist_add",
                              {"channel_id": "{g}", "channel_type": 2, "uids": []})),
    (["BL.REM", "{g}", "2"], ("/channel/blacklist_remove",
                              {"channel_id": "{g}", "channel_type": 2, "uids": []})),
    (["TMP.SET", "{m}"], ("/tmpchannel/subscriber_set", {"channel_id": "{m}", "uids": []})),
    (["SYS.ADD"], ("/user/systemuids_add", {"uids": []})),
    (["SYS.REM"], ("/user/systemuids_remove", {"uids": []})),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_empty_uid_lists(r: redis.Redis, api: httpx.Client, base_group: str, argv: list[str],
                         http: tuple[str, dict[str, Any]]) -> None:
    """An empty list cannot be spelt over RESP: where HTTP answers ``uids_empty`` the RESP twin
    is a wrong-arity error (Redis's way), and neither changes anything."""
    names = {"g": base_group, "m": new_id("m")}
    argv, body = _fill(argv, names), _fill(http[1], names)
    before_lsn, before = lsn(api), snapshot(api, base_group, 2)
    with pytest.raises(redis.ResponseError) as raised:
        r.execute_command(*argv)
    assert str(raised.value) == f"wrong number of arguments for '{argv[0].lower()}' command"
    answer = api.post(http[0], json=body)
    assert answer.status_code == 400 and answer.json()["code"] == "uids_empty", answer.text
    assert lsn(api) == before_lsn and snapshot(api, base_group, 2) == before


def test_sub_add_type_0_means_group_on_both(r: redis.Redis, api: httpx.Client) -> None:
    """``channel_type`` 0 on subscriber_add is WuKongIM's "group": the RESP twin agrees."""
    g1, g2, u = new_id("g"), new_id("g"), new_id("u")
    assert r.execute_command("SUB.ADD", g1, 0, u) == "OK"
    ok(api, "/channel/subscriber_add", {"channel_id": g2, "channel_type": 0, "subscribers": [u]})
    for g in (g1, g2):
        assert subscribers(api, g, 2) == [u]
        assert r.execute_command("SUB.LIST", g, 2) == [None, [u]]


# -- a change over one protocol is visible over the other ----------------------------------------


def test_lists_cross_protocol(r: redis.Redis, api: httpx.Client) -> None:
    g, a, b, c = new_id("g"), new_id("a"), new_id("b"), new_id("c")
    assert r.execute_command("CHANNEL.SET", g, 5) == "OK"
    assert r.execute_command("WL.SET", g, 5, b, a) == "OK"
    assert get_list(api, "whitelist", g, 5) == sorted([a, b])
    ok(api, "/channel/whitelist_remove", {"channel_id": g, "channel_type": 5, "uids": [a]})
    ok(api, "/channel/blacklist_add", {"channel_id": g, "channel_type": 5, "uids": [c, a]})
    assert r.execute_command("WL.LIST", g, 5) == [b]
    assert r.execute_command("BL.LIST", g, 5) == sorted([a, c])
    assert r.execute_command("BL.CLEAR", g, 5) == "OK"
    assert get_list(api, "blacklist", g, 5) == []
    # person channel lists (friends only / blocked), no record needed first
    p = new_id("p")
    assert r.execute_command("WL.LIST", p, 1) == []
    assert r.execute_command("WL.ADD", p, 1, a) == "OK"
    assert get_list(api, "whitelist", p, 1) == [a]
    ok(api, "/channel/blacklist_set", {"channel_id": p, "channel_type": 1, "uids": [c]})
    assert r.execute_command("BL.LIST", p, 1) == [c]
    assert r.execute_command("CHECKM", a, p, 1, b, p, 1, c, p, 1) == [1, 13, 4]


def test_flags_cross_protocol(r3: redis.Redis, api: httpx.Client) -> None:
    g = new_id("g")
    assert r3.execute_command("CHANNEL.SET", g, 2, "BAN", 1, "ALLOW_STRANGER", 1) == "OK"
    data = info(api, g, 2)
    assert data is not None and (data["ban"], data["allow_stranger"], data["large"]) == (1, 1, 0)
    ok(api, "/channel/info", {"channel_id": g, "channel_type": 2, "ban": 0, "send_ban": 1})
    got = r3.execute_command("CHANNEL.GET", g, 2)
    assert (got["ban"], got["send_ban"], got["allow_stranger"]) == (0, 1, 1)
    assert got["updated_at"] >= data["updated_at"] and got["created_at"] == data["created_at"]
    ok(api, "/channel/delete", {"channel_id": g, "channel_type": 2})
    assert r3.execute_command("CHANNEL.GET", g, 2) is None


def test_subscribers_cross_protocol(r: redis.Redis, api: httpx.Client) -> None:
    g, a, b, c = new_id("g"), new_id("a"), new_id("b"), new_id("c")
    assert r.execute_command("SUB.ADD", g, 2, a, b) == "OK"
    assert subscribers(api, g, 2) == sorted([a, b])
    ok(api, "/channel/subscriber_remove", {"channel_id": g, "channel_type": 2,
                                           "subscribers": [a]})
    ok(api, "/channel/subscriber_add", {"channel_id": g, "channel_type": 2, "subscribers": [c]})
    assert r.execute_command("SUB.LIST", g, 2) == [None, sorted([b, c])]
    assert r.execute_command("CHECKM", a, g, 2, b, g, 2) == [3, 1]
    assert r.execute_command("SUB.SET", g, 2) == "OK"  # no uid: empties, like reset=1 with []
    assert subscribers(api, g, 2) == []
    assert info(api, g, 2) is not None  # the channel stays


def test_system_uids_cross_protocol(r: redis.Redis, api: httpx.Client) -> None:
    a, b = new_id("sys"), new_id("sys")
    g = new_id("g")
    ok(api, "/channel", {"channel_id": g, "channel_type": 2, "ban": 1})
    try:
        assert r.execute_command("SYS.ADD", a) == "OK"
        assert a in system_uids(api)
        ok(api, "/user/systemuids_add", {"uids": [b]})
        assert {a, b} <= set(r.execute_command("SYS.LIST"))
        assert r.execute_command("CHECKM", a, g, 2, b, g, 2) == [1, 1]  # outrank ban
        ok(api, "/user/systemuids_remove", {"uids": [a]})
        assert r.execute_command("SYS.REM", b) == "OK"
        assert not {a, b} & set(r.execute_command("SYS.LIST"))
        assert not {a, b} & set(system_uids(api))
        assert r.execute_command("CHECKM", a, g, 2, b, g, 2) == [19, 19]
    finally:
        ok(api, "/user/systemuids_remove", {"uids": [a, b]})


def test_temp_channels_cross_protocol(r: redis.Redis, api: httpx.Client) -> None:
    t1, t2, a, b = new_id("t"), new_id("t"), new_id("a"), new_id("b")
    assert r.execute_command("TMP.SET", t1, a, b) == "OK"
    assert subscribers(api, t1, 8) == sorted([a, b])
    assert api.post("/permission/check", json={"from_uid": a, "channel_id": t1,
                                               "channel_type": 8}).json()["reason"] == 1
    data = info(api, t1, 8)
    assert data is not None and data["channel_type"] == 8
    ok(api, "/tmpchannel/subscriber_set", {"channel_id": t2, "uids": [b], "ttl": 120})
    assert r.execute_command("SUB.LIST", t2, 8) == [None, [b]]
    assert r.execute_command("CHECKM", a, t2, 8, b, t2, 8) == [3, 1]
    # a later TMP.SET replaces the set
    assert r.execute_command("TMP.SET", t2, a, "TTL", 60) == "OK"
    assert subscribers(api, t2, 8) == [a]
    # an existing temporary channel takes flags and lists like a group
    assert r.execute_command("CHANNEL.SET", t2, 8, "SEND_BAN", 1) == "OK"
    assert r.execute_command("CHECK", a, t2, 8) == 25
    ok(api, "/channel/whitelist_add", {"channel_id": t2, "channel_type": 8, "uids": [a]})
    assert r.execute_command("CHECK", a, t2, 8) == 1


def test_presence_cross_protocol(r: redis.Redis, api: httpx.Client) -> None:
    a, b = new_id("a"), new_id("b")
    assert r.execute_command("PRESENCE.SET", a, 1, 1) == "OK"
    assert api.post("/user/onlinestatus", json=[a, b]).json() == [
        {"uid": a, "device_flag": 1, "online": 1}]
    ok(api, "/user/presence", {"uid": b, "device_flag": 2, "online": 1})
    ok(api, "/user/presence_batch", {"events": [{"uid": a, "device_flag": 0, "online": 1},
                                                {"uid": a, "device_flag": 1, "online": 0}]})
    assert r.execute_command("PRESENCE.GET", b, a) == [[2], [0]]
    assert r.execute_command("PRESENCE.SET", b, 2, 0) == "OK"
    assert api.post("/user/onlinestatus", json=[a, b]).json() == [
        {"uid": a, "device_flag": 0, "online": 1}]
    checked = api.post("/user/checkOnline.json", data={"userId": b})
    assert checked.json() == {"code": 200, "status": "0"}


# -- auth ----------------------------------------------------------------------------------------


def test_noauth_until_auth(shared_server: ServerProcess, api: httpx.Client) -> None:
    g = new_id("g")
    conn = bare_connection(shared_server)
    try:
        before = lsn(api)
        assert call(conn, "PING") == "PONG"
        for argv in (["CHANNEL.SET", g, 2], ["CHECK", "a", g, 2], ["SUB.ADD", g, 2, "u"],
                     ["EVENTS.READ", "$", "BLOCK", 10], ["INFO"], ["SELECT", 0],
                     ["HELLO", 3], ["ECHO", "x"]):
            with pytest.raises(redis.AuthenticationError) as raised:
                call(conn, *argv)
            assert "uthenticat" in str(raised.value), raised.value
        assert lsn(api) == before and info(api, g, 2) is None
        with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            call(conn, "AUTH", "not-the-token")
        with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            call(conn, "AUTH", "admin", TOKEN)  # only the default user
        with pytest.raises(redis.AuthenticationError):
            call(conn, "CHANNEL.SET", g, 2)
        assert call(conn, "AUTH", "default", TOKEN) == "OK"
        assert call(conn, "CHANNEL.SET", g, 2) == "OK"
        assert info(api, g, 2) is not None
    finally:
        conn.disconnect()


def test_no_events_read_before_auth_even_after_a_large_output(
        shared_server: ServerProcess) -> None:
    """Unknown commands are answered before AUTH (as in Redis); enough of them in one chunk make
    more than 1 MiB of replies, which the server flushes mid-chunk. The ``EVENTS.READ`` right
    after them must still be refused with NOAUTH. (It once was not: the command after a
    mid-chunk flush skipped the auth check.)"""
    refusal = b"-ERR unknown command 'X'\r\n"
    n = 1024 * 1024 // len(refusal) + 1  # the n-th refusal crosses the 1 MiB flush threshold
    answers = []
    for _ in range(3):  # (one chunk is what a loopback send of ~120 KB arrives as)
        with raw_socket(shared_server) as sock:
            sock.sendall(b"X\r\n" * n + b"EVENTS.READ $\r\n")
            w = Wire(sock)
            assert all(w.reply() == Err(refusal[1:-2].decode()) for _ in range(n))
            answers.append(w.reply())
    assert answers == [Err("NOAUTH Authentication required.")] * 3, answers


def test_refused_hello_changes_nothing(wire: Wire) -> None:
    # A HELLO refused with NOAUTH once still named the connection.
    refused = wire.call("HELLO", 3, "SETNAME", "sneaky")
    assert isinstance(refused, Err) and refused.startswith("NOAUTH"), refused
    assert wire.call("AUTH", TOKEN) == Simple("OK")
    assert wire.call("CLIENT", "GETNAME") is None  # still RESP2 and still unnamed


def test_unknown_command_before_auth(shared_server: ServerProcess) -> None:
    with raw_socket(shared_server) as sock:
        w = Wire(sock)
        assert w.call("NOSUCH", "x") == Err("ERR unknown command 'NOSUCH'")
        assert w.call("CHECK", "a", "b", "2") == Err("NOAUTH Authentication required.")
        assert w.call("AUTH", TOKEN) == Simple("OK")
        assert w.call("NOSUCH") == Err("ERR unknown command 'NOSUCH'")
        assert w.call("sub.add", "g") == Err("ERR wrong number of arguments for 'sub.add' "
                                             "command")


def test_hello_auth_and_password_clients(shared_server: ServerProcess) -> None:
    host, port = resp_address(shared_server)
    with raw_socket(shared_server) as sock:
        w = Wire(sock)
        refused = w.call("HELLO", 3, "AUTH", "default", "wrong")
        assert isinstance(refused, Err) and refused.startswith("WRONGPASS"), refused
        assert w.call("CHECK", "a", "b", "2") == Err("NOAUTH Authentication required.")
        hello = w.call("HELLO", 3, "AUTH", "default", TOKEN, "SETNAME", "gw-1")
        assert isinstance(hello, dict), hello  # a RESP3 map: the switch happened
        assert hello["proto"] == 3 and hello["server"] == "roster"
        assert isinstance(hello["id"], int) and hello["modules"] == []
        assert w.call("CLIENT", "GETNAME") == "gw-1"
        assert w.call("CHECK", "a", new_id("g"), "2") == 5
    # redis-py with password= (AUTH in RESP2, HELLO 3 AUTH in RESP3) and a wrong password
    for protocol in (2, 3):
        with connect(shared_server, protocol=protocol) as c:
            assert c.ping() is True
        with redis.Redis(host=host, port=port, password="wrong", protocol=protocol,
                         retry=Retry(NoBackoff(), 0), socket_timeout=10) as c, \
                pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            c.ping()
    with redis.Redis(host=host, port=port, username="default", password=TOKEN,
                     decode_responses=True, protocol=2) as c:
        assert c.execute_command("CHECK", "a", new_id("g"), 2) == 5


# -- housekeeping commands -----------------------------------------------------------------------


def test_housekeeping_commands(r: redis.Redis, r3: redis.Redis) -> None:
    assert r.echo("héllo") == "héllo"
    assert r.execute_command("SELECT", 0) is True
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 1)
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.execute_command("SELECT", "x")
    assert r.client_setname("gateway-7") is True
    assert r.client_getname() == "gateway-7"
    with pytest.raises(redis.ResponseError, match="cannot contain spaces"):
        r.client_setname("a b")
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "x") == "OK"
    ids = {r.client_id(), r3.client_id()}
    assert len(ids) == 2 and all(type(i) is int and i > 0 for i in ids)
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        r.execute_command("CLIENT", "KILL", "x")
    n = r.command_count()
    assert type(n) is int and n >= 37  # the table has 37 rows today
    assert r.execute_command("COMMAND DOCS") in ([], {})  # no documentation is served
    assert r3.execute_command("COMMAND DOCS") == {}
    assert r.command() == {}
    hello = as_map(r.execute_command("HELLO"))  # no protover: stays on RESP2
    assert hello["proto"] == 2 and hello["version"] and hello["mode"] == "standalone"
    assert r3.execute_command("HELLO")["proto"] == 3
    with pytest.raises(redis.ResponseError, match="unsupported protocol"):
        r.execute_command("HELLO", 4)
    assert r.ping() is True


def test_quit_closes_after_ok(wire: Wire) -> None:
    assert wire.call("AUTH", TOKEN) == Simple("OK")
    # commands after QUIT in the same chunk are not run
    wire.sock.sendall(pack("PING") + pack("QUIT") + pack("PING"))
    assert wire.reply() == Simple("PONG")
    assert wire.reply() == Simple("OK")
    assert wire.closed_by_peer()


def test_info_sections(shared_server: ServerProcess, r: redis.Redis, r3: redis.Redis,
                       api: httpx.Client) -> None:
    g = new_id("g")
    r.execute_command("SUB.ADD", g, 2, "a", "b")
    r.execute_command("CHECK", "a", g, 2)
    everything = r.info()
    for key in ("roster_version", "tcp_port", "connected_clients", "total_commands_processed",
                "lsn", "fsync", "channels"):
        assert key in everything, key
    # one version for the whole server: RESP INFO says what /health says
    assert str(everything["roster_version"]) == api.get("/health").json()["version"]
    server = r.info("server")
    assert server["redis_mode"] == "standalone"
    assert server["tcp_port"] == resp_address(shared_server)[1]
    clients = r.info("clients")
    assert clients["connected_clients"] >= 1 and clients["maxclients"] > 0
    stats = r3.info("stats")  # RESP3: a verbatim string, parsed the same
    assert stats["cmdstat_check"]["calls"] >= 1
    assert stats["cmdstat_sub.add"]["calls"] >= 1
    persistence = r.info("persistence")
    assert persistence["fsync"] == "always"
    assert persistence["lsn"] == persistence["durable_lsn"] == lsn(api)
    keyspace = r.info("keyspace")
    assert set(keyspace) == {"channels", "subscribers", "whitelist", "blacklist",
                             "system_uids", "online_users"}
    assert keyspace["channels"] >= 1 and keyspace["subscribers"] >= 2
    assert r.info("nosuchsection") == {}
    commandstats = r.info("commandstats")
    assert commandstats["cmdstat_check"]["calls"] >= stats["cmdstat_check"]["calls"]


def test_metrics_count_commands_and_errors(r: redis.Redis, api: httpx.Client) -> None:
    g = new_id("g")
    checks = metric(api, "roster_resp_commands_total", command="check")
    errors = metric(api, "roster_resp_errors_total", command="wl.add", code="channel_not_found")
    stats = r.info("stats").get("cmdstat_wl.add", {"calls": 0, "failed_calls": 0})
    for _ in range(3):
        assert r.execute_command("CHECK", "a", g, 2) == 5
    with pytest.raises(redis.ResponseError):
        r.execute_command("WL.ADD", g, 2, "a")
    assert metric(api, "roster_resp_commands_total", command="check") == checks + 3
    assert metric(api, "roster_resp_errors_total", command="wl.add",
                  code="channel_not_found") == errors + 1
    after = r.info("stats")["cmdstat_wl.add"]
    assert after["calls"] == stats["calls"] + 1
    assert after["failed_calls"] == stats["failed_calls"] + 1
    assert metric(api, "roster_resp_connections") >= 1


# -- redis-cli -----------------------------------------------------------------------------------

needs_cli = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed")


def cli(proc: ServerProcess, *args: str, stdin: bytes | None = None,
        token: str | None = TOKEN) -> subprocess.CompletedProcess[bytes]:
    assert REDIS_CLI is not None
    host, port = resp_address(proc)
    auth = ["-a", token, "--no-auth-warning"] if token else []
    return subprocess.run([REDIS_CLI, "-h", host, "-p", str(port), *auth, *args], input=stdin,
                          capture_output=True, timeout=30, check=False)


@needs_cli
def test_redis_cli_commands(shared_server: ServerProcess, api: httpx.Client) -> None:
    g, a, b = new_id("g"), new_id("a"), new_id("b")
    ok(api, "/channel", {"channel_id": g, "channel_type": 2, "subscribers": [a]})
    done = cli(shared_server, "CHECK", a, g, "2")
    assert done.returncode == 0 and done.stdout == b"1\n", done
    assert cli(shared_server, "CHECK", b, g, "2").stdout == b"3\n"
    assert cli(shared_server, "WL.SET", g, "2", b, a).stdout == b"OK\n"
    assert cli(shared_server, "WL.LIST", g, "2").stdout.decode().split() == sorted([a, b])
    assert get_list(api, "whitelist", g, 2) == sorted([a, b])
    refused = cli(shared_server, "WL.ADD", new_id("m"), "2", a)
    assert refused.stdout.startswith(b"ERR channel_not_found "), refused
    keyspace = cli(shared_server, "INFO", "keyspace").stdout.decode()
    assert keyspace.startswith("# Keyspace") and re.search(r"^channels:\d+\r?$", keyspace, re.M)
    no_auth = cli(shared_server, "CHECK", a, g, "2", token=None)
    assert b"NOAUTH" in no_auth.stdout + no_auth.stderr, no_auth


@needs_cli
def test_redis_cli_pipe_mass_insertion(shared_server: ServerProcess, api: httpx.Client) -> None:
    groups = [new_id("g") for _ in range(4)]
    n = 2000
    commands = [pack("SUB.ADD", groups[i % 4], 2, f"{groups[i % 4]}_{i:05d}") for i in range(n)]
    done = cli(shared_server, "--pipe", stdin=b"".join(commands))
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert f"errors: 0, replies: {n}" in out, out
    for k, g in enumerate(groups):
        assert subscribers(api, g, 2) == [f"{g}_{i:05d}" for i in range(k, n, 4)]


# -- EVENTS.READ ---------------------------------------------------------------------------------


def test_events_read_flip_and_resume(r: redis.Redis, r3: redis.Redis, api: httpx.Client) -> None:
    watcher, target = new_id("w"), new_id("t")
    subscribe(api, watcher, target)
    start = lsn(api)
    assert r.execute_command("EVENTS.READ", start) == []
    assert r.execute_command("PRESENCE.SET", target, 2, 1) == "OK"
    assert r.execute_command("PRESENCE.SET", target, 0, 1) == "OK"  # still online: no flip
    events = r.execute_command("EVENTS.READ", start)
    assert len(events) == 1, events
    ev_lsn, uid, online, at, devices, subs = events[0]
    assert ev_lsn == start + 1 and uid == target and online == 1 and devices == [2]
    assert subs == [watcher]
    health = api.get("/health").json()
    assert type(at) is int and at > 1_600_000_000_000 and ev_lsn < health["lsn"]
    # RESP3 answers the same arrays
    assert r3.execute_command("EVENTS.READ", start) == events
    # resuming from the last lsn seen returns nothing new; from "$" neither
    assert r.execute_command("EVENTS.READ", ev_lsn) == []
    assert r.execute_command("EVENTS.READ", "$", "BLOCK", 100) is None
    # going offline on every device is the next flip
    ok(api, "/user/presence", {"uid": target, "device_flag": 2, "online": 0})
    assert r.execute_command("EVENTS.READ", ev_lsn) == []  # device 0 is still online
    ok(api, "/user/presence", {"uid": target, "device_flag": 0, "online": 0})
    (off,) = r.execute_command("EVENTS.READ", ev_lsn)
    assert off[1:3] == [target, 0] and off[4:] == [[], [watcher]] and off[0] == lsn(api)
    # an lsn ahead of the log: reset to the newest
    with pytest.raises(redis.ResponseError, match=r"^RESET \d+$") as raised:
        r.execute_command("EVENTS.READ", lsn(api) + 1000)
    assert str(raised.value) == f"RESET {lsn(api)}"
    for bad in (["EVENTS.READ", "x"], ["EVENTS.READ", "0", "COUNT", "0"],
                ["EVENTS.READ", "0", "BLOCK", "-1"], ["EVENTS.READ", "0", "FOO", "1"],
                ["EVENTS.READ", "0", "COUNT"]):
        with pytest.raises(redis.ResponseError):
            r.execute_command(*bad)


def test_events_read_count_never_splits_a_record(r: redis.Redis, api: httpx.Client) -> None:
    users = [new_id("u") for _ in range(3)]
    lone = new_id("u")
    start = lsn(api)
    ok(api, "/user/presence_batch", {"events": [{"uid": u, "device_flag": 1, "online": 1}
                                                for u in users]})
    assert r.execute_command("PRESENCE.SET", lone, 1, 1) == "OK"
    first = r.execute_command("EVENTS.READ", start, "COUNT", 1)
    assert [e[1] for e in first] == users  # all of the batch's record, not one event
    assert {e[0] for e in first} == {start + 1}
    second = r.execute_command("EVENTS.READ", start + 1, "COUNT", 1)
    assert [(e[0], e[1]) for e in second] == [(start + 2, lone)]
    both = r.execute_command("EVENTS.READ", start, "COUNT", 4)
    assert [e[1] for e in both] == [*users, lone]


def test_events_read_block_wakes_on_a_flip(shared_server: ServerProcess, r: redis.Redis,
                                           api: httpx.Client) -> None:
    target = new_id("t")
    start = lsn(api)
    calls = r.info("stats").get("cmdstat_events.read", {"calls": 0})["calls"]
    got: list[Any] = []

    def reader() -> None:
        with connect(shared_server) as c:
            got.append(c.execute_command("EVENTS.READ", start, "BLOCK", 20_000))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        # the reader is blocked once the server has counted its EVENTS.READ
        wait_until(lambda: r.info("stats").get("cmdstat_events.read", {"calls": 0})["calls"]
                   > calls, 10, "the blocked EVENTS.READ")
        assert not got
        assert r.execute_command("PRESENCE.SET", target, 0, 1) == "OK"
    finally:
        thread.join(10)
    assert not thread.is_alive(), "EVENTS.READ BLOCK did not wake up on a new event"
    (events,) = got
    assert [(e[0], e[1], e[2]) for e in events] == [(start + 1, target, 1)]


def test_events_read_reset_after_restart_and_eviction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    u = new_id("u")
    with running(data) as proc, connect(proc) as c:
        assert c.execute_command("PRESENCE.SET", u, 0, 1) == "OK"
        assert c.execute_command("CHANNEL.SET", "kept", 2, "BAN", 1) == "OK"
        assert c.execute_command("EVENTS.READ", 0) != []
        before = c.info("persistence")["lsn"]
    with running(data, "--events-retained", "2") as proc, connect(proc) as c:
        # the events of the first run are gone (kept in memory only): a reset, not silence
        with pytest.raises(redis.ResponseError) as raised:
            c.execute_command("EVENTS.READ", 0)
        assert str(raised.value) == f"RESET {before}"
        assert c.execute_command("EVENTS.READ", before) == []
        assert c.execute_command("PRESENCE.GET", u) == [[0]]  # presence itself was logged
        assert as_map(c.execute_command("CHANNEL.GET", "kept", 2))["ban"] == 1
        # more events than retained: a reader left behind gets a reset to the horizon
        users = [new_id("v") for _ in range(4)]
        for v in users:
            assert c.execute_command("PRESENCE.SET", v, 0, 1) == "OK"
        with pytest.raises(redis.ResponseError, match=r"^RESET \d+$") as raised:
            c.execute_command("EVENTS.READ", before)
        resume = int(str(raised.value).split()[1])
        assert before < resume < before + 4
        tail = c.execute_command("EVENTS.READ", resume)
        assert [e[1] for e in tail] == users[-(before + 4 - resume):]


# -- the same server over HTTP and RESP at once -------------------------------------------------


def test_http_client_of_a_tokenless_server_and_resp_auth(tmp_path: Path) -> None:
    """Without a manager token every connection is open and AUTH is refused as in Redis."""
    with running(tmp_path / "data", token=None) as proc:
        host, port = resp_address(proc)
        with redis.Redis(host=host, port=port, protocol=2, decode_responses=True,
                         retry=Retry(NoBackoff(), 0), socket_timeout=10) as c:
            assert c.execute_command("CHANNEL.SET", "g", 2) == "OK"
            with pytest.raises(redis.AuthenticationError, match="without any password"):
                c.execute_command("AUTH", "x")
        with client_for(proc.url) as http:
            assert_ok(http.post("/channel/delete", json={"channel_id": "g", "channel_type": 2}))


@pytest.mark.parametrize(("args", "message"), [
    (("BAN", "1", "FOO"), "syntax error ('FOO' is not an option here)"),
    (("BAN",), "syntax error ('BAN' needs a value)"),
    (("BAN", "1", "ban", "0"), "syntax error ('ban' is given twice)"),
])
def test_option_errors_name_the_offending_word(r: redis.Redis, api: httpx.Client, gid: str,
                                               args: tuple[str, ...], message: str) -> None:
    assert r.execute_command("CHANNEL.SET", gid, 2) == "OK"
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("CHANNEL.SET", gid, 2, *args)
    assert str(err.value) == message
    flat = r.execute_command("CHANNEL.GET", gid, 2)  # RESP2: a flat list of name, value
    assert dict(zip(flat[::2], flat[1::2], strict=True))["ban"] == 0  # nothing changed
