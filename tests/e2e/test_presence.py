"""Presence and status subscriptions against a real ``roster serve``: presence reports, the SSE
event stream, the webhook, and subscriptions and presence across restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import assert_error, client_for, new_id, running, stop_within
from tests.e2e.presence_helpers import (
    KEY,
    SECRET,
    DeadReceiver,
    RcClient,
    SseReader,
    WebhookReceiver,
    report,
    sha1_hex,
)
from tests.server_process import ServerProcess, wait_until

SIGNED = ("--rc-app-key", KEY, "--rc-app-secret", SECRET)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tmp_path_factory.mktemp("presence") / "data", *SIGNED) as proc:
        yield proc


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with client_for(server.url, TOKEN) as c:
        yield c


@pytest.fixture(scope="module")
def rc(server: ServerProcess) -> Iterator[RcClient]:
    with client_for(server.url) as http:
        yield RcClient(http, sdk=True)


def online_status(api: httpx.Client, *uids: str) -> list[dict[str, Any]]:
    r = api.post("/user/onlinestatus", json=list(uids))
    assert r.status_code == 200, r.text
    body: list[dict[str, Any]] = r.json()
    return body


def lsn(api: httpx.Client) -> int:
    value: int = api.get("/health").json()["lsn"]
    return value


# -- reports -------------------------------------------------------------------------------------


def test_online_while_any_device_is(api: httpx.Client, rc: RcClient) -> None:
    u = new_id("u")
    report(api, u, 1, device_flag=0, session_id="s1", os="iOS", client_ip="10.0.0.1")
    report(api, u, 1, device_flag=2)
    assert online_status(api, u) == [{"uid": u, "device_flag": 0, "online": 1},
                                     {"uid": u, "device_flag": 2, "online": 1}]
    report(api, u, 0, device_flag=0)
    assert rc.online(u) == "1"
    report(api, u, 0, device_flag=2)
    assert rc.online(u) == "0" and online_status(api, u) == []


def test_presence_batch_is_one_record(api: httpx.Client) -> None:
    a, b = new_id("a"), new_id("b")
    before = lsn(api)
    r = api.post("/user/presence_batch", json={"events": [
        {"uid": a, "device_flag": 1, "online": 1},
        {"uid": b, "device_flag": 0, "online": 1, "os": "Android"},
        {"uid": a, "device_flag": 1, "online": 0},
    ]})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert lsn(api) == before + 1
    assert online_status(api, a, b, new_id("nobody")) == [
        {"uid": b, "device_flag": 0, "online": 1}]


@pytest.mark.parametrize(("body", "code", "names"), [
    ({"device_flag": 0, "online": 1}, "field_missing", "uid"),
    ({"uid": "u", "online": 1}, "field_missing", "device_flag"),
    ({"uid": "u", "device_flag": 3, "online": 1}, "value_out_of_range", "device_flag"),
    ({"uid": "u", "device_flag": "0", "online": 1}, "field_type", "device_flag"),
    ({"uid": "u", "device_flag": 0}, "field_missing", "online"),
    ({"uid": "u", "device_flag": 0, "online": 2}, "flag_invalid", "online"),
    ({"uid": "u", "device_flag": 0, "online": True}, "flag_invalid", "online"),
    ({"uid": "u@x", "device_flag": 0, "online": 1}, "uid_invalid", "uid"),
    ({"uid": "u", "device_flag": 0, "online": 1, "os": 5}, "field_type", "os"),
    ({"uid": "u", "device_flag": 0, "online": 1, "session_id": "s" * 129},
     "value_out_of_range", "session_id"),
])
def test_invalid_reports_are_400_naming_the_field(api: httpx.Client, body: dict[str, Any],
                                                  code: str, names: str) -> None:
    assert_error(api.post("/user/presence", json=body), 400, code, names=names)
    batch = api.post("/user/presence_batch",
                     json={"events": [{"uid": "ok", "device_flag": 0, "online": 1}, body]})
    assert_error(batch, 400, code, names=f"events[1].{names}")


def test_invalid_batches_and_status_queries(api: httpx.Client) -> None:
    assert_error(api.post("/user/presence_batch", json={}), 400, "field_missing", names="events")
    assert_error(api.post("/user/presence_batch", json={"events": []}), 400, "events_empty")
    assert_error(api.post("/user/presence_batch", json={"events": {}}), 400, "field_type")
    assert_error(api.post("/user/presence_batch", json=[1]), 400, "invalid_body")
    assert_error(api.post("/user/onlinestatus", json={"uids": []}), 400, "field_type")
    assert_error(api.post("/user/onlinestatus", json=["a b"]), 400, "uid_invalid")
    assert online_status(api) == []


def test_reports_follow_the_manager_token_rule(server: ServerProcess) -> None:
    with client_for(server.url) as anonymous:
        for path, body in (("/user/presence", {"uid": "u", "device_flag": 0, "online": 1}),
                           ("/user/presence_batch", {"events": []}),
                           ("/user/onlinestatus", ["u"])):
            assert_error(anonymous.post(path, json=body), 403, "no_permission")
        r = anonymous.get("/events")
        assert r.status_code == 403


# -- the event stream --------------------------------------------------------------------------


def presence_data(event: dict[str, Any]) -> dict[str, Any]:
    assert event["event"] == "presence", event
    data: dict[str, Any] = event["data"]
    return data


def test_sse_delivers_one_event_per_flip_with_live_subscribers(
        server: ServerProcess, api: httpx.Client, rc: RcClient) -> None:
    u, fan = new_id("u"), new_id("fan")
    assert rc.subscribe(fan, u).json() == {"code": 200}
    with SseReader(server.url, TOKEN) as sse:
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        before = time.time_ns() // 1_000_000
        report(api, u, 1, device_flag=1)
        report(api, u, 1, device_flag=2)  # still online: no event
        report(api, u, 0, device_flag=1)  # still online: no event
        report(api, u, 0, device_flag=2)
        first, second = sse.next(), sse.next()
        data = presence_data(first)
        assert data["uid"] == u and data["online"] == 1 and data["devices"] == [1]
        assert data["subscribers"] == [fan] and data["cause"] == "flip"
        assert before - 5000 <= data["time"] <= time.time_ns() // 1_000_000 + 5000
        assert int(first["id"]) <= lsn(api)
        assert presence_data(second)["online"] == 0 and presence_data(second)["devices"] == []
        assert int(second["id"]) == lsn(api)  # one record, one event: the id is its LSN
        assert sse.nothing_more()


def test_a_new_subscription_gets_the_current_status_at_once(
        server: ServerProcess, api: httpx.Client, rc: RcClient) -> None:
    on, off, me = new_id("on"), new_id("off"), new_id("me")
    report(api, on, 1, device_flag=2)
    with SseReader(server.url, TOKEN) as sse:
        assert rc.subscribe(me, on, off).json() == {"code": 200}
        got = [presence_data(sse.next()), presence_data(sse.next())]
        assert [(d["uid"], d["online"], d["devices"], d["subscribers"], d["cause"])
                for d in got] == [(on, 1, [2], [me], "subscribe"),
                                  (off, 0, [], [me], "subscribe")]


def test_reconnecting_with_last_event_id_gets_exactly_the_missed_events(
        server: ServerProcess, api: httpx.Client) -> None:
    u = new_id("u")
    with SseReader(server.url, TOKEN) as sse:
        report(api, u, 1)
        last = sse.next()
        assert presence_data(last)["uid"] == u
    # disconnected: these happen while nobody listens
    missed = [new_id("m") for _ in range(3)]
    for m in missed:
        report(api, m, 1)
    report(api, u, 0)
    with SseReader(server.url, TOKEN, last_event_id=last["id"]) as sse:
        got = [presence_data(sse.next()) for _ in range(4)]
        assert [(d["uid"], d["online"]) for d in got] == [(m, 1) for m in missed] + [(u, 0)]
        assert sse.nothing_more()
        # and it carries on live
        report(api, u, 1)
        assert presence_data(sse.next())["uid"] == u
        assert sse.nothing_more()


def test_a_batch_numbers_its_events_and_resumes_inside_the_record(
        server: ServerProcess, api: httpx.Client) -> None:
    uids = [new_id("b") for _ in range(3)]
    with SseReader(server.url, TOKEN) as sse:
        r = api.post("/user/presence_batch",
                     json={"events": [{"uid": u, "device_flag": 0, "online": 1} for u in uids]})
        assert r.status_code == 200
        record = lsn(api)
        events = [sse.next() for _ in range(3)]
        assert [e["id"] for e in events] == [f"{record}:0", f"{record}:1", str(record)]
        assert [presence_data(e)["uid"] for e in events] == uids
    with SseReader(server.url, TOKEN, last_event_id=f"{record}:0") as sse:
        assert [presence_data(sse.next())["uid"] for _ in range(2)] == uids[1:]
        assert sse.nothing_more()


def test_last_event_id_query_parameter_for_clients_without_headers(
        server: ServerProcess, api: httpx.Client) -> None:
    u = new_id("u")
    report(api, u, 1)
    before = lsn(api) - 1
    with httpx.Client(base_url=server.url, headers={"token": TOKEN}) as c, \
            c.stream("GET", f"/events?last_event_id={before}") as r:
        text = ""
        for chunk in r.iter_text():
            text += chunk
            if "event: presence" in text and text.endswith("\n\n"):
                break
    assert f'"uid":"{u}"' in text


def test_too_old_or_foreign_ids_get_an_explicit_reset(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--events-retained", "3") as proc, \
            client_for(proc.url, TOKEN) as api:
        for i in range(5):
            report(api, f"u{i}", 1)
        newest = 5
        # (a malformed id is a 400 instead: test_edge_http.py)
        for last, reason in (("1", "no longer retained"), ("999999", "ahead of this server")):
            with SseReader(proc.url, TOKEN, last_event_id=last) as sse:
                reset = sse.next()
                assert reset["event"] == "reset" and reset["id"] == str(newest), reset
                assert reason in reset["data"]["reason"]
                report(api, "live", 1)
                report(api, "live", 0)
                assert presence_data(sse.next())["uid"] == "live"
                newest += 2
        # a reset's id resumes cleanly: the events since the last reset
        with SseReader(proc.url, TOKEN, last_event_id=str(newest - 2)) as sse:
            assert [presence_data(sse.next())["online"] for _ in range(2)] == [1, 0]
            assert sse.nothing_more()


def test_ids_from_before_a_restart_get_a_reset(tmp_path: Path) -> None:
    """The ring is memory only: a restart cannot prove that nothing was missed."""
    data = tmp_path / "data"
    with running(data) as proc, client_for(proc.url, TOKEN) as api:
        report(api, "u", 1)
        report(api, "v", 1)
        last = lsn(api)
    with running(data) as proc, client_for(proc.url, TOKEN) as api:
        # a client that saw "u" but not "v" may have missed something: reset
        with SseReader(proc.url, TOKEN, last_event_id=str(last - 1)) as sse:
            assert sse.next()["event"] == "reset"
        # a client that saw everything up to the restart resumes without one
        with SseReader(proc.url, TOKEN, last_event_id=str(last)) as sse:
            report(api, "w", 1)
            event = sse.next()
            assert event["event"] == "presence" and event["id"] == str(last + 1)


def test_sigterm_ends_open_streams_promptly(tmp_path: Path) -> None:
    with running(tmp_path / "data") as proc:
        readers = [SseReader(proc.url, TOKEN) for _ in range(3)]
        try:
            assert stop_within(proc, 5.0) == 0  # not the 10 s graceful timeout
            for sse in readers:
                assert sse.events.get(timeout=10) is None  # the stream ended
        finally:
            for sse in readers:
                sse.close()


# -- the webhook -------------------------------------------------------------------------------


def test_webhook_is_signed_rongcloud_format_and_retried_until_delivered(
        tmp_path: Path) -> None:
    with WebhookReceiver(answers=[503, 500]) as receiver, \
            running(tmp_path / "data", *SIGNED, "--webhook-url", receiver.url) as proc, \
            client_for(proc.url, TOKEN) as api:
        u = new_id("u")
        report(api, u, 1, device_flag=0, os="iOS", session_id="sess-9", client_ip="10.9.8.7")
        report(api, u, 1, device_flag=1)  # no flip, no webhook item
        wait_until(lambda: receiver.delivered(), timeout=20, what="webhook delivery")
        assert len(receiver.calls) == 3  # failed twice, then the same batch arrived
        bodies = [items for _, items, _ in receiver.calls]
        assert bodies[0] == bodies[1] == bodies[2]
        [item] = receiver.delivered()
        assert set(item) == {"userid", "status", "os", "time", "clientIp", "sessionId"}
        assert (item["userid"], item["status"], item["os"], item["clientIp"],
                item["sessionId"]) == (u, "0", "iOS", "10.9.8.7", "sess-9")
        assert isinstance(item["time"], int)
        nonces = set()
        for query, _, _ in receiver.calls:
            assert query["appKey"] == KEY
            assert query["signature"] == sha1_hex(SECRET + query["nonce"]
                                                  + query["signTimestamp"])
            assert abs(int(query["signTimestamp"]) - time.time_ns() // 1_000_000) < 60_000
            nonces.add(query["nonce"])
        assert len(nonces) == 3
        report(api, u, 0, device_flag=0)
        report(api, u, 0, device_flag=1)
        wait_until(lambda: len(receiver.delivered()) == 2, timeout=20, what="offline item")
        assert receiver.delivered()[1]["status"] == "1"
        # the failures were logged, the secret and the signatures never
        log = proc.text()
        assert "receiver answered HTTP 503" in log
        assert SECRET not in log and "signature=" not in log
        assert not any(query["signature"] in log for query, _, _ in receiver.calls)


#: below the webhook sender's 5 s timeout: a report waiting on the dead receiver times out
REPORT_TIMEOUT_S = 2.0


def test_a_dead_webhook_receiver_never_delays_presence_reports(tmp_path: Path) -> None:
    with DeadReceiver() as dead, running(tmp_path / "data", *SIGNED, "--webhook-url",
                                         dead.url) as proc, \
            client_for(proc.url, TOKEN, timeout=REPORT_TIMEOUT_S) as api:
        u = new_id("u")
        # the receiver holds the first delivery for the sender's 5 s timeout; a report that
        # waited for it would time out on this client
        for i in range(30):  # every one flips, so every one queues a webhook item
            report(api, u, 1 - i % 2)
        with SseReader(proc.url, TOKEN, last_event_id="0") as sse:
            assert len([sse.next() for _ in range(30)]) == 30


# -- restarts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_subscriptions_and_presence_survive_a_restart(tmp_path: Path, how: str) -> None:
    data = tmp_path / "data"
    me, a, b = new_id("me"), new_id("a"), new_id("b")
    with running(data, *SIGNED) as proc, client_for(proc.url, TOKEN) as api, \
            client_for(proc.url) as http:
        rc = RcClient(http)
        assert rc.subscribe(me, a, b, expiry=3600).json() == {"code": 200}
        assert rc.ok("/user/subscribe/set.json", userId=me, subUserIds=b, opType=1)
        report(api, a, 1, device_flag=1)
        report(api, b, 1, device_flag=0)
        report(api, b, 0, device_flag=0)
        before = rc.ok("/user/subscribe/query.json", userId=me)["subscriptions"]
        if how == "kill":
            proc.kill()
    with running(data, *SIGNED) as proc, client_for(proc.url, TOKEN) as api, \
            client_for(proc.url) as http:
        rc = RcClient(http)
        assert rc.ok("/user/subscribe/query.json", userId=me)["subscriptions"] == before
        assert rc.subscriptions(me) == [a] and rc.followers(a) == [me]
        assert rc.online(a) == "1" and rc.online(b) == "0"
        assert online_status(api, a, b) == [{"uid": a, "device_flag": 1, "online": 1}]
        # and the presence carries on from there
        with SseReader(proc.url, TOKEN) as sse:
            report(api, a, 0, device_flag=1)
            data_ = presence_data(sse.next())
            assert (data_["uid"], data_["online"], data_["subscribers"]) == (a, 0, [me])


def test_subscriptions_survive_a_snapshot_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    me, a = new_id("me"), new_id("a")
    with running(data, *SIGNED) as proc, client_for(proc.url, TOKEN) as api, \
            client_for(proc.url) as http:
        rc = RcClient(http)
        assert rc.subscribe(me, a).json() == {"code": 200}
        report(api, a, 1, device_flag=2)
        assert api.post("/admin/snapshot").status_code == 200
        report(api, me, 1)
    with running(data, *SIGNED) as proc, client_for(proc.url, TOKEN) as api, \
            client_for(proc.url) as http:
        rc = RcClient(http)
        assert rc.subscriptions(me) == [a] and rc.online(a) == "1" and rc.online(me) == "1"
