"""Where a random-access permission decision's time goes (the profile behind RESULTS.md §1).

    python -m bench.breakdown [--channels 1000000] [--checks 300000]

cProfile and py-spy cannot see inside one 3 µs call, so this times the decision's steps one at
a time over the same random work (fresh strings each pass, best of 3 passes, ns per check),
plus the proposed variant of ``decide`` (``proposed_decide`` below: channels keyed by id string
per type, and no probe of the sender's own person channel per check). Run it also with
``PYTHONMALLOC=malloc GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` to see what huge pages change.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from bench.decide import Work, _fresh, random_work
from bench.gen import Shape, generate
from server.permission import (
    BAN,
    CHANNEL_NOT_EXIST,
    DISBAND,
    IN_BLACKLIST,
    NOT_IN_WHITELIST,
    SEND_BAN,
    SUBSCRIBER_NOT_EXIST,
    SUCCESS,
    decide,
)
from server.state import GROUP, PERSON, Channel, State


def proposed_decide(groups: dict[str, Channel], send_banned: set[str], system: set[str],
                    from_uid: str, channel_id: str, now_ms: int) -> int:
    """``decide`` for group-like channels with the proposed layout (same rule order)."""
    is_system = from_uid in system
    if send_banned and from_uid in send_banned and not is_system:
        return SEND_BAN
    ch = groups.get(channel_id)
    if ch is None or (ch.expires_at and ch.expires_at <= now_ms):
        return CHANNEL_NOT_EXIST
    if ch.disband:
        return DISBAND
    if is_system:
        return SUCCESS
    if ch.ban:
        return BAN
    if from_uid in ch.blacklist:
        return IN_BLACKLIST
    if from_uid not in ch.subscribers:
        return SUBSCRIBER_NOT_EXIST
    whitelist = ch.whitelist
    if ch.send_ban and from_uid not in whitelist:
        return SEND_BAN
    if whitelist and from_uid not in whitelist:
        return NOT_IN_WHITELIST
    return SUCCESS


def steps(state: State) -> list[tuple[str, Callable[[Work], None]]]:
    channels = state.channels
    system = state.system_uids
    groups = {cid: ch for (cid, t), ch in channels.items() if t == GROUP}
    send_banned = {cid for (cid, t), ch in channels.items() if t == PERSON and ch.send_ban}

    def loop(w: Work) -> None:
        for _u, _c, _t in w:
            pass

    def hashing(w: Work) -> None:
        for u, c, _t in w:
            hash(u)
            hash(c)

    def own_probe(w: Work) -> None:
        for u, _c, _t in w:
            _ = u in system
            channels.get((u, PERSON))

    def channel_probe(w: Work) -> None:
        for _u, c, t in w:
            channels.get((c, t))

    def channel_and_member(w: Work) -> None:
        for u, c, t in w:
            ch = channels.get((c, t))
            _ = ch is not None and u in ch.subscribers

    def str_keyed_and_member(w: Work) -> None:
        for u, c, _t in w:
            ch = groups.get(c)
            _ = ch is not None and u in ch.subscribers

    def today(w: Work) -> None:
        for u, c, t in w:
            decide(state, u, c, t, 0)

    def proposed(w: Work) -> None:
        for u, c, _t in w:
            proposed_decide(groups, send_banned, system, u, c, 0)

    return [
        ("loop over the work list", loop),
        ("hash fresh uid + channel id", hashing),
        ("system set + own person-channel probe", own_probe),
        ("channel probe, (id, type) key", channel_probe),
        ("channel probe + subscriber test", channel_and_member),
        ("str-keyed dict + subscriber test", str_keyed_and_member),
        ("decide today", today),
        ("proposed decide", proposed),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__)
    parser.add_argument("--channels", type=int, default=1_000_000)
    parser.add_argument("--checks", type=int, default=300_000)
    args = parser.parse_args(argv)
    shape = Shape(channels=args.channels)
    state = generate(shape)
    gc.collect()
    gc.freeze()
    work = random_work(state, shape, args.checks)
    print(f"{args.channels:,} channels, {args.checks:,} random checks, ns per check "
          "(best of 3 passes with fresh strings)")
    for name, fn in steps(state):
        passes = []
        for _ in range(3):
            fresh = [(_fresh(u), _fresh(c), t) for u, c, t in work]
            t0 = time.perf_counter_ns()
            fn(fresh)
            passes.append((time.perf_counter_ns() - t0) / len(fresh))
        print(f"  {name:40s} {min(passes):7.0f}   ({' '.join(f'{p:.0f}' for p in passes)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
