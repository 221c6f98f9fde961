"""HTTP conventions of the JSON API: JSON decoding, content types, body size, methods, unknown
routes, the manager token and /health. Also: no request, however odd, is answered with a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import (
    CURL_FORM_CT,
    JSON_CT,
    MAX_BODY,
    RawConnection,
    assert_error,
    assert_ok,
    client_for,
    get_list,
    info,
    new_id,
    ok,
    post_raw,
    snapshot,
    subscribers,
)
from tests.server_process import ServerProcess

# Every WuKongIM-style JSON route with a body that would succeed (ids filled in per test).
POST_ROUTES = [
    "/channel", "/channel/info", "/channel/delete", "/channel/subscriber_add",
    "/channel/subscriber_remove", "/channel/subscriber_remove_all",
    *[f"/channel/{n}_{op}" for n in ("whitelist", "blacklist")
      for op in ("add", "set", "remove", "remove_all")],
    "/tmpchannel/subscriber_set", "/user/systemuids_add", "/user/systemuids_remove",
    "/permission/check", "/permission/check_batch",
]
GET_ROUTES = ["/channel/info", "/channel/subscribers", "/channel/whitelist", "/channel/blacklist",
              "/user/systemuids"]


def _valid_body(path: str, gid: str, uid: str) -> dict[str, Any]:
    base: dict[str, Any] = {"channel_id": gid, "channel_type": 2}
    if path.startswith("/channel/subscriber_") and not path.endswith("_all"):
        base["subscribers"] = [uid]
    elif path.endswith(("_add", "_set", "_remove")):
        base["uids"] = [uid]
    if path == "/permission/check":
        base["from_uid"] = uid
    if path == "/permission/check_batch":
        base = {"checks": [{"from_uid": uid, "channel_id": gid, "channel_type": 2}]}
    return base


# -- JSON decoding ----------------------------------------------------------------------------

MALFORMED = [
    ("truncated", '{"channel_id": "g", '),
    ("trailing comma", '{"channel_id": "g", "channel_type": 2,}'),
    ("single quotes", "{'channel_id': 'g', 'channel_type': 2}"),
    ("bare word", "hello"),
    ("two objects", '{"channel_type": 2}{"channel_type": 2}'),
    ("empty", ""),
    ("whitespace", "  \n "),
    ("invalid utf-8", b'{"channel_id": "\xff\xfe", "channel_type": 2}'),
]


@pytest.mark.parametrize("raw", [c[1] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
@pytest.mark.parametrize("path", POST_ROUTES)
def test_malformed_json(api: httpx.Client, path: str, raw: str | bytes) -> None:
    assert_error(post_raw(api, path, raw), 400, "invalid_json")


NON_OBJECTS = ["[]", '[{"channel_id": "g", "channel_type": 2}]', '"g"', "2", "true", "null"]


@pytest.mark.parametrize("raw", NON_OBJECTS)
@pytest.mark.parametrize("path", POST_ROUTES)
def test_body_not_an_object(api: httpx.Client, path: str, raw: str) -> None:
    assert_error(post_raw(api, path, raw), 400)


def test_rejected_json_changes_nothing(api: httpx.Client) -> None:
    gid = new_id("g")
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    before = snapshot(api, gid, 2)
    good = json.dumps({"channel_id": gid, "channel_type": 2, "subscribers": ["b"], "reset": 1})
    assert_error(post_raw(api, "/channel", good[:-1]), 400, "invalid_json")
    assert_error(post_raw(api, "/channel", f"[{good}]"), 400)
    assert snapshot(api, gid, 2) == before


def test_deeply_nested_json_is_a_400(api: httpx.Client) -> None:
    # 200 000 nested arrays are 400 kB, far below the body limit; decoding them must not crash
    gid = new_id("g")
    raw = '{"channel_id": "' + gid + '", "channel_type": 2, "x": ' + "[" * 200_000 \
        + "]" * 200_000 + "}"
    r = post_raw(api, "/channel", raw)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert_error(r, 400)
        assert info(api, gid, 2) is None


@pytest.mark.parametrize("where", ["channel_id", "uid"])
def test_lone_surrogate_in_an_id_is_a_400(api: httpx.Client, where: str) -> None:
    # JSON may spell an unpaired UTF-16 surrogate ("\ud800"); it is no character of any id
    gid = new_id("g")
    cid = gid + "\\ud800" if where == "channel_id" else gid
    uid = "u\\udc00" if where == "uid" else "u"
    raw = '{"channel_id": "' + cid + '", "channel_type": 2, "subscribers": ["' + uid + '"]}'
    assert_error(post_raw(api, "/channel", raw), 400)
    assert info(api, gid, 2) is None


def test_huge_number_is_a_400(api: httpx.Client) -> None:
    raw = '{"channel_id": "' + new_id("g") + '", "channel_type": ' + "9" * 5000 + "}"
    assert_error(post_raw(api, "/channel", raw), 400)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_a_400(api: httpx.Client, value: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259): malformed. 1e400 is JSON syntax, but no integer
    # type: a 400 either way (as malformed, or as a wrong type of channel_type), never a 500.
    gid = new_id("g")
    raw = '{"channel_id": "' + gid + '", "channel_type": ' + value + "}"
    body = assert_error(post_raw(api, "/channel", raw), 400)
    assert body["code"] in ("invalid_json", "field_type"), body
    if body["code"] == "field_type":
        assert "channel_type" in body["msg"]
    assert info(api, gid, 2) is None


def test_unicode_escapes_in_ids(api: httpx.Client) -> None:
    gid = new_id("g")
    raw = '{"channel_id": "' + gid + '", "channel_type": 2, "subscribers": ["\\u7528\\u6237"]}'
    assert_ok(post_raw(api, "/channel", raw))
    assert subscribers(api, gid, 2) == ["用户"]


# -- content types ----------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    JSON_CT, "application/json; charset=utf-8", "APPLICATION/JSON", CURL_FORM_CT,
    "text/plain", "application/vnd.api+json", None,
], ids=["json", "json-charset", "json-upper", "curl-default-form", "text-plain", "plus-json",
        "none"])
def test_json_body_is_read_whatever_the_content_type(api: httpx.Client,
                                                     content_type: str | None) -> None:
    gid = new_id("g")
    raw = json.dumps({"channel_id": gid, "channel_type": 2, "subscribers": ["a"]})
    assert_ok(post_raw(api, "/channel", raw, content_type))
    assert subscribers(api, gid, 2) == ["a"]


@pytest.mark.parametrize(("content_type", "raw"), [
    ("text/plain", "channel_id=g&channel_type=2"),
    ("application/xml", "<channel><channel_id>g</channel_id></channel>"),
    ("text/html", "<html></html>"),
    ("multipart/form-data; boundary=xyz", "--xyz\r\n\r\nhello\r\n--xyz--\r\n"),
    ("application/octet-stream", b"\x00\x01\x02\xff"),
])
@pytest.mark.parametrize("path", ["/channel", "/channel/whitelist_set",
                                  "/tmpchannel/subscriber_set", "/permission/check"])
def test_non_json_body_with_non_json_type_is_415(api: httpx.Client, path: str,
                                                 content_type: str, raw: str | bytes) -> None:
    assert_error(post_raw(api, path, raw, content_type), 415, "not_json")


@pytest.mark.parametrize("content_type", [JSON_CT, CURL_FORM_CT, None])
def test_non_json_body_with_json_or_form_type_is_400(api: httpx.Client,
                                                     content_type: str | None) -> None:
    assert_error(post_raw(api, "/channel", "channel_id=g&channel_type=2", content_type), 400,
                 "invalid_json")


# -- body size --------------------------------------------------------------------------------

def _padded(body: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(body).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_body_of_exactly_4_mib_is_accepted(api: httpx.Client) -> None:
    gid = new_id("g")
    raw = _padded({"channel_id": gid, "channel_type": 2, "subscribers": ["a"]}, MAX_BODY)
    assert len(raw) == MAX_BODY
    assert_ok(post_raw(api, "/channel", raw))
    assert subscribers(api, gid, 2) == ["a"]


@pytest.mark.parametrize("extra", [1, 1024 * 1024])
def test_body_over_4_mib_is_413(shared_server: ServerProcess, api: httpx.Client,
                                extra: int) -> None:
    gid = new_id("g")
    raw = _padded({"channel_id": gid, "channel_type": 2, "subscribers": ["a"]},
                  MAX_BODY + extra)
    # a connection of its own: see test_connection_is_usable_after_a_413 for reusing it
    with client_for(shared_server.url, TOKEN, keep_alive=False) as c:
        assert_error(post_raw(c, "/channel", raw), 413, "body_too_large")
    assert info(api, gid, 2) is None


# -- keep-alive connections after early answers ----------------------------------------------
# Gateways call Roster through pooled HTTP/1.1 clients. An answer given before the request body
# was read (403 from the token check, 404/405 from routing, 413 from the size check) must leave
# the connection usable (body drained) or close it (Connection: close); a pooled client must
# never hang on it. Elsewhere such requests go on connections of their own (keep_alive=False).

KEEP_ALIVE_TIMEOUT_S = 2.0  # loopback answers take milliseconds


@pytest.mark.parametrize(("method", "path", "token", "status"), [
    ("POST", "/channel/delete", None, 403),
    ("POST", "/channel/whitelist_set", "wrong-token", 403),
    ("POST", "/channel/nope", TOKEN, 404),
    ("PUT", "/channel/delete", TOKEN, 405),
    ("POST", "/health", None, 405),
])
@pytest.mark.parametrize("body_size", [100, 50_000])
def test_connection_is_usable_after_an_answer_before_the_body(
        shared_server: ServerProcess, method: str, path: str, token: str | None, status: int,
        body_size: int) -> None:
    body = _padded({"channel_id": new_id("g"), "channel_type": 2}, body_size)
    headers = {"Content-Type": JSON_CT, "Content-Length": str(len(body))}
    if token:
        headers["token"] = token
    with RawConnection(shared_server.url, KEEP_ALIVE_TIMEOUT_S) as conn:
        conn.send(conn.request_head(method, path, headers))
        # the body goes only once the answer is out, so it always arrives after the answer
        assert conn.wait_readable(KEEP_ALIVE_TIMEOUT_S), f"{method} {path} awaited its body"
        conn.send(body)
        try:
            got, resp_headers, _ = conn.read_response()
        except TimeoutError:
            raise AssertionError(f"no answer to {method} {path} within "
                                 f"{KEEP_ALIVE_TIMEOUT_S} s of its body") from None
        assert got == status
        if resp_headers.get("connection", "").lower() == "close":
            assert conn.closed_by_peer(), "said Connection: close but kept the connection"
            return
        conn.send(conn.request_head("GET", "/health", {}))
        try:
            got, _, answer = conn.read_response()
        except (TimeoutError, EOFError) as exc:
            raise AssertionError(
                f"after a {status} answered before its {body_size}-byte body arrived, the next "
                f"request on the same keep-alive connection got no answer ({exc!r})"
            ) from None
        assert got == 200, answer


def _next_request_answers(c: httpx.Client, what: str) -> None:
    try:
        r = c.get("/health")
    except httpx.TimeoutException:
        raise AssertionError(
            f"after {what}, the next request on the same keep-alive connection got no answer "
            f"within {KEEP_ALIVE_TIMEOUT_S} s"
        ) from None
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("extra", [1, 1024 * 1024])
def test_connection_is_usable_after_a_413(shared_server: ServerProcess, extra: int) -> None:
    raw = _padded({"channel_id": new_id("g"), "channel_type": 2}, MAX_BODY + extra)
    with client_for(shared_server.url, TOKEN, timeout=KEEP_ALIVE_TIMEOUT_S) as c:
        assert_error(post_raw(c, "/channel", raw), 413, "body_too_large")
        _next_request_answers(c, "a 413 answer")


# -- methods and routes -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_connections(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    """Manager-token client with a connection per request, for answers given before the body
    is read (test_connection_is_usable_after_early_answers covers those on one connection)."""
    with client_for(shared_server.url, TOKEN, keep_alive=False) as c:
        yield c


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [p for p in POST_ROUTES if p not in GET_ROUTES])
def test_wrong_method_on_post_routes(own_connections: httpx.Client, path: str,
                                     method: str) -> None:
    r = own_connections.request(method, path, json=_valid_body(path, "g", "u"))
    assert_error(r, 405, "method_not_allowed", names=method)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", [*[p for p in GET_ROUTES if p != "/channel/info"], "/health"])
def test_wrong_method_on_get_routes(own_connections: httpx.Client, path: str,
                                    method: str) -> None:
    r = own_connections.request(method, path, json={"channel_id": "g", "channel_type": 2})
    assert_error(r, 405, "method_not_allowed")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_on_channel_info(own_connections: httpx.Client, method: str) -> None:
    gid = new_id("g")
    r = own_connections.request(method, "/channel/info", json={"channel_id": gid,
                                                                "channel_type": 2})
    assert_error(r, 405, "method_not_allowed")
    assert_error(own_connections.get("/channel/info", params={"channel_id": gid,
                                                              "channel_type": 2}), 404)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("GET", "/nope"), ("POST", "/nope"), ("POST", "/channel/nope"),
    ("POST", "/channel/whitelist_clear"), ("GET", "/channel/info/extra"),
    ("POST", "/tmpchannel/subscriber_add"), ("GET", "/user"), ("POST", "/permission"),
    ("GET", "/channels"),
])
def test_unknown_route_is_404(own_connections: httpx.Client, method: str, path: str) -> None:
    body = {"channel_id": "g", "channel_type": 2} if method == "POST" else None
    assert_error(own_connections.request(method, path, json=body), 404)


# -- manager token ----------------------------------------------------------------------------

FORBIDDEN = {"status": 403, "msg": "no management permission"}


def _assert_forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert {k: body[k] for k in FORBIDDEN} == FORBIDDEN, body


@pytest.mark.parametrize("headers", [{}, {"token": "wrong"}, {"token": ""},
                                     {"token": TOKEN + "x"}, {"token": TOKEN[:-1]},
                                     {"Authorization": f"Bearer {TOKEN}"},
                                     {"token": TOKEN.upper()}],
                         ids=["missing", "wrong", "empty", "longer", "prefix", "bearer", "case"])
def test_token_required_on_every_route(shared_server: ServerProcess, api: httpx.Client,
                                       headers: dict[str, str]) -> None:
    gid, uid = new_id("g"), new_id("u")
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": [uid]})
    before = snapshot(api, gid, 2)
    newcomer = new_id("n")
    # one connection per request: test_connection_is_usable_after_403s covers reusing one
    with client_for(shared_server.url, keep_alive=False) as anon:
        for path in POST_ROUTES:
            _assert_forbidden(anon.post(path, json=_valid_body(path, gid, newcomer),
                                        headers=headers))
        for path in GET_ROUTES:
            _assert_forbidden(anon.get(path, params={"channel_id": gid, "channel_type": 2},
                                       headers=headers))
    assert snapshot(api, gid, 2) == before
    assert info(api, gid, 8) is None
    assert newcomer not in api.get("/user/systemuids").json()


def test_token_header_name_is_case_insensitive(shared_server: ServerProcess) -> None:
    with client_for(shared_server.url, keep_alive=False) as anon:
        r = anon.get("/user/systemuids", headers={"Token": TOKEN})
        assert r.status_code == 200, r.text


def test_health_is_open(shared_server: ServerProcess) -> None:
    with client_for(shared_server.url, keep_alive=False) as anon:
        for headers in ({}, {"token": "wrong"}, {"token": TOKEN}):
            r = anon.get("/health", headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "ok"
            assert type(body["lsn"]) is int and body["lsn"] >= 0


def test_health_lsn_moves_with_writes(api: httpx.Client) -> None:
    first = api.get("/health").json()["lsn"]
    ok(api, "/channel", {"channel_id": new_id("g"), "channel_type": 2})
    assert api.get("/health").json()["lsn"] > first


def test_success_body_is_exactly_status_ok(api: httpx.Client) -> None:
    r = api.post("/channel", json={"channel_id": new_id("g"), "channel_type": 2})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(JSON_CT)
    assert r.json() == {"status": "ok"}


def test_get_list_answers_are_json_arrays(api: httpx.Client) -> None:
    uid = new_id("u")
    r = api.get("/channel/whitelist", params={"channel_id": uid, "channel_type": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith(JSON_CT)
    assert r.json() == []
    assert get_list(api, "blacklist", uid, 1) == []
