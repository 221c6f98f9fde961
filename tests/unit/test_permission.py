"""The permission decision (``server/permission.py``), one row per branch (table-driven,
synchronous)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.breakdown import VARIANTS
from server.permission import (
    BAN,
    CHANNEL_NOT_EXIST,
    DISBAND,
    IN_BLACKLIST,
    NOT_IN_WHITELIST,
    REASON_NAMES,
    SEND_BAN,
    SUBSCRIBER_NOT_EXIST,
    SUCCESS,
    decide,
)
from server.state import State

NOW = 1_700_000_000_000


def state_with(*ops: tuple[Any, ...], system: tuple[str, ...] = ()) -> State:
    state = State(system)
    state.apply((NOW, list(ops)))
    return state


GROUP = [("ch_put", "g", 2, {}), ("sub_add", "g", 2, ["alice", "bob", "sys", "carol"])]

CASES: list[tuple[str, list[tuple[Any, ...]], str, str, int, int]] = [
    # name, ops, sender, channel, type, expected
    ("group member allowed", GROUP, "alice", "g", 2, SUCCESS),
    ("group non-member", GROUP, "zed", "g", 2, SUBSCRIBER_NOT_EXIST),
    ("group missing", [], "alice", "g", 2, CHANNEL_NOT_EXIST),
    ("other type missing", GROUP, "alice", "g", 3, CHANNEL_NOT_EXIST),
    ("disband beats everything", [*GROUP, ("ch_put", "g", 2, {"disband": 1})], "sys", "g", 2,
     DISBAND),
    ("ban", [*GROUP, ("ch_put", "g", 2, {"ban": 1})], "alice", "g", 2, BAN),
    ("system beats ban", [*GROUP, ("ch_put", "g", 2, {"ban": 1})], "sys", "g", 2, SUCCESS),
    ("blacklist", [*GROUP, ("bl_add", "g", 2, ["alice"])], "alice", "g", 2, IN_BLACKLIST),
    ("blacklist beats whitelist",
     [*GROUP, ("bl_add", "g", 2, ["alice"]), ("wl_add", "g", 2, ["alice"])], "alice", "g", 2,
     IN_BLACKLIST),
    ("blacklist before subscriber check", [*GROUP, ("bl_add", "g", 2, ["zed"])], "zed", "g", 2,
     IN_BLACKLIST),
    ("system beats blacklist", [*GROUP, ("bl_add", "g", 2, ["sys"])], "sys", "g", 2, SUCCESS),
    ("whitelist mode, not listed", [*GROUP, ("wl_add", "g", 2, ["bob"])], "alice", "g", 2,
     NOT_IN_WHITELIST),
    ("whitelist mode, listed", [*GROUP, ("wl_add", "g", 2, ["alice"])], "alice", "g", 2, SUCCESS),
    ("whitelist does not replace membership", [*GROUP, ("wl_add", "g", 2, ["zed"])], "zed", "g",
     2, SUBSCRIBER_NOT_EXIST),
    ("whitelist_set [] ends whitelist mode",
     [*GROUP, ("wl_add", "g", 2, ["bob"]), ("wl_set", "g", 2, [])], "alice", "g", 2, SUCCESS),
    ("mute-all", [*GROUP, ("ch_put", "g", 2, {"send_ban": 1})], "alice", "g", 2, SEND_BAN),
    ("mute-all spares the whitelist",
     [*GROUP, ("ch_put", "g", 2, {"send_ban": 1}), ("wl_add", "g", 2, ["alice"])], "alice", "g",
     2, SUCCESS),
    ("system beats mute-all", [*GROUP, ("ch_put", "g", 2, {"send_ban": 1})], "sys", "g", 2,
     SUCCESS),
    ("sender's own send_ban", [*GROUP, ("ch_put", "alice", 1, {"send_ban": 1})], "alice", "g", 2,
     SEND_BAN),
    ("sender's own send_ban, even to a person", [("ch_put", "alice", 1, {"send_ban": 1})],
     "alice", "bob", 1, SEND_BAN),
    ("system ignores own send_ban", [*GROUP, ("ch_put", "sys", 1, {"send_ban": 1})], "sys", "g",
     2, SUCCESS),
    ("person, no record", [], "alice", "bob", 1, SUCCESS),
    ("person, to self despite lists", [("bl_add", "alice", 1, ["alice"])], "alice", "alice", 1,
     SUCCESS),
    ("person, blocked", [("bl_add", "bob", 1, ["alice"])], "alice", "bob", 1, IN_BLACKLIST),
    ("person, system beats block", [("bl_add", "bob", 1, ["sys"])], "sys", "bob", 1, SUCCESS),
    ("person, friends-only stranger", [("wl_add", "bob", 1, ["carol"])], "alice", "bob", 1,
     NOT_IN_WHITELIST),
    ("person, friends-only friend", [("wl_add", "bob", 1, ["alice"])], "alice", "bob", 1,
     SUCCESS),
    ("person, allow_stranger", [("wl_add", "bob", 1, ["carol"]),
                                ("ch_put", "bob", 1, {"allow_stranger": 1})], "alice", "bob", 1,
     SUCCESS),
    ("person, block beats friends", [("wl_add", "bob", 1, ["alice"]),
                                     ("bl_add", "bob", 1, ["alice"])], "alice", "bob", 1,
     IN_BLACKLIST),
    ("deleted channel", [*GROUP, ("ch_del", "g", 2)], "alice", "g", 2, CHANNEL_NOT_EXIST),
    ("temp member", [("tmp_set", "t", ["alice"], NOW + 1000)], "alice", "t", 8, SUCCESS),
    ("temp non-member", [("tmp_set", "t", ["alice"], NOW + 1000)], "bob", "t", 8,
     SUBSCRIBER_NOT_EXIST),
    ("temp expired", [("tmp_set", "t", ["alice"], NOW)], "alice", "t", 8, CHANNEL_NOT_EXIST),
]


@pytest.mark.parametrize(("ops", "sender", "cid", "ctype", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(ops: list[tuple[Any, ...]], sender: str, cid: str, ctype: int,
                  expected: int) -> None:
    state = state_with(*ops, system=("sys",))
    assert decide(state, sender, cid, ctype, NOW) == expected


def test_every_reason_has_a_case() -> None:
    assert {c[-1] for c in CASES} == set(REASON_NAMES)


def test_runtime_system_account() -> None:
    state = state_with(*GROUP, ("ch_put", "g", 2, {"ban": 1}))
    assert decide(state, "alice", "g", 2, NOW) == BAN
    state.apply((NOW, [("sys_add", ["alice"])]))
    assert decide(state, "alice", "g", 2, NOW) == SUCCESS
    state.apply((NOW, [("sys_rm", ["alice"])]))
    assert decide(state, "alice", "g", 2, NOW) == BAN


# -- the decision over the per-type tables and the send_banned set -------------------------------

LAYOUT_CASES: list[tuple[str, list[tuple[Any, ...]], str, str, int, int]] = [
    ("own send_ban lifted", [*GROUP, ("ch_put", "alice", 1, {"send_ban": 1}),
                             ("ch_put", "alice", 1, {"send_ban": 0})], "alice", "g", 2, SUCCESS),
    ("own person channel deleted", [*GROUP, ("ch_put", "alice", 1, {"send_ban": 1}),
                                    ("ch_del", "alice", 1)], "alice", "g", 2, SUCCESS),
    ("own person channel re-created", [*GROUP, ("ch_put", "alice", 1, {"send_ban": 1}),
                                       ("ch_del", "alice", 1), ("wl_add", "alice", 1, ["x"])],
     "alice", "g", 2, SUCCESS),
    ("a list op keeps own send_ban", [*GROUP, ("ch_put", "alice", 1, {"send_ban": 1}),
                                      ("bl_add", "alice", 1, ["x"])], "alice", "g", 2, SEND_BAN),
    ("mute-all of a group is not the sender's ban",
     [*GROUP, ("ch_put", "alice", 2, {"send_ban": 1}), ("ch_put", "g2", 2, {}),
      ("sub_add", "g2", 2, ["alice"])], "alice", "g2", 2, SUCCESS),
    ("same id, other type", [("ch_put", "g", 7, {}), ("sub_add", "g", 7, ["alice"])], "alice",
     "g", 2, CHANNEL_NOT_EXIST),
    ("type 7 behaves like a group", [("ch_put", "g", 7, {"ban": 1}),
                                     ("sub_add", "g", 7, ["alice"])], "alice", "g", 7, BAN),
    ("unused type", [], "alice", "g", 200, CHANNEL_NOT_EXIST),
    ("temp re-created after expiry", [("tmp_set", "t", ["bob"], NOW - 1),
                                      ("tmp_set", "t", ["alice"], NOW + 5)], "alice", "t", 8,
     SUCCESS),
    ("temp purged", [("tmp_set", "t", ["alice"], NOW), ("tmp_expire", "t")], "alice", "t", 8,
     CHANNEL_NOT_EXIST),
]


@pytest.mark.parametrize(("ops", "sender", "cid", "ctype", "expected"),
                         [c[1:] for c in LAYOUT_CASES], ids=[c[0] for c in LAYOUT_CASES])
def test_decision_over_the_layout(ops: list[tuple[Any, ...]], sender: str, cid: str, ctype: int,
                                  expected: int) -> None:
    state = state_with(*ops, system=("sys",))
    assert decide(state, sender, cid, ctype, NOW) == expected


def test_decision_after_a_snapshot_round_trip() -> None:
    """The loaded state decides like the original: ``send_banned`` is rebuilt from the rows."""
    for _name, ops, sender, cid, ctype, expected in CASES + LAYOUT_CASES:
        state = state_with(*ops, system=("sys",))
        copy = State()
        for chunk in state.snapshot_chunks(rows_per_chunk=2):
            copy.load_chunk(chunk)
        assert decide(copy, sender, cid, ctype, NOW) == expected, _name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_breakdown_variants_follow_the_rule_table(variant: str) -> None:
    """``bench/breakdown.py`` times candidate decisions; each must answer every case as
    ``decide`` does, so a benchmark never measures a different rule order."""
    fn = VARIANTS[variant]
    for name, ops, sender, cid, ctype, expected in CASES + LAYOUT_CASES:
        state = state_with(*ops, system=("sys",))
        assert fn(state, sender, cid, ctype, NOW) == expected, name
