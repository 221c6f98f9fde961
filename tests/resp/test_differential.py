"""Differential tests: the permission decision asked over HTTP and over RESP must agree.

* A seeded random world (a few hundred channels of types 1, 2, 8 and others, random flags,
  subscribers, whitelists, blacklists and system accounts), built partly over HTTP and partly over
  RESP pipelines, then a few thousand random checks (unknown channels and uids included) asked
  through ``/permission/check_batch``, ``CHECKM`` and a sample through single ``CHECK``: the
  reason codes must be identical, and equal to a model of the rules written down from docs/api.md.
* A hypothesis variant: one generated op sequence applied to two mirrored universes, one over
  HTTP and one over RESP; every op must have the same outcome (ok or the same error code), and
  afterwards every check and every readable list must agree.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import new_id, ok
from tests.resp.conftest import connect
from tests.server_process import ServerProcess

FLAGS = ("ban", "disband", "send_ban", "allow_stranger", "large")
REASONS = {1, 3, 4, 5, 13, 19, 24, 25}


@pytest.fixture(scope="module")
def rc(shared_server: ServerProcess) -> Iterator[redis.Redis]:
    """A module-long RESP2 client (hypothesis does not mix with function-scoped fixtures)."""
    with connect(shared_server) as client:
        yield client


def code_of(exc: BaseException) -> str:
    return str(exc).split(" ", 1)[0]


# -- a model of the decision, from the rule list in docs/api.md ---------------------------------


@dataclass
class Channel:
    flags: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAGS, 0))
    subscribers: set[str] = field(default_factory=set)
    whitelist: set[str] = field(default_factory=set)
    blacklist: set[str] = field(default_factory=set)


@dataclass
class World:
    channels: dict[tuple[str, int], Channel] = field(default_factory=dict)
    system: set[str] = field(default_factory=set)

    def decide(self, uid: str, cid: str, ctype: int) -> int:
        own = self.channels.get((uid, 1))
        is_system = uid in self.system
        if own is not None and own.flags["send_ban"] and not is_system:
            return 25
        if ctype == 1:
            if is_system or uid == cid:
                return 1
            receiver = self.channels.get((cid, 1))
            if receiver is None:
                return 1
            if uid in receiver.blacklist:
                return 4
            if (receiver.whitelist and uid not in receiver.whitelist
                    and receiver.flags["allow_stranger"] != 1):
                return 13
            return 1
        ch = self.channels.get((cid, ctype))
        if ch is None:
            return 5
        if ch.flags["disband"]:
            return 24
        if is_system:
            return 1
        if ch.flags["ban"]:
            return 19
        if uid in ch.blacklist:
            return 4
        if uid not in ch.subscribers:
            return 3
        if ch.flags["send_ban"] and uid not in ch.whitelist:
            return 25
        if ch.whitelist and uid not in ch.whitelist:
            return 13
        return 1


def check_batch(api: httpx.Client, checks: list[tuple[str, str, int]]) -> list[int]:
    answer = api.post("/permission/check_batch", json={"checks": [
        {"from_uid": u, "channel_id": c, "channel_type": t} for u, c, t in checks]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(checks)
    for res in results:
        assert res["allowed"] is (res["reason"] == 1)
    return [res["reason"] for res in results]


def checkm(rc: redis.Redis, checks: list[tuple[str, str, int]]) -> list[int]:
    flat = [x for triple in checks for x in triple]
    out: list[int] = rc.execute_command("CHECKM", *flat)
    assert len(out) == len(checks)
    return out


# -- the seeded world -------------------------------------------------------------------------

N_USERS = 40
N_CHANNELS = 320
N_CHECKS = 4000
N_SINGLE = 400


def _flag_args(flags: dict[str, int]) -> list[str | int]:
    return [x for name, value in flags.items() for x in (name.upper(), value)]


def build(rng: random.Random, api: httpx.Client, rc: redis.Redis, tag: str) -> tuple[
        World, list[str], list[tuple[str, int]]]:
    """Create the world on the server (about half over each protocol) and return its model."""
    users = [f"{tag}u{i:02d}" for i in range(N_USERS)]
    world = World()
    made: list[tuple[str, int]] = []
    pipe = rc.pipeline(transaction=False)
    over_resp = 0

    for i in range(N_CHANNELS):
        kind = rng.choices(["person", "group", "temp", "other"], weights=[2, 4, 2, 2])[0]
        if kind == "person":
            cid, ctype = rng.choice(users), 1
            if (cid, 1) in world.channels:
                continue
        elif kind == "group":
            cid, ctype = f"{tag}g{i}", 2
        elif kind == "temp":
            cid, ctype = f"{tag}t{i}", 8
        else:
            cid, ctype = f"{tag}o{i}", rng.choice([3, 4, 7, 9, 100, 254, 255])
        p = {"ban": 0.12, "disband": 0.08, "send_ban": 0.15 if ctype != 1 else 0.12,
             "allow_stranger": 0.3, "large": 0.2}
        # some flags given as 0 explicitly, some left out (they keep their default 0)
        flags = {name: int(rng.random() < p[name]) for name in FLAGS if rng.random() < 0.7}
        subs = set() if ctype == 1 else set(rng.sample(users, rng.randint(0, 14)))
        if ctype == 8 and not subs:
            subs = {rng.choice(users)}
        wl = set(rng.sample(users, rng.randint(1, 8))) if rng.random() < 0.45 else set()
        bl = set(rng.sample(users, rng.randint(1, 5))) if rng.random() < 0.4 else set()
        ch = Channel(subscribers=subs, whitelist=wl, blacklist=bl)
        ch.flags.update(flags)
        world.channels[cid, ctype] = ch
        made.append((cid, ctype))

        if rng.random() < 0.5:  # over HTTP
            if ctype == 8:
                ok(api, "/tmpchannel/subscriber_set", {"channel_id": cid, "uids": sorted(subs),
                                                       "ttl": 3600})
                ok(api, "/channel/info", {"channel_id": cid, "channel_type": 8, **flags})
            elif ctype == 1:
                ok(api, "/channel/info", {"channel_id": cid, "channel_type": 1, **flags})
            else:
                ok(api, "/channel", {"channel_id": cid, "channel_type": ctype, **flags,
                                     "subscribers": sorted(subs)})
            for name, uids in (("whitelist", wl), ("blacklist", bl)):
                if uids or rng.random() < 0.2:
                    ok(api, f"/channel/{name}_set", {"channel_id": cid, "channel_type": ctype,
                                                      "uids": sorted(uids)})
        else:  # over RESP, pipelined
            over_resp += 1
            if ctype == 8:
                pipe.execute_command("TMP.SET", cid, *sorted(subs), "TTL", 3600)
            pipe.execute_command("CHANNEL.SET", cid, ctype, *_flag_args(flags))
            if ctype not in (1, 8):
                pipe.execute_command("SUB.SET", cid, ctype, *sorted(subs))
            if wl or rng.random() < 0.2:
                pipe.execute_command("WL.SET", cid, ctype, *sorted(wl))
            if bl:
                pipe.execute_command("BL.ADD", cid, ctype, *sorted(bl))
    assert over_resp > N_CHANNELS // 4
    assert all(reply == "OK" for reply in pipe.execute())

    # system accounts over both protocols
    system = rng.sample(users, 4)
    world.system = set(system)
    assert rc.execute_command("SYS.ADD", *system[:2]) == "OK"
    ok(api, "/user/systemuids_add", {"uids": system[2:]})

    # then some changes after the fact, again over both
    pipe = rc.pipeline(transaction=False)
    for cid, ctype in rng.sample(made, len(made) // 5):
        ch = world.channels[cid, ctype]
        resp = rng.random() < 0.5
        what = rng.choice(["delete", "unsubscribe", "flag", "unblock"])
        if what == "delete":
            del world.channels[cid, ctype]
            made.remove((cid, ctype))
            if resp:
                pipe.execute_command("CHANNEL.DEL", cid, ctype)
            else:
                ok(api, "/channel/delete", {"channel_id": cid, "channel_type": ctype})
        elif what == "unsubscribe" and ch.subscribers:
            gone = rng.sample(sorted(ch.subscribers), rng.randint(1, len(ch.subscribers)))
            ch.subscribers -= set(gone)
            if resp:
                pipe.execute_command("SUB.REM", cid, ctype, *gone)
            else:
                ok(api, "/channel/subscriber_remove", {"channel_id": cid, "channel_type": ctype,
                                                       "subscribers": gone})
        elif what == "flag":
            name = rng.choice(FLAGS)
            ch.flags[name] ^= 1
            if resp:
                pipe.execute_command("CHANNEL.SET", cid, ctype, name.upper(), ch.flags[name])
            else:
                ok(api, "/channel/info", {"channel_id": cid, "channel_type": ctype,
                                          name: ch.flags[name]})
        elif what == "unblock" and ch.blacklist:
            gone = [rng.choice(sorted(ch.blacklist))]
            ch.blacklist -= set(gone)
            if resp:
                pipe.execute_command("BL.REM", cid, ctype, *gone)
            else:
                ok(api, "/channel/blacklist_remove", {"channel_id": cid, "channel_type": ctype,
                                                      "uids": gone})
    assert all(reply == "OK" for reply in pipe.execute())
    return world, users, made


def random_checks(rng: random.Random, tag: str, users: list[str],
                  made: list[tuple[str, int]]) -> list[tuple[str, str, int]]:
    checks = []
    for j in range(N_CHECKS):
        uid = rng.choice(users) if rng.random() < 0.85 else f"{tag}x{j % 7}"
        roll = rng.random()
        if roll < 0.7:
            cid, ctype = rng.choice(made)
            if rng.random() < 0.08:  # the same id with another type
                ctype = rng.choice([1, 2, 3, 8, 255])
        elif roll < 0.85:
            cid, ctype = rng.choice(users), 1  # a person channel, with or without a record
        else:
            cid, ctype = f"{tag}nope{j % 11}", rng.choice([1, 2, 3, 8, 200])
        checks.append((uid, cid, ctype))
    return checks


def test_seeded_world_http_and_resp_agree(api: httpx.Client, rc: redis.Redis) -> None:
    rng = random.Random(20261203)
    tag = new_id("d")[2:10] + "_"
    world, users, made = build(rng, api, rc, tag)
    try:
        checks = random_checks(rng, tag, users, made)
        over_http = check_batch(api, checks)
        over_resp = checkm(rc, checks)
        model = [world.decide(*c) for c in checks]
        mismatches = [(c, h, r) for c, h, r in zip(checks, over_http, over_resp, strict=True)
                      if h != r]
        assert not mismatches, f"{len(mismatches)} checks differ, e.g. {mismatches[:5]}"
        wrong = [(c, h, m) for c, h, m in zip(checks, over_http, model, strict=True) if h != m]
        assert not wrong, f"{len(wrong)} differ from the model, e.g. {wrong[:5]}"
        # the world is varied enough that every reason code occurs
        assert set(over_resp) == REASONS, sorted(set(over_resp))

        # a sample through single CHECK (pipelined) and single /permission/check
        sample = rng.sample(range(len(checks)), N_SINGLE)
        pipe = rc.pipeline(transaction=False)
        for k in sample:
            pipe.execute_command("CHECK", *checks[k])
        assert pipe.execute() == [over_http[k] for k in sample]
        for k in sample[:60]:
            u, c, t = checks[k]
            single = api.post("/permission/check",
                              json={"from_uid": u, "channel_id": c, "channel_type": t})
            assert single.json()["reason"] == over_resp[k], checks[k]
    finally:
        assert rc.execute_command("SYS.REM", *world.system) == "OK"


# -- hypothesis: one op sequence, two mirrored universes, one per protocol ------------------------

USERS = ("a", "b", "c")
NAMES = ("g1", "g2", "a", "b")  # channel ids; "a" and "b" are also the users' person channels
TYPES = (1, 2, 8, 3)

uid_lists = st.lists(st.sampled_from(USERS), min_size=1, max_size=3)
maybe_empty = st.lists(st.sampled_from(USERS), max_size=3)
#: mostly the channels the prelude made (so ops pile up on them), sometimes any id and type
HOT = [("g1", 2), ("g2", 8), ("g2", 3), ("a", 1), ("b", 1)]
where = st.one_of(st.sampled_from(HOT), st.sampled_from(HOT),
                  st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES)))
flag_sets = st.dictionaries(st.sampled_from(FLAGS), st.integers(0, 1), max_size=3)
ops = st.one_of(
    st.tuples(st.just("channel_set"), where, flag_sets),
    st.tuples(st.just("sub_add"), where, uid_lists),
    st.tuples(st.just("sub_add"), where, uid_lists),
    st.tuples(st.just("sub_set"), where, maybe_empty),
    st.tuples(st.just("sub_rem"), where, uid_lists),
    st.tuples(st.just("sub_clear"), where, st.just([])),
    st.tuples(st.sampled_from(["wl_add", "bl_add", "wl_rem", "bl_rem"]), where, uid_lists),
    st.tuples(st.sampled_from(["wl_set", "bl_set"]), where, maybe_empty),
    st.tuples(st.sampled_from(["wl_clear", "bl_clear"]), where, st.just([])),
    st.tuples(st.just("tmp_set"), st.tuples(st.sampled_from(NAMES), st.just(8)), uid_lists),
    st.tuples(st.just("delete"), where, st.just([])),
    st.tuples(st.sampled_from(["sys_add", "sys_rem"]), st.just(("", 0)), uid_lists),
)

#: applied (over each protocol) before every generated sequence, so it starts from channels
PRELUDE: list[Any] = [
    ("sub_add", ("g1", 2), ["a", "b", "c"]),
    ("tmp_set", ("g2", 8), ["a", "b"]),
    ("channel_set", ("g2", 3), {"large": 1}),
    ("sub_add", ("g2", 3), ["c"]),
]
LIST_ROUTE = {"wl": "whitelist", "bl": "blacklist"}


def over_http(api: httpx.Client, op: tuple[str, tuple[str, int], Any], n: dict[str, str]) -> str:
    kind, (name, ctype), arg = op
    cid = n.get(name, "")
    ch = {"channel_id": cid, "channel_type": ctype}
    if kind == "channel_set":
        path, body = "/channel/info", {**ch, **arg}
    elif kind in ("sub_add", "sub_set"):
        path, body = "/channel/subscriber_add", {**ch, "subscribers": [n[u] for u in arg]}
        if kind == "sub_set":
            body["reset"] = 1
    elif kind == "sub_rem":
        path, body = "/channel/subscriber_remove", {**ch, "subscribers": [n[u] for u in arg]}
    elif kind == "sub_clear":
        path, body = "/channel/subscriber_remove_all", ch
    elif kind[:2] in LIST_ROUTE:
        how = {"add": "add", "rem": "remove", "set": "set", "clear": "remove_all"}[kind[3:]]
        path = f"/channel/{LIST_ROUTE[kind[:2]]}_{how}"
        body = ch if how == "remove_all" else {**ch, "uids": [n[u] for u in arg]}
    elif kind == "tmp_set":
        path, body = "/tmpchannel/subscriber_set", {"channel_id": cid, "ttl": 600,
                                                    "uids": [n[u] for u in arg]}
    elif kind == "delete":
        path, body = "/channel/delete", ch
    else:
        path = "/user/systemuids_add" if kind == "sys_add" else "/user/systemuids_remove"
        body = {"uids": [n[u] for u in arg]}
    answer = api.post(path, json=body)
    if answer.status_code == 200:
        assert answer.json() == {"status": "ok"}
        return "ok"
    assert answer.status_code in (400, 404), answer.text
    code: str = answer.json()["code"]
    return code


def over_resp(rc: redis.Redis, op: tuple[str, tuple[str, int], Any], n: dict[str, str]) -> str:
    kind, (name, ctype), arg = op
    cid = n.get(name, "")
    uids = [n[u] for u in arg] if isinstance(arg, list) else []
    if kind == "channel_set":
        argv: list[Any] = ["CHANNEL.SET", cid, ctype, *_flag_args(arg)]
    elif kind == "tmp_set":
        argv = ["TMP.SET", cid, *uids, "TTL", 600]
    elif kind == "delete":
        argv = ["CHANNEL.DEL", cid, ctype]
    elif kind in ("sys_add", "sys_rem"):
        argv = ["SYS.ADD" if kind == "sys_add" else "SYS.REM", *uids]
    else:
        family, how = kind.split("_")
        command = {"add": "ADD", "set": "SET", "rem": "REM", "clear": "CLEAR"}[how]
        argv = [f"{family.upper()}.{command}", cid, ctype, *uids]
    try:
        reply = rc.execute_command(*argv)
    except redis.ResponseError as exc:
        return code_of(exc)
    assert reply == "OK", (argv, reply)
    return "ok"


def _readback_http(api: httpx.Client, cid: str, ctype: int) -> list[Any]:
    out: list[Any] = []
    got = api.get("/channel/info", params={"channel_id": cid, "channel_type": ctype})
    out.append(None if got.status_code == 404 else
               {k: v for k, v in got.json().items() if k in FLAGS or k.endswith("_count")})
    for path in ("/channel/whitelist", "/channel/blacklist", "/channel/subscribers"):
        got = api.get(path, params={"channel_id": cid, "channel_type": ctype})
        body = got.json()
        if got.status_code != 200:
            out.append(body["code"])
        else:
            out.append(body["uids"] if isinstance(body, dict) else body)
    return out


def _readback_resp(rc: redis.Redis, cid: str, ctype: int) -> list[Any]:
    out: list[Any] = []
    got = rc.execute_command("CHANNEL.GET", cid, ctype)
    info = None if got is None else dict(zip(got[::2], got[1::2], strict=True))
    out.append(None if info is None else
               {k: v for k, v in info.items() if k in FLAGS or k.endswith("_count")})
    for command in ("WL.LIST", "BL.LIST", "SUB.LIST"):
        try:
            reply = rc.execute_command(command, cid, ctype)
        except redis.ResponseError as exc:
            out.append(code_of(exc))
        else:
            out.append(reply[1] if command == "SUB.LIST" else reply)
    return out


def _unmirror(values: list[Any], tag: str) -> list[Any]:
    """Strip a universe's prefix from every uid in a read-back (so A and B compare)."""
    def strip(v: Any) -> Any:
        if isinstance(v, list):
            return [strip(x) for x in v]
        if isinstance(v, str) and v.startswith(tag):
            return v[len(tag):]
        return v
    return [strip(v) for v in values]


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(ops, min_size=1, max_size=20))
def test_generated_ops_agree_over_both_protocols(api: httpx.Client, rc: redis.Redis,
                                                 sequence: list[Any]) -> None:
    tag_http, tag_resp = new_id("h")[2:12] + "_", new_id("r")[2:12] + "_"
    n_http = {x: tag_http + x for x in (*USERS, *NAMES)}
    n_resp = {x: tag_resp + x for x in (*USERS, *NAMES)}
    try:
        for op in [*PRELUDE, *sequence]:
            assert over_http(api, op, n_http) == over_resp(rc, op, n_resp), op

        grid = [(u, c, t) for u in (*USERS, "z") for c in NAMES for t in TYPES]
        on_http = [(n_http.get(u, tag_http + u), n_http[c], t) for u, c, t in grid]
        on_resp = [(n_resp.get(u, tag_resp + u), n_resp[c], t) for u, c, t in grid]
        http_answers = check_batch(api, on_http)
        assert checkm(rc, on_resp) == http_answers
        # both protocols read the same universe the same way
        assert checkm(rc, on_http) == http_answers
        assert check_batch(api, on_resp) == http_answers
        for c in NAMES:
            for t in TYPES:
                assert (_unmirror(_readback_http(api, n_http[c], t), tag_http)
                        == _unmirror(_readback_resp(rc, n_resp[c], t), tag_resp)), (c, t)
    finally:
        ok(api, "/user/systemuids_remove",
           {"uids": [n_http[u] for u in USERS] + [n_resp[u] for u in USERS]})
