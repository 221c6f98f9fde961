"""State engine: blind-write ops, temporary channels, snapshots (synchronous, no I/O)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.state import PERSON, SHARD_MASK, TEMP, State

NOW = 1_000_000


def apply(state: State, *ops: tuple[Any, ...], now: int = NOW) -> None:
    state.apply((now, list(ops)))


def test_flags_left_out_keep_their_value() -> None:
    s = State()
    apply(s, ("ch_put", "g", 2, {"ban": 1, "large": 1}))
    apply(s, ("ch_put", "g", 2, {"send_ban": 1}), now=NOW + 5)
    ch = s.channels[("g", 2)]
    assert (ch.ban, ch.large, ch.send_ban, ch.disband) == (1, 1, 1, 0)
    assert (ch.created_at, ch.updated_at) == (NOW, NOW + 5)


def test_list_ops_add_remove_replace() -> None:
    s = State()
    apply(s, ("ch_put", "g", 2, {}), ("wl_add", "g", 2, ["a", "b"]), ("wl_add", "g", 2, ["c"]))
    assert s.channels[("g", 2)].whitelist == {"a", "b", "c"}
    apply(s, ("wl_rm", "g", 2, ["a", "absent"]))
    assert s.channels[("g", 2)].whitelist == {"b", "c"}
    apply(s, ("wl_set", "g", 2, ["x"]))
    assert s.channels[("g", 2)].whitelist == {"x"}
    apply(s, ("wl_set", "g", 2, []))
    assert not s.channels[("g", 2)].whitelist


def test_empty_lists_share_one_frozenset_and_are_never_mutated() -> None:
    s = State()
    apply(s, ("ch_put", "a", 2, {}), ("ch_put", "b", 2, {}))
    a, b = s.channels[("a", 2)], s.channels[("b", 2)]
    assert a.blacklist is b.blacklist
    apply(s, ("bl_add", "a", 2, ["x"]), ("bl_rm", "b", 2, ["x"]))
    assert a.blacklist == {"x"} and b.blacklist == frozenset()
    apply(s, ("bl_rm", "a", 2, ["x"]))
    assert a.blacklist is b.blacklist


def test_temp_channel_expiry_and_purge() -> None:
    s = State()
    apply(s, ("tmp_set", "t", ["a"], NOW + 100))
    assert s.get("t", 8, NOW + 99) is not None
    assert s.get("t", 8, NOW + 100) is None
    assert s.expired_temp_channels(NOW + 99) == []
    assert s.expired_temp_channels(NOW + 100) == ["t"]
    apply(s, ("tmp_expire", "t"), now=NOW + 50)  # not yet expired at the op's time: kept
    assert ("t", 8) in s.channels
    apply(s, ("tmp_expire", "t"), now=NOW + 100)
    assert ("t", 8) not in s.channels


def test_tmp_set_after_expiry_starts_fresh() -> None:
    s = State()
    apply(s, ("tmp_set", "t", ["a"], NOW + 10), ("wl_add", "t", 8, ["a"]))
    apply(s, ("tmp_set", "t", ["b"], NOW + 1000), now=NOW + 20)
    ch = s.channels[("t", 8)]
    assert ch.subscribers == {"b"} and not ch.whitelist and ch.created_at == NOW + 20


def roundtrip(s: State) -> State:
    copy = State()
    for chunk in s.snapshot_chunks(rows_per_chunk=3):
        copy.load_chunk(chunk)
    return copy


def test_snapshot_chunks_roundtrip() -> None:
    s = State(["sys1"])
    for i in range(10):
        apply(s, ("ch_put", f"g{i}", 2, {"ban": i % 2}), ("sub_add", f"g{i}", 2, [f"u{i}", "x"]),
              ("bl_add", f"g{i}", 2, [f"b{i}"]))
    apply(s, ("tmp_set", "t", ["a"], NOW + 5), ("wl_add", "p", 1, ["friend"]))
    assert roundtrip(s).as_plain() == s.as_plain()


def test_snapshot_is_fuzzy_but_replay_makes_it_exact() -> None:
    """A write between taking the chunks and serialising them is fixed by replaying the suffix."""
    s = State()
    apply(s, ("ch_put", "g", 2, {}), ("sub_add", "g", 2, ["a"]))
    chunks = s.snapshot_chunks()  # the snapshot's LSN is taken here
    suffix: list[tuple[int, list[tuple[Any, ...]]]] = [
        (NOW + 1, [("sub_add", "g", 2, ["b"]), ("ch_del", "h", 2)]),
        (NOW + 2, [("ch_put", "h", 2, {}), ("sub_rm", "g", 2, ["a"])])]
    for batch in suffix:
        s.apply(batch)
    copy = State()
    for chunk in chunks:
        copy.load_chunk(chunk)
    for batch in suffix:
        copy.apply(batch)
    assert copy.as_plain() == s.as_plain()


UIDS = st.sampled_from(["a", "b", "c", "d"])
OPS = st.one_of(
    st.tuples(st.sampled_from(["sub_add", "sub_rm", "sub_set", "wl_add", "wl_rm", "wl_set",
                               "bl_add", "bl_rm", "bl_set"]),
              st.sampled_from(["g", "h"]), st.just(2), st.lists(UIDS, max_size=3)),
    st.tuples(st.just("ch_put"), st.sampled_from(["g", "h"]), st.just(2),
              st.dictionaries(st.sampled_from(["ban", "send_ban", "disband"]),
                              st.integers(0, 1))),
    st.tuples(st.just("ch_del"), st.sampled_from(["g", "h"]), st.just(2)),
    st.tuples(st.sampled_from(["sys_add", "sys_rm"]), st.lists(UIDS, max_size=2)),
)


@settings(max_examples=200, deadline=None)
@given(prefix=st.lists(OPS, max_size=10), suffix=st.lists(OPS, max_size=10),
       seen=st.integers(0, 10))
def test_blind_writes_make_replay_idempotent(prefix: list[Any], suffix: list[Any],
                                             seen: int) -> None:
    """Replaying a suffix over a state that already saw part of it gives the exact state."""
    truth = State()
    truth.apply((NOW, prefix))
    fuzzy = State()
    fuzzy.apply((NOW, prefix))
    fuzzy.apply((NOW, suffix[:seen]))
    truth.apply((NOW, suffix))
    fuzzy.apply((NOW, suffix))
    assert fuzzy.as_plain() == truth.as_plain()


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.one_of(OPS, st.tuples(st.just("tmp_set"), st.sampled_from(["t"]),
                                             st.lists(UIDS, max_size=3),
                                             st.integers(NOW - 5, NOW + 5)),
                              st.tuples(st.just("tmp_expire"), st.just("t"))), max_size=25))
def test_membership_counters_match_a_recount(ops: list[Any]) -> None:
    """counts() is kept incrementally (O(1) for /metrics); it must equal counting from scratch."""
    s = State()
    for op in ops:
        s.apply((NOW, [op]))
    plain = s.as_plain()["channels"].values()
    assert s.counts() == {
        "channels": len(s.channels),
        "subscribers": sum(len(c["subscribers"]) for c in plain),
        "whitelist": sum(len(c["whitelist"]) for c in plain),
        "blacklist": sum(len(c["blacklist"]) for c in plain),
        "system_uids": len(s.system_uids),
    }
    assert roundtrip(s).counts() == s.counts()


# -- the layout: per-type sharded tables, send_banned, counts -------------------------------------


def check_layout(s: State) -> None:
    """Every invariant the ops must keep: each channel in its shard under an interned id,
    ``send_banned`` exactly the person channels with send_ban=1, counts equal to a recount."""
    for ctype, table in s.tables.items():
        for i, shard in enumerate(table):
            for cid in shard:
                assert hash(cid) & SHARD_MASK == i, (cid, ctype)
                assert sys.intern(cid) is cid
    assert s.send_banned == {cid for shard in s.tables[PERSON] for cid, ch in shard.items()
                             if ch.send_ban}
    plain = s.as_plain()["channels"]
    assert s.counts() == {
        "channels": len(plain),
        "subscribers": sum(len(c["subscribers"]) for c in plain.values()),
        "whitelist": sum(len(c["whitelist"]) for c in plain.values()),
        "blacklist": sum(len(c["blacklist"]) for c in plain.values()),
        "system_uids": len(s.system_uids),
    }


LAYOUT_CASES: list[tuple[str, list[tuple[int, list[tuple[Any, ...]]]], set[str], int, int]] = [
    # name, batches, send_banned, channels, subscribers
    ("person send_ban", [(NOW, [("ch_put", "a", 1, {"send_ban": 1})])], {"a"}, 1, 0),
    ("person send_ban lifted", [(NOW, [("ch_put", "a", 1, {"send_ban": 1})]),
                                (NOW, [("ch_put", "a", 1, {"send_ban": 0})])], set(), 1, 0),
    ("other flags keep it", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}),
                                    ("ch_put", "a", 1, {"allow_stranger": 1})])], {"a"}, 1, 0),
    ("list ops keep it", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}),
                                 ("wl_set", "a", 1, ["x"]), ("bl_add", "a", 1, ["y"])])],
     {"a"}, 1, 0),
    ("list op creates unbanned", [(NOW, [("wl_add", "a", 1, ["x"])])], set(), 1, 0),
    ("deleted", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}), ("ch_del", "a", 1)])], set(), 0, 0),
    ("deleted and re-created", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}),
                                       ("ch_del", "a", 1), ("ch_put", "a", 1, {})])],
     set(), 1, 0),
    ("re-created banned", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}), ("ch_del", "a", 1),
                                  ("ch_put", "a", 1, {"send_ban": 1})])], {"a"}, 1, 0),
    ("group mute-all is not it", [(NOW, [("ch_put", "a", 2, {"send_ban": 1}),
                                         ("ch_put", "a", 7, {"send_ban": 1})])], set(), 2, 0),
    ("deleting another type keeps it", [(NOW, [("ch_put", "a", 1, {"send_ban": 1}),
                                               ("ch_put", "a", 2, {}), ("ch_del", "a", 2)])],
     {"a"}, 1, 0),
    ("group delete and re-create", [(NOW, [("sub_add", "g", 2, ["a", "b"]), ("ch_del", "g", 2),
                                           ("sub_add", "g", 2, ["c"])])], set(), 1, 1),
    ("temp set", [(NOW, [("tmp_set", "t", ["a", "b"], NOW + 10)])], set(), 1, 2),
    ("temp expire too early", [(NOW, [("tmp_set", "t", ["a", "b"], NOW + 10)]),
                               (NOW + 9, [("tmp_expire", "t")])], set(), 1, 2),
    ("temp expired and purged", [(NOW, [("tmp_set", "t", ["a", "b"], NOW + 10)]),
                                 (NOW + 10, [("tmp_expire", "t")])], set(), 0, 0),
    ("temp re-set after expiry", [(NOW, [("tmp_set", "t", ["a", "b"], NOW + 10)]),
                                  (NOW + 20, [("tmp_set", "t", ["c"], NOW + 30)])], set(), 1, 1),
    ("temp re-set while live", [(NOW, [("tmp_set", "t", ["a", "b"], NOW + 10),
                                       ("tmp_set", "t", ["c", "a", "d"], NOW + 30)])],
     set(), 1, 3),
    ("temp deleted", [(NOW, [("tmp_set", "t", ["a"], NOW + 10), ("ch_del", "t", 8)])],
     set(), 0, 0),
]


@pytest.mark.parametrize(("batches", "banned", "channels", "subscribers"),
                         [c[1:] for c in LAYOUT_CASES], ids=[c[0] for c in LAYOUT_CASES])
def test_ops_keep_send_banned_and_counts(batches: list[tuple[int, list[tuple[Any, ...]]]],
                                         banned: set[str], channels: int,
                                         subscribers: int) -> None:
    s = State()
    for batch in batches:
        s.apply(batch)
        check_layout(s)
    assert s.send_banned == banned
    assert s.counts()["channels"] == channels
    assert s.counts()["subscribers"] == subscribers
    copy = roundtrip(s)
    check_layout(copy)
    assert copy.send_banned == banned and copy.counts() == s.counts()


def test_channels_view_and_lookups() -> None:
    s = State()
    apply(s, ("ch_put", "g", 2, {}), ("ch_put", "g", 7, {"ban": 1}), ("ch_put", "p", 1, {}),
          ("tmp_set", "t", ["a"], NOW + 5))
    assert set(s.channels) == {("g", 2), ("g", 7), ("p", 1), ("t", TEMP)}
    assert len(s.channels) == 4 and s.counts()["channels"] == 4
    assert ("g", 7) in s.channels and ("g", 3) not in s.channels
    assert "g" not in s.channels  # type: ignore[comparison-overlap]
    assert s.channels[("g", 7)].ban == 1 and s.channels.get(("g", 9)) is None
    assert s.exists("t", TEMP) and s.get("t", TEMP, NOW + 5) is None
    assert s.get("g", 200, NOW) is None and not s.exists("g", 200)
    assert 200 not in s.tables  # reading a type never creates its table


OPS_WIDE = st.one_of(
    st.tuples(st.sampled_from(["sub_add", "sub_rm", "sub_set", "wl_add", "wl_rm", "wl_set",
                               "bl_add", "bl_rm", "bl_set"]),
              st.sampled_from(["g", "h", "a"]), st.sampled_from([1, 2, 7]),
              st.lists(UIDS, max_size=3)),
    st.tuples(st.just("ch_put"), st.sampled_from(["g", "a", "b"]), st.sampled_from([1, 2, 8]),
              st.dictionaries(st.sampled_from(["ban", "send_ban", "disband", "allow_stranger",
                                               "large"]), st.integers(0, 1))),
    st.tuples(st.just("ch_del"), st.sampled_from(["g", "a", "b", "t"]),
              st.sampled_from([1, 2, 8])),
    st.tuples(st.just("tmp_set"), st.sampled_from(["t", "g"]), st.lists(UIDS, max_size=3),
              st.integers(NOW - 5, NOW + 5)),
    st.tuples(st.just("tmp_expire"), st.sampled_from(["t", "g"])),
    st.tuples(st.sampled_from(["sys_add", "sys_rm"]), st.lists(UIDS, max_size=2)),
)
BATCHES = st.lists(st.tuples(st.integers(NOW - 10, NOW + 10), st.lists(OPS_WIDE, max_size=6)),
                   max_size=8)


@settings(max_examples=200, deadline=None)
@given(batches=BATCHES)
def test_random_ops_keep_the_layout(batches: list[tuple[int, list[tuple[Any, ...]]]]) -> None:
    s = State()
    for batch in batches:
        s.apply(batch)
        check_layout(s)


def test_a_list_op_replayed_on_a_missing_temp_channel_leaves_it_expired() -> None:
    # Over a fuzzy snapshot a replayed op may find its temporary channel gone (a later record
    # removed it); the channel it recreates must count as missing and be purged by that record.
    s = State()
    s.apply((100, [("sub_add", "t", 8, ["u"])]))
    assert s.get("t", 8, 100) is None
    s.apply((100, [("tmp_expire", "t")]))
    assert ("t", 8) not in s.channels
