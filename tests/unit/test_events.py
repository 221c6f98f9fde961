"""The event hub: LSN order, ids, the ring, resuming and resets (synchronous)."""

from __future__ import annotations

import json

import pytest

from server.events import LAST, EventHub, PresenceEvent, format_id, parse_id
from server.presence import StatusNote


def note(uid: str, online: bool = True, subscribers: tuple[str, ...] = ("f",)) -> StatusNote:
    return StatusNote(uid, online, (0,) if online else (), 1000, subscribers, "flip", 0)


def ids(events: list[PresenceEvent] | None) -> list[str]:
    assert events is not None
    return [e.id for e in events]


@pytest.mark.parametrize(("text", "key"), [
    ("7", (7, LAST)), ("7:0", (7, 0)), ("7:12", (7, 12)), ("0", (0, LAST)),
    ("", None), ("x", None), ("7:", None), ("7:x", None), ("-1", None), ("7:-1", None),
    ("1" * 20, None), (f"7:{LAST}", None), (f"7:{LAST - 1}", (7, LAST - 1)),
    # no padding, sign, separators or other scripts' digits
    (" 7 ", None), ("07", None), ("7:01", None), ("+7", None), ("7_0", None), ("\u0667", None),
    ("7:1:2", None),
    ("1:" + "9" * 5000, None),  # was a 500: int() refuses more than 4300 digits
])
def test_ids_parse_and_format(text: str, key: tuple[int, int] | None) -> None:
    assert parse_id(text) == key
    if key is not None:
        assert parse_id(format_id(key)) == key


def test_a_records_events_are_numbered_and_the_last_is_the_plain_lsn() -> None:
    hub = EventHub(100, start_lsn=0)
    hub.stage(1, [note("a")])
    hub.stage(2, [note("b"), note("c"), note("d")])
    hub.release(2)
    events = hub.retained_events()
    assert ids(events) == ["1", "2:0", "2:1", "2"]
    assert [e.key for e in events] == sorted(e.key for e in events)
    frame = events[0].frame.decode()
    assert frame.startswith("event: presence\nid: 1\ndata: ") and frame.endswith("\n\n")
    assert json.loads(frame.split("data: ", 1)[1]) == {
        "uid": "a", "online": 1, "devices": [0], "time": 1000, "subscribers": ["f"],
        "cause": "flip"}


def test_release_publishes_a_durable_prefix_in_lsn_order() -> None:
    hub = EventHub(100, start_lsn=0)
    seen: list[str] = []
    hub.listeners.append(lambda events: seen.extend(e.id for e in events))
    hub.stage(3, [note("a")])
    hub.stage(5, [note("b")])
    hub.release(4)  # record 5 is not durable yet
    assert seen == ["3"]
    hub.release(4)
    assert seen == ["3"] and hub.statistics().published == 1
    hub.release(9)
    assert seen == ["3", "5"]
    hub.stage(6, [])  # a record without events changes nothing
    hub.release(6)
    assert hub.statistics().published == 2


def test_ring_keeps_the_newest_and_reading_an_evicted_position_fails() -> None:
    hub = EventHub(3, start_lsn=0)
    for lsn in range(1, 6):
        hub.stage(lsn, [note(f"u{lsn}")])
        hub.release(lsn)
    assert ids(hub.retained_events()) == ["3", "4", "5"]
    assert hub.statistics().evicted == 2 and hub.first_pos == 2
    assert hub.read(1, 10) is None
    assert ids(hub.read(2, 10)) == ["3", "4", "5"]
    assert ids(hub.read(4, 10)) == ["5"] and hub.read(5, 10) == []


def test_ring_compaction_keeps_positions() -> None:
    hub = EventHub(10, start_lsn=0)
    for lsn in range(1, 3001):
        hub.stage(lsn, [note("u")])
        hub.release(lsn)
    assert ids(hub.retained_events()) == [str(n) for n in range(2991, 3001)]
    assert ids(hub.read(2995, 2)) == ["2996", "2997"]
    assert len(hub._ring) < 2000


def test_resume_after_an_id_in_the_window_gives_exactly_the_later_events() -> None:
    hub = EventHub(100, start_lsn=10)
    hub.stage(11, [note("a")])
    hub.stage(12, [note("b"), note("c")])
    hub.stage(13, [note("d")])
    hub.release(13)
    for last, expected in (("11", ["12:0", "12", "13"]), ("12:0", ["12", "13"]),
                           ("12", ["13"]), ("13", []), ("10", ["11", "12:0", "12", "13"])):
        pos, first = hub.start(last, current_lsn=13)
        assert ids(hub.read(pos, 100)) == expected, last
        assert b"reset" not in first
    # an id between events (a record without events) resumes after it too
    pos, _ = hub.start("12:5", current_lsn=13)
    assert ids(hub.read(pos, 100)) == ["12", "13"]
    assert hub.statistics().resumed == 6 and hub.statistics().resets == 0


@pytest.mark.parametrize(("last", "reason"), [
    ("9", "no longer retained"),  # before this process started (the ring is memory only)
    ("10:3", "no longer retained"),
    ("banana", "not an event id"),
    ("99", "ahead of this server's log"),
])
def test_reset_when_events_may_be_missing(last: str, reason: str) -> None:
    hub = EventHub(100, start_lsn=10)
    hub.stage(11, [note("a")])
    hub.release(11)
    pos, first = hub.start(last, current_lsn=11)
    text = first.decode()
    assert "event: reset\nid: 11\n" in text and reason in text and "retry: " in text
    assert pos == hub.first_pos + 1  # live from now on
    assert hub.statistics().resets == 1


def test_reset_after_eviction_points_at_the_newest_event() -> None:
    hub = EventHub(2, start_lsn=0)
    for lsn in (1, 2, 3):
        hub.stage(lsn, [note("u")])
        hub.release(lsn)
    assert ids(hub.retained_events()) == ["2", "3"]
    assert b"reset" in hub.start("0", current_lsn=3)[1]  # event 1 came after it: evicted
    pos, first = hub.start("1", current_lsn=3)
    assert b"reset" not in first and ids(hub.read(pos, 10)) == ["2", "3"]
    # a reset's id resumes cleanly, even on an empty start
    fresh = EventHub(5, start_lsn=42)
    _, first = fresh.start("x", current_lsn=42)
    assert b"id: 42\n" in first
    assert b"reset" not in fresh.start("42", current_lsn=42)[1]


def test_new_stream_without_last_event_id_starts_live() -> None:
    hub = EventHub(10, start_lsn=0)
    hub.stage(1, [note("a")])
    hub.release(1)
    pos, first = hub.start(None, current_lsn=1)
    assert pos == 1 and hub.read(pos, 10) == [] and first.startswith(b":")


def test_retained_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventHub(0, start_lsn=0)
