"""Subscriber routes: subscriber_add / _remove / _remove_all and GET with paging."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import MAX_UIDS, assert_error, check, info, ok, q, subscribers


@pytest.mark.parametrize("type_field", [{}, {"channel_type": 0}, {"channel_type": None}],
                         ids=["missing", "zero", "null"])
def test_subscriber_add_defaults_to_group(api: httpx.Client, gid: str,
                                          type_field: dict[str, object]) -> None:
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "subscribers": ["a"], **type_field})
    data = info(api, gid, 2)
    assert data is not None and data["subscriber_count"] == 1
    assert check(api, "a", gid, 2) == 1


@pytest.mark.parametrize("ctype", [2, 3, 200])
def test_subscriber_add_creates_the_channel(api: httpx.Client, gid: str, ctype: int) -> None:
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": ctype,
                                        "subscribers": ["b", "a"]})
    assert subscribers(api, gid, ctype) == ["a", "b"]
    assert info(api, gid, 2 if ctype != 2 else 3) is None


def test_subscriber_add_is_a_set_add(api: httpx.Client, gid: str) -> None:
    body = {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b", "a", " b "]}
    ok(api, "/channel/subscriber_add", body)
    ok(api, "/channel/subscriber_add", body)  # idempotent
    ok(api, "/channel/subscriber_add", {**body, "subscribers": ["c"]})
    assert subscribers(api, gid, 2) == ["a", "b", "c"]
    data = info(api, gid, 2)
    assert data is not None and data["subscriber_count"] == 3


def test_subscriber_add_keeps_existing_flags(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "ban": 1, "large": 1})
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": ["a"]})
    data = info(api, gid, 2)
    assert data is not None and (data["ban"], data["large"]) == (1, 1)


def test_subscriber_add_reset_replaces(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": ["a", "b"]})
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": ["c"], "reset": 1})
    assert subscribers(api, gid, 2) == ["c"]
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": [], "reset": 1})
    assert subscribers(api, gid, 2) == []


def test_subscriber_add_reset_with_empty_list_creates_empty_channel(api: httpx.Client,
                                                                    gid: str) -> None:
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": [], "reset": 1})
    assert subscribers(api, gid, 2) == []


@pytest.mark.parametrize("body", [{"subscribers": []}, {}, {"subscribers": [], "reset": 0}],
                         ids=["empty", "missing", "empty-no-reset"])
def test_subscriber_add_needs_subscribers(api: httpx.Client, gid: str,
                                         body: dict[str, object]) -> None:
    r = api.post("/channel/subscriber_add", json={"channel_id": gid, "channel_type": 2, **body})
    assert_error(r, 400, "uids_empty")
    assert info(api, gid, 2) is None


def test_temp_subscriber_is_refused(api: httpx.Client, gid: str) -> None:
    r = api.post("/channel/subscriber_add", json={"channel_id": gid, "channel_type": 2,
                                                  "subscribers": ["a"], "temp_subscriber": 1})
    body = assert_error(r, 400, "temp_subscriber_unsupported")
    assert "/tmpchannel/subscriber_set" in body["msg"]
    assert info(api, gid, 2) is None
    # temp_subscriber=0 is the normal path
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": ["a"], "temp_subscriber": 0})
    assert subscribers(api, gid, 2) == ["a"]


@pytest.mark.parametrize(("method", "path", "extra"), [
    ("POST", "/channel/subscriber_add", {"subscribers": ["a"]}),
    ("POST", "/channel/subscriber_add", {"subscribers": [], "reset": 1}),
    ("POST", "/channel/subscriber_remove", {"subscribers": ["a"]}),
    ("POST", "/channel/subscriber_remove_all", {}),
    ("GET", "/channel/subscribers", {}),
])
def test_person_channels_have_no_subscribers(api: httpx.Client, uid: str, method: str,
                                             path: str, extra: dict[str, object]) -> None:
    if method == "POST":
        r = api.post(path, json={"channel_id": uid, "channel_type": 1, **extra})
    else:
        r = api.get(path, params=q(uid, 1))
    assert_error(r, 400, "person_channel_unsupported")
    assert info(api, uid, 1) is None


def test_subscriber_remove(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b", "c"]})
    ok(api, "/channel/subscriber_remove", {"channel_id": gid, "channel_type": 2,
                                           "subscribers": ["b", "zz"]})
    assert subscribers(api, gid, 2) == ["a", "c"]
    assert check(api, "b", gid, 2) == 3
    # removing absent members succeeds and changes nothing
    ok(api, "/channel/subscriber_remove", {"channel_id": gid, "channel_type": 2,
                                           "subscribers": ["b"]})
    assert subscribers(api, gid, 2) == ["a", "c"]


def test_subscriber_remove_needs_subscribers(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    for body in ({"subscribers": []}, {}):
        r = api.post("/channel/subscriber_remove", json={"channel_id": gid, "channel_type": 2,
                                                         **body})
        assert_error(r, 400, "uids_empty")
    assert subscribers(api, gid, 2) == ["a"]


def test_subscriber_remove_all(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a", "b"],
                         "send_ban": 1})
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": 2, "uids": ["a"]})
    ok(api, "/channel/subscriber_remove_all", {"channel_id": gid, "channel_type": 2})
    assert subscribers(api, gid, 2) == []
    data = info(api, gid, 2)
    assert data is not None
    assert (data["send_ban"], data["whitelist_count"]) == (1, 1)
    ok(api, "/channel/subscriber_remove_all", {"channel_id": gid, "channel_type": 2})


@pytest.mark.parametrize(("path", "extra"), [
    ("/channel/subscriber_remove", {"subscribers": ["a"]}),
    ("/channel/subscriber_remove_all", {}),
])
def test_subscriber_writes_to_missing_group_are_404(api: httpx.Client, gid: str, path: str,
                                                    extra: dict[str, object]) -> None:
    r = api.post(path, json={"channel_id": gid, "channel_type": 2, **extra})
    assert_error(r, 404, "channel_not_found")
    assert info(api, gid, 2) is None


def test_get_subscribers_of_missing_group_is_404(api: httpx.Client, gid: str) -> None:
    assert_error(api.get("/channel/subscribers", params=q(gid, 2)), 404, "channel_not_found")


def _page(api: httpx.Client, gid: str, **params: object) -> tuple[list[str], str | None]:
    r = api.get("/channel/subscribers", params=q(gid, 2, **params))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"uids", "next_cursor"}
    return body["uids"], body["next_cursor"]


def test_paging_with_limit_and_cursor(api: httpx.Client, gid: str,
                                      ids: Callable[[str], str]) -> None:
    members = [ids("m") for _ in range(25)]
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": members})
    seen: list[str] = []
    cursor: str | None = None
    pages = []
    while True:
        params: dict[str, object] = {"limit": 10}
        if cursor is not None:
            params["cursor"] = cursor
        uids, cursor = _page(api, gid, **params)
        pages.append(len(uids))
        seen += uids
        if cursor is None:
            break
        assert cursor == uids[-1]
    assert pages == [10, 10, 5]
    assert seen == sorted(members)


def test_paging_edges(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2,
                         "subscribers": ["b", "d", "f", "h"]})
    assert _page(api, gid) == (["b", "d", "f", "h"], None)
    assert _page(api, gid, limit=4) == (["b", "d", "f", "h"], None)  # exactly all: no cursor
    assert _page(api, gid, limit=3) == (["b", "d", "f"], "f")
    assert _page(api, gid, limit=1) == (["b"], "b")
    # the cursor need not be a member: uids sorted after it
    assert _page(api, gid, cursor="c") == (["d", "f", "h"], None)
    assert _page(api, gid, cursor="e", limit=1) == (["f"], "f")
    assert _page(api, gid, cursor="h") == ([], None)
    assert _page(api, gid, cursor="zzz") == ([], None)
    assert _page(api, gid, cursor="a") == (["b", "d", "f", "h"], None)


def test_paging_of_an_empty_channel(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2})
    assert _page(api, gid) == ([], None)
    assert _page(api, gid, limit=1) == ([], None)


@pytest.mark.parametrize(("params", "names"), [
    ({"limit": 0}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"cursor": "a@b"}, "cursor"),
])
def test_bad_paging_parameters(api: httpx.Client, gid: str, params: dict[str, object],
                               names: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    assert_error(api.get("/channel/subscribers", params=q(gid, 2, **params)), 400, names=names)


def test_default_and_max_limit_is_10000(api: httpx.Client, gid: str) -> None:
    first = [f"s{i:05d}" for i in range(MAX_UIDS)]
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": first})
    uids, cursor = _page(api, gid)
    assert uids == first and cursor is None
    ok(api, "/channel/subscriber_add", {"channel_id": gid, "channel_type": 2,
                                        "subscribers": ["t00000", "t00001"]})
    uids, cursor = _page(api, gid)
    assert uids == first and cursor == first[-1]
    assert _page(api, gid, cursor=cursor) == (["t00000", "t00001"], None)
    assert _page(api, gid, limit=MAX_UIDS)[0] == first
    # a larger limit is either refused or capped; never more than 10 000 uids in a page
    r = api.get("/channel/subscribers", params=q(gid, 2, limit=MAX_UIDS + 1))
    if r.status_code == 200:
        assert len(r.json()["uids"]) <= MAX_UIDS
    else:
        assert_error(r, 400, names="limit")
