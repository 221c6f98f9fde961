"""Whitelist and blacklist routes (the two lists behave the same; one table drives both)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import assert_error, check, get_list, info, ok, q

LISTS = ["whitelist", "blacklist"]
OTHER = {"whitelist": "blacklist", "blacklist": "whitelist"}


def _body(cid: str, ctype: int, **extra: object) -> dict[str, object]:
    return {"channel_id": cid, "channel_type": ctype, **extra}


@pytest.fixture
def group(api: httpx.Client, gid: str) -> str:
    ok(api, "/channel", _body(gid, 2, subscribers=["a", "b", "c"]))
    return gid


@pytest.mark.parametrize("name", LISTS)
def test_add_get_remove(api: httpx.Client, group: str, name: str) -> None:
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["c", "a", "a", " c "]))
    assert get_list(api, name, group, 2) == ["a", "c"]
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["b", "a"]))  # set-add
    assert get_list(api, name, group, 2) == ["a", "b", "c"]
    ok(api, f"/channel/{name}_remove", _body(group, 2, uids=["b", "nobody"]))
    assert get_list(api, name, group, 2) == ["a", "c"]
    ok(api, f"/channel/{name}_remove", _body(group, 2, uids=["b"]))  # absent: still ok
    assert get_list(api, name, group, 2) == ["a", "c"]
    data = info(api, group, 2)
    assert data is not None
    assert data[f"{name}_count"] == 2 and data[f"{OTHER[name]}_count"] == 0
    assert get_list(api, OTHER[name], group, 2) == []


@pytest.mark.parametrize("name", LISTS)
def test_set_replaces_in_one_step(api: httpx.Client, group: str, name: str) -> None:
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["a", "b"]))
    ok(api, f"/channel/{name}_set", _body(group, 2, uids=["c", "d", "c"]))
    assert get_list(api, name, group, 2) == ["c", "d"]


@pytest.mark.parametrize("name", LISTS)
def test_set_empty_clears(api: httpx.Client, group: str, name: str) -> None:
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["a", "b"]))
    ok(api, f"/channel/{name}_set", _body(group, 2, uids=[]))
    assert get_list(api, name, group, 2) == []


@pytest.mark.parametrize("typo", [{}, {"uid": ["x"]}, {"uids": None}],
                         ids=["absent", "typo", "null"])
@pytest.mark.parametrize("name", LISTS)
def test_set_without_uids_is_refused_and_keeps_the_list(api: httpx.Client, group: str,
                                                        name: str,
                                                        typo: dict[str, object]) -> None:
    # A replace must name its new list: a misspelt field never wipes a whitelist.
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["a", "b"]))
    r = api.post(f"/channel/{name}_set", json=_body(group, 2, **typo))
    assert_error(r, 400, "field_missing")
    assert get_list(api, name, group, 2) == ["a", "b"]


@pytest.mark.parametrize("name", LISTS)
def test_remove_all(api: httpx.Client, group: str, name: str) -> None:
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["a", "b"]))
    ok(api, f"/channel/{OTHER[name]}_add", _body(group, 2, uids=["c"]))
    ok(api, f"/channel/{name}_remove_all", _body(group, 2))
    assert get_list(api, name, group, 2) == []
    assert get_list(api, OTHER[name], group, 2) == ["c"]
    ok(api, f"/channel/{name}_remove_all", _body(group, 2))  # idempotent


@pytest.mark.parametrize("op", ["add", "remove"])
@pytest.mark.parametrize("name", LISTS)
def test_add_and_remove_need_uids(api: httpx.Client, group: str, name: str, op: str) -> None:
    ok(api, f"/channel/{name}_add", _body(group, 2, uids=["a"]))
    for extra in ({"uids": []}, {}):
        r = api.post(f"/channel/{name}_{op}", json=_body(group, 2, **extra))
        assert_error(r, 400, "uids_empty")
    assert get_list(api, name, group, 2) == ["a"]


@pytest.mark.parametrize(("suffix", "extra"), [
    ("add", {"uids": ["a"]}),
    ("set", {"uids": ["a"]}),
    ("set", {"uids": []}),
    ("remove", {"uids": ["a"]}),
    ("remove_all", {}),
])
@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize("ctype", [2, 3, 8, 255])
def test_writes_to_missing_group_like_channel_are_404(api: httpx.Client, gid: str, name: str,
                                                      suffix: str, extra: dict[str, object],
                                                      ctype: int) -> None:
    r = api.post(f"/channel/{name}_{suffix}", json=_body(gid, ctype, **extra))
    assert_error(r, 404, "channel_not_found")
    assert info(api, gid, ctype) is None


@pytest.mark.parametrize("name", LISTS)
def test_get_of_missing_group_is_404(api: httpx.Client, gid: str, name: str) -> None:
    assert_error(api.get(f"/channel/{name}", params=q(gid, 2)), 404, "channel_not_found")


@pytest.mark.parametrize("suffix", ["add", "set"])
@pytest.mark.parametrize("name", LISTS)
def test_person_channels_exist_implicitly(api: httpx.Client, uid: str, name: str,
                                         suffix: str) -> None:
    assert get_list(api, name, uid, 1) == []  # never written: empty, not 404
    ok(api, f"/channel/{name}_{suffix}", _body(uid, 1, uids=["friend", "other"]))
    assert get_list(api, name, uid, 1) == ["friend", "other"]
    data = info(api, uid, 1)
    assert data is not None and data[f"{name}_count"] == 2


@pytest.mark.parametrize("suffix", ["remove", "remove_all"])
@pytest.mark.parametrize("name", LISTS)
def test_person_channel_removals_never_404(api: httpx.Client, uid: str, name: str,
                                           suffix: str) -> None:
    extra = {"uids": ["x"]} if suffix == "remove" else {}
    r = api.post(f"/channel/{name}_{suffix}", json=_body(uid, 1, **extra))
    assert r.status_code == 200, r.text
    assert get_list(api, name, uid, 1) == []


def test_whitelist_mode_on_while_non_empty(api: httpx.Client, group: str) -> None:
    assert [check(api, u, group, 2) for u in "abc"] == [1, 1, 1]
    ok(api, "/channel/whitelist_set", _body(group, 2, uids=["a"]))
    assert [check(api, u, group, 2) for u in "abc"] == [1, 13, 13]
    ok(api, "/channel/whitelist_remove", _body(group, 2, uids=["a"]))
    assert [check(api, u, group, 2) for u in "abc"] == [1, 1, 1]
    ok(api, "/channel/whitelist_add", _body(group, 2, uids=["b"]))
    assert [check(api, u, group, 2) for u in "abc"] == [13, 1, 13]
    ok(api, "/channel/whitelist_set", _body(group, 2, uids=[]))
    assert [check(api, u, group, 2) for u in "abc"] == [1, 1, 1]
    ok(api, "/channel/whitelist_add", _body(group, 2, uids=["c"]))
    ok(api, "/channel/whitelist_remove_all", _body(group, 2))
    assert [check(api, u, group, 2) for u in "abc"] == [1, 1, 1]


def test_blacklist_beats_whitelist(api: httpx.Client, group: str) -> None:
    ok(api, "/channel/whitelist_set", _body(group, 2, uids=["a", "b"]))
    ok(api, "/channel/blacklist_set", _body(group, 2, uids=["a"]))
    assert [check(api, u, group, 2) for u in "abc"] == [4, 1, 13]
    ok(api, "/channel/blacklist_remove_all", _body(group, 2))
    assert [check(api, u, group, 2) for u in "abc"] == [1, 1, 13]


def test_lists_survive_subscriber_changes(api: httpx.Client, group: str) -> None:
    ok(api, "/channel/whitelist_add", _body(group, 2, uids=["a"]))
    ok(api, "/channel/blacklist_add", _body(group, 2, uids=["b"]))
    ok(api, "/channel/subscriber_remove_all", _body(group, 2))
    assert get_list(api, "whitelist", group, 2) == ["a"]
    assert get_list(api, "blacklist", group, 2) == ["b"]
