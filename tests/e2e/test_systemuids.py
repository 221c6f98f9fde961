"""System accounts: /user/systemuids_add, /user/systemuids_remove, GET /user/systemuids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import assert_error, check, ok, system_uids


def test_add_get_remove(api: httpx.Client, ids: Callable[[str], str]) -> None:
    a, b = sorted([ids("sys"), ids("sys")])
    ok(api, "/user/systemuids_add", {"uids": [b, a, a, f" {b} "]})
    got = system_uids(api)
    assert a in got and b in got
    assert got.count(a) == got.count(b) == 1
    ok(api, "/user/systemuids_add", {"uids": [a]})  # idempotent
    ok(api, "/user/systemuids_remove", {"uids": [a, ids("never")]})
    got = system_uids(api)
    assert a not in got and b in got
    ok(api, "/user/systemuids_remove", {"uids": [a]})  # absent: still ok
    ok(api, "/user/systemuids_remove", {"uids": [b]})
    assert b not in system_uids(api)


@pytest.mark.parametrize("path", ["/user/systemuids_add", "/user/systemuids_remove"])
@pytest.mark.parametrize(("body", "code"), [
    ({"uids": []}, "uids_empty"),
    ({}, "field_missing"),
    ({"uids": None}, "field_missing"),
    ({"uids": "abc"}, None),
    ({"uids": {"a": 1}}, None),
    ({"uids": ["NEW", "bad@uid"]}, "uid_invalid"),
    ({"uids": ["NEW", ""]}, "uid_invalid"),
    ({"uids": ["NEW", 5]}, "uid_invalid"),
    ({"uids": ["NEW", "x" * 65]}, "uid_invalid"),
])
def test_invalid_bodies_change_nothing(api: httpx.Client, ids: Callable[[str], str], path: str,
                                       body: dict[str, Any], code: str | None) -> None:
    existing, new = ids("sys"), ids("sys")
    ok(api, "/user/systemuids_add", {"uids": [existing]})
    if isinstance(body.get("uids"), list):
        body = {"uids": [new if u == "NEW" else u for u in body["uids"]]}
        if path.endswith("_remove"):
            body["uids"] = [existing if u == new else u for u in body["uids"]]
    assert_error(api.post(path, json=body), 400, code, names="uids")
    got = system_uids(api)
    assert existing in got and new not in got


def test_runtime_system_account_changes_decisions(api: httpx.Client,
                                                  ids: Callable[[str], str]) -> None:
    gid, user = ids("g"), ids("u")
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "ban": 1})
    assert check(api, user, gid, 2) == 19
    ok(api, "/user/systemuids_add", {"uids": [user]})
    assert check(api, user, gid, 2) == 1
    ok(api, "/user/systemuids_remove", {"uids": [user]})
    assert check(api, user, gid, 2) == 19
