"""The permission decision over HTTP: every branch of the send-permission decision, and check_batch.

Each case is a list of HTTP writes with symbolic names ("G" the channel, "A".."D" users, "S" a
system account, "R" a person-channel receiver) that the test maps to fresh ids, then one check.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.helpers import MAX_UIDS, REASONS, assert_error, check, new_id, ok, reason_of

Step = tuple[str, dict[str, Any]]


def ch(path: str, ctype: int = 2, **body: Any) -> Step:
    return (path, {"channel_id": "G" if ctype != 1 else body.pop("owner", "R"),
                   "channel_type": ctype, **body})


GROUP: list[Step] = [ch("/channel", subscribers=["A", "B", "S"])]
SYS: list[Step] = [("/user/systemuids_add", {"uids": ["S"]})]

CASES: list[tuple[str, list[Step], str, int, int]] = [
    # name, setup, sender, channel type (target is "G" for group-like, "R" for person), reason
    ("member", GROUP, "A", 2, 1),
    ("not a subscriber", GROUP, "C", 2, 3),
    ("missing group", [], "A", 2, 5),
    ("missing group, system sender", SYS, "S", 2, 5),
    ("deleted group", [*GROUP, ch("/channel/delete")], "A", 2, 5),
    ("disband", [*GROUP, ch("/channel/info", disband=1)], "A", 2, 24),
    ("disband applies to system accounts", [*SYS, *GROUP, ch("/channel/info", disband=1)],
     "S", 2, 24),
    ("disband beats ban", [*GROUP, ch("/channel/info", disband=1, ban=1)], "A", 2, 24),
    ("ban", [*GROUP, ch("/channel/info", ban=1)], "A", 2, 19),
    ("ban, non-member", [*GROUP, ch("/channel/info", ban=1)], "C", 2, 19),
    ("system beats ban", [*SYS, *GROUP, ch("/channel/info", ban=1)], "S", 2, 1),
    ("ban lifted", [*GROUP, ch("/channel/info", ban=1), ch("/channel/info", ban=0)], "A", 2, 1),
    ("blacklist", [*GROUP, ch("/channel/blacklist_add", uids=["A"])], "A", 2, 4),
    ("blacklist before subscriber check", [*GROUP, ch("/channel/blacklist_add", uids=["C"])],
     "C", 2, 4),
    ("blacklist beats whitelist",
     [*GROUP, ch("/channel/whitelist_add", uids=["A"]), ch("/channel/blacklist_add", uids=["A"])],
     "A", 2, 4),
    ("system beats blacklist", [*SYS, *GROUP, ch("/channel/blacklist_add", uids=["S"])],
     "S", 2, 1),
    ("system need not subscribe", [*SYS, ch("/channel")], "S", 2, 1),
    ("whitelist mode, not listed", [*GROUP, ch("/channel/whitelist_add", uids=["B"])],
     "A", 2, 13),
    ("whitelist mode, listed", [*GROUP, ch("/channel/whitelist_add", uids=["A"])], "A", 2, 1),
    ("whitelist does not replace membership", [*GROUP, ch("/channel/whitelist_add", uids=["C"])],
     "C", 2, 3),
    ("system beats whitelist", [*SYS, *GROUP, ch("/channel/whitelist_add", uids=["B"])],
     "S", 2, 1),
    ("whitelist_set [] ends whitelist mode",
     [*GROUP, ch("/channel/whitelist_add", uids=["B"]), ch("/channel/whitelist_set", uids=[])],
     "A", 2, 1),
    ("mute-all", [*GROUP, ch("/channel/info", send_ban=1)], "A", 2, 25),
    ("mute-all spares the whitelist",
     [*GROUP, ch("/channel/info", send_ban=1), ch("/channel/whitelist_add", uids=["A"])],
     "A", 2, 1),
    ("mute-all before whitelist mode",
     [*GROUP, ch("/channel/info", send_ban=1), ch("/channel/whitelist_add", uids=["B"])],
     "A", 2, 25),
    ("mute-all after membership", [*GROUP, ch("/channel/info", send_ban=1)], "C", 2, 3),
    ("system beats mute-all", [*SYS, *GROUP, ch("/channel/info", send_ban=1)], "S", 2, 1),
    ("large and allow_stranger change nothing for groups",
     [*GROUP, ch("/channel/info", large=1, allow_stranger=1)], "C", 2, 3),
    # rule 1: the sender's own person record
    ("own send_ban", [*GROUP, ch("/channel/info", 1, owner="A", send_ban=1)], "A", 2, 25),
    ("own send_ban before missing channel", [ch("/channel", 1, owner="A", send_ban=1)],
     "A", 2, 25),
    ("own send_ban before disband",
     [*GROUP, ch("/channel/info", disband=1), ch("/channel", 1, owner="A", send_ban=1)],
     "A", 2, 25),
    ("own send_ban, even to a person", [ch("/channel", 1, owner="A", send_ban=1)], "A", 1, 25),
    ("own send_ban lifted",
     [*GROUP, ch("/channel", 1, owner="A", send_ban=1), ch("/channel/info", 1, owner="A",
                                                           send_ban=0)], "A", 2, 1),
    ("system ignores own send_ban", [*SYS, *GROUP, ch("/channel", 1, owner="S", send_ban=1)],
     "S", 2, 1),
    ("another user's send_ban does not matter",
     [*GROUP, ch("/channel", 1, owner="B", send_ban=1)], "A", 2, 1),
    # rule 2: person channels (receiver R)
    ("person, no record", [], "A", 1, 1),
    ("person, to self despite own lists",
     [ch("/channel/blacklist_add", 1, owner="A", uids=["A"])], "A", 1, 1),
    ("person, blocked", [ch("/channel/blacklist_add", 1, uids=["A"])], "A", 1, 4),
    ("person, someone else blocked", [ch("/channel/blacklist_add", 1, uids=["B"])], "A", 1, 1),
    ("person, system beats block", [*SYS, ch("/channel/blacklist_add", 1, uids=["S"])],
     "S", 1, 1),
    ("person, friends-only stranger", [ch("/channel/whitelist_add", 1, uids=["B"])], "A", 1, 13),
    ("person, friends-only friend", [ch("/channel/whitelist_add", 1, uids=["A"])], "A", 1, 1),
    ("person, system beats friends-only", [*SYS, ch("/channel/whitelist_add", 1, uids=["B"])],
     "S", 1, 1),
    ("person, allow_stranger",
     [ch("/channel/whitelist_add", 1, uids=["B"]), ch("/channel/info", 1, allow_stranger=1)],
     "A", 1, 1),
    ("person, allow_stranger does not beat a block",
     [ch("/channel/blacklist_add", 1, uids=["A"]), ch("/channel/info", 1, allow_stranger=1)],
     "A", 1, 4),
    ("person, block beats friends",
     [ch("/channel/whitelist_add", 1, uids=["A"]), ch("/channel/blacklist_add", 1, uids=["A"])],
     "A", 1, 4),
    ("person, friends-only cleared",
     [ch("/channel/whitelist_add", 1, uids=["B"]), ch("/channel/whitelist_set", 1, uids=[])],
     "A", 1, 1),
    ("person, receiver's send_ban only stops the receiver",
     [ch("/channel", 1, send_ban=1)], "A", 1, 1),
    ("person, deleted record", [ch("/channel/blacklist_add", 1, uids=["A"]),
                                ch("/channel/delete", 1)], "A", 1, 1),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("setup", "sender", "ctype", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_decision(api: httpx.Client, setup: list[Step], sender: str, ctype: int,
                  expected: int) -> None:
    names = {n: new_id(n.lower()) for n in ("G", "A", "B", "C", "S", "R")}
    for path, body in setup:
        ok(api, path, _fill(body, names))
    target = names["R"] if ctype == 1 else names["G"]
    assert check(api, names[sender], target, ctype) == expected


def test_every_reason_code_is_driven() -> None:
    assert {c[-1] for c in CASES} == set(REASONS)


def test_check_does_not_create_anything(api: httpx.Client) -> None:
    gid, user = new_id("g"), new_id("u")
    assert check(api, user, gid, 2) == 5
    assert check(api, user, gid, 1) == 1
    assert_error(api.get("/channel/info", params={"channel_id": gid, "channel_type": 2}), 404)
    assert_error(api.get("/channel/info", params={"channel_id": gid, "channel_type": 1}), 404)


# -- check_batch ------------------------------------------------------------------------------

def test_batch_keeps_order_and_matches_single_checks(api: httpx.Client) -> None:
    gid, a, b, c = (new_id(p) for p in "gabc")
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": [a, b]})
    ok(api, "/channel/blacklist_add", {"channel_id": gid, "channel_type": 2, "uids": [b]})
    targets = [(a, gid, 2), (b, gid, 2), (c, gid, 2), (a, new_id("g"), 2), (a, c, 1),
               (a, gid, 2)]
    r = api.post("/permission/check_batch", json={"checks": [
        {"from_uid": u, "channel_id": cid, "channel_type": t} for u, cid, t in targets]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"results"}
    got = [reason_of(x) for x in body["results"]]
    assert got == [1, 4, 3, 5, 1, 1]
    assert got == [check(api, *t) for t in targets]


def test_empty_batch(api: httpx.Client) -> None:
    r = api.post("/permission/check_batch", json={"checks": []})
    assert r.status_code == 200 and r.json() == {"results": []}


def test_batch_of_10000(api: httpx.Client) -> None:
    gid = new_id("g")
    members = [f"m{i}" for i in range(0, MAX_UIDS, 2)]
    ok(api, "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": members})
    checks = [{"from_uid": f"m{i}", "channel_id": gid, "channel_type": 2}
              for i in range(MAX_UIDS)]
    r = api.post("/permission/check_batch", json={"checks": checks})
    assert r.status_code == 200, r.text
    reasons = [reason_of(x) for x in r.json()["results"]]
    assert reasons == [1 if i % 2 == 0 else 3 for i in range(MAX_UIDS)]


def test_batch_over_10000_is_refused(api: httpx.Client) -> None:
    check_one = {"from_uid": "a", "channel_id": "g", "channel_type": 2}
    r = api.post("/permission/check_batch", json={"checks": [check_one] * (MAX_UIDS + 1)})
    assert_error(r, 400, names="checks")


@pytest.mark.parametrize(("checks", "names"), [
    ([{"from_uid": "a", "channel_id": "g"}], "channel_type"),
    ([{"from_uid": "a", "channel_type": 2}], "channel_id"),
    ([{"channel_id": "g", "channel_type": 2}], "from_uid"),
    ([{"from_uid": "a", "channel_id": "g", "channel_type": 2},
      {"from_uid": "a@b", "channel_id": "g", "channel_type": 2}], "from_uid"),
    ([{"from_uid": "a", "channel_id": "g", "channel_type": "2"}], "channel_type"),
    (["not an object"], "checks"),
    ([None], "checks"),
    ("not a list", "checks"),
    ({"from_uid": "a", "channel_id": "g", "channel_type": 2}, "checks"),
])
def test_batch_validation(api: httpx.Client, checks: Any, names: str) -> None:
    assert_error(api.post("/permission/check_batch", json={"checks": checks}), 400, names=names)


def test_batch_refuses_a_bad_type_anywhere(api: httpx.Client) -> None:
    checks = [{"from_uid": "a", "channel_id": "g", "channel_type": 2},
              {"from_uid": "a", "channel_id": "g", "channel_type": 0}]
    assert_error(api.post("/permission/check_batch", json={"checks": checks}), 400,
                 "channel_type_invalid")


def test_batch_without_checks(api: httpx.Client) -> None:
    assert_error(api.post("/permission/check_batch", json={}), 400, names="checks")


@pytest.mark.parametrize(("body", "names", "code"), [
    ({"channel_id": "g", "channel_type": 2}, "from_uid", None),
    ({"from_uid": "a", "channel_type": 2}, "channel_id", None),
    ({"from_uid": "a", "channel_id": "g"}, "channel_type", None),
    ({"from_uid": "a@b", "channel_id": "g", "channel_type": 2}, "from_uid", "uid_invalid"),
    ({"from_uid": "", "channel_id": "g", "channel_type": 2}, "from_uid", "uid_invalid"),
    ({"from_uid": "a", "channel_id": "g#1", "channel_type": 2}, None, "channel_id_special_char"),
    ({"from_uid": "a", "channel_id": "", "channel_type": 2}, None, "channel_id_empty"),
    ({"from_uid": "a", "channel_id": "x" * 65, "channel_type": 2}, None, "channel_id_too_long"),
    ({"from_uid": "a", "channel_id": "g", "channel_type": 0}, None, "channel_type_invalid"),
    ({"from_uid": "a", "channel_id": "g", "channel_type": 256}, None, "channel_type_invalid"),
    ({"from_uid": "a", "channel_id": "g", "channel_type": "2"}, "channel_type", None),
    ({"from_uid": "a", "channel_id": "g", "channel_type": True}, "channel_type", None),
    ({"from_uid": "a", "channel_id": "g", "channel_type": 2.0}, "channel_type", None),
    ({"from_uid": 1, "channel_id": "g", "channel_type": 2}, "from_uid", None),
    ({"from_uid": "a", "channel_id": None, "channel_type": 2}, "channel_id", None),
])
def test_check_validation(api: httpx.Client, body: dict[str, Any], names: str | None,
                          code: str | None) -> None:
    assert_error(api.post("/permission/check", json=body), 400, code, names=names)


def test_check_ignores_unknown_fields(api: httpx.Client) -> None:
    r = api.post("/permission/check", json={"from_uid": "a", "channel_id": new_id("g"),
                                            "channel_type": 2, "client_msg_no": "x"})
    assert r.status_code == 200 and reason_of(r.json()) == 5
