"""Channel routes: POST /channel, POST+GET /channel/info, /channel/delete, channel types."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import (
    FLAGS,
    assert_error,
    check,
    get_list,
    info,
    ok,
    q,
    snapshot,
    subscribers,
)


def test_create_minimal_has_defaults(api: httpx.Client, gid: str) -> None:
    before = int(time.time() * 1000)
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2})
    after = int(time.time() * 1000)
    data = info(api, gid, 2)
    assert data is not None
    assert data["channel_id"] == gid and data["channel_type"] == 2
    assert {f: data[f] for f in FLAGS} == dict.fromkeys(FLAGS, 0)
    assert data["subscriber_count"] == data["whitelist_count"] == data["blacklist_count"] == 0
    # timestamps are integer milliseconds of the wall clock (allow a little clock slack)
    assert type(data["created_at"]) is int
    assert before - 2000 <= data["created_at"] <= after + 2000
    assert data["updated_at"] == data["created_at"]


def test_get_info_of_missing_channel_is_404(api: httpx.Client, gid: str) -> None:
    assert_error(api.get("/channel/info", params=q(gid, 2)), 404, "channel_not_found")


def test_flags_present_are_set_and_omitted_flags_keep_their_value(api: httpx.Client,
                                                                  gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "ban": 1, "large": 1})
    data = info(api, gid, 2)
    assert data is not None
    assert {f: data[f] for f in FLAGS} == {"ban": 1, "disband": 0, "send_ban": 0,
                                           "allow_stranger": 0, "large": 1}
    ok(api, "/channel/info", {"channel_id": gid, "channel_type": 2, "send_ban": 1})
    data = info(api, gid, 2)
    assert data is not None
    assert {f: data[f] for f in FLAGS} == {"ban": 1, "disband": 0, "send_ban": 1,
                                           "allow_stranger": 0, "large": 1}
    # WuKongIM would zero ban/large/send_ban here (a known trap): Roster keeps them.
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "allow_stranger": 1,
                         "subscribers": ["a"]})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "ban": 0})
    data = info(api, gid, 2)
    assert data is not None
    assert {f: data[f] for f in FLAGS} == {"ban": 0, "disband": 0, "send_ban": 1,
                                           "allow_stranger": 1, "large": 1}
    assert data["subscriber_count"] == 1


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("path", ["/channel", "/channel/info"])
def test_each_flag_round_trips(api: httpx.Client, gid: str, path: str, flag: str) -> None:
    ok(api, path, {"channel_id": gid, "channel_type": 2, flag: 1})
    data = info(api, gid, 2)
    assert data is not None
    assert {f: data[f] for f in FLAGS} == {f: int(f == flag) for f in FLAGS}
    ok(api, path, {"channel_id": gid, "channel_type": 2, flag: 0})
    data = info(api, gid, 2)
    assert data is not None
    assert {f: data[f] for f in FLAGS} == dict.fromkeys(FLAGS, 0)


def test_post_channel_adds_subscribers_without_reset(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["b", "a"]})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["c", "a"]})
    assert subscribers(api, gid, 2) == ["a", "b", "c"]
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "reset": 0})
    assert subscribers(api, gid, 2) == ["a", "b", "c"]


def test_reset_replaces_subscribers(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b"]})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["c", "d"],
                         "reset": 1})
    assert subscribers(api, gid, 2) == ["c", "d"]
    assert check(api, "a", gid, 2) == 3
    assert check(api, "c", gid, 2) == 1


def test_reset_with_an_empty_list_empties_the_set(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b"],
                         "ban": 1})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": [], "reset": 1})
    assert subscribers(api, gid, 2) == []
    data = info(api, gid, 2)
    assert data is not None and data["ban"] == 1  # the reset touched only the subscribers


@pytest.mark.parametrize("path", ["/channel", "/channel/subscriber_add"])
def test_reset_without_a_list_is_refused(api: httpx.Client, gid: str, path: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b"]})
    r = api.post(path, json={"channel_id": gid, "channel_type": 2, "reset": 1})
    assert_error(r, 400, "field_missing")
    assert subscribers(api, gid, 2) == ["a", "b"]


def test_reset_keeps_the_lists(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b"]})
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": 2, "uids": ["a"]})
    ok(api, "/channel/blacklist_add", {"channel_id": gid, "channel_type": 2, "uids": ["b"]})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["c"], "reset": 1})
    assert get_list(api, "whitelist", gid, 2) == ["a"]
    assert get_list(api, "blacklist", gid, 2) == ["b"]


def test_channel_info_post_creates_and_ignores_subscribers(api: httpx.Client, gid: str) -> None:
    # "same flags, no subscribers": a subscribers field is an unknown field here, ignored
    ok(api, "/channel/info", {"channel_id": gid, "channel_type": 2, "disband": 1,
                              "subscribers": ["a"]})
    data = info(api, gid, 2)
    assert data is not None
    assert data["disband"] == 1 and data["subscriber_count"] == 0


def test_delete_removes_channel_and_all_its_sets(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "ban": 1,
                         "subscribers": ["a", "b"]})
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": 2, "uids": ["a"]})
    ok(api, "/channel/blacklist_add", {"channel_id": gid, "channel_type": 2, "uids": ["b"]})
    assert check(api, "a", gid, 2) == 19
    ok(api, "/channel/delete", {"channel_id": gid, "channel_type": 2})
    assert info(api, gid, 2) is None
    assert check(api, "a", gid, 2) == 5
    for path in ("/channel/subscribers", "/channel/whitelist", "/channel/blacklist"):
        assert_error(api.get(path, params=q(gid, 2)), 404, "channel_not_found")
    # idempotent
    ok(api, "/channel/delete", {"channel_id": gid, "channel_type": 2})
    assert info(api, gid, 2) is None
    # a re-created channel starts empty
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2})
    snap = snapshot(api, gid, 2)
    assert snap is not None
    assert {f: snap["info"][f] for f in FLAGS} == dict.fromkeys(FLAGS, 0)
    assert snap["subscribers"] == snap["whitelist"] == snap["blacklist"] == []


def test_delete_of_missing_channel_is_ok_and_creates_nothing(api: httpx.Client,
                                                             gid: str) -> None:
    ok(api, "/channel/delete", {"channel_id": gid, "channel_type": 2})
    assert info(api, gid, 2) is None
    assert check(api, "a", gid, 2) == 5


def test_delete_touches_only_that_type(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    ok(api, "/channel", {"channel_id": gid, "channel_type": 3, "subscribers": ["a"]})
    ok(api, "/channel/delete", {"channel_id": gid, "channel_type": 3})
    assert info(api, gid, 3) is None
    assert subscribers(api, gid, 2) == ["a"]


def test_disband_keeps_data_but_stops_sends(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    ok(api, "/channel/info", {"channel_id": gid, "channel_type": 2, "disband": 1})
    assert check(api, "a", gid, 2) == 24
    assert subscribers(api, gid, 2) == ["a"]


def test_person_channel_with_subscribers_is_refused(api: httpx.Client, uid: str) -> None:
    for body in ({"subscribers": ["a"]}, {"subscribers": ["a"], "reset": 1}):
        r = api.post("/channel", json={"channel_id": uid, "channel_type": 1, **body})
        assert_error(r, 400, "person_channel_unsupported")
    assert info(api, uid, 1) is None


def test_person_channel_flags_are_stored(api: httpx.Client, uid: str) -> None:
    ok(api, "/channel", {"channel_id": uid, "channel_type": 1, "allow_stranger": 1})
    data = info(api, uid, 1)
    assert data is not None
    assert data["allow_stranger"] == 1 and data["channel_type"] == 1
    assert data["subscriber_count"] == 0


def test_temporary_type_is_not_created_by_post_channel(api: httpx.Client,
                                                       ids: Callable[[str], str]) -> None:
    tid = ids("t")
    for path in ("/channel", "/channel/info"):
        r = api.post(path, json={"channel_id": tid, "channel_type": 8})
        assert_error(r, 400)
    assert info(api, tid, 8) is None


@pytest.mark.parametrize("ctype", [3, 4, 5, 6, 7, 9, 12, 100, 254, 255])
def test_other_types_behave_like_groups(api: httpx.Client, gid: str, ctype: int) -> None:
    for path, body in (("/channel/whitelist_add", {"uids": ["a"]}),
                       ("/channel/blacklist_add", {"uids": ["a"]}),
                       ("/channel/subscriber_remove", {"subscribers": ["a"]})):
        r = api.post(path, json={"channel_id": gid, "channel_type": ctype, **body})
        assert_error(r, 404, "channel_not_found")
    assert check(api, "a", gid, ctype) == 5
    ok(api, "/channel", {"channel_id": gid, "channel_type": ctype,
                         "subscribers": ["a", "b", "c"]})
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": ctype,
                                       "uids": ["a", "c"]})
    ok(api, "/channel/blacklist_add", {"channel_id": gid, "channel_type": ctype, "uids": ["c"]})
    assert [check(api, u, gid, ctype) for u in ("a", "b", "c", "d")] == [1, 13, 4, 3]
    data = info(api, gid, ctype)
    assert data is not None and data["channel_type"] == ctype
    assert (data["subscriber_count"], data["whitelist_count"], data["blacklist_count"]) == \
        (3, 2, 1)
    # the same id as a group is another channel
    assert info(api, gid, 2) is None


def test_ids_are_trimmed(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": f"  {gid}\t", "channel_type": 2,
                         "subscribers": [" a ", "b\n"]})
    assert info(api, gid, 2) is not None
    assert subscribers(api, gid, 2) == ["a", "b"]


def test_64_character_ids_after_trimming(api: httpx.Client, gid: str) -> None:
    cid = (gid + "x" * 64)[:64]
    member = ("m" * 64)
    ok(api, "/channel", {"channel_id": f" {cid} ", "channel_type": 2,
                         "subscribers": [member]})
    assert subscribers(api, cid, 2) == [member]
    assert check(api, member, cid, 2) == 1


def test_non_ascii_ids_round_trip(api: httpx.Client, gid: str) -> None:
    cid = f"群组_{gid}"
    ok(api, "/channel", {"channel_id": cid, "channel_type": 2, "subscribers": ["用户一", "ü"]})
    data = info(api, cid, 2)
    assert data is not None and data["channel_id"] == cid
    assert subscribers(api, cid, 2) == sorted(["用户一", "ü"])
    assert check(api, "用户一", cid, 2) == 1
