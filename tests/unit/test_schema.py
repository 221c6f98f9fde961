"""Validation: the cached fast path of check_batch agrees with the full check on any input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import BadRequest
from server.schema import check_channel_id, check_many, check_one, check_uid

IDS = st.one_of(st.sampled_from(["alice", "bob", " g1 ", "g@1", "", "x" * 65, "\ud800", "ok"]),
                st.integers(), st.none(), st.lists(st.just("a"), max_size=1))
ITEM = st.one_of(
    st.fixed_dictionaries({"from_uid": IDS, "channel_id": IDS,
                           "channel_type": st.one_of(st.integers(-1, 300), st.booleans(),
                                                     st.just("2"), st.floats())}),
    st.dictionaries(st.sampled_from(["from_uid", "channel_id"]), IDS),
    st.lists(st.integers(), max_size=2), st.text(max_size=3),
)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except BadRequest as exc:
        return (exc.code, exc.msg)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(ITEM, max_size=6))
def test_check_many_equals_check_one_on_every_item(items: list[Any]) -> None:
    expected: Any = []
    for i, item in enumerate(items):
        one = outcome(check_one, item, f"checks[{i}].")
        if isinstance(one, tuple) and len(one) == 2 and isinstance(one[0], str) \
                and not isinstance(one[1], int):
            expected = one  # the first bad item decides the error
            break
        expected.append(one)
    # twice: the second run takes the cached path for every id the first run validated
    assert outcome(check_many, items, "checks") == expected
    assert outcome(check_many, items, "checks") == expected


def test_trimmed_id_is_returned_from_cache_too() -> None:
    first = check_many([{"from_uid": " alice ", "channel_id": "g", "channel_type": 2}], "c")
    second = check_many([{"from_uid": " alice ", "channel_id": "g", "channel_type": 2}], "c")
    assert first == second == [("alice", "g", 2)]


@pytest.mark.parametrize("bad", ["g@1", "", "x" * 65])
def test_a_cached_valid_id_never_hides_an_invalid_one(bad: str) -> None:
    check_one({"from_uid": "alice", "channel_id": "g", "channel_type": 2})
    with pytest.raises(BadRequest):
        check_many([{"from_uid": "alice", "channel_id": bad, "channel_type": 2}], "checks")


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", "\u2060", "\u202e", "\u00ad"])
def test_ids_refuse_invisible_format_characters(invisible: str) -> None:
    # "ab\u200bc" looks like "abc" and would be a second, different id.
    with pytest.raises(BadRequest) as err:
        check_uid(f"ab{invisible}c", "uid")
    assert err.value.code == "uid_invalid"
    with pytest.raises(BadRequest) as err:
        check_channel_id(f"g{invisible}1")
    assert err.value.code == "channel_id_special_char"


def test_non_ascii_letters_stay_valid_ids() -> None:
    assert check_uid("héllo", "uid") == "héllo"
    assert check_channel_id("群组一") == "群组一"
