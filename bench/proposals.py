"""Prototypes of the design changes RESULTS.md proposes, measured by the benchmarks beside the
code as it is. Nothing here is used by the server: these are arguments with numbers, for the
engineers who own ``server/`` and ``wal/`` to adopt (or not). (The key-copy snapshot chunking
once prototyped here was adopted: it is ``State.snapshot_chunks`` now.)
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from server.state import Channel, State
from wal.codec import new_packer, unpack

# -- restart: a snapshot whose rows reference a uid table ------------------------------------

def uid_table_chunks(state: State, rows_per_chunk: int = 2000,
                     uids_per_chunk: int = 100_000) -> Iterator[object]:
    """Snapshot chunks in the proposed v2 layout: every distinct uid once (``kind: uids``,
    in table order), then channel rows whose member lists are indices into that table.

    Written here all at once (a prototype for the *load* side); a real writer would build the
    table incrementally and emit it after the rows, or per segment of rows.
    """
    index: dict[str, int] = {}

    def ids(members: Iterable[str]) -> list[int]:
        out = []
        for u in members:
            i = index.get(u)
            if i is None:
                i = index[u] = len(index)
            out.append(i)
        return out

    rows = [(cid, ctype, (ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large),
             ch.created_at, ch.updated_at, ch.expires_at,
             ids(ch.subscribers), ids(ch.whitelist), ids(ch.blacklist))
            for (cid, ctype), ch in state.channels.items()]
    table = list(index)
    for start in range(0, len(table), uids_per_chunk):
        yield {"kind": "uids", "uids": table[start : start + uids_per_chunk]}
    for start in range(0, len(rows), rows_per_chunk):
        yield {"kind": "channels2", "rows": rows[start : start + rows_per_chunk]}


class UidTableLoader:
    """Loads :func:`uid_table_chunks` into a State: each uid interned once, sets built from the
    shared table with ``set(map(table.__getitem__, indices))``; same bookkeeping as
    ``State.load_chunk`` (``_forget``/``_remember`` of the membership totals)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.table: list[str] = []

    def load_chunk(self, chunk: Any) -> None:
        if chunk["kind"] == "uids":
            self.table.extend(map(sys.intern, chunk["uids"]))
            return
        state = self.state
        get = self.table.__getitem__
        for cid, ctype, flags, created, updated, expires, subs, wl, bl in chunk["rows"]:
            ch = Channel(created)
            ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large = flags
            ch.updated_at = updated
            ch.expires_at = expires
            if subs:
                ch.subscribers = set(map(get, subs))
            if wl:
                ch.whitelist = set(map(get, wl))
            if bl:
                ch.blacklist = set(map(get, bl))
            state._put_loaded(cid, ctype, ch)


def _time_load(payloads: list[bytes], make_loader: Callable[[State], Callable[[Any], None]],
               gc_off: bool) -> float:
    state = State()
    load = make_loader(state)
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        for payload in payloads:
            load(unpack(payload))
        return time.perf_counter() - t0
    finally:
        gc.enable()


def restart_main(argv: list[str] | None = None) -> int:
    """``python -m bench.proposals [--channels N]``: load time of today's snapshot chunks vs the
    uid-table layout, GC on and off (msgpack round trip included, file I/O and CRC not)."""
    parser = argparse.ArgumentParser(prog="python -m bench.proposals")
    parser.add_argument("--channels", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from bench.gen import Shape, generate

    state = generate(Shape(channels=args.channels))
    gc.collect()
    pack = new_packer()
    today = [pack(c) for c in state.snapshot_chunks()]
    proposed = [pack(c) for c in uid_table_chunks(state)]
    del state
    gc.collect()
    print(f"{args.channels:,} channels: snapshot payloads today {sum(map(len, today)) / 1e6:.1f}"
          f" MB, uid table {sum(map(len, proposed)) / 1e6:.1f} MB")
    for gc_off in (False, True):
        for name, payloads, make in (
            ("today", today, lambda s: s.load_chunk),
            ("uid table", proposed, lambda s: UidTableLoader(s).load_chunk),
        ):
            seconds = _time_load(payloads, make, gc_off)
            gc.collect()
            print(f"  load {name:9s} GC {'off' if gc_off else 'on '}: {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(restart_main())
