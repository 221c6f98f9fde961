"""Where a random-access permission decision's time goes (the profile behind RESULTS.md §1).

    python -m bench.breakdown [--channels 1000000] [--checks 300000]

cProfile and py-spy cannot see inside one 2-4 µs call, so this times the lookups the decision
makes, one at a time over the same random work (fresh strings each pass, best of 3 passes, ns per
check), then ``server.permission.decide`` itself and every entry of ``VARIANTS``.

No rule order is copied here: the steps are the decision's *lookups*, not its rules, and every
variant of the decision to compare goes into ``VARIANTS``, where
``tests/unit/test_permission.py`` runs it over the whole rule table and requires the answers of
``decide``. Run it also with ``PYTHONMALLOC=malloc GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` to see
what huge pages change.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from bench.decide import Work, _fresh, random_work
from bench.gen import Shape, generate
from server.permission import decide
from server.state import GROUP, SHARD_MASK, State

Decide = Callable[[State, str, str, int, int], int]

#: decision functions to time beside ``decide`` (same signature, same answers: pinned by
#: tests/unit/test_permission.py). Add a candidate here to measure it; keep ``decide`` first.
VARIANTS: dict[str, Decide] = {"decide": decide}


def steps(state: State) -> list[tuple[str, Callable[[Work], None]]]:
    system = state.system_uids
    send_banned = state.send_banned
    groups = state.tables[GROUP]
    flat = {cid: ch for shard in groups for cid, ch in shard.items()}

    def loop(w: Work) -> None:
        for _u, _c, _t in w:
            pass

    def hashing(w: Work) -> None:
        for u, c, _t in w:
            hash(u)
            hash(c)

    def sender_sets(w: Work) -> None:
        for u, _c, _t in w:
            _ = u in system
            _ = u in send_banned

    def channel_probe(w: Work) -> None:
        for _u, c, _t in w:
            groups[hash(c) & SHARD_MASK].get(c)

    def flat_probe(w: Work) -> None:
        for _u, c, _t in w:
            flat.get(c)

    def channel_and_member(w: Work) -> None:
        for u, c, _t in w:
            ch = groups[hash(c) & SHARD_MASK].get(c)
            _ = ch is not None and u in ch.subscribers

    found: list[tuple[str, Callable[[Work], None]]] = [
        ("loop over the work list", loop),
        ("hash fresh uid + channel id", hashing),
        ("system_uids + send_banned tests", sender_sets),
        ("channel probe (sharded table)", channel_probe),
        ("channel probe, one flat dict", flat_probe),
        ("channel probe + subscriber test", channel_and_member),
    ]
    for name, fn in VARIANTS.items():
        def run(w: Work, fn: Decide = fn) -> None:
            for u, c, t in w:
                fn(state, u, c, t, 0)

        found.append((name, run))
    return found


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
