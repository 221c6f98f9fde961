"""The RongCloud-compatible signed routes against a real ``roster serve``.

A real signing client, both as the official SDKs sign (``RC-`` headers, millisecond timestamp)
and as the documentation does (plain headers, seconds), and every error code of RongCloud's
documentation of /user/subscribe/set.json and of its signature rule:
26001, 26021 (partial success), 26022, 1004, 1001 and 1008.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN
from tests.e2e.helpers import client_for, new_id, running
from tests.e2e.presence_helpers import (
    CHECK_ONLINE,
    FOLLOWERS,
    KEY,
    QUERY,
    SECRET,
    SET,
    RcClient,
    report,
    sha1_hex,
)
from tests.server_process import ServerProcess

MAX_PER_USER = 5
MAX_FOLLOWERS = 3


@pytest.fixture(scope="module")
def rc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Signed routes on, small limits so both can be reached, a rate limit out of the way."""
    with running(tmp_path_factory.mktemp("rc") / "data", "--rc-app-key", KEY,
                 "--rc-app-secret", SECRET, "--sub-max-per-user", str(MAX_PER_USER),
                 "--sub-max-followers", str(MAX_FOLLOWERS), "--rc-rate-limit", "100000") as proc:
        yield proc


@pytest.fixture(scope="module")
def http(rc_server: ServerProcess) -> Iterator[httpx.Client]:
    """No manager token: the RongCloud routes must not need it."""
    with client_for(rc_server.url) as c:
        yield c


@pytest.fixture(scope="module")
def api(rc_server: ServerProcess) -> Iterator[httpx.Client]:
    with client_for(rc_server.url, TOKEN) as c:
        yield c


@pytest.fixture(params=["sdk", "docs"])
def rc(request: pytest.FixtureRequest, http: httpx.Client) -> RcClient:
    return RcClient(http, sdk=request.param == "sdk")


def code_of(r: httpx.Response, http_status: int) -> int:
    assert r.status_code == http_status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    code: int = r.json()["code"]
    return code


# -- the routes, signed both ways ----------------------------------------------------------------


def test_subscribe_query_followers_check_online_and_cancel(rc: RcClient,
                                                           api: httpx.Client) -> None:
    me, a, b = new_id("me"), new_id("a"), new_id("b")
    report(api, a, 1, device_flag=2)
    before = time.time_ns() // 1_000_000
    r = rc.post(SET, {"userId": me, "subUserIds": f" {a} ,{b},{a},", "opType": 0,
                      "expiry": 600, "subType": 1})
    assert (r.status_code, r.json()) == (200, {"code": 200})
    body = rc.ok(QUERY, userId=me, subType=1)
    assert body["hasNext"] is False and body["pageToken"] == ""
    items = sorted(body["subscriptions"], key=lambda i: i["subUserIds"][0])
    assert [i["subUserIds"] for i in items] == sorted([[a], [b]])
    for item in items:
        assert item["subType"] == 1 and item["expiry"] == 600
        assert before - 5000 <= item["subTime"] <= time.time_ns() // 1_000_000 + 5000
        assert item["expireAt"] == item["subTime"] + 600_000
        assert item["online"] == ("1" if item["subUserIds"] == [a] else "0")
    assert rc.followers(a) == [me]
    assert rc.online(a) == "1" and rc.online(b) == "0"
    assert rc.ok(SET, userId=me, subUserIds=a, opType=1) == {"code": 200}
    assert rc.subscriptions(me) == [b] and rc.followers(a) == []


def test_subtype_defaults_to_online_status(rc: RcClient) -> None:
    me, t = new_id("me"), new_id("t")
    assert rc.ok(SET, userId=me, subUserIds=t, opType=0, expiry=60) == {"code": 200}
    assert rc.subscriptions(me) == [t]


def test_resubscribing_overwrites_the_expiry_and_does_not_count_again(rc: RcClient) -> None:
    me = new_id("me")
    targets = [new_id("t") for _ in range(MAX_PER_USER)]
    assert code_of(rc.subscribe(me, *targets, expiry=60), 200) == 200
    assert code_of(rc.subscribe(me, *targets, expiry=7200), 200) == 200  # not 26022
    items = rc.ok(QUERY, userId=me)["subscriptions"]
    assert {i["expiry"] for i in items} == {7200} and len(items) == MAX_PER_USER


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcClient]:
    """A signed client of a server with the default limits (the module's are tiny)."""
    with running(tmp_path_factory.mktemp("roomy") / "data", "--rc-app-key", KEY,
                 "--rc-app-secret", SECRET) as proc, client_for(proc.url) as http:
        yield RcClient(http, sdk=True)


def test_query_pages(roomy: RcClient) -> None:
    me = new_id("me")
    targets = sorted(new_id("t") for _ in range(120))
    assert code_of(roomy.subscribe(me, *targets[:60]), 200) == 200
    assert code_of(roomy.subscribe(me, *targets[60:]), 200) == 200
    first = roomy.ok(QUERY, userId=me, pageSize=50)
    second = roomy.ok(QUERY, userId=me, pageSize=50, pageToken=first["pageToken"])
    third = roomy.ok(QUERY, userId=me, pageSize=50, pageToken=second["pageToken"])
    assert [first["hasNext"], second["hasNext"], third["hasNext"]] == [True, True, False]
    seen = [i["subUserIds"][0] for p in (first, second, third) for i in p["subscriptions"]]
    assert seen == targets and third["pageToken"] == ""
    assert len(roomy.ok(QUERY, userId=me)["subscriptions"]) == 120  # default page size 200
    for t in targets[:3]:
        assert roomy.followers(t) == [me]


def test_request_id_is_echoed_on_success_and_on_errors(http: httpx.Client) -> None:
    rc = RcClient(http)
    rid = "X" * 36
    for headers in (rc.headers(), rc.headers(signature="0" * 40)):
        r = http.post(CHECK_ONLINE, data={"userId": "u"}, headers={**headers,
                                                                   "X-Request-ID": rid})
        assert r.headers["x-request-id"] == rid
    r = http.post(CHECK_ONLINE, data={"userId": "u"},
                  headers={**rc.headers(), "X-Request-ID": "Y" * 37})
    assert "x-request-id" not in r.headers and r.status_code == 200


def test_the_manager_token_is_neither_needed_nor_enough(rc_server: ServerProcess) -> None:
    with client_for(rc_server.url, TOKEN) as with_token:
        assert code_of(with_token.post(CHECK_ONLINE, data={"userId": "u"}), 401) == 1001
        assert code_of(RcClient(with_token).post(CHECK_ONLINE, {"userId": "u"}), 200) == 200
    # and the presence reports keep the manager-token rule
    with client_for(rc_server.url) as anonymous:
        r = anonymous.post("/user/presence", json={"uid": "u", "device_flag": 0, "online": 1})
        assert r.status_code == 403 and r.json()["code"] == "no_permission"


def test_unsigned_when_no_app_key_is_configured(shared_server: ServerProcess) -> None:
    """The shared server has a manager token but no App-Key: the routes are open."""
    with client_for(shared_server.url) as anonymous:
        r = anonymous.post(CHECK_ONLINE, data={"userId": new_id("u")})
        assert (r.status_code, r.json()) == (200, {"code": 200, "status": "0"})


# -- 26001: invalid parameters -----------------------------------------------------------------

LONG = "x" * 65


@pytest.mark.parametrize("form", [
    {},
    {"subUserIds": "a", "opType": "0", "expiry": "60"},  # no userId
    {"userId": "me", "opType": "0", "expiry": "60"},  # no subUserIds
    {"userId": "me", "subUserIds": " , ,", "opType": "0", "expiry": "60"},
    {"userId": "me", "subUserIds": ",".join(f"u{i}" for i in range(201)), "opType": "0",
     "expiry": "60"},
    {"userId": "me", "subUserIds": "a", "expiry": "60"},  # no opType
    {"userId": "me", "subUserIds": "a", "opType": "2", "expiry": "60"},
    {"userId": "me", "subUserIds": "a", "opType": "zero", "expiry": "60"},
    {"userId": "me", "subUserIds": "a", "opType": "0"},  # no expiry for a subscribe
    {"userId": "me", "subUserIds": "a", "opType": "0", "expiry": "59"},
    {"userId": "me", "subUserIds": "a", "opType": "0", "expiry": "2592001"},
    {"userId": "me", "subUserIds": "a", "opType": "0", "expiry": "1e3"},
    {"userId": "me", "subUserIds": "a", "opType": "0", "expiry": "60", "subType": "2"},
    {"userId": "me", "subUserIds": "a", "opType": "0", "expiry": "60", "subType": "x"},
    {"userId": "me@x", "subUserIds": "a", "opType": "0", "expiry": "60"},
    {"userId": LONG, "subUserIds": "a", "opType": "0", "expiry": "60"},
    {"userId": "me", "subUserIds": f"a,{LONG}", "opType": "0", "expiry": "60"},
    {"userId": "me", "subUserIds": "a,b c", "opType": "0", "expiry": "60"},
], ids=lambda f: "&".join(f"{k}={v[:12]}" for k, v in f.items()) or "empty")
def test_invalid_set_parameters_are_26001(rc: RcClient, form: dict[str, str]) -> None:
    r = rc.post(SET, form)
    assert code_of(r, 400) == 26001 and r.json()["msg"]


def test_200_distinct_users_are_accepted_after_trim_and_dedupe(roomy: RcClient) -> None:
    me = new_id("me")
    targets = [new_id("t") for _ in range(200)]
    listed = ",".join(f" {t} " for t in targets + targets[:50])  # 250 items, 200 distinct
    r = roomy.post(SET, {"userId": me, "subUserIds": listed, "opType": 0, "expiry": 60})
    assert code_of(r, 200) == 200
    assert sorted(roomy.subscriptions(me)) == sorted(targets)


@pytest.mark.parametrize(("path", "form"), [
    (QUERY, {}), (QUERY, {"userId": "me", "pageSize": "49"}),
    (QUERY, {"userId": "me", "pageSize": "201"}), (QUERY, {"userId": "me", "subType": "3"}),
    (QUERY, {"userId": "me", "pageToken": "bad token"}),
    (FOLLOWERS, {}), (FOLLOWERS, {"userId": "me", "pageSize": "x"}),
    (CHECK_ONLINE, {}), (CHECK_ONLINE, {"userId": "#"}),
])
def test_invalid_parameters_of_the_other_routes_are_26001(rc: RcClient, path: str,
                                                          form: dict[str, str]) -> None:
    assert code_of(rc.post(path, form), 400) == 26001


@pytest.mark.parametrize(("content", "ctype"), [
    (b"userId=%ff%fe&subUserIds=a&opType=0&expiry=60", "application/x-www-form-urlencoded"),
    (b"\xff\xfe", "application/x-www-form-urlencoded"),
    (b'{"userId": "me"}', "application/json"),
    ("&".join(f"f{i}=1" for i in range(500)).encode(), "application/x-www-form-urlencoded"),
])
def test_malformed_bodies_are_26001_never_a_500(http: httpx.Client, content: bytes,
                                                ctype: str) -> None:
    headers = {**RcClient(http).headers(), "Content-Type": ctype}
    assert code_of(http.post(SET, content=content, headers=headers), 400) == 26001


def test_multipart_forms_are_read_too(http: httpx.Client) -> None:
    rc = RcClient(http)
    me, t = new_id("me"), new_id("t")
    r = http.post(SET, files={"x": ("x", b"")}, headers=rc.headers(),
                  data={"userId": me, "subUserIds": t, "opType": "0", "expiry": "60"})
    assert code_of(r, 200) == 200 and rc.subscriptions(me) == [t]


# -- 26021 and 26022: the limits ---------------------------------------------------------------


def test_26021_lists_full_targets_and_subscribes_the_others(rc: RcClient) -> None:
    full, free = new_id("full"), new_id("free")
    for _ in range(MAX_FOLLOWERS):
        assert code_of(rc.subscribe(new_id("fan"), full), 200) == 200
    me = new_id("me")
    r = rc.subscribe(me, free, full)
    assert (r.status_code, r.json()) == (200, {"code": 26021, "subUserIds": [full]})
    assert rc.subscriptions(me) == [free]
    assert len(rc.followers(full)) == MAX_FOLLOWERS
    # nothing but full targets: still 26021, nothing applied
    other = new_id("me")
    assert rc.subscribe(other, full).json() == {"code": 26021, "subUserIds": [full]}
    assert rc.subscriptions(other) == []
    # an existing follower renews without being refused
    fan = rc.followers(full)[0]
    assert code_of(rc.subscribe(fan, full), 200) == 200


def test_26022_when_the_subscriber_would_exceed_their_limit_nothing_applied(
        rc: RcClient) -> None:
    me = new_id("me")
    held = [new_id("t") for _ in range(MAX_PER_USER - 1)]
    assert code_of(rc.subscribe(me, *held), 200) == 200
    r = rc.subscribe(me, new_id("x"), new_id("y"))
    assert code_of(r, 403) == 26022
    assert sorted(rc.subscriptions(me)) == sorted(held)
    last = new_id("z")
    assert code_of(rc.subscribe(me, last), 200) == 200  # exactly the limit is fine
    assert code_of(rc.subscribe(me, *held, last), 200) == 200  # renewals do not count again
    assert code_of(rc.subscribe(me, new_id("one-more")), 403) == 26022
    # cancelling frees a place
    assert rc.ok(SET, userId=me, subUserIds=last, opType=1) == {"code": 200}
    assert code_of(rc.subscribe(me, new_id("again")), 200) == 200


# -- 1001 and 1004: authentication -------------------------------------------------------------


def test_wrong_or_missing_app_key_is_1001(rc: RcClient, http: httpx.Client) -> None:
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, key="someone-else"), 401) == 1001
    assert code_of(http.post(CHECK_ONLINE, data={"userId": "u"}), 401) == 1001


def test_bad_signature_is_1004(rc: RcClient) -> None:
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, signature="0" * 40), 401) == 1004
    wrong_secret = RcClient(rc.http, secret="not-the-secret", sdk=rc.sdk)
    assert code_of(wrong_secret.post(CHECK_ONLINE, {"userId": "u"}), 401) == 1004


def test_missing_or_malformed_signature_headers_are_1004(rc: RcClient) -> None:
    signed = rc.headers()
    for drop in ("Nonce", "Timestamp", "Signature"):
        headers = {k: v for k, v in signed.items() if not k.endswith(drop)}
        assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, headers=headers), 401) == 1004
    longest = (new_id("n") * 4)[:64]
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, nonce=longest + "n"), 401) == 1004
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, nonce=longest), 200) == 200
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, timestamp="soon"), 401) == 1004


@pytest.mark.parametrize("offset_s", [-301, 301, -3600])
def test_a_timestamp_more_than_300_s_off_is_1004(rc: RcClient, offset_s: int) -> None:
    for ts in (str(int(time.time()) + offset_s), str(time.time_ns() // 1_000_000
                                                     + offset_s * 1000)):
        assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, timestamp=ts), 401) == 1004


def test_a_timestamp_a_little_off_is_fine(rc: RcClient) -> None:
    for offset_s in (-250, 250):
        ts = str(int(time.time()) + offset_s)
        assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, timestamp=ts), 200) == 200


def test_a_replayed_request_is_1004(rc: RcClient) -> None:
    me, t = new_id("me"), new_id("t")
    headers = rc.headers()
    form = {"userId": me, "subUserIds": t, "opType": 0, "expiry": 60}
    assert code_of(rc.post(SET, form, headers=headers), 200) == 200
    assert code_of(rc.post(SET, form, headers=headers), 401) == 1004
    # the same nonce with a fresh timestamp and signature is still a reuse
    nonce = headers["RC-Nonce" if rc.sdk else "Nonce"]
    assert code_of(rc.post(CHECK_ONLINE, {"userId": "u"}, nonce=nonce), 401) == 1004


def test_the_signature_covers_exactly_secret_nonce_timestamp(http: httpx.Client) -> None:
    nonce, ts = "14314", str(int(time.time()))
    headers = {"App-Key": KEY, "Nonce": nonce, "Timestamp": ts,
               "Signature": sha1_hex(SECRET + nonce + ts)}
    assert code_of(http.post(CHECK_ONLINE, data={"userId": "u"}, headers=headers), 200) == 200
    headers = {"App-Key": KEY, "Nonce": "14315", "Timestamp": ts,
               "Signature": sha1_hex(nonce + SECRET + ts)}
    assert code_of(http.post(CHECK_ONLINE, data={"userId": "u"}, headers=headers), 401) == 1004


# -- 1008: rate limit --------------------------------------------------------------------------


def test_beyond_the_rate_limit_is_1008_per_route(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--rc-app-key", KEY, "--rc-app-secret", SECRET,
                 "--rc-rate-limit", "3") as proc, client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        codes = [rc.post(CHECK_ONLINE, {"userId": "u"}).json()["code"] for _ in range(12)]
        assert codes.count(1008) >= 1 and codes[:3] == [200, 200, 200]
        r = rc.post(CHECK_ONLINE, {"userId": "u"})
        if r.status_code == 429:
            assert r.json()["code"] == 1008
        # another route has its own budget
        assert rc.post(QUERY, {"userId": "u"}).json()["code"] == 200
        # a bad signature is refused before it could use up the budget
        assert code_of(rc.post(QUERY, {"userId": "u"}, signature="0" * 40), 401) == 1004


def test_secrets_and_signatures_never_reach_the_log(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--rc-app-key", KEY, "--rc-app-secret", SECRET,
                 "--access-log", "--log-level", "DEBUG") as proc, client_for(proc.url) as http:
        rc = RcClient(http, sdk=True)
        sent = []
        for signature in (None, "0" * 40):
            headers = rc.headers(signature=signature)
            sent.append(headers["RC-Signature"])
            rc.post(SET, {"userId": "me", "subUserIds": "t", "opType": 0, "expiry": 60},
                    headers=headers)
        proc.stop()
        log = proc.text()
    assert "/user/subscribe/set.json" in log  # the access log did run
    assert SECRET not in log and not any(s in log for s in sent)
