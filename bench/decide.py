"""``decide``: the in-process permission decision over a generated state.

Two access patterns:

* **hot**: the same 8 (uid, channel) pairs over and over: everything is in the CPU caches; the
  figure is the interpreter's cost of the rule table.
* **random**: a random channel per check (half the time one of its subscribers, else a random
  uid): over 1M channels nearly every lookup misses the caches, as in production.

Every check gets *fresh* ``str`` objects for uid and channel id (built with an f-string just
before, not taken from the state), like strings that a JSON parser just made: their hash is not
cached yet, so the dict and set lookups pay for hashing as they would behind HTTP.

Per-check latency is read with ``perf_counter_ns`` around each call; the cost of an empty timed
call pair (measured here, ~40-80 ns) is subtracted and reported as ``timer_overhead_ns``.
``mean_ns`` is plain throughput: a whole untimed pass divided by the number of checks.
"""

from __future__ import annotations

import gc
import itertools
import random
import statistics
import time
from typing import Any

from bench.common import Record, Stopwatch, log, new_record, percentile, table
from bench.gen import Shape, channel_id, generate, memberships, uid
from server.permission import decide
from server.state import GROUP, State

Work = list[tuple[str, str, int]]


def _fresh(text: str) -> str:
    """A new str object equal to ``text`` with no cached hash (what json.loads hands over)."""
    return "".join(list(text))


def hot_work(state: State, checks: int) -> Work:
    firsts = (next(iter(shard.items())) for shard in state.tables[GROUP] if shard)
    pairs = [(min(ch.subscribers), cid, GROUP)
             for cid, ch in itertools.islice(firsts, 8)]
    return [pairs[i % len(pairs)] for i in range(checks)]


def random_work(state: State, shape: Shape, checks: int, seed: int = 11) -> Work:
    rng = random.Random(seed)
    users = shape.user_count
    work: Work = []
    for _ in range(checks):
        c = rng.randrange(shape.channels)
        cid = channel_id(c)
        if rng.random() < 0.5:
            ch = state.get(cid, GROUP, 0)
            subs = list(ch.subscribers) if ch is not None else []
            u = _fresh(rng.choice(subs)) if subs else uid(rng.randrange(users))
        else:
            u = uid(rng.randrange(users))
        work.append((u, _fresh(cid), GROUP))
    return work


def timer_overhead_ns(samples: int = 200_000) -> float:
    clock = time.perf_counter_ns
    lat = []
    for _ in range(samples):
        t0 = clock()
        t1 = clock()
        lat.append(t1 - t0)
    return float(statistics.median(lat))


def measure(state: State, work: Work, overhead: float) -> dict[str, float]:
    clock = time.perf_counter_ns
    lat: list[int] = []
    append = lat.append
    for u, c, t in work:
        t0 = clock()
        decide(state, u, c, t, 0)
        append(clock() - t0)
    lat.sort()
    # Untimed pass for the mean. The strings' hashes are cached by now, so rebuild them.
    fresh = [(_fresh(u), _fresh(c), t) for u, c, t in work]
    t0 = clock()
    for u, c, t in fresh:
        decide(state, u, c, t, 0)
    mean = (clock() - t0) / len(fresh)
    return {
        "median_ns": max(0.0, percentile(lat, 50) - overhead),
        "p90_ns": max(0.0, percentile(lat, 90) - overhead),
        "p99_ns": max(0.0, percentile(lat, 99) - overhead),
        "max_ns": max(0.0, float(lat[-1]) - overhead),
        "mean_ns": mean,
        "checks_per_s": 1e9 / mean if mean else 0.0,
    }


def run(shape: Shape, checks: int, quick: bool) -> Record:
    rec = new_record("decide", quick, {**shape.as_params(), "checks": checks})
    log(f"decide: generating {shape.channels:,} channels x {shape.members} members")
    with Stopwatch() as sw:
        state = generate(shape)
    # Move the generated objects out of the collector's way: a full collection over millions
    # of containers takes seconds and would land in some unlucky check's latency.
    gc.freeze()
    rec["results"]["generate_s"] = sw.seconds
    rec["results"]["state_channels"] = state.counts()["channels"]
    rec["results"]["memberships"] = memberships(state)
    overhead = timer_overhead_ns()
    rec["results"]["timer_overhead_ns"] = overhead
    log(f"decide: {checks:,} hot and {checks:,} random checks")
    hot = measure(state, [(_fresh(u), _fresh(c), t) for u, c, t in hot_work(state, checks)],
                  overhead)
    rnd = measure(state, random_work(state, shape, checks), overhead)
    rec["results"]["hot"] = hot
    rec["results"]["random"] = rnd
    gc.unfreeze()  # leave the collector as we found it (the smoke test runs this in-process)
    rec["notes"].append("gc.freeze() after generating; fresh (unhashed) strings per check")
    return rec


def print_table(rec: Record, out: Any = None) -> None:
    r = rec["results"]
    p = rec["params"]
    rows = [(name, r[name]["median_ns"], r[name]["p90_ns"], r[name]["p99_ns"],
             r[name]["mean_ns"], r[name]["checks_per_s"]) for name in ("hot", "random")]
    table(f"decide: {p['channels']:,} group channels x {p['members']} members "
          f"({r['memberships']:,} memberships, {p['users']:,} users), {p['checks']:,} checks "
          f"each; state built in {r['generate_s']:.1f} s; timer overhead "
          f"{r['timer_overhead_ns']:.0f} ns subtracted",
          ("access", "median ns", "p90 ns", "p99 ns", "mean ns", "checks/s"), rows, out)


def main(args: Any) -> Record:
    quick = bool(args.quick)
    channels = args.channels or (100_000 if quick else 1_000_000)
    checks = args.checks or (200_000 if quick else 1_000_000)
    return run(Shape(channels=channels, members=args.members), checks, quick)
