"""Snapshot formats of the state engine: format 1 (the fixture) still loads, format 2 round
trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from server.state import SNAPSHOT_VERSION, State
from wal.codec import pack, unpack
from wal.snapshot import read_snapshot, write_snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
V1 = FIXTURES / "snapshot_v1"
NOW = 1_000_000


def json_plain(plain: dict[str, Any]) -> dict[str, Any]:
    """``State.as_plain()`` in the JSON form of ``tests/fixtures/snapshot_v1``."""
    channels = {f"{cid}|{ctype}": {k: sorted(v) if isinstance(v, set) else v
                                   for k, v in ch.items()}
                for (cid, ctype), ch in plain["channels"].items()}
    pres = plain["presence"]
    return {
        "system_uids": sorted(plain["system_uids"]),
        "channels": channels,
        "presence": {
            "subscriptions": sorted([*k, *v] for k, v in pres["subscriptions"].items()),
            "followers": sorted([*k, *v] for k, v in pres["followers"].items()),
            "devices": {u: {str(f): t for f, t in d.items()} for u, d in pres["devices"].items()},
        },
    }


def load_file(path: Path) -> State:
    state = State()
    for payload in read_snapshot(path).payloads:
        state.load_chunk(unpack(payload))
    return state


def test_v1_snapshot_fixture_loads() -> None:
    state = load_file(V1 / "snap" / "00000000000000000042.snap")
    expected = json.loads((V1 / "expected_as_plain.json").read_text(encoding="utf-8"))
    assert json_plain(state.as_plain()) == expected
    counts = state.counts()
    assert counts["channels"] == len(expected["channels"])
    assert counts["subscribers"] == sum(len(c["subscribers"])
                                        for c in expected["channels"].values())
    assert counts["whitelist"] == sum(len(c["whitelist"]) for c in expected["channels"].values())
    assert counts["blacklist"] == sum(len(c["blacklist"]) for c in expected["channels"].values())


def chunks_of(state: State, rows: int = 3) -> list[dict[str, Any]]:
    """The state's snapshot chunks after a msgpack round trip, as recovery sees them."""
    out = []
    for chunk in state.snapshot_chunks(rows_per_chunk=rows):
        loaded = unpack(pack(chunk))
        assert isinstance(loaded, dict)
        out.append(loaded)
    return out


def loaded(chunks: list[dict[str, Any]]) -> State:
    state = State()
    for chunk in chunks:
        state.load_chunk(chunk)
    return state


def test_v1_loads_and_round_trips_through_v2() -> None:
    old = load_file(V1 / "snap" / "00000000000000000042.snap")
    chunks = chunks_of(old)
    assert chunks[0]["kind"] == "meta" and chunks[0]["version"] == SNAPSHOT_VERSION == 2
    again = loaded(chunks)
    assert again.as_plain() == old.as_plain()
    assert again.counts() == old.counts() and again.send_banned == old.send_banned == {"a"}


def test_v2_writes_each_uid_once_and_packs_members() -> None:
    s = State(["sys"])
    s.apply((NOW, [("sub_add", f"g{i}", 2, ["a", "b", f"u{i}"]) for i in range(10)]
             + [("wl_add", "g1", 2, ["a", "w"]), ("bl_add", "g2", 2, ["b"]),
                ("ch_put", "p", 1, {"send_ban": 1, "large": 1})]))
    chunks = chunks_of(s, rows=4)
    kinds = [c["kind"] for c in chunks]
    assert kinds[0] == "meta" and kinds[-1] == "channels_end"
    rows = [c for c in chunks if c["kind"] == "channels"]
    table = [u for c in rows for u in c["uids"]]
    assert sorted(table) == sorted({"a", "b", "w", *(f"u{i}" for i in range(10))})
    assert all(isinstance(c["members"], bytes) for c in rows)
    assert sum(len(c["members"]) for c in rows) == 4 * s.counts()["subscribers"] + 4 * 3
    person = next(r for c in rows for r in c["rows"] if r[0] == "p")
    assert person[1:3] == [1, 0b10100]  # send_ban is bit 2, large bit 4
    copy = loaded(chunks)
    assert copy.as_plain() == s.as_plain() and copy.send_banned == {"p"}
    assert copy._uid_table == []  # dropped at channels_end
    uid_a = next(iter(copy.channels[("g0", 2)].subscribers & {"a"}))
    assert all(uid_a in copy.channels[(f"g{i}", 2)].subscribers for i in range(10))
    assert {id(next(iter(ch.subscribers & {"a"}))) for ch in copy.channels.values()
            if "a" in ch.subscribers} == {id(uid_a)}  # interned once, shared


def test_v2_file_round_trip(tmp_path: Path) -> None:
    s = load_file(V1 / "snap" / "00000000000000000042.snap")
    trio.run(write_snapshot, tmp_path, 7, s.snapshot_chunks(rows_per_chunk=2))
    assert load_file(tmp_path / "snap" / f"{7:020d}.snap").as_plain() == s.as_plain()


def test_v2_refuses_mismatched_members() -> None:
    s = State()
    s.apply((NOW, [("sub_add", "g", 2, ["a", "b"])]))
    chunks = chunks_of(s)
    rows = next(c for c in chunks if c["kind"] == "channels")
    rows["members"] = rows["members"][:4]
    with pytest.raises(ValueError, match="member indexes"):
        loaded(chunks)


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 3"):
        State().load_chunk({"kind": "meta", "version": 3, "system_uids": []})


UIDS = st.sampled_from(["a", "b", "c", "d", "é", "x" * 64])
IDS = st.sampled_from(["g", "h", "a", "b", "t"])
OPS = st.one_of(
    st.tuples(st.sampled_from(["sub_add", "sub_rm", "sub_set", "wl_add", "wl_rm", "wl_set",
                               "bl_add", "bl_rm", "bl_set"]),
              IDS, st.sampled_from([1, 2, 7, 8]), st.lists(UIDS, max_size=4)),
    st.tuples(st.just("ch_put"), IDS, st.sampled_from([1, 2, 7, 8]),
              st.dictionaries(st.sampled_from(["ban", "send_ban", "disband", "allow_stranger",
                                               "large"]), st.integers(0, 1))),
    st.tuples(st.just("ch_del"), IDS, st.sampled_from([1, 2, 7, 8])),
    st.tuples(st.just("tmp_set"), IDS, st.lists(UIDS, max_size=3), st.integers(NOW - 5, NOW + 5)),
    st.tuples(st.just("tmp_expire"), IDS),
    st.tuples(st.sampled_from(["sys_add", "sys_rm"]), st.lists(UIDS, max_size=2)),
    st.tuples(st.just("ps_sub"), UIDS, st.just(1), st.integers(1, 100), st.lists(UIDS,
                                                                                 max_size=2)),
    st.tuples(st.just("pr_set"), UIDS, st.integers(0, 2), st.integers(0, 1), st.just(""),
              st.just(""), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.tuples(st.integers(NOW - 10, NOW + 10), st.lists(OPS, max_size=8)),
                        max_size=8),
       rows=st.integers(1, 5))
def test_random_states_survive_a_v2_snapshot(batches: list[tuple[int, list[Any]]],
                                             rows: int) -> None:
    """Random op sequences, a format-2 snapshot (through msgpack), a fresh State: equal."""
    s = State()
    for batch in batches:
        s.apply(batch)
    copy = loaded(chunks_of(s, rows))
    assert copy.as_plain() == s.as_plain()
    assert copy.counts() == s.counts()
    assert copy.send_banned == s.send_banned
