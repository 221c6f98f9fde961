"""Presence through the real app, in process, with a hand-moved clock: expiry at its instant,
limits, events and their subscribers, purge and replay, SSE streams and slow consumers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from server.events import EventHub, EventStream
from server.presence import STATUS, StatusNote
from server.runner import recover_state
from server.service import Roster
from tests.app.conftest import NOW, Clock, InProcess, in_process

SET = "/user/subscribe/set.json"
QUERY = "/user/subscribe/query.json"
FOLLOWERS = "/user/subscribe/followers.json"
MINUTE = 60_000


async def subscribe(p: InProcess, user: str, *targets: str, expiry: int = 60
                    ) -> tuple[int, dict[str, Any]]:
    return await p.form(SET, userId=user, subUserIds=",".join(targets), opType=0, expiry=expiry)


async def report(p: InProcess, uid: str, online: int, device_flag: int = 0) -> None:
    status, body = await p.json("/user/presence",
                                {"uid": uid, "device_flag": device_flag, "online": online})
    assert (status, body) == (200, {"status": "ok"})


async def subscribed_to(p: InProcess, user: str) -> list[str]:
    status, body = await p.form(QUERY, userId=user)
    assert status == 200 and body["code"] == 200, body
    return [uid for item in body["subscriptions"] for uid in item["subUserIds"]]


async def followers(p: InProcess, user: str) -> list[str]:
    status, body = await p.form(FOLLOWERS, userId=user)
    assert status == 200 and body["code"] == 200, body
    return [item["userId"] for item in body["followers"]]


def flips(roster: Roster) -> list[dict[str, Any]]:
    return [{"uid": e.note.uid, "online": e.note.online, "subscribers": list(e.note.subscribers)}
            for e in roster.events.retained_events() if e.note.cause == "flip"]


async def test_a_subscription_ends_at_its_expiry_instant(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        assert await subscribe(p, "a", "b", expiry=60) == (200, {"code": 200})
        status, body = await p.form(QUERY, userId="a")
        assert status == 200
        assert body["subscriptions"] == [{"subUserIds": ["b"], "subType": 1, "subTime": NOW,
                                          "expiry": 60, "expireAt": NOW + MINUTE,
                                          "online": "0"}]
        p.clock.now = NOW + MINUTE - 1
        assert await subscribed_to(p, "a") == ["b"] and await followers(p, "b") == ["a"]
        p.clock.now = NOW + MINUTE
        assert await subscribed_to(p, "a") == [] and await followers(p, "b") == []


async def test_resubscribing_overwrites_the_expiry(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        await subscribe(p, "a", "b", expiry=60)
        p.clock.now = NOW + 30_000
        await subscribe(p, "a", "b", expiry=120)
        p.clock.now = NOW + 30_000 + 119_999
        assert await subscribed_to(p, "a") == ["b"]
        p.clock.now = NOW + 30_000 + 120_000
        assert await subscribed_to(p, "a") == []


async def test_expired_subscriptions_stop_counting_against_both_limits(tmp_path: Path) -> None:
    async with in_process(tmp_path, sub_max_per_user=1, sub_max_followers=1) as p:
        assert (await subscribe(p, "a", "b"))[0] == 200
        p.clock.now = NOW + 1
        status, body = await subscribe(p, "a", "c")
        assert status == 403 and body["code"] == 26022
        status, body = await subscribe(p, "x", "b")
        assert (status, body) == (200, {"code": 26021, "subUserIds": ["b"]})
        # renewing the one it holds is fine although both limits are reached
        assert (await subscribe(p, "a", "b"))[1] == {"code": 200}
        p.clock.now = NOW + 1 + MINUTE
        assert await subscribe(p, "a", "c") == (200, {"code": 200})
        assert await subscribe(p, "x", "b") == (200, {"code": 200})
        assert await subscribed_to(p, "a") == ["c"] and await followers(p, "b") == ["x"]


async def test_expired_subscribers_hear_nothing(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        await subscribe(p, "short", "u", expiry=60)
        await subscribe(p, "long", "u", expiry=120)
        await report(p, "u", 1)
        p.clock.now = NOW + MINUTE
        await report(p, "u", 0)
        assert flips(p.roster) == [
            {"uid": "u", "online": True, "subscribers": ["long", "short"]},
            {"uid": "u", "online": False, "subscribers": ["long"]},
        ]


async def test_a_new_subscription_yields_the_current_status_at_once(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        await report(p, "on", 1, device_flag=2)
        await subscribe(p, "me", "on", "off")
        events = [e for e in p.roster.events.retained_events() if e.note.cause == "subscribe"]
        assert [(e.note.uid, e.note.online, e.note.devices, e.note.subscribers)
                for e in events] == [("on", True, (2,), ("me",)), ("off", False, (), ("me",))]
        await subscribe(p, "me", "on")  # a renewal is not new
        assert len(p.roster.events.retained_events()) == 3  # the flip of "on" + two firsts


async def test_cancel_removes_and_ignores_what_is_not_held(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        await subscribe(p, "a", "b", "c")
        lsn = p.roster.wal.last_lsn
        assert await p.form(SET, userId="a", subUserIds="b,zz", opType=1) == (200, {"code": 200})
        assert await subscribed_to(p, "a") == ["c"]
        assert await p.form(SET, userId="a", subUserIds="zz", opType=1) == (200, {"code": 200})
        assert p.roster.wal.last_lsn == lsn + 1  # nothing to remove: nothing logged


async def test_purge_is_a_logged_mutation_that_replays(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        await subscribe(p, "a", "b", expiry=60)
        await subscribe(p, "a", "c", expiry=120)
        await report(p, "b", 1, device_flag=1)
        p.clock.now = NOW + MINUTE - 1
        assert await p.roster.purge_expired() == 0
        p.clock.now = NOW + MINUTE
        lsn = p.roster.wal.last_lsn
        assert await p.roster.purge_expired() == 1
        assert p.roster.wal.last_lsn == lsn + 1
        presence = p.roster.state.presence
        assert not presence.holds("a", "b", STATUS) and presence.holds("a", "c", STATUS)
        expected = p.roster.state.as_plain()
    state, _ = recover_state(p.settings)
    assert state.as_plain() == expected
    async with in_process(tmp_path, Clock(NOW + MINUTE)) as again:
        assert await subscribed_to(again, "a") == ["c"]
        status, body = await again.json("/user/onlinestatus", ["b", "a"])
        assert status == 200 and body == [{"uid": "b", "device_flag": 1, "online": 1}]


async def test_query_pages_through_subscriptions(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        targets = [f"t{i:03d}" for i in range(120)]
        await subscribe(p, "a", *targets[:100])
        await subscribe(p, "a", *targets[100:])
        seen: list[str] = []
        token = ""
        for _ in range(5):
            status, body = await p.form(QUERY, userId="a", pageSize=50, pageToken=token)
            assert status == 200
            seen += [item["subUserIds"][0] for item in body["subscriptions"]]
            token = body["pageToken"]
            if not body["hasNext"]:
                assert token == ""
                break
        assert seen == targets


# -- SSE through the ASGI interface ------------------------------------------------------------

SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/events", "raw_path": b"/events", "query_string": b"",
         "root_path": "", "headers": [(b"host", b"roster")], "client": ("127.0.0.1", 5000),
         "server": ("127.0.0.1", 5001)}


async def test_sse_disconnect_ends_the_stream(tmp_path: Path) -> None:
    async with in_process(tmp_path) as p:
        hub = p.roster.events
        got: list[bytes] = []
        disconnect = trio.Event()

        async def receive() -> dict[str, Any]:
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
                assert (b"content-type", b"text/event-stream; charset=utf-8") in \
                    message["headers"]
            else:
                got.append(message.get("body", b""))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.app, SCOPE, receive, send)
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().streams_open == 1
            await report(p, "u", 1)
            await trio.testing.wait_all_tasks_blocked()
            assert any(b"event: presence\nid: 1\n" in chunk for chunk in got)
            disconnect.set()
        assert hub.statistics().streams_open == 0


async def test_a_slow_consumer_is_cut_off_and_never_slows_a_mutation(tmp_path: Path) -> None:
    async with in_process(tmp_path, events_retained=8) as p:
        hub = p.roster.events
        assert hub.max_lag == 4
        bodies: list[bytes] = []
        stuck = trio.Event()

        async def receive() -> dict[str, Any]:
            await trio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                bodies.append(message["body"])
                if b"event: presence" in message["body"]:
                    stuck.set()
                    await trio.sleep_forever()  # the client stopped reading

        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.app, SCOPE, receive, send)
            await trio.testing.wait_all_tasks_blocked()
            await report(p, "u", 1)
            await stuck.wait()
            for i in range(5):  # each returns although the stream cannot take anything
                with trio.fail_after(5):
                    await report(p, "u", i % 2)
        # the app call ended by itself: the hub cut the stream
        assert hub.statistics().streams_cut == 1 and hub.statistics().streams_open == 0


async def test_stream_heartbeats_then_ends_cleanly(autojump_clock: trio.abc.Clock) -> None:
    hub = EventHub(10, start_lsn=0)
    stream = EventStream(hub, 0, b": hello\n\n", max_seconds=40.0)
    start = trio.current_time()
    chunks: list[tuple[float, bytes]] = []
    async with stream:
        async for chunk in stream:
            chunks.append((trio.current_time() - start, chunk))
    assert [round(t) for t, _ in chunks] == [0, 15, 30, 40]
    assert [c for _, c in chunks][1:3] == [b": keep-alive\n\n"] * 2
    assert b"reconnect with Last-Event-ID" in chunks[-1][1]
    assert hub.statistics().streams_open == 0 and hub.statistics().streams_opened == 1


async def test_closing_the_hub_ends_waiting_streams(autojump_clock: trio.abc.Clock) -> None:
    hub = EventHub(10, start_lsn=0)
    stream = EventStream(hub, 0, b"")
    ended = trio.Event()

    async def consume() -> None:
        async with stream:
            async for _ in stream:
                pass
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        assert hub.statistics().streams_open == 1
        hub.close()
        with trio.fail_after(1):
            await ended.wait()


async def test_a_resumed_backlog_does_not_count_as_lag(autojump_clock: trio.abc.Clock) -> None:
    hub = EventHub(8, start_lsn=0)  # max_lag 4
    for lsn in range(1, 7):
        hub.stage(lsn, [StatusNote(f"u{lsn}", True, (0,), lsn, (), "flip")])
        hub.release(lsn)
    stream = hub.stream("1", current_lsn=6)  # a backlog of 5 events
    got = b""
    async with stream:
        async for chunk in stream:
            got += chunk
            if b"id: 6\n" in got:
                break
    assert got.count(b"event: presence") == 5 and not stream.was_cut
    assert hub.statistics().streams_cut == 0
