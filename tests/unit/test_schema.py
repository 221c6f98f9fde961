"""Validation: the cached fast path of check_batch agrees with the full check on any input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import schema
from server.errors import BadRequest
from server.schema import (
    Field,
    Limits,
    check_channel_id,
    check_many,
    check_one,
    check_uid,
    int_from_text,
    parse,
)

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


# -- integers sent as text (query strings, RESP arguments) -------------------------------------

@pytest.mark.parametrize("text", ["0", "2", "255", "123456789012345678", "-1"])
def test_text_integers_in_plain_ascii_digits_are_read(text: str) -> None:
    assert int_from_text(text, "channel_type") == int(text)
    assert int_from_text(text.encode(), "channel_type") == int(text)


@pytest.mark.parametrize("text", ["2_0", "+2", " 2", "2 ", "-0", "02", "--1", "\u0662",
                                  "\uff12", "", "1e3", "1234567890123456789", "0x10"])
def test_lenient_integer_spellings_are_refused(text: str) -> None:
    with pytest.raises(BadRequest) as err:
        int_from_text(text, "channel_type")
    assert err.value.code == "field_type" and "channel_type" in err.value.msg


def test_an_error_quotes_only_a_short_prefix_of_what_was_sent() -> None:
    with pytest.raises(BadRequest) as err:
        int_from_text("9" * 5000, "channel_type")
    assert len(err.value.msg) < 200


# -- unknown top-level fields --------------------------------------------------------------------

FIELDS = (Field("channel_id", "channel_id"), Field("uids", "uids"))


def test_unknown_fields_are_accepted_and_logged_once_per_name(
        caplog: pytest.LogCaptureFixture) -> None:
    schema._WARNED.discard("uid_typo_field")
    limits = Limits(max_uids=10, max_checks=10)
    body = {"channel_id": "g", "uids": ["a"], "uid_typo_field": ["a"]}
    with caplog.at_level(logging.WARNING, logger="roster"):
        assert parse(FIELDS, body, limits) == {"channel_id": "g", "uids": ["a"]}
        parse(FIELDS, body, limits)
    lines = [r.getMessage() for r in caplog.records if "uid_typo_field" in r.getMessage()]
    assert len(lines) == 1 and "channel_id, uids" in lines[0]


def test_the_set_of_warned_names_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    limits = Limits(max_uids=10, max_checks=10)
    with caplog.at_level(logging.WARNING, logger="roster"):
        for i in range(schema._WARNED_MAX + 50):
            parse(FIELDS, {"channel_id": "g", "uids": [], f"junk{i}": 1}, limits)
    assert len(schema._WARNED) <= schema._WARNED_MAX
