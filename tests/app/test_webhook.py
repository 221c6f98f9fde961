"""The webhook sender in virtual time: batching, signature, retry with backoff, bounded queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
import trio.testing

from server.events import EventHub
from server.presence import StatusNote
from server.webhook import WebhookSender
from tests.app.conftest import in_process

URL = "http://receiver.invalid/presence?tenant=7"
KEY, SECRET = "app-key", "app-secret"


class Receiver:
    """A fake transport: answers from a script, remembers what it got and when."""

    def __init__(self, answers: list[int | BaseException] | None = None,
                 hang: bool = False) -> None:
        self.answers = list(answers or [])
        self.hang = hang
        self.calls: list[tuple[float, str, list[dict[str, Any]]]] = []

    async def post(self, url: str, body: bytes) -> int:
        self.calls.append((trio.current_time(), url, json.loads(body)))
        if self.hang:
            await trio.sleep_forever()
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, BaseException):
            raise answer
        return answer


def flip(uid: str, online: bool, time: int = 1000) -> StatusNote:
    return StatusNote(uid, online, (1,) if online else (), time, ("f",), "flip", 1, "sess-1",
                      "iOS", "10.1.2.3")


def publish(hub: EventHub, lsn: int, *notes: StatusNote) -> None:
    hub.stage(lsn, list(notes))
    hub.release(lsn)


def sender(receiver: Receiver, **options: Any) -> tuple[WebhookSender, EventHub]:
    s = WebhookSender(URL, KEY, SECRET, post=receiver.post, wall_ms=lambda: 1_700_000_000_000,
                      **options)
    hub = EventHub(100, start_lsn=0)
    hub.listeners.append(s.offer)
    return s, hub


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(60_000):  # 600 virtual seconds
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_items_are_rongcloud_format_and_the_url_is_signed(
        autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver()
    s, hub = sender(receiver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)
        publish(hub, 1, flip("u1", True, 1111), flip("u2", False, 2222))
        await until(lambda: s.statistics().delivered == 2)
        nursery.cancel_scope.cancel()
    [(_, url, items)] = receiver.calls
    assert items == [
        {"userid": "u1", "status": "0", "os": "iOS", "time": 1111, "clientIp": "10.1.2.3",
         "sessionId": "sess-1"},
        {"userid": "u2", "status": "1", "os": "iOS", "time": 2222, "clientIp": "10.1.2.3",
         "sessionId": "sess-1"},
    ]
    parts = urlsplit(url)
    assert url.startswith("http://receiver.invalid/presence?tenant=7&")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["appKey"] == KEY and query["tenant"] == "7"
    assert query["signTimestamp"] == "1700000000000"
    assert query["signature"] == hashlib.sha1(
        (SECRET + query["nonce"] + query["signTimestamp"]).encode()).hexdigest()
    stats = s.statistics()
    assert (stats.batches_delivered, stats.attempts, stats.failed_attempts) == (1, 1, 0)


async def test_failures_are_retried_with_backoff_and_the_batch_arrives(
        autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver([503, OSError("connection refused"), 200])
    s, hub = sender(receiver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)
        start = trio.current_time()
        publish(hub, 1, flip("u", True))
        await until(lambda: s.statistics().delivered == 1)
        nursery.cancel_scope.cancel()
    times = [round(t - start, 3) for t, _, _ in receiver.calls]
    assert times == [0.0, 0.5, 1.5]  # 0.5 s, then twice that
    assert [items for _, _, items in receiver.calls] == [receiver.calls[0][2]] * 3
    nonces = {parse_qs(urlsplit(url).query)["nonce"][0] for _, url, _ in receiver.calls}
    assert len(nonces) == 3  # a fresh signature per attempt
    stats = s.statistics()
    assert (stats.attempts, stats.failed_attempts, stats.dropped_gave_up) == (3, 2, 0)


async def test_a_receiver_that_never_answers_times_out_and_is_retried(
        autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver(hang=True)
    s, hub = sender(receiver, timeout_s=5.0, max_attempts=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)
        start = trio.current_time()
        publish(hub, 1, flip("u", True))
        await until(lambda: s.statistics().dropped_gave_up == 1)
        nursery.cancel_scope.cancel()
    assert [round(t - start, 3) for t, _, _ in receiver.calls] == [0.0, 5.5, 11.5]
    assert s.statistics().delivered == 0 and s.statistics().failed_attempts == 3


async def test_backoff_is_capped_and_a_batch_is_dropped_after_max_attempts(
        autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver([500] * 10)
    s, hub = sender(receiver, max_attempts=8, backoff_max_s=4.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)
        start = trio.current_time()
        publish(hub, 1, flip("u", True))
        await until(lambda: s.statistics().dropped_gave_up == 1)
        publish(hub, 2, flip("u", False))  # the next batch goes out on its own
        await until(lambda: s.statistics().delivered == 1)
        nursery.cancel_scope.cancel()
    gaps = [round(b[0] - a[0], 3) for a, b in zip(receiver.calls, receiver.calls[1:8],
                                                  strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert receiver.calls[0][0] == start


async def test_batches_hold_at_most_batch_max_items(autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver()
    s, hub = sender(receiver, batch_max=100)
    publish(hub, 1, *(flip(f"u{i}", True) for i in range(250)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run)
        await until(lambda: s.statistics().delivered == 250)
        nursery.cancel_scope.cancel()
    assert [len(items) for _, _, items in receiver.calls] == [100, 100, 50]
    assert [i["userid"] for _, _, items in receiver.calls for i in items] == \
        [f"u{i}" for i in range(250)]


async def test_the_queue_is_bounded_and_drops_the_oldest(autojump_clock: trio.abc.Clock) -> None:
    receiver = Receiver()
    s, hub = sender(receiver, queue_max=3)
    publish(hub, 1, *(flip(f"u{i}", True) for i in range(5)))
    assert s.statistics().dropped_queue_full == 2
    assert [i["userid"] for i in s.queue] == ["u2", "u3", "u4"]


def test_only_status_flips_go_to_the_webhook() -> None:
    s, hub = sender(Receiver())
    publish(hub, 1, StatusNote("t", True, (0,), 5, ("me",), "subscribe"), flip("u", False))
    assert [i["userid"] for i in s.queue] == ["u"] and s.statistics().enqueued == 1


def test_without_key_and_secret_the_url_is_unsigned() -> None:
    assert WebhookSender("http://x.invalid/hook").signed_url() == "http://x.invalid/hook"


async def test_a_dead_receiver_never_delays_a_presence_report(tmp_path: Path) -> None:
    receiver = Receiver(hang=True)
    async with in_process(tmp_path, webhook_url="http://receiver.invalid/") as p:
        webhook = p.roster.webhook
        assert webhook is not None
        webhook._post = receiver.post
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.roster.webhook_loop)
            for i in range(20):
                with trio.fail_after(5):
                    status, _ = await p.json("/user/presence",
                                             {"uid": "u", "device_flag": 0, "online": 1 - i % 2})
                assert status == 200
            await trio.testing.wait_all_tasks_blocked()
            assert len(receiver.calls) == 1  # stuck on the first batch, the rest queued
            assert webhook.statistics().in_flight == 1 and len(webhook.queue) == 19
            nursery.cancel_scope.cancel()
