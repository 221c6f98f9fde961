"""Presence engine: subscriptions, expiry, limits, devices, notes, snapshots (synchronous)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.presence import STATUS, StatusNote
from server.state import State

NOW = 1_000_000
MIN = 60_000  # the shortest expiry the routes accept, in ms


def apply(state: State, *ops: tuple[Any, ...], now: int = NOW) -> None:
    state.apply((now, list(ops)))


def noting(state: State, *ops: tuple[Any, ...], now: int = NOW) -> list[StatusNote]:
    """Apply as the server does for a live request, returning the notes it produced."""
    notes: list[StatusNote] = []
    state.apply((now, list(ops)), notes)
    assert state.presence.notes is None  # switched on for that one batch only
    return notes


def sub(subscriber: str, *targets: str, expiry_ms: int = MIN) -> tuple[Any, ...]:
    return ("ps_sub", subscriber, STATUS, expiry_ms, list(targets))


def online(uid: str, flag: int = 0, on: int = 1) -> tuple[Any, ...]:
    return ("pr_set", uid, flag, on, "sess", "iOS", "10.0.0.1")


# -- subscriptions and expiry ----------------------------------------------------------------


def test_subscription_is_live_until_its_expiry_instant() -> None:
    s = State()
    apply(s, sub("a", "b", "c"))
    p = s.presence
    assert p.subscription("a", "b", STATUS, NOW) == (NOW, NOW + MIN)
    assert p.subscription("a", "b", STATUS, NOW + MIN - 1) is not None
    assert p.subscription("a", "b", STATUS, NOW + MIN) is None
    assert p.following_count("a", STATUS, NOW + MIN - 1) == 2
    assert p.following_count("a", STATUS, NOW + MIN) == 0
    assert p.follower_count("b", STATUS, NOW) == 1
    assert p.follower_count("b", STATUS, NOW + MIN) == 0
    assert [t for t, _ in p.subscriptions_of("a", STATUS, NOW)] == ["b", "c"]
    assert p.subscriptions_of("a", STATUS, NOW + MIN) == []
    assert p.followers_of("c", STATUS, NOW) == [("a", (NOW, NOW + MIN))]
    # other sub types are kept apart
    assert p.subscriptions_of("a", 2, NOW) == []
    # the expired record is still held until purged, and counts toward nothing
    assert p.holds("a", "b", STATUS) and p.subscription_count == 2


def test_resubscribe_overwrites_the_expiry_and_does_not_count_again() -> None:
    s = State()
    apply(s, sub("a", "b"))
    apply(s, sub("a", "b", expiry_ms=10 * MIN), now=NOW + 1000)
    p = s.presence
    assert p.subscription_count == 1
    assert p.following_count("a", STATUS, NOW + 1000) == 1
    assert p.subscription("a", "b", STATUS, NOW + 1000) == (NOW + 1000, NOW + 1000 + 10 * MIN)
    assert p.followers_of("b", STATUS, NOW + MIN + 5000) == [
        ("a", (NOW + 1000, NOW + 1000 + 10 * MIN))
    ]


def test_resubscribe_may_shorten_the_expiry() -> None:
    s = State()
    apply(s, sub("a", "b", expiry_ms=10 * MIN))
    apply(s, sub("a", "b", expiry_ms=MIN))
    assert s.presence.subscription("a", "b", STATUS, NOW + MIN) is None


def test_unsubscribe_removes_both_indexes_and_ignores_absent_ones() -> None:
    s = State()
    apply(s, sub("a", "b", "c"), sub("x", "b"))
    apply(s, ("ps_unsub", "a", STATUS, ["b", "nobody"]), ("ps_unsub", "ghost", STATUS, ["b"]))
    p = s.presence
    assert [t for t, _ in p.subscriptions_of("a", STATUS, NOW)] == ["c"]
    assert [u for u, _ in p.followers_of("b", STATUS, NOW)] == ["x"]
    assert p.subscription_count == 2
    apply(s, ("ps_unsub", "a", STATUS, ["c"]), ("ps_unsub", "x", STATUS, ["b"]))
    assert p.following == {} and p.followers == {} and p.subscription_count == 0


def test_expired_subscriptions_are_found_and_purged_by_a_logged_op() -> None:
    s = State()
    apply(s, sub("a", "b"), sub("a", "c", expiry_ms=2 * MIN))
    p = s.presence
    assert p.expired_subscriptions(NOW + MIN - 1) == []
    assert p.expired_subscriptions(NOW + MIN) == [("a", "b", STATUS)]
    # finding is not purging: asking again gives the same answer
    assert p.expired_subscriptions(NOW + MIN) == [("a", "b", STATUS)]
    apply(s, ("ps_expire", [["a", "b", STATUS]]), now=NOW + MIN)
    assert not p.holds("a", "b", STATUS) and p.holds("a", "c", STATUS)
    assert p.expired_subscriptions(NOW + MIN) == []
    assert p.subscription_count == 1 and "b" not in p.followers


def test_purge_does_not_remove_a_subscription_that_is_live_at_the_ops_time() -> None:
    """Replaying an old purge after a later renewal keeps the renewal (blind-write rule)."""
    s = State()
    apply(s, sub("a", "b"))
    apply(s, ("ps_expire", [["a", "b", STATUS], ["a", "nobody", STATUS]]), now=NOW + MIN - 1)
    assert s.presence.holds("a", "b", STATUS)


def test_a_renewed_subscription_is_not_reported_expired_at_its_old_expiry() -> None:
    s = State()
    apply(s, sub("a", "b"))
    apply(s, sub("a", "b", expiry_ms=5 * MIN), now=NOW + 10)
    p = s.presence
    assert p.expired_subscriptions(NOW + MIN) == []
    assert p.expired_subscriptions(NOW + 10 + 5 * MIN) == [("a", "b", STATUS)]


def test_expiry_index_stays_bounded_under_many_renewals() -> None:
    s = State()
    for i in range(5000):
        apply(s, sub("a", "b", "c"), now=NOW + i)
    p = s.presence
    assert p.subscription_count == 2
    assert len(p._expiry) <= 2 * p.subscription_count + 1024 + 2
    assert p.expired_subscriptions(NOW + 4999 + MIN) == [("a", "b", STATUS), ("a", "c", STATUS)]


def test_expired_subscriptions_honours_its_limit() -> None:
    s = State()
    apply(s, sub("a", *[f"t{i}" for i in range(10)]))
    assert len(s.presence.expired_subscriptions(NOW + MIN, limit=3)) == 3
    assert len(s.presence.expired_subscriptions(NOW + MIN)) == 10


# -- limits ------------------------------------------------------------------------------------


def test_plan_refuses_targets_at_their_follower_limit_and_keeps_the_rest() -> None:
    s = State()
    apply(s, sub("f1", "full"), sub("f2", "full"))
    plan = s.presence.plan_subscribe("me", ["x", "full", "y"], STATUS, NOW,
                                     max_per_user=10, max_followers=2)
    assert plan.accepted == ["x", "y"] and plan.new == ["x", "y"]
    assert plan.refused == ["full"] and not plan.over_limit
    # an existing follower may renew although the target is full
    plan = s.presence.plan_subscribe("f1", ["full"], STATUS, NOW, 10, 2)
    assert plan.accepted == ["full"] and plan.new == [] and plan.refused == []
    # expired followers stop counting at their expiry instant
    plan = s.presence.plan_subscribe("me", ["full"], STATUS, NOW + MIN, 10, 2)
    assert plan.accepted == ["full"] and plan.refused == []


def test_plan_over_the_subscriber_limit_applies_nothing() -> None:
    s = State()
    apply(s, sub("me", "a", "b"))
    p = s.presence
    assert not p.plan_subscribe("me", ["c"], STATUS, NOW, 3, 100).over_limit
    assert p.plan_subscribe("me", ["c", "d"], STATUS, NOW, 3, 100).over_limit
    # renewals do not count again
    plan = p.plan_subscribe("me", ["a", "b", "c"], STATUS, NOW, 3, 100)
    assert not plan.over_limit and plan.new == ["c"]
    # expired subscriptions stop counting
    assert not p.plan_subscribe("me", ["c", "d", "e"], STATUS, NOW + MIN, 3, 100).over_limit
    # refused targets are not counted against the subscriber
    apply(s, sub("other", "full"))
    plan = p.plan_subscribe("me", ["c", "full"], STATUS, NOW, 3, 1)
    assert not plan.over_limit and plan.refused == ["full"]


def test_counting_fast_path_is_exact_at_the_limit() -> None:
    s = State()
    apply(s, sub("a", "x"), sub("b", "x"), sub("c", "x", expiry_ms=1))
    p = s.presence
    assert p.follower_count("x", STATUS, NOW + 1) == 2
    assert p.follower_count("x", STATUS, NOW + 1, at_least=4) == 3  # upper bound below 4
    assert p.follower_count("x", STATUS, NOW + 1, at_least=3) == 2  # exact once it matters


# -- presence ----------------------------------------------------------------------------------


def test_user_is_online_while_any_device_is() -> None:
    s = State()
    p = s.presence
    apply(s, online("u", 0), online("u", 2))
    assert p.is_online("u") and p.device_flags("u") == (0, 2)
    apply(s, online("u", 0, on=0))
    assert p.is_online("u") and p.device_flags("u") == (2,)
    apply(s, online("u", 2, on=0), online("nobody", 1, on=0))
    assert not p.is_online("u") and p.device_flags("u") == () and p.devices == {}
    assert p.online_users() == 0


def test_flip_notes_once_per_aggregated_change_with_live_subscribers() -> None:
    s = State()
    apply(s, sub("f1", "u"), sub("f2", "u", expiry_ms=10), sub("f3", "other"))
    notes = noting(s, online("u", 0), online("u", 1), now=NOW + 10)
    assert notes == [StatusNote("u", True, (0,), NOW + 10, ("f1",), "flip", 0, "sess", "iOS",
                                "10.0.0.1")]
    assert noting(s, online("u", 0, on=0), now=NOW + 11) == []  # web still online
    notes = noting(s, online("u", 1, on=0), online("u", 2), online("u", 2, on=0), now=NOW + 12)
    assert [(n.online, n.devices, n.device_flag) for n in notes] == [
        (False, (), 1), (True, (2,), 2), (False, (), 2)]
    # after f1's expiry nobody hears about u
    notes = noting(s, online("u"), now=NOW + MIN)
    assert notes[0].subscribers == ()


def test_replay_produces_no_notes() -> None:
    s = State()
    apply(s, sub("f", "u"), online("u"))
    assert s.presence.notes is None


def test_a_new_subscription_notes_the_targets_current_status() -> None:
    s = State()
    apply(s, online("on", 2))
    notes = noting(s, sub("me", "on", "off"))
    assert notes == [StatusNote("on", True, (2,), NOW, ("me",), "subscribe"),
                     StatusNote("off", False, (), NOW, ("me",), "subscribe")]
    # a renewal is not a new subscription; an expired one is
    assert noting(s, sub("me", "on"), now=NOW + 5) == []
    assert len(noting(s, sub("me", "off"), now=NOW + MIN)) == 1
    # other sub types get no status
    assert noting(s, ("ps_sub", "me", 2, MIN, ["on"])) == []


# -- snapshots and replay ----------------------------------------------------------------------


def roundtrip(s: State, rows: int = 3) -> State:
    copy = State()
    for chunk in s.snapshot_chunks(rows_per_chunk=rows):
        copy.load_chunk(chunk)
    return copy


def test_snapshot_roundtrip_keeps_subscriptions_devices_and_channels() -> None:
    s = State()
    apply(s, ("ch_put", "g", 2, {}), ("sub_add", "g", 2, ["a"]))
    apply(s, *(sub(f"s{i}", "t1", "t2", f"t{i}") for i in range(7)), online("t1", 0),
          online("t1", 2), online("s3", 1))
    apply(s, sub("s0", "t1", expiry_ms=5 * MIN), now=NOW + 7)
    copy = roundtrip(s)
    assert copy.as_plain() == s.as_plain()
    assert copy.presence.subscription_count == s.presence.subscription_count == 7 * 3 - 2
    assert copy.presence.expired_subscriptions(NOW + MIN) == \
        s.presence.expired_subscriptions(NOW + MIN)
    assert roundtrip(s, rows=2000).as_plain() == s.as_plain()


def test_snapshot_without_presence_chunks_still_loads() -> None:
    """Snapshots written before presence existed have only meta and channel chunks."""
    s = State()
    apply(s, ("ch_put", "g", 2, {}), sub("a", "b"), online("a"))
    copy = State()
    for chunk in s.snapshot_chunks():
        assert isinstance(chunk, dict)
        if chunk["kind"] in ("meta", "channels"):
            copy.load_chunk(chunk)
    assert copy.presence.following == {} and copy.channels.keys() == s.channels.keys()


def test_presence_snapshot_is_fuzzy_but_replay_makes_it_exact() -> None:
    s = State()
    apply(s, sub("a", "b"), online("b"))
    chunks = s.snapshot_chunks()
    suffix = [(NOW + 1, [sub("a", "c"), ("ps_unsub", "a", STATUS, ["b"]), online("b", 0, 0)]),
              (NOW + MIN + 5, [("ps_expire", [["a", "c", STATUS]]), online("z", 1)])]
    for batch in suffix:
        s.apply(batch)
    copy = State()
    for chunk in chunks:
        copy.load_chunk(chunk)
    for batch in suffix:
        copy.apply(batch)
    assert copy.as_plain() == s.as_plain()


def test_presence_snapshot_skips_users_gone_before_their_chunk_is_built() -> None:
    # The snapshot copies only the user keys up front; a user whose last subscription or last
    # device went away before the chunks were built is skipped, and replay agrees.
    s = State()
    apply(s, sub("x", "y"), online("y"), sub("a", "b"))
    chunks = s.snapshot_chunks()
    suffix = [(NOW + 1, [("ps_unsub", "x", STATUS, ["y"]), online("y", 0, 0)])]
    for batch in suffix:
        s.apply(batch)
    copy = State()
    for chunk in chunks:
        copy.load_chunk(chunk)
    assert "x" not in copy.presence.following and "y" not in copy.presence.devices
    assert copy.presence.holds("a", "b", STATUS)
    for batch in suffix:
        copy.apply(batch)
    assert copy.as_plain() == s.as_plain()


USERS = st.sampled_from(["a", "b", "c"])
PRESENCE_OPS = st.one_of(
    st.tuples(st.just("ps_sub"), USERS, st.sampled_from([1, 2]), st.integers(0, 30),
              st.lists(USERS, max_size=3, unique=True)),
    st.tuples(st.just("ps_unsub"), USERS, st.sampled_from([1, 2]),
              st.lists(USERS, max_size=3)),
    st.tuples(st.just("ps_expire"),
              st.lists(st.tuples(USERS, USERS, st.sampled_from([1, 2])), max_size=3)),
    st.tuples(st.just("pr_set"), USERS, st.sampled_from([0, 1, 2]), st.integers(0, 1),
              st.just(""), st.just(""), st.just("")),
)
BATCHES = st.lists(st.tuples(st.integers(0, 10), st.lists(PRESENCE_OPS, min_size=1, max_size=4)),
                   max_size=8)


def _timed(batches: list[tuple[int, list[Any]]], start: int) -> list[tuple[int, list[Any]]]:
    """Give the batches rising times (a log's batches are applied in time order)."""
    out, now = [], start
    for step, ops in batches:
        now += step
        out.append((now, ops))
    return out


@settings(max_examples=150, deadline=None)
@given(prefix=BATCHES, suffix=BATCHES, seen=st.integers(0, 8))
def test_presence_ops_are_blind_writes(prefix: list[Any], suffix: list[Any], seen: int) -> None:
    """Replaying a suffix over a state that already saw part of it gives the exact state."""
    prefix = _timed(prefix, NOW)
    suffix = _timed(suffix, prefix[-1][0] if prefix else NOW)
    truth, fuzzy = State(), State()
    for batch in prefix:
        truth.apply(batch)
        fuzzy.apply(batch)
    for batch in suffix[:seen]:
        fuzzy.apply(batch)
    for batch in suffix:
        truth.apply(batch)
        fuzzy.apply(batch)
    assert fuzzy.as_plain() == truth.as_plain()
    assert fuzzy.presence.subscription_count == truth.presence.subscription_count
    later = NOW + 1000
    assert sorted(fuzzy.presence.expired_subscriptions(later)) == \
        sorted(truth.presence.expired_subscriptions(later))
    assert roundtrip(truth).as_plain() == truth.as_plain()
