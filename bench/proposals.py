"""Prototypes of design changes, measured beside the code as it is. Nothing here is used by the
server. Both restart prototypes once here were adopted: the key-copy chunking and the uid-table
snapshot (format 2) are ``State.snapshot_chunks`` now; what is left compares the load of the old
format 1 with format 2 on the same state.

    python -m bench.proposals [--channels 1000000]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterator

from server.state import State
from wal.codec import new_packer, unpack

# -- restart: format 1 (every member spelled out) against format 2 (uid table) -----------------


def v1_chunks(state: State, rows_per_chunk: int = 500) -> Iterator[object]:
    """``state`` in snapshot format 1, as ``State.snapshot_chunks`` wrote it before format 2
    (all at once: this is for measuring the load, not for a live server)."""
    yield {"kind": "meta", "version": 1, "system_uids": sorted(state.system_uids),
           "channels": len(state.channels)}
    rows = [(cid, ctype, (ch.ban, ch.disband, ch.send_ban, ch.allow_stranger, ch.large),
             ch.created_at, ch.updated_at, ch.expires_at,
             list(ch.subscribers), list(ch.whitelist), list(ch.blacklist))
            for (cid, ctype), ch in state.channels.items()]
    for start in range(0, len(rows), rows_per_chunk):
        yield {"kind": "channels", "rows": rows[start : start + rows_per_chunk]}


def uid_table_chunks(state: State, rows_per_chunk: int = 2000,
                     uids_per_chunk: int = 100_000) -> Iterator[object]:
    """The uid-table layout once prototyped here: adopted as snapshot format 2
    (``uids_per_chunk`` is unused: each chunk carries the uids it is the first to use)."""
    return state.snapshot_chunks(rows_per_chunk)


class UidTableLoader:
    """Loads :func:`uid_table_chunks` (now ``State.load_chunk`` itself)."""

    def __init__(self, state: State) -> None:
        self.load_chunk: Callable[[object], None] = state.load_chunk


def _time_load(payloads: list[bytes], gc_off: bool) -> float:
    state = State()
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        for payload in payloads:
            state.load_chunk(unpack(payload))
        return time.perf_counter() - t0
    finally:
        gc.enable()


def restart_main(argv: list[str] | None = None) -> int:
    """Load time of format-1 and format-2 snapshot payloads of one state, GC on and off
    (msgpack round trip included, file I/O and CRC not)."""
    parser = argparse.ArgumentParser(prog="python -m bench.proposals")
    parser.add_argument("--channels", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from bench.gen import Shape, generate

    state = generate(Shape(channels=args.channels))
    gc.collect()
    pack = new_packer()
    formats: dict[str, list[bytes]] = {
        "format 1": [pack(c) for c in v1_chunks(state)],
        "format 2": [pack(c) for c in state.snapshot_chunks()],
    }
    del state
    gc.collect()
    sizes = ", ".join(f"{name} {sum(map(len, p)) / 1e6:.1f} MB" for name, p in formats.items())
    print(f"{args.channels:,} channels: snapshot payloads {sizes}")
    for gc_off in (False, True):
        for name, payloads in formats.items():
            seconds = _time_load(payloads, gc_off)
            gc.collect()
            print(f"  load {name} GC {'off' if gc_off else 'on '}: {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(restart_main())
