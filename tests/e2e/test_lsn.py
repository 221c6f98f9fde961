"""The LSN contract on one node: X-LSN on every acknowledged write, X-Min-LSN and WAITLSN."""

from __future__ import annotations

import httpx
import redis

from tests.conftest import TOKEN
from tests.e2e.helpers import new_id
from tests.server_process import ServerProcess


def test_every_acknowledged_write_carries_its_lsn(api: httpx.Client) -> None:
    cid = new_id("g")
    first = api.post("/channel", json={"channel_id": cid, "channel_type": 2})
    second = api.post("/channel/whitelist_add",
                      json={"channel_id": cid, "channel_type": 2, "uids": ["a"]})
    assert int(second.headers["x-lsn"]) > int(first.headers["x-lsn"]) > 0
    # A write that changes nothing still says which LSN reading at sees its effect.
    nothing = api.post("/channel/delete", json={"channel_id": new_id("gone"), "channel_type": 2})
    assert nothing.status_code == 200
    assert int(nothing.headers["x-lsn"]) >= int(second.headers["x-lsn"])
    assert "x-lsn" not in api.get("/health").headers


def test_x_min_lsn_waits_for_the_record_or_answers_503(shared_server: ServerProcess,
                                                       api: httpx.Client) -> None:
    cid = new_id("g")
    r = api.post("/channel", json={"channel_id": cid, "channel_type": 2})
    lsn = int(r.headers["x-lsn"])
    query = {"channel_id": cid, "channel_type": 2}
    with httpx.Client(base_url=shared_server.url, headers={"token": TOKEN}) as c:
        assert c.get("/channel/info", params=query,
                     headers={"X-Min-LSN": str(lsn)}).status_code == 200
        ahead = c.get("/channel/info", params=query, headers={"X-Min-LSN": str(lsn + 10**9)})
        assert ahead.status_code == 503
        assert ahead.json()["code"] == "lsn_timeout"
        for bad in ("abc", "-1", "1_0", "+1", "9" * 30):
            r = c.get("/channel/info", params=query, headers={"X-Min-LSN": bad})
            assert r.status_code == 400, bad
            assert r.json()["code"] == "invalid_request"
        # a POST refused by the header is answered without its body being read; the client
        # goes on (on a new connection when the server closed the refused one)
        r = c.post("/permission/check", headers={"X-Min-LSN": "x"},
                   json={"channel_id": cid, "channel_type": 2, "from_uid": "u"})
        assert r.status_code == 400
        assert c.get("/health").status_code == 200


def test_waitlsn_over_resp(shared_server: ServerProcess, api: httpx.Client) -> None:
    r = api.post("/channel", json={"channel_id": new_id("g"), "channel_type": 2})
    lsn = int(r.headers["x-lsn"])
    assert shared_server.resp is not None
    with redis.Redis(*shared_server.resp, password=TOKEN, socket_timeout=10) as rc:
        assert rc.execute_command("WAITLSN", lsn, 0) >= lsn
        try:
            rc.execute_command("WAITLSN", lsn + 10**9, 20)
            raise AssertionError("WAITLSN answered for a record that does not exist")
        except redis.exceptions.ResponseError as exc:
            assert str(exc).startswith("TIMEOUT ")
        for args in ((1,), (-1, 10), (1, 10**9), ("x", 1)):
            try:
                rc.execute_command("WAITLSN", *args)
                raise AssertionError(f"WAITLSN {args} answered")
            except redis.exceptions.ResponseError as exc:
                assert str(exc).split()[0] in ("wrong", "value_out_of_range", "field_type",
                                              "invalid_request"), str(exc)
