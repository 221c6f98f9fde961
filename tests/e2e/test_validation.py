"""Request validation, table-driven over every JSON route: status, ``code``, the field named, and
that a rejected request changes nothing (the state is read back and compared).

The ~800 cases go through the in-process app (quart's test client over ``create_app``: the same
routing, auth and validation, without a socket per request); ``test_sample_over_real_http`` sends
one case of each table to the real ``roster serve`` as well, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.app.threaded import in_process_client
from tests.conftest import TOKEN
from tests.e2e.helpers import (
    FLAGS,
    MAX_ID,
    MAX_UIDS,
    assert_error,
    client_for,
    guard,
    info,
    new_id,
    ok,
    snapshot,
)
from tests.server_process import ServerProcess

# (path, the list field it takes or None, extra body that makes it valid)
CHANNEL_ROUTES: list[tuple[str, str | None]] = [
    ("/channel", "subscribers"),
    ("/channel/info", None),
    ("/channel/delete", None),
    ("/channel/subscriber_add", "subscribers"),
    ("/channel/subscriber_remove", "subscribers"),
    ("/channel/subscriber_remove_all", None),
    *[(f"/channel/{name}_{op}", "uids") for name in ("whitelist", "blacklist")
      for op in ("add", "set", "remove")],
    ("/channel/whitelist_remove_all", None),
    ("/channel/blacklist_remove_all", None),
]
LIST_ROUTES = [(p, f) for p, f in CHANNEL_ROUTES if f is not None]
GET_ROUTES = ["/channel/info", "/channel/subscribers", "/channel/whitelist", "/channel/blacklist"]


@dataclass
class Group:
    """An existing group with something in every set, and its state as read back."""

    gid: str
    before: dict[str, Any]
    dirty: bool = False


def _make_group(api: httpx.Client) -> Group:
    gid = new_id("g")
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["s1", "s2"],
                         "large": 1})
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": 2, "uids": ["s1"]})
    ok(api, "/channel/blacklist_add", {"channel_id": gid, "channel_type": 2, "uids": ["b1"]})
    snap = snapshot(api, gid, 2)
    assert snap is not None
    return Group(gid, snap)


@pytest.fixture(scope="module")
def session_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The in-process app with the manager token; any 5xx answer fails the test."""
    with in_process_client(tmp_path_factory.mktemp("validation") / "data", TOKEN) as c:
        yield guard(c)


@pytest.fixture(scope="module")
def _pool(session_api: httpx.Client) -> list[Group]:
    return [_make_group(session_api)]


@pytest.fixture
def group(api: httpx.Client, _pool: list[Group]) -> Group:
    """The module's group, which every rejected request leaves as it was. Sharing it keeps ~1 000
    tests fast; should a request change it, ``unchanged`` fails that test and marks the group
    dirty, and the next test gets a new one (so one bug fails one test, not all that follow)."""
    if _pool[0].dirty:
        _pool[0] = _make_group(api)
    return _pool[0]


def unchanged(api: httpx.Client, g: Group) -> None:
    now = snapshot(api, g.gid, 2)
    if now != g.before:
        g.dirty = True
    assert now == g.before, "a rejected request changed the channel"


def _valid(path: str, field: str | None, gid: str, ctype: Any = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"channel_id": gid, "channel_type": ctype}
    if field is not None:
        body[field] = ["newcomer"]
    return body


# -- channel_id -------------------------------------------------------------------------------

BAD_CHANNEL_IDS: list[tuple[str, Any, str]] = [
    ("empty", "", "channel_id_empty"),
    ("blank", "   ", "channel_id_empty"),
    ("tab-newline", "\t\n", "channel_id_empty"),
    ("65 chars", "G" * (MAX_ID + 1), "channel_id_too_long"),
    ("at", "G@x", "channel_id_special_char"),
    ("hash", "G#x", "channel_id_special_char"),
    ("ampersand", "G&x", "channel_id_special_char"),
    ("inner space", "G x", "channel_id_special_char"),
    ("inner tab", "G\tx", "channel_id_special_char"),
    ("inner newline", "G\nx", "channel_id_special_char"),
    ("NUL", "G\x00x", "channel_id_special_char"),
    ("control", "G\x1bx", "channel_id_special_char"),
    ("DEL", "G\x7fx", "channel_id_special_char"),
    ("C1 control", "G\x85x", "channel_id_special_char"),
    ("ideographic space", "G\u3000x", "channel_id_special_char"),
]


def _bad_id(template: str, gid: str) -> str:
    # "G" stands for the existing group's id, so the bad id is "almost" an existing channel
    return template.replace("G", gid) if template.startswith("G") and len(template) < 10 \
        else template


@pytest.mark.parametrize(("template", "code"), [c[1:] for c in BAD_CHANNEL_IDS],
                         ids=[c[0] for c in BAD_CHANNEL_IDS])
@pytest.mark.parametrize(("path", "field"), CHANNEL_ROUTES, ids=[r[0] for r in CHANNEL_ROUTES])
def test_bad_channel_id(api: httpx.Client, group: Group, path: str,
                        field: str | None, template: str, code: str) -> None:
    gid = group.gid
    body = _valid(path, field, _bad_id(template, gid))
    assert_error(api.post(path, json=body), 400, code)
    unchanged(api, group)


@pytest.mark.parametrize("value", [123, 2.5, True, ["g"], {"id": "g"}],
                         ids=["int", "float", "bool", "list", "object"])
@pytest.mark.parametrize(("path", "field"), CHANNEL_ROUTES, ids=[r[0] for r in CHANNEL_ROUTES])
def test_channel_id_of_wrong_type(api: httpx.Client, group: Group,
                                  path: str, field: str | None, value: Any) -> None:
    assert_error(api.post(path, json=_valid(path, field, value)), 400, names="channel_id")
    unchanged(api, group)


@pytest.mark.parametrize("how", ["missing", "null"])
@pytest.mark.parametrize(("path", "field"), CHANNEL_ROUTES, ids=[r[0] for r in CHANNEL_ROUTES])
def test_channel_id_missing(api: httpx.Client, group: Group, path: str,
                            field: str | None, how: str) -> None:
    gid = group.gid
    body = _valid(path, field, gid)
    if how == "missing":
        del body["channel_id"]
    else:
        body["channel_id"] = None
    assert_error(api.post(path, json=body), 400, names="channel_id")
    unchanged(api, group)


# -- channel_type -----------------------------------------------------------------------------

BAD_TYPES: list[tuple[str, Any, str | None]] = [
    ("zero", 0, "channel_type_invalid"),
    ("negative", -1, "channel_type_invalid"),
    ("256", 256, "channel_type_invalid"),
    ("huge", 2**40, "channel_type_invalid"),
    ("string", "2", None),
    ("true", True, None),
    ("false", False, None),
    ("float", 2.0, None),
    ("list", [2], None),
    ("object", {"t": 2}, None),
]


# subscriber_add reads a channel_type of 0 as 2 (WuKongIM; test_subscribers.py covers it)
TYPE_CASES = [pytest.param(path, field, value, code, id=f"{path}-{name}")
              for path, field in CHANNEL_ROUTES for name, value, code in BAD_TYPES
              if not (path == "/channel/subscriber_add" and name == "zero")]


@pytest.mark.parametrize(("path", "field", "value", "code"), TYPE_CASES)
def test_bad_channel_type(api: httpx.Client, group: Group, path: str,
                          field: str | None, value: Any, code: str | None) -> None:
    gid = group.gid
    r = api.post(path, json=_valid(path, field, gid, value))
    assert_error(r, 400, code, names=None if code else "channel_type")
    unchanged(api, group)


def test_channel_type_zero_message(api: httpx.Client, gid: str) -> None:
    r = api.post("/channel", json={"channel_id": gid, "channel_type": 0})
    assert_error(r, 400, "channel_type_invalid", names="channel type cannot be 0")


@pytest.mark.parametrize("how", ["missing", "null"])
@pytest.mark.parametrize(("path", "field"),
                         [r for r in CHANNEL_ROUTES if r[0] != "/channel/subscriber_add"],
                         ids=[r[0] for r in CHANNEL_ROUTES if r[0] != "/channel/subscriber_add"])
def test_channel_type_missing(api: httpx.Client, group: Group, path: str,
                              field: str | None, how: str) -> None:
    gid = group.gid
    body = _valid(path, field, gid)
    if how == "missing":
        del body["channel_type"]
    else:
        body["channel_type"] = None
    assert_error(api.post(path, json=body), 400, names="channel_type")
    unchanged(api, group)


# -- uid lists --------------------------------------------------------------------------------

BAD_UIDS: list[tuple[str, Any]] = [
    ("empty", ""),
    ("blank", "  "),
    ("65 chars", "u" * (MAX_ID + 1)),
    ("at", "u@x"),
    ("hash", "u#x"),
    ("ampersand", "u&x"),
    ("space", "u x"),
    ("newline", "u\nx"),
    ("NUL", "u\x00x"),
    ("control", "u\x07x"),
    ("DEL", "u\x7f"),
    ("int", 42),
    ("null", None),
    ("bool", True),
    ("list", ["u"]),
    ("object", {"uid": "u"}),
]


@pytest.mark.parametrize("bad", [c[1] for c in BAD_UIDS], ids=[c[0] for c in BAD_UIDS])
@pytest.mark.parametrize(("path", "field"), LIST_ROUTES, ids=[r[0] for r in LIST_ROUTES])
def test_bad_uid_in_list(api: httpx.Client, group: Group, path: str,
                         field: str, bad: Any) -> None:
    gid = group.gid
    body = _valid(path, field, gid)
    body[field] = ["newcomer", "s1", bad]  # the good ones first: nothing may be applied
    assert_error(api.post(path, json=body), 400, "uid_invalid", names=field)
    unchanged(api, group)


@pytest.mark.parametrize("value", ["newcomer", 5, {"a": "b"}, True],
                         ids=["string", "int", "object", "bool"])
@pytest.mark.parametrize(("path", "field"), LIST_ROUTES, ids=[r[0] for r in LIST_ROUTES])
def test_uid_list_of_wrong_type(api: httpx.Client, group: Group, path: str,
                                field: str, value: Any) -> None:
    gid = group.gid
    body = _valid(path, field, gid)
    body[field] = value
    assert_error(api.post(path, json=body), 400, names=field)
    unchanged(api, group)


@pytest.mark.parametrize(("path", "field"), LIST_ROUTES, ids=[r[0] for r in LIST_ROUTES])
def test_too_many_uids(api: httpx.Client, group: Group, path: str,
                       field: str) -> None:
    gid = group.gid
    body = _valid(path, field, gid)
    body[field] = [f"n{i}" for i in range(MAX_UIDS + 1)]
    assert_error(api.post(path, json=body), 400, "too_many_uids", names=field)
    unchanged(api, group)


@pytest.mark.parametrize("path", ["/user/systemuids_add", "/tmpchannel/subscriber_set"])
def test_too_many_uids_elsewhere(api: httpx.Client, path: str) -> None:
    tid = new_id("t")
    body = {"channel_id": tid, "uids": [f"n{i}" for i in range(MAX_UIDS + 1)]}
    assert_error(api.post(path, json=body), 400, "too_many_uids", names="uids")
    assert info(api, tid, 8) is None
    assert "n0" not in api.get("/user/systemuids").json()


@pytest.mark.parametrize(("path", "field"), [
    ("/channel", "subscribers"),
    ("/channel/subscriber_add", "subscribers"),
    ("/channel/whitelist_add", "uids"),
    ("/channel/blacklist_set", "uids"),
])
def test_exactly_10000_uids_is_fine(api: httpx.Client, gid: str, path: str,
                                    field: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2})
    body = _valid(path, field, gid)
    body[field] = [f"n{i:05d}" for i in range(MAX_UIDS)]
    ok(api, path, body)
    data = info(api, gid, 2)
    assert data is not None
    count = {"subscribers": "subscriber_count", "uids": f"{path.split('/')[-1][:9]}_count"}
    assert data[count[field]] == MAX_UIDS


# -- flags ------------------------------------------------------------------------------------

BAD_FLAGS: list[tuple[str, Any]] = [
    ("2", 2), ("-1", -1), ("string", "1"), ("true", True), ("false", False), ("float", 1.0),
    ("list", [1]), ("object", {"v": 1}),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_FLAGS], ids=[c[0] for c in BAD_FLAGS])
@pytest.mark.parametrize(("path", "flag"), [
    *[("/channel", f) for f in (*FLAGS, "reset")],
    *[("/channel/info", f) for f in FLAGS],
    ("/channel/subscriber_add", "reset"),
    ("/channel/subscriber_add", "temp_subscriber"),
])
def test_bad_flag(api: httpx.Client, group: Group, path: str, flag: str,
                  value: Any) -> None:
    gid = group.gid
    body: dict[str, Any] = {"channel_id": gid, "channel_type": 2, "ban": 1}
    if path != "/channel/info":
        body["subscribers"] = ["newcomer"]
    body[flag] = value
    assert_error(api.post(path, json=body), 400, "flag_invalid", names=flag)
    unchanged(api, group)


# -- GET query strings ------------------------------------------------------------------------

BAD_QUERIES: list[tuple[str, dict[str, str], str | None, str | None]] = [
    ("no channel_id", {"channel_type": "2"}, None, "channel_id"),
    ("no channel_type", {"channel_id": "G"}, None, "channel_type"),
    ("type not a number", {"channel_id": "G", "channel_type": "two"}, None, "channel_type"),
    ("type 0", {"channel_id": "G", "channel_type": "0"}, "channel_type_invalid", None),
    ("type 256", {"channel_id": "G", "channel_type": "256"}, "channel_type_invalid", None),
    ("type -1", {"channel_id": "G", "channel_type": "-1"}, "channel_type_invalid", None),
    ("id with @", {"channel_id": "G@x", "channel_type": "2"}, "channel_id_special_char", None),
    ("id with space", {"channel_id": "G x", "channel_type": "2"}, "channel_id_special_char",
     None),
    ("id 65 chars", {"channel_id": "x" * 65, "channel_type": "2"}, "channel_id_too_long", None),
    ("blank id", {"channel_id": "   ", "channel_type": "2"}, "channel_id_empty", None),
]


@pytest.mark.parametrize(("params", "code", "names"), [c[1:] for c in BAD_QUERIES],
                         ids=[c[0] for c in BAD_QUERIES])
@pytest.mark.parametrize("path", GET_ROUTES)
def test_bad_query(api: httpx.Client, group: Group, path: str,
                   params: dict[str, str], code: str | None, names: str | None) -> None:
    gid = group.gid
    params = {k: v.replace("G", gid) if k == "channel_id" and v.startswith("G") else v
              for k, v in params.items()}
    assert_error(api.get(path, params=params), 400, code, names=names)


# -- unknown fields, duplicates ---------------------------------------------------------------

def test_unknown_fields_are_ignored(api: httpx.Client, gid: str) -> None:
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"],
                         "bogus": {"nested": [1, 2]}, "name": "whatever", "ban": 1,
                         "BAN": 0, "channel_type_extra": 0})
    data = info(api, gid, 2)
    assert data is not None and data["ban"] == 1 and data["subscriber_count"] == 1
    ok(api, "/channel/whitelist_add", {"channel_id": gid, "channel_type": 2, "uids": ["a"],
                                       "reason": "vip", "subscribers": ["zzz"]})
    data = info(api, gid, 2)
    assert data is not None and data["subscriber_count"] == 1 and data["whitelist_count"] == 1


# -- a sample over real HTTP ------------------------------------------------------------------

#: one case of each table above: (method, path, body or query, status, code, field named)
HTTP_SAMPLE: list[tuple[str, str, dict[str, Any], str | None, str | None]] = [
    ("POST", "/channel/whitelist_add", {"channel_id": "G@x", "channel_type": 2, "uids": ["n"]},
     "channel_id_special_char", None),
    ("POST", "/channel/subscriber_add", {"channel_id": 123, "channel_type": 2,
                                         "subscribers": ["n"]}, None, "channel_id"),
    ("POST", "/channel/delete", {"channel_type": 2}, None, "channel_id"),
    ("POST", "/channel/blacklist_set", {"channel_id": "G", "channel_type": 256, "uids": ["n"]},
     "channel_type_invalid", None),
    ("POST", "/channel/info", {"channel_id": "G", "channel_type": None}, None, "channel_type"),
    ("POST", "/channel/whitelist_set", {"channel_id": "G", "channel_type": 2,
                                        "uids": ["n", "u\x00x"]}, "uid_invalid", "uids"),
    ("POST", "/channel", {"channel_id": "G", "channel_type": 2, "subscribers": "n"},
     None, "subscribers"),
    ("POST", "/channel/blacklist_add", {"channel_id": "G", "channel_type": 2,
                                        "uids": [f"n{i}" for i in range(MAX_UIDS + 1)]},
     "too_many_uids", "uids"),
    ("POST", "/channel", {"channel_id": "G", "channel_type": 2, "subscribers": ["n"],
                          "disband": "1"}, "flag_invalid", "disband"),
    ("GET", "/channel/whitelist", {"channel_id": "G", "channel_type": "two"}, None,
     "channel_type"),
]


@pytest.fixture(scope="module")
def http_api(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    """The real ``roster serve`` of the session (the other tests here use the in-process app)."""
    with client_for(shared_server.url, TOKEN) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "body", "code", "names"), HTTP_SAMPLE,
                         ids=[f"{c[1]}-{c[3] or c[4]}" for c in HTTP_SAMPLE])
def test_sample_over_real_http(http_api: httpx.Client, method: str, path: str,
                               body: dict[str, Any], code: str | None,
                               names: str | None) -> None:
    g = _make_group(http_api)
    body = {k: v.replace("G", g.gid, 1) if k == "channel_id" and isinstance(v, str) else v
            for k, v in body.items()}
    r = http_api.get(path, params=body) if method == "GET" else http_api.post(path, json=body)
    assert_error(r, 400, code, names=names)
    unchanged(http_api, g)
