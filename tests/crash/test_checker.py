"""The crash tests' checker must be able to fail: feed Workload.resolve states that lose an
acknowledged write, apply something never sent, or carry a foreign uid (no server needed)."""

from __future__ import annotations

import pytest

from tests.crash.oracle import SHARED, Observed, Settled, Violation, Workload


def acked(workload: Workload, count: int) -> None:
    """Pretend each writer had ``count`` requests acknowledged."""
    for w in workload.writers:
        for _ in range(count):
            w.view = w.next_op().apply(w.view)
            w.acked += 1


def settled() -> Settled:
    return Settled(0, 0)


def test_exact_state_resolves() -> None:
    workload = Workload(3, seed=1)
    acked(workload, 20)
    workload.resolve(workload.expected(), s := settled())
    assert s.acked_checked == 60 and s.in_flight_present == 0


def test_in_flight_may_or_may_not_be_there() -> None:
    for present in (True, False):
        workload = Workload(2, seed=2)
        acked(workload, 10)
        w = workload.writers[0]
        w.pending = op = w.next_op()
        observed = workload.expected()
        if present:
            view = op.apply(w.view)
            observed[op.channel] = {**observed[op.channel]}
            for (channel, attr), value in view.items():
                if channel == op.channel and attr == op.attr:
                    if channel in SHARED:
                        others = {u for u in observed[channel][attr] if not u.startswith(w.prefix)}
                        observed[channel][attr] = frozenset(others | value)
                    else:
                        observed[channel][attr] = value
        workload.resolve(observed, s := settled())
        assert w.pending is None
        assert (s.in_flight_present + s.in_flight_either + s.in_flight_absent) == 1
        # whatever was decided is now part of the view
        workload.resolve(observed, settled())


def _without_one_acked_uid(observed: Observed) -> tuple[Observed, str]:
    for channel in SHARED:
        for attr in ("subscribers", "whitelist"):
            if observed[channel][attr]:
                uid = sorted(observed[channel][attr])[0]
                observed[channel][attr] = observed[channel][attr] - {uid}
                return observed, uid
    raise AssertionError("nothing to lose")


def test_a_lost_acknowledged_write_is_a_violation() -> None:
    workload = Workload(3, seed=3)
    acked(workload, 30)
    observed, uid = _without_one_acked_uid(workload.expected())
    with pytest.raises(Violation, match="acknowledged but missing") as info:
        workload.resolve(observed, settled())
    assert info.value.lost == 1 and uid in str(info.value)


def test_something_never_sent_is_a_violation() -> None:
    workload = Workload(2, seed=4)
    acked(workload, 5)
    observed = workload.expected()
    w = workload.writers[1]
    observed[w.own]["blacklist"] = observed[w.own]["blacklist"] | {f"{w.prefix}999999"}
    with pytest.raises(Violation, match="never acknowledged"):
        workload.resolve(observed, settled())


def test_a_foreign_uid_or_channel_is_a_violation() -> None:
    workload = Workload(2, seed=5)
    acked(workload, 5)
    observed = workload.expected()
    observed[SHARED[0]]["whitelist"] = observed[SHARED[0]]["whitelist"] | {"intruder"}
    with pytest.raises(Violation, match="whole state differs"):
        workload.resolve(observed, settled())
    observed = workload.expected()
    observed["stray"] = {"subscribers": frozenset(), "whitelist": frozenset(),
                         "blacklist": frozenset(), "flags": (0, 0, 0, 0, 0)}
    with pytest.raises(Violation, match="stray"):
        workload.resolve(observed, settled())
