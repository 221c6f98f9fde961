"""A model check over HTTP: random sequences of channel writes against one group, compared after
every step with a plain-Python model of the channel routes (sets, flags, "flags left out keep
their value", empty lists refused) and of the permission decision's group branch (for every
user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import get_list, info, new_id, reason_of, subscribers

USERS = ["u0", "u1", "u2", "u3"]
LISTS = {"subscriber": "sub", "whitelist": "wl", "blacklist": "bl"}


@dataclass
class Model:
    flags: dict[str, int] = field(default_factory=lambda: {"ban": 0, "send_ban": 0})
    sub: set[str] = field(default_factory=set)
    wl: set[str] = field(default_factory=set)
    bl: set[str] = field(default_factory=set)

    def decide(self, uid: str) -> int:
        if self.flags["ban"]:
            return 19
        if uid in self.bl:
            return 4
        if uid not in self.sub:
            return 3
        if self.flags["send_ban"] and uid not in self.wl:
            return 25
        if self.wl and uid not in self.wl:
            return 13
        return 1


uid_sets = st.lists(st.sampled_from(USERS), max_size=4)
flag_sets = st.dictionaries(st.sampled_from(["ban", "send_ban"]), st.integers(0, 1))

OPS = st.one_of(
    st.tuples(st.sampled_from(["/channel/subscriber_add", "/channel/subscriber_remove"]),
              uid_sets, st.just(0)),
    st.tuples(st.just("/channel/subscriber_add"), uid_sets, st.just(1)),  # reset
    st.tuples(st.sampled_from([f"/channel/{n}_{op}" for n in ("whitelist", "blacklist")
                               for op in ("add", "remove", "set")]), uid_sets, st.just(0)),
    st.tuples(st.sampled_from(["/channel/whitelist_remove_all", "/channel/blacklist_remove_all",
                               "/channel/subscriber_remove_all"]), st.just([]), st.just(0)),
    st.tuples(st.just("/channel/info"), flag_sets, st.just(0)),
    st.tuples(st.just("/channel"), st.tuples(flag_sets, uid_sets), st.integers(0, 1)),
)


def apply(model: Model, path: str, arg: Any, reset: int) -> tuple[dict[str, Any], int]:
    """The request body for one op, and the status the model expects (updating the model)."""
    body: dict[str, Any] = {}
    if path == "/channel/info":
        model.flags.update(arg)
        return dict(arg), 200
    if path == "/channel":
        flags, uids = arg
        model.flags.update(flags)
        model.sub = set(uids) if reset else model.sub | set(uids)
        return {**flags, "subscribers": uids, "reset": reset}, 200
    name = path.rsplit("/", 1)[1]
    target, _, op = name.partition("_")
    attr = LISTS[target]
    if op == "remove_all":
        setattr(model, attr, set())
        return body, 200
    key = "subscribers" if target == "subscriber" else "uids"
    body[key] = arg
    if reset:
        body["reset"] = 1
    if not arg and op in ("add", "remove") and not reset:
        return body, 400  # uids_empty: nothing changes
    current: set[str] = getattr(model, attr)
    if op == "add":
        setattr(model, attr, set(arg) if reset else current | set(arg))
    elif op == "remove":
        setattr(model, attr, current - set(arg))
    else:  # set
        setattr(model, attr, set(arg))
    return body, 200


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=12))
def test_random_writes_match_the_model(session_api: httpx.Client,
                                       ops: list[tuple[str, Any, int]]) -> None:
    api = session_api
    gid = new_id("model")
    model = Model()
    r = api.post("/channel", json={"channel_id": gid, "channel_type": 2})
    assert r.status_code == 200
    for path, arg, reset in ops:
        body, status = apply(model, path, arg, reset)
        r = api.post(path, json={"channel_id": gid, "channel_type": 2, **body})
        assert r.status_code == status, (path, body, r.text)
        assert subscribers(api, gid, 2) == sorted(model.sub)
        assert get_list(api, "whitelist", gid, 2) == sorted(model.wl)
        assert get_list(api, "blacklist", gid, 2) == sorted(model.bl)
        data = info(api, gid, 2)
        assert data is not None
        assert {k: data[k] for k in model.flags} == model.flags
        r = api.post("/permission/check_batch", json={"checks": [
            {"from_uid": u, "channel_id": gid, "channel_type": 2} for u in USERS]})
        assert [reason_of(x) for x in r.json()["results"]] == [model.decide(u) for u in USERS]
