"""A generated, deterministic state for the benchmarks: N group channels x M subscribers.

Shape (defaults): ``channels`` group channels ``g0..`` (type 2), each with ``members`` subscribers
drawn at random from a pool of ``users`` uids ``u0..`` (default ``channels * members // 10``, so a
uid is in about ten channels and uid strings are shared, as they are in a real IM backend); every
10th channel has a whitelist of 3, every 7th a blacklist of 2; 1 % of the users have a person
channel (type 1) whose whitelist holds 2 uids. The same shape and seed give the same state in
every process, so the bare-ASGI floor and Roster answer over the same data.

``padded_ids=True`` names the same state ``g:000000000042`` / ``u:000000000042`` instead of
``g42`` / ``u42``: the 12-digit form that redis-benchmark's ``__rand_int__`` expands to (and the
Redis keys of ``bench/peer.py``), so redis-benchmark can hit random Roster ids (``bench resp``).
The picks are the same either way; only the strings differ.

Speed: ops are built in bulk (one ``random.choices`` call per batch of channels, then slices) and
each batch is applied with one ``State.apply`` call. Batches bound the transient memory of the op
lists, which matters when the memory benchmark reads RSS afterwards.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from server.state import GROUP, PERSON, State

Op = tuple[Any, ...]

#: channels per op batch: one apply per batch
BATCH_CHANNELS = 100_000


@dataclass(frozen=True)
class Shape:
    channels: int = 1_000_000
    members: int = 10
    users: int = 0  # 0: channels * members // 10 (at least 1000)
    whitelist_every: int = 10
    whitelist_size: int = 3
    blacklist_every: int = 7
    blacklist_size: int = 2
    person_every: int = 100  # one user in this many has a person channel with a whitelist
    seed: int = 7
    padded_ids: bool = False  # g:000000000042 / u:000000000042 instead of g42 / u42

    @property
    def user_count(self) -> int:
        return self.users or max(1000, self.channels * self.members // 10)

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        params["users"] = self.user_count
        return params


def channel_id(i: int, padded: bool = False) -> str:
    return f"g:{i:012d}" if padded else f"g{i}"


def uid(i: int, padded: bool = False) -> str:
    return f"u:{i:012d}" if padded else f"u{i}"


def op_batches(shape: Shape, batch_channels: int = BATCH_CHANNELS) -> Iterator[list[Op]]:
    """The ops that build ``shape``, ``batch_channels`` group channels per list."""
    rng = random.Random(shape.seed)
    users = shape.user_count
    padded = shape.padded_ids
    pool = [uid(i, padded) for i in range(users)]
    per = shape.members
    for start in range(0, shape.channels, batch_channels):
        stop = min(shape.channels, start + batch_channels)
        picks = rng.choices(pool, k=(stop - start) * per)
        ops: list[Op] = []
        append = ops.append
        for c in range(start, stop):
            cid = channel_id(c, padded)
            base = (c - start) * per
            append(("sub_add", cid, GROUP, picks[base : base + per]))
            if shape.whitelist_every and c % shape.whitelist_every == 0:
                append(("wl_add", cid, GROUP, rng.choices(pool, k=shape.whitelist_size)))
            if shape.blacklist_every and c % shape.blacklist_every == 0:
                append(("bl_add", cid, GROUP, rng.choices(pool, k=shape.blacklist_size)))
        yield ops
    if shape.person_every:
        ops = [("wl_set", pool[u], PERSON, rng.choices(pool, k=2))
               for u in range(0, users, shape.person_every)]
        yield ops


def generate(shape: Shape, batch_channels: int = BATCH_CHANNELS) -> State:
    """Build the state. The cyclic GC is off while building: with millions of new containers it
    would run repeated full collections (22 s instead of 37 s for 1M channels here); it is
    switched back on afterwards, nothing is collected."""
    state = State()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for ops in op_batches(shape, batch_channels):
            state.apply((0, ops))
    finally:
        if was_enabled:
            gc.enable()
    return state


def memberships(state: State) -> int:
    """Entries in every subscriber, whitelist and blacklist set (what memory is counted per)."""
    counts = state.counts()
    return counts["subscribers"] + counts["whitelist"] + counts["blacklist"]
