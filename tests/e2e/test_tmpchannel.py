"""POST /tmpchannel/subscriber_set — temporary channels (type 8)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.helpers import (
    MAX_ID,
    assert_error,
    check,
    info,
    new_id,
    ok,
    q,
    subscribers,
)

TMP = "/tmpchannel/subscriber_set"


@pytest.fixture
def tid() -> str:
    return new_id("t")


def test_set_creates_a_type_8_channel(api: httpx.Client, tid: str) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["user1", "user2", "user3"]})
    data = info(api, tid, 8)
    assert data is not None
    assert data["channel_type"] == 8 and data["subscriber_count"] == 3
    assert subscribers(api, tid, 8) == ["user1", "user2", "user3"]
    assert info(api, tid, 2) is None


def test_second_set_replaces(api: httpx.Client, tid: str) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["a", "b"]})
    ok(api, TMP, {"channel_id": tid, "uids": ["c", "b", "c"]})
    assert subscribers(api, tid, 8) == ["b", "c"]
    assert check(api, "a", tid, 8) == 3
    assert check(api, "c", tid, 8) == 1


def test_temporary_channel_behaves_like_a_group(api: httpx.Client, tid: str) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["a", "b", "c", "d"]})
    sys_uid = new_id("sys")
    ok(api, "/user/systemuids_add", {"uids": [sys_uid]})
    assert [check(api, u, tid, 8) for u in ("a", "z", sys_uid)] == [1, 3, 1]
    ok(api, "/channel/blacklist_add", {"channel_id": tid, "channel_type": 8, "uids": ["b"]})
    ok(api, "/channel/whitelist_add", {"channel_id": tid, "channel_type": 8, "uids": ["a", "b"]})
    assert [check(api, u, tid, 8) for u in ("a", "b", "c", "z")] == [1, 4, 13, 3]
    ok(api, "/channel/info", {"channel_id": tid, "channel_type": 8, "ban": 1})
    assert [check(api, u, tid, 8) for u in ("a", sys_uid)] == [19, 1]
    ok(api, "/channel/info", {"channel_id": tid, "channel_type": 8, "ban": 0, "disband": 1})
    assert [check(api, u, tid, 8) for u in ("a", sys_uid)] == [24, 24]


def test_delete_removes_a_temporary_channel(api: httpx.Client, tid: str) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["a"]})
    ok(api, "/channel/delete", {"channel_id": tid, "channel_type": 8})
    assert info(api, tid, 8) is None
    assert check(api, "a", tid, 8) == 5


def test_missing_temporary_channel(api: httpx.Client, tid: str) -> None:
    assert check(api, "a", tid, 8) == 5
    assert_error(api.get("/channel/subscribers", params=q(tid, 8)), 404, "channel_not_found")
    # created only through /tmpchannel/subscriber_set
    r = api.post("/channel/subscriber_add", json={"channel_id": tid, "channel_type": 8,
                                                  "subscribers": ["a"]})
    assert_error(r, 400)
    assert info(api, tid, 8) is None


@pytest.mark.parametrize("ttl", [60, 61, 1200, 604_800])
def test_ttl_in_range(api: httpx.Client, tid: str, ttl: int) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["a"], "ttl": ttl})
    assert check(api, "a", tid, 8) == 1


@pytest.mark.parametrize("ttl", [0, 59, -60, 604_801, 10**12, "60", 60.0, True, [60], {}])
def test_ttl_out_of_range_or_wrong_type(api: httpx.Client, tid: str, ttl: Any) -> None:
    assert_error(api.post(TMP, json={"channel_id": tid, "uids": ["a"], "ttl": ttl}), 400,
                 names="ttl")
    assert info(api, tid, 8) is None


def test_rejected_set_keeps_the_old_subscribers(api: httpx.Client, tid: str) -> None:
    ok(api, TMP, {"channel_id": tid, "uids": ["a"]})
    before = info(api, tid, 8)
    for body in ({"channel_id": tid, "uids": []},
                 {"channel_id": tid, "uids": ["b", "c@d"]},
                 {"channel_id": tid, "uids": ["b"], "ttl": 1}):
        assert_error(api.post(TMP, json=body), 400)
    assert info(api, tid, 8) == before
    assert subscribers(api, tid, 8) == ["a"]


# Validation order and messages: WuKongIM's, from its documentation of
# /tmpchannel/subscriber_set, in English.
EMPTY = "channel_id cannot be empty"
SPECIAL = "channel ID cannot contain special characters"
NO_UIDS = "uids cannot be empty"

ORDER_CASES: list[tuple[str, dict[str, Any], str | None, str | None]] = [
    ("empty id", {"channel_id": "", "uids": ["a"]}, EMPTY, "channel_id_empty"),
    ("blank id", {"channel_id": "   ", "uids": ["a"]}, EMPTY, "channel_id_empty"),
    ("empty id before empty uids", {"channel_id": "", "uids": []}, EMPTY, "channel_id_empty"),
    ("at", {"channel_id": "tmp@1", "uids": ["a"]}, SPECIAL, "channel_id_special_char"),
    ("hash", {"channel_id": "tmp#1", "uids": ["a"]}, SPECIAL, "channel_id_special_char"),
    ("ampersand", {"channel_id": "tmp&1", "uids": ["a"]}, SPECIAL, "channel_id_special_char"),
    ("space", {"channel_id": "tmp 1", "uids": ["a"]}, SPECIAL, "channel_id_special_char"),
    ("control", {"channel_id": "tmp\x011", "uids": ["a"]}, SPECIAL, "channel_id_special_char"),
    ("special before empty uids", {"channel_id": "a@b", "uids": []}, SPECIAL,
     "channel_id_special_char"),
    ("special before length", {"channel_id": "@" + "x" * MAX_ID, "uids": ["a"]}, SPECIAL,
     "channel_id_special_char"),
    ("65 chars", {"channel_id": "x" * (MAX_ID + 1), "uids": ["a"]}, None, "channel_id_too_long"),
    ("length before empty uids", {"channel_id": "x" * (MAX_ID + 1), "uids": []}, None,
     "channel_id_too_long"),
    ("empty uids", {"channel_id": "VALID", "uids": []}, NO_UIDS, "uids_empty"),
    ("missing uids", {"channel_id": "VALID"}, NO_UIDS, "uids_empty"),
]


@pytest.mark.parametrize(("body", "msg", "code"), [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])
def test_validation_order_and_messages(api: httpx.Client, tid: str, body: dict[str, Any],
                                       msg: str | None, code: str | None) -> None:
    if body["channel_id"] == "VALID":
        body = {**body, "channel_id": tid}
    assert_error(api.post(TMP, json=body), 400, code, msg=msg)
    assert info(api, tid, 8) is None


def test_missing_channel_id_is_400(api: httpx.Client) -> None:
    assert_error(api.post(TMP, json={"uids": ["a"]}), 400, names="channel_id")


@pytest.mark.parametrize("bad", ["", " ", "a@b", "a#b", "a&b", "a b", "x" * 65, 7, None,
                                 ["a"]])
def test_bad_uid_in_list(api: httpx.Client, tid: str, bad: Any) -> None:
    r = api.post(TMP, json={"channel_id": tid, "uids": ["good", bad]})
    assert_error(r, 400, "uid_invalid")
    assert info(api, tid, 8) is None


def test_64_char_id_is_fine(api: httpx.Client, tid: str) -> None:
    cid = (tid + "y" * MAX_ID)[:MAX_ID]
    ok(api, TMP, {"channel_id": cid, "uids": ["a"]})
    assert subscribers(api, cid, 8) == ["a"]
